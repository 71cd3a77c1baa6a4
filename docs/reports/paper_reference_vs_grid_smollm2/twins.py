"""Each design under experiment=paper_grid against its reference twin (experiment=paper_reference): per category."""
import json, sys
from pathlib import Path
import numpy as np
from analysis.stats import paired_wilcoxon, WilcoxonSettings

def cells(root):
    out = {}
    for cell in Path(root).glob("*/cell.json"):
        rec = json.loads(cell.read_text())
        if rec.get("status") != "done":
            continue
        scores = json.loads((cell.parent / "scores.json").read_text())
        out[(rec["design"]["pooling"], rec["design"]["attention"])] = (scores, rec)
    return out

ref, grid = cells(sys.argv[1]), cells(sys.argv[2])
order = [("eos_last", "causal"), ("last_layer_trainable", "causal"), ("multi_layer_trainable", "causal"),
         ("last_layer_trainable", "bidirectional"), ("multi_layer_trainable", "bidirectional")]
cats = ["STS", "Classification", "Clustering", "Retrieval", "Reranking", "PairClassification"]
rows = []
print("| design | " + " | ".join(f"{c} (n)" for c in cats) + " | all tasks: mean Δ, W p, r_rb |")
print("|---|" + "---|" * (len(cats) + 1))
for n, design in enumerate(order, 1):
    if design not in ref or design not in grid:
        print(f"| {n} {design[0]}/{design[1]} | " + " | ".join("not run" for _ in cats) + " | |")
        continue
    r, g = ref[design][0], grid[design][0]
    tasks = sorted(set(r) & set(g))
    cells_out = []
    for c in cats:
        ts = [t for t in tasks if r[t]["category"] == c]
        d = [g[t]["main_score"] - r[t]["main_score"] for t in ts]
        cells_out.append(f"{np.mean([r[t]['main_score'] for t in ts]):.4f} → {np.mean([g[t]['main_score'] for t in ts]):.4f} ({np.mean(d):+.4f}, {len(ts)})")
    x = [g[t]["main_score"] for t in tasks]; y = [r[t]["main_score"] for t in tasks]
    res = paired_wilcoxon(x, y)
    rows.append({"design": design, "tasks": tasks, "ref": y, "grid": x})
    print(f"| {n} {design[0]}/{design[1]} | " + " | ".join(cells_out) +
          f" | {np.mean(np.array(x) - np.array(y)):+.4f}, p={res.p:.3g}, r={res.rank_biserial:+.2f} (n={res.n}) |")
    tr_r, tr_g = ref[design][1].get("train", {}), grid[design][1].get("train", {})
    print(f"<!-- {design}: loss ref {tr_r.get('first_loss')}->{tr_r.get('final_loss')}, grid {tr_g.get('first_loss')}->{tr_g.get('final_loss')}; identical-text candidates ref {tr_r.get('identical_text_candidates')} grid {tr_g.get('identical_text_candidates')}; pooling params ref {ref[design][1].get('pooling_parameters')} grid {grid[design][1].get('pooling_parameters')} -->")
