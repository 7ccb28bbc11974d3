#!/usr/bin/env python3
"""gguf_to_safetensors.py GGUF OUTDIR — a Llama GGUF (llama.cpp layout) to a
Hugging Face LlamaForCausalLM directory: config.json + model.safetensors with
every tensor dequantised to fp32 by the `gguf` package (numpy only, no torch).

llama.cpp's converter permutes the rows of q/k projections (its RoPE pairs
adjacent elements, HF's pairs i with i + head_dim/2); this undoes it."""
import json, os, struct, sys
import numpy as np
import gguf

NAMES = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
         "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def field(r, key):
    f = r.fields[key]
    v = f.parts[f.data[0]]
    return v.tolist()[0] if hasattr(v, "tolist") else v


def unpermute(w, n_head):
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, -1).swapaxes(1, 2).reshape(w.shape)


def write_safetensors(path, tensors):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, a in tensors:
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, a in tensors:
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())


def main(src, out):
    r = gguf.GGUFReader(src)
    n_head, n_kv = field(r, "llama.attention.head_count"), field(r, "llama.attention.head_count_kv")
    tensors, names = [], set()
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        a = a.reshape([int(x) for x in reversed(t.shape)]) if len(t.shape) > 1 else a.reshape(-1)
        parts = t.name.split(".")
        if parts[0] == "blk":
            kind = parts[2]
            if kind == "attn_q":
                a = unpermute(a, n_head)
            elif kind == "attn_k":
                a = unpermute(a, n_kv)
            name = f"model.layers.{parts[1]}.{NAMES[kind]}.weight"
        else:
            name = {"token_embd": "model.embed_tokens.weight", "output_norm": "model.norm.weight",
                    "output": "lm_head.weight"}[parts[0]]
        names.add(name)
        tensors.append((name, a))
    hidden = field(r, "llama.embedding_length")
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
           "hidden_size": hidden, "intermediate_size": field(r, "llama.feed_forward_length"),
           "num_hidden_layers": field(r, "llama.block_count"), "num_attention_heads": n_head,
           "num_key_value_heads": n_kv, "max_position_embeddings": field(r, "llama.context_length"),
           "rms_norm_eps": field(r, "llama.attention.layer_norm_rms_epsilon"),
           "rope_theta": field(r, "llama.rope.freq_base"), "vocab_size": field(r, "llama.vocab_size"),
           "tie_word_embeddings": "lm_head.weight" not in names,
           "bos_token_id": field(r, "tokenizer.ggml.bos_token_id"), "eos_token_id": field(r, "tokenizer.ggml.eos_token_id"),
           "torch_dtype": "float32", "attention_bias": False, "mlp_bias": False, "rope_scaling": None}
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors.tmp"), tensors)
    os.replace(os.path.join(out, "model.safetensors.tmp"), os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:3])
