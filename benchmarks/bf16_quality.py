"""bf16 against float32 training, same steps: the loss curve and the trained encoders' vectors.

Trains the default cell's recipe as it was before issue 14 (batch 16, lr 2e-4, pooling lr 1e-3, warmup 2, one hard
negative; mean pooling, causal attention, the cells' LoRA) twice from the same initialisation, float32 and
``train.bf16=true``, on the same batches with the same dropout seeds, then embeds held-out WordNet glosses with
both trained encoders (float32 encode) and reports the per-step loss difference, the cosine between the two
encoders' vectors of each text, and the loss spread of float32 itself between seeds 0 and 1 (other batches and
dropout draws, so an upper bound on the noise) as the scale the bf16 difference is judged against.

    python benchmarks/bf16_quality.py --model smollm2_135m --steps 12

Prints a table, writes benchmarks/results/bf16_quality_<model>.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import benchmarks.offline  # noqa: E402,F401  (offline settings, before the heavy imports)

from benchmarks.report import save, table  # noqa: E402
from benchmarks.train import build_ours  # noqa: E402


class Losses:
    def __init__(self):
        self.values: list[float] = []

    def log(self, metrics, step=None):
        self.values.append(metrics["train/loss"])


def train(model: str, rows, steps: int, bf16: bool, seed: int, max_length: int):
    import torch

    from embedgrid.train.config import TrainConfig
    from embedgrid.train.loop import fit

    torch.manual_seed(0)
    encoder = build_ours(model, max_length)
    cfg = TrainConfig(max_steps=steps, batch_size=16, lr=2e-4, pooling_lr=1e-3, warmup_steps=2, num_negatives=1,
                      checkpoint_every=10**9, progress_bar=False, bf16=bf16)
    losses = Losses()
    with tempfile.TemporaryDirectory() as tmp:
        fit(encoder, rows, cfg, seed=seed, checkpoint_dir=tmp, logger=losses)
    return encoder, losses.values


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from embedgrid.data.wordnet import definition_synonym_rows, load_synsets, synset_split
    from embedgrid.precision import cpu_has_native_bf16

    torch.set_num_threads(args.threads)
    rows = definition_synonym_rows(num_negatives=1, limit=16 * args.steps, seed=0)
    heldout = sorted(s.definition for sid, s in load_synsets().items()
                     if s.definition and synset_split(sid) == "heldout")[:args.texts]
    runs = {}
    for name, bf16, seed in (("float32", False, 0), ("bf16", True, 0), ("float32_seed1", False, 1)):
        encoder, losses = train(args.model, rows, args.steps, bf16, seed, args.max_length)
        runs[name] = {"losses": losses, "vectors": encoder.encode(heldout) if seed == 0 else None}
    a, b = runs["float32"], runs["bf16"]
    cosine = (a["vectors"] * b["vectors"]).sum(1)
    diff = np.abs(np.array(a["losses"]) - np.array(b["losses"]))
    noise = np.abs(np.array(a["losses"]) - np.array(runs["float32_seed1"]["losses"]))
    result = {"benchmark": "bf16_quality", "model": args.model, "steps": args.steps, "cpu_native_bf16":
              cpu_has_native_bf16(), "losses": {k: v["losses"] for k, v in runs.items()},
              "max_abs_loss_diff_bf16": float(diff.max()), "mean_abs_loss_diff_bf16": float(diff.mean()),
              "mean_abs_loss_diff_float32_seed1": float(noise.mean()),
              "final_loss": {k: v["losses"][-1] for k, v in runs.items()},
              "vector_cosine_bf16_vs_float32": {"min": float(cosine.min()), "mean": float(cosine.mean())},
              "heldout_texts": len(heldout)}
    print(f"\nbf16 vs float32 training, model={args.model}, {args.steps} steps, same batches and dropout seeds")
    table(("step", "float32", "bf16", "float32, seed 1"),
          ((step, *(f"{v:.4f}" for v in values))
           for step, values in enumerate(zip(*(runs[k]["losses"] for k in ("float32", "bf16", "float32_seed1"))), 1)))
    print(f"mean |loss diff| bf16 vs float32: {diff.mean():.4f} (max {diff.max():.4f}); float32 seed 1 "
          f"(other batches and dropout): {noise.mean():.4f}")
    print(f"cosine of the two trained encoders' vectors on {len(heldout)} held-out glosses: "
          f"min {cosine.min():.4f}, mean {cosine.mean():.4f}")
    save(result, None, f"bf16_quality_{args.model}.json")
    return result


if __name__ == "__main__":
    main()
