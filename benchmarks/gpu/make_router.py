#!/usr/bin/env python3
"""make_router.py — writes an XLM-R-base-shaped sequence classifier with random
weights (fixed seed) for speed measurements: config.json + model.safetensors
in the Hugging Face layout that both routescore and transformers load.

  python3 make_router.py OUT_DIR [--layers 12 --hidden 768 --heads 12
                                  --intermediate 3072 --vocab 250002 --seed 0]

Only numpy is needed (the safetensors header is written by hand). Weights are
N(0, 0.02) like transformers' initialiser, LayerNorm gamma 1 and beta 0, so
activations stay in the range a trained model has; not zeros (zeros can run
faster than real data). The scores mean nothing: this measures speed.
"""
import argparse
import json
import os
import struct

import numpy as np


def tensors(a, rng):
    H, I, V, P, L = a.hidden, a.intermediate, a.vocab, a.positions, a.labels

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    def ones(n):
        return np.ones(n, np.float32)

    def zeros(n):
        return np.zeros(n, np.float32)

    e = "roberta.embeddings."
    yield e + "word_embeddings.weight", w(V, H)
    yield e + "position_embeddings.weight", w(P, H)
    yield e + "token_type_embeddings.weight", w(1, H)
    yield e + "LayerNorm.weight", ones(H)
    yield e + "LayerNorm.bias", zeros(H)
    for i in range(a.layers):
        p = f"roberta.encoder.layer.{i}."
        for n in ("query", "key", "value"):
            yield p + f"attention.self.{n}.weight", w(H, H)
            yield p + f"attention.self.{n}.bias", w(H)
        yield p + "attention.output.dense.weight", w(H, H)
        yield p + "attention.output.dense.bias", w(H)
        yield p + "attention.output.LayerNorm.weight", ones(H)
        yield p + "attention.output.LayerNorm.bias", zeros(H)
        yield p + "intermediate.dense.weight", w(I, H)
        yield p + "intermediate.dense.bias", w(I)
        yield p + "output.dense.weight", w(H, I)
        yield p + "output.dense.bias", w(H)
        yield p + "output.LayerNorm.weight", ones(H)
        yield p + "output.LayerNorm.bias", zeros(H)
    yield "classifier.dense.weight", w(H, H)
    yield "classifier.dense.bias", w(H)
    yield "classifier.out_proj.weight", w(L, H)
    yield "classifier.out_proj.bias", w(L)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--intermediate", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=250002)
    ap.add_argument("--positions", type=int, default=514)
    ap.add_argument("--labels", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    items = list(tensors(a, rng))
    header, off = {}, 0
    for name, t in items:
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + t.nbytes]}
        off += t.nbytes
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for _, t in items:
            f.write(np.ascontiguousarray(t).tobytes())
    config = {
        "architectures": ["XLMRobertaForSequenceClassification"],
        "model_type": "xlm-roberta",
        "hidden_act": "gelu",
        "hidden_size": a.hidden,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "intermediate_size": a.intermediate,
        "vocab_size": a.vocab,
        "max_position_embeddings": a.positions,
        "type_vocab_size": 1,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "layer_norm_eps": 1e-05,
        "position_embedding_type": "absolute",
        "id2label": {str(i): f"LABEL_{i}" for i in range(a.labels)},
        "label2id": {f"LABEL_{i}": i for i in range(a.labels)},
        "torch_dtype": "float32",
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    print(f"make_router: {a.out}: {sum(t.size for _, t in items) / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
