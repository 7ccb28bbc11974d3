"""experiments — held-out APGR of candidate default-router heads on cached
all-MiniLM-L6-v2 embeddings (numpy only).

Every figure is on prompts the head never trained on, computed with
tests/lib/routellm_eval_ref.py (RouteLLM's evaluation):
  MMLU   held-out subjects: train on the subjects whose name starts with a-m,
         evaluate on n-z, and the reverse; the two APGRs averaged.
  GSM8K  5-fold cross-validation by row index % 5; the out-of-fold scores are
         joined and evaluated once.
  MT-Bench  out of domain: a head trained on all of MMLU + GSM8K scores the 72
         turn-1 prompts.
Training sets: "in" = the benchmark's own training part only (as
benchmarks/quality/heldout_eval.py); "+" = also all of the other benchmark
(MMLU folds + all GSM8K, GSM8K folds + all MMLU), which is what the shipped
router (trained on MMLU+GSM8K) sees.

Embeddings: models/cache/quality/emb.jsonl, written once by
    python3 benchmarks/quality/experiments.py --prompts   # writes prompts.jsonl
    build/routescore embed --model models/cache/all-minilm-l6-v2 \
        --in models/cache/quality/prompts.jsonl --out models/cache/quality/emb.jsonl
(ids "mmlu:I", "gsm8k:I", "mt-bench:I" = row I of `routescore eval --dump-prompts`).
Then:  python3 benchmarks/quality/experiments.py [NAME_SUBSTRING ...]
(appends each head's figures to models/cache/quality/results.jsonl).
The shipped default (head "logistic mixed l2=30 gsm8k x5 +len") is trained by
`routescore train` itself (docs/ROUTERS.md: make_train_labels.py --labels mixed
--gsm8k-weight 5, train --l2 30 --length-term); benchmarks/quality/heldout_eval.py
gives its held-out figures with the real binary (they equal this script's).
--train-labels / --write-head are the numpy-era helpers, kept for comparison.
"""
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import routellm_eval_ref as ref  # noqa: E402
import rsdata  # noqa: E402

CACHE = os.path.join(ROOT, "models", "cache", "quality")
BENCHES = ["mmlu", "gsm8k", "mt-bench"]


def write_prompts():
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, "prompts.jsonl"), "w", encoding="utf-8") as f:
        for b in BENCHES:
            for i, t in enumerate(ref.load(b)[0]):
                f.write(json.dumps({"id": f"{b}:{i}", "prompt": t}) + "\n")


def load_embeddings():
    npz = os.path.join(CACHE, "emb.npz")
    if os.path.exists(npz):
        z = np.load(npz)
        return {b: z[b] for b in BENCHES}, {b: z[b + "_tok"] for b in BENCHES}
    rows = {b: {} for b in BENCHES}
    toks = {b: {} for b in BENCHES}
    with open(os.path.join(CACHE, "emb.jsonl"), encoding="utf-8") as f:
        for line in f:
            j = json.loads(line)
            b, i = j["id"].rsplit(":", 1)
            rows[b][int(i)] = j["embedding"]
            toks[b][int(i)] = j["tokens"]
    E = {b: np.array([rows[b][i] for i in range(len(rows[b]))], dtype=np.float64) for b in BENCHES}
    T = {b: np.array([toks[b][i] for i in range(len(toks[b]))], dtype=np.float64) for b in BENCHES}
    np.savez(npz, **E, **{b + "_tok": T[b] for b in BENCHES})
    return E, T


