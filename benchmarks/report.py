"""How a benchmark ends: its table printed in Markdown, the machine it ran on, its JSON written atomically
(``--out`` or benchmarks/results/<name>) and the path printed."""
from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path

from cellfiles.atomic import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def table(header: Iterable[str], rows: Iterable[Iterable] = (), lead: str = "") -> None:
    """A Markdown table: the header, its rule, then each row's cells as given (already formatted).
    ``lead`` goes before the header line (a blank line: ``"\\n"``)."""
    header = list(header)
    print(f"{lead}| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def cpu(load: bool = True) -> dict:
    """The processor and core count a timing was taken on, and the load average of a shared machine."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    return {**info, "load_average": os.getloadavg()} if load else info


def host(cpus: bool = True) -> dict:
    """The platform (and CPU count) and Python version a memory measurement was taken on."""
    info = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    if not cpus:
        del info["cpus"]
    return info


def save(result: dict, out: str | os.PathLike | None, default: str, quiet: bool = False) -> Path:
    """Write ``result`` as JSON to ``out``, or to benchmarks/results/``default``; print where unless ``quiet``."""
    path = Path(out) if out else RESULTS / default
    write_json(path, result)
    if not quiet:
        print(f"wrote {path}")
    return path
