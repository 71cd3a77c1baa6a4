"""What a cell cost, per phase (build, train, save, evaluate): the ``cost`` record of ``cell.json``.

Per phase: wall time, device type and count, device-hours (wall x devices the cell holds), tokens (training:
real tokens through forward + backward, summed over ranks; evaluation: real tokens encoded), peak host memory
(the process's peak RSS up to the phase's end: ``getrusage`` cannot be reset, so a later phase never reads lower)
and peak device memory (``torch.cuda.max_memory_allocated``, reset at each phase; none on CPU), and for training
and encoding the model FLOPs (embedgrid/flops.py) and MFU: achieved FLOP/s over the devices' dense peak for the
phase's dtype. The peak of a known GPU comes from its datasheet (``GPU_PEAKS``); a CPU or an unknown device gets a
short measured GEMM, the highest measured kept per device, dtype and thread count (``measured_peak``).

Shape (read by planners; keep it): ``{"phases": {name: {"wall_s", "device_hours", "tokens", "mfu", ...}},
"total": {"wall_s", "device_hours", "tokens", ...}, "device": {...}}``.
"""
from __future__ import annotations

import contextlib
import platform
import resource
import sys
import time

import torch

from embedgrid.assets import cache_dir
from embedgrid.flops import ModelShape
from embedgrid.io import read_json, write_json

PHASES = ("build", "train", "save", "evaluate")
# Dense (no sparsity) peak FLOP/s from NVIDIA's datasheets: bf16/fp16 tensor cores, and fp32 without TF32
# (torch's default matmul precision). Matched against torch.cuda.get_device_name(), first match wins.
GPU_PEAKS = (
    ("H200", {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12}),
    ("H100 PCIe", {"bfloat16": 756e12, "float16": 756e12, "float32": 51e12}),
    ("H100 NVL", {"bfloat16": 835e12, "float16": 835e12, "float32": 60e12}),
    ("H100", {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12}),  # SXM
    ("A100", {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12}),
    ("L40S", {"bfloat16": 362e12, "float16": 362e12, "float32": 91.6e12}),
    ("L4", {"bfloat16": 121e12, "float16": 121e12, "float32": 30.3e12}),
    ("A10", {"bfloat16": 125e12, "float16": 125e12, "float32": 31.2e12}),
    ("V100", {"float16": 125e12, "float32": 15.7e12}),
)
PEAK_CACHE = "device_peaks.json"
GEMM_SIZE, GEMM_REPEATS = 1024, 5


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_name()
    return device.type


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def table_peak(name: str, dtype: str) -> float | None:
    for key, peaks in GPU_PEAKS:
        if key in name:
            return peaks.get(dtype)
    return None


def measured_peak(device, dtype: str) -> float:
    """FLOP/s of the best of a few (1024 x 1024) GEMMs on ``device`` in ``dtype``, measured once per process and
    kept in the embedgrid cache per device name, dtype and torch thread count (a CPU's peak depends on its
    threads) as the highest ever measured. A peak is an upper bound: a GEMM that shared its cores with other work
    (a loaded machine) reads low and would overstate MFU, so a lower measurement never replaces a higher one."""
    device = torch.device(device)
    key = f"{device_name(device)}|{dtype}|threads={torch.get_num_threads()}"
    path = cache_dir() / PEAK_CACHE
    try:
        cached = read_json(path, {})
    except ValueError:  # a torn cache file is rebuilt; the cache only saves the measurement
        cached = {}
    cached = cached if isinstance(cached, dict) else {}
    value = cached.get(key)
    value = float(value) if isinstance(value, (int, float)) and value > 0 else 0.0
    if key not in _MEASURED:
        _MEASURED[key] = gemm_flop_per_s(device, dtype)
    if _MEASURED[key] > value:
        value = _MEASURED[key]
        with contextlib.suppress(OSError):  # a read-only cache costs a re-measurement, never the cell
            write_json(path, {**cached, key: value})
    return value


_MEASURED: dict[str, float] = {}  # this process's measurements: one short GEMM per device, dtype and threads


