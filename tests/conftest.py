"""Test setup: offline, one CPU thread, caches inside the workspace, real configs composed from conf/."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.update({
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
    "WANDB_SILENT": "true", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
})
os.environ.setdefault("EMBEDGRID_CACHE", str(ROOT / ".cache" / "embedgrid"))
os.environ.setdefault("MTEB_CACHE", str(ROOT / ".cache" / "mteb"))
os.environ.setdefault("HF_HOME", str(ROOT / ".cache" / "hf"))
os.environ.setdefault("WANDB_DIR", str(ROOT / ".cache" / "wandb"))
os.environ.setdefault("WANDB_CACHE_DIR", str(ROOT / ".cache" / "wandb"))
os.environ.setdefault("WANDB_CONFIG_DIR", str(ROOT / ".cache" / "wandb"))

import torch  # noqa: E402

from tests.helpers import TINY  # noqa: E402,F401  (re-exported for older imports)

torch.set_num_threads(1)

@pytest.fixture
def compose():
    """compose(overrides) -> the real config from conf/, as Hydra would build it for `launch.py`."""
    from tests.helpers import compose_config

    yield compose_config


@pytest.fixture
def launch_env():
    """Environment for `python launch.py` subprocesses (inherits the offline settings above)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _free_port_pair() -> int:
    """A port p with p and p+1 free (slurmctld, slurmd), so test clusters never clash with a user's."""
    import socket

    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for the test SLURM cluster")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real one-node SLURM cluster (embedgrid.slurm) for the session; stopped (jobs cancelled) at the end."""
    import shutil

    from embedgrid.slurm import LocalCluster

    if shutil.which("slurmctld") is None:
        pytest.skip("Debian slurm-wlm is not installed (./setup.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster runs its daemons as root")
    cluster = LocalCluster(tmp_path_factory.mktemp("slurm"), port=_free_port_pair(), gpus=2)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm_env(slurm_cluster, launch_env):
    """launch_env + SLURM_CONF of the session's cluster."""
    return {**launch_env, **slurm_cluster.env}
