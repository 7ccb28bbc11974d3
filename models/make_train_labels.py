#!/usr/bin/env python3
"""make_train_labels.py — training data for `routescore train` from ../shared/data.

RouteLLM's mf router needs a label per prompt saying whether the strong model
is worth calling. Our local source of truth is per-prompt correctness of both
models on MMLU and GSM8K (tests/lib/rsdata.py reads it). Labels (--labels):
  gain  (default) 1 exactly when the strong model (gpt-4-1106-preview) is
        right and the weak one (Mixtral-8x7B) is wrong, i.e. when routing to
        strong changes the outcome; every other case is 0;
  mixed "weak wrong" (1 when Mixtral-8x7B is wrong) on MMLU rows, "gain" on
        GSM8K rows: what transfers best to unseen MMLU subjects and to unseen
        GSM8K problems (docs/QUALITY.md, "Default-router experiments").
--gsm8k-weight K writes "weight": K on every GSM8K line (`routescore train`
counts such a row K times), so the 1,307 GSM8K rows are not swamped by the
14,037 MMLU ones. The shipped default router is trained on
    --labels mixed --gsm8k-weight 5   (docs/ROUTERS.md)

Rows come from RouteLLM's decontaminated sets, MMLU (subjects sorted, file
order) then GSM8K (file order), so the output is byte-for-byte reproducible.
Lines: {"prompt": ..., "label": 0|1, "source": "mmlu/<subject>"|"gsm8k"} plus
"weight": K on GSM8K lines when K != 1.

Note: these are the same benchmarks the routing-quality evaluation uses;
train's deterministic holdout (every K-th line) keeps its printed metrics
honest, but a router trained on all of this is not a clean MMLU/GSM8K APGR
contender. Output goes to models/cache/ (not in git).

usage: python3 models/make_train_labels.py [--out PATH] [--labels gain|mixed] [--gsm8k-weight K]
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import rsdata  # noqa: E402


LABELS = ("gain", "mixed")


def label(kind, bench, weak, strong):
    """The 0/1 label of a row of `bench` ("mmlu" or "gsm8k") whose weak and
    strong models are right (truthy) or wrong."""
    if kind == "mixed" and bench == "mmlu":
        return int(not weak)
    if kind in LABELS:
        return int(bool(strong) and not weak)
    raise ValueError(f"unknown label kind {kind!r}")


def record(kind, gsm8k_weight, bench, source, prompt, weak, strong):
    r = {"prompt": prompt, "label": label(kind, bench, weak, strong), "source": source}
    if bench == "gsm8k" and gsm8k_weight != 1:
        r["weight"] = gsm8k_weight
    return r


def rows(d, kind="gain", gsm8k_weight=1):
    mmlu = rsdata.decontaminated("mmlu", list(rsdata.mmlu_rows(d)), key=lambda r: r[1], d=d)
    for subject, prompt, weak, strong in mmlu:
        yield record(kind, gsm8k_weight, "mmlu", f"mmlu/{subject}", prompt, weak, strong)
    gsm = rsdata.decontaminated("gsm8k", list(rsdata.gsm8k_rows(d)), key=lambda r: r[0], d=d)
    for prompt, weak, strong in gsm:
        yield record(kind, gsm8k_weight, "gsm8k", "gsm8k", prompt, weak, strong)


def positive_number(text):
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (0 < v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return int(v) if v == int(v) else v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "cache", "train_labels.jsonl"))
    ap.add_argument("--labels", choices=LABELS, default="gain",
                    help="gain: strong right and weak wrong (default); mixed: weak wrong on MMLU, gain on GSM8K")
    ap.add_argument("--gsm8k-weight", type=positive_number, default=1,
                    help="\"weight\" of every GSM8K line (default 1: no weight field)")
    args = ap.parse_args()
    d = rsdata.data_dir()
    if d is None:
        print("make_train_labels: ../shared/data/routellm not found (set RS_SHARED_DATA)", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    counts = {}
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows(d, args.labels, args.gsm8k_weight):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            src = r["source"].split("/")[0]
            n, pos = counts.get(src, (0, 0))
            counts[src] = (n + 1, pos + r["label"])
    os.replace(tmp, args.out)
    total = sum(n for n, _ in counts.values())
    total_pos = sum(p for _, p in counts.values())
    for src, (n, pos) in counts.items():
        w = f", weight {args.gsm8k_weight:g}" if src == "gsm8k" and args.gsm8k_weight != 1 else ""
        print(f"{src:6s} {n:6d} prompts, {pos:5d} label 1 ({100.0 * pos / n:.2f}%){w}")
    print(f"total  {total:6d} prompts, {total_pos:5d} label 1 ({100.0 * total_pos / total:.2f}%), "
          f"labels {args.labels} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
