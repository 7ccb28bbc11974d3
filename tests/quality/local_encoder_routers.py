#!/usr/bin/env python3
"""mf_routellm and sw_ranking with a local encoder (the manifest's `encoder`,
here the tiny XLM-R test checkpoint, hidden 64): text prompts scored by
`routescore score` must equal the numpy references (tests/lib/
routellm_router_ref.py) applied to the encoder's embeddings from
`routescore embed`. For sw_ranking the battle file carries prompts only, so the
router embeds them itself at open."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from routellm_router_ref import compute_elo_mle_with_tie, compute_tiers, pred_win_rate, save_safetensors  # noqa: E402
from tiny_encoder import ENC, WORDS, embed  # noqa: E402

BIN, DATA = os.environ.get("RS_BIN"), os.environ.get("RS_TEST_DATA")
if not BIN or not DATA:
    print("RS_BIN / RS_TEST_DATA not set")
    sys.exit(77)


def score(router, prompts):
    r = subprocess.run([BIN, "score", "--model", router] + prompts, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr)
    return np.array([json.loads(l)["win_prob"] for l in r.stdout.splitlines()])


def main():
    rng = np.random.default_rng(5)
    prompts = [" ".join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(8)]
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        emb = embed(tmp, prompts)
        H = emb.shape[1]

        # mf_routellm: 5 named models, dim 4, text_dim = the encoder's hidden size.
        mf = os.path.join(tmp, "mf")
        os.mkdir(mf)
        P = rng.standard_normal((5, 4)).astype(np.float32)
        W = (rng.standard_normal((4, H)) / np.sqrt(H)).astype(np.float32)
        c = rng.standard_normal((1, 4)).astype(np.float32)
        save_safetensors(os.path.join(mf, "model.safetensors"),
                         {"P.weight": P, "text_proj.0.weight": W, "classifier.0.weight": c})
        names = ["m%d" % i for i in range(5)]
        json.dump({"kind": "mf_routellm", "encoder": ENC, "models": names, "strong_model": "m3", "weak_model": "m0"},
                  open(os.path.join(mf, "routescore.json"), "w"))
        want = np.array([pred_win_rate(P, W, c, 3, 0, e) for e in emb])
        got = score(mf, prompts)
        d = np.max(np.abs(got - want)) if got.shape == want.shape else np.inf
        print("mf_routellm + encoder: max |p - numpy| = %.3g" % d)
        fails += not d < 1e-4

        # sw_ranking: battles given as prompts, embedded by the router at open.
        sw = os.path.join(tmp, "sw")
        os.mkdir(sw)
        bprompts = [" ".join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(60)]
        models = ["s%d" % i for i in range(6)]
        rows = []
        for p in bprompts:
            i, j = rng.choice(6, 2, replace=False)
            u = rng.random()
            w = "tie" if u < 0.2 else "model_a" if rng.random() < 1 / (1 + np.exp(-(i - j) / 2)) else "model_b"
            rows.append({"prompt": p, "model_a": models[i], "model_b": models[j], "winner": w})
        with open(os.path.join(sw, "battles.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        json.dump({"kind": "sw_ranking", "encoder": ENC, "num_tiers": 3, "strong_model": "s5", "weak_model": "s1"},
                  open(os.path.join(sw, "routescore.json"), "w"))
        E = embed(tmp, bprompts)
        a = np.array([r["model_a"] for r in rows])
        b = np.array([r["model_b"] for r in rows])
        win = np.array([r["winner"] for r in rows])
        m2t = compute_tiers(compute_elo_mle_with_tie(a, b, win), 3)
        ta, tb = np.array([m2t[m] for m in a]), np.array([m2t[m] for m in b])
        want = []
        for q in emb:
            sims = E @ q / (np.linalg.norm(E, axis=1) * np.linalg.norm(q))
            res = dict(compute_elo_mle_with_tie(ta, tb, win, sample_weight=10 * 10 ** (sims / np.max(sims))))
            want.append(1 - 1 / (1 + 10 ** ((res[m2t["s5"]] - res[m2t["s1"]]) / 400)))
        want = np.array(want)
        got = score(sw, prompts)
        d = np.max(np.abs(got - want)) if got.shape == want.shape else np.inf
        print("sw_ranking + encoder (prompt battles): max |p - numpy| = %.3g" % d)
        fails += not d < 1e-4
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