def gemm_flop_per_s(device, dtype: str) -> float:
    """FLOP/s of the fastest of ``GEMM_REPEATS`` (``GEMM_SIZE``)^2 matrix products, after one warm-up."""
    kind = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(GEMM_SIZE, GEMM_SIZE, generator=generator).to(device=device, dtype=kind)
    b = torch.randn(GEMM_SIZE, GEMM_SIZE, generator=generator).to(device=device, dtype=kind)
    best = float("inf")
    for repeat in range(GEMM_REPEATS + 1):  # the first is warm-up (kernel selection, page faults)
        _synchronize(device)
        start = time.perf_counter()
        a @ b
        _synchronize(device)
        if repeat:
            best = min(best, time.perf_counter() - start)
    return 2 * GEMM_SIZE**3 / best


def device_peak(device, dtype: str) -> tuple[float, str]:
    """(FLOP/s of one device in ``dtype``, where the number comes from)."""
    name = device_name(device)
    if torch.device(device).type == "cuda":
        peak = table_peak(name, dtype)
        if peak:
            return peak, "datasheet dense peak"
    return measured_peak(device, dtype), f"measured {GEMM_SIZE}^3 GEMM (highest on this machine, cached)"


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def host_peak_gb() -> float:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 3)


class TokenCounter:
    """Counts real tokens (and the sum of squared lengths, for attention FLOPs) of every forward of an encoder,
    apart for forwards with gradients (training) and without (encoding, GradCache's extra pass)."""

    def __init__(self):
        self.counts = {True: [0, 0], False: [0, 0]}  # grad enabled -> [tokens, squares]
        self._handle = None

    def watch(self, encoder) -> None:
        if self._handle is None:
            self._handle = encoder.register_forward_pre_hook(self._count, with_kwargs=True)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _count(self, module, args, kwargs):
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        if mask is not None:
            lengths = mask.sum(dim=1)
            entry = self.counts[torch.is_grad_enabled()]
            entry[0] += int(lengths.sum())
            entry[1] += int((lengths * lengths).sum())

    def snapshot(self) -> dict:
        return {grad: list(values) for grad, values in self.counts.items()}


