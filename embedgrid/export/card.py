"""The model card (README.md) of an exported cell: what it is, how it was trained, what it scored."""
from __future__ import annotations

import json
from pathlib import Path


def write_model_card(directory: Path, encoder, record: dict, truncate_dim: int | None = None) -> None:
    design = record.get("design") or {}
    config = record.get("config") or {}
    scores = record.get("category_scores") or {}
    means = scores.get("categories", scores) if isinstance(scores, dict) else {}
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in means.items() if isinstance(value, (int, float)))
    train = record.get("train") or {}
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, embedgrid]",
        "---",
        f"# {record.get('cell', 'embedgrid cell')}",
        "",
        f"An embedding model trained by [embedgrid](https://github.com/) as one grid cell: pooling "
        f"`{design.get('pooling', '?')}`, attention `{encoder.spec.attention}`, base model "
        f"`{design.get('model', '?')}`, seed {design.get('seed', '?')}.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        *(["model = SentenceTransformer(PATH)  # trainable heads need `pip install embedgrid`",
           "vectors = model.encode(texts)      # EOS is appended by the tokenizer, vectors are L2-normalised"]
          if truncate_dim is None else
          [f"model = SentenceTransformer(PATH, truncate_dim={truncate_dim})  # evaluated at its first "
           f"{truncate_dim} dimensions",
           "vectors = model.encode(texts, normalize_embeddings=True)  # the prefix, renormalised"]),
        "```",
        "",
        "## Training",
        "",
        f"Steps: {train.get('steps', '?')}; see `embedgrid.json` and the configuration below.",
        "",
        "## Scores (category means of the main scores)",
        "",
        "| category | mean |",
        "|---|---|",
        rows or "| (not evaluated) | |",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config, indent=2, default=str),
        "```",
        "",
    ]
    (directory / "README.md").write_text("\n".join(lines))
