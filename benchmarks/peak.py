"""The machine's dense matmul peak, measured: the FLOP/s of a large square GEMM at a dtype and thread count.

MFU in the benchmarks is achieved model FLOP/s (embedgrid/flops.py) over this number, measured in the same run
and process, with the same dtype and torch thread count as the work it is compared with.
"""
from __future__ import annotations

import time


def gemm_peak(dtype: str = "float32", threads: int | None = None, size: int = 2048, repeats: int = 8) -> dict:
    """Best-of-``repeats`` FLOP/s of (size x size) @ (size x size) in ``dtype`` (2 size^3 FLOPs each)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    kind = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(kind)
    b = torch.randn(size, size, generator=generator).to(kind)
    for _ in range(2):  # warm-up: oneDNN/AMX kernel selection, page faults
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return {"dtype": dtype, "threads": torch.get_num_threads(), "size": size, "repeats": repeats,
            "flop_per_s": 2 * size**3 / best}


def add_bf16_option(parser) -> None:
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                        help="bf16 systems: auto = only where the CPU computes bf16 natively")


def bf16_dtypes(setting: str) -> tuple[tuple[str, ...], str]:
    """(the dtypes a benchmark runs, why) for ``--bf16``: bfloat16 under ``auto`` only where the CPU computes it
    natively (AVX512-BF16 or AMX); elsewhere torch emulates it, about a hundredth of float32's speed."""
    from embedgrid.precision import cpu_has_native_bf16

    if setting != "auto":
        return (("float32", "bfloat16") if setting == "on" else ("float32",)), f"--bf16 {setting}"
    if cpu_has_native_bf16():
        return ("float32", "bfloat16"), "auto: the CPU computes bf16 natively"
    return ("float32",), "auto: left out, the CPU has no native bf16 (no AVX512-BF16/AMX), torch emulates it"


def peaks(threads: int, dtypes=("float32", "bfloat16")) -> dict[str, float]:
    """FLOP/s per dtype (bfloat16 only where torch runs it: emulated bf16 is still measured as what it is)."""
    return {dtype: gemm_peak(dtype, threads)["flop_per_s"] for dtype in dtypes}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for dtype, value in peaks(args.threads).items():
        print(f"{dtype}: {value / 1e9:.1f} GFLOP/s ({args.threads} thread(s))")
