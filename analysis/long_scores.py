"""scores_long.csv: every report's per-task, per-seed scores, one row each, with the design's factor columns.

A report carries it so that it can be re-analysed and planned from (``python -m analysis plan REPORT_DIR``)
without its sweep directory. Columns: design (the report's label), seed, task, category (without the in-domain
suffix), in_domain, score, then the factor columns model, pooling, attention and one column per ``--by`` key
(named by the key, e.g. ``train.max_steps``), then cell and grid.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from analysis.designs import Design
from cellfiles.atomic import write_csv

LONG_FILE = "scores_long.csv"
BASE_COLUMNS = ["design", "seed", "task", "category", "in_domain", "score"]
DESIGN_COLUMNS = ["model", "pooling", "attention"]
TRAILING_COLUMNS = ["cell", "grid"]
_PAPER_NUMBER = re.compile(r" \(#\d+\)$")


def long_frame(scores: pd.DataFrame, labels: dict[Design, str]) -> pd.DataFrame:
    """The collection's raw scores (design objects, categories without the in-domain suffix) as the long table."""
    keys = list(dict.fromkeys(k for d in labels for k, _ in d.extra))
    if scores.empty:
        return pd.DataFrame(columns=BASE_COLUMNS + DESIGN_COLUMNS + keys + TRAILING_COLUMNS)
    out = scores.assign(design=scores["design"].map(lambda d: labels[d]),
                        in_domain=scores["in_domain"].fillna(False).astype(bool))
    for key in keys:
        out[key] = scores["design"].map(lambda d, k=key: dict(d.extra).get(k))
    return out[BASE_COLUMNS + DESIGN_COLUMNS + keys + TRAILING_COLUMNS]


def write_long(path: str | Path, scores: pd.DataFrame, labels: dict[Design, str]) -> Path:
    return write_csv(path, long_frame(scores, labels))


def factor_columns(frame: pd.DataFrame) -> list[str]:
    """model, pooling, attention and the --by keys, in file order."""
    return [c for c in frame.columns if c not in BASE_COLUMNS + TRAILING_COLUMNS]


def read_long(path: str | Path) -> pd.DataFrame:
    """Read and check a scores_long.csv; ValueError naming the file and what is wrong."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the long scores table ({error}); regenerate it with "
                         f"python -m analysis SWEEP_DIR --out {path.parent}") from error
    missing = [c for c in BASE_COLUMNS + DESIGN_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(BASE_COLUMNS)}, "
                         f"{', '.join(DESIGN_COLUMNS)} and factor columns")
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")     # "" / "nan" → NaN
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce")
    frame["in_domain"] = frame["in_domain"].map(lambda v: v.strip().lower() in ("true", "1")).astype(bool)
    return frame


def designs_of(frame: pd.DataFrame) -> pd.Series:
    """Design objects rebuilt from the factor columns of a long table."""
    keys = [c for c in factor_columns(frame) if c not in DESIGN_COLUMNS]
    return frame.apply(lambda r: Design(r["model"], r["pooling"], r["attention"],
                                        tuple((k, r[k]) for k in keys)), axis=1)


def from_tables_csv(tables: pd.DataFrame) -> pd.DataFrame:
    """A report's tables.csv (per-task, per-seed rows with model/pooling/attention) as the long table; the --by
    keys are recovered from the design label ("pooling/attention/KEY=VALUE/..."), where they are the only parts
    with an "="."""
    rows = tables.copy()
    extras = rows["design"].map(lambda label: [part.split("=", 1) for part in
                                               _PAPER_NUMBER.sub("", label).split("/") if "=" in part])
    keys = list(dict.fromkeys(k for parts in extras for k, _ in parts))
    for key in keys:
        rows[key] = extras.map(lambda parts, k=key: dict(parts).get(k))
    rows["in_domain"] = rows["in_domain"].map(lambda v: str(v).strip().lower() in ("true", "1")).astype(bool)
    trailing = [c for c in TRAILING_COLUMNS if c in rows.columns]
    return rows[BASE_COLUMNS + DESIGN_COLUMNS + keys + trailing]


def derive_from_report(report_dir: str | Path) -> Path:
    """Write <report_dir>/scores_long.csv from its tables.csv (for reports written before the long table)."""
    report_dir = Path(report_dir)
    tables = pd.read_csv(report_dir / "tables.csv", dtype=str, keep_default_na=False)
    return write_csv(report_dir / LONG_FILE, from_tables_csv(tables))


if __name__ == "__main__":
    import sys

    for directory in sys.argv[1:]:
        print(derive_from_report(directory))
