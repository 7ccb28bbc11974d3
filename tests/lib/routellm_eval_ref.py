"""routellm_eval_ref — a Python rendering of RouteLLM's routing evaluation.

Follows lm-sys/RouteLLM (routellm/evals/benchmarks.py and evaluate.py) with
numpy in place of pandas, so it runs in CI:
  - benchmarks.py: decontaminate; thresholds = pd.qcut(scores, 10,
    retbins=True)[1], i.e. numpy.quantile(scores, linspace(0, 1, 11)) (linear);
    strong where score >= edge (last edge: score > edge); MMLU/GSM8K quality
    = sum(correct of the routed model) / n * 100; MT-Bench: the routed model
    per question merged with its judgements (both turns), quality = mean
    score, strong share = strong rows / rows * 100.
  - evaluate.py: points sorted by strong share (stable here: pandas'
    quicksort on 11 rows is an insertion sort); AUC = trapz(quality,
    share / 100); APGR = (AUC - weak_auc) / (strong_auc - weak_auc) with the
    constant curves integrated over the same shares; CPT(p) =
    np.interp(W + p (S - W), quality, share).

Usage as a program: routellm_eval_ref.py BENCH SCORES.jsonl  (the score file
format of `routescore eval --scores`) prints the same JSON as `--json`.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rsdata  # noqa: E402

MT_STRONG = "gpt-4-1106-preview"
MT_WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"


def load(bench, d=None):
    """(prompts, weak_rows, strong_rows, scale): per item the list of the
    model's judged values (one 0/1 for MMLU/GSM8K, the turn scores for MT-Bench)."""
    d = d or rsdata.data_dir()
    if bench == "mmlu":
        rows = rsdata.decontaminated("mmlu", list(rsdata.mmlu_rows(d)), lambda r: r[1], d)
        return [r[1] for r in rows], [[int(r[2])] for r in rows], [[int(r[3])] for r in rows], 100.0
    if bench == "gsm8k":
        rows = rsdata.decontaminated("gsm8k", list(rsdata.gsm8k_rows(d)), lambda r: r[0], d)
        return [r[0] for r in rows], [[int(r[1])] for r in rows], [[int(r[2])] for r in rows], 100.0
    bad = rsdata._contaminated(d, "mt_bench")
    qs = [q for q in rsdata.mtbench_questions(d) if q["turns"][0] not in bad and q["turns"][1] not in bad]
    with open(os.path.join(d, "mt_bench", "judgements.jsonl"), encoding="utf-8") as f:
        judg = [json.loads(line) for line in f if line.strip()]
    weak, strong = [], []
    for q in qs:
        weak.append([j["score"] for j in judg if j["question_id"] == q["question_id"] and j["model"] == MT_WEAK])
        strong.append([j["score"] for j in judg if j["question_id"] == q["question_id"] and j["model"] == MT_STRONG])
    return [q["turns"][0] for q in qs], weak, strong, 1.0


def routed_quality(sel, weak, strong, scale):
    vals, n_strong = [], 0
    for s, w, g in zip(sel, weak, strong):
        vals += g if s else w
        n_strong += len(g) if s else 0
    return sum(vals) / len(vals) * scale, n_strong / len(vals) * 100


def evaluate(scores, weak, strong, scale):
    scores = np.asarray(scores, dtype=np.float64)
    edges = np.quantile(scores, np.linspace(0, 1, 11))
    pts = []
    for i, edge in enumerate(edges):
        sel = scores > edge if i == len(edges) - 1 else scores >= edge
        q, share = routed_quality(sel, weak, strong, scale)
        pts.append((float(edge), share, q))
    pts.sort(key=lambda p: p[1])  # stable
    share = np.array([p[1] for p in pts])
    qual = np.array([p[2] for p in pts])
    W, _ = routed_quality([False] * len(weak), weak, strong, scale)
    S, _ = routed_quality([True] * len(weak), weak, strong, scale)
    trapz = getattr(np, "trapezoid", None) or np.trapz
    auc = trapz(qual, share / 100)
    weak_auc = trapz(np.zeros(len(pts)) + W, share / 100)
    strong_auc = trapz(np.zeros(len(pts)) + S, share / 100)
    apgr = (auc - weak_auc) / (strong_auc - weak_auc)
    cpt = [float(np.interp(p * (S - W) + W, qual, share)) for p in (0.5, 0.8)]
    return {"items": len(weak), "weak_quality": W, "strong_quality": S,
            "points": [{"threshold": e, "strong_share": s, "quality": q} for e, s, q in pts],
            "auc": float(auc), "apgr": float(apgr), "cpt50": cpt[0], "cpt80": cpt[1]}


def join_scores(prompts, path):
    """The join of `routescore eval --scores`: by prompt text, else by row id."""
    index = {}
    for i, p in enumerate(prompts):
        index.setdefault(p, []).append(i)
    out = [None] * len(prompts)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            j = json.loads(line)
            rows = index.get(j["prompt"], []) if "prompt" in j else (
                [j["id"]] if 0 <= j["id"] < len(prompts) else [])
            for r in rows:
                out[r] = float(j["win_prob"])
    assert all(s is not None for s in out), "rows without a score"
    return out


def main():
    bench, path = sys.argv[1], sys.argv[2]
    prompts, weak, strong, scale = load(bench)
    res = evaluate(join_scores(prompts, path), weak, strong, scale)
    res["benchmark"] = bench
    print(json.dumps(res))


if __name__ == "__main__":
    main()
