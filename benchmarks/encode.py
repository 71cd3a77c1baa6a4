"""Encoding throughput: embedgrid's ``Encoder.encode`` against sentence-transformers on the same backbone, with MFU.

Both sides run the same checkpoint (LoRA off, so the work is equal), mean pooling, L2 normalisation, the same
batch size, max length, thread count and texts, in one process. sentence-transformers gets each text with the
EOS token appended (its tokenizer parses it as the special token), so both embed exactly the same token ids;
an equivalence check confirms the two produce the same vectors (float32) before anything is timed.

Each side runs at float32 (sentence-transformers' default) and, where the CPU computes bf16 natively (AVX512-BF16 or
AMX; elsewhere torch emulates it, ~85x slower than float32 on an AVX2 EPYC, so those systems are left out and
the output says so; ``--bf16 on`` runs them anyway), at bf16: embedgrid ``encode(bf16=True)`` (backbone
in pure bf16 for the call, pooling float32); sentence-transformers with the model loaded in bf16
(``model_kwargs={"dtype": torch.bfloat16}``, its documented reduced-precision path; it has no CPU autocast
switch in ``encode``). Both sides run at each batch size of ``--batch-sizes`` (each side's best setting is its
fastest; 32 is sentence-transformers' default), embedgrid with its own token-budget
batching (``Encoder.encode``: padded tokens per batch capped, on CPU by activation bytes,
embedgrid.model.encoder.CPU_BATCH_BYTES). The systems alternate, the order reversed on every other run (ABBA). MFU: forward
FLOPs over real tokens (embedgrid/flops.py: 2 N s + 4 L d s^2) per second over a 2048^3 GEMM measured in the
same process and dtype (benchmarks/peak.py).

    python benchmarks/encode.py --model tiny
    python benchmarks/encode.py --model smollm2_135m

With compile (the default; ``--no-compile`` leaves it out) both sides also run at ``--batch-size`` with the
backbone through ``torch.compile(dynamic=True)``: embedgrid ``encode(compile=True)``, sentence-transformers by
hand (it has no such switch), so they count as its compiled reference, not among its own settings. Their first
call (the warm-up) pays the compilation and is reported apart; the timed runs count graphs compiled during them.

Prints a table and writes benchmarks/results/encode_<model>.json. Goal: best-vs-best ratio (ours / theirs,
each at its faster setting, within each run) >= 1.3; reported beside it, defaults vs defaults: embedgrid as an
evaluation runs it by default (batch 32, float32, ``eval.compile=auto`` decided for this many texts) against
sentence-transformers' defaults (float32, batch 32), and the same for a trained cell's encoder (``embedgrid_lora``:
the default LoRA adapter, r 16 on every projection, merged into the weights as eager evaluation runs it;
``embedgrid_lora_unmerged``: with its rank-16 side path, as evaluation ran it before; fresh, so the vectors equal
the others') against sentence-transformers on the exported, merged weights (the plain checkpoint's work).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import benchmarks.offline  # noqa: E402,F401  (offline settings, before the heavy imports)
from benchmarks.peak import add_bf16_option  # noqa: E402

CHECKPOINTS = {
    "tiny": {"_target_": "embedgrid.assets.tiny_checkpoint"},
    "smollm2_135m": {"_target_": "embedgrid.assets.smollm2_135m_checkpoint"},
}
DEFAULT_TEXTS = {"tiny": 3000, "smollm2_135m": 600}
DEFAULT_REPEATS = {"tiny": 4, "smollm2_135m": 2}
GOAL = 1.3


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


def build_ours(model: str, max_length: int, attn_implementation: str, append_eos: bool = True, lora: bool = False):
    from embedgrid.model.encoder import build_encoder
    from embedgrid.model.spec import EncoderSpec, LoraSpec

    spec = EncoderSpec(checkpoint=CHECKPOINTS[model], pooling={"_target_": "embedgrid.model.pooling.MeanPooling"},
                       attention="causal", max_length=max_length, attn_implementation=attn_implementation,
                       append_eos=append_eos, lora=LoraSpec(enabled=lora))
    return build_encoder(spec).eval()


def build_sentence_transformers(path: str, dim: int, max_length: int, attn_implementation: str,
                                dtype: str = "float32"):
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from sentence_transformers.base.modules import Transformer

    tokenizer_dir = os.path.join(path, "tokenizer")  # offline assets keep it beside, not with, config.json
    # Plain text modality: sentence-transformers 6 would otherwise wrap every text in the tokenizer's chat template.
    transformer = Transformer(path, tokenizer_name_or_path=tokenizer_dir if os.path.isdir(tokenizer_dir) else None,
                              max_seq_length=max_length,
                              model_kwargs={"dtype": getattr(torch, dtype), "attn_implementation": attn_implementation},
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


def compiled_by_hand(model):
    """sentence-transformers has no compile switch for ``encode``: its backbone's forward through
    ``torch.compile(dynamic=True)`` and run under freezing (``frozen``), as embedgrid's ``encode(compile=True)``."""
    import torch

    backbone = model[0].auto_model
    backbone.forward = torch.compile(backbone.forward, dynamic=True)
    return model


