"""The cell directory: its file names, its states, its record, its lock and the checks that guard it.

  cell.json              record: config (secrets redacted), config hash, provenance (code, libraries, device,
                         input fingerprints, identity version), status, timings, versions, errors
  scores.json            {task: {category, main_score, eval_settings, ...}}
  category_scores.json   per-category means of the scores
  model/                 encoder.json + identity.json + adapter/ (LoRA) + pooling.safetensors → load_encoder
  checkpoints/last/      training state for resume
  mteb/                  mteb's own result cache
  .lock                  held (flock) by the process running the cell
  *.corrupt-<time>       a torn file (or model/) moved aside when the cell rebuilt it

A directory is a cell directory when it has a ``cell.json``, or holds nothing but what Hydra and the launcher
write before the first record (``.hydra/``, ``*.log``, ``.lock``) plus, optionally, a ``model/`` (whose
identity is then checked). Anything else is somebody's data and is refused before a file is written.
This module stays light (no torch, no Hydra): the sweeper's plan step uses it for every cell. What it knows of
the cell comes from its plan (embedgrid.grid.plan.CellPlan), never from the composed config.
"""
from __future__ import annotations

import logging
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cellfiles.layout import (CATEGORY_SCORES_FILE, CELL_FILE, CHECKPOINT_DIR, HYDRA_DIR, IDENTITY_FILE,
                              LOCK_FILE, MODEL_DIR, MTEB_DIR, SCORES_FILE)
from embedgrid.errors import CellBusy, CellConflict, CorruptCellRecord, TornFile
from embedgrid.io import file_integrity, move_aside, read_json, write_json
from embedgrid.model.saved import SPEC_FILE

if TYPE_CHECKING:
    from embedgrid.grid.plan import CellPlan

log = logging.getLogger(__name__)

DONE, PARTIAL, NEW, FAILED, RUNNING = "done", "partial", "new", "failed", "running"
EVAL_PENDING = "eval_pending"  # trained and saved; its tasks are scored by evaluation shard jobs (eval.shards)
CORRUPT = "corrupt"  # a planned cell with a torn file: rebuilt when it runs (a torn cell.json: not launched)

# what may exist in a directory before its first cell.json (Hydra's output subdir, its job log, our lock)
PRE_RECORD_ENTRIES = (HYDRA_DIR, LOCK_FILE, MODEL_DIR)


def saved_encoder_dir(directory) -> Path:
    """The saved encoder of a cell directory (its ``model/``), or ``directory`` itself when it is one."""
    directory = Path(directory)
    if not (directory / SPEC_FILE).exists() and (directory / MODEL_DIR / SPEC_FILE).exists():
        return directory / MODEL_DIR
    return directory


