"""cli_train.py — end-to-end test of `routescore train` (CTest label `cli`).

Trains an mf head on a small, clearly learnable task (GSM8K word problems =
label 1, MMLU questions = label 0), then checks what a user relies on:
the router directory opens in the engine and `routescore label` reproduces
the held-out log-loss, AUC and Brier score train reported (recomputed here
independently from label's output), the threshold is the (1 - S) quantile of
the training scores, the manifest fields are right, and bad flags exit 2.
Skipped (77) only when the MiniLM encoder or the shared data is absent.
"""
import json
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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
    check(r.returncode == 0 and b"--threshold-share" in r.stdout, "train --help")


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
        lines.insert(7, {"prompt": "no label here"})         # skipped, keeps its line index
        lines.insert(11, {"prompt": "", "label": 1})         # skipped
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
        check(report["skipped"] == 2, f"two malformed records skipped (got {report['skipped']})")
        check(tr["source"] == "train.jsonl" and tr["l2"] == 1.0, "trained.source and l2")

        # The router opens in the engine; its scores reproduce train's numbers.
        out = os.path.join(tmp, "scores.jsonl")
        r = run(["label", "--model", router, "--in", inp, "--out", out, "--quiet"])
        check(r.returncode == 1, f"label on the training file: exit 1 for its 2 bad lines (got {r.returncode})")
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
    return rstest.result("cli_train")


if __name__ == "__main__":
    sys.exit(main())
