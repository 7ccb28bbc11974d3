#!/usr/bin/env python3
"""A LlamaForCausalLM as a router's encoder (manifest "encoder_layers",
"pooling": "mean"|"last", "normalize"), against HF transformers
(tools/gen/gen_llama_encoder.py -> tests/data/llama_encoder/golden.json):

- `routescore embed` on a spec directory (kind "embed") gives HF's pooled
  hidden_states[L] for the tiny random Llama-3-shaped model and for
  SmolLM2-135M (real weights; skipped when the model cache lacks it): token
  counts equal, values within 5e-5 relative to the vector's largest entry.
  The prompts go ten times over in one call (more than one forward of 32
  sequences) and once with --threads 1.
- an mf head over that encoder scores sigmoid(w . e + b) of those embeddings;
- bad manifests are refused with a message: encoder_layers beyond the model,
  pooling "cls" on a decoder, kind "bert" on a decoder, encoder_layers on a
  BERT encoder.
Exit 77 only when nothing could run."""
import json, math, os, struct, sys, tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import rstest  # noqa: E402
from rstest import CACHE, check  # noqa: E402

DATA = os.environ.get("RS_TEST_DATA") or os.path.join(HERE, "..", "data")
golden = json.load(open(os.path.join(DATA, "llama_encoder", "golden.json"), encoding="utf-8"))
prompts = golden["prompts"]


def model_dir(name, entry):
    if name == "causal_tiny":
        return os.path.join(DATA, "causal_tiny", "router")
    return os.path.join(CACHE, os.path.basename(entry["dir"]))


def spec(tmp, name, enc, **keys):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    man = {"name": name, "kind": "embed", "encoder": os.path.abspath(enc)}
    man.update({k: v for k, v in keys.items() if v is not None})
    with open(os.path.join(d, "routescore.json"), "w") as f:
        json.dump(man, f)
    return d


def embed(router, texts, *flags):
    with tempfile.TemporaryDirectory() as t:
        inp, out = os.path.join(t, "in.jsonl"), os.path.join(t, "out.jsonl")
        with open(inp, "w", encoding="utf-8") as f:
            for i, p in enumerate(texts):
                f.write(json.dumps({"id": i, "prompt": p}, ensure_ascii=False) + "\n")
        r = rstest.run(["embed", "--model", router, "--in", inp, "--out", out, *flags], text=True)
        if r.returncode != 0:
            check(False, f"embed {router} {flags}: exit {r.returncode}: {r.stderr[-400:]}")
            return None
        return [json.loads(line) for line in open(out, encoding="utf-8")]


def write_head(path, w, b):
    tensors = {"mf.weight": np.asarray(w, "<f4"), "mf.bias": np.asarray([b], "<f4")}
    header, blobs, off = {}, [], 0
    for k, a in tensors.items():
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def refused(router, what, needle):
    r = rstest.run(["score", "--model", router, "hello"], text=True)
    check(r.returncode == 2 and needle in r.stderr, f"{what}: exit 2 naming '{needle}' (got {r.returncode}: "
          f"{r.stderr.strip()[-300:]!r})")


def main():
    ran = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, entry in golden["models"].items():
            enc = model_dir(name, entry)
            if not os.path.exists(os.path.join(enc, "model.safetensors")):
                print(f"skip {name}: {enc} not fetched (models/fetch_smollm2_model.sh)")
                continue
            for i, c in enumerate(entry["configs"]):
                d = spec(tmp, f"{name}-{i}", enc, encoder_layers=c["encoder_layers"] or None, pooling=c["pooling"],
                         normalize=c["normalize"])
                label = f"{name} layers={c['encoder_layers'] or 'all'} {c['pooling']} normalize={c['normalize']}"
                ref = np.array(c["embeddings"])
                for flags, reps in (((), 10), (("--threads", "1"), 1)):
                    recs = embed(d, prompts * reps, *flags)
                    if recs is None:
                        continue
                    got = np.array([r["embedding"] for r in recs])
                    check(got.shape == (len(prompts) * reps, ref.shape[1]), f"{label}: shape {got.shape}")
                    if got.shape[0] != len(prompts) * reps:
                        continue
                    worst = 0.0
                    for k, r in enumerate(recs):
                        j = k % len(prompts)
                        check(r["tokens"] == len(entry["ids"][j]), f"{label} {flags}: prompt {j} has {r['tokens']} "
                              f"tokens, HF {len(entry['ids'][j])}")
                        worst = max(worst, float(np.max(np.abs(got[k] - ref[j])) / max(1.0, np.max(np.abs(ref[j])))))
                    check(worst < 5e-5, f"{label} {flags}: max relative error {worst:.2e}")
                    print(f"{label} {' '.join(flags) or f'x{reps}'}: max relative error {worst:.2e}")
                ran += 1
            # An mf head over the first config's encoder scores sigmoid(w . e + b).
            c = entry["configs"][0]
            rng = np.random.default_rng(7)
            ref = np.array(c["embeddings"])
            w = rng.normal(0, 1, ref.shape[1]) / (np.abs(ref).max() * math.sqrt(ref.shape[1]))
            d = spec(tmp, f"{name}-mf", enc, encoder_layers=c["encoder_layers"] or None, pooling=c["pooling"],
                     normalize=c["normalize"])
            man = json.load(open(os.path.join(d, "routescore.json")))
            man.update({"kind": "mf", "head": "head.safetensors"})
            json.dump(man, open(os.path.join(d, "routescore.json"), "w"))
            write_head(os.path.join(d, "head.safetensors"), w, 0.1)
            r = rstest.run(["score", "--model", d, *prompts], text=True)
            check(r.returncode == 0, f"{name} mf score: exit {r.returncode} {r.stderr[-300:]}")
            if r.returncode == 0:
                got = np.array([json.loads(line)["win_prob"] for line in r.stdout.splitlines()])
                want = 1 / (1 + np.exp(-(ref @ w.astype(np.float32) + 0.1)))
                err = float(np.max(np.abs(got - want)))
                check(err < 1e-5 and np.std(want) > 1e-3, f"{name} mf head: |p - sigmoid(w.e+b)| {err:.2e}, "
                      f"spread {np.std(want):.3g}")
                print(f"{name} mf head: max |p - ref| {err:.2e}")
            # What a manifest may not ask of a decoder.
            n_layers = json.load(open(os.path.join(enc, "config.json")))["num_hidden_layers"]
            refused(spec(tmp, f"{name}-deep", enc, encoder_layers=n_layers + 1, pooling="mean"),
                    f"{name} encoder_layers {n_layers + 1}", "the model has")
            refused(spec(tmp, f"{name}-cls", enc, pooling="cls"), f"{name} pooling cls", "\"mean\" or \"last\"")
            bert = spec(tmp, f"{name}-bert", enc)
            man = json.load(open(os.path.join(bert, "routescore.json")))
            man["kind"] = "bert"
            json.dump(man, open(os.path.join(bert, "routescore.json"), "w"))
            refused(bert, f"{name} kind bert", "no sequence classifier")
        minilm = os.path.join(CACHE, "all-minilm-l6-v2")
        if os.path.exists(os.path.join(minilm, "config.json")):
            refused(spec(tmp, "minilm-layers", minilm, encoder_layers=3), "encoder_layers on BERT", "Llama encoders")
    if not ran:
        print("nothing to run")
        return 77
    return rstest.result("llama_encoder")


if __name__ == "__main__":
    sys.exit(main())
