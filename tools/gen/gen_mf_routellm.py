#!/usr/bin/env python3
"""Generates tests/data/mf_routellm{,64}: small random checkpoints in RouteLLM's
MFModel layout (P.weight, text_proj.0.weight, classifier.0.weight), client
embeddings, and the win probabilities of a numpy rendering of RouteLLM's
MFModel.pred_win_rate (routellm/routers/matrix_factorization/model.py):

    logits = classifier(normalize(P[[a, b]]) * text_proj(e)); sigmoid(l[0] - l[1])

mf_routellm: 6 models named by the manifest's "models" list, dim 8, text 32.
mf_routellm64: RouteLLM's own 64-model table (strong gpt-4-1106-preview = 24,
weak mixtral-8x7b-instruct-v0.1 = 36), dim 8, text 32. Seeded; rerun to
regenerate byte-identical files.  Usage: python3 tests/gen_mf_routellm.py"""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def save_safetensors(path, tensors):
    """The safetensors format by hand: u64 header length, JSON header, data."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def normalize(x):  # torch.nn.functional.normalize(p=2, dim=1, eps=1e-12)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pred_win_rate(P, W, c, a, b, e):
    model_embed = normalize(P[[a, b]].astype(np.float64))
    prompt_embed = W.astype(np.float64) @ e.astype(np.float64)  # text_proj: Linear(text_dim, dim, bias=False)
    logits = (model_embed * prompt_embed) @ c.astype(np.float64).T  # classifier: Linear(dim, 1, bias=False)
    logits = logits.squeeze()
    return float(1.0 / (1.0 + np.exp(-(logits[0] - logits[1]))))


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
    make(os.path.join(HERE, "data", "mf_routellm"), 6, names, "model-4", "model-1", seed=7)
    make(os.path.join(HERE, "data", "mf_routellm64"), 64, None, "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1",
         seed=64)
