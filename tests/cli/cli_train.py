"""cli_train.py — end-to-end test of `routescore train` (CTest label `cli`).

Trains an mf head on a small, clearly learnable task (GSM8K word problems =
label 1, MMLU questions = label 0), then checks what a user relies on:
the router directory opens in the engine and `routescore label` reproduces
the held-out log-loss, AUC and Brier score train reported (recomputed here
independently from label's output), the threshold is the (1 - S) quantile of
the training scores, the manifest fields are right, and bad flags exit 2.
Malformed input lines (no prompt, label not 0/1, bad "weight", bad JSON) exit
2 naming the line, before anything is written.

The length term and per-row weights (length_checks): on real prompts with
fractional weights, `train --length-term`'s head equals an independent numpy
Newton fit of the same penalised weighted logistic regression (features: the
embedding `routescore embed` writes, ln(tokens) - 3.5, 1; l2 on all but the
bias), and is far from the fits that ignore the weights or the length (so the
comparison can fail); the weighted held-out metrics match label's scores; the
engine's win_prob equals sigmoid(w . e + b + lw (ln n - 3.5)) computed here
from head.safetensors; and integer weights fit exactly as duplicated rows
(same head, same threshold = numpy.quantile of the duplicated scores).
--standardize with a Llama encoder spec (standardize_checks): the encoder is
a router directory of kind "embed" over tests/data/causal_tiny's model (first
layer, mean pooling, not normalised); the written manifest repeats its
encoder (path relative to the router), encoder_layers, pooling and
normalize; the stored head equals numpy's fit on the z-scored embeddings
(mean and population sd of the training rows) with the scaling folded in,
and differs from the fit on the raw ones; the engine's scores are
sigmoid(w . e + b) of the raw embeddings.
Skipped (77) only when the MiniLM encoder or the shared data is absent.
"""
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import rsdata  # noqa: E402
import rstest  # noqa: E402

from rstest import ENCODER, check, run  # noqa: E402


def quantile(xs, q):
    """numpy.quantile with its default linear interpolation."""
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    if lo >= len(xs) - 1:
        return xs[-1]
    return xs[lo] + (pos - lo) * (xs[lo + 1] - xs[lo])


def auc(ps, ys):
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    ranks = [0.0] * len(ps)
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and ps[order[j]] == ps[order[i]]:
            j += 1
        for k in range(i, j):
            ranks[order[k]] = (i + 1 + j) / 2.0
        i = j
    npos = sum(ys)
    nneg = len(ys) - npos
    rpos = sum(r for r, y in zip(ranks, ys) if y)
    return (rpos - npos * (npos + 1) / 2.0) / (npos * nneg)


def usage_checks(tmp):
    inp = os.path.join(tmp, "u.jsonl")
    with open(inp, "w") as f:
        f.write('{"prompt": "a", "label": 1}\n{"prompt": "b", "label": 0}\n')
    out = os.path.join(tmp, "u-router")
    base = ["train", "--encoder", ENCODER, "--in", inp, "--out", out]
    for extra in (["--holdout-every", "1"], ["--holdout-every", "-2"], ["--threshold-share", "1.5"],
                  ["--l2", "-1"], ["--l2", "x"], ["--field", "a[x]"], ["--bogus"], ["--name", ""], ["stray"]):
        r = run(base + extra)
        check(r.returncode == 2 and r.stderr, f"train {extra}: exit 2 with a message (got {r.returncode})")
    r = run(["train", "--in", inp, "--out", out])
    check(r.returncode == 2, "train without --encoder: exit 2")
    r = run(["train", "--help"])
    check(r.returncode == 0 and b"--threshold-share" in r.stdout and b"--length-term" in r.stdout, "train --help")
    # Malformed records: exit 2 naming the line, nothing created or written.
    good = '{"prompt": "a", "label": 1}\n{"prompt": "b", "label": 0, "weight": 2.5}\n'
    for bad in ('{"prompt": "c"}', '{"prompt": "c", "label": 2}', '{"prompt": "c", "label": "1"}',
                '{"prompt": "c", "label": null}', '{"label": 1}', '{"prompt": "", "label": 1}',
                '{"prompt": "c", "label": 1, "weight": 0}', '{"prompt": "c", "label": 1, "weight": -1}',
                '{"prompt": "c", "label": 1, "weight": "nan"}', '{"prompt": "c", "label": 1, "weight": NaN}',
                '{"prompt": "c", "label": 1, "weight": 1e999}', '{"prompt": "c", "label": 1, "weight": null}',
                '{"prompt": "c", "label": 1, "weight": 1e7}', '{"prompt": "c", "label": 1', '[1, 2]'):
        with open(inp, "w") as f:
            f.write(good + "\n" + bad + "\n" + good)  # the bad record is on line 4 (line 3 is blank)
        fresh = os.path.join(tmp, "never-created")
        r = run(["train", "--encoder", ENCODER, "--in", inp, "--out", fresh, "--length-term"])
        check(r.returncode == 2 and b"line 4:" in r.stderr and not os.path.exists(fresh),
              f"bad record {bad}: exit 2 naming line 4, no output dir (got {r.returncode}: {r.stderr[-200:]})")