class Data:
    def __init__(self):
        self.E, self.T = load_embeddings()
        self.lab = {}
        for b in BENCHES:
            prompts, weak, strong, scale = ref.load(b)
            assert len(prompts) == len(self.E[b]), b
            self.lab[b] = (weak, strong, scale)
        subj = [r[0] for r in rsdata.decontaminated("mmlu", list(rsdata.mmlu_rows()), lambda r: r[1])]
        self.first_half = np.array([s[0] <= "m" for s in subj])
        self.w = {b: np.array([x[0] for x in self.lab[b][0]], dtype=np.float64) for b in ("mmlu", "gsm8k")}
        self.s = {b: np.array([x[0] for x in self.lab[b][1]], dtype=np.float64) for b in ("mmlu", "gsm8k")}

    def apgr(self, b, scores, idx=None):
        weak, strong, scale = self.lab[b]
        if idx is not None:
            weak = [weak[i] for i in idx]
            strong = [strong[i] for i in idx]
        return ref.evaluate(scores, weak, strong, scale)["apgr"]


# ---------------------------------------------------------------- heads
# A head is fit(X, w, s, g) -> predict(X) -> scores; w, s = weak/strong correct (0/1),
# g = 1 on GSM8K rows (for per-benchmark labels or weights).

def sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def logistic_fit(X, y, l2, sw=None, iters=30):
    """L2-regularised logistic regression (penalty l2/2 |w|^2 on the summed,
    optionally weighted log-loss; bias free), Newton's method — the model
    `routescore train` fits."""
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    sw = np.ones(n) if sw is None else sw
    beta = np.zeros(d + 1)
    R = np.full(d + 1, l2)
    R[-1] = 0
    for _ in range(iters):
        p = sigmoid(A @ beta)
        g = A.T @ (sw * (p - y)) + R * beta
        H = (A * (sw * p * (1 - p))[:, None]).T @ A + np.diag(R) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(H, g)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def target(kind, w, s, g=None):
    if kind == "mixed":       # gain on GSM8K rows, weak wrong on MMLU rows
        return np.where(g > 0.5, s * (1 - w), 1 - w)
    if kind == "gain":        # strong right and weak wrong (the shipped label)
        return s * (1 - w)
    if kind == "weakwrong":   # weak wrong
        return 1 - w
    if kind == "notbothright":
        return 1 - s * w
    raise ValueError(kind)


def head_logistic(kind="gain", l2=1.0, balanced=False, gsm_rep=1):
    """gsm_rep: GSM8K rows weighted gsm_rep (= repeated that many times in the
    training file of `routescore train`)."""
    def fit(X, w, s, g=None):
        y = target(kind, w, s, g)
        sw = None if gsm_rep == 1 else np.where(g > 0.5, float(gsm_rep), 1.0)
        if balanced:
            pos = y.mean()
            sw = np.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos))
        beta = logistic_fit(X, y, l2, sw)
        return lambda Z: Z @ beta[:-1] + beta[-1]
    return fit


def head_ridge(l2=1.0):
    """Least squares on the soft gain s - w in {-1, 0, 1}."""
    def fit(X, w, s, g=None):
        y = s - w
        n, d = X.shape
        A = np.hstack([X, np.ones((n, 1))])
        R = np.full(d + 1, l2)
        R[-1] = 0
        beta = np.linalg.solve(A.T @ A + np.diag(R), A.T @ y)
        return lambda Z: Z @ beta[:-1] + beta[-1]
    return fit


def head_twomodel(l2=1.0):
    """P(strong right) - P(weak right), two logistic heads."""
    def fit(X, w, s, g=None):
        bs = logistic_fit(X, s, l2)
        bw = logistic_fit(X, w, l2)
        return lambda Z: sigmoid(Z @ bs[:-1] + bs[-1]) - sigmoid(Z @ bw[:-1] + bw[-1])
    return fit