def frozen(fn, *args):
    """``fn`` under inductor's freezing (weights as constants), as ``Encoder.encode(compile=True)`` runs."""
    from torch._inductor import config as inductor_config

    with inductor_config.patch(freezing=True):
        return fn(*args)


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(CHECKPOINTS), default="tiny")
    parser.add_argument("--texts", type=int, help=f"corpus size (default {DEFAULT_TEXTS})")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch-sizes", default="16,32,128",
                        help="batch sizes both sides run at (each side's best is its fastest; --batch-size too)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, help=f"timed runs per system, alternating (default {DEFAULT_REPEATS})")
    parser.add_argument("--attn-implementation", default="sdpa", choices=["sdpa", "eager"])
    add_bf16_option(parser)
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave out the torch.compile systems (both sides, at --batch-size)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/encode_<model>.json)")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from benchmarks.peak import bf16_dtypes, peaks
    from embedgrid.model.backbone import resolve_checkpoint
    from embedgrid.evaluate.autocompile import decide
    from embedgrid.model.encoder import batch_token_budget
    from embedgrid.model.lora import merged_for_inference
    from embedgrid.flops import ModelShape
    from embedgrid.io import write_json

    torch.set_num_threads(args.threads)
    n = args.texts or DEFAULT_TEXTS[args.model]
    repeats = args.repeats or DEFAULT_REPEATS[args.model]
    texts = corpus(n)
    ours = build_ours(args.model, args.max_length, args.attn_implementation)
    path = resolve_checkpoint(CHECKPOINTS[args.model])
    theirs = build_sentence_transformers(path, ours.dim, args.max_length, args.attn_implementation)
    eos = ours.tokenizer.eos_token

    max_diff = check_equivalent(ours, theirs, sorted(texts, key=len)[:16])
    if max_diff > 1e-4:
        raise SystemExit(f"the two systems disagree (max |diff| {max_diff:.2e}): not the same model, not timed")
    dtypes, bf16_why = bf16_dtypes(args.bf16)
    with_bf16 = "bfloat16" in dtypes
    theirs_bf16 = (build_sentence_transformers(path, ours.dim, args.max_length, args.attn_implementation, "bfloat16")
                   if with_bf16 else None)
    # a trained cell's encoder: the default LoRA adapter (r 16 on every projection), fresh (B = 0, so its vectors
    # equal the others'); as evaluation runs it eagerly (merged once for the whole evaluation, as here for the
    # whole benchmark) and unmerged (a rank-16 side path per projection, as evaluation ran it before)
    ours_lora = build_ours(args.model, args.max_length, args.attn_implementation, lora=True)
    ours_lora_unmerged = build_ours(args.model, args.max_length, args.attn_implementation, lora=True)
    stack = contextlib.ExitStack()
    if not stack.enter_context(merged_for_inference(ours_lora.backbone)):
        raise SystemExit("the LoRA adapter was not merged: the trained-cell system would not be what evaluation runs")

    def st_encode(model, batch, batch_size):
        return np.asarray(model.encode(batch, batch_size=batch_size, normalize_embeddings=True,
                                       convert_to_numpy=False, convert_to_tensor=True,
                                       show_progress_bar=False).float().cpu().numpy())

    sizes = sorted({args.batch_size, *(int(b) for b in args.batch_sizes.split(",") if b.strip())})
    systems = {}
    for size in sizes:
        suffix = "" if size == args.batch_size else f"_bs{size}"
        systems[f"embedgrid{suffix}"] = lambda batch, size=size: ours.encode(batch, batch_size=size)
        if with_bf16:
            systems[f"embedgrid_bf16{suffix}"] = lambda batch, size=size: ours.encode(batch, batch_size=size,
                                                                                      bf16=True)
    systems["embedgrid_lora"] = lambda batch: ours_lora.encode(batch, batch_size=args.batch_size)
    systems["embedgrid_lora_unmerged"] = lambda batch: ours_lora_unmerged.encode(batch, batch_size=args.batch_size)
    for size in sizes:
        suffix = "" if size == args.batch_size else f"_bs{size}"
        for model, dtype_suffix in ((theirs, ""), (theirs_bf16, "_bf16"))[:len(dtypes)]:
            systems[f"sentence_transformers{dtype_suffix}{suffix}"] = (
                lambda batch, model=model, size=size: st_encode(model, [t + eos for t in batch], size))
    if args.compile:  # at --batch-size only: one dynamic-shape graph per dtype serves every batch
        size = args.batch_size
        systems["embedgrid_compiled"] = lambda batch: ours.encode(batch, batch_size=size, compile=True)
        if with_bf16:
            systems["embedgrid_bf16_compiled"] = lambda batch: ours.encode(batch, batch_size=size, bf16=True,
                                                                          compile=True)
        for dtype_suffix, dtype in (("", "float32"), ("_bf16", "bfloat16"))[:len(dtypes)]:
            model = compiled_by_hand(build_sentence_transformers(path, ours.dim, args.max_length,
                                                                 args.attn_implementation, dtype))
            systems[f"sentence_transformers{dtype_suffix}_compiled"] = (
                lambda batch, model=model: frozen(st_encode, model, [t + eos for t in batch], size))
    # sentence-transformers' own settings (dtype, batch size); compiled by hand is reported beside, not in its best
    their_systems = tuple(name for name in systems
                          if name.startswith("sentence_transformers") and not name.endswith("_compiled"))
    their_compiled = tuple(name for name in systems
                           if name.startswith("sentence_transformers") and name.endswith("_compiled"))
    our_systems = tuple(name for name in systems if name.startswith("embedgrid") and "_lora" not in name)
    warmup = {}
    for name, fn in systems.items():  # warm-up (kernels, allocator, tokenizer caches; compiled: compilation)
        warmup[name] = time_once(lambda: fn(texts[:4 * args.batch_size]))
    reference = systems["embedgrid"](texts[:64])
    agreement = {name: float((fn(texts[:64]) * reference).sum(1).min()) for name, fn in systems.items()}

    ours.truncated = 0
    token_counts = [len(r) for r in ours.token_rows(texts)[0]]
    truncated = ours.truncated
    flops = ModelShape.of(ours.backbone).forward_flops(token_counts)
    peak = peaks(args.threads, dtypes)
    graphs_before = compiled_graphs()
    seconds = {name: [] for name in systems}
    for repeat in range(repeats):  # ABBA: the order reversed every other run, so drift hits all alike
        for name in (list(systems) if repeat % 2 == 0 else list(reversed(systems))):
            seconds[name].append(time_once(lambda: systems[name](texts)))
    peak = {k: max(v, peaks(args.threads, dtypes)[k]) for k, v in peak.items()}
    best = {k: min(v) for k, v in seconds.items()}
    rate = {k: n / s for k, s in best.items()}
    dtype = {k: "bfloat16" if "_bf16" in k else "float32" for k in systems}
    mfu = {k: flops / best[k] / peak[dtype[k]] for k in systems}
    per_run = [min(seconds[t][r] for t in their_systems) / min(seconds[o][r] for o in our_systems)
               for r in range(repeats)]
    per_run_default = [seconds["sentence_transformers"][r] / min(seconds[o][r] for o in our_systems)
                       for r in range(repeats)]
    # defaults vs defaults: eval's batch size, float32 and eval.compile=auto decided for this workload, against
    # sentence-transformers' float32 at batch 32 (its defaults)
    auto_compiles, auto_why = decide("auto", "cpu", int(ours.backbone.config.hidden_size), texts=n)
    our_default = "embedgrid_compiled" if auto_compiles and "embedgrid_compiled" in systems else "embedgrid"
    per_run_defaults = [seconds["sentence_transformers"][r] / seconds[our_default][r] for r in range(repeats)]
    # the same for a trained cell: eager, its adapter merged (or, as before, unmerged); compiled, the copy is merged
    our_default_cell = our_default if our_default.endswith("_compiled") else "embedgrid_lora"
    per_run_defaults_cell = [seconds["sentence_transformers"][r] / seconds[our_default_cell][r]
                             for r in range(repeats)]
    per_run_defaults_unmerged = [seconds["sentence_transformers"][r] / seconds["embedgrid_lora_unmerged"][r]
                                 for r in range(repeats)]
    ratio = max(rate[o] for o in our_systems) / max(rate[t] for t in their_systems)
    recompiles = compiled_graphs() - graphs_before
    per_run_compiled = [min(seconds[t][r] for t in their_compiled) / min(seconds[o][r] for o in our_systems)
                        for r in range(repeats)] if their_compiled else []
    eager_ours = [o for o in our_systems if not o.endswith("_compiled")]
    per_run_eager = [min(seconds[t][r] for t in their_systems) / min(seconds[o][r] for o in eager_ours)
                     for r in range(repeats)]

    import sentence_transformers
    import transformers

    result = {
        "benchmark": "encode", "model": args.model, "checkpoint": path, "texts": n,
        "tokens": {"total": int(sum(token_counts)), "mean": round(statistics.mean(token_counts), 1),
                   "min": min(token_counts), "max": max(token_counts),
                   "truncated_texts": truncated},
        "batch_size": args.batch_size, "max_length": args.max_length, "threads": args.threads,
        "embedgrid_batch_tokens": {size: batch_token_budget(None, size, args.max_length, "cpu", ours.widest_layer)
                                   for size in sizes},
        "batch_sizes": sizes,
        "our_best_system": min(our_systems, key=lambda k: best[k]),
        "their_best_system": min(their_systems, key=lambda k: best[k]),
        "attn_implementation": args.attn_implementation, "repeats": repeats, "bf16_systems": bf16_why,
        "seconds": seconds, "texts_per_s": {k: round(v, 2) for k, v in rate.items()},
        "model_flops": flops, "gemm_peak_flop_per_s": peak, "mfu": {k: round(v, 4) for k, v in mfu.items()},
        "ratio_best_vs_best": round(ratio, 3), "ratio_best_vs_best_per_run": [round(r, 3) for r in per_run],
        "ratio_best_vs_default_per_run": [round(r, 3) for r in per_run_default],
        "ratio_defaults_vs_defaults_per_run": [round(r, 3) for r in per_run_defaults],
        "our_default_system": our_default, "eval_compile_auto": auto_why,
        "ratio_defaults_vs_defaults_trained_cell_per_run": [round(r, 3) for r in per_run_defaults_cell],
        "our_default_trained_cell_system": our_default_cell,
        "ratio_defaults_vs_defaults_trained_cell_unmerged_per_run": [round(r, 3) for r in per_run_defaults_unmerged],
        "ratio_eager_best_vs_best_per_run": [round(r, 3) for r in per_run_eager],
        "ratio_best_vs_their_compiled_by_hand_per_run": [round(r, 3) for r in per_run_compiled],
        "warmup_seconds": {k: round(v, 2) for k, v in warmup.items()},
        "graphs_compiled_during_timing": recompiles,
        "goal": GOAL, "meets_goal": min(per_run) >= GOAL and ratio >= GOAL,
        "equivalence_max_abs_diff": max_diff, "min_cosine_to_embedgrid_float32": agreement,
        "baseline": f"sentence-transformers {sentence_transformers.__version__}: models.Transformer(checkpoint) + "
                    "Pooling(mean), normalize_embeddings=True, EOS appended to each text; weights in "
                    + " and ".join(dtypes),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__, "python": platform.python_version()},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average": os.getloadavg()},
    }
    print(f"\nencode throughput, model={args.model}, {n} texts ({result['tokens']['mean']} tokens on average, "
          f"{result['tokens']['min']}-{result['tokens']['max']}), batch {args.batch_size}, max_length "
          f"{args.max_length}, {args.threads} thread(s), best of {repeats} ABBA runs; {flops / 1e9:.1f} GFLOP; "
          f"measured GEMM peak " + ", ".join(f"{v / 1e9:.0f} GFLOP/s {k}" for k, v in peak.items())
          + f"; bf16 systems: {bf16_why}")
    print("| system | seconds | texts/s | MFU | min cosine to embedgrid float32 |\n|---|---|---|---|---|")
    for name in systems:
        print(f"| {name} | {best[name]:.2f} | {rate[name]:.1f} | {100 * mfu[name]:.1f} % | {agreement[name]:.5f} |")
    print(f"| **ratio**, best vs best | | **{ratio:.3f}** (goal >= {GOAL}) | | |")
    print("best vs best in each run: " + ", ".join(f"{r:.3f}" for r in per_run))
    print(f"defaults vs defaults in each run ({our_default}, eval.compile={auto_why}; sentence-transformers float32, "
          "batch 32): " + ", ".join(f"{r:.3f}" for r in per_run_defaults))
    print(f"defaults vs defaults, a trained cell ({our_default_cell}) in each run: "
          + ", ".join(f"{r:.3f}" for r in per_run_defaults_cell)
          + "; its adapter unmerged: " + ", ".join(f"{r:.3f}" for r in per_run_defaults_unmerged))
    print("best vs sentence-transformers default in each run: " + ", ".join(f"{r:.3f}" for r in per_run_default))
    print("without compile, best vs best in each run: " + ", ".join(f"{r:.3f}" for r in per_run_eager))
    if their_compiled:
        print("best vs sentence-transformers compiled by hand in each run: "
              + ", ".join(f"{r:.3f}" for r in per_run_compiled))
        print("warm-up incl. compilation (s): " + ", ".join(f"{k} {warmup[k]:.1f}" for k in systems
                                                               if k.endswith("_compiled"))
              + f"; graphs compiled while timed: {recompiles}")
    print(f"same vectors before timing (float32): max |diff| = {max_diff:.1e}")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"encode_{args.model}.json"
    write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
