"""MTEB evaluation of one cell's encoder: suites, offline tasks, per-cell result cache."""
