"""heldout_eval — a clean evaluation of an mf head on all-MiniLM-L6-v2: the
router never trains on the prompts it is evaluated on.

  MMLU:     train on subjects a-m, evaluate on subjects n-z (`eval --subjects n-z`)
  GSM8K:    5-fold cross-validation by row index (row % 5), out-of-fold scores
            joined into one score file, evaluated with `eval --scores`
  MT-Bench: the MMLU+GSM8K-trained router of the GSM8K/MMLU runs is out of
            domain there anyway; see docs/QUALITY.md for the default router.

Labels as models/make_train_labels.py: 1 where the strong model is right and
the weak one wrong. Training: `routescore train --holdout-every 0`.
Writes routers and score files under models/cache/heldout/ (git-ignored) and
prints each eval's JSON. Run from the repository root:
    python3 benchmarks/quality/heldout_eval.py [BIN]
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
import routellm_eval_ref as ref  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "routescore")
ENC = os.path.join(ROOT, "models", "cache", "all-minilm-l6-v2")
OUT = os.path.join(ROOT, "models", "cache", "heldout")
os.makedirs(OUT, exist_ok=True)


def label_file(path, prompts, weak, strong):
    with open(path, "w", encoding="utf-8") as f:
        for p, w, s in zip(prompts, weak, strong):
            f.write(json.dumps({"prompt": p, "label": int(s[0] == 1 and w[0] == 0)}) + "\n")


def train(name, path):
    d = os.path.join(OUT, name)
    subprocess.run([BIN, "train", "--encoder", ENC, "--in", path, "--out", d, "--name", name,
                    "--holdout-every", "0", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return d


def evaluate(args):
    p = subprocess.run([BIN, "eval", "--json", *args], check=True, capture_output=True, text=True)
    print(" ".join(["routescore", "eval", *args]))
    print(p.stdout.strip(), flush=True)
    return json.loads(p.stdout)


def mmlu():
    import rsdata
    rows = rsdata.decontaminated("mmlu", list(rsdata.mmlu_rows()), lambda r: r[1])
    train_rows = [r for r in rows if "a" <= r[0][0] <= "m"]
    path = os.path.join(OUT, "mmlu_a-m.jsonl")
    label_file(path, [r[1] for r in train_rows], [[int(r[2])] for r in train_rows],
               [[int(r[3])] for r in train_rows])
    d = train("mmlu_a-m", path)
    evaluate(["--benchmark", "mmlu", "--subjects", "n-z", "--model", d,
              "--save-scores", os.path.join(OUT, "mmlu_n-z_scores.jsonl"),
              "--plot", os.path.join(OUT, "mmlu_n-z.svg")])


def gsm8k():
    prompts, weak, strong, _ = ref.load("gsm8k")
    scores = [None] * len(prompts)
    for k in range(5):
        idx = [i for i in range(len(prompts)) if i % 5 != k]
        path = os.path.join(OUT, f"gsm8k_fold{k}.jsonl")
        label_file(path, [prompts[i] for i in idx], [weak[i] for i in idx], [strong[i] for i in idx])
        d = train(f"gsm8k_fold{k}", path)
        saved = os.path.join(OUT, f"gsm8k_fold{k}_scores.jsonl")
        subprocess.run([BIN, "eval", "--benchmark", "gsm8k", "--model", d, "--save-scores", saved],
                       check=True, stdout=subprocess.DEVNULL)
        with open(saved, encoding="utf-8") as f:
            for line in f:
                j = json.loads(line)
                if j["id"] % 5 == k:
                    scores[j["id"]] = j["win_prob"]
    cv = os.path.join(OUT, "gsm8k_cv_scores.jsonl")
    with open(cv, "w", encoding="utf-8") as f:
        for i, s in enumerate(scores):
            f.write(json.dumps({"id": i, "win_prob": s}) + "\n")
    evaluate(["--benchmark", "gsm8k", "--scores", cv, "--plot", os.path.join(OUT, "gsm8k_cv.svg")])


if __name__ == "__main__":
    which = sys.argv[2:] or ["gsm8k", "mmlu"]
    for w in which:
        globals()[w]()
