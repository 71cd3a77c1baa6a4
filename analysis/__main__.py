"""python -m analysis SWEEP_DIR [MORE_DIRS ...]: tables, Wilcoxon + Holm statistics, plots and report.md.
python -m analysis plan [PILOT] ...: how many seeds and tasks a family needs, and what a grid costs."""
from __future__ import annotations

import argparse
import sys

from analysis import reach
from analysis.designs import DEFAULT_FAMILY, DEFAULT_PRESETS, PRESETS
from analysis.errors import MixedDesigns, OptionError
from analysis.report import HOLM_MARK, RAW_MARK, SEED_MARK, UNREACHABLE_MARK, factor_text_table
from analysis.stats import ALTERNATIVES, METHODS, ZERO_METHODS, WilcoxonSettings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("sweep_dirs", nargs="+", help="sweep directories (every cell.json below them is collected)")
    p.add_argument("--out", default=None, help="output directory (default: <first sweep dir>/analysis)")
    p.add_argument("--baseline", default="eos_last,causal", help="POOLING,ATTENTION of the baseline design")
    p.add_argument("--compare", default=",".join(DEFAULT_PRESETS), metavar="PRESET[,PRESET]",
                   help=f"comparison presets, comma-separated: paper, {', '.join(PRESETS)}")
    p.add_argument("--twin", default=None, metavar="KEY=VALUE",
                   help="compare each design with its twin at KEY=VALUE (preset twins; KEY joins --by), "
                        "e.g. train.max_steps=0 for trained vs zero-shot")
    p.add_argument("--by", default="", metavar="KEY[,KEY]",
                   help="extra config keys that split designs, comma-separated, e.g. train.lr,grid")
    p.add_argument("--pool-over", default="", metavar="KEY[,KEY]",
                   help="keys in which cells of one design may differ and still be averaged as seeds (the report "
                        "names them); other differences beyond runtime-only keys are refused")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--alternative", choices=ALTERNATIVES, default="two-sided",
                   help="of candidate − reference (one-sided only if pre-registered)")
    p.add_argument("--zero-method", choices=ZERO_METHODS, default="wilcox")
    p.add_argument("--method", choices=METHODS, default="auto", help="scipy.stats.wilcoxon method")
    p.add_argument("--correction", action="store_true", help="continuity correction (asymptotic method only)")
    p.add_argument("--decimals", type=int, default=4, help="round differences before ranking (-1: no rounding)")
    p.add_argument("--family", default=",".join(DEFAULT_FAMILY), metavar="PRESET[,PRESET]",
                   help="presets whose per-category out-of-domain tests form the one pre-registered Holm family "
                        "(auto: the paper's where the sweep has their designs, else the grid's factors)")
    p.add_argument("--no-power-screen", action="store_true",
                   help="keep family tests that cannot reach Holm p < alpha (marked instead of screened out)")
    p.add_argument("--power", type=float, default=0.8, help="power of the minimum detectable effect")
    p.add_argument("--no-pooled", action="store_true", help="skip the all-out-of-domain-tasks pooled test per pair")
    p.add_argument("--include-unfinished", action="store_true", help="use scores of cells not marked done")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--cd-min-tasks", type=int, default=6)
    wandb = p.add_mutually_exclusive_group()
    wandb.add_argument("--wandb", action="store_const", const=True, default=False,
                       help="log tables, plots and report to the sweep's W&B group")
    wandb.add_argument("--wandb-auto", dest="wandb", action="store_const", const="auto", default=argparse.SUPPRESS,
                       help="log to W&B only if the sweep's cells were logged there (their logger config)")
    p.add_argument("--wandb-project", default=None)
    p.add_argument("--wandb-entity", default=None)
    p.add_argument("--wandb-mode", choices=("offline", "online", "disabled"), default=None)
    return p


def split(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plan"]:       # python -m analysis plan ...: power and cost plans (analysis/plan_cli.py)
        from analysis.plan_cli import main as plan_main

        return plan_main(argv[1:])
    if argv[:1] == ["promote"]:    # python -m analysis promote ...: the promotion sweeper's selection and report
        from analysis.promote import main as promote_main

        return promote_main(argv[1:])
    args = parser().parse_args(argv)
    baseline = tuple(args.baseline.split(","))
    if len(baseline) != 2:
        parser().error(f"--baseline must be POOLING,ATTENTION, got '{args.baseline}'")
    from analysis.run import AnalysisConfig, analyze

    try:
        settings = WilcoxonSettings(alpha=args.alpha, alternative=args.alternative, zero_method=args.zero_method,
                                method=args.method, correction=args.correction,
                                decimals=None if args.decimals < 0 else args.decimals)
        config = AnalysisConfig(by=split(args.by), pool_over=split(args.pool_over), baseline=baseline,
                                twin=args.twin, presets=split(args.compare),
                                settings=settings, family=split(args.family),
                                power_screen=not args.no_power_screen, power=args.power, pooled=not args.no_pooled,
                                include_unfinished=args.include_unfinished, plots=not args.no_plots,
                                cd_min_tasks=args.cd_min_tasks, out_dir=args.out, wandb=args.wandb,
                                wandb_project=args.wandb_project, wandb_entity=args.wandb_entity,
                                wandb_mode=args.wandb_mode)
        result = analyze(args.sweep_dirs, config,
                         command="python -m analysis " + " ".join(argv if argv is not None else sys.argv[1:]))
    except MixedDesigns as error:
        print(f"analysis: refused: {error}", file=sys.stderr)
        return 3
    except (FileNotFoundError, OptionError) as error:
        print(f"analysis: error: {error}", file=sys.stderr)
        return 2
    if result.problems:
        kinds = {}
        for problem in result.problems:
            kinds[problem.kind] = kinds.get(problem.kind, 0) + 1
        print("problems: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + " (see report.md)")
    print(f"report: {result.files['report']}")
    print(f"stats:  {result.files['stats']}")
    if result.files.get("wandb_run"):
        print(f"W&B:    analysis run {result.files['wandb_run']}")
    family = result.family
    significant = int(result.stats["reject_holm"].sum()) if len(result.stats) else 0
    seed_tested = int(result.stats["p_seed_holm"].notna().sum()) if len(result.stats) else 0
    seed_significant = int(result.stats["reject_seed_holm"].sum()) if len(result.stats) else 0
    print(f"Holm family ({', '.join(family.presets)}; out-of-domain, per category): {family.size} test(s), "
          f"{significant} significant at alpha={result.config.settings.alpha:g}"
          + (f"; seed-aware test: {seed_significant} of {seed_tested} significant" if seed_tested else "")
          + (f", {len(family.screened)} screened out (too few tasks)" if family.screen else ""))
    unreachable = reach.unreachable(result.stats, family, result.config.settings)
    if len(unreachable):
        print(f"{reach.summary(unreachable)}: listed with what would make them reachable in report.md")
    effects = factor_text_table(result)
    if effects:
        print(f"\nfactor effects (candidate − reference; {RAW_MARK} p < alpha, {HOLM_MARK} Holm, {SEED_MARK} "
              f"seed-aware, {UNREACHABLE_MARK} cannot reach alpha):")
        print(effects)
    print()
    print(result.category_table())   # last, so a sweep's console ends with it
    return 0


if __name__ == "__main__":
    sys.exit(main())