def head_mlp(kind="gain", hidden=128, epochs=40, lr=1e-3, wd=1e-4, noise=0.0, seed=0, batch=128, gsm_rep=1):
    """One hidden layer (relu), BCE, numpy Adam, fixed seed and epochs."""
    def fit(X, w, s, g=None):
        y = target(kind, w, s, g)
        if gsm_rep != 1:
            rep = np.where(g > 0.5, gsm_rep, 1).astype(int)
            X, y = np.repeat(X, rep, 0), np.repeat(y, rep)
        rng = np.random.default_rng(seed)
        n, d = X.shape
        W1 = rng.normal(0, np.sqrt(2.0 / d), (d, hidden))
        b1 = np.zeros(hidden)
        W2 = rng.normal(0, np.sqrt(1.0 / hidden), hidden)
        b2 = np.array(np.log(y.mean() / (1 - y.mean())))
        params = [W1, b1, W2, b2]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        t = 0
        for _ in range(epochs):
            perm = rng.permutation(n)
            for k in range(0, n, batch):
                ix = perm[k:k + batch]
                xb = X[ix]
                if noise:
                    xb = xb + rng.normal(0, noise, xb.shape)
                h = np.maximum(xb @ W1 + b1, 0)
                z = h @ W2 + b2
                g = (sigmoid(z) - y[ix]) / len(ix)
                gW2 = h.T @ g
                gb2 = g.sum()
                gh = np.outer(g, W2) * (h > 0)
                gW1 = xb.T @ gh
                gb1 = gh.sum(0)
                grads = [gW1 + wd * W1, gb1, gW2 + wd * W2, gb2]
                t += 1
                for p, gr, mm, vv in zip(params, grads, m, v):
                    mm *= 0.9
                    mm += 0.1 * gr
                    vv *= 0.999
                    vv += 0.001 * gr * gr
                    p -= lr * (mm / (1 - 0.9 ** t)) / (np.sqrt(vv / (1 - 0.999 ** t)) + 1e-8)
        return lambda Z: np.maximum(Z @ W1 + b1, 0) @ W2 + b2
    return fit


def head_knn(kind="gain", k=None, sw=True):
    """Similarity-weighted label mean: cosine similarity S to every training
    prompt (embeddings are unit length), weights 10 * 10^(S / max S) as
    sw_ranking (sw=True) or 1 (plain mean), over the k most similar (k=None: all)."""
    def fit(X, w, s, g=None):
        y = target(kind, w, s, g)
        X = X[:, :384]  # the embedding only (drops a length column)

        def predict(Z):
            Z = Z[:, :384]
            out = np.empty(len(Z))
            for a in range(0, len(Z), 512):
                S = Z[a:a + 512] @ X.T
                if k is not None:
                    part = np.argpartition(-S, k, axis=1)[:, :k]
                    Sk = np.take_along_axis(S, part, 1)
                    yk = y[part]
                else:
                    Sk, yk = S, np.broadcast_to(y, S.shape)
                if sw:
                    wt = 10 * 10 ** (Sk / Sk.max(1, keepdims=True))
                else:
                    wt = np.ones_like(Sk)
                out[a:a + 512] = (wt * yk).sum(1) / wt.sum(1)
            return out
        return predict
    return fit


def rank01(x):
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r / max(len(x) - 1, 1)


def head_combo(fits, weights=None):
    """Mean of the parts' within-set rank-normalised scores."""
    def fit(X, w, s, g=None):
        preds = [f(X, w, s, g) for f in fits]
        ws = weights or [1.0] * len(fits)
        return lambda Z: sum(wi * rank01(p(Z)) for wi, p in zip(ws, preds)) / sum(ws)
    return fit


def head_length():
    """The prompt's token count alone (longer = strong): needs no training."""
    def fit(X, w, s, g=None):
        return lambda Z: Z[:, -1]
    return fit


def head_random(seed=0):
    def fit(X, w, s, g=None):
        rng = np.random.default_rng(seed)
        return lambda Z: rng.random(len(Z))
    return fit


# ---------------------------------------------------------------- protocol

