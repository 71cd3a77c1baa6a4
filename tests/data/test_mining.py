"""Hard-negative mining (embedgrid/data/mining.py, ``python -m embedgrid.mine``)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT, TINY, launch

# One query; its positive and candidates at known cosine similarities to it.
SCORES = {"positive": 1.0, "near duplicate": 0.99, "hard": 0.9, "medium": 0.5, "easy": 0.1, "far": -0.5}


def fake_encode(texts, instruction):
    """Unit vectors: the query is e0; a document of score s is (s, sqrt(1 - s^2)) in the plane of e0 and e1."""
    out = np.zeros((len(texts), 4), dtype=np.float32)
    for i, text in enumerate(texts):
        s = 1.0 if text == "query" else SCORES[text.split(" #")[0]]
        out[i, :2] = (s, np.sqrt(max(0.0, 1 - s * s)))
    return out


def mine_one(tmp_path, name, **settings):
    from embedgrid.data.mining import MiningSettings, mine
    from embedgrid.data.rows import Row

    rows = [Row("query", "positive", ("easy",)), Row("query", "positive", ("far", "far"))]
    extra = ["near duplicate", "hard", "medium", "hard", "easy"]  # repeated texts are searched once
    out = tmp_path / f"{name}.jsonl"
    mine(rows, out, fake_encode, MiningSettings(**settings), dim=4, identity={}, extra_corpus=extra,
         progress=False)
    return [json.loads(line)["negatives"] for line in out.read_text().splitlines()]


def test_the_false_negative_guard_drops_candidates_too_close_to_the_positive(tmp_path):
    # unguarded: the hardest first, the near-duplicate of the positive included
    assert mine_one(tmp_path, "none", num_negatives=2, max_fraction=None)[0] == ["near duplicate", "hard"]
    # relative: at most 0.95 x the positive's score
    assert mine_one(tmp_path, "fraction", num_negatives=2, max_fraction=0.95)[0] == ["hard", "medium"]
    # absolute: at most positive - 0.2
    assert mine_one(tmp_path, "margin", num_negatives=2, margin=0.2, max_fraction=None)[0] == ["medium", "easy"]
    # the rank window counts from the hardest candidate, before the guard
    assert mine_one(tmp_path, "window", num_negatives=3, range_min=1, range_max=4, max_fraction=0.95)[0] == \
        ["hard", "medium", "easy"]
    # rows short of negatives (here: a window too narrow for the guard) are left out on request
    assert mine_one(tmp_path, "short", num_negatives=2, range_max=2) == [["hard"], ["hard"]]
    assert mine_one(tmp_path, "dropped", num_negatives=2, range_max=2, drop_short=True) == []
    # a row's own negatives kept first, never twice
    kept = mine_one(tmp_path, "keep", num_negatives=2, keep_existing=True)
    assert kept[0] == ["easy", "hard", "medium"] and kept[1] == ["far", "far", "hard", "medium"]


def test_settings_and_conflicts_are_refused_with_the_fix(tmp_path):
    from embedgrid.data.mining import MiningSettings, WorkDir
    from embedgrid.errors import ConfigError, MiningConflict

    with pytest.raises(ConfigError, match="--range-max=3: must be >= range_min \\+ num_negatives"):
        MiningSettings(num_negatives=4, range_min=0, range_max=3)
    with pytest.raises(ConfigError, match="--max-fraction=1.5"):
        MiningSettings(max_fraction=1.5)
    mine_one(tmp_path, "done", num_negatives=1)
    WorkDir(tmp_path / "done.jsonl").open({})  # as left by a run killed between publishing and cleaning up
    with pytest.raises(MiningConflict, match="exists; delete it"):
        mine_one(tmp_path, "done", num_negatives=1)
    assert not (tmp_path / "done.jsonl.mining").exists()
    WorkDir(tmp_path / "other.jsonl").open({"settings": {"num_negatives": 2}})
    with pytest.raises(MiningConflict, match="begun with other .*settings; relaunch with the same"):
        mine_one(tmp_path, "other", num_negatives=1)


def test_chunked_search_is_the_exact_top_k():
    from embedgrid.data.mining import top_candidates

    rng = np.random.default_rng(0)
    queries, corpus = rng.standard_normal((7, 5)).astype(np.float32), rng.standard_normal((53, 5)).astype(np.float32)
    corpus[10] = corpus[40]  # a tie: broken by index
    index, scores = top_candidates(queries, corpus, k=9, chunk=8)
    full = queries @ corpus.T
    for q in range(len(queries)):
        expected = sorted(range(len(corpus)), key=lambda i: (-full[q, i], i))[:9]
        assert list(index[q]) == expected
        np.testing.assert_allclose(scores[q], full[q, expected], rtol=1e-6)


def write_rows(path, n):
    from embedgrid.data.wordnet import definition_synonym_rows

    rows = definition_synonym_rows(limit=n, num_negatives=1)
    path.write_text("".join(json.dumps({"query": r.query, "positive": r.positive, "negatives": list(r.negatives)})
                            + "\n" for r in rows))


SLOW_MINE = """
import sys, time
import embedgrid.mine as cli
mine = cli.mine


def slow(*args, **kwargs):
    kwargs["commit"] = lambda rows: (print("COMMITTED", rows, flush=True), time.sleep(60))
    return mine(*args, **kwargs)


cli.mine = slow
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_mining_resumes_after_sigkill_with_the_same_file_and_the_rows_train(tmp_path, launch_env):
    """Killed after its first committed chunk, a relaunch continues and writes the file an uninterrupted run
    writes; a tiny data=jsonl cell then trains on the mined rows, sampling 2 of their 3 negatives per step."""
    rows = tmp_path / "rows.jsonl"
    write_rows(rows, 24)
    args = ["--config", "model=tiny", "--num-negatives", "3", "--max-fraction", "1", "--chunk-size", "8",
            "--threads", "1", "--no-progress"]
    env = {**launch_env, "PYTHONPATH": str(ROOT)}

    def cli(out, *extra):
        return subprocess.run([sys.executable, "-m", "embedgrid.mine", str(rows), str(out), *args, *extra],
                              env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)

    straight = cli(tmp_path / "straight.jsonl")
    assert straight.returncode == 0, straight.stderr[-3000:]
    script = tmp_path / "slow_mine.py"
    script.write_text(SLOW_MINE)
    killed = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, str(script), str(rows), str(killed), *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().split() == ["COMMITTED", "8"]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    work = tmp_path / "killed.jsonl.mining"
    assert not killed.exists() and json.loads((work / "rows_progress.json").read_text())["done"] == 8
    with open(work / "rows.jsonl", "ab") as f:
        f.write(b'{"query": "torn')  # an append that was never committed
    resumed = cli(killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert killed.read_bytes() == (tmp_path / "straight.jsonl").read_bytes() and not work.exists()
    mined = [json.loads(line) for line in killed.read_text().splitlines()]
    assert len(mined) == 24 and all(len(r["negatives"]) == 3 and r["positive"] not in r["negatives"] for r in mined)
    refused = cli(killed)
    assert refused.returncode == 2 and "exists; delete it" in refused.stderr

    sweep = tmp_path / "sweep"
    launch([*TINY, "data=jsonl", f"data.loader.path={killed}", "train.num_negatives=2", "train.negatives=sample",
            f"hydra.run.dir={sweep}/cell"], launch_env)
    cell = json.loads((sweep / "cell" / "cell.json").read_text())
    assert cell["status"] == "done" and cell["train"]["steps"] == 3, cell
