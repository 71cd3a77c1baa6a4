"""``python -m embedgrid.export CELL_DIR OUT_DIR [--push-to-hub REPO_ID] [--public] [--truncate-dim K]``: a
sentence-transformers model directory (LoRA merged into the weights, attention mode in the config) from a trained cell."""
from __future__ import annotations

import argparse
import json
import logging

from embedgrid.export import export_cell


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m embedgrid.export", description=__doc__)
    parser.add_argument("cell_dir", help="a finished cell directory (or its model/ directory)")
    parser.add_argument("out_dir", help="new directory for the sentence-transformers model")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload to this hub repository (token from "
                        "HF_TOKEN or `hf auth login`)")
    parser.add_argument("--public", action="store_true", help="create the hub repository public (default private)")
    parser.add_argument("--truncate-dim", type=int, default=None, metavar="K",
                        help="the first K dimensions (default: the cell's eval.truncate_dim); recorded for "
                             "SentenceTransformer(dir, truncate_dim=K)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = export_cell(args.cell_dir, args.out_dir, push_to_hub=args.push_to_hub,
                      private=not args.public, truncate_dim=args.truncate_dim)
    truncate = json.loads((out / "embedgrid.json").read_text()).get("truncate_dim")
    load = f"{str(out)!r}" + (f", truncate_dim={truncate}" if truncate else "")
    print(f"exported to {out}\n  from sentence_transformers import SentenceTransformer\n"
          f"  SentenceTransformer({load}).encode(texts{', normalize_embeddings=True' if truncate else ''})")


if __name__ == "__main__":
    main()