def run(D, fit, plus=True, feats=None):
    """Held-out APGR on MMLU (subjects a-m <-> n-z, averaged), GSM8K (5-fold
    CV by row % 5) and MT-Bench (trained on all MMLU+GSM8K)."""
    F = feats or (lambda b: D.E[b])
    Xm, Xg, Xt = F("mmlu"), F("gsm8k"), F("mt-bench")
    res = {}
    halves = []
    for train_mask in (D.first_half, ~D.first_half):
        tr, te = np.where(train_mask)[0], np.where(~train_mask)[0]
        X = Xm[tr]
        w, s = D.w["mmlu"][tr], D.s["mmlu"][tr]
        g = np.zeros(len(tr))
        if plus:
            X = np.vstack([X, Xg])
            w = np.concatenate([w, D.w["gsm8k"]])
            s = np.concatenate([s, D.s["gsm8k"]])
            g = np.concatenate([g, np.ones(len(Xg))])
        halves.append(D.apgr("mmlu", fit(X, w, s, g)(Xm[te]), te))
    res["mmlu_am_to_nz"], res["mmlu_nz_to_am"] = halves
    res["mmlu"] = float(np.mean(halves))
    ng = len(Xg)
    oof = np.empty(ng)
    for k in range(5):
        tr = np.array([i for i in range(ng) if i % 5 != k])
        te = np.array([i for i in range(ng) if i % 5 == k])
        X, w, s = Xg[tr], D.w["gsm8k"][tr], D.s["gsm8k"][tr]
        g = np.ones(len(tr))
        if plus:
            X = np.vstack([X, Xm])
            w = np.concatenate([w, D.w["mmlu"]])
            s = np.concatenate([s, D.s["mmlu"]])
            g = np.concatenate([g, np.zeros(len(Xm))])
        oof[te] = fit(X, w, s, g)(Xg[te])
    res["gsm8k"] = D.apgr("gsm8k", oof)
    X = np.vstack([Xm, Xg])
    w = np.concatenate([D.w["mmlu"], D.w["gsm8k"]])
    s = np.concatenate([D.s["mmlu"], D.s["gsm8k"]])
    g = np.concatenate([np.zeros(len(Xm)), np.ones(len(Xg))])
    res["mt-bench"] = D.apgr("mt-bench", fit(X, w, s, g)(Xt))
    return res


