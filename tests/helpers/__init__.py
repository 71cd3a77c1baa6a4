"""Helpers shared by the test modules (test modules never import each other)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Shrinks a cell to seconds on a CPU: tiny model, few steps, one offline task.
TINY = ["model=tiny", "train.max_steps=3", "train.batch_size=4", "train.checkpoint_every=2", "threads=1",
        "train.progress_bar=false", "logger=none", "eval=offline_small", "eval.tasks=[LeeDocumentSTS]"]


def launch(args, env, check=True, timeout=600, cwd=ROOT) -> subprocess.CompletedProcess:
    """``python launch.py *args`` in a subprocess; with ``check`` a non-zero exit fails, showing the output."""
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"launch.py failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def compose_config(overrides=(), return_hydra_config=False):
    """The real config from conf/, as Hydra builds it for ``launch.py`` (the ``compose`` fixture wraps this)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import embedgrid  # noqa: F401  (resolvers)
    import embedgrid.grid.schema  # noqa: F401  (config schema)

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    """``predicate()``'s first truthy value within ``timeout`` seconds, else an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")
