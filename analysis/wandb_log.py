"""Optional: log the analysis tables, plots and report to the sweep's W&B group; never raises.

``--wandb`` always logs; ``--wandb-auto`` (what a sweep passes) logs only when the cells themselves were logged to
W&B, read from the ``logger`` section of their recorded config, in the cells' own mode (offline by default)."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _from_cells(result, key: str):
    for config in result.collection.cells["config"]:
        value = (config.get("logger") or {}).get(key) if isinstance(config, dict) else None
        if value:
            return value
    return None


WANDB_TARGET = "WandbLogger"


def logged_to_wandb(result) -> bool:
    """Whether any finished cell was logged to W&B (its logger is embedgrid's WandbLogger, mode not disabled)."""
    cells = result.collection.cells
    for config in cells.loc[cells["status"] == "done", "config"]:
        logger = config.get("logger") if isinstance(config, dict) else None
        if (isinstance(logger, dict) and str(logger.get("_target_", "")).endswith(WANDB_TARGET)
                and logger.get("mode") != "disabled"):
            return True
    return False


def log_to_wandb(result) -> str | None:
    """One W&B run (job_type=analysis) in the sweep's group; returns its id, or None if W&B was unavailable."""
    try:
        import wandb

        cfg = result.config
        grids = sorted({g for g in result.collection.cells["grid"] if isinstance(g, str)})
        group = grids[0] if len(grids) == 1 else None
        run = wandb.init(project=cfg.wandb_project or _from_cells(result, "project") or "embedgrid",
                         entity=cfg.wandb_entity or _from_cells(result, "entity"), group=group,
                         job_type="analysis", name=f"analysis-{group or 'sweeps'}", dir=str(result.out_dir),
                         mode=cfg.wandb_mode or _from_cells(result, "mode") or "offline",
                         config={"sweeps": [str(r) for r in result.collection.roots], "family": list(cfg.family),
                                 "baseline": list(cfg.baseline), **vars(cfg.settings)},
                         reinit="finish_previous", settings=wandb.Settings(init_timeout=30, silent=True))
        stats = result.stats.drop(columns=["reference_design", "candidate_design"])
        table = result.table.assign(design=result.table["design"].map(lambda d: result.labels[d]))
        payload = {"analysis/stats": wandb.Table(dataframe=stats.astype(str)),
                   "analysis/family": wandb.Table(dataframe=stats[stats["family"] == "primary"].astype(str)),
                   "analysis/categories": wandb.Table(dataframe=table)}
        payload.update({f"analysis/plots/{p.stem}": wandb.Image(str(p)) for p in result.files.get("plots", [])})
        run.log(payload)
        run.summary["analysis/report"] = result.report
        run.summary["analysis/category_table"] = result.category_table()
        run.summary["analysis/family_size"] = result.family.size if result.family else 0
        run.summary["analysis/family_significant"] = int(stats["reject_holm"].sum()) if len(stats) else 0
        run_id = run.id
        run.finish()
        return run_id
    except Exception as error:  # noqa: BLE001 - logging is a convenience; the files on disk are the result
        log.warning("W&B logging of the analysis failed: %s: %s", type(error).__name__, error)
        return None
