"""rsdata — read the RouteLLM benchmark prompts from ../shared/data at run time.

Shared by the oracle tests, the golden generators, the model scripts and the
benchmarks, so every one of them sees the same prompts in the same order.
The files are never copied into the repository.
"""
import csv
import glob
import json
import os
import sys

csv.field_size_limit(sys.maxsize)


def data_dir():
    """The RouteLLM data folder, or None when ../shared/data is absent."""
    root = os.environ.get("RS_SHARED_DATA") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
    d = os.path.join(root, "routellm")
    return d if os.path.isdir(d) else None


def _contaminated(d, bench):
    path = os.path.join(d, bench, "contaminated_prompts.jsonl")
    with open(path, encoding="utf-8") as f:
        return {json.loads(line)["eval_prompt"] for line in f if line.strip()}


def mmlu_rows(d=None):
    """(subject, prompt, weak_correct, strong_correct) in file order, subjects sorted."""
    d = d or data_dir()
    for path in sorted(glob.glob(os.path.join(d, "mmlu", "responses", "mmlu_*.csv"))):
        subject = os.path.basename(path)[len("mmlu_"):-len(".csv")]
        with open(path, newline="", encoding="utf-8") as f:
            r = csv.reader(f)
            header = next(r)
            for row in r:
                yield subject, row[0], row[1] == "True", row[2] == "True"
            assert header[1].startswith("mistralai/") and header[2].startswith("gpt-4")


def gsm8k_rows(d=None):
    """(prompt, weak_correct, strong_correct) in file order."""
    d = d or data_dir()
    with open(os.path.join(d, "gsm8k", "gsm8k_responses.csv"), newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        next(r)
        for row in r:
            yield row[0], row[1] == "True", row[2] == "True"


def mtbench_questions(d=None):
    d = d or data_dir()
    with open(os.path.join(d, "mt_bench", "question.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def all_prompts(d=None):
    """Every prompt in the data: MMLU, GSM8K, then both MT-Bench turns (~16k)."""
    d = d or data_dir()
    out = [p for _, p, _, _ in mmlu_rows(d)]
    out += [p for p, _, _ in gsm8k_rows(d)]
    for q in mtbench_questions(d):
        out += q["turns"]
    return out


def decontaminated(bench, rows, key, d=None):
    """rows without RouteLLM's contaminated prompts (key(row) gives the prompt)."""
    bad = _contaminated(d or data_dir(), bench)
    return [r for r in rows if key(r) not in bad]


def skip_if_absent():
    """Exit 77 (CTest skip) when the shared data is not beside the checkout."""
    if data_dir() is None:
        print("skipped: ../shared/data/routellm not found")
        sys.exit(77)
