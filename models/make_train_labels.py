#!/usr/bin/env python3
"""make_train_labels.py — training data for `routescore train` from ../shared/data.

RouteLLM's mf router needs a label per prompt saying whether the strong model
is worth calling. Our local source of truth is per-prompt correctness of both
models on MMLU and GSM8K (tests/rsdata.py reads it). The label is 1 exactly
when the strong model (gpt-4-1106-preview) is right and the weak one
(Mixtral-8x7B) is wrong, i.e. when routing to strong changes the outcome;
every other case (both right, both wrong, only weak right) is 0.

Rows come from RouteLLM's decontaminated sets, MMLU (subjects sorted, file
order) then GSM8K (file order), so the output is byte-for-byte reproducible.
Lines: {"prompt": ..., "label": 0|1, "source": "mmlu/<subject>"|"gsm8k"}.

Note: these are the same benchmarks the routing-quality evaluation uses;
train's deterministic holdout (every K-th line) keeps its printed metrics
honest, but a router trained on all of this is not a clean MMLU/GSM8K APGR
contender. Output goes to models/cache/ (not in git).

usage: python3 models/make_train_labels.py [--out PATH]
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import rsdata  # noqa: E402


def rows(d):
    mmlu = rsdata.decontaminated("mmlu", list(rsdata.mmlu_rows(d)), key=lambda r: r[1], d=d)
    for subject, prompt, weak, strong in mmlu:
        yield {"prompt": prompt, "label": int(strong and not weak), "source": f"mmlu/{subject}"}
    gsm = rsdata.decontaminated("gsm8k", list(rsdata.gsm8k_rows(d)), key=lambda r: r[0], d=d)
    for prompt, weak, strong in gsm:
        yield {"prompt": prompt, "label": int(strong and not weak), "source": "gsm8k"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "cache", "train_labels.jsonl"))
    args = ap.parse_args()
    d = rsdata.data_dir()
    if d is None:
        print("make_train_labels: ../shared/data/routellm not found (set RS_SHARED_DATA)", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    counts = {}
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows(d):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            src = r["source"].split("/")[0]
            n, pos = counts.get(src, (0, 0))
            counts[src] = (n + 1, pos + r["label"])
    os.replace(tmp, args.out)
    total = sum(n for n, _ in counts.values())
    total_pos = sum(p for _, p in counts.values())
    for src, (n, pos) in counts.items():
        print(f"{src:6s} {n:6d} prompts, {pos:5d} label 1 ({100.0 * pos / n:.2f}%)")
    print(f"total  {total:6d} prompts, {total_pos:5d} label 1 ({100.0 * total_pos / total:.2f}%) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
