"""The cell directory: its file names, its states, its record, its lock and the checks that guard it.

  cell.json              record: config (secrets redacted), config hash, provenance (code, libraries, device,
                         input fingerprints, identity version), status, timings, versions, errors
  scores.json            {task: {category, main_score, eval_settings, ...}}
  category_scores.json   per-category means of the scores
  model/                 encoder.json + identity.json + adapter/ (LoRA) + pooling.safetensors → load_encoder
  checkpoints/last/      training state for resume
  mteb/                  mteb's own result cache
  .lock                  held (flock) by the process running the cell

A directory is a cell directory when it has a ``cell.json``, or holds nothing but what Hydra and the launcher
write before the first record (``.hydra/``, ``*.log``, ``.lock``) plus, optionally, a ``model/`` (whose
identity is then checked). Anything else is somebody's data and is refused before a file is written.
This module stays light (no torch, no Hydra): the sweeper's plan step uses it for every cell.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from embedgrid.errors import CellBusy, CellConflict, CorruptCellRecord
from embedgrid.io import read_json, write_json

DONE, PARTIAL, NEW, FAILED, RUNNING = "done", "partial", "new", "failed", "running"
CORRUPT = "corrupt"  # a planned cell whose cell.json cannot be read (sweeper: reported, not launched)

CELL_FILE, SCORES_FILE, CATEGORY_SCORES_FILE = "cell.json", "scores.json", "category_scores.json"
MODEL_DIR, CHECKPOINT_DIR, MTEB_DIR, LOCK_FILE = "model", "checkpoints", "mteb", ".lock"
LAST_CHECKPOINT = "last"  # checkpoints/<LAST_CHECKPOINT>/: the one the next launch resumes from
# inside model/ (a saved encoder, also outside any cell)
SPEC_FILE, POOLING_FILE, ADAPTER_DIR, IDENTITY_FILE = "encoder.json", "pooling.safetensors", "adapter", "identity.json"
# what may exist in a directory before its first cell.json (Hydra's output subdir, its job log, our lock)
PRE_RECORD_ENTRIES = (".hydra", LOCK_FILE, MODEL_DIR)


class CellDir:
    """One cell's directory. ``cfg`` arguments are the cell's composed config (for its hash and name)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"CellDir({str(self.path)!r})"

    # ---- where things go --------------------------------------------------------------------------------------
    record_file = property(lambda self: self.path / CELL_FILE)
    scores_file = property(lambda self: self.path / SCORES_FILE)
    category_scores_file = property(lambda self: self.path / CATEGORY_SCORES_FILE)
    model_dir = property(lambda self: self.path / MODEL_DIR)
    checkpoint_dir = property(lambda self: self.path / CHECKPOINT_DIR)
    mteb_dir = property(lambda self: self.path / MTEB_DIR)

    @property
    def has_model(self) -> bool:
        return (self.model_dir / SPEC_FILE).exists()

    # ---- the record -------------------------------------------------------------------------------------------
    def read_record(self) -> dict | None:
        """``cell.json`` as a dict, None if absent; a truncated or malformed one raises, naming the file."""
        try:
            record = read_json(self.record_file)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CorruptCellRecord(f"{self.record_file} is not valid JSON ({error}); move it away (the cell then "
                                    "reruns, resuming from its checkpoints) or restore it") from None
        if record is not None and not isinstance(record, dict):
            raise CorruptCellRecord(f"{self.record_file} holds a {type(record).__name__}, not a cell record; move "
                                    "it away or restore it")
        return record

    def record(self, cfg, **fields) -> dict:
        """Merge ``fields`` (and the cell's identity, config and versions) into ``cell.json``, atomically."""
        from omegaconf import OmegaConf

        from embedgrid.grid.cellid import cell_name, config_hash
        from embedgrid.grid.provenance import provenance
        from embedgrid.secrets import redact
        from embedgrid.versions import package_versions

        record = self.read_record() or {}
        record.update({
            "cell": cell_name(cfg), "config_hash": config_hash(cfg),
            "design": {"model": cfg.model.name, "pooling": cfg.pooling.name, "attention": cfg.attention.name,
                       "seed": int(cfg.seed)},
            "grid": cfg.grid,
            "config": redact(OmegaConf.to_container(cfg, resolve=True)),
            "versions": package_versions(),
            "provenance": provenance(cfg),
        })
        record.update(fields)
        write_json(self.record_file, redact(record))  # errors and tracebacks too
        return record

    def scores(self) -> dict | None:
        return read_json(self.scores_file)

    def write_scores(self, scores: dict) -> None:
        write_json(self.scores_file, scores)

    def write_category_scores(self, categories: dict) -> None:
        write_json(self.category_scores_file, categories)

    # ---- states -----------------------------------------------------------------------------------------------
    def state(self, cfg=None) -> str:
        """done | partial | failed | new (done only if every requested task is scored under these settings)."""
        record = self.read_record()
        if record is None:
            return NEW
        status = record.get("status")
        if status == DONE and cfg is not None and not self.scores_cover(cfg):
            return PARTIAL
        if status in (DONE, FAILED):
            return status
        return PARTIAL

    def scores_cover(self, cfg) -> bool:
        """The eval-settings check: every task of ``cfg.eval`` is in scores.json, scored under its settings."""
        from embedgrid.evaluate.config import eval_config
        from embedgrid.evaluate.run import scores_cover

        prompt = {"instruction_template": cfg.instruction_template, "instruction_join": cfg.instruction_join}
        return scores_cover(read_json(self.scores_file, {}) or {}, eval_config(cfg), prompt)

    # ---- guards -----------------------------------------------------------------------------------------------
    def check_is_cell_dir(self) -> None:
        """Refuse a directory that is not (yet) a cell directory: see the module docstring for what counts."""
        if not self.path.exists() or self.record_file.exists():
            return
        if not self.path.is_dir():
            raise CellConflict(f"{self.path} is a file, not a cell directory; choose another hydra.run.dir / "
                               "hydra.sweep.dir")
        foreign = sorted(p.name for p in self.path.iterdir()
                         if p.name not in PRE_RECORD_ENTRIES and not p.name.endswith(".log"))
        if foreign:
            raise CellConflict(f"{self.path} is not a cell directory (no {CELL_FILE}, and it holds "
                               f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}); nothing was "
                               "written. Choose another hydra.run.dir / hydra.sweep.dir, or empty it")

    def check_same_config(self, cfg) -> None:
        """Refuse a directory whose record or saved model belongs to another config."""
        from embedgrid.grid.cellid import cell_name, config_hash

        record = self.read_record()
        wanted = config_hash(cfg)
        changed = self.changed_inputs(record, cfg)
        if changed:  # a directory pinned by name (hydra.run.dir) or an input pinned by code that changed
            raise CellConflict(f"{self.path} holds a cell trained on other input content ("
                               + "; ".join(changed) + "); its results would not describe today's inputs. Launch "
                               "without a fixed hydra.run.dir (the changed content gets a cell of its own), "
                               "or restore the input")
        if record and record.get("config_hash") not in (None, wanted):
            raise CellConflict(f"{self.path} holds results of config {record['config_hash']}, not {wanted}; "
                               "choose another hydra.run.dir / hydra.sweep.dir")
        if self.has_model:
            owner = self.model_owner()
            if owner.get("config_hash") != wanted and owner.get("cell") != cell_name(cfg):
                raise CellConflict(f"{self.model_dir} holds the model of {owner.get('cell') or 'another cell'} "
                                   f"(config {owner.get('config_hash') or 'unknown'}), not of {cell_name(cfg)}; "
                                   "it would be evaluated under the wrong design. Remove it or choose another "
                                   "hydra.run.dir / hydra.sweep.dir")

    @staticmethod
    def changed_inputs(record: dict | None, cfg) -> list[str]:
        """Inputs whose fingerprint in ``record`` differs from today's; records without fingerprints (cells named
        before inputs were fingerprinted) are judged by their config hash alone."""
        from embedgrid.grid.cellid import inputs
        from embedgrid.grid.provenance import changed_inputs

        recorded = ((record or {}).get("provenance") or {}).get("inputs")
        if not isinstance(recorded, dict):
            return []
        return changed_inputs(recorded, {i.name: i.fingerprint for i in inputs(cfg)})

    def model_owner(self) -> dict:
        """``{"cell", "config_hash"}`` of the saved model (``identity.json``; older models: encoder.json's name)."""
        identity = read_json(self.model_dir / IDENTITY_FILE)
        if isinstance(identity, dict):
            return identity
        try:
            spec = read_json(self.model_dir / SPEC_FILE) or {}
        except json.JSONDecodeError:
            spec = {}
        return {"cell": spec.get("name") if isinstance(spec, dict) else None}

    def write_model_identity(self, cfg) -> None:
        from embedgrid.grid.cellid import cell_name, config_hash

        write_json(self.model_dir / IDENTITY_FILE, {"cell": cell_name(cfg), "config_hash": config_hash(cfg)})

    def preflight(self, cfg) -> str:
        """Every check that needs no lock, for the sweeper's plan and a single run's start: returns the state."""
        self.check_is_cell_dir()
        self.check_same_config(cfg)
        if self.is_locked():
            raise CellBusy(f"{self.path} is being run by another process (pid {self.lock_holder()}); wait for it "
                           "or stop it before launching this cell again")
        return self.state(cfg)

    # ---- the lock ---------------------------------------------------------------------------------------------
    def lock_holder(self) -> str:
        try:
            return (self.path / LOCK_FILE).read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def is_locked(self) -> bool:
        import fcntl

        if not (self.path / LOCK_FILE).exists():
            return False
        with open(self.path / LOCK_FILE, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    @contextmanager
    def lock(self):
        """Exclusive lock on the cell for the lifetime of a run; released by the kernel if the process dies."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise CellBusy(f"{self.path} is being run by another process (pid {holder}); wait for it or stop "
                               "it before launching this cell again") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield

    # ---- claiming ---------------------------------------------------------------------------------------------
    def claim(self, cfg) -> dict:
        """Under the lock: refuse a foreign directory, skip a done cell, else mark it running. Returns the plan."""
        self.check_is_cell_dir()
        self.check_same_config(cfg)
        state = self.state(cfg)
        if state == DONE:
            return {"state": DONE, "scores": self.scores()}
        record = self.read_record() or {}
        started = time.time()
        self.record(cfg, status=RUNNING, attempts=int(record.get("attempts", 0)) + 1, started_at=started,
                    error=None)
        return {"state": state, "started": started, "trained": self.has_model}
