#!/usr/bin/python3
"""torch_mf_worker.py — an mf router scored the way RouteLLM scores: PyTorch,
one prompt per forward. The one-prompt-per-call baseline of server_bench.py
runs it under Debian's /usr/bin/python3 (python3-torch, transformers).

  torch_mf_worker.py ROUTER_DIR MAX_TOKENS

Prints "ready", then reads one JSON string (a prompt) a line from stdin and
writes its win probability a line: the router's HF encoder in fp32 on 2
threads, mean pooling over the prompt's tokens, L2 norm (when the manifest
says so), then sigmoid(w.e + b [+ lw (ln n - 3.5)]) — the engine's mf head
(src/host/engine/engine.c)."""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoModel, AutoTokenizer


def main(model, max_tokens):
    """The RouteLLM way of scoring, in PyTorch: one prompt per forward.

    Reads JSON-string prompts a line from stdin, writes the win probability a
    line. The router is an `mf` directory: its HF encoder, mean pooling over
    the prompt's tokens, L2 norm, then sigmoid(w.e + b [+ lw (ln n - 3.5)])."""
    torch.set_num_threads(2)
    with open(os.path.join(model, "routescore.json")) as f:
        man = json.load(f)
    if man.get("kind") != "mf" or man.get("pooling", "mean") != "mean":
        sys.exit(f"torch baseline: only mean-pooled mf routers are rendered, not {man.get('kind')}")
    enc = os.path.normpath(os.path.join(model, man["encoder"]))
    head = load_file(os.path.join(model, man.get("head", "head.safetensors")))
    w, b = head["mf.weight"].astype(np.float64), float(head["mf.bias"][0])
    lw = float(head["mf.length_weight"][0]) if "mf.length_weight" in head else 0.0
    tok = AutoTokenizer.from_pretrained(enc)
    net = AutoModel.from_pretrained(enc).eval()
    print("ready", flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            x = tok(json.loads(line), truncation=True, max_length=max_tokens, return_tensors="pt")
            h = net(**x).last_hidden_state[0].double().numpy()
            e = h.mean(axis=0)
            if man.get("normalize", True):
                e = e / max(np.linalg.norm(e), 1e-12)
            z = e @ w + b + lw * (np.log(x["input_ids"].shape[1]) - 3.5)
            print(json.dumps(float(1.0 / (1.0 + np.exp(-z)))), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]))
