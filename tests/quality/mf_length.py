"""mf_length — the mf head's optional length term: with `mf.length_weight` [1]
in head.safetensors the engine scores
    win_prob = sigmoid(w . e + b + length_weight * (log(tokens) - 3.5))
with e the embedding `routescore embed` writes and tokens its token count
(specials included, after truncation). Checked on a random head against numpy
for short, long and truncated prompts; a head without the tensor scores as
before; a malformed one is refused at open.
Needs the MiniLM encoder in models/cache (else skipped, exit 77).
"""
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import rstest  # noqa: E402
from rstest import check, run  # noqa: E402


def write_st(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (arr, dtype) in tensors.items():
        b = np.asarray(arr, dtype=dtype).tobytes()
        header[name] = {"dtype": "F32" if dtype == "<f4" else "F16", "shape": list(np.shape(arr)),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def router(d, tensors):
    os.makedirs(d, exist_ok=True)
    write_st(os.path.join(d, "head.safetensors"), tensors)
    with open(os.path.join(d, "routescore.json"), "w") as f:
        json.dump({"name": "t", "kind": "mf", "encoder": os.path.relpath(rstest.ENCODER, d),
                   "head": "head.safetensors", "pooling": "mean", "normalize": True, "threshold": 0.5}, f)
    return d


def main():
    if rstest.binary_missing():
        return 1
    if not os.path.isdir(rstest.ENCODER):
        print("skipped: encoder not found")
        return 77
    prompts = ["hi", "What is 2 + 2?",
               "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
               "How many clips did Natalia sell altogether in April and May?",
               " ".join(["word"] * 600)]  # truncated at 256 tokens
    rng = np.random.default_rng(7)
    w = rng.normal(0, 2, 384).astype(np.float32)
    b, lw = np.float32(-0.3), np.float32(0.8)
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in.jsonl")
        with open(inp, "w") as f:
            for p in prompts:
                f.write(json.dumps({"prompt": p}) + "\n")
        r = run(["embed", "--in", inp, "--model", rstest.ENCODER])
        check(r.returncode == 0, f"embed exit {r.returncode}: {r.stderr[-500:]}")
        emb = [json.loads(line) for line in r.stdout.decode().splitlines()]
        check(emb[-1]["truncated"], "the long prompt is truncated")

        def scores(d):
            r = run(["score", "--model", d, *prompts])
            check(r.returncode == 0, f"score exit {r.returncode}: {r.stderr[-500:]}")
            return [json.loads(line) for line in r.stdout.decode().splitlines()]

        with_len = router(os.path.join(tmp, "len"), {"mf.weight": (w, "<f4"), "mf.bias": ([b], "<f4"),
                                                      "mf.length_weight": ([lw], "<f4")})
        plain = router(os.path.join(tmp, "plain"), {"mf.weight": (w, "<f4"), "mf.bias": ([b], "<f4")})
        for name, d, lwt in (("with length", with_len, float(lw)), ("plain", plain, 0.0)):
            got = scores(d)
            for p, e, s in zip(prompts, emb, got):
                z = float(np.dot(np.array(e["embedding"], dtype=np.float64), w)) + float(b) \
                    + lwt * (math.log(e["tokens"]) - 3.5)
                want = 1 / (1 + math.exp(-z))
                check(s["tokens"] == e["tokens"], f"{name}: tokens {s['tokens']} vs embed {e['tokens']}")
                check(abs(s["win_prob"] - want) < 1e-5, f"{name} {p[:20]!r}: {s['win_prob']} vs numpy {want}")
        bad = router(os.path.join(tmp, "bad"), {"mf.weight": (w, "<f4"), "mf.bias": ([b], "<f4"),
                                                "mf.length_weight": ([lw, lw], "<f4")})
        r = run(["score", "--model", bad, "hi"])
        check(r.returncode != 0 and b"length_weight" in r.stderr, f"bad length_weight: exit {r.returncode}")
    return rstest.result("mf_length")


if __name__ == "__main__":
    sys.exit(main())
