"""Training throughput against sentence-transformers, with MFU, and GradCache memory, on CPU.

Throughput: embedgrid's training step (``train.loop.fit``: tokenize, forward, InfoNCE with in-batch + 1 hard
negative, backward, clip, AdamW, schedule) against ``SentenceTransformerTrainer`` with
``MultipleNegativesRankingLoss`` (scale 20 = temperature 0.05) on the same backbone with the same LoRA (r 16,
alpha 32, dropout 0.1, all projections), mean pooling, causal attention, the same (query, positive, negative)
rows, batch size, max length, steps, learning rate and thread count, in one process. Both see the same batches
in the same order (sentence-transformers reads embedgrid's per-step batches sequentially), because step time
depends strongly on a batch's longest text. Per-step time is the interval between consecutive optimizer steps
on both sides (data loading and tokenization included); the first step is warm-up and not counted; throughput
is examples over the summed step times. sentence-transformers gets each text with EOS appended so both embed
the same token ids.

Each side runs at float32 (sentence-transformers' default) and at bf16 (embedgrid ``train.bf16=true`` with its
length-sorted chunks; sentence-transformers ``bf16=True``, the Trainer's CPU autocast): four systems, whose
order is reversed on every other run (ABBA). The bf16 systems only where the CPU computes bf16 natively
(AVX512-BF16 or AMX; elsewhere torch emulates it at about a hundredth of float32's speed, so they are left out and
the output says so; ``--bf16 on`` runs them anyway). Ratios: each side at its best setting (the faster of its two, per
run) and embedgrid's best against sentence-transformers' default, within each run.

MFU: model FLOPs of each step (embedgrid/flops.py: 4 N s + 6 R s + 12 L d s^2 over real tokens, frozen base
weights N, LoRA weights R) per second, over the FLOP/s of a 2048^3 GEMM in the same dtype and thread count
measured in the same process before and after the runs (benchmarks/peak.py; the better of the two).

Memory: peak RSS of batch 256 with GradCache chunk 16 against batch 16 without GradCache, each in a fresh
subprocess running the same number of steps. The goal is judged on the peak during training (the kernel's VmHWM
watermark reset after setup, so loading WordNet and the model does not mask it); the whole-process ru_maxrss
and the growth above the post-setup RSS are reported too.

    python benchmarks/train.py --model tiny
    python benchmarks/train.py --model smollm2_135m --steps 4

Prints tables, writes benchmarks/results/train_<model>.json. Goals: best-vs-best throughput ratio >= 1.3;
memory ratio <= 1.5.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import benchmarks.offline  # noqa: E402,F401  (offline settings, before the heavy imports)

from benchmarks.encode import CHECKPOINTS  # noqa: E402  (after ROOT is on sys.path)
from benchmarks.peak import add_bf16_option  # noqa: E402
from benchmarks.report import cpu, save, table  # noqa: E402
from embedgrid.model.spec import LoraSpec  # noqa: E402

LORA = asdict(LoraSpec())  # the cells' LoRA (the paper's r 16, alpha 32, dropout 0.1, every projection)
LR = 1e-4


def rows_for(count: int):
    from embedgrid.data.wordnet import definition_synonym_rows

    return definition_synonym_rows(num_negatives=1, limit=count, seed=0)


def build_ours(model: str, max_length: int):
    import torch

    from embedgrid.model.encoder import build_encoder
    from embedgrid.model.spec import EncoderSpec

    torch.manual_seed(0)
    spec = EncoderSpec(checkpoint=CHECKPOINTS[model], pooling={"_target_": "embedgrid.model.pooling.MeanPooling"},
                       attention="causal", max_length=max_length, lora=LoraSpec(**LORA))
    return build_encoder(spec)


def train_config(batch: int, steps: int, grad_cache: bool = False, chunk: int = 16, bf16=False,
                 length_sorted: bool = True):
    from embedgrid.train.config import TrainConfig

    return TrainConfig(max_steps=steps, batch_size=batch, lr=LR, warmup_steps=1, weight_decay=0.01,
                       max_grad_norm=1.0, temperature=0.05, num_negatives=1, checkpoint_every=10**9,
                       grad_cache=grad_cache, grad_cache_chunk=chunk, progress_bar=False, bf16=bf16,
                       length_sorted=length_sorted)


class StepEnds:
    """A logger that only notes when each optimizer step ended (fit logs once per step)."""

    def __init__(self):
        self.ends: list[float] = []

    def log(self, metrics, step=None):
        self.ends.append(time.perf_counter())


def intervals(ends: list[float]) -> list[float]:
    return [b - a for a, b in zip(ends, ends[1:])]


def time_ours(model: str, rows, batch: int, steps: int, max_length: int, bf16: bool) -> list[float]:
    from embedgrid.train.loop import fit

    encoder, times = build_ours(model, max_length), StepEnds()
    with tempfile.TemporaryDirectory() as tmp:
        fit(encoder, rows, train_config(batch, steps + 1, bf16=bf16, length_sorted=True), seed=0,
            checkpoint_dir=tmp, logger=times)
    return intervals(times.ends)


def in_order_batches(dataset, batch_size: int, drop_last: bool, **_):
    """sentence-transformers' batch sampler, reading the dataset in order (it is already in fit's batch order)."""
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from torch.utils.data import SequentialSampler

    return DefaultBatchSampler(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last)


def time_sentence_transformers(model: str, rows, batch: int, steps: int, max_length: int,
                               bf16: bool) -> list[float]:
    import datasets
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import TrainerCallback

    from embedgrid.model.backbone import resolve_checkpoint
    from embedgrid.train.batches import batch_rows

    path = resolve_checkpoint(CHECKPOINTS[model])
    tokenizer_dir = os.path.join(path, "tokenizer")  # offline assets keep it beside config.json (see assets.py)
    text = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}  # no chat template
    transformer = Transformer(path, tokenizer_name_or_path=tokenizer_dir if os.path.isdir(tokenizer_dir) else None,
                              max_seq_length=max_length, model_kwargs={"dtype": torch.float32},
                              modality_config=text, module_output_name="token_embeddings")
    torch.manual_seed(0)
    st = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")],
                             device="cpu")
    # transformers' add_adapter wants peft >= 0.22 (pinned 0.21 here), so wrap the module's model with peft directly
    transformer.model = get_peft_model(transformer.model, LoraConfig(
        r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], bias="none",
        target_modules=LORA["target_modules"], task_type=TaskType.FEATURE_EXTRACTION))
    eos = st.tokenizer.eos_token
    ordered = [r for step in range(steps + 1) for r in batch_rows(rows, batch, step, seed=0)]  # fit's batches
    data = datasets.Dataset.from_dict({"anchor": [r.query + eos for r in ordered],
                                       "positive": [r.positive + eos for r in ordered],
                                       "negative": [r.negatives[0] + eos for r in ordered]})
    ends: list[float] = []

    class StepEnds(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch, max_steps=steps + 1, learning_rate=LR,
            warmup_steps=1, lr_scheduler_type="linear", weight_decay=0.01, max_grad_norm=1.0, seed=0,
            save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, dataloader_num_workers=0,
            logging_strategy="no", batch_sampler=in_order_batches, bf16=bf16)
        trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=data,
                                             loss=MultipleNegativesRankingLoss(st, scale=20.0),
                                             callbacks=[StepEnds()])
        trainer.train()
    return intervals(ends)


def _vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def memory_probe(model: str, batch: int, steps: int, max_length: int, grad_cache: bool, chunk: int) -> dict:
    """Run in a fresh process: RSS after setup, peak RSS of the whole process (ru_maxrss) and peak RSS during
    training alone (VmHWM reset after setup via /proc/self/clear_refs, Linux), in MiB."""
    import gc
    import resource

    import psutil

    from embedgrid.train.loop import fit

    rows = rows_for(max(batch * steps, 64))
    encoder = build_ours(model, max_length)
    gc.collect()
    setup = psutil.Process().memory_info().rss / 2**20
    peak_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS watermark to the current RSS
    with tempfile.TemporaryDirectory() as tmp:
        fit(encoder, rows, train_config(batch, steps, grad_cache, chunk), seed=0, checkpoint_dir=tmp)
    training_peak = _vm_hwm_mib()
    return {"batch": batch, "grad_cache": grad_cache, "chunk": chunk if grad_cache else None, "steps": steps,
            "rss_after_setup_mib": round(setup, 1), "process_peak_during_setup_mib": round(peak_setup, 1),
            "process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "training_peak_rss_mib": round(training_peak, 1),
            "training_peak_above_setup_mib": round(training_peak - setup, 1)}


def run_probe(args, batch: int, grad_cache: bool) -> dict:
    cmd = [sys.executable, __file__, "--probe", "--model", args.model, "--max-length", str(args.max_length),
           "--threads", str(args.threads), "--memory-steps", str(args.memory_steps), "--probe-batch", str(batch),
           "--chunk", str(args.chunk)] + (["--probe-grad-cache"] if grad_cache else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode:
        raise SystemExit(f"memory probe failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


SYSTEMS = {  # name: (timer, bf16)
    "embedgrid": (time_ours, False),
    "embedgrid_bf16": (time_ours, True),
    "sentence_transformers": (time_sentence_transformers, False),
    "sentence_transformers_bf16": (time_sentence_transformers, True),
}
OURS, THEIRS = ("embedgrid", "embedgrid_bf16"), ("sentence_transformers", "sentence_transformers_bf16")
GOAL = 1.3


def step_work(model: str, rows, batch: int, steps: int, max_length: int) -> dict:
    """Real tokens, model FLOPs and padded positions (each side's batching) of the timed steps 1..steps."""
    from embedgrid.flops import ModelShape
    from embedgrid.train.batches import batch_rows
    from embedgrid.model.batching import sorted_chunks
    from embedgrid.train.step import overhead_tokens

    encoder = build_ours(model, max_length)
    shape = ModelShape.of(encoder.backbone)
    lengths, padded_ours, padded_theirs = [], {False: 0, True: 0}, 0
    for step in range(1, steps + 1):
        chunk = batch_rows(rows, batch, step, seed=0)
        columns = [[r.query for r in chunk], [r.positive for r in chunk], [r.negatives[0] for r in chunk]]
        ids = [[len(ids) for ids in encoder.token_rows(column)[0]] for column in columns]
        lengths += [n for column in ids for n in column]
        padded_theirs += sum(len(column) * max(column) for column in ids)  # one padded batch per column
        step_texts = ids[0] + ids[1] + ids[2]  # no instructions here, so queries and docs share chunks
        for bf16 in (False, True):
            padded_ours[bf16] += sum(len(c) * max(step_texts[i] for i in c)
                                     for c in sorted_chunks(step_texts, overhead_tokens(encoder, bf16)))
    return {"flops": shape.training_flops(lengths), "real_tokens": sum(lengths),
            "padded_tokens": {"embedgrid": padded_ours[False], "embedgrid_bf16": padded_ours[True],
                              "sentence_transformers": padded_theirs, "sentence_transformers_bf16": padded_theirs},
            "shape": asdict(shape)}


def measure_peaks(threads: int, dtypes=("float32", "bfloat16")) -> dict:
    from benchmarks.peak import peaks

    return peaks(threads, dtypes)


def chosen_systems(setting: str) -> tuple[dict, tuple[str, ...], str]:
    """(the systems to run, their dtypes, why): the bf16 ones only where ``--bf16`` allows (benchmarks/peak.py)."""
    from benchmarks.peak import bf16_dtypes

    dtypes, why = bf16_dtypes(setting)
    return {k: v for k, v in SYSTEMS.items() if "bfloat16" in dtypes or not v[1]}, dtypes, why


def summarise(args, steps: int, seconds: dict, work: dict, peak: dict) -> dict:
    import sentence_transformers
    import torch
    import transformers

    from embedgrid.precision import cpu_has_native_bf16

    ours, theirs = [k for k in OURS if k in seconds], [k for k in THEIRS if k in seconds]
    total = {k: [sum(run) for run in v] for k, v in seconds.items()}
    rate = {k: args.batch_size * steps / min(v) for k, v in total.items()}
    dtype = {k: "bfloat16" if k.endswith("_bf16") else "float32" for k in seconds}
    mfu = {k: work["flops"] / min(total[k]) / peak[dtype[k]] for k in seconds}
    # within each run (same load for all four): each side's faster setting, and ours against their default
    best_vs_best = [min(total[t][r] for t in theirs) / min(total[o][r] for o in ours) for r in range(args.repeats)]
    best_vs_default = [total["sentence_transformers"][r] / min(total[o][r] for o in ours)
                       for r in range(args.repeats)]
    ratio = max(rate[o] for o in ours) / max(rate[t] for t in theirs)
    return {
        "benchmark": "train", "model": args.model, "batch_size": args.batch_size, "timed_steps": steps,
        "repeats": args.repeats, "max_length": args.max_length, "threads": args.threads, "hard_negatives": 1,
        "lora": LORA, "cpu_native_bf16": cpu_has_native_bf16(), "bf16_systems": args.bf16_why,
        "seconds_per_step": seconds, "examples_per_s": {k: round(v, 3) for k, v in rate.items()},
        "model_flops_per_step": work["flops"] / steps, "real_tokens_per_step": work["real_tokens"] / steps,
        "padded_tokens_per_step": {k: v / steps for k, v in work["padded_tokens"].items()},
        "model_shape": work["shape"], "gemm_peak_flop_per_s": peak, "mfu": {k: round(v, 4) for k, v in mfu.items()},
        "ratio_best_vs_best": round(ratio, 3), "ratio_best_vs_best_per_run": [round(r, 3) for r in best_vs_best],
        "ratio_best_vs_default_per_run": [round(r, 3) for r in best_vs_default],
        "goal": GOAL, "meets_goal": min(best_vs_best) >= GOAL and ratio >= GOAL,
        "baseline": f"sentence-transformers {sentence_transformers.__version__} SentenceTransformerTrainer + "
                    "MultipleNegativesRankingLoss(scale=20), Transformer + Pooling(mean), same LoRA (peft); "
                    "default (float32) and bf16=True (Trainer CPU autocast)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__, "python": platform.python_version()},
        "machine": cpu(),
    }


def print_summary(args, steps: int, result: dict) -> None:
    peak = result["gemm_peak_flop_per_s"]
    print(f"\ntraining throughput, model={args.model}, batch {args.batch_size} (+1 hard negative), max_length "
          f"{args.max_length}, {args.threads} thread(s), {steps} steps after 1 warm-up step (the same batches for "
          f"all), best of {args.repeats} ABBA runs; {result['real_tokens_per_step']:.0f} real tokens and "
          f"{result['model_flops_per_step'] / 1e9:.2f} GFLOP per step; measured GEMM peak "
          + ", ".join(f"{v / 1e9:.0f} GFLOP/s {k}" for k, v in peak.items()) + f"; bf16 systems: {args.bf16_why}")
    table(("system", "s/step (median)", "examples/s", "padded tokens/step", "MFU"),
          ((name, f"{min(statistics.median(run) for run in result['seconds_per_step'][name]):.3f}",
            f"{result['examples_per_s'][name]:.2f}", f"{result['padded_tokens_per_step'][name]:.0f}",
            f"{100 * result['mfu'][name]:.1f} %") for name in result["mfu"]))
    print(f"| **ratio**, best vs best | | **{result['ratio_best_vs_best']:.3f}** (goal >= {GOAL}) | | |")
    print("best vs best in each run: " + ", ".join(f"{r:.3f}" for r in result["ratio_best_vs_best_per_run"]))
    print("best vs sentence-transformers default in each run: "
          + ", ".join(f"{r:.3f}" for r in result["ratio_best_vs_default_per_run"]))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(CHECKPOINTS), default="tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per system (default: tiny 20, else 4)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per system (best median counts)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=16, help="GradCache chunk of the memory comparison")
    parser.add_argument("--memory-batch", type=int, default=256)
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    add_bf16_option(parser)
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/train_<model>.json)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--probe-grad-cache", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.probe:
        print(json.dumps(memory_probe(args.model, args.probe_batch, args.memory_steps, args.max_length,
                                      args.probe_grad_cache, args.chunk)))
        return {}

    steps = args.steps or (20 if args.model == "tiny" else 4)
    rows = rows_for(args.batch_size * (steps + 1))
    work = step_work(args.model, rows, args.batch_size, steps, args.max_length)
    systems, dtypes, args.bf16_why = chosen_systems(args.bf16)
    print(f"bf16 systems: {args.bf16_why}", flush=True)
    peak = measure_peaks(args.threads, dtypes)
    seconds = {name: [] for name in systems}
    for repeat in range(args.repeats):
        # alternate the order of the systems (ABBA), so load drift and warm caches hit all alike
        for name in (list(systems) if repeat % 2 == 0 else list(reversed(systems))):
            timer, bf16 = systems[name]
            seconds[name].append(timer(args.model, rows, args.batch_size, steps, args.max_length, bf16))
            gc.collect()  # the previous system's model and optimizer go before the next is built
            print(f"run {repeat + 1}: {name} {sum(seconds[name][-1]):.2f} s over {steps} steps "
                  f"({', '.join(f'{t:.2f}' for t in seconds[name][-1])})", flush=True)
    peak = {k: max(v, measure_peaks(args.threads, dtypes)[k]) for k, v in peak.items()}
    result = summarise(args, steps, seconds, work, peak)
    print_summary(args, steps, result)

    if not args.skip_memory:
        big = run_probe(args, args.memory_batch, True)
        small = run_probe(args, args.chunk, False)
        ratio_of = {key: big[key] / small[key] if small[key] > 0 else None
                    for key in ("training_peak_rss_mib", "process_peak_rss_mib", "training_peak_above_setup_mib")}
        mem_ratio = ratio_of["training_peak_rss_mib"]
        result["memory"] = {"grad_cache": big, "baseline": small,
                            "ratios": {k: v and round(v, 3) for k, v in ratio_of.items()},
                            "goal": "training_peak_rss ratio <= 1.5", "meets_goal": mem_ratio <= 1.5}
        print(f"\npeak RSS, fresh process each, {args.memory_steps} steps, model={args.model}")
        table(("run", "RSS after setup", "peak RSS in training", "peak above setup", "process peak (ru_maxrss)"),
              ((label, *(f"{r[key]} MiB" for key in ("rss_after_setup_mib", "training_peak_rss_mib",
                                                      "training_peak_above_setup_mib", "process_peak_rss_mib")))
               for label, r in ((f"batch {args.memory_batch}, GradCache chunk {args.chunk}", big),
                                (f"batch {args.chunk}, no GradCache", small))))
        fmt = {k: (f"{v:.3f}" if v is not None else "n/a") for k, v in ratio_of.items()}
        print(f"| **ratio** | | **{fmt['training_peak_rss_mib']}** (goal <= 1.5) | "
              f"{fmt['training_peak_above_setup_mib']} | {fmt['process_peak_rss_mib']} |")
    save(result, args.out, f"train_{args.model}.json")
    return result


if __name__ == "__main__":
    main()
