"""Encoding throughput: embedgrid's ``Encoder.encode`` against sentence-transformers on the same backbone.

Both sides run the same checkpoint (LoRA off, so the work is equal), mean pooling, L2 normalisation, the same
batch size, max length, thread count and texts, in one process. sentence-transformers gets each text with the
EOS token appended (its tokenizer parses it as the special token), so both embed exactly the same token ids;
an equivalence check confirms the two produce the same vectors before anything is timed.

    python benchmarks/encode.py --model tiny
    python benchmarks/encode.py --model smollm2_135m

Prints a table and writes benchmarks/results/encode_<model>.json. Goal: ratio (ours / sentence-transformers
texts per second) >= 1.0.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHECKPOINTS = {
    "tiny": {"_target_": "embedgrid.assets.tiny_checkpoint"},
    "smollm2_135m": {"_target_": "embedgrid.assets.smollm2_135m_checkpoint"},
}
DEFAULT_TEXTS = {"tiny": 3000, "smollm2_135m": 600}
DEFAULT_REPEATS = {"tiny": 3, "smollm2_135m": 1}


def corpus(n: int, seed: int = 0) -> list[str]:
    """Texts of varied length: WordNet glosses (short), Lee sentences (medium), Lee documents (long)."""
    from embedgrid.assets import package_file
    from embedgrid.data.wordnet import load_synsets

    lee = package_file("gensim", "test/test_data/lee_background.cor", "pip install --no-deps gensim==4.4.0")
    docs = [d.strip() for d in lee.read_text(encoding="latin-1").splitlines() if d.strip()]
    sentences = [s.strip() + "." for d in docs for s in d.split(". ") if len(s.split()) > 3]
    glosses = sorted({s.definition for s in load_synsets().values() if s.definition})
    rng = random.Random(seed)
    mix = [(glosses, 0.5), (sentences, 0.3), (docs, 0.2)]
    texts = []
    for pool, share in mix:
        texts += rng.choices(pool, k=round(n * share))
    rng.shuffle(texts)
    return texts[:n]


def build_ours(model: str, max_length: int, attn_implementation: str, append_eos: bool = True):
    from embedgrid.encoder import build_encoder
    from embedgrid.spec import EncoderSpec, LoraSpec

    spec = EncoderSpec(checkpoint=CHECKPOINTS[model], pooling={"_target_": "embedgrid.pooling.MeanPooling"},
                       attention="causal", max_length=max_length, attn_implementation=attn_implementation,
                       append_eos=append_eos, lora=LoraSpec(enabled=False))
    return build_encoder(spec).eval()


def build_sentence_transformers(path: str, dim: int, max_length: int, attn_implementation: str):
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from sentence_transformers.base.modules import Transformer

    tokenizer_dir = os.path.join(path, "tokenizer")  # offline assets keep it beside, not with, config.json
    # Plain text modality: sentence-transformers 6 would otherwise wrap every text in the tokenizer's chat template.
    transformer = Transformer(path, tokenizer_name_or_path=tokenizer_dir if os.path.isdir(tokenizer_dir) else None,
                              max_seq_length=max_length,
                              model_kwargs={"dtype": torch.float32, "attn_implementation": attn_implementation},
                              modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
                              module_output_name="token_embeddings")
    return SentenceTransformer(modules=[transformer, Pooling(dim, pooling_mode="mean")], device="cpu").eval()


def check_equivalent(ours, theirs, texts: list[str]) -> float:
    """Max abs difference of the two systems' vectors on texts short enough not to be truncated."""
    import numpy as np

    eos = ours.tokenizer.eos_token
    a = ours.encode(texts, batch_size=len(texts))
    b = theirs.encode([t + eos for t in texts], batch_size=len(texts), normalize_embeddings=True,
                      convert_to_numpy=True, show_progress_bar=False)
    return float(np.abs(a - b).max())


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(CHECKPOINTS), default="tiny")
    parser.add_argument("--texts", type=int, help=f"corpus size (default {DEFAULT_TEXTS})")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, help=f"timed runs per system, alternating (default {DEFAULT_REPEATS})")
    parser.add_argument("--attn-implementation", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/encode_<model>.json)")
    args = parser.parse_args(argv)

    import torch

    from embedgrid.backbone import resolve_checkpoint
    from embedgrid.io import write_json

    torch.set_num_threads(args.threads)
    n = args.texts or DEFAULT_TEXTS[args.model]
    repeats = args.repeats or DEFAULT_REPEATS[args.model]
    texts = corpus(n)
    ours = build_ours(args.model, args.max_length, args.attn_implementation)
    path = resolve_checkpoint(CHECKPOINTS[args.model])
    theirs = build_sentence_transformers(path, ours.dim, args.max_length, args.attn_implementation)
    eos = ours.tokenizer.eos_token
    eos_texts = [t + eos for t in texts]

    max_diff = check_equivalent(ours, theirs, sorted(texts, key=len)[:16])
    if max_diff > 1e-4:
        raise SystemExit(f"the two systems disagree (max |diff| {max_diff:.2e}): not the same model, not timed")

    def run_ours():
        return ours.encode(texts, batch_size=args.batch_size)

    def run_theirs():
        return theirs.encode(eos_texts, batch_size=args.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)

    ours.truncated = 0
    token_counts = [len(r) for r in ours.token_rows(texts)[0]]
    truncated = ours.truncated
    # warm-up (kernels, allocator, tokenizer caches), then alternate the timed runs so drift hits both alike
    ours.encode(texts[:args.batch_size], batch_size=args.batch_size)
    theirs.encode(eos_texts[:args.batch_size], batch_size=args.batch_size, show_progress_bar=False)
    seconds = {"embedgrid": [], "sentence_transformers": []}
    for _ in range(repeats):
        seconds["embedgrid"].append(time_once(run_ours))
        seconds["sentence_transformers"].append(time_once(run_theirs))
    best = {k: min(v) for k, v in seconds.items()}
    rate = {k: n / s for k, s in best.items()}
    ratio = rate["embedgrid"] / rate["sentence_transformers"]

    import sentence_transformers
    import transformers

    result = {
        "benchmark": "encode", "model": args.model, "checkpoint": path, "texts": n,
        "tokens": {"total": int(sum(token_counts)), "mean": round(statistics.mean(token_counts), 1),
                   "min": min(token_counts), "max": max(token_counts),
                   "truncated_texts": truncated},
        "batch_size": args.batch_size, "max_length": args.max_length, "threads": args.threads,
        "attn_implementation": args.attn_implementation, "repeats": repeats,
        "seconds": seconds, "texts_per_s": {k: round(v, 2) for k, v in rate.items()},
        "ratio": round(ratio, 3), "goal_ratio": 1.0, "meets_goal": ratio >= 1.0,
        "equivalence_max_abs_diff": max_diff,
        "baseline": f"sentence-transformers {sentence_transformers.__version__}: models.Transformer(checkpoint) + "
                    "Pooling(mean), normalize_embeddings=True, EOS appended to each text",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__, "python": platform.python_version()},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
    }
    print(f"\nencode throughput, model={args.model}, {n} texts ({result['tokens']['mean']} tokens on average, "
          f"{result['tokens']['min']}-{result['tokens']['max']}), batch {args.batch_size}, max_length "
          f"{args.max_length}, {args.threads} thread(s), best of {repeats}")
    print("| system | seconds | texts/s |\n|---|---|---|")
    for name in ("embedgrid", "sentence_transformers"):
        print(f"| {name} | {best[name]:.2f} | {rate[name]:.1f} |")
    print(f"| **ratio** (embedgrid / sentence-transformers) | | **{ratio:.3f}** (goal >= 1.0) |")
    print(f"same vectors before timing: max |diff| = {max_diff:.1e}")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"encode_{args.model}.json"
    write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
