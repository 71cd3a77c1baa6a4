"""The offline settings every benchmark runs under: set on import, before transformers, datasets or tokenizers
load. A value already in the environment wins (``setdefault``)."""
import os

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}  # one tokenizer thread: both sides of a comparison alike

for _key, _value in OFFLINE.items():
    os.environ.setdefault(_key, _value)


def child_env(root) -> dict[str, str]:
    """The environment of a benchmark's child processes (launch.py, workers): offline, W&B offline, one OpenMP
    thread, the repository importable, caches inside it unless the caller set their own."""
    env = {**os.environ, **OFFLINE, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    env.setdefault("EMBEDGRID_CACHE", os.path.join(root, ".cache", "embedgrid"))
    env.setdefault("MTEB_CACHE", os.path.join(root, ".cache", "mteb"))
    return env
