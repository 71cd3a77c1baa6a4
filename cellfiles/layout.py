"""The names of the files and folders of a cell directory (and of the sweep directory that holds the cells).

  cell.json              record: config (secrets redacted), config hash, status, timings, versions, errors
  scores.json            {task: {category, main_score, eval_settings, ...}}
  category_scores.json   per-category means of the scores
  model/                 the saved encoder (its own file names: embedgrid/model/saved.py) + identity.json
  checkpoints/           training state for resume (its own file names: embedgrid/train/checkpoint.py)
  mteb/                  mteb's own result cache
  .hydra/config.yaml     the composed config, written by Hydra before the cell starts (secrets redacted)
  .lock                  held (flock) by the process running the cell

  <sweep dir>/summary.json   the last launch of the sweep: every cell's outcome
"""
from __future__ import annotations

CELL_FILE = "cell.json"
SCORES_FILE = "scores.json"
CATEGORY_SCORES_FILE = "category_scores.json"
MODEL_DIR = "model"
IDENTITY_FILE = "identity.json"  # inside MODEL_DIR: the cell the saved encoder belongs to, its files' size + sha256
CHECKPOINT_DIR = "checkpoints"
MTEB_DIR = "mteb"
HYDRA_DIR = ".hydra"
HYDRA_CONFIG = f"{HYDRA_DIR}/config.yaml"
LOCK_FILE = ".lock"

SUMMARY_FILE = "summary.json"  # in the sweep directory, beside the cells
