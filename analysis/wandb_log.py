"""Optional: log the analysis tables and plots to the sweep's W&B group. Off by default; never raises."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _from_cells(result, key: str):
    for config in result.collection.cells["config"]:
        value = (config.get("logger") or {}).get(key) if isinstance(config, dict) else None
        if value:
            return value
    return None


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
                         config={"sweeps": [str(r) for r in result.collection.roots], "family": cfg.family,
                                 "baseline": list(cfg.baseline), **vars(cfg.settings)},
                         reinit="finish_previous", settings=wandb.Settings(init_timeout=30, silent=True))
        stats = result.stats.drop(columns=["reference_design", "candidate_design"])
        table = result.table.assign(design=result.table["design"].map(lambda d: result.labels[d]))
        payload = {"analysis/stats": wandb.Table(dataframe=stats.astype(str)),
                   "analysis/categories": wandb.Table(dataframe=table)}
        payload.update({f"analysis/plots/{p.stem}": wandb.Image(str(p)) for p in result.files.get("plots", [])})
        run.log(payload)
        run.summary["analysis/report"] = result.report
        run_id = run.id
        run.finish()
        return run_id
    except Exception as error:  # noqa: BLE001 - logging is a convenience; the files on disk are the result
        log.warning("W&B logging of the analysis failed: %s: %s", type(error).__name__, error)
        return None
