"""cli_eval_data — `routescore eval` finds its benchmark data only where it is
told: --data DIR, else $RS_SHARED_DATA/routellm. With neither it refuses
(exit 2, naming both ways) even when a ../shared/data/routellm sits beside
the working directory; --data wins over the variable. Runs on a small
GSM8K-shaped folder generated here."""
import json
import os
import subprocess
import sys
import tempfile

BIN = os.path.abspath(os.environ.get("RS_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "routescore"))
failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg)


def make_gsm8k(root, n):
    os.makedirs(os.path.join(root, "gsm8k"))
    with open(os.path.join(root, "gsm8k", "gsm8k_responses.csv"), "w") as f:
        f.write("prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n")
        for i in range(n):
            f.write(f"q{i},{i % 3 == 0},{i % 3 != 2}\n")
    with open(os.path.join(root, "gsm8k", "contaminated_prompts.jsonl"), "w") as f:
        f.write(json.dumps({"eval_prompt": "q0"}) + "\n")


def run(cwd, env_data, *args):
    env = {k: v for k, v in os.environ.items() if k != "RS_SHARED_DATA"}
    if env_data is not None:
        env["RS_SHARED_DATA"] = env_data
    return subprocess.run([BIN, "eval", "--benchmark", "gsm8k", "--json", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


with tempfile.TemporaryDirectory() as tmp:
    sibling = os.path.join(tmp, "shared", "data", "routellm")  # what the old default found from tmp/work
    make_gsm8k(sibling, 30)
    other = os.path.join(tmp, "other", "routellm")
    make_gsm8k(other, 60)
    work = os.path.join(tmp, "work")
    os.makedirs(work)
    scores = os.path.join(tmp, "scores.jsonl")
    with open(scores, "w") as f:
        for i in range(60):
            f.write(json.dumps({"prompt": f"q{i}", "win_prob": (i * 37 % 60) / 60}) + "\n")

    r = run(work, None, "--scores", scores)
    check(r.returncode == 2 and "--data" in r.stderr and "RS_SHARED_DATA" in r.stderr and not r.stdout,
          f"neither --data nor RS_SHARED_DATA: exit {r.returncode} {r.stderr!r} {r.stdout!r}")
    r = run(work, "", "--scores", scores)
    check(r.returncode == 2 and "RS_SHARED_DATA" in r.stderr, f"empty RS_SHARED_DATA: exit {r.returncode} {r.stderr!r}")
    r = run(work, None, "--dump-prompts", os.path.join(tmp, "d.jsonl"))
    check(r.returncode == 2 and not os.path.exists(os.path.join(tmp, "d.jsonl")),
          f"--dump-prompts without data: exit {r.returncode}")

    r = run(work, os.path.join(tmp, "other"), "--scores", scores)
    check(r.returncode == 0 and json.loads(r.stdout or "{}").get("items") == 59,
          f"RS_SHARED_DATA: exit {r.returncode} {r.stderr!r} {r.stdout[:200]!r}")
    r = run(work, os.path.join(tmp, "other"), "--data", sibling, "--scores", scores)
    check(r.returncode == 0 and json.loads(r.stdout or "{}").get("items") == 29,
          f"--data over RS_SHARED_DATA: exit {r.returncode} {r.stderr!r}")
    r = run(work, None, "--data", os.path.join(tmp, "nowhere"), "--scores", scores)
    check(r.returncode == 2 and "nowhere" in r.stderr, f"missing --data folder: exit {r.returncode} {r.stderr!r}")

print("cli_eval_data:", "FAILED" if failures else "ok")
sys.exit(1 if failures else 0)
