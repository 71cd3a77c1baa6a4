"""Power plan: how many seeds and tasks per category each test of a Holm family needs for the seed-aware test.

Model (per test: a reference and a candidate design on one category, T tasks, S seeds per design)::

    score[d, t, s] = m_d + u[d, t] + v[d, s] + e[d, t, s]

u is the task × design interaction (what the pair's difference varies by over tasks: σ²_int is the variance of
u[cand, t] − u[ref, t]); v[d, s] is a training run's shift shared by every task of the category (σ²_run,d, one per
design); e is the run × task residual (σ²_e,d). All normal and independent. The observed mean difference over tasks
has variance

    SE² = σ²_int / T + (σ²_run,ref + σ²_run,cand) / S + (σ²_e,ref + σ²_e,cand) / (T S)

Estimates from a pilot, per test (balanced two-way ANOVA of each design's tasks × seeds matrix): σ²_e = residual
mean square; σ²_run = (seed mean square − σ²_e) / T, floored at 0; σ²_int = variance over tasks of the
seed-averaged difference − σ²_e,ref / S_ref − σ²_e,cand / S_cand, floored at 0.

Simulation of the seed-aware test (analysis.seeds): its bootstrap distribution of the mean difference has the
exact variance (Owen's crossed resampling of the observed matrices)

    var_boot = Σ_t (D_t − D̄)² / T² + Σ_s (c_ref,s − c̄_ref)² / S² + SS_res,ref / (T S)² + (same for cand)

and its null-centred two-sided p is close to 2 Φ(−|D̄| / sd_boot). Under the model, D̄ and the three kinds of sums
of squares are independent (normal and scaled χ² with T − 1, S − 1 and (T − 1)(S − 1) degrees of freedom), so one
simulated study costs five random draws whatever T and S: the plan simulates every test of the family together,
applies Holm's step-down to each simulated family, and counts rejections. Tests are simulated independently of
each other (tests sharing a design are positively correlated in reality; Holm is valid either way).

Closed form cross-checks: the normal approximation with Bonferroni's α / m (Holm's first step, a lower bound on
Holm's power) gives seeds = (σ²_run,Σ + σ²_e,Σ / T) / (target² − σ²_int / T) and tasks = (σ²_int + σ²_e,Σ / S) /
(target² − σ²_run,Σ / S), target = |δ| / (z_{1−α/2m} + z_power); and the paper's Wilcoxon over seed-averaged tasks
can reach Holm p < α only if every member's smallest p, 2/2^n, survives Holm (n ≥ log2(2m/α)).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm

from analysis.seeds import MIN_TASKS, RESAMPLES
from analysis.stats import holm_bounds, min_p_value

SIMULATIONS = 4000


@dataclass(frozen=True)
class Components:
    """Variance components of one test (score units squared) and the effect to detect (score units)."""
    effect: float
    interaction: float       # σ²_int
    run_ref: float           # σ²_run of the reference design
    run_cand: float
    noise_ref: float         # σ²_e of the reference design
    noise_cand: float

    def se(self, seeds, tasks):
        """Standard error of the mean difference with ``seeds`` per design and ``tasks`` tasks (broadcasts)."""
        seeds, tasks = np.asarray(seeds, float), np.asarray(tasks, float)
        return np.sqrt(self.interaction / tasks + (self.run_ref + self.run_cand) / seeds
                       + (self.noise_ref + self.noise_cand) / (tasks * seeds))


def _anova(x: np.ndarray) -> tuple[float, float]:
    """(σ²_run, σ²_e) of one tasks × seeds matrix."""
    tasks, seeds = x.shape
    rows, cols, grand = x.mean(axis=1, keepdims=True), x.mean(axis=0, keepdims=True), x.mean()
    ms_res = float(((x - rows - cols + grand) ** 2).sum()) / ((tasks - 1) * (seeds - 1))
    ms_seed = tasks * float(((cols - grand) ** 2).sum()) / (seeds - 1)
    return max(0.0, (ms_seed - ms_res) / tasks), ms_res


def estimate(reference: np.ndarray, candidate: np.ndarray) -> Components:
    """Components of one test from its pilot matrices (tasks × seeds, rows paired by task; ≥ 2 tasks, ≥ 2 seeds)."""
    reference, candidate = np.asarray(reference, float), np.asarray(candidate, float)
    if reference.shape[0] != candidate.shape[0] or reference.shape[0] < 2 or min(reference.shape[1],
                                                                                 candidate.shape[1]) < 2:
        raise ValueError(f"need tasks × seeds matrices with the same ≥ 2 tasks and ≥ 2 seeds each, got "
                         f"{reference.shape} and {candidate.shape}")
    run_ref, noise_ref = _anova(reference)
    run_cand, noise_cand = _anova(candidate)
    d = candidate.mean(axis=1) - reference.mean(axis=1)
    interaction = max(0.0, float(np.var(d, ddof=1)) - noise_ref / reference.shape[1]
                      - noise_cand / candidate.shape[1])
    return Components(float(d.mean()), interaction, run_ref, run_cand, noise_ref, noise_cand)


def _holm_reject(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down over the last axis (statsmodels' rule: reject p_(i) <= alpha / (m − i) while it holds)."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ok = np.take_along_axis(p, order, axis=-1) <= alpha / (m - np.arange(m))
    ok = np.logical_and.accumulate(ok, axis=-1)
    reject = np.empty_like(ok)
    np.put_along_axis(reject, order, ok, axis=-1)
    return reject


def simulate_p(tests: list[Components], seeds: int, tasks: np.ndarray, sims: int = SIMULATIONS, seed: int = 0,
               alternative: str = "two-sided", resamples: int = RESAMPLES) -> np.ndarray:
    """sims × tests seed-aware p-values (normal approximation of the bootstrap p, floored at 1/(B+1) like the
    real test; NaN where the analysis would not run it) for studies with ``seeds`` per design and ``tasks[i]``
    tasks in test i."""
    rng = np.random.default_rng(seed)
    m = len(tests)
    tasks = np.broadcast_to(np.asarray(tasks, float), (m,))
    z = rng.standard_normal((sims, m))
    s = float(seeds)
    out = np.full((sims, m), np.nan)
    if s < 2:
        return out
    for i, c in enumerate(tests):
        t = tasks[i]
        if t < MIN_TASKS:      # the analysis does not run the seed-aware test below MIN_TASKS tasks
            continue
        obs = c.effect + c.se(s, t) * z[:, i]
        rows = (c.interaction + c.noise_ref / s + c.noise_cand / s) * rng.chisquare(t - 1, sims)
        col_r = (c.run_ref + c.noise_ref / t) * rng.chisquare(s - 1, sims)
        col_c = (c.run_cand + c.noise_cand / t) * rng.chisquare(s - 1, sims)
        res_r = c.noise_ref * rng.chisquare((t - 1) * (s - 1), sims)
        res_c = c.noise_cand * rng.chisquare((t - 1) * (s - 1), sims)
        var_boot = rows / t ** 2 + (col_r + col_c) / s ** 2 + (res_r + res_c) / (t * s) ** 2
        sd = np.sqrt(np.maximum(var_boot, 1e-300))
        if alternative == "two-sided":
            p = 2 * norm.sf(np.abs(obs) / sd)
        elif alternative == "greater":
            p = norm.sf(obs / sd)
        else:
            p = norm.cdf(obs / sd)
        out[:, i] = np.clip(p, 1.0 / (resamples + 1), 1.0)
    return out


def family_power(tests: list[Components], seeds: int, tasks, alpha: float = 0.05, sims: int = SIMULATIONS,
                 seed: int = 0, alternative: str = "two-sided") -> np.ndarray:
    """Per test: the share of simulated families in which Holm rejects it (a test not run never rejects)."""
    p = simulate_p(tests, seeds, tasks, sims, seed, alternative)
    return _holm_reject(np.nan_to_num(p, nan=2.0), alpha).mean(axis=0)


# ---- closed forms ------------------------------------------------------------------------------------------------

def _target(c: Components, m: int, alpha: float, power: float, alternative: str) -> float:
    tails = 2 if alternative == "two-sided" else 1
    return abs(c.effect) / (norm.isf(alpha / (tails * m)) + norm.ppf(power))


def normal_power(c: Components, m: int, seeds, tasks, alpha: float = 0.05, alternative: str = "two-sided"):
    """Normal-approximation power at Bonferroni's α/m (Holm's strictest step)."""
    tails = 2 if alternative == "two-sided" else 1
    shift = abs(c.effect) / c.se(seeds, tasks)
    crit = norm.isf(alpha / (tails * m))
    return norm.sf(crit - shift) + (norm.sf(crit + shift) if tails == 2 else 0.0)


def normal_seeds(c: Components, m: int, tasks: float, alpha: float, power: float,
                 alternative: str = "two-sided") -> float:
    """Seeds per design the normal approximation needs at ``tasks`` tasks (inf: seeds alone cannot reach it)."""
    room = _target(c, m, alpha, power, alternative) ** 2 - c.interaction / tasks
    need = (c.run_ref + c.run_cand + (c.noise_ref + c.noise_cand) / tasks)
    return math.inf if room <= 0 else max(2.0, math.ceil(need / room))


def normal_tasks(c: Components, m: int, seeds: float, alpha: float, power: float,
                 alternative: str = "two-sided") -> float:
    room = _target(c, m, alpha, power, alternative) ** 2 - (c.run_ref + c.run_cand) / seeds
    need = c.interaction + (c.noise_ref + c.noise_cand) / seeds
    return math.inf if room <= 0 else max(float(MIN_TASKS), math.ceil(need / room))


def wilcoxon_floor_tasks(m: int, alpha: float, alternative: str = "two-sided") -> int:
    """Fewest tasks per test at which a Holm family of m Wilcoxon tests with that many tasks each can reach α."""
    n = 1
    while holm_bounds(np.full(m, min_p_value(n, alternative))).max() >= alpha:
        n += 1
    return n


def wilcoxon_holm_floor(tasks: list[int], alpha: float, alternative: str = "two-sided") -> np.ndarray:
    """Best Holm-adjusted p each member could get (the report's ° rule without the screen)."""
    return holm_bounds(np.array([min_p_value(int(n), alternative) for n in tasks], float))


# ---- search ------------------------------------------------------------------------------------------------------

@dataclass
class TestPlan:
    name: str                # "reference vs candidate: category"
    components: Components
    pilot_tasks: int
    pilot_seeds: int
    power_at_pilot: float    # simulated Holm power of the seed-aware test at the pilot's grid
    wilcoxon_floor_at_pilot: float
    seeds_needed: float      # at the pilot's tasks per category (inf: not within max_seeds)
    tasks_needed: float      # at the pilot's seeds (inf: not within max_tasks)
    seeds_normal: float      # closed form (normal, Bonferroni) at the pilot's tasks
    tasks_normal: float
    reachable: bool          # powered somewhere within max_seeds × max_tasks

    def row(self) -> dict:
        c = asdict(self.components)
        return {"test": self.name, "effect": c["effect"], "sd_interaction": math.sqrt(c["interaction"]),
                "sd_run_ref": math.sqrt(c["run_ref"]), "sd_run_cand": math.sqrt(c["run_cand"]),
                "sd_noise_ref": math.sqrt(c["noise_ref"]), "sd_noise_cand": math.sqrt(c["noise_cand"]),
                **{k: v for k, v in asdict(self).items() if k not in ("name", "components")}}


@dataclass
class Plan:
    tests: list[TestPlan]
    alpha: float
    power: float
    alternative: str
    max_seeds: int
    max_tasks: int
    sims: int
    pilot_seeds: int
    wilcoxon_min_tasks: int                    # per category, for the Wilcoxon floor to allow Holm p < α
    frontier: list[tuple[int, float]]          # (seeds, tasks per category needed by every reachable test)
    smallest: tuple[int, float] | None         # fewest seeds, then fewest tasks, powering every reachable test

    @property
    def m(self) -> int:
        return len(self.tests)


def _first(values, ok) -> float:
    for v in values:
        if ok(v):
            return float(v)
    return math.inf


def plan(tests: dict[str, tuple[Components, int]], pilot_seeds: int, alpha: float = 0.05, power: float = 0.8,
         alternative: str = "two-sided", max_seeds: int = 20, max_tasks: int = 100, sims: int = SIMULATIONS,
         seed: int = 0) -> Plan:
    """``tests``: name → (components, pilot tasks of that test). Tasks grow per category as max(pilot, T)."""
    names = list(tests)
    comps = [tests[n][0] for n in names]
    pilot_t = np.array([tests[n][1] for n in names], float)
    m = len(names)

    cache: dict[tuple[int, int], np.ndarray] = {}

    def powers(s: int, t: int) -> np.ndarray:
        if (s, t) not in cache:
            cache[(s, t)] = family_power(comps, s, np.maximum(pilot_t, t), alpha, sims, seed, alternative)
        return cache[(s, t)]

    low_t = int(pilot_t.min())
    at_pilot = powers(pilot_seeds, 0)
    reachable = powers(max_seeds, max_tasks) >= power
    floors = wilcoxon_holm_floor(list(pilot_t.astype(int)), alpha, alternative)
    frontier = []
    if reachable.any():
        for s in range(2, max_seeds + 1):
            frontier.append((s, _min_tasks(lambda t: powers(s, t)[reachable].min() >= power, low_t, max_tasks)))
    smallest = next(((s, t) for s, t in frontier if math.isfinite(t)), None)
    plans = []
    for i, name in enumerate(names):
        c = comps[i]
        seeds_needed = _first(range(2, max_seeds + 1), lambda s: powers(s, 0)[i] >= power)
        tasks_needed = (_min_tasks(lambda t: powers(pilot_seeds, t)[i] >= power, max(low_t, int(pilot_t[i])),
                                   max_tasks) if pilot_seeds >= 2 else math.inf)
        plans.append(TestPlan(
            name, c, int(pilot_t[i]), pilot_seeds, float(at_pilot[i]), float(floors[i]), seeds_needed,
            tasks_needed, normal_seeds(c, m, pilot_t[i], alpha, power, alternative),
            normal_tasks(c, m, pilot_seeds, alpha, power, alternative) if pilot_seeds >= 2 else math.inf,
            bool(reachable[i])))
    return Plan(plans, alpha, power, alternative, max_seeds, max_tasks, sims, pilot_seeds,
                wilcoxon_floor_tasks(m, alpha, alternative), frontier, smallest)


def _min_tasks(ok, low: int, high: int) -> float:
    """Smallest t in [low, high] with ok(t) (bisection: power grows with t up to Monte-Carlo noise), inf if none."""
    if not ok(high):
        return math.inf
    if ok(low):
        return float(low)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if ok(mid) else (mid, high)
    return float(high)
