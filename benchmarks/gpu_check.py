"""GPU check: the attention probe under sdpa and flash attention, then one bf16 training cell of a Qwen2-0.5B-shaped
model at sequence length 512, with tokens/s and MFU against the GPU's measured dense bf16 peak.

Run it through benchmarks/gpu_check.sh on a machine with a CUDA GPU (it refuses to run without one). Nothing is
downloaded: the model is a random-init Qwen2 with Qwen2-0.5B's shapes (24 layers, hidden 896, 14 heads, 2 KV
heads, FFN 4864, vocab 151,936) and a byte-level BPE tokenizer trained here on WordNet-free synthetic words
(texts are long enough that every one is truncated to 512 tokens).

Peak: the mean of 10 timed 8192^3 bf16 matrix products after 3 warm-ups. Model FLOPs per trained token follow
the PaLM MFU convention, 6 N + 12 L d T (N non-embedding parameters, L layers, d hidden, T sequence length);
with LoRA the frozen weights' gradients are not computed, so the work actually done is about 2/3 of that.
Writes benchmarks/results/gpu_check.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import benchmarks.offline  # noqa: E402,F401  (offline settings, before the heavy imports)
from benchmarks.report import host, save  # noqa: E402

QWEN2_0_5B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151_936, max_position_embeddings=4096, rope_theta=1_000_000.0,
                  tie_word_embeddings=True)
# --smoke: the same code path on a CPU with a tiny model, so the script is known to run before GPU time is spent
SMOKE = dict(QWEN2_0_5B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=2048)


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def gemm_peak_tflops(device: str, size: int = 8192, repeats: int = 10) -> float:
    import torch

    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def synthetic_words(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "tu", "sha", "vor", "el", "qui", "dan", "po", "zi", "mar", "neth", "or"]
    return ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(count)]


def build_checkpoint(directory: Path, shape: dict) -> Path:
    """A random-init Qwen2-0.5B-shaped checkpoint (bf16) with a BPE tokenizer, saved for ``load_backbone``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

    words = synthetic_words(20_000)
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator([" ".join(words[i:i + 50]) for i in range(0, len(words), 50)],
                                  trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|endoftext|>"]))
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   padding_side="left")
    eos = fast.eos_token_id
    config = Qwen2Config(**shape, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(0)
    Qwen2Model(config).to(torch.bfloat16).save_pretrained(directory)
    fast.save_pretrained(directory / "tokenizer")  # beside config.json, not with it (stack trap, see assets.py)
    return directory


def probe_all(path: Path, device: str) -> list[dict]:
    import torch

    from embedgrid.model.backbone import Attention, load_backbone
    from embedgrid.errors import AttentionMismatch

    impls = ["sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])
    results = []
    for impl in impls:
        for mode in ("causal", "bidirectional"):
            started = time.perf_counter()
            try:
                load_backbone(str(path), Attention(mode), dtype="bfloat16", attn_implementation=impl, device=device)
                outcome = "ok"
            except AttentionMismatch as error:
                outcome = f"REFUSED: {error}"
            results.append({"attn_implementation": impl, "mode": mode, "outcome": outcome,
                            "seconds": round(time.perf_counter() - started, 1)})
            if device == "cuda":
                torch.cuda.empty_cache()
    if "flash_attention_2" not in impls:
        results.append({"attn_implementation": "flash_attention_2", "mode": "-",
                        "outcome": "not installed (pip install flash-attn), not probed"})
    return results


def train_cell(path: Path, batch: int, steps: int, max_length: int, attention: str, chunk: int,
               device: str) -> dict:
    import torch

    from embedgrid.data.rows import Row
    from embedgrid.model.encoder import build_encoder
    from embedgrid.model.spec import EncoderSpec, LoraSpec
    from embedgrid.train.config import TrainConfig
    from embedgrid.train.loop import fit

    words = synthetic_words(200_000, seed=1)
    rng = random.Random(2)

    def text() -> str:
        return " ".join(rng.choices(words, k=3 * max_length))  # about 4 BPE tokens per word: always truncated

    rows = [Row(text(), text(), (text(),)) for _ in range(batch * (steps + 1))]
    spec = EncoderSpec(checkpoint=str(path), pooling={"_target_": "embedgrid.model.pooling.MeanPooling"},
                       attention=attention, dtype="bfloat16", max_length=max_length, lora=LoraSpec())
    torch.manual_seed(0)
    encoder = build_encoder(spec, device=device).to(device)
    lengths = [len(r) for r in encoder.token_rows([rows[0].query, rows[0].positive])[0]]
    if min(lengths) < max_length:
        raise SystemExit(f"texts are {lengths} tokens, not {max_length}: the throughput would be mismeasured")
    cfg = TrainConfig(max_steps=steps + 1, batch_size=batch, lr=1e-5, warmup_steps=1, bf16=True, grad_cache=True,
                      grad_cache_chunk=chunk, num_negatives=1, checkpoint_every=10**9, log_every=1,
                      progress_bar=False)

    class StepTimes:
        def __init__(self):
            self.seconds = []

        def log(self, metrics, step=None):
            self.seconds.append(metrics["train/seconds_per_step"])

    times = StepTimes()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as checkpoints:
        summary = fit(encoder, rows, cfg, seed=0, checkpoint_dir=checkpoints, logger=times)
    timed = times.seconds[1:]  # the first step compiles kernels and warms the allocator
    tokens_per_step = batch * 3 * max_length  # query, positive, one hard negative; all truncated to max_length
    backbone = encoder.backbone.get_base_model()
    embedding = backbone.get_input_embeddings().weight.numel()
    n = sum(p.numel() for name, p in backbone.named_parameters() if "lora_" not in name) - embedding  # base model
    layers, hidden = backbone.config.num_hidden_layers, backbone.config.hidden_size
    flops_per_token = 6 * n + 12 * layers * hidden * max_length
    tokens_per_s = tokens_per_step * len(timed) / sum(timed)
    return {"attention": attention, "batch": batch, "grad_cache_chunk": chunk, "max_length": max_length,
            "timed_steps": len(timed), "step_seconds": [round(s, 3) for s in timed], "tokens_per_s": tokens_per_s,
            "non_embedding_params": n, "flops_per_token": flops_per_token,
            "achieved_tflops": tokens_per_s * flops_per_token / 1e12,
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0,
            "final_loss": summary["final_loss"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="queries per step (each with a positive and a negative)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=64, help="GradCache chunk (the paper preset's)")
    parser.add_argument("--attention", default="bidirectional", choices=["causal", "bidirectional"])
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the script, no numbers")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu_check.json)")
    args = parser.parse_args(argv)

    import torch

    device, shape = ("cpu", SMOKE) if args.smoke else ("cuda", QWEN2_0_5B)
    if args.smoke:
        torch.set_num_threads(1)
        args.batch, args.steps, args.max_length, args.chunk = 4, 2, 32, 4
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA GPU visible to torch (torch.cuda.is_available() is False); run it on "
                         "a GPU node, e.g. srun --gres=gpu:1 benchmarks/gpu_check.sh")
    result = {"gpu": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (smoke)", "smoke": args.smoke,
              "torch": torch.__version__,
              "transformers": importlib.import_module("transformers").__version__}
    result["peak_bf16_tflops"] = gemm_peak_tflops(device, *((256, 2) if args.smoke else ()))
    print(f"{result['gpu']}: dense bf16 GEMM {result['peak_bf16_tflops']:.0f} TFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_checkpoint(Path(tmp) / "qwen2-0.5b-shaped", shape)
        result["probes"] = probe_all(path, device)
        for p in result["probes"]:
            print(f"probe {p['attn_implementation']:<18} {p['mode']:<13} {p['outcome']}", flush=True)
        cell = train_cell(path, args.batch, args.steps, args.max_length, args.attention, args.chunk, device)
    cell["mfu"] = cell["achieved_tflops"] / result["peak_bf16_tflops"]
    result["train"] = cell
    print(f"\n| GPU | model | attention | seq | batch (q+p+n) | tokens/s | achieved TFLOP/s | peak TFLOP/s | MFU | "
          f"peak GPU GiB |\n|---|---|---|---|---|---|---|---|---|---|\n| {result['gpu']} | Qwen2-0.5B-shaped, "
          f"LoRA r16, GradCache {cell['grad_cache_chunk']} | {cell['attention']} | {cell['max_length']} | "
          f"{cell['batch']}x3 | {cell['tokens_per_s']:,.0f} | {cell['achieved_tflops']:.1f} | "
          f"{result['peak_bf16_tflops']:.0f} | {cell['mfu']:.1%} | {cell['peak_gpu_memory_gib']:.1f} |")
    result["machine"] = host(cpus=False)
    save(result, args.out, "gpu_check_smoke.json" if args.smoke else "gpu_check.json")
    failed = [p for p in result["probes"] if p["outcome"].startswith("REFUSED")]
    return {"result": result, "exit": 1 if failed else 0}


if __name__ == "__main__":
    sys.exit(main()["exit"])
