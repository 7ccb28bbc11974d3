#!/usr/bin/env python3
"""Generates tests/data/sw_ranking: a small synthetic battle set with
precomputed embeddings (battles.jsonl), query embeddings (embeddings.jsonl)
and the strong-win probabilities of a numpy rendering of RouteLLM's
SWRankingRouter (routellm/routers/similarity_weighted/):

  * compute_elo_mle_with_tie: battles duplicated, X[row, a] = +ln 10 then
    X[row, b] = -ln 10 (same column: the second assignment wins), Y = 1 for
    model_a wins in both copies and for ties in the first copy; logistic
    regression without intercept or penalty (here IRLS on the explicit dense
    X with a pseudo-inverse: sklearn is not available), elo = 400 coef + 1000;
  * compute_tiers: the minimum summed-variance split of the ratings, sorted
    best first, into num_tiers tiers;
  * per prompt: cosine similarities, weights 10 * 10**(S / max S) (duplicated
    like the rows), the weighted fit over tiers, and
    1 - 1 / (1 + 10**((E_strong - E_weak) / 400)).

8 models in 4 tiers, 240 battles, embeddings of width 16. Seeded.
The renderings are tests/lib/routellm_router_ref.py's.
Usage: python3 tools/gen/gen_sw_ranking.py"""
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "sw_ranking")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from routellm_router_ref import compute_elo_mle_with_tie, compute_tiers  # noqa: E402
NUM_TIERS = 4
STRONG, WEAK = "model-6", "model-1"


def main():
    rng = np.random.default_rng(11)
    n_models, n_battles, dim, n_queries = 8, 240, 16, 10
    names = ["model-%d" % i for i in range(n_models)]
    strength = np.linspace(-1.5, 1.5, n_models)
    topic = rng.standard_normal((3, dim))  # prompts from 3 topics; model skill varies by topic
    bonus = rng.standard_normal((3, n_models)) * 0.8
    rows = []
    for _ in range(n_battles):
        t = rng.integers(3)
        emb = topic[t] + 0.7 * rng.standard_normal(dim)
        i, j = rng.choice(n_models, 2, replace=False)
        d = (strength[i] + bonus[t, i]) - (strength[j] + bonus[t, j])
        pa = 1 / (1 + math.exp(-d))
        u = rng.random()
        winner = "tie" if u < 0.15 else "tie (bothbad)" if u < 0.2 else "model_a" if rng.random() < pa else "model_b"
        rows.append({"model_a": names[i], "model_b": names[j], "winner": winner,
                     "embedding": [float("%.5g" % x) for x in emb]})
    queries = np.array([[float("%.6g" % x) for x in topic[q % 3] + 0.7 * rng.standard_normal(dim)]
                        for q in range(n_queries)], dtype=np.float32)

    model_a = np.array([r["model_a"] for r in rows])
    model_b = np.array([r["model_b"] for r in rows])
    winner = np.array([r["winner"] for r in rows])
    E = np.array([r["embedding"] for r in rows], dtype=np.float32).astype(np.float64)
    model2tier = compute_tiers(compute_elo_mle_with_tie(model_a, model_b, winner), NUM_TIERS)
    ta = np.array([model2tier[m] for m in model_a])
    tb = np.array([model2tier[m] for m in model_b])
    probs = []
    for q in queries.astype(np.float64):
        sims = E @ q / (np.linalg.norm(E, axis=1) * np.linalg.norm(q))
        weights = 10 * 10 ** (sims / np.max(sims))
        res = dict(compute_elo_mle_with_tie(ta, tb, winner, sample_weight=weights))
        weak_score, strong_score = res[model2tier[WEAK]], res[model2tier[STRONG]]
        weak_winrate = 1 / (1 + 10 ** ((strong_score - weak_score) / 400))
        probs.append(float(1 - weak_winrate))

    with open(os.path.join(OUT, "battles.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(OUT, "embeddings.jsonl"), "w") as f:
        for q in queries:
            f.write(json.dumps([float("%.6g" % x) for x in q]) + "\n")
    with open(os.path.join(OUT, "routescore.json"), "w") as f:
        json.dump({"name": "sw_ranking", "kind": "sw_ranking", "battles": "battles.jsonl", "num_tiers": NUM_TIERS,
                   "strong_model": STRONG, "weak_model": WEAK, "threshold": 0.5}, f, indent=1)
        f.write("\n")
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"model2tier": model2tier, "win_prob": probs}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
