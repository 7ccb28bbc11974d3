#!/usr/bin/env python3
"""Regenerates tests/data/causal_tiny/: a small random Llama-3-shaped causal_llm
router (GQA, Llama 3 rope_scaling, untied bf16 weights, a tiny byte-level BPE
tokenizer + the Llama 3 header specials + the 5 rating tokens, RouteLLM's two
prompt files) and golden.json: win probabilities from a Python rendering of
RouteLLM's CausalLLMClassifier on HF `generate` (greedy, max_new_tokens 6,
output_scores). Needs torch + transformers 4.40 (run with /usr/bin/python3);
CI only reads the committed outputs.

transformers 4.40 predates rope_type "llama3": the model is built unscaled,
every layer's inv_freq buffer is overwritten with the llama3-scaled one
(transformers' _compute_llama3_parameters, copied below), and config.json
gets the rope_scaling block afterwards.

The template, the router directory layout and the scorer are tests/lib/causal_ref.py's,
shared with benchmarks/causal_bench.py."""
import json, math, os, shutil, sys
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import causal_ref  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "causal_tiny")
SRC = sys.argv[1] if len(sys.argv) > 1 else causal_ref.default_prompt_dir()
ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}
PROMPTS = [
    "What is 2+2?", "hi", "Write a haiku about the sea.", "Explain quantum entanglement to a child.",
    "Prove that there are infinitely many primes.", "Translate 'good morning' into French.",
    "What is the capital of Australia?", "Summarize the plot of Hamlet in two sentences.",
    "Write a Python function that reverses a linked list.", "Why is the sky blue?",
    "Give me three ideas for a birthday party.", "Solve for x: 3x + 5 = 20.",
    "Compose a limerick about a cat who loves jazz.", "What are the health benefits of green tea?",
    "Describe the water cycle.", "How do I make sourdough bread at home? Please be detailed.",
    "List the planets in order from the sun.", "What's the difference between TCP and UDP?",
    "Write a short story about a robot learning to paint, in exactly five sentences.",
    "Is 1,000,003 prime?", "Café, naïve, 東京 — what do these words have in common?",
    "Tell me a joke.", "Explain the Monty Hall problem and why switching is better.",
    "What year did the Berlin Wall fall?",
]


def llama3_inv_freq(inv_freq, s):
    factor, lo_f, hi_f, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    low_wl, high_wl = old / lo_f, old / hi_f
    wavelen = 2 * math.pi / inv_freq
    out = torch.where(wavelen > low_wl, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - lo_f) / (hi_f - lo_f)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
    return torch.where(medium, smoothed, out)


def main():
    system, classifier = causal_ref.read_prompt_files(SRC)
    # A tiny byte-level BPE trained on the prompt files and prompts.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([system, classifier] + PROMPTS, trainer)
    orig_vocab = causal_ref.add_router_tokens(tok)
    V = tok.get_vocab_size()
    eot = tok.token_to_id("<|eot_id|>")

    torch.manual_seed(1234)
    cfg = LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                      bos_token_id=tok.token_to_id("<|begin_of_text|>"), eos_token_id=eot)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    inv = llama3_inv_freq(model.model.layers[0].self_attn.rotary_emb.inv_freq.clone(), ROPE)
    for layer in model.model.layers:
        layer.self_attn.rotary_emb.inv_freq.copy_(inv)

    def prompt_ids(q):
        return tok.encode(causal_ref.prompt_text(system, classifier, q), add_special_tokens=False).ids

    def route(q):
        return causal_ref.route(model, prompt_ids(q), orig_vocab, eot)

    # Rating rows: a shared direction plus per-rating noise, scaled so that
    # some prompts reach a rating token within 6 steps and some do not.
    with torch.no_grad():
        W = model.lm_head.weight
        base = W[orig_vocab:].clone()
        u = torch.randn(64)
        for scale in [x * 0.05 for x in range(0, 80)]:
            W[orig_vocab:] = base * 0.5 + scale * u
            # Round to bf16 now: the stored weights are bf16.
            rated = sum(route(q)[2] is not None for q in PROMPTS)
            if 0.3 * len(PROMPTS) <= rated <= 0.7 * len(PROMPTS):
                break
        else:
            sys.exit("no scale gives a mix of rated and unrated prompts")
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    golden = []
    for q in PROMPTS:
        p, gen, sm = route(q)
        golden.append({"prompt": q, "win_prob": p, "generated": gen, "rating_probs": sm, "n_ids": len(prompt_ids(q))})
    rated = sum(g["rating_probs"] is not None for g in golden)
    print(f"vocab {V} (orig {orig_vocab}); {rated}/{len(golden)} prompts rated", file=sys.stderr)
    assert 0 < rated < len(golden), "need rated and unrated prompts"

    router = os.path.join(OUT, "router")
    shutil.rmtree(router, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(router, safe_serialization=True)
    for f in os.listdir(router):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(router, f))
    with open(os.path.join(router, "config.json")) as f:
        c = json.load(f)
    c["rope_scaling"] = ROPE
    with open(os.path.join(router, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    causal_ref.write_router_files(router, SRC, {"name": "causal-tiny", "kind": "causal_llm", "threshold": 0.5}, tok)
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump({"orig_vocab_size": orig_vocab, "prompts": golden}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
