"""The offline settings every benchmark runs under: set on import, before transformers, datasets or tokenizers
load. A value already in the environment wins (``setdefault``)."""
import os

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}  # one tokenizer thread: both sides of a comparison alike

for _key, _value in OFFLINE.items():
    os.environ.setdefault(_key, _value)
