#!/usr/bin/env python3
"""fidelity_xlmr — routescore's XLM-R classifier path against HF transformers goldens.

The model is a small random XLMRobertaForSequenceClassification made by
tools/gen/gen_fidelity.py (no XLM-R weights are reachable): RoBERTa position ids
(from padding_idx + 1), one token type, the dense -> tanh -> out_proj head on <s>.
Two variants: 3 labels (softmax, win_prob = p0) and 1 label (win_prob = sigmoid).
`routescore score --model DIR --ids-in F` reads JSON arrays of ids and must give
the golden probabilities within 1e-4 absolute. Stdlib only.

Env (set by CTest): RS_BIN, RS_TEST_DATA, RS_SOURCE_DIR. Exit 0 pass, 1 fail.
`--self-test [ok|perturb]` feeds the goldens instead of running the binary.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("RS_SOURCE_DIR") or os.path.join(HERE, "..", "..")
TEST_DATA = os.environ.get("RS_TEST_DATA") or os.path.join(HERE, "..", "data")
FID = os.path.join(TEST_DATA, "fidelity")

PROB_TOL = 1e-4
SHOW = 8
MODELS = ("xlmr_tiny", "xlmr_tiny_1label")


def run_score(rs_bin, model, ids_path):
    cmd = [rs_bin, "score", "--model", model, "--ids-in", ids_path]
    print("+ " + " ".join(cmd), flush=True)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=600)
    except FileNotFoundError:
        return None, f"{rs_bin} not found (not built yet?)"
    except subprocess.TimeoutExpired:
        return None, "timed out"
    if p.returncode != 0:
        return None, f"exit {p.returncode} (not built yet?)\n{p.stderr[-4000:]}"
    return p.stdout, None


def fake_score(gold, mode):
    out = []
    for k, g in enumerate(gold):
        probs = list(g["probs"])
        if mode == "perturb" and k % 11 == 3:
            probs[0] += 2e-4
        out.append(json.dumps({"win_prob": probs[0], "route": "weak", "label_probs": probs,
                               "tokens": len(g["ids"]), "truncated": False}))
    return "\n".join(out) + "\n"


def check_model(name, rs_bin, self_test, tmp):
    """Returns a list of failure lines (empty when the model passes)."""
    d = os.path.join(FID, name)
    with open(os.path.join(FID, name + "_golden.jsonl"), encoding="utf-8") as f:
        gold = [json.loads(line) for line in f if line.strip()]
    labels = json.load(open(os.path.join(d, "config.json")))
    labels = len(labels.get("id2label", {})) or labels.get("num_labels", 2)
    ids_path = os.path.join(tmp, name + "_ids.jsonl")
    with open(ids_path, "w", encoding="utf-8") as f:
        for g in gold:
            f.write(json.dumps(g["ids"]) + "\n")

    if self_test:
        out, err = fake_score(gold, self_test), None
    else:
        out, err = run_score(rs_bin, d, ids_path)
    if err:
        return [f"{name}: score: {err}"]
    lines = [line for line in out.splitlines() if line.strip()]
    if len(lines) != len(gold):
        return [f"{name}: {len(lines)} output lines for {len(gold)} id sequences"]
    try:
        got = [json.loads(line) for line in lines]
    except json.JSONDecodeError as e:
        return [f"{name}: output is not JSON lines: {e}"]

    errs, meta = [], []
    for k, (o, g) in enumerate(zip(got, gold)):
        p, want = o.get("label_probs"), g["probs"]
        where = f"seq {k} (len {len(g['ids'])})"
        if not isinstance(p, list) or len(p) != len(want):
            errs.append((math.inf, f"{where}: label_probs {p!r}, want {len(want)} values"))
            continue
        d = max(abs(x - y) for x, y in zip(p, want))
        errs.append((d, f"{where}: max|diff| {d:.2e} got {[round(x, 6) for x in p]} "
                        f"want {[round(x, 6) for x in want]}"))
        wp = o.get("win_prob")
        if (not isinstance(wp, (int, float)) or abs(wp - p[0]) > 1e-6
                or o.get("tokens") != len(g["ids"]) or o.get("truncated") is not False
                or o.get("route") not in ("strong", "weak")):
            meta.append(f"{where}: win_prob {wp!r} (want label_probs[0] {p[0]!r}), tokens "
                        f"{o.get('tokens')!r} (want {len(g['ids'])}), truncated "
                        f"{o.get('truncated')!r}, route {o.get('route')!r}")
    errs.sort(key=lambda t: -t[0])
    bad = [msg for d, msg in errs if not d <= PROB_TOL]
    fails = []
    if bad:
        fails.append(f"{name} ({labels} labels): {len(bad)}/{len(gold)} sequences off by more "
                     f"than {PROB_TOL}; worst:")
        fails += ["    " + m for m in bad[:SHOW]]
    if meta:
        fails.append(f"{name}: {len(meta)}/{len(gold)} lines with wrong fields:")
        fails += ["    " + m for m in meta[:SHOW]]
    if not fails:
        print(f"ok   {name} ({labels} labels): {len(gold)} sequences, "
              f"max|diff| {errs[0][0]:.2e}")
    return fails


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--self-test", choices=["ok", "perturb"],
                    help="check the comparison logic on the goldens themselves")
    args = ap.parse_args()
    rs_bin = os.environ.get("RS_BIN", os.path.join(SRC, "build", "routescore"))
    if not args.self_test and not os.path.isfile(rs_bin):
        sys.exit(f"FAIL: {rs_bin} not found (not built yet)")
    fails = []
    with tempfile.TemporaryDirectory(prefix="rs_fid_xlmr_") as tmp:
        for name in MODELS:
            fails += check_model(name, rs_bin, args.self_test, tmp)
    if fails:
        print("FAIL " + "\n".join(fails))
        sys.exit(1)
    print("PASSED")


if __name__ == "__main__":
    main()
