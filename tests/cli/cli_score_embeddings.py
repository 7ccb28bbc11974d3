#!/usr/bin/env python3
"""`routescore score --embeddings-in FILE` on the mf_routellm and sw_ranking
test routers: one JSON record per line, matching the numpy references of
tools/gen/gen_mf_routellm.py and tools/gen/gen_sw_ranking.py; a line of the wrong
width is a per-line error (exit 1) and the lines after it still score."""
import json
import os
import subprocess
import sys
import tempfile

BIN, DATA = os.environ.get("RS_BIN"), os.environ.get("RS_TEST_DATA")
if not BIN or not DATA:
    print("RS_BIN / RS_TEST_DATA not set")
    sys.exit(77)

fails = 0
for name, tol in (("mf_routellm", 1e-5), ("mf_routellm64", 1e-5), ("sw_ranking", 1e-4)):
    d = os.path.join(DATA, name)
    exp = json.load(open(os.path.join(d, "expected.json")))["win_prob"]
    r = subprocess.run([BIN, "score", "--model", d, "--embeddings-in", os.path.join(d, "embeddings.jsonl")],
                       capture_output=True, text=True)
    recs = [json.loads(l) for l in r.stdout.splitlines()]
    worst = max(abs(a["win_prob"] - b) for a, b in zip(recs, exp)) if len(recs) == len(exp) else float("inf")
    ok = r.returncode == 0 and worst < tol and all(x["route"] == ("strong" if x["win_prob"] >= 0.5 else "weak")
                                                   for x in recs)
    print("%s: %d records, max |p - numpy| = %.3g: %s" % (name, len(recs), worst, "ok" if ok else "FAIL"))
    fails += not ok

with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
    first = open(os.path.join(DATA, "mf_routellm", "embeddings.jsonl")).readline()
    f.write("[1.0, 2.0]\n" + first)
r = subprocess.run([BIN, "score", "--model", os.path.join(DATA, "mf_routellm"), "--embeddings-in", f.name],
                   capture_output=True, text=True)
os.unlink(f.name)
recs = [json.loads(l) for l in r.stdout.splitlines()]
ok = r.returncode == 1 and len(recs) == 2 and "error" in recs[0] and "win_prob" in recs[1]
print("bad width line: %s" % ("ok" if ok else "FAIL: rc %d %s" % (r.returncode, r.stdout)))
fails += not ok
sys.exit(1 if fails else 0)
