"""heldout_eval — a clean evaluation of a `routescore train` recipe on
all-MiniLM-L6-v2: the router never trains on the prompts it is evaluated on.
Every head is fitted by the real `routescore train` binary and scored by
`routescore eval` (no numpy re-implementation of either).

  MMLU:     train on subjects a-m, evaluate on n-z (`eval --subjects n-z`),
            and the reverse; both APGRs and their mean
  GSM8K:    5-fold cross-validation by row index (row % 5), out-of-fold scores
            joined into one score file, evaluated with `eval --scores`
  MT-Bench: out of domain: the head trained on all of MMLU + GSM8K (the
            shipped router's training set) evaluated on the 72 questions

Training files are built as models/make_train_labels.py builds the shipped
one (same rows, labels and weights), restricted to the training part. With
--plus each training set also holds all of the *other* benchmark (MMLU half +
all GSM8K; GSM8K folds + all MMLU), as the shipped router is one head trained
on both; without it, only the benchmark's own training part ("[in]").
Training: `routescore train --holdout-every 0 --l2 L [--length-term] [--standardize]`
on --encoder (default all-MiniLM-L6-v2; a Llama encoder spec directory works
too, docs/ROUTERS.md, e.g. with --standardize).

Writes routers, training files and score files under
models/cache/heldout/TAG/ (git-ignored), prints each eval's JSON and a
summary line. Run from the repository root, e.g. the shipped default's recipe:
    python3 benchmarks/quality/heldout_eval.py --bin build-q/routescore --plus \\
        --labels mixed --gsm8k-weight 5 --l2 30 --length-term
    python3 benchmarks/quality/heldout_eval.py --bin build-q/routescore gsm8k   # the old [in] recipe
About 25 min for all three with --plus on the shared 2-core machine (eight
trainings of up to 15k prompts each).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "models"))
import make_train_labels as mtl  # noqa: E402
import routellm_eval_ref as ref  # noqa: E402
import rsdata  # noqa: E402

ENC = os.path.join(ROOT, "models", "cache", "all-minilm-l6-v2")
BENCHES = ("mmlu", "gsm8k", "mt-bench")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("benchmarks", nargs="*", help="mmlu, gsm8k, mt-bench (default: all three); "
                    "a leading path is taken as --bin (the old usage)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "routescore"))
    ap.add_argument("--labels", choices=mtl.LABELS, default="gain")
    ap.add_argument("--gsm8k-weight", type=mtl.positive_number, default=1)
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--length-term", action="store_true")
    ap.add_argument("--standardize", action="store_true")
    ap.add_argument("--encoder", default=ENC, help="train --encoder (default all-MiniLM-L6-v2)")
    ap.add_argument("--plus", action="store_true", help="train on the other benchmark too")
    ap.add_argument("--tag", help="output subdirectory (default: built from the options)")
    a = ap.parse_args(argv)
    if a.benchmarks and a.benchmarks[0] not in BENCHES:
        a.bin = a.benchmarks.pop(0)
    for b in a.benchmarks:
        if b not in BENCHES:
            ap.error(f"unknown benchmark {b!r} (mmlu, gsm8k, mt-bench)")
    a.benchmarks = a.benchmarks or list(BENCHES)
    if not a.tag:
        a.tag = ((os.path.basename(os.path.normpath(a.encoder)) + "_" if a.encoder != ENC else "")
                 + f"{a.labels}_l2={a.l2:g}_gsm8k-x{a.gsm8k_weight:g}" + ("_len" if a.length_term else "")
                 + ("_std" if a.standardize else "") + ("_plus" if a.plus else "_in"))
    a.out = os.path.join(ROOT, "models", "cache", "heldout", a.tag)
    return a


def training_rows(a):
    """(mmlu, gsm8k): make_train_labels records, in `routescore eval` row order."""
    recs = list(mtl.rows(rsdata.data_dir(), a.labels, a.gsm8k_weight))
    mmlu = [r for r in recs if r["source"].startswith("mmlu/")]
    gsm = [r for r in recs if r["source"] == "gsm8k"]
    # eval's ids are row indices of these same decontaminated sets; check the order.
    assert [r["prompt"] for r in gsm] == ref.load("gsm8k")[0], "GSM8K rows differ from eval's order"
    assert [r["prompt"] for r in mmlu] == ref.load("mmlu")[0], "MMLU rows differ from eval's order"
    return mmlu, gsm


def write(path, recs):
    with open(path, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def train(a, name, recs):
    path = write(os.path.join(a.out, name + ".jsonl"), recs)
    d = os.path.join(a.out, name)
    cmd = [a.bin, "train", "--encoder", a.encoder, "--in", path, "--out", d, "--name", name,
           "--holdout-every", "0", "--l2", repr(a.l2), "--quiet", "--json"]
    if a.length_term:
        cmd.append("--length-term")
    if a.standardize:
        cmd.append("--standardize")
    p = subprocess.run(cmd, check=True, capture_output=True, text=True)
    print("routescore " + " ".join(cmd[1:]), flush=True)
    print(p.stdout.strip(), flush=True)
    return d


def evaluate(a, args):
    p = subprocess.run([a.bin, "eval", "--data", rsdata.data_dir(), "--json", *args], check=True, capture_output=True, text=True)
    print(" ".join(["routescore", "eval", *args]))
    print(p.stdout.strip(), flush=True)
    return json.loads(p.stdout)


def first_half(r):
    return "a" <= r["source"].split("/", 1)[1][0] <= "m"


def mmlu(a, mmlu_rows, gsm_rows, res):
    for train_sel, name, subjects in ((True, "mmlu_a-m", "n-z"), (False, "mmlu_n-z", "a-m")):
        recs = [r for r in mmlu_rows if first_half(r) == train_sel] + (gsm_rows if a.plus else [])
        d = train(a, name, recs)
        j = evaluate(a, ["--benchmark", "mmlu", "--subjects", subjects, "--model", d,
                         "--save-scores", os.path.join(a.out, f"mmlu_{subjects}_scores.jsonl")])
        res[f"mmlu_{name[5:]}_to_{subjects}"] = j["apgr"]
    res["mmlu"] = 0.5 * (res["mmlu_a-m_to_n-z"] + res["mmlu_n-z_to_a-m"])


def gsm8k(a, mmlu_rows, gsm_rows, res):
    scores = [None] * len(gsm_rows)
    for k in range(5):
        recs = [r for i, r in enumerate(gsm_rows) if i % 5 != k] + (mmlu_rows if a.plus else [])
        d = train(a, f"gsm8k_fold{k}", recs)
        saved = os.path.join(a.out, f"gsm8k_fold{k}_scores.jsonl")
        subprocess.run([a.bin, "eval", "--data", rsdata.data_dir(), "--benchmark", "gsm8k", "--model", d,
                        "--save-scores", saved],
                       check=True, stdout=subprocess.DEVNULL)
        with open(saved, encoding="utf-8") as f:
            for line in f:
                j = json.loads(line)
                if j["id"] % 5 == k:
                    scores[j["id"]] = j["win_prob"]
    cv = os.path.join(a.out, "gsm8k_cv_scores.jsonl")
    with open(cv, "w", encoding="utf-8") as f:
        for i, s in enumerate(scores):
            f.write(json.dumps({"id": i, "win_prob": s}) + "\n")
    res["gsm8k"] = evaluate(a, ["--benchmark", "gsm8k", "--scores", cv])["apgr"]


def mt_bench(a, mmlu_rows, gsm_rows, res):
    d = train(a, "all", mmlu_rows + gsm_rows)
    res["mt-bench"] = evaluate(a, ["--benchmark", "mt-bench", "--model", d])["apgr"]


def main(argv):
    a = parse_args(argv)
    if rsdata.data_dir() is None:
        print("heldout_eval: ../shared/data/routellm not found (set RS_SHARED_DATA)", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    mmlu_rows, gsm_rows = training_rows(a)
    res = {"recipe": a.tag}
    for b in a.benchmarks:
        {"mmlu": mmlu, "gsm8k": gsm8k, "mt-bench": mt_bench}[b](a, mmlu_rows, gsm_rows, res)
    print(json.dumps(res))
    with open(os.path.join(a.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(res, f)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