def candidates():
    C = {}
    C["random (seed 0)"] = (head_random(), True)
    for l2 in (1.0,):
        C[f"logistic gain l2={l2:g} [in]"] = (head_logistic("gain", l2), False)
    for l2 in (0.1, 1.0, 10.0, 100.0):
        C[f"logistic gain l2={l2:g}"] = (head_logistic("gain", l2), True)
    C["logistic gain l2=10 balanced"] = (head_logistic("gain", 10.0, True), True)
    for l2 in (1.0, 10.0, 100.0):
        C[f"logistic weakwrong l2={l2:g}"] = (head_logistic("weakwrong", l2), True)
    C["logistic weakwrong l2=10 [in]"] = (head_logistic("weakwrong", 10.0), False)
    C["logistic notbothright l2=10"] = (head_logistic("notbothright", 10.0), True)
    for l2 in (1.0, 10.0, 100.0):
        C[f"ridge s-w l2={l2:g}"] = (head_ridge(l2), True)
    C["two logistic P(s)-P(w) l2=10"] = (head_twomodel(10.0), True)
    C["mlp gain h=128 40ep"] = (head_mlp("gain", 128, 40), True)
    C["mlp gain h=128 10ep"] = (head_mlp("gain", 128, 10), True)
    C["mlp weakwrong h=128 10ep"] = (head_mlp("weakwrong", 128, 10), True)
    C["mlp weakwrong h=128 20ep wd=1e-3 noise=.02"] = (head_mlp("weakwrong", 128, 20, wd=1e-3, noise=0.02), True)
    C["knn sw gain all"] = (head_knn("gain"), True)
    C["knn sw weakwrong all"] = (head_knn("weakwrong"), True)
    for k in (20, 100, 400):
        C[f"knn sw weakwrong k={k}"] = (head_knn("weakwrong", k), True)
        C[f"knn sw gain k={k}"] = (head_knn("gain", k), True)
    C["combo logistic weakwrong l2=10 + knn sw weakwrong k=100"] = (
        head_combo([head_logistic("weakwrong", 10.0), head_knn("weakwrong", 100)]), True)
    C["combo logistic gain l2=10 + logistic weakwrong l2=10"] = (
        head_combo([head_logistic("gain", 10.0), head_logistic("weakwrong", 10.0)]), True)
    # one head for both benchmarks: GSM8K rows weighted (repeated) and/or labelled differently
    for kind in ("gain", "mixed"):
        for rep in (5, 10):
            for l2 in (3.0, 10.0, 30.0):
                C[f"logistic {kind} l2={l2:g} gsm8k x{rep}"] = (head_logistic(kind, l2, gsm_rep=rep), True)
    C["logistic weakwrong l2=10 gsm8k x5"] = (head_logistic("weakwrong", 10.0, gsm_rep=5), True)
    C["logistic mixed l2=10 gsm8k x3"] = (head_logistic("mixed", 10.0, gsm_rep=3), True)
    C["logistic mixed l2=20 gsm8k x5"] = (head_logistic("mixed", 20.0, gsm_rep=5), True)
    C["logistic mixed l2=10 gsm8k x7"] = (head_logistic("mixed", 10.0, gsm_rep=7), True)
    C["mlp mixed h=128 10ep gsm8k x5"] = (head_mlp("mixed", 128, 10, gsm_rep=5), True)
    # + the prompt's length: feature log(tokens) (tokens as the engine counts them, <= 256)
    C["length only (tokens) +len"] = (head_length(), True, "len")
    for kind, l2 in (("gain", 10.0), ("weakwrong", 10.0)):
        C[f"logistic {kind} l2={l2:g} [in] +len"] = (head_logistic(kind, l2), False, "len")
    for kind, rep, l2 in (("gain", 1, 10.0), ("weakwrong", 1, 10.0), ("mixed", 5, 10.0), ("mixed", 5, 30.0),
                          ("gain", 5, 10.0), ("mixed", 10, 10.0)):
        C[f"logistic {kind} l2={l2:g} gsm8k x{rep} +len"] = (head_logistic(kind, l2, gsm_rep=rep), True, "len")
    C["mlp mixed h=128 10ep gsm8k x5 +len"] = (head_mlp("mixed", 128, 10, gsm_rep=5), True, "len")
    C["combo logistic mixed l2=10 gsm8k x5 + length +len"] = (
        head_combo([head_logistic("mixed", 10.0, gsm_rep=5), head_length()]), True, "len")
    C["combo knn sw weakwrong k=100 + length +len"] = (head_combo([head_knn("weakwrong", 100), head_length()]), True, "len")
    # after `routescore train --length-term` (the shipped head is the first part of these combos)
    C["logistic mixed l2=100 gsm8k x5 +len"] = (head_logistic("mixed", 100.0, gsm_rep=5), True, "len")
    C["combo logistic mixed l2=30 gsm8k x5 + knn sw weakwrong k=100 +len"] = (
        head_combo([head_logistic("mixed", 30.0, gsm_rep=5), head_knn("weakwrong", 100)]), True, "len")
    C["combo logistic mixed l2=30 gsm8k x5 + knn sw weakwrong k=100 + length +len"] = (
        head_combo([head_logistic("mixed", 30.0, gsm_rep=5), head_knn("weakwrong", 100), head_length()]), True, "len")
    return C


