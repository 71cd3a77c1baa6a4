"""What a person sees in the terminal: phase lines, two progress bars, warnings that matter, a results table.

Everything else (mteb's and transformers' INFO output, per-task details, the full scores) goes to the cell's
``launch.log`` through Hydra's file handler (``conf/hydra/job_logging/embedgrid.yaml``). ``verbose=true`` turns
the filter off and restores the libraries' own progress bars.
"""
from __future__ import annotations

import logging
import os
import sys

# warnings the libraries raise on every run that say nothing about the user's run
ROUTINE_WARNINGS = ("is_gradient_checkpointing", "get_sentence_embedding_dimension", "tokenizer_name_or_path",
                    "UndefinedMetricWarning")  # sklearn, on mteb's small classification folds


class QuietConsole(logging.Filter):
    """Console filter: embedgrid's own INFO lines and anyone's WARNING and above, unless ``verbose``."""

    verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        if QuietConsole.verbose:
            return True
        if getattr(record, "console", True) is False:  # log.info(..., extra={"console": False}): launch.log only
            return False
        if record.levelno >= logging.WARNING:
            return not (record.name == "py.warnings" and any(w in record.getMessage() for w in ROUTINE_WARNINGS))
        return record.name == "embedgrid" or record.name.startswith(("embedgrid.", "__main__"))


class LogFile(logging.FileHandler):
    """The cell's ``launch.log`` (Hydra's file handler). Opened without following a symbolic link; where it
    cannot be opened (a read-only file system, a link) the records go to stderr, with one line saying why."""

    def _open(self):
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if "a" in self.mode else os.O_TRUNC)
        try:
            fd = os.open(self.baseFilename, flags, 0o666)
        except OSError as error:
            self.fallback = True
            sys.stderr.write(f"[embedgrid] cannot write {self.baseFilename} ({error.strerror}); logging to stderr\n")
            return sys.stderr
        return os.fdopen(fd, self.mode.replace("+", ""), encoding=self.encoding, errors=self.errors)

    def close(self):
        if getattr(self, "fallback", False):
            self.stream = None  # never close stderr
        super().close()


def is_verbose() -> bool:
    return QuietConsole.verbose


def configure(verbose: bool) -> None:
    """Apply the console policy for this process (called once per cell, before anything heavy loads)."""
    QuietConsole.verbose = bool(verbose)
    logging.captureWarnings(True)  # python warnings become log records: in launch.log, filtered on the console
    if verbose:
        return
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # every other library's tqdm bars (mteb's corpus search, datasets' map): tqdm reads TQDM_* as its defaults,
    # and embedgrid's own two bars pass disable=False explicitly
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars on every load
    except Exception:  # noqa: BLE001 - transformers not importable is not the console's problem
        pass


def category_table(category_scores: dict, title: str = "") -> str:
    """A compact table from ``category_scores.json``, split as the analysis reports it: the out-of-domain
    categories (mean of main scores, task count) and their averages (of the category means, and of the tasks),
    then the in-domain categories apart, then each category not evaluated with the reason."""
    own = category_scores.get("in_domain") or {}
    sections = [("", category_scores), (" (in-domain)", own)]
    names = [c + suffix for suffix, part in sections for c in (part.get("means") or {})]
    width = max([len(c) for c in names] + [len("average of categories"), len("category")])
    lines = [title] if title else []
    lines.append(f"  {'category':<{width}}  {'mean':>7}  tasks")
    for suffix, part in sections:
        means, counts = part.get("means") or {}, part.get("tasks_per_category") or {}
        if suffix and means:
            lines.append("  in-domain (their text is in the training data; not in the averages above):")
        for name, value in means.items():
            lines.append(f"  {name + suffix:<{width}}  {value:7.4f}  {counts.get(name, 0):>5}")
        if not suffix and part.get("average_of_category_means") is not None:
            total = sum(counts.values())
            lines.append(f"  {'average of categories':<{width}}  {part['average_of_category_means']:7.4f}  "
                         f"{total:>5}")
            if part.get("mean_of_tasks") is not None:
                lines.append(f"  {'average of tasks':<{width}}  {part['mean_of_tasks']:7.4f}  {total:>5}")
    by_reason: dict[str, list[str]] = {}
    for name, why in (category_scores.get("not_evaluated") or {}).items():
        by_reason.setdefault(why, []).append(name)
    if by_reason:
        lines.append("  not evaluated: " + "; ".join(f"{', '.join(names)} ({why})" for why, names in by_reason.items()))
    return "\n".join(lines)
