"""decoder_features — held-out APGR of heads on SmolLM2-135M features (the
engine's Llama encoder, docs/ROUTERS.md), alone and beside the shipped
MiniLM head, plus two diagnostics of the MMLU protocol. numpy only; same
protocol and helpers as experiments.py (MMLU subject halves a-m <-> n-z,
GSM8K 5-fold CV, MT-Bench out of domain; "+" training sets).

Features: `routescore embed` on an encoder spec (kind "embed",
encoder_layers L, pooling mean|last, not normalised), cached as
models/cache/quality/emb_smollm2_L{L}_{pool}.npz; each head z-scores them
with the mean and sd of all MMLU + GSM8K rows (train --standardize uses the
training rows only). The MiniLM side is experiments.py's cache.

    build/routescore must exist; python3 benchmarks/quality/experiments.py --prompts first.
    python3 benchmarks/quality/decoder_features.py [--bin build/routescore] [--what heads,combos,protocol]

Embedding the 15,416 prompts takes ~3 min for 6 layers and ~10 min for 12
on the 2-core machine; the heads ~1 min each.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import experiments as X  # noqa: E402

SMOL = os.path.join(X.ROOT, "models", "cache", "smollm2-135m")


def smol_features(binary, layers, pool):
    npz = os.path.join(X.CACHE, f"emb_smollm2_L{layers}_{pool}.npz")
    if not os.path.exists(npz):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "routescore.json"), "w") as f:
                json.dump({"name": "smol", "kind": "embed", "encoder": os.path.abspath(SMOL),
                           "encoder_layers": layers, "pooling": pool, "normalize": False}, f)
            out = os.path.join(tmp, "emb.jsonl")
            subprocess.run([binary, "embed", "--model", tmp, "--in", os.path.join(X.CACHE, "prompts.jsonl"),
                            "--out", out], check=True)
            rows = {b: {} for b in X.BENCHES}
            for line in open(out, encoding="utf-8"):
                j = json.loads(line)
                b, i = j["id"].rsplit(":", 1)
                rows[b][int(i)] = j["embedding"]
        np.savez(npz, **{b: np.array([rows[b][i] for i in range(len(rows[b]))], np.float32) for b in X.BENCHES})
    z = np.load(npz)
    E = {b: z[b].astype(np.float64) for b in X.BENCHES}
    A = np.vstack([E["mmlu"], E["gsm8k"]])
    mu, sd = A.mean(0), A.std(0) + 1e-6
    return {b: (E[b] - mu) / sd for b in X.BENCHES}


def on_columns(fit, a, b):
    """A head that sees columns a:b of the feature matrix."""
    def f(Xf, w, s, g=None):
        p = fit(Xf[:, a:b], w, s, g)
        return lambda Z: p(Z[:, a:b])
    return f


def show(name, r):
    print(f"| {name} | {r['mmlu_am_to_nz']:.3f} | {r['mmlu_nz_to_am']:.3f} | **{r['mmlu']:.3f}** "
          f"| **{r['gsm8k']:.3f}** | {r['mt-bench']:.3f} |", flush=True)


def heads(D, binary):
    lenf = {b: (np.log(D.T[b]) - 3.5)[:, None] for b in X.BENCHES}
    for layers, pool, l2s in ((6, "mean", (30, 300, 1000)), (12, "mean", (300, 1000, 3000)),
                              (6, "last", (100, 1000, 3000)), (12, "last", (300, 3000))):
        S = smol_features(binary, layers, pool)
        for l2 in l2s:
            show(f"SmolLM2 L{layers} {pool}, logistic mixed λ{l2} gsm8k x5",
                 X.run(D, X.head_logistic("mixed", float(l2), gsm_rep=5), True, lambda b: S[b]))
        if (layers, pool) == (6, "mean"):
            show("SmolLM2 L6 mean +len, logistic mixed λ300 gsm8k x5",
                 X.run(D, X.head_logistic("mixed", 300.0, gsm_rep=5), True, lambda b: np.hstack([S[b], lenf[b]])))
            show("SmolLM2 L6 mean + MiniLM + len jointly, logistic mixed λ300 gsm8k x5",
                 X.run(D, X.head_logistic("mixed", 300.0, gsm_rep=5), True,
                       lambda b: np.hstack([S[b], 20 * D.E[b], lenf[b]])))


def combos(D, binary):
    """Rank means of separately fitted heads: the shipped head (MiniLM + len),
    a SmolLM2 head, the token count, a kNN of "weak wrong" on MiniLM."""
    lenf = {b: (np.log(D.T[b]) - 3.5)[:, None] for b in X.BENCHES}
    for layers in (6, 12):
        S = smol_features(binary, layers, "mean")
        F = lambda b: np.hstack([D.E[b], lenf[b], S[b]])  # noqa: E731
        base = on_columns(X.head_logistic("mixed", 30.0, gsm_rep=5), 0, 385)
        smol = on_columns(X.head_logistic("mixed", 1000.0, gsm_rep=5), 385, 385 + S["mmlu"].shape[1])
        length = on_columns(X.head_length(), 0, 385)
        knn = on_columns(X.head_knn("weakwrong", 100), 0, 385)
        show(f"combo shipped + SmolLM2 L{layers} (λ1000)", X.run(D, X.head_combo([base, smol]), True, F))
        show(f"combo shipped + SmolLM2 L{layers} + length", X.run(D, X.head_combo([base, smol, length]), True, F))
        show(f"combo shipped + SmolLM2 L{layers} + knn + length",
             X.run(D, X.head_combo([base, smol, knn, length]), True, F))


def protocol(D):
    """Is the a-m / n-z split the bottleneck? (1) subject-grouped K-fold CV,
    out-of-fold scores pooled; (2) an oracle that knows each test subject's
    own mean label (the most a subject-level prior can give)."""
    subj = np.array([r[0] for r in X.rsdata.decontaminated("mmlu", list(X.rsdata.mmlu_rows()), lambda r: r[1])])
    names = sorted(set(subj))
    lenf = {b: (np.log(D.T[b]) - 3.5)[:, None] for b in X.BENCHES}
    Xm, Xg = np.hstack([D.E["mmlu"], lenf["mmlu"]]), np.hstack([D.E["gsm8k"], lenf["gsm8k"]])
    for name, fit in (("shipped head", X.head_logistic("mixed", 30.0, gsm_rep=5)), ("length only", X.head_length())):
        for k in (5, len(names)):
            fold = np.array([names.index(s) % k for s in subj])
            oof = np.empty(len(subj))
            per = []
            for f in range(k):
                tr, te = np.where(fold != f)[0], np.where(fold == f)[0]
                p = fit(np.vstack([Xm[tr], Xg]), np.concatenate([D.w["mmlu"][tr], D.w["gsm8k"]]),
                        np.concatenate([D.s["mmlu"][tr], D.s["gsm8k"]]),
                        np.concatenate([np.zeros(len(tr)), np.ones(len(Xg))]))
                oof[te] = p(Xm[te])
                per.append(D.apgr("mmlu", oof[te], te))
            print(f"{name}: {k}-fold by subject, pooled APGR {D.apgr('mmlu', oof):.3f} "
                  f"(mean of folds {np.mean(per):.3f})", flush=True)
    w, s = D.w["mmlu"], D.s["mmlu"]
    jitter = np.random.default_rng(0).normal(0, 1e-6, len(w))
    for lab, y in (("gain", s * (1 - w)), ("weak wrong", 1 - w)):
        sc = jitter.copy()
        for u in names:
            sc[subj == u] += y[subj == u].mean()
        got = [D.apgr("mmlu", sc[np.where(~h)[0]], np.where(~h)[0]) for h in (D.first_half, ~D.first_half)]
        print(f"subject oracle ({lab}): evaluate n-z {got[0]:.3f}, a-m {got[1]:.3f}, mean {np.mean(got):.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(X.ROOT, "build", "routescore"))
    ap.add_argument("--what", default="heads,combos,protocol")
    a = ap.parse_args()
    D = X.Data()
    what = a.what.split(",")
    print("| features, head | MMLU a-m→n-z | MMLU n-z→a-m | MMLU (mean) | GSM8K 5-fold | MT-Bench |")
    print("|---|---:|---:|---:|---:|---:|")
    if "heads" in what:
        heads(D, os.path.abspath(a.bin))
    if "combos" in what:
        combos(D, os.path.abspath(a.bin))
    if "protocol" in what:
        protocol(D)


if __name__ == "__main__":
    main()
