"""``python -m embedgrid.mine ROWS OUT [--cell DIR | --config OVERRIDE ...] [options]``: training rows with hard
negatives mined by an encoder (a trained cell, or a config's encoder zero-shot); see embedgrid/data/mining.py."""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

from embedgrid.data.jsonl import JsonlRows
from embedgrid.data.mining import MiningSettings, mine, read_corpus_file, sha256_file
from embedgrid.errors import ConfigError, MiningConflict, MissingAsset, UntrustedEncoder

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m embedgrid.mine", description=__doc__)
    p.add_argument("rows", help="JSONL rows {query, positive, negatives?, instruction?}")
    p.add_argument("out", help="new JSONL file: the rows with mined negatives")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--cell", help="a finished cell directory: its trained encoder mines")
    source.add_argument("--config", nargs="+", metavar="OVERRIDE", default=[],
                        help="Hydra overrides of the cell config (model=..., pooling=..., attention=...): that "
                             "encoder, untrained, mines (default: the default cell's design)")
    p.add_argument("--corpus", action="append", default=[],
                   help="extra documents, JSONL of strings or {text} (repeatable); the rows' positives and "
                        "negatives are always searched")
    defaults = MiningSettings()
    p.add_argument("--num-negatives", type=int, default=defaults.num_negatives, help="negatives mined per row")
    p.add_argument("--range-min", type=int, default=defaults.range_min,
                   help="skip the first RANGE_MIN candidates (0-based ranks, positive left out)")
    p.add_argument("--range-max", type=int, default=defaults.range_max, help="consider ranks below RANGE_MAX")
    p.add_argument("--margin", type=float, default=defaults.margin,
                   help="false-negative guard: a negative scores at most positive - MARGIN")
    p.add_argument("--max-fraction", type=float, default=defaults.max_fraction,
                   help="false-negative guard: a negative scores at most MAX_FRACTION x positive (1 turns it off)")
    p.add_argument("--keep-existing", action="store_true", help="keep the rows' own negatives first")
    p.add_argument("--drop-short", action="store_true",
                   help="leave out rows that got fewer than --num-negatives mined negatives")
    p.add_argument("--chunk-size", type=int, default=defaults.chunk_size,
                   help="texts per embedding/search chunk and per committed chunk of output rows")
    p.add_argument("--batch-size", type=int, default=32, help="encoder batch size")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import embedgrid.grid.schema  # noqa: F401  (registers the config schema)

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose("config", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def build(args, device: str):
    """(encoder, identity): the identity names the encoder in the mining manifest."""
    from embedgrid import load_encoder

    if args.cell:
        encoder = load_encoder(args.cell, device=device)
        model = Path(args.cell) / "model" if (Path(args.cell) / "model").is_dir() else Path(args.cell)
        files = {str(p.relative_to(model)): sha256_file(p) for p in sorted(model.rglob("*")) if p.is_file()}
        return encoder, {"encoder": {"cell": str(Path(args.cell).resolve()), "files": files}}
    from hydra.errors import HydraException

    from embedgrid.grid.plan import encoder_spec
    from embedgrid.grid.schema import check
    from embedgrid.model.encoder import build_encoder

    try:
        cfg = compose(list(args.config))
        check(cfg)
    except HydraException as error:
        raise ConfigError(f"--config {' '.join(args.config)}: {error}") from None
    spec = encoder_spec(cfg)
    blob = json.dumps(spec.__dict__, sort_keys=True, default=str)
    return build_encoder(spec, device=device), {"encoder": {"config": list(args.config),
                                                            "spec_sha256": hashlib.sha256(blob.encode()).hexdigest()}}


def run(args) -> int:
    import torch

    settings = MiningSettings(num_negatives=args.num_negatives, range_min=args.range_min,
                              range_max=args.range_max, margin=args.margin,
                              max_fraction=None if args.max_fraction in (None, 1) else args.max_fraction,
                              keep_existing=args.keep_existing, drop_short=args.drop_short,
                              chunk_size=args.chunk_size)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    rows = JsonlRows(args.rows)
    extra = [text for path in args.corpus for text in read_corpus_file(Path(path))]
    encoder, identity = build(args, device)
    identity["rows_sha256"] = sha256_file(Path(args.rows))
    identity["corpus_sha256"] = [sha256_file(Path(path)) for path in args.corpus]

    def encode(texts, instruction):
        return encoder.encode(texts, batch_size=args.batch_size, instruction=instruction)

    summary = mine(rows, args.out, encode, settings, dim=encoder.dim, identity=identity, extra_corpus=extra,
                   progress=not args.no_progress)
    short = (f"{summary.short} rows got fewer than {settings.num_negatives} mined negatives"
             + (" and were left out" if settings.drop_short else f" (fewest: {summary.fewest}; --drop-short leaves "
                                                                 "them out)"))
    print(f"wrote {args.out}: {summary.written} of {summary.rows} rows, corpus of {summary.corpus} documents; "
          f"{summary.guarded} candidates dropped by the false-negative guard; {short}.\nTrain on it with: "
          f"python launch.py data=jsonl data.loader.path={args.out} train.num_negatives=N (N at most the "
          f"fewest negatives of a row)")
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return run(args)
    except (ConfigError, MiningConflict, MissingAsset, UntrustedEncoder, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # a row of the input file (named by file:line)
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
