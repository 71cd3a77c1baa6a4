"""Hard-negative mining: every row's query is searched against a corpus (the rows' positives and negatives, plus
any extra documents) with an encoder, and the row gets the documents ranked in a window below its positive.

Search is exact: the corpus is embedded once into a memory-mapped array on disk, and each chunk of queries is
scored against it one corpus chunk at a time, keeping a running top list, so memory holds one chunk of scores
whatever the corpus size. (A training file's corpus is at most millions of documents, for which a chunked
matrix product is exact and costs less than embedding the corpus; an ANN index would add a dependency and lose
recall for no measured gain.)

Resumable: the work lives in ``<out>.mining/`` next to the output: the corpus embeddings with a progress marker,
and the mined rows appended chunk by chunk, each chunk committed (fsync, then an atomic progress marker holding
the committed byte size). A relaunch with the same inputs and settings truncates any uncommitted tail and
continues; chunk boundaries are fixed, so the result is the file an uninterrupted run writes. The output
appears, complete, by one rename at the end.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedgrid.errors import ConfigError, MiningConflict
from embedgrid.io import read_json, write_json

FORMAT = 1  # bump when what is written for the same inputs changes, so stale work directories are refused
Encode = Callable[[list[str], "str | None"], np.ndarray]  # (texts, instruction) -> (n, d) L2-normalised float32


@dataclass(frozen=True)
class MiningSettings:
    """``num_negatives`` per row, taken hardest first from the candidates ranked ``range_min`` to ``range_max``
    (0-based, the row's positive and any document equal to its query left out), each scoring at most
    ``positive - margin`` and at most ``max_fraction * positive`` (the false-negative guard; None: not applied).
    """

    num_negatives: int = 4
    range_min: int = 0
    range_max: int = 50
    margin: float | None = None
    max_fraction: float | None = 0.95
    keep_existing: bool = False
    drop_short: bool = False  # leave out rows that got fewer than num_negatives mined negatives
    chunk_size: int = 1024

    def __post_init__(self):
        checks = [
            ("num_negatives", self.num_negatives >= 1, ">= 1"),
            ("range_min", self.range_min >= 0, ">= 0"),
            ("range_max", self.range_max > self.range_min, f"> range_min ({self.range_min})"),
            ("range_max", self.range_max - self.range_min >= self.num_negatives,
             f">= range_min + num_negatives ({self.range_min + self.num_negatives})"),
            ("chunk_size", self.chunk_size >= 1, ">= 1"),
            ("margin", self.margin is None or np.isfinite(self.margin), "a finite number"),
            ("max_fraction", self.max_fraction is None or 0 < self.max_fraction <= 1, "in (0, 1]"),
        ]
        for key, ok, need in checks:
            if not ok:
                raise ConfigError(f"--{key.replace('_', '-')}={getattr(self, key)!r}: must be {need}")

    def threshold(self, positive: float) -> float:
        """The highest score a negative may have for a row whose positive scores ``positive``."""
        limit = float("inf")
        if self.margin is not None:
            limit = positive - self.margin
        if self.max_fraction is not None:
            limit = min(limit, positive * self.max_fraction if positive > 0 else positive)
        return limit


@dataclass
class Summary:
    rows: int = 0
    corpus: int = 0
    short: int = 0  # rows that got fewer than num_negatives mined negatives
    written: int = 0
    fewest: int | None = None
    guarded: int = 0  # candidates in the rank window dropped by the false-negative guard


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_corpus_file(path: Path) -> list[str]:
    """Extra documents: a JSONL file of strings or of objects with a ``text`` field; errors name ``file:line``."""
    texts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            text = item.get("text") if isinstance(item, dict) else item
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"{path}:{number}: expected a string or {{\"text\": ...}}, got {item!r}")
            texts.append(text)
    return texts


def corpus_texts(rows: Sequence, extra: Sequence[str] = ()) -> list[str]:
    """The documents searched: every row's positive and negatives, then ``extra``, each text once, in that order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.setdefault(row.positive)
        for negative in row.negatives:
            seen.setdefault(negative)
    for text in extra:
        seen.setdefault(text)
    return list(seen)


def select(ranked: np.ndarray, scores: np.ndarray, row, texts: list[str], positive_score: float,
           settings: MiningSettings, summary: Summary) -> list[str]:
    """A row's mined negatives from its candidates ``ranked`` (corpus indices, best first) and their scores."""
    excluded = {row.positive, row.query}
    kept = list(row.negatives) if settings.keep_existing else []
    limit = settings.threshold(positive_score)
    rank = -1
    mined = []
    for index, score in zip(ranked, scores):
        text = texts[index]
        if text in excluded:
            continue
        rank += 1
        if rank < settings.range_min:
            continue
        if rank >= settings.range_max or len(mined) == settings.num_negatives:
            break
        if score > limit:
            summary.guarded += 1
            continue
        if text not in kept and text not in mined:
            mined.append(text)
    if len(mined) < settings.num_negatives:
        summary.short += 1
    summary.fewest = len(mined) if summary.fewest is None else min(summary.fewest, len(mined))
    return kept + mined


def top_candidates(queries: np.ndarray, corpus: np.ndarray, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``k`` (indices, scores), best first and ties by index, of ``queries @ corpus.T``, reading the
    corpus one chunk at a time (memory: a (queries, chunk + k) score block)."""
    n = len(queries)
    best_idx = np.empty((n, 0), dtype=np.int64)
    best = np.empty((n, 0), dtype=np.float32)
    for start in range(0, len(corpus), chunk):
        block = np.asarray(corpus[start:start + chunk], dtype=np.float32)
        scores = np.concatenate([best, queries @ block.T], axis=1)
        index = np.concatenate([best_idx, np.broadcast_to(np.arange(start, start + len(block)), (n, len(block)))],
                               axis=1)
        if scores.shape[1] > k:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores, index = np.take_along_axis(scores, part, 1), np.take_along_axis(index, part, 1)
        best, best_idx = scores, index
    order = np.lexsort((best_idx, -best), axis=1)
    return np.take_along_axis(best_idx, order, 1), np.take_along_axis(best, order, 1)


class WorkDir:
    """``<out>.mining/``: manifest, corpus embeddings + marker, mined rows + marker."""

    def __init__(self, out: Path):
        self.path = out.with_name(out.name + ".mining")
        self.manifest = self.path / "manifest.json"
        self.corpus = self.path / "corpus.npy"
        self.corpus_done = self.path / "corpus_progress.json"
        self.rows = self.path / "rows.jsonl"
        self.rows_done = self.path / "rows_progress.json"

    def open(self, manifest: dict) -> None:
        """Start, or continue work begun with the same manifest; work begun otherwise is refused, by key."""
        if self.manifest.exists():
            try:
                previous = read_json(self.manifest)
            except (OSError, ValueError):
                previous = None
            if previous is None:  # torn: written before any other file, so nothing else can be trusted
                shutil.rmtree(self.path)
            elif previous != manifest:
                keys = sorted(k for k in set(previous) | set(manifest) if previous.get(k) != manifest.get(k))
                raise MiningConflict(
                    f"{self.path} holds mining begun with other {', '.join(keys)}; relaunch with the same inputs "
                    f"and settings to continue it, or delete that directory to start over")
        if not self.manifest.exists():
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(self.manifest, manifest)

    def progress(self, marker: Path) -> dict:
        try:
            return read_json(marker, default={}) or {}
        except (OSError, ValueError):  # a marker is written atomically; unreadable means someone edited it
            raise MiningConflict(f"{marker} is unreadable; delete {self.path} to start over") from None


def mine(rows: Sequence, out: str | os.PathLike, encode: Encode, settings: MiningSettings, *, dim: int,
         identity: dict, extra_corpus: Sequence[str] = (), progress: bool = True,
         commit: Callable[[int], None] | None = None) -> Summary:
    """Write ``out``: ``rows`` (a sequence of ``Row``) with mined negatives, resumably (module docstring).

    ``identity`` (inputs' fingerprints, the encoder) goes into the manifest with the settings: a relaunch that
    differs in any of them is refused rather than mixed with earlier work. ``commit`` is called with the number
    of rows committed after each chunk.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    work = WorkDir(out)
    if out.exists():
        if work.path.exists() and not work.rows.exists():  # finished, killed before its clean-up
            shutil.rmtree(work.path)
        raise MiningConflict(f"{out} exists; delete it or choose another output path")
    texts = corpus_texts(rows, extra_corpus)
    work.open({"format": FORMAT, "settings": asdict(settings), "dim": dim, "corpus_size": len(texts),
               "rows": len(rows), **identity})
    chunk = settings.chunk_size
    summary = Summary(rows=len(rows), corpus=len(texts))

    done = int(work.progress(work.corpus_done).get("done", 0))
    corpus = np.lib.format.open_memmap(work.corpus, mode="r+" if done else "w+", dtype=np.float32,
                                       shape=(len(texts), dim))
    with tqdm(total=len(texts), initial=done, desc="embed corpus", unit="doc", disable=not progress) as bar:
        for start in range(done, len(texts), chunk):
            corpus[start:start + chunk] = encode(texts[start:start + chunk], None)
            corpus.flush()
            write_json(work.corpus_done, {"done": min(start + chunk, len(texts))})
            bar.update(min(chunk, len(texts) - start))
    del corpus
    corpus = np.load(work.corpus, mmap_mode="r")
    position = {text: i for i, text in enumerate(texts)}

    state = work.progress(work.rows_done)
    done = int(state.get("done", 0))
    for key in ("short", "fewest", "guarded", "written"):
        setattr(summary, key, state.get(key, getattr(summary, key)))
    with open(work.rows, "ab") as f:
        f.truncate(int(state.get("bytes", 0)))  # drop an append the last run did not commit
    k = min(len(texts), settings.range_max + 2)  # + the positive and a document equal to the query
    with open(work.rows, "ab") as f, tqdm(total=len(rows), initial=done, desc="mine", unit="row",
                                          disable=not progress) as bar:
        for start in range(done, len(rows), chunk):
            batch = [rows[i] for i in range(start, min(start + chunk, len(rows)))]
            queries = np.empty((len(batch), dim), dtype=np.float32)
            for instruction in dict.fromkeys(row.instruction for row in batch):
                index = [i for i, row in enumerate(batch) if row.instruction == instruction]
                queries[index] = encode([batch[i].query for i in index], instruction)
            ranked, scores = top_candidates(queries, corpus, k, chunk)
            lines = []
            for i, row in enumerate(batch):
                positive = float(queries[i] @ np.asarray(corpus[position[row.positive]], dtype=np.float32))
                short = summary.short
                negatives = select(ranked[i], scores[i], row, texts, positive, settings, summary)
                if settings.drop_short and summary.short > short:
                    continue
                record = {"query": row.query, "positive": row.positive, "negatives": negatives}
                if row.instruction is not None:
                    record["instruction"] = row.instruction
                lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            summary.written += len(lines)
            f.write("".join(lines).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
            end = start + len(batch)
            write_json(work.rows_done, {"done": end, "bytes": f.tell(), "short": summary.short,
                                        "fewest": summary.fewest, "guarded": summary.guarded,
                                        "written": summary.written})
            bar.update(len(batch))
            if commit is not None:
                commit(end)
    os.replace(work.rows, out)
    shutil.rmtree(work.path)
    return summary