class CostMeter:
    """Measures a cell's phases; ``record()`` is the ``cost`` entry of cell.json."""

    def __init__(self, device, devices: int = 1):
        self.device = torch.device(device)
        self.devices = max(1, int(devices))
        self.counter = TokenCounter()
        self.shape: ModelShape | None = None
        self.phases: dict[str, dict] = {}
        self.peaks: dict[str, dict] = {}

    def watch(self, encoder) -> None:
        """Count the encoder's forwards from now on (after it is built: the build's attention probe is not work)."""
        self.counter.watch(encoder)
        if self.shape is None:
            self.shape = ModelShape.of(encoder.backbone)

    @contextlib.contextmanager
    def phase(self, name: str, *, dtype: str = "float32", reduce=None):
        """Time one phase; ``reduce(value) -> value summed over ranks`` for phases every rank runs (training)."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        before, start, finished = self.counter.snapshot(), time.perf_counter(), False
        try:
            yield self
            finished = True
        finally:
            _synchronize(self.device)
            wall = time.perf_counter() - start
            after = self.counter.snapshot()
            grad = [after[True][i] - before[True][i] for i in (0, 1)]
            free = [after[False][i] - before[False][i] for i in (0, 1)]
            if reduce is not None and finished:  # a collective only where every rank got here
                grad = [int(reduce(v)) for v in grad]
            entry = {"wall_s": round(wall, 3), "device_type": self.device.type, "devices": self.devices,
                     "device_hours": round(wall * self.devices / 3600, 6), "dtype": dtype,
                     "peak_host_memory_gb": host_peak_gb(),
                     "peak_device_memory_gb": round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
                     if cuda else None}
            entry.update(self._work(name, grad, free, wall, dtype))
            self.phases[name] = _merged(self.phases.get(name), entry)

    def _work(self, name: str, grad: list[int], free: list[int], wall: float, dtype: str) -> dict:
        """Tokens, FLOPs, tokens/s and MFU of a phase (training: forward + backward; encoding: forward)."""
        if name == "train":
            tokens, flops = grad[0], (self.shape.training_flops_of(*grad) if self.shape else None)
            extra = {"no_grad_tokens": free[0]}  # GradCache's first pass: real work, not in the model FLOPs
        elif name == "evaluate":
            tokens, flops, extra = free[0], (self.shape.forward_flops_of(*free) if self.shape else None), {}
        else:
            return {"tokens": 0, "flops": None, "tokens_per_s": None, "mfu": None}
        peak, basis = device_peak(self.device, dtype) if tokens else (None, None)
        if peak:
            self.peaks[dtype] = {"flop_per_s": peak, "basis": basis}
        mfu = flops / wall / (peak * self.devices) if flops and peak and wall > 0 else None
        return {"tokens": int(tokens), "flops": flops, "tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
                "mfu": round(mfu, 6) if mfu is not None else None, **extra}

    def record(self, previous: dict | None = None) -> dict:
        """The ``cost`` entry; ``previous`` (an earlier attempt's record of this cell) is added phase by phase."""
        phases = {name: dict(entry) for name, entry in self.phases.items()}
        earlier = (previous or {}).get("phases") if isinstance(previous, dict) else None
        for name, entry in (earlier or {}).items():
            if isinstance(entry, dict) and name in PHASES:
                phases[name] = _merged(entry, phases[name]) if name in phases else dict(entry)
        ordered = {name: phases[name] for name in PHASES if name in phases}
        total = {"wall_s": round(sum(p.get("wall_s") or 0 for p in ordered.values()), 3),
                 "device_hours": round(sum(p.get("device_hours") or 0 for p in ordered.values()), 6),
                 "tokens": sum(int(p.get("tokens") or 0) for p in ordered.values()),
                 "peak_host_memory_gb": _max(p.get("peak_host_memory_gb") for p in ordered.values()),
                 "peak_device_memory_gb": _max(p.get("peak_device_memory_gb") for p in ordered.values())}
        device = {"type": self.device.type, "name": device_name(self.device), "count": self.devices,
                  "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
                  "peak_flop_per_s": self.peaks or ((previous or {}).get("device") or {}).get("peak_flop_per_s")}
        return {"phases": ordered, "total": total, "device": device}

    def close(self) -> None:
        self.counter.close()


def _merged(old: dict | None, new: dict) -> dict:
    """Two attempts of one phase (a resumed cell): times, device-hours, tokens and FLOPs add up; rates and MFU
    are recomputed from the sums; peaks are the larger."""
    if not old:
        return {**new, "attempts": new.get("attempts", 1)}
    merged = dict(new)
    for key in ("wall_s", "device_hours", "tokens", "flops", "no_grad_tokens"):
        values = [v for v in (old.get(key), new.get(key)) if isinstance(v, (int, float))]
        if values:
            merged[key] = round(sum(values), 6) if isinstance(values[0], float) else sum(values)
    for key in ("peak_host_memory_gb", "peak_device_memory_gb"):
        merged[key] = _max((old.get(key), new.get(key)))
    wall = merged.get("wall_s") or 0
    if merged.get("tokens") and wall:
        merged["tokens_per_s"] = round(merged["tokens"] / wall, 2)
    rates = [(p.get("mfu"), p.get("wall_s")) for p in (old, new)]
    if all(isinstance(m, (int, float)) and isinstance(w, (int, float)) for m, w in rates) and wall:
        merged["mfu"] = round(sum(m * w for m, w in rates) / wall, 6)  # FLOPs-weighted: same peak, same devices
    merged["attempts"] = int(old.get("attempts", 1)) + 1
    return merged


def _max(values):
    numbers = [v for v in values if isinstance(v, (int, float))]
    return max(numbers) if numbers else None


def summary(cost: dict) -> dict:
    """Flat W&B summary keys: ``cost/<phase>/<key>`` and ``cost/total/<key>``."""
    flat = {}
    for name, entry in (cost.get("phases") or {}).items():
        flat.update({f"cost/{name}/{k}": v for k, v in entry.items() if isinstance(v, (int, float, str))})
    flat.update({f"cost/total/{k}": v for k, v in (cost.get("total") or {}).items() if isinstance(v, (int, float))})
    flat["cost/device"] = (cost.get("device") or {}).get("name")
    return flat
