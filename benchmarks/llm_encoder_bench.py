#!/usr/bin/python3
"""llm_encoder_bench — a decoder as the router's encoder: routescore against PyTorch.

Same seeded sample of benchmark prompts as cpu_bench.py, SmolLM2-135M's first
K layers (manifest "encoder_layers"; docs/ROUTERS.md), mean pooling over the
prompt's tokens, 256 tokens at most, 2 threads for both engines:
  routescore  `BIN bench --model SPEC --in prompts.jsonl` (its own warm-up
              pass; tokenisation included), plus `BIN bench --gemm-peak`;
  pytorch     LlamaForCausalLM with model.model.layers cut to the first K,
              no_grad, hidden_states[K] of the whole model (the output of
              layer K, caught by a hook: the residual stream) mean-pooled
              under the attention mask; batches of 32 padded to the longest,
              in input order and sorted by length (its best case). Its token
              ids are computed before timing (Debian's `tokenizers` cannot
              read SmolLM2's tokenizer.json), so its time has no
              tokenisation in it: the comparison favours the peer.
Agreement: `BIN embed` on the same spec against PyTorch's vectors (max
relative difference, min cosine). Useful GFLOP/s count real tokens only
(rs_llama_flops: projections, MLP and causal attention of the K layers).

Run with the interpreter that has torch (Debian's python3-torch):
    /usr/bin/python3 benchmarks/llm_encoder_bench.py --bin build/routescore --layers 6
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import cpu_bench as cb  # noqa: E402


def llama_flops(lengths, cfg, layers):
    """rs_llama_flops over unpadded sequences (ctx = (t + 1) / 2 on average)."""
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    d = h // cfg["num_attention_heads"]
    qw, kw = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    total = 0.0
    for t in lengths:
        per_tok = 2 * (h * qw * 2 + h * kw * 2 + 3 * h * inter) + 4 * ((t + 1) / 2) * qw
        total += t * per_tok * layers
    return total


def hf_ids(tok_path, prompts, max_tokens):
    code = ("import json,sys; from tokenizers import Tokenizer; t=Tokenizer.from_file(sys.argv[1]); "
            "print(json.dumps([t.encode(p).ids[:int(sys.argv[2])] for p in json.load(sys.stdin)]))")
    out = subprocess.run(["python3", "-c", code, tok_path, str(max_tokens)], input=json.dumps(prompts),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "routescore"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "cache", "smollm2-135m"))
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--timeout", type=int, default=3600)
    args = ap.parse_args()
    cb.set_thread_env(args.threads)
    args.bin, args.model = os.path.abspath(args.bin), os.path.abspath(args.model)
    import numpy as np
    import torch
    from transformers import LlamaForCausalLM
    torch.set_num_threads(args.threads)
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    prompts = cb.sample_prompts(args.n, args.seed)
    ids = hf_ids(os.path.join(args.model, "tokenizer.json"), prompts, args.max_tokens)
    lengths = [len(x) for x in ids]
    gflop = llama_flops(lengths, cfg, args.layers) / 1e9
    cb.log(f"workload: {len(prompts)} prompts, {sum(lengths)} tokens, {gflop:.1f} GFLOP ({args.layers} layers)")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rs_llm_bench_") as tmp:
        spec = os.path.join(tmp, "spec")
        os.makedirs(spec)
        with open(os.path.join(spec, "routescore.json"), "w") as f:
            json.dump({"name": "bench", "kind": "embed", "encoder": args.model, "encoder_layers": args.layers,
                       "pooling": "mean", "normalize": False, "max_tokens": args.max_tokens}, f)
        path = os.path.join(tmp, "prompts.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for k, p in enumerate(prompts):
                f.write(json.dumps({"id": k, "prompt": p}, ensure_ascii=False) + "\n")
        rs = cb.run_json([args.bin, "bench", "--model", spec, "--in", path, "--threads", str(args.threads)],
                         args.timeout)
        peak = cb.run_json([args.bin, "bench", "--gemm-peak", "--threads", str(args.threads)],
                           args.timeout).get("gemm_gflops")
        out = os.path.join(tmp, "emb.jsonl")
        subprocess.run([args.bin, "embed", "--model", spec, "--in", path, "--out", out,
                        "--threads", str(args.threads)], check=True, capture_output=True)
        rs_emb = {}
        for line in open(out, encoding="utf-8"):
            j = json.loads(line)
            rs_emb[j["id"]] = np.array(j["embedding"])
            if j["tokens"] != lengths[j["id"]]:
                cb.log(f"WARNING: prompt {j['id']}: routescore {j['tokens']} tokens, HF {lengths[j['id']]}")

    model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    cut = args.layers < cfg["num_hidden_layers"]
    model.model.layers = model.model.layers[:args.layers]
    # With the layers cut, HF's last hidden state would be the final norm of
    # layer K's output; hidden_states[K] of the whole model is that output
    # itself (the residual stream): take it from the last kept layer.
    raw = {}
    model.model.layers[-1].register_forward_hook(lambda mod, inp, out: raw.__setitem__("h", out[0]))

    def one_pass(order, keep):
        t0 = time.perf_counter()
        for g in cb.batches(order, args.batch):
            T = max(lengths[i] for i in g)
            x = torch.zeros((len(g), T), dtype=torch.long)
            m = torch.zeros((len(g), T), dtype=torch.long)
            for r, i in enumerate(g):
                x[r, :lengths[i]] = torch.tensor(ids[i])
                m[r, :lengths[i]] = 1
            with torch.no_grad():
                h = model.model(input_ids=x, attention_mask=m).last_hidden_state
            if cut:
                h = raw["h"]
            mf = m[:, :, None].float()
            emb = (torch.where(mf > 0, h, torch.zeros(())).sum(1) / mf.sum(1)).numpy()  # padding may be NaN
            if keep is not None:
                for r, i in enumerate(g):
                    keep[i] = emb[r]
        return time.perf_counter() - t0

    rows = [("routescore", "packed, no padding", rs["seconds"])]
    keep = {}
    for name, order in (("input order", list(range(len(prompts)))),
                        ("sorted by length", sorted(range(len(prompts)), key=lambda i: lengths[i]))):
        cb.log(f"pytorch {name}: warm-up, timed pass")
        one_pass(order, None)
        rows.append(("PyTorch " + torch.__version__, f"batch {args.batch}, {name}", one_pass(order, keep)))
    rel = max(float(np.max(np.abs(rs_emb[i] - keep[i])) / max(1.0, np.max(np.abs(keep[i])))) for i in keep)
    cos = min(float(rs_emb[i] @ keep[i] / np.linalg.norm(rs_emb[i]) / np.linalg.norm(keep[i])) for i in keep)
    load_after = os.getloadavg()[0]
    base = rows[0][2]
    print(f"\n### SmolLM2-135M, first {args.layers} layers as the encoder "
          f"({datetime.date.today().isoformat()}, commit {cb.git_head()})\n")
    print(f"Machine: {cb.lscpu_summary()}; {args.threads} threads for both; load average "
          f"{load_before:.2f} before / {load_after:.2f} after.\n")
    print(f"Command: `/usr/bin/python3 benchmarks/llm_encoder_bench.py --bin {os.path.relpath(args.bin, ROOT)} "
          f"--layers {args.layers} --n {args.n}`\n")
    print(f"Workload: {len(prompts)} prompts (seed {args.seed}), {sum(lengths)} tokens (at most "
          f"{args.max_tokens} each), {gflop:.1f} GFLOP.\n")
    print("| engine | configuration | seconds | tokens/s | useful GFLOP/s | routescore speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for eng, conf, secs in rows:
        print(f"| {eng} | {conf} | {secs:.2f} | {sum(lengths) / secs:.0f} | {gflop / secs:.1f} | "
              f"{secs / base:.2f}x |")
    print(f"\n- dnnl_sgemm peak in the same run: {cb.fmt(peak, '.1f')} GFLOP/s; routescore at "
          f"{100 * gflop / base / peak:.0f}% of it." if peak else "")
    print(f"- Agreement with PyTorch: max relative difference {rel:.2e}, min cosine {cos:.7f}.")


if __name__ == "__main__":
    main()
