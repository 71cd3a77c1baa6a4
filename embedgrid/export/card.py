"""The model card (README.md) of an exported cell: what it is, how it was trained, what it scored.

The scores are the cell's ``category_scores.json`` as the cell's console table, its W&B summary and the analysis
report them: out-of-domain categories and their average first, in-domain categories apart.
"""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, metadata
from pathlib import Path

# embedgrid heads that sentence-transformers' own Pooling computes, with its mode names; the others travel as
# embedgrid's module (embedgrid.export.st_modules)
ST_POOLING_MODES = {"EosLastPooling": "lasttoken", "MeanPooling": "mean", "WeightedMeanPooling": "weightedmean"}


def needs_remote_code(encoder) -> bool:
    """A pooling head sentence-transformers does not have travels as embedgrid's own module, which
    sentence-transformers imports only with ``trust_remote_code=True``."""
    return str(encoder.spec.pooling.get("_target_", "")).rsplit(".", 1)[-1] not in ST_POOLING_MODES


def usage(encoder) -> str:
    remote = ", trust_remote_code=True" if needs_remote_code(encoder) else ""
    return f"SentenceTransformer(PATH{remote})"


def project_link(record: dict) -> str:
    """The project, linked where its package metadata names a URL; else its name, version and commit."""
    try:
        meta = metadata("embedgrid")
        urls = [u.split(",", 1)[-1].strip() for u in meta.get_all("Project-URL") or []]
        urls += [meta["Home-page"]] if meta.get("Home-page") else []
    except PackageNotFoundError:
        urls = []
    if urls:
        return f"[embedgrid]({urls[0]})"
    code = (record.get("provenance") or {}).get("code") or {}
    where = [f"version {code['version']}"] if code.get("version") else []
    where += [f"commit {code['git_commit'][:12]}"] if code.get("git_commit") else []
    return f"embedgrid ({', '.join(where)})" if where else "embedgrid"


def score_rows(categories: dict) -> list[str]:
    def row(name, value, tasks):
        return f"| {name} | {value:.4f} | {tasks} |"

    means, counts = categories.get("means") or {}, categories.get("tasks_per_category") or {}
    rows = [row(name, value, counts.get(name, "")) for name, value in means.items()]
    total = sum(counts.values())
    if categories.get("average_of_category_means") is not None:
        rows.append(row("**average of categories**", categories["average_of_category_means"], total))
    if categories.get("mean_of_tasks") is not None:
        rows.append(row("**average of tasks**", categories["mean_of_tasks"], total))
    own = categories.get("in_domain") or {}
    own_counts = own.get("tasks_per_category") or {}
    rows += [row(f"{name} (in-domain)", value, own_counts.get(name, ""))
             for name, value in (own.get("means") or {}).items()]
    return rows


def brief_config(record: dict, encoder) -> list[str]:
    config, design = record.get("config") or {}, record.get("design") or {}
    train, lora = config.get("train") or {}, config.get("lora") or {}
    inputs = (record.get("provenance") or {}).get("inputs") or {}
    items = [
        ("base model", f"`{(config.get('model') or {}).get('name', design.get('model', '?'))}`"
                       + (f" ({inputs['model']})" if inputs.get("model") else "")),
        ("pooling", f"`{design.get('pooling', '?')}`"),
        ("attention", f"`{encoder.spec.attention}`"),
        ("LoRA", f"r={lora.get('r')}, alpha={lora.get('alpha')}" if lora.get("enabled", True) else "off"),
        ("training", f"{train.get('max_steps', '?')} steps, batch {train.get('batch_size', '?')}, "
                     f"lr {train.get('lr', '?')}, {train.get('num_negatives', '?')} hard negatives"),
        ("training data", f"`{(config.get('data') or {}).get('name', '?')}`: "
                          + (", ".join(f"{k} {v}" for k, v in inputs.items() if k.startswith("data")) or "?")),
        ("max length", str(encoder.spec.max_length)),
        ("seed", str(design.get("seed", "?"))),
    ]
    return ["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in items]


def write_model_card(directory: Path, encoder, record: dict, truncate_dim: int | None = None) -> None:
    design = record.get("design") or {}
    categories = record.get("category_scores") or {}
    not_evaluated = categories.get("not_evaluated") or {}
    train = record.get("train") or {}
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, embedgrid]",
        "---",
        f"# {record.get('cell', 'embedgrid cell')}",
        "",
        f"An embedding model trained by {project_link(record)} as one grid cell: pooling "
        f"`{design.get('pooling', '?')}`, attention `{encoder.spec.attention}`, base model "
        f"`{design.get('model', '?')}`, seed {design.get('seed', '?')}.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        *([f"model = {usage(encoder)}"
           + ("  # the pooling head is embedgrid's module: `pip install embedgrid`" if needs_remote_code(encoder)
              else ""),
           "vectors = model.encode(texts)  # EOS is appended by the tokenizer, vectors are L2-normalised"]
          if truncate_dim is None else
          [f"model = {usage(encoder)[:-1]}, truncate_dim={truncate_dim})  # evaluated at its first "
           f"{truncate_dim} dimensions",
           "vectors = model.encode(texts, normalize_embeddings=True)  # the prefix, renormalised"]),
        "```",
        "",
        "## Configuration",
        "",
        *brief_config(record, encoder),
        "",
        f"Steps trained: {train.get('steps', '?')}. The full configuration is in `embedgrid.json` and the cell's "
        "`cell.json`.",
        "",
        "## Scores",
        "",
        "Category means of the main scores over out-of-domain tasks, their averages, then the in-domain categories "
        "(tasks whose text is in the training data) apart.",
        "",
        "| category | mean | tasks |",
        "|---|---|---|",
        *(score_rows(categories) or ["| (not evaluated) | | |"]),
        "",
        *[f"- not evaluated: {name}: {why}" for name, why in not_evaluated.items()],
        "",
        "```json",
        json.dumps({"design": design, "config_hash": record.get("config_hash")}, indent=2),
        "```",
        "",
    ]
    (directory / "README.md").write_text("\n".join(lines))
