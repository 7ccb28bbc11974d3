#!/usr/bin/env python3
"""causal_llm router end to end: `routescore score --model tests/data/causal_tiny/router`
against golden win probabilities from RouteLLM's scorer on HF generate
(tools/gen/gen_causal_tiny.py), within 1e-4 — prompts that reach a rating token and
prompts that do not (win_prob 1.0). All prompts go in one call, so the batched
prefill/decode path is what is checked, then a few one at a time; then the
same router split over 2 tensor-parallel ranks ("tensor_parallel": 2, simulated
on the CPU) must give the same answers, and a split that does not divide the
heads is refused."""
import json, os, shutil, subprocess, sys, tempfile

here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(os.environ.get("RS_TEST_DATA", os.path.join(here, "..", "data")), "causal_tiny")
binary = os.environ["RS_BIN"]
golden = json.load(open(os.path.join(data, "golden.json"), encoding="utf-8"))["prompts"]
router = os.path.join(data, "router")


def score(prompts, *flags, model=router):
    r = subprocess.run([binary, "score", "--model", model, *flags, *prompts], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"routescore failed ({r.returncode}): {r.stderr}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


bad = 0
prompts = [g["prompt"] for g in golden]
runs = [("batched", score(prompts)), ("one thread", score(prompts, "--threads", "1"))]
tmp = tempfile.mkdtemp(prefix="rs-causal-tp-")
tp_router = os.path.join(tmp, "router")
shutil.copytree(router, tp_router)


def set_tp(n):
    with open(os.path.join(tp_router, "routescore.json")) as f:
        man = json.load(f)
    man["tensor_parallel"] = n
    with open(os.path.join(tp_router, "routescore.json"), "w") as f:
        json.dump(man, f)


set_tp(2)
runs.append(("tensor_parallel 2", score(prompts, model=tp_router)))
set_tp(3)  # 4 heads, 2 KV heads: 3 ranks cannot split them
r = subprocess.run([binary, "score", "--model", tp_router, "hi"], capture_output=True, text=True)
if r.returncode != 2 or "must divide" not in r.stderr:
    bad += 1
    print(f"FAIL tensor_parallel 3 on 4 heads: exit {r.returncode}, {r.stderr.strip()[:200]!r}")
shutil.rmtree(tmp)
runs += [("single", score([p])) for p in prompts[:4]]
for name, recs in runs[:3]:
    assert len(recs) == len(golden), (name, len(recs))
    for rec, g in zip(recs, golden):
        d = abs(rec["win_prob"] - g["win_prob"])
        if d > 1e-4:
            bad += 1
            print(f"FAIL [{name}] {g['prompt']!r}: {rec['win_prob']} vs {g['win_prob']} (gen {g['generated']})")
        if rec["tokens"] != g["n_ids"]:
            bad += 1
            print(f"FAIL [{name}] {g['prompt']!r}: {rec['tokens']} tokens vs {g['n_ids']}")
for i, (name, recs) in enumerate(runs[3:]):
    if abs(recs[0]["win_prob"] - golden[i]["win_prob"]) > 1e-4:
        bad += 1
        print(f"FAIL [single] {golden[i]['prompt']!r}: {recs[0]['win_prob']} vs {golden[i]['win_prob']}")
rated = sum(g["rating_probs"] is not None for g in golden)
print(f"{len(golden)} prompts ({rated} rated, {len(golden) - rated} without a rating token), {bad} failures")
sys.exit(1 if bad else 0)
