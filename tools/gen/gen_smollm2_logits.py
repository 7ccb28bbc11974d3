#!/usr/bin/env python3
"""Regenerates tests/data/smollm2_logits.json: HF transformers' LlamaForCausalLM
logits for SmolLM2-135M-Instruct (the safetensors dir models/fetch_smollm2_model.sh
makes from the GGUF, dequantised fp32: the same weights the C model loads) on 50
prompts, at every position: the top 8 (id, logit) pairs. Run with
/usr/bin/python3 (Debian torch + transformers)."""
import json, os, subprocess, sys
import torch
from transformers import LlamaForCausalLM

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "models", "cache", "smollm2-135m")
TOPK = 8
subjects = ["the moon", "prime numbers", "a rainy day", "Python decorators", "the French revolution",
            "photosynthesis", "jazz music", "black holes", "sourdough bread", "the stock market"]
forms = ["Tell me about {}.", "Write one sentence about {}.", "Why do people care about {}?",
         "<|im_start|>user\nExplain {} simply.<|im_end|>\n<|im_start|>assistant\n",
         "Q: What is the most surprising fact about {}?\nA:"]
prompts = [f.format(s) for s in subjects for f in forms]
assert len(prompts) == 50

# The tokenizer.json needs tokenizers >= 0.20, newer than Debian's: encode
# with the python3 on PATH (tests/requirements-ci.txt) in a child process.
TOK = """import json, sys
from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1])
print(json.dumps([t.encode(p, add_special_tokens=False).ids for p in json.load(sys.stdin)]))"""
enc = json.loads(subprocess.run(["python3", "-c", TOK, os.path.join(model_dir, "tokenizer.json")],
                                input=json.dumps(prompts), capture_output=True, text=True, check=True).stdout)
model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
out = []
with torch.no_grad():
    for p, ids in zip(prompts, enc):
        logits = model(torch.tensor([ids])).logits[0]
        v, i = torch.topk(logits, TOPK, dim=-1)
        out.append({"prompt": p, "ids": ids, "top_ids": i.tolist(),
                    "top_logits": [[round(x, 6) for x in row] for row in v.tolist()]})
    # Sanity: the dequantised model still talks.
    ids = enc[3]
    g = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)
    print("sanity (decode with the tokenizer):", g[0][len(ids):].tolist(), file=sys.stderr)
with open(os.path.join(root, "tests", "data", "smollm2_logits.json"), "w") as f:
    json.dump({"topk": TOPK, "prompts": out}, f, separators=(",", ":"), ensure_ascii=False)
