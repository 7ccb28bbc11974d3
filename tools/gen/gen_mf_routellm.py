#!/usr/bin/env python3
"""Generates tests/data/mf_routellm{,64}: small random checkpoints in RouteLLM's
MFModel layout (P.weight, text_proj.0.weight, classifier.0.weight), client
embeddings, and the win probabilities of a numpy rendering of RouteLLM's
MFModel.pred_win_rate (routellm/routers/matrix_factorization/model.py;
tests/lib/routellm_router_ref.py):

    logits = classifier(normalize(P[[a, b]]) * text_proj(e)); sigmoid(l[0] - l[1])

mf_routellm: 6 models named by the manifest's "models" list, dim 8, text 32.
mf_routellm64: RouteLLM's own 64-model table (strong gpt-4-1106-preview = 24,
weak mixtral-8x7b-instruct-v0.1 = 36), dim 8, text 32. Seeded; rerun to
regenerate byte-identical files.  Usage: python3 tools/gen/gen_mf_routellm.py"""
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from routellm_router_ref import pred_win_rate, save_safetensors  # noqa: E402


def make(out, n_models, names, strong, weak, seed, dim=8, text_dim=32, n_prompts=12):
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((n_models, dim)).astype(np.float32)
    W = (rng.standard_normal((dim, text_dim)) / np.sqrt(text_dim)).astype(np.float32)
    c = rng.standard_normal((1, dim)).astype(np.float32)
    save_safetensors(os.path.join(out, "model.safetensors"),
                     {"P.weight": P, "text_proj.0.weight": W, "classifier.0.weight": c})
    emb = (rng.standard_normal((n_prompts, text_dim)) * 2.0).astype(np.float32)
    a = names.index(strong) if names else 24
    b = names.index(weak) if names else 36
    probs = [pred_win_rate(P, W, c, a, b, e) for e in emb]
    manifest = {"name": os.path.basename(out), "kind": "mf_routellm", "checkpoint": "model.safetensors",
                "strong_model": strong, "weak_model": weak, "threshold": 0.5}
    if names:
        manifest["models"] = names
    with open(os.path.join(out, "routescore.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "embeddings.jsonl"), "w") as f:
        for e in emb:
            f.write(json.dumps([float(x) for x in e]) + "\n")
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"win_prob": probs}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    names = ["model-%d" % i for i in range(6)]
    make(os.path.join(DATA, "mf_routellm"), 6, names, "model-4", "model-1", seed=7)
    make(os.path.join(DATA, "mf_routellm64"), 64, None, "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1",
         seed=64)