def label_file_checks(tmp):
    """models/make_train_labels.py: the default file is unchanged (gain labels,
    no weights); --labels mixed --gsm8k-weight 5 gives weak-wrong on MMLU,
    gain on GSM8K, and "weight": 5 on GSM8K lines only; a bad weight exits 2."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "make_train_labels.py")
    mmlu = rsdata.decontaminated("mmlu", list(rsdata.mmlu_rows()), key=lambda r: r[1])
    gsm = rsdata.decontaminated("gsm8k", list(rsdata.gsm8k_rows()), key=lambda r: r[0])
    for opts, want_mmlu, weight in (([], lambda w, s: int(s and not w), None),
                                    (["--labels", "mixed", "--gsm8k-weight", "5"], lambda w, s: int(not w), 5)):
        out = os.path.join(tmp, "labels.jsonl")
        r = subprocess.run([sys.executable, script, "--out", out, *opts], capture_output=True)
        check(r.returncode == 0, f"make_train_labels {opts}: exit {r.returncode} {r.stderr[-300:]}")
        recs = [json.loads(x) for x in open(out, encoding="utf-8")]
        check(len(recs) == len(mmlu) + len(gsm), f"make_train_labels {opts}: {len(recs)} rows")
        got_m, got_g = recs[:len(mmlu)], recs[len(mmlu):]
        check(all(x["prompt"] == row[1] and x["label"] == want_mmlu(bool(row[2]), bool(row[3])) and "weight" not in x
                  for x, row in zip(got_m, mmlu)), f"make_train_labels {opts}: MMLU labels")
        check(all(x["prompt"] == row[0] and x["label"] == int(bool(row[2]) and not row[1])
                  for x, row in zip(got_g, gsm)) and
              all(x.get("weight") == weight for x in got_g), f"make_train_labels {opts}: GSM8K labels and weights")
    r = subprocess.run([sys.executable, script, "--out", os.path.join(tmp, "x.jsonl"), "--gsm8k-weight", "nan"],
                       capture_output=True)
    check(r.returncode == 2 and not os.path.exists(os.path.join(tmp, "x.jsonl")), "make_train_labels bad weight: exit 2")


def read_st(path):
    """{name: float64 array} of a safetensors file of F32 tensors."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        check(t["dtype"] == "F32", f"{name} is F32")
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").astype(np.float64).reshape(t["shape"])
    return out


def numpy_fit(X, y, v, l2):
    """Independent reference: minimise sum_i v_i logloss_i + l2/2 |theta[:-1]|^2
    (last column of X is the constant 1, its weight unpenalised) by Newton."""
    n, m = X.shape
    R = np.full(m, l2)
    R[-1] = 0.0
    theta = np.zeros(m)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(X @ theta)))
        g = X.T @ (v * (p - y)) + R * theta
        H = (X * (v * p * (1 - p))[:, None]).T @ X + np.diag(R)
        step = np.linalg.solve(H, g)
        theta -= step
        if np.max(np.abs(step)) < 1e-13:
            break
    return theta


def train_json(inp, router, *extra):
    r = run(["train", "--encoder", ENCODER, "--in", inp, "--out", router, "--json", "--quiet", *extra])
    check(r.returncode == 0, f"train {extra}: exit 0 (got {r.returncode}: {r.stderr[-500:]})")
    return json.loads(r.stdout.decode().strip().splitlines()[-1]) if r.returncode == 0 else None


