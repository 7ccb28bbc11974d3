#!/usr/bin/env python3
"""make_llama.py — writes a Llama-3-8B-shaped LlamaForCausalLM with random
weights as a causal_llm router directory, on the machine that benchmarks it
(the lent device has no network, and no Llama weights are reachable anyway):
config.json, bf16 safetensors in shards + model.safetensors.index.json,
RouteLLM's two prompt files and routescore.json. The scores mean nothing:
this measures speed.

  python3 make_llama.py OUT_DIR [--tokenizer models/cache/llama3/tokenizer.model]
                        [--device cuda] [--slots 64] [--max-tokens 256] [--tiny]

Shape (default): hidden 4096, 32 layers, 32 heads, 8 KV heads (head_dim 128),
intermediate 14336, vocab 128256 + 5 rating tokens, rope_theta 500000 with
llama3 rope_scaling (factor 8, original 8192), untied LM head. Weights
N(0, 0.02) drawn with torch (on the GPU when there is one, seed 0), RMSNorm
weights 1; never zeros (zeros can run faster than real data). --tiny: 2
layers, hidden 64, 4/2 heads, the causal_tiny tokenizer (vocab 404 + 5), for
a smoke test on a CPU.

The tokenizer: Llama 3's tiktoken rank file (models/fetch_llama3_tokenizer.sh
puts it in models/cache/llama3/, the device call carries it) is copied in as
tokenizer.model; the rating tokens [[1]]..[[5]] become ids 128256..128260
(manifest orig_vocab_size). The prompt files are the vendored copies of
RouteLLM's causal_llm prompts in tests/data/causal_tiny/router/.

A second directory OUT_DIR/prefill_only is the same router with
max_new_tokens 1: scoring it runs the prefill forward alone (plus the LM head
on each prompt's last row), which is how bench_llama.py times the prefill.
"""
import argparse
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TINY = os.path.join(ROOT, "tests", "data", "causal_tiny", "router")


def shapes(a):
    H, I, V, D = a.hidden, a.intermediate, a.vocab, a.hidden // a.heads
    yield "model.embed_tokens.weight", (V, H)
    for i in range(a.layers):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (H,)
        yield p + "self_attn.q_proj.weight", (a.heads * D, H)
        yield p + "self_attn.k_proj.weight", (a.kv_heads * D, H)
        yield p + "self_attn.v_proj.weight", (a.kv_heads * D, H)
        yield p + "self_attn.o_proj.weight", (H, a.heads * D)
        yield p + "post_attention_layernorm.weight", (H,)
        yield p + "mlp.gate_proj.weight", (I, H)
        yield p + "mlp.up_proj.weight", (I, H)
        yield p + "mlp.down_proj.weight", (H, I)
    yield "model.norm.weight", (H,)
    yield "lm_head.weight", (V, H)


def write_shard(path, tensors):
    """tensors: list of (name, shape, raw bf16 bytes); the safetensors layout by hand."""
    header, off = {}, 0
    for name, shape, raw in tensors:
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, raw in tensors:
            f.write(raw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=14336)
    ap.add_argument("--vocab", type=int, default=128256 + 5)
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "models", "cache", "llama3", "tokenizer.model"))
    ap.add_argument("--device", default=None, help="where to draw the weights (default cuda when available)")
    ap.add_argument("--slots", type=int, default=64, help="manifest max_slots: prompts per prefill group")
    ap.add_argument("--max-tokens", type=int, default=256, help="manifest max_tokens: a prompt's own tokens")
    ap.add_argument("--shard-bytes", type=float, default=4.9e9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="2 layers, hidden 64, causal_tiny's tokenizer")
    a = ap.parse_args()
    import torch
    if a.tiny:
        a.layers, a.hidden, a.heads, a.kv_heads, a.intermediate, a.vocab = 2, 64, 4, 2, 128, 404 + 5
    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator(device=dev).manual_seed(a.seed)

    shards, cur, cur_bytes, index = [], [], 0, {}
    for name, shape in shapes(a):
        if len(shape) == 1:
            t = torch.ones(shape, dtype=torch.bfloat16)
        else:
            t = (torch.randn(shape, generator=g, device=dev, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()
        raw = t.view(torch.int16).numpy().tobytes()
        if cur and cur_bytes + len(raw) > a.shard_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shape, raw))
        cur_bytes += len(raw)
    shards.append(cur)
    total = 0
    for i, sh in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_shard(os.path.join(a.out, fn), sh)
        for name, _, raw in sh:
            index[name] = fn
            total += len(raw)
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": index}, f, indent=1)

    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False, "mlp_bias": False,
        "hidden_act": "silu", "hidden_size": a.hidden, "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers, "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
        "head_dim": a.hidden // a.heads, "vocab_size": a.vocab, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "bos_token_id": 400 if a.tiny else 128000, "eos_token_id": 403 if a.tiny else [128001, 128008, 128009],
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if a.tiny:
        shutil.copy(os.path.join(TINY, "tokenizer.json"), a.out)
    else:
        if not os.path.exists(a.tokenizer):
            raise SystemExit(f"make_llama: {a.tokenizer} missing (bash models/fetch_llama3_tokenizer.sh here, "
                             f"then carry models/cache/llama3/tokenizer.model to the device)")
        shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.model"))
    orig = 404 if a.tiny else 128256
    for d, extra in ((a.out, {}), (os.path.join(a.out, "prefill_only"), {"encoder": "..", "max_new_tokens": 1})):
        os.makedirs(d, exist_ok=True)
        for fn in ("system_ft_v5.txt", "classifier_ft_v5.txt"):
            shutil.copy(os.path.join(TINY, fn), d)
            os.chmod(os.path.join(d, fn), 0o644)
        man = {"name": "llama3-8b-random" + ("-prefill" if extra else ""), "kind": "causal_llm", "threshold": 0.5,
               "orig_vocab_size": orig, "max_slots": a.slots, "max_tokens": a.max_tokens, **extra}
        with open(os.path.join(d, "routescore.json"), "w") as f:
            json.dump(man, f, indent=2)
    print(f"make_llama: {a.out}: {len(shards)} shard(s), {total / 1e9:.2f} GB of bf16 weights, drawn on {dev}")


if __name__ == "__main__":
    main()
