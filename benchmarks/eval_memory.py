"""Evaluation memory: peak RSS of embedgrid's mteb path against mteb + sentence-transformers on the same vectors.

A synthetic retrieval task of distinct, real-looking documents (each joins two WordNet 3.0 synsets: lemmas, gloss,
a cross-reference) is evaluated at two corpus sizes with ``model=tiny`` by both systems, each in a fresh process:
embedgrid's ``MtebEncoder`` and sentence-transformers (mean pooling, no EOS, unit length: the same vectors, as in
tests/evaluate/test_eval.py) through ``mteb.evaluate``. Peak memory is measured once the model and the task are built, so
it is the evaluation's own peak, in two ways: the kernel's VmHWM watermark (reset then), and the peak of
anonymous RSS (RssAnon, sampled every 5 ms), which the goals are judged on because it leaves out file-backed
pages that a shared machine under memory pressure evicts at random. A third, reference system is embedgrid with
the cache it had before (every text of a task, documents included), to show what bounding it saves.

    python benchmarks/eval_memory.py                        # 50k and 200k documents
    python benchmarks/eval_memory.py --sizes 20000 80000    # smaller, on a busy machine

Prints a table and writes benchmarks/results/eval_memory.json. Goals: embedgrid's peak <= 1.1 x theirs at each
size, and embedgrid's growth from the small to the large corpus <= 1.1 x theirs; main scores equal.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import benchmarks.offline  # noqa: E402,F401  (offline settings, before the heavy imports)
from benchmarks.report import host, save, table  # noqa: E402

SYSTEMS = ("embedgrid", "sentence-transformers")
# embedgrid as it was before issue 15: every text of a task cached, documents included (a reference, not a goal)
CACHE_ALL = "embedgrid-cache-all"
QUERIES = 500
MAX_LENGTH = 64


def documents(n: int) -> tuple[list[str], list[str], dict[str, dict[str, int]]]:
    """``n`` distinct documents, ``QUERIES`` queries (a synset's gloss) and their relevant documents.

    Document i pairs synset a = i mod S with a partner offset by the lap i // S, so no two documents are equal.
    """
    from embedgrid.data.wordnet import load_synsets

    synsets = sorted((s for s in load_synsets().values() if s.definition), key=lambda s: s.id)
    count = len(synsets)
    docs = []
    for i in range(n):
        a = synsets[i % count]
        b = synsets[(i * 7919 + 1 + (i // count) * 104729) % count]
        docs.append(f"{', '.join(a.words)}: {a.definition}. Compare {', '.join(b.words[:2])} ({b.definition}).")
    if len(set(docs)) != n:
        raise SystemExit("synthetic corpus has duplicate documents")
    step = max(1, min(n, count) // QUERIES)
    queries, relevant = [], {}
    for q in range(QUERIES):
        a = (q * step) % min(n, count)
        queries.append(synsets[a].definition)
        relevant[f"q{q}"] = {f"d{i}": 1 for i in range(a, n, count)}
    return docs, queries, relevant


def make_task(n: int):
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    from embedgrid.evaluate.tasks.common import task_metadata

    docs, queries, relevant = documents(n)

    class SyntheticWordNetRetrieval(AbsTaskRetrieval):
        metadata = task_metadata(
            name="SyntheticWordNetRetrieval", description="Benchmark only: glosses find joined WordNet entries.",
            reference="https://wordnet.princeton.edu/", type="Retrieval", main_score="ndcg_at_10",
            dataset={"path": "benchmark/synthetic-wordnet", "revision": f"n={n}"}, date=("1990-01-01", "2006-12-31"),
            domains=["Written"], license="not specified", annotations_creators="derived")

        def load_data(self, num_proc=None, **kwargs):
            if self.data_loaded:
                return
            self.dataset = {"default": {"test": RetrievalSplitData(
                queries=Dataset.from_dict({"id": [f"q{i}" for i in range(len(queries))], "text": queries}),
                corpus=Dataset.from_dict({"id": [f"d{i}" for i in range(n)], "title": [""] * n, "text": docs}),
                relevant_docs=relevant, top_ranked=None)}}
            self.data_loaded = True

    task = SyntheticWordNetRetrieval()
    task.load_data()
    return task


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def vm_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class AnonPeak:
    """Peak anonymous RSS (RssAnon), sampled every 5 ms on a thread: unlike VmHWM it leaves out file-backed pages
    (shared libraries, mapped weights), which a shared machine under memory pressure evicts at random."""

    def __init__(self):
        import threading

        self.peak, self._stop = status_mib("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, status_mib("RssAnon"))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, status_mib("RssAnon"))


def status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status (Linux only)")


def worker(system: str, n: int, batch_size: int) -> dict:
    """One measurement in this (fresh) process: build, reset the watermark, evaluate, read it."""
    import gc

    import mteb
    import torch
    from sentence_transformers.sentence_transformer.modules import Normalize

    from benchmarks.encode import CHECKPOINTS, build_ours, build_sentence_transformers
    from embedgrid.model.backbone import resolve_checkpoint
    from embedgrid.evaluate.model import MtebEncoder

    torch.set_num_threads(1)
    ours = build_ours("tiny", MAX_LENGTH, "sdpa", append_eos=False)
    if system in ("embedgrid", CACHE_ALL):
        if system == CACHE_ALL:
            import embedgrid.evaluate.model as mteb_model

            mteb_model.UNCACHED_ROLES = ()
        model = MtebEncoder(ours, "embedgrid/eval-memory", "r0", batch_size=batch_size, show_progress_bar=False,
                            cache_max_texts=10**12 if system == CACHE_ALL else 50_000)
    else:
        model = build_sentence_transformers(resolve_checkpoint(CHECKPOINTS["tiny"]), ours.dim, MAX_LENGTH, "sdpa")
        model.append(Normalize())
        del ours
    task = make_task(n)
    gc.collect()
    setup, setup_anon = vm_rss_mib(), status_mib("RssAnon")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    anon = AnonPeak()
    started = time.perf_counter()
    result = mteb.evaluate(model, task, cache=None, encode_kwargs={"batch_size": batch_size},
                           show_progress_bar=False)
    peak_anon = anon.stop()
    return {"system": system, "docs": n, "setup_rss_mib": round(setup, 1), "peak_rss_mib": round(vm_hwm_mib(), 1),
            "setup_anon_mib": round(setup_anon, 1), "peak_anon_mib": round(peak_anon, 1),
            "seconds": round(time.perf_counter() - started, 1),
            "main_score": float(result.task_results[0].get_score())}


def measure(system: str, n: int, batch_size: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", system, "--sizes", str(n),
                          "--batch-size", str(batch_size)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{system} at {n} docs failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-cache-all", action="store_true",
                        help=f"skip the {CACHE_ALL} reference runs (the pre-issue-15 cache)")
    parser.add_argument("--worker", choices=(*SYSTEMS, CACHE_ALL), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/eval_memory.json)")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.sizes[0], args.batch_size)))
        return {}
    if len(args.sizes) != 2:
        parser.error("--sizes takes two corpus sizes (small, large)")

    runs = {}
    systems = SYSTEMS if args.no_cache_all else (*SYSTEMS, CACHE_ALL)
    for n in args.sizes:
        for system in systems:
            runs[(system, n)] = measure(system, n, args.batch_size)
            print(f"  {system:<22} {n:>8} docs: peak {runs[(system, n)]['peak_rss_mib']:.0f} MiB "
                  f"({runs[(system, n)]['seconds']} s)", flush=True)
    small, large = args.sizes
    ours, theirs = SYSTEMS
    score_diff = max(abs(runs[(ours, n)]["main_score"] - runs[(theirs, n)]["main_score"]) for n in args.sizes)
    table(("docs", "system", "setup RSS MiB", "eval peak RSS (VmHWM) MiB", "setup anon MiB", "eval peak anon MiB",
           "seconds", "nDCG@10"),
          ((f"{n:,}", s, f"{r['setup_rss_mib']:.0f}", f"{r['peak_rss_mib']:.0f}", f"{r['setup_anon_mib']:.0f}",
            f"{r['peak_anon_mib']:.0f}", r["seconds"], f"{r['main_score']:.5f}")
           for n in args.sizes for s in systems for r in (runs[(s, n)],)), lead="\n")
    metrics = {}
    for metric, key in (("anon", "peak_anon_mib"), ("vmhwm", "peak_rss_mib")):
        growth = {s: runs[(s, large)][key] - runs[(s, small)][key] for s in systems}
        peak_ratio = {n: runs[(ours, n)][key] / runs[(theirs, n)][key] for n in args.sizes}
        growth_ratio = growth[ours] / growth[theirs] if growth[theirs] > 0 else float("inf")
        metrics[metric] = {"peak_ratio": {str(n): round(v, 4) for n, v in peak_ratio.items()},
                           "growth_mib": {k: round(v, 1) for k, v in growth.items()},
                           "growth_ratio": round(growth_ratio, 4)}
        print(f"\n{metric}: peak ratio embedgrid / theirs " + ", ".join(f"{n:,}: {peak_ratio[n]:.3f}" for n in
                                                                       args.sizes) + " (goal <= 1.1); growth "
              f"{small:,} -> {large:,}: embedgrid {growth[ours]:.0f} MiB, theirs {growth[theirs]:.0f} MiB, ratio "
              f"{growth_ratio:.3f} (goal <= 1.1)" + (f"; pre-issue-15 cache of every text: {growth[CACHE_ALL]:.0f} "
                                                      "MiB" if CACHE_ALL in systems else ""))
    print(f"largest main-score difference: {score_diff:.2e}")
    anon = metrics["anon"]
    result = {
        "benchmark": "eval_memory", "model": "tiny", "max_length": MAX_LENGTH, "batch_size": args.batch_size,
        "queries": QUERIES, "sizes": args.sizes, "runs": list(runs.values()), "metrics": metrics,
        "max_score_diff": score_diff,
        "goals_met": all(v <= 1.1 for v in anon["peak_ratio"].values()) and anon["growth_ratio"] <= 1.1
        and score_diff < 1e-4,
        "machine": host(),
    }
    save(result, args.out, "eval_memory.json")
    return result


if __name__ == "__main__":
    main()
