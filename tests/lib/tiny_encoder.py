"""tiny_encoder — the tiny XLM-R test checkpoint (tests/data/fidelity/xlmr_tiny_text,
hidden 64) as a router's local encoder: its path, the words random test prompts
are drawn from, and prompts' embeddings by `routescore embed`. Shared by
tests/quality/local_encoder_routers.py and tests/server/server_embeddings.py.
"""
import json
import os
import subprocess

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("RS_BIN") or os.path.join(_HERE, "..", "..", "build", "routescore")
DATA = os.environ.get("RS_TEST_DATA") or os.path.join(_HERE, "..", "data")
ENC = os.path.abspath(os.path.join(DATA, "fidelity", "xlmr_tiny_text"))

WORDS = "the cat dog proof integral python write poem translate french sum prime story code bug law tax".split()


def embed(tmp, prompts):
    path = os.path.join(tmp, "prompts.jsonl")
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt": p}) + "\n")
    r = subprocess.run([BIN, "embed", "--model", ENC, "--in", path], capture_output=True, text=True, check=True)
    return np.array([json.loads(l)["embedding"] for l in r.stdout.splitlines()], dtype=np.float64)
