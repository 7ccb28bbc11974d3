#!/usr/bin/env python3
"""causal_llm router end to end: `routescore score --model tests/data/causal_tiny/router`
against golden win probabilities from RouteLLM's scorer on HF generate
(tests/gen_causal_tiny.py), within 1e-4 — prompts that reach a rating token and
prompts that do not (win_prob 1.0). All prompts go in one call, so the batched
prefill/decode path is what is checked, then a few one at a time."""
import json, os, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(os.environ.get("RS_TEST_DATA", os.path.join(here, "data")), "causal_tiny")
binary = os.environ["RS_BIN"]
golden = json.load(open(os.path.join(data, "golden.json"), encoding="utf-8"))["prompts"]
router = os.path.join(data, "router")


def score(prompts, *flags):
    r = subprocess.run([binary, "score", "--model", router, *flags, *prompts], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"routescore failed ({r.returncode}): {r.stderr}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


bad = 0
prompts = [g["prompt"] for g in golden]
runs = [("batched", score(prompts)), ("one thread", score(prompts, "--threads", "1"))]
runs += [("single", score([p])) for p in prompts[:4]]
for name, recs in runs[:2]:
    assert len(recs) == len(golden), (name, len(recs))
    for rec, g in zip(recs, golden):
        d = abs(rec["win_prob"] - g["win_prob"])
        if d > 1e-4:
            bad += 1
            print(f"FAIL [{name}] {g['prompt']!r}: {rec['win_prob']} vs {g['win_prob']} (gen {g['generated']})")
        if rec["tokens"] != g["n_ids"]:
            bad += 1
            print(f"FAIL [{name}] {g['prompt']!r}: {rec['tokens']} tokens vs {g['n_ids']}")
for i, (name, recs) in enumerate(runs[2:]):
    if abs(recs[0]["win_prob"] - golden[i]["win_prob"]) > 1e-4:
        bad += 1
        print(f"FAIL [single] {golden[i]['prompt']!r}: {recs[0]['win_prob']} vs {golden[i]['win_prob']}")
rated = sum(g["rating_probs"] is not None for g in golden)
print(f"{len(golden)} prompts ({rated} rated, {len(golden) - rated} without a rating token), {bad} failures")
sys.exit(1 if bad else 0)