def length_checks(tmp):
    mmlu = [p for _, p, _, _ in rsdata.mmlu_rows()][::113][:60]
    gsm = [p for p, _, _ in rsdata.gsm8k_rows()][::11][:60]
    prompts = [x for pair in zip(mmlu, gsm) for x in pair]
    prompts[5] = " ".join(["long"] * 400)  # truncated at 256 tokens: the feature uses the truncated count
    # Labels that depend on the length (so lw matters), with seeded noise.
    rng = random.Random(5)
    med = sorted(len(p) for p in prompts)[len(prompts) // 2]
    labels = [int((len(p) > med) != (rng.random() < 0.25)) for p in prompts]
    frac = [(0.5, 1.0, 2.5, 4.0)[i % 4] for i in range(len(prompts))]
    ints = [1 + i % 3 for i in range(len(prompts))]

    def write(path, rows):
        with open(path, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        return path

    # The engine's own embeddings and token counts, by a different subcommand.
    plain = write(os.path.join(tmp, "len_prompts.jsonl"), [{"prompt": p} for p in prompts])
    r = run(["embed", "--model", ENCODER, "--in", plain])
    check(r.returncode == 0, f"embed exit {r.returncode}")
    emb = [json.loads(x) for x in r.stdout.decode().splitlines()]
    E = np.array([e["embedding"] for e in emb], dtype=np.float64)
    L = np.log(np.array([e["tokens"] for e in emb], dtype=np.float64)) - 3.5
    check(emb[5]["truncated"] and emb[5]["tokens"] == 256, "the long prompt is truncated to 256 tokens")
    X = np.hstack([E, L[:, None], np.ones((len(prompts), 1))])
    y = np.array(labels, dtype=np.float64)
    l2 = 3.0

    # 1. Fractional weights, every 4th line held out: the head against numpy.
    inp = write(os.path.join(tmp, "len_frac.jsonl"),
                [{"prompt": p, "label": t, "weight": w} for p, t, w in zip(prompts, labels, frac)])
    router = os.path.join(tmp, "len-frac")
    rep = train_json(inp, router, "--length-term", "--l2", "3", "--holdout-every", "4")
    if rep is None:
        return
    head = read_st(os.path.join(router, "head.safetensors"))
    check(sorted(head) == ["mf.bias", "mf.length_weight", "mf.weight"], f"head tensors {sorted(head)}")
    got = np.concatenate([head["mf.weight"], head["mf.length_weight"], head["mf.bias"]])
    tr = np.array([i % 4 != 0 for i in range(len(prompts))])
    v = np.array(frac)
    ref = numpy_fit(X[tr], y[tr], v[tr], l2)
    err = float(np.max(np.abs(got - ref)))
    print(f"length term: lw {got[-2]:.6f} (numpy {ref[-2]:.6f}), bias {got[-1]:.6f} (numpy {ref[-1]:.6f}), "
          f"max |dtheta| {err:.2e}")
    check(err < 1e-4, f"train --length-term head equals the numpy fit (max |dtheta| {err:.2e})")
    check(abs(ref[-2]) > 0.1, f"the length weight is not negligible here ({ref[-2]:.4f})")
    check(abs(rep["length_weight"] - got[-2]) < 1e-6, "--json length_weight is the stored one")
    unweighted = numpy_fit(X[tr], y[tr], np.ones(int(tr.sum())), l2)
    no_len = numpy_fit(np.delete(X[tr], -2, axis=1), y[tr], v[tr], l2)
    no_len = np.concatenate([no_len[:-1], [0.0], no_len[-1:]])
    for name, other in (("ignoring the weights", unweighted), ("without the length term", no_len)):
        check(np.max(np.abs(other - ref)) > 100 * 1e-4, f"the fit {name} is far from it (the check can fail)")

    # The engine's score of the trained router is sigmoid(w . e + b + lw (ln n - 3.5)).
    out = os.path.join(tmp, "len_scores.jsonl")
    r = run(["label", "--model", router, "--in", inp, "--out", out, "--quiet"])
    check(r.returncode == 0, f"label with the trained router: exit {r.returncode}")
    recs = sorted((json.loads(x) for x in open(out)), key=lambda j: j["id"])
    z = E @ head["mf.weight"] + head["mf.bias"][0] + head["mf.length_weight"][0] * L
    want = 1 / (1 + np.exp(-z))
    ps = np.array([j["win_prob"] for j in recs])
    check([j["tokens"] for j in recs] == [e["tokens"] for e in emb], "label's token counts are embed's")
    check(float(np.max(np.abs(ps - want))) < 1e-5,
          f"engine win_prob = sigmoid(w.e + b + lw(ln n - 3.5)) (max diff {np.max(np.abs(ps - want)):.2e})")
    # Weighted held-out metrics, recomputed from the engine's scores.
    ho = ~tr
    pw, yw, vw = ps[ho], y[ho], v[ho]
    ll = -np.sum(vw * np.where(yw > 0, np.log(pw), np.log1p(-pw))) / vw.sum()
    br = np.sum(vw * (pw - yw) ** 2) / vw.sum()
    pairs = sum(vi * vj * (1.0 if pi > pj else 0.5 if pi == pj else 0.0)
                for pi, yi, vi in zip(pw, yw, vw) if yi for pj, yj, vj in zip(pw, yw, vw) if not yj)
    wauc = pairs / (vw[yw > 0].sum() * vw[yw == 0].sum())
    check(abs(ll - rep["logloss"]) < 1e-5, f"weighted held-out log-loss {ll} vs {rep['logloss']}")
    check(abs(br - rep["brier"]) < 1e-5, f"weighted held-out Brier {br} vs {rep['brier']}")
    check(abs(wauc - rep["auc"]) < 1e-6, f"weighted held-out AUC {wauc} vs {rep['auc']}")
    check(abs(rep["heldout_weight"] - vw.sum()) < 1e-9 and abs(rep["train_weight"] - v[tr].sum()) < 1e-9,
          "summed weights reported")
    man = json.load(open(os.path.join(router, "routescore.json")))
    check(man["trained"]["length_term"] is True and man["trained"]["examples_weight"] == v[tr].sum(),
          "manifest records the length term and the summed weight")

    # 2. Integer weights fit exactly as duplicated rows.
    wfile = write(os.path.join(tmp, "len_int.jsonl"),
                  [{"prompt": p, "label": t, "weight": w} for p, t, w in zip(prompts, labels, ints)])
    dfile = write(os.path.join(tmp, "len_dup.jsonl"),
                  [{"prompt": p, "label": t} for p, t, w in zip(prompts, labels, ints) for _ in range(w)])
    rw = train_json(wfile, os.path.join(tmp, "len-w"), "--length-term", "--l2", "3", "--holdout-every", "0")
    rd = train_json(dfile, os.path.join(tmp, "len-d"), "--length-term", "--l2", "3", "--holdout-every", "0")
    if rw is None or rd is None:
        return
    hw = read_st(os.path.join(tmp, "len-w", "head.safetensors"))
    hd = read_st(os.path.join(tmp, "len-d", "head.safetensors"))
    diff = max(float(np.max(np.abs(hw[k] - hd[k]))) for k in hw)
    check(sorted(hw) == sorted(hd) and diff < 1e-5, f"weights == duplicated rows: max |dtheta| {diff:.2e}")
    check(abs(rw["threshold"] - rd["threshold"]) < 1e-6,
          f"weights == duplicated rows: threshold {rw['threshold']} vs {rd['threshold']}")
    check(rw["train_weight"] == rd["train"] == sum(ints), "summed weight = duplicated row count")
    zw = E @ hw["mf.weight"] + hw["mf.bias"][0] + hw["mf.length_weight"][0] * L
    q = float(np.quantile(np.repeat(1 / (1 + np.exp(-zw)), ints), 0.5))
    check(abs(q - rw["threshold"]) < 1e-5, f"threshold {rw['threshold']} = median of the duplicated scores {q}")
    check(np.max(np.abs(np.concatenate([hw["mf.weight"], hw["mf.length_weight"], hw["mf.bias"]])
                        - numpy_fit(X, y, np.array(ints, dtype=np.float64), l2))) < 1e-4,
          "integer-weighted head equals the numpy fit")


def standardize_checks(tmp):
    tiny = os.path.join(os.environ.get("RS_TEST_DATA") or os.path.join(os.path.dirname(__file__), "..", "data"),
                        "causal_tiny", "router")
    spec = os.path.join(tmp, "tiny-spec")
    os.makedirs(spec)
    with open(os.path.join(spec, "routescore.json"), "w") as f:
        json.dump({"kind": "embed", "encoder": os.path.abspath(tiny), "encoder_layers": 1, "pooling": "mean",
                   "normalize": False, "max_tokens": 64}, f)
    prompts = [p for _, p, _, _ in rsdata.mmlu_rows()][::211][:40] + [p for p, _, _ in rsdata.gsm8k_rows()][::29][:40]
    rng = random.Random(11)
    labels = [int((i >= 40) != (rng.random() < 0.2)) for i in range(len(prompts))]
    inp = os.path.join(tmp, "std.jsonl")
    with open(inp, "w") as f:
        for p, t in zip(prompts, labels):
            f.write(json.dumps({"prompt": p, "label": t}) + "\n")
    router = os.path.join(tmp, "routers", "tiny-std")
    r = run(["train", "--encoder", spec, "--in", inp, "--out", router, "--standardize", "--l2", "2",
             "--holdout-every", "0", "--json", "--quiet"])
    check(r.returncode == 0, f"train --standardize: exit 0 (got {r.returncode}: {r.stderr[-400:]})")
    if r.returncode != 0:
        return
    man = json.load(open(os.path.join(router, "routescore.json")))
    check(os.path.realpath(os.path.join(router, man["encoder"])) == os.path.realpath(tiny),
          f"manifest encoder {man['encoder']} is the spec's encoder")
    check(man.get("encoder_layers") == 1 and man.get("pooling") == "mean" and man.get("normalize") is False
          and man.get("max_tokens") == 64, f"manifest repeats the spec's keys: {man}")
    check(man["trained"].get("standardized") is True, "manifest records standardized")
    r = run(["embed", "--model", spec, "--in", inp])
    check(r.returncode == 0, f"embed with the spec: exit {r.returncode}")
    E = np.array([json.loads(x)["embedding"] for x in r.stdout.decode().splitlines()], dtype=np.float64)
    y = np.array(labels, dtype=np.float64)
    mu, sd = E.mean(0), E.std(0)
    sd[sd == 0] = 1
    ones = np.ones((len(y), 1))
    tz = numpy_fit(np.hstack([(E - mu) / sd, ones]), y, np.ones(len(y)), 2.0)
    ref = np.concatenate([tz[:-1] / sd, [tz[-1] - np.sum(tz[:-1] * mu / sd)]])
    raw = numpy_fit(np.hstack([E, ones]), y, np.ones(len(y)), 2.0)
    head = read_st(os.path.join(router, "head.safetensors"))
    got = np.concatenate([head["mf.weight"], head["mf.bias"]])
    scale = np.max(np.abs(ref))
    err = float(np.max(np.abs(got - ref))) / scale
    far = float(np.max(np.abs(raw - ref))) / scale
    print(f"standardize: head vs numpy (z-scored, folded) {err:.2e} relative; raw-feature fit differs by {far:.2e}")
    check(err < 1e-4, f"train --standardize head equals numpy's folded fit ({err:.2e})")
    check(far > 1e-2, f"the standardized fit differs from the raw one ({far:.2e}), so the check can fail")
    r = run(["score", "--model", router, *prompts[:8]])
    check(r.returncode == 0, f"score with the trained router: exit {r.returncode}")
    if r.returncode == 0:
        p = np.array([json.loads(x)["win_prob"] for x in r.stdout.decode().splitlines()])
        want = 1 / (1 + np.exp(-(E[:8] @ head["mf.weight"] + head["mf.bias"][0])))
        check(np.max(np.abs(p - want)) < 1e-5, f"engine scores = sigmoid(w . e + b) ({np.max(np.abs(p - want)):.2e})")


def main():
    if rstest.binary_missing():
        return 1
    if not os.path.isdir(ENCODER):
        print(f"skipped: no encoder at {ENCODER} (run bash models/fetch.sh)")
        return 77
    rsdata.skip_if_absent()
    with tempfile.TemporaryDirectory(prefix="rs_cli_train_") as tmp:
        usage_checks(tmp)
        mmlu = [p[:300] for _, p, _, _ in rsdata.mmlu_rows()][::97][:140]
        gsm = [p[:300] for p, _, _ in rsdata.gsm8k_rows()][::9][:140]
        lines = []
        for a, b in zip(mmlu, gsm):
            lines.append({"prompt": a, "label": 0})
            lines.append({"prompt": b, "label": 1})
        inp = os.path.join(tmp, "train.jsonl")
        with open(inp, "w") as f:
            for l in lines:
                f.write(json.dumps(l) + "\n")
        router = os.path.join(tmp, "routers", "toy-mf")
        r = run(["train", "--encoder", ENCODER, "--in", inp, "--out", router, "--json",
                 "--threshold-share", "0.3", "--name", "toy"])
        print(r.stderr.decode(errors="replace"))
        check(r.returncode == 0, f"train exit 0 (got {r.returncode})")
        if r.returncode != 0:
            return 1
        report = json.loads(r.stdout.decode().strip().splitlines()[-1])
        man = json.load(open(os.path.join(router, "routescore.json")))
        check(man["name"] == "toy" and man["kind"] == "mf" and man["head"] == "head.safetensors", "manifest basics")
        check(man["pooling"] == "mean" and man["normalize"] is True, "manifest pooling")
        check(man["strong_model"] == "gpt-4-1106-preview" and man["weak_model"] == "mixtral-8x7b-instruct-v0.1",
              "manifest models")
        check(not os.path.isabs(man["encoder"]) and
              os.path.realpath(os.path.join(router, man["encoder"])) == os.path.realpath(ENCODER),
              f"encoder path relative to the router dir: {man['encoder']}")
        tr = man["trained"]
        valid = [(i, l) for i, l in enumerate(lines) if l.get("prompt") and "label" in l]
        held_idx = [i for i, _ in valid if i % 5 == 0]
        check(tr["examples"] == len(valid) - len(held_idx) and tr["heldout"] == len(held_idx),
              f"train/held-out counts {tr['examples']}/{tr['heldout']}")
        check(report["skipped"] == 0, f"no record skipped (got {report['skipped']})")
        check(tr["source"] == "train.jsonl" and tr["l2"] == 1.0, "trained.source and l2")
        check(tr["length_term"] is False and "examples_weight" not in tr, "no length term, no weights")
        check(report["length_weight"] is None, "--json length_weight null without --length-term")
        head = read_st(os.path.join(router, "head.safetensors"))
        check(sorted(head) == ["mf.bias", "mf.weight"], f"no mf.length_weight without --length-term: {sorted(head)}")

        # The router opens in the engine; its scores reproduce train's numbers.
        out = os.path.join(tmp, "scores.jsonl")
        r = run(["label", "--model", router, "--in", inp, "--out", out, "--quiet"])
        check(r.returncode == 0, f"label on the training file: exit 0 (got {r.returncode})")
        recs = [json.loads(x) for x in open(out)]
        score = {}
        for x in recs:
            if "error" not in x:
                score[x["id"]] = x["win_prob"]  # ids are 1-based line numbers
        held = [(score[i + 1], l["label"]) for i, l in valid if i % 5 == 0]
        train = [score[i + 1] for i, l in valid if i % 5 != 0]
        ps, ys = [p for p, _ in held], [y for _, y in held]
        ll = -sum(math.log(p) if y else math.log(1 - p) for p, y in held) / len(held)
        br = sum((p - y) ** 2 for p, y in held) / len(held)
        check(abs(ll - tr["heldout_logloss"]) < 1e-5, f"held-out log-loss {ll} vs {tr['heldout_logloss']}")
        check(abs(br - tr["heldout_brier"]) < 1e-5, f"held-out Brier {br} vs {tr['heldout_brier']}")
        check(abs(auc(ps, ys) - tr["heldout_auc"]) < 1e-6, f"held-out AUC {auc(ps, ys)} vs {tr['heldout_auc']}")
        t = quantile(train, 0.7)
        check(abs(t - man["threshold"]) < 1e-5, f"threshold {man['threshold']} = 0.7 quantile of train scores {t}")
        share = sum(p >= man["threshold"] for p in train) / len(train)
        check(abs(share - 0.3) < 0.02, f"about 30% of training prompts route strong ({share:.3f})")
        # The task is easy: the head must beat the constant baseline clearly.
        check(report["auc"] > 0.95, f"held-out AUC {report['auc']} > 0.95")
        check(report["logloss"] < 0.5 * report["baseline_logloss"], "log-loss well under the baseline")
        check(report["brier"] < report["baseline_brier"], "Brier under the baseline")
        check(report["baseline_auc"] == 0.5, "constant baseline AUC is 0.5")
        check(report["grad_norm"] < 1e-6, f"Newton converged (|grad| {report['grad_norm']})")

        # One class only: refused.
        one = os.path.join(tmp, "one.jsonl")
        with open(one, "w") as f:
            for p in mmlu[:20]:
                f.write(json.dumps({"prompt": p, "label": 0}) + "\n")
        r = run(["train", "--encoder", ENCODER, "--in", one, "--out", os.path.join(tmp, "one")])
        check(r.returncode == 2 and b"both labels" in r.stderr, "a single class is refused")
        length_checks(tmp)
        standardize_checks(tmp)
        label_file_checks(tmp)
    return rstest.result("cli_train")


if __name__ == "__main__":
    sys.exit(main())