def write_train_labels(path, rep=5):
    """A training file for head "logistic mixed l2=10 gsm8k x5" (rows repeated;
    make_train_labels.py --labels mixed --gsm8k-weight K writes weights instead):
    MMLU rows label 1 where the weak model is wrong, GSM8K rows label 1 where the
    strong model is right and the weak one wrong, each GSM8K row written `rep` times."""
    with open(path, "w", encoding="utf-8") as f:
        for b in ("mmlu", "gsm8k"):
            prompts, weak, strong, _ = ref.load(b)
            for p, w, s in zip(prompts, weak, strong):
                y = int(w[0] == 0) if b == "mmlu" else int(s[0] == 1 and w[0] == 0)
                line = json.dumps({"prompt": p, "label": y}) + "\n"
                f.write(line * (1 if b == "mmlu" else rep))


def write_st(path, tensors):
    """A safetensors file of F32 tensors."""
    import struct
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        b = np.asarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(np.shape(arr)), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_head(out_dir, l2=30.0, rep=5):
    """Head "logistic mixed l2=30 gsm8k x5 +len" in numpy (the shipped default is
    now fitted by `routescore train --length-term`, same optimum), on all of
    MMLU + GSM8K: an mf head with mf.length_weight (the engine adds
    length_weight * (log(tokens) - 3.5) to the logit). Threshold as `routescore
    train`: the 0.5 quantile of the training scores (GSM8K rows counted `rep` times)."""
    D = Data()
    X = np.vstack([D.E["mmlu"], D.E["gsm8k"]])
    L = np.log(np.concatenate([D.T["mmlu"], D.T["gsm8k"]])) - 3.5
    w = np.concatenate([D.w["mmlu"], D.w["gsm8k"]])
    s = np.concatenate([D.s["mmlu"], D.s["gsm8k"]])
    g = np.concatenate([np.zeros(len(D.E["mmlu"])), np.ones(len(D.E["gsm8k"]))])
    sw = np.where(g > 0.5, float(rep), 1.0)
    beta = logistic_fit(np.hstack([X, L[:, None]]), target("mixed", w, s, g), l2, sw)
    z = X @ beta[:-2] + beta[-2] * L + beta[-1]
    p = sigmoid(z)
    thr = float(np.quantile(np.repeat(p, np.where(g > 0.5, rep, 1)), 0.5))
    os.makedirs(out_dir, exist_ok=True)
    write_st(os.path.join(out_dir, "head.safetensors"),
             {"mf.weight": beta[:-2], "mf.bias": beta[-1:], "mf.length_weight": beta[-2:-1]})
    print(json.dumps({"threshold": thr, "length_weight": beta[-2], "bias": beta[-1],
                      "examples": int(sw.sum())}))


def main():
    if "--write-head" in sys.argv:
        write_head(sys.argv[sys.argv.index("--write-head") + 1])
        return
    if "--prompts" in sys.argv:
        write_prompts()
        return
    if "--train-labels" in sys.argv:
        write_train_labels(sys.argv[sys.argv.index("--train-labels") + 1])
        return
    pats = sys.argv[1:]
    D = Data()
    out = os.path.join(CACHE, "results.jsonl")
    print("| head | MMLU a-m→n-z | MMLU n-z→a-m | MMLU (mean) | GSM8K 5-fold | MT-Bench | s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    def with_len(b):
        # knn/length heads see the embedding columns (unit length) plus log(tokens)
        return np.hstack([D.E[b], ((np.log(D.T[b]) - 3.5))[:, None]])

    for name, spec in candidates().items():
        if pats and not any(p in name for p in pats):
            continue
        fit, plus = spec[0], spec[1]
        feats = with_len if len(spec) > 2 else None
        t0 = time.time()
        r = run(D, fit, plus, feats)
        dt = time.time() - t0
        print(f"| {name} | {r['mmlu_am_to_nz']:.3f} | {r['mmlu_nz_to_am']:.3f} | **{r['mmlu']:.3f}** "
              f"| **{r['gsm8k']:.3f}** | {r['mt-bench']:.3f} | {dt:.0f} |", flush=True)
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"head": name, **r, "seconds": dt}) + "\n")


if __name__ == "__main__":
    main()
