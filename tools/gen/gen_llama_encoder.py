#!/usr/bin/env python3
"""Regenerates tests/data/llama_encoder/golden.json: a LlamaForCausalLM used as
a sentence encoder (the engine's Llama encoder, llama.h rs_llama_embed),
computed by HF transformers — hidden_states[L] of the first L layers (the
residual stream; the final-normed last_hidden_state when L is every layer),
pooled by mean over the prompt's tokens or by its last token, optionally
L2-normalised.

Two models: tests/data/causal_tiny/router (random, Llama 3 rope scaling, bf16:
the inv_freq patch of gen_causal_tiny.py) and SmolLM2-135M-Instruct from the
model cache (models/fetch_smollm2_model.sh), real weights.

Run with /usr/bin/python3 (torch 1.13 + transformers 4.40). Token ids come
from HF `tokenizers` in the `python3` on PATH (Debian's tokenizers is too old
for SmolLM2's tokenizer.json), so the golden ids are the HF tokenizer's.
CI only reads the committed output."""
import json, os, subprocess, sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tools/gen
import gen_causal_tiny  # noqa: E402

CACHE = os.environ.get("RS_MODEL_CACHE") or os.path.join(ROOT, "models", "cache")
OUT = os.path.join(ROOT, "tests", "data", "llama_encoder", "golden.json")
PROMPTS = [
    "What is 2+2?", "hi", "Prove that there are infinitely many primes.",
    "Write a Python function that reverses a linked list.",
    "A lesion causing compression of the facial nerve at the stylomastoid foramen will cause ipsilateral\n"
    "A. paralysis of the facial muscles.\nB. paralysis of the facial muscles and loss of taste.\nAnswer:",
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
    "How much in dollars does she make every day at the farmers' market?",
    "Café, naïve, 東京 — what do these words have in common?",
]
# (layers, pooling, normalize); layers 0 = all.
CONFIGS = {
    "causal_tiny": [(1, "mean", False), (0, "mean", True), (0, "last", False), (2, "last", True)],
    "smollm2-135m": [(6, "mean", False), (30, "last", False), (3, "mean", True)],
}


def hf_ids(tok_path):
    code = ("import json,sys; from tokenizers import Tokenizer; t=Tokenizer.from_file(sys.argv[1]); "
            "print(json.dumps([t.encode(p).ids for p in json.load(sys.stdin)]))")
    out = subprocess.run(["python3", "-c", code, tok_path], input=json.dumps(PROMPTS), capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def load(name):
    if name == "causal_tiny":
        d = os.path.join(ROOT, "tests", "data", "causal_tiny", "router")
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        cfg.pop("rope_scaling")  # transformers 4.40 predates rope_type "llama3": patched below
        model = LlamaForCausalLM.from_pretrained(d, config=LlamaConfig(**cfg), torch_dtype=torch.float32).eval()
        inv = gen_causal_tiny.llama3_inv_freq(model.model.layers[0].self_attn.rotary_emb.inv_freq.clone(),
                                              gen_causal_tiny.ROPE)
        for layer in model.model.layers:
            layer.self_attn.rotary_emb.inv_freq.copy_(inv)
        return d, model
    d = os.path.join(CACHE, "smollm2-135m")
    return d, LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()


def main():
    golden = {"prompts": PROMPTS, "models": {}}
    for name, configs in CONFIGS.items():
        d, model = load(name)
        n_layers = model.config.num_hidden_layers
        ids = hf_ids(os.path.join(d, "tokenizer.json"))
        entry = {"dir": os.path.relpath(d, ROOT), "ids": ids, "configs": []}
        for layers, pooling, normalize in configs:
            embs = []
            for seq in ids:
                with torch.no_grad():
                    hs = model(input_ids=torch.tensor([seq]), output_hidden_states=True).hidden_states
                h = hs[layers or n_layers][0].double()  # hidden_states[n_layers] is the normed output
                e = h.mean(0) if pooling == "mean" else h[-1]
                if normalize:
                    e = e / e.norm().clamp_min(1e-12)
                embs.append([float(f"{x:.7g}") for x in e.tolist()])
            entry["configs"].append({"encoder_layers": layers, "pooling": pooling, "normalize": normalize,
                                     "embeddings": embs})
        golden["models"][name] = entry
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