class CellDir:
    """One cell's directory. ``plan`` arguments are the cell's plan (its identity, evaluation and config)."""

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
        except TornFile as error:
            raise CorruptCellRecord(f"{error}; move it away (the cell then "
                                    "reruns, resuming from its checkpoints) or restore it") from None
        if record is not None and not isinstance(record, dict):
            raise CorruptCellRecord(f"{self.record_file} holds a {type(record).__name__}, not a cell record; move "
                                    "it away or restore it")
        return record

    def record(self, plan: CellPlan, **fields) -> dict:
        """Merge ``fields`` (and the cell's identity, config and versions) into ``cell.json``, atomically."""
        from embedgrid.grid.provenance import provenance
        from embedgrid.secrets import redact
        from embedgrid.versions import package_versions

        record = self.read_record() or {}
        record.update({
            "cell": plan.identity.name, "config_hash": plan.identity.config_hash,
            "design": plan.identity.design,
            "grid": plan.runtime.grid,
            "config": plan.saved_config(),
            "versions": package_versions(),
            "provenance": provenance(plan),
        })
        record.update(fields)
        write_json(self.record_file, redact(record))  # errors and tracebacks too
        return record

    def scores(self) -> dict | None:
        return read_json(self.scores_file)

    # ---- torn files -------------------------------------------------------------------------------------------
    def torn_files(self, verify_hashes: bool = True) -> list[tuple[Path, str]]:
        """Every file the cell reads back that is torn, as ``(path to move aside, why)``: ``scores.json``,
        ``category_scores.json``, mteb's result files, and ``model/`` as a whole when its ``identity.json`` is
        unreadable or a file differs from the size (and, with ``verify_hashes``, the sha256) recorded there."""
        torn = []
        for path in (self.scores_file, self.category_scores_file, *sorted(self.mteb_dir.rglob("*.json"))):
            try:
                data = read_json(path)
            except (TornFile, OSError) as error:
                torn.append((path, str(error)))
                continue
            if data is not None and not isinstance(data, dict):
                torn.append((path, f"{path} holds a {type(data).__name__}, not a JSON object"))
        model_problem = self.model_problem(verify_hashes)
        if model_problem:
            torn.append((self.model_dir, model_problem))
        return torn

    def model_problem(self, verify_hashes: bool = True) -> str | None:
        """Why the saved model cannot be trusted (None when it is intact or absent)."""
        if not self.model_dir.is_dir() or not self.has_model:
            return None
        try:
            identity = read_json(self.model_dir / IDENTITY_FILE)
        except (TornFile, OSError) as error:
            return str(error)
        if identity is not None and not isinstance(identity, dict):
            return f"{self.model_dir / IDENTITY_FILE} holds a {type(identity).__name__}, not a JSON object"
        recorded = (identity or {}).get("files")
        if not isinstance(recorded, dict):  # saved before integrity was recorded: nothing to compare
            return None
        for rel, expected in recorded.items():
            path = self.model_dir / rel
            if not path.is_file():
                return f"{path} is missing"
            if path.stat().st_size != expected.get("size"):
                return f"{path} has {path.stat().st_size} bytes, {expected.get('size')} were written"
        if verify_hashes:
            actual = file_integrity(self.model_dir, skip=(IDENTITY_FILE,))
            for rel, expected in recorded.items():
                if actual.get(rel, {}).get("sha256") != expected.get("sha256"):
                    return f"{self.model_dir / rel} differs from the sha256 recorded in {IDENTITY_FILE}"
        return None

    def check_intact(self, verify_hashes: bool = False) -> None:
        """Raise TornFile naming every torn file (the plan's check; ``heal`` repairs them)."""
        torn = self.torn_files(verify_hashes)
        if torn:
            raise TornFile("; ".join(why for _, why in torn) + " (rebuilt when the cell runs: moved aside, then "
                           "re-evaluated or rebuilt from the checkpoints)", torn[0][0])

    def heal(self) -> list[Path]:
        """Under the lock: move every torn file aside (``<name>.corrupt-<time>``), so what depends on it is
        rebuilt: an mteb result re-evaluated, ``scores.json`` / ``category_scores.json`` from the mteb cache,
        ``model/`` from ``checkpoints/last`` (or retrained from the last good checkpoint)."""
        moved = []
        for path, why in self.torn_files(verify_hashes=True):
            if path.exists():
                aside = move_aside(path)
                log.warning("%s; moved to %s and rebuilt", why, aside)
                moved.append(aside)
        return moved

    def remove_stale_temps(self) -> None:
        """Under the lock: temp files and directories a killed writer left (``.<name>.*.tmp``)."""
        for parent in (self.path, self.model_dir, self.checkpoint_dir):
            if not parent.is_dir():
                continue
            for stale in parent.glob(".*.tmp*"):
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)

    def write_scores(self, scores: dict) -> None:
        write_json(self.scores_file, scores)

    def write_category_scores(self, categories: dict) -> None:
        write_json(self.category_scores_file, categories)

    # ---- states -----------------------------------------------------------------------------------------------
    def state(self, plan: CellPlan | None = None) -> str:
        """done | partial | failed | new (done only if every requested task is scored under these settings).

        A torn file the cell reads back raises TornFile (``heal`` moves it aside; the cell is then partial)."""
        record = self.read_record()
        self.check_intact()
        if record is None:
            return NEW
        status = record.get("status")
        if status == DONE and plan is not None and (not self.scores_cover(plan)
                                                   or not self.category_scores_file.exists()):
            return PARTIAL
        if status in (DONE, FAILED):
            return status
        return PARTIAL

    def scores_cover(self, plan: CellPlan) -> bool:
        """The eval-settings check: every task of ``plan.eval`` is in scores.json, scored under its settings."""
        return not self.unscored(plan)

    def unscored(self, plan: CellPlan) -> list[str]:
        """The tasks of ``plan.eval`` that scores.json does not hold scored under its settings."""
        from embedgrid.evaluate.run import unscored_tasks

        return unscored_tasks(read_json(self.scores_file, {}) or {}, plan.eval, plan.prompt)

    # ---- guards -----------------------------------------------------------------------------------------------
    def check_is_cell_dir(self) -> None:
        """Refuse a directory that is not (yet) a cell directory: see the module docstring for what counts."""
        self.check_no_links()
        if not self.path.exists() or self.record_file.exists():
            return
        if not self.path.is_dir():
            raise CellConflict(f"{self.path} is a file, not a cell directory; choose another hydra.run.dir / "
                               "hydra.sweep.dir")
        foreign = sorted(p.name for p in self.path.iterdir()
                         if p.name not in PRE_RECORD_ENTRIES and not p.name.endswith(".log")
                         and not p.name.startswith(f"{MODEL_DIR}.corrupt-"))
        if foreign:
            raise CellConflict(f"{self.path} is not a cell directory (no {CELL_FILE}, and it holds "
                               f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}); nothing was "
                               "written. Choose another hydra.run.dir / hydra.sweep.dir, or empty it")

    def check_no_links(self) -> None:
        """Nothing is written through a symbolic link inside the cell directory (a ``launch.log`` linked to
        another file would have the log appended there): refuse, naming the link."""
        if not self.path.is_dir() or self.path.is_symlink():
            return
        for parent in (self.path, self.path / HYDRA_DIR, self.model_dir, self.checkpoint_dir):
            if parent.is_symlink():
                links = [parent]
            elif parent.is_dir():
                links = [p for p in parent.iterdir() if p.is_symlink()]
            else:
                continue
            if links:
                raise CellConflict(f"{links[0]} is a symbolic link (to {os.readlink(links[0])}); embedgrid never "
                                   "writes through a link in a cell directory. Remove the link (or choose another "
                                   "hydra.run.dir / hydra.sweep.dir); nothing was written")

    def check_same_config(self, plan: CellPlan) -> None:
        """Refuse a directory whose record or saved model belongs to another config."""
        record = self.read_record()
        wanted, name = plan.identity.config_hash, plan.identity.name
        changed = self.changed_inputs(record, plan)
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
            if owner.get("config_hash") != wanted and owner.get("cell") != name:
                raise CellConflict(f"{self.model_dir} holds the model of {owner.get('cell') or 'another cell'} "
                                   f"(config {owner.get('config_hash') or 'unknown'}), not of {name}; "
                                   "it would be evaluated under the wrong design. Remove it or choose another "
                                   "hydra.run.dir / hydra.sweep.dir")

    @staticmethod
    def changed_inputs(record: dict | None, plan: CellPlan) -> list[str]:
        """Inputs whose fingerprint in ``record`` differs from today's; records without fingerprints (cells named
        before inputs were fingerprinted) are judged by their config hash alone."""
        from embedgrid.grid.provenance import changed_inputs

        recorded = ((record or {}).get("provenance") or {}).get("inputs")
        if not isinstance(recorded, dict):
            return []
        return changed_inputs(recorded, plan.provenance.fingerprints())

    def model_owner(self) -> dict:
        """``{"cell", "config_hash"}`` of the saved model (``identity.json``; older models: encoder.json's name)."""
        try:
            identity = read_json(self.model_dir / IDENTITY_FILE)
        except TornFile:
            identity = None
        if isinstance(identity, dict):
            return identity
        try:
            spec = read_json(self.model_dir / SPEC_FILE) or {}
        except TornFile:
            spec = {}
        return {"cell": spec.get("name") if isinstance(spec, dict) else None}

    # ---- evaluations of one trained model in several directories (eval.truncate_dim) ------------------------------
    def shares_model(self, plan: CellPlan) -> bool:
        """Whether this cell is one of several evaluations of one trained model: it has an evaluation suffix
        (``-dim<k>``), or a sibling directory is such an evaluation of it."""
        if plan.identity.eval_suffix:
            return True
        prefix = plan.identity.base_name + "-dim"
        return self.path.parent.is_dir() and any(p.name.startswith(prefix) for p in self.path.parent.iterdir())

    @contextmanager
    def model_family_lock(self, plan: CellPlan):
        """Held while a cell that shares its trained model with siblings (``-dim<k>`` directories) adopts or trains
        it, so two of them launched together train once: the second waits, then adopts the first's model."""
        import fcntl
        import logging

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / f".{plan.identity.config_hash}.model.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logging.getLogger(__name__).info("waiting for another evaluation of this model to finish training")
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def adopt_model(self, plan: CellPlan) -> Path | None:
        """Copy the saved model of a sibling cell of the same identity (same base name and config hash) into this
        cell's ``model/``, with the sibling's training record; returns the sibling, None when there is none."""
        import shutil
        import tempfile

        if self.has_model or not self.path.parent.is_dir():
            return None
        base, wanted = plan.identity.base_name, plan.identity.config_hash
        for sibling in sorted(self.path.parent.iterdir()):
            other = CellDir(sibling)
            if sibling == self.path or not sibling.name.startswith(base) or not other.has_model:
                continue
            try:
                identity = read_json(other.model_dir / IDENTITY_FILE, None)  # written last: the model is complete
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if not isinstance(identity, dict) or identity.get("config_hash") != wanted:
                continue
            self.path.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".model.", dir=self.path))
            try:
                shutil.copytree(other.model_dir, staging / MODEL_DIR)
                os.replace(staging / MODEL_DIR, self.model_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            self.write_model_identity(plan)
            record = other.read_record() or {}
            self.record(plan, train={**(record.get("train") or {}), "model_from": sibling.name})
            return sibling
        return None

    def write_model_identity(self, plan: CellPlan, directory: Path | None = None) -> None:
        """``identity.json``: whose model this is, and the size + sha256 of each of its files (checked before
        the model is loaded). ``directory``: where the model is being written (default ``model/``)."""
        directory = Path(directory or self.model_dir)
        write_json(directory / IDENTITY_FILE, {"cell": plan.identity.name, "config_hash": plan.identity.config_hash,
                                               "files": file_integrity(directory, skip=(IDENTITY_FILE,))})

    def preflight(self, plan: CellPlan) -> str:
        """Every check that needs no lock, for the sweeper's plan and a single run's start: returns the state."""
        self.check_is_cell_dir()
        self.check_intact()
        self.check_same_config(plan)
        if self.is_locked():
            raise CellBusy(f"{self.path} is being run by another process (pid {self.lock_holder()}); wait for it "
                           "or stop it before launching this cell again")
        return self.state(plan)

    # ---- the lock ---------------------------------------------------------------------------------------------
    def lock_holder(self) -> str:
        try:
            return (self.path / LOCK_FILE).read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    @property
    def read_only(self) -> bool:
        """The directory exists and cannot be written (a read-only file system or mount)."""
        return self.path.is_dir() and not os.access(self.path, os.W_OK)

    def is_locked(self) -> bool:
        import fcntl

        if not (self.path / LOCK_FILE).exists():
            return False
        with open(self.path / LOCK_FILE, "r") as handle:  # flock needs no write access (read-only mounts)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    @contextmanager
    def lock(self, wait: bool = False):
        """Exclusive lock on the cell for the lifetime of a run; released by the kernel if the process dies.
        ``wait``: block until it is free (an evaluation shard recording its scores) instead of refusing."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
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
    def claim(self, plan: CellPlan) -> dict:
        """Under the lock: refuse a foreign directory, remove stale temp files, move torn files aside (they are
        rebuilt), skip a done cell, else mark it running. Returns ``{state, scores}`` of a done cell, else
        ``{state, started, trained}``."""
        self.check_is_cell_dir()
        self.remove_stale_temps()
        moved = self.heal()
        self.check_same_config(plan)
        state = self.state(plan)
        if state == DONE and moved:
            state = PARTIAL  # a done cell's torn model or mteb result is rebuilt too (the rest comes from caches)
        if state == DONE:
            return {"state": DONE, "scores": self.scores()}
        record = self.read_record() or {}
        started = time.time()
        self.record(plan, status=RUNNING, attempts=int(record.get("attempts", 0)) + 1, started_at=started,
                    error=None)
        return {"state": state, "started": started, "trained": self.has_model}
