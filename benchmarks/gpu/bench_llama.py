#!/usr/bin/env python3
"""bench_llama.py — the causal_llm router at Llama-3-8B shape on one GPU:
routescore (CUDA backend: shared-prefix KV computed once, batched prefill,
batched greedy decode) against RouteLLM's way (HF `generate`, bf16, one
prompt at a time, the system prefix recomputed for every prompt) and HF
`generate` on a batch. Random weights (make_llama.py, drawn on the device).

  python3 bench_llama.py --bin build-cuda/routescore [--model /tmp/rs_llama3_8b] [--out DIR]
                         [--len 100] [--prompts 512] [--hf-seq 16] [--hf-batch 32] [--hf-batches 3]
                         [--backend cuda] [--hf-device cuda] [--tiny] [--no-hf]

Prompts: LEN random ids each (the prompt's own part: user header, RouteLLM's
classifier template with the question, eot) behind the shared RouteLLM system
prefix (tokenized with the router's tokenizer by `routescore tokenize`), so
every engine sees prefix + LEN tokens per prompt and generates at most 6 new
ids (max_new_tokens 6, greedy), as RouteLLM's CausalLLMClassifier does. With
random weights a rating token almost never comes, so every engine runs all 6
steps: the worst case of a real router. routescore's ids are
`routescore bench --synthetic LEN`'s (fixed seed); HF's are drawn with a fixed
torch seed: the same counts, which is what the time depends on.

Prefill TFLOP/s: routescore on OUT_DIR/prefill_only (max_new_tokens 1: the
batched prefill of the prompts' own tokens against the cached prefix, plus the
LM head on each last row), FLOPs from rs_llama_flops (2 per multiply-add over
the 7 projections per layer, QK^T and PV against prefix + half the prompt,
the LM head row) — about 14 GFLOP a token at this shape; % of --peak-tflops
(989, H100 SXM dense bf16).

Writes OUT/llama_results.jsonl and prints a markdown report last. --tiny
makes and runs a 2-layer hidden-64 model: a smoke test of the script on a CPU
(--backend cpu --hf-device cpu).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SYS_HEAD = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
EOT = "<|eot_id|>"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def prefix_ids(binary, model):
    system = open(os.path.join(model, "system_ft_v5.txt"), encoding="utf-8").read().strip()
    tok = os.path.join(model, "tokenizer.model")
    if not os.path.exists(tok):
        tok = os.path.join(model, "tokenizer.json")
    p = subprocess.run([binary, "tokenize", "--tokenizer", tok, SYS_HEAD + system + EOT], capture_output=True,
                       text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def routescore(binary, router, backend, length, batch, iters, batch_tokens):
    cmd = [binary, "bench", "--model", router, "--backend", backend, "--synthetic", str(length), "--batch",
           str(batch), "--iters", str(iters), "--batch-tokens", str(batch_tokens)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-2000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["wall_s_with_load"] = time.perf_counter() - t0
    return r


class HF:
    def __init__(self, model, device):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
        self.torch, self.device = torch, device
        try:
            cfg = AutoConfig.from_pretrained(model)
        except Exception as ex:  # transformers < 4.43 rejects rope_type llama3
            log(f"bench_llama: transformers cannot read rope_scaling ({ex!r:.120}); loading without it "
                f"(timing unaffected: rope is elementwise)")
            raw = json.load(open(os.path.join(model, "config.json")))
            raw.pop("rope_scaling", None)
            from transformers import LlamaConfig
            cfg = LlamaConfig(**raw)
        t0 = time.perf_counter()
        self.model = AutoModelForCausalLM.from_pretrained(model, config=cfg, torch_dtype=torch.bfloat16).to(device)
        self.model.eval()
        self.load_s = time.perf_counter() - t0
        self.eos = cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else cfg.eos_token_id[0]

    def sync(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def generate(self, ids):
        """RouteLLM's call: greedy, 6 new tokens, scores kept."""
        with self.torch.inference_mode():
            return self.model.generate(ids, attention_mask=self.torch.ones_like(ids), max_new_tokens=6,
                                       do_sample=False, pad_token_id=self.eos, output_scores=True,
                                       return_dict_in_generate=True)

    def time(self, prefix, length, batch, reps, vocab, seed):
        torch = self.torch
        g = torch.Generator().manual_seed(seed)
        own = torch.randint(4, vocab - 5, (reps, batch, length), generator=g)
        pre = torch.tensor(prefix).expand(batch, -1)
        self.generate(torch.cat([pre, own[0]], 1).to(self.device))  # warm-up
        self.sync()
        lat, new = [], []
        for r in range(reps):
            ids = torch.cat([pre, own[r]], 1).to(self.device)
            t0 = time.perf_counter()
            o = self.generate(ids)
            self.sync()
            lat.append(time.perf_counter() - t0)
            new.append(o.sequences.shape[1] - ids.shape[1])
        return lat, new


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-cuda", "routescore"))
    ap.add_argument("--model", default="/tmp/rs_llama3_8b_random")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "out", "gpu"))
    ap.add_argument("--len", type=int, default=100, help="each prompt's own tokens")
    ap.add_argument("--prompts", type=int, default=512, help="routescore: prompts per timed call")
    ap.add_argument("--iters", type=int, default=3, help="routescore: timed calls (after one warm-up)")
    ap.add_argument("--batch-tokens", type=int, default=16384, help="routescore: tokens per forward")
    ap.add_argument("--slots", type=int, default=64, help="routescore: prompts per group (make_llama.py)")
    ap.add_argument("--hf-seq", type=int, default=16, help="HF one at a time: prompts timed")
    ap.add_argument("--hf-batch", type=int, default=32, help="HF batched generate: batch size")
    ap.add_argument("--hf-batches", type=int, default=3, help="HF batched generate: batches timed")
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--hf-device", default="cuda")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--tiny", action="store_true", help="a 2-layer hidden-64 model (smoke test)")
    ap.add_argument("--no-hf", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if not os.path.exists(os.path.join(a.model, "model.safetensors.index.json")):
        t0 = time.perf_counter()
        cmd = [sys.executable, os.path.join(HERE, "make_llama.py"), a.model, "--slots", str(a.slots)]
        subprocess.run(cmd + (["--tiny", "--device", "cpu"] if a.tiny else []), check=True)
        log(f"bench_llama: weights written in {time.perf_counter() - t0:.0f} s")
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    prefix = prefix_ids(a.bin, a.model)
    P, L = len(prefix), a.len
    log(f"bench_llama: prefix {P} tokens, prompts {L} tokens of their own")
    device = "?"
    try:
        device = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        pass
    res = open(os.path.join(a.out, "llama_results.jsonl"), "w")

    def rec(d):
        res.write(json.dumps(d) + "\n")
        res.flush()
        log(json.dumps(d))

    rows = {}
    r = routescore(a.bin, a.model, a.backend, L, a.prompts, a.iters, a.batch_tokens)
    rows["rs"] = r
    rec({"engine": "routescore", "mode": "score (prefill + up to 5 decode steps)", "len": L, "prefix": P, **r})
    r = routescore(a.bin, os.path.join(a.model, "prefill_only"), a.backend, L, a.prompts, a.iters, a.batch_tokens)
    rows["rs_prefill"] = r
    rec({"engine": "routescore", "mode": "prefill only (max_new_tokens 1)", "len": L, "prefix": P, **r})
    if not a.no_hf:
        hf = HF(a.model, a.hf_device)
        log(f"bench_llama: HF model loaded in {hf.load_s:.0f} s")
        lat, new = hf.time(prefix, L, 1, a.hf_seq, cfg["vocab_size"], 1)
        rows["hf1"] = (len(lat) / sum(lat), statistics.median(lat), statistics.mean(new))
        rec({"engine": "hf_generate", "batch": 1, "len": L, "prefix": P, "prompts": len(lat),
             "prompts_per_s": rows["hf1"][0], "p50_ms": rows["hf1"][1] * 1e3, "mean_new_tokens": rows["hf1"][2]})
        lat, new = hf.time(prefix, L, a.hf_batch, a.hf_batches, cfg["vocab_size"], 2)
        rows["hfb"] = (a.hf_batch * len(lat) / sum(lat), statistics.median(lat), statistics.mean(new))
        rec({"engine": "hf_generate", "batch": a.hf_batch, "len": L, "prefix": P, "prompts": a.hf_batch * len(lat),
             "prompts_per_s": rows["hfb"][0], "p50_ms": rows["hfb"][1] * 1e3, "mean_new_tokens": rows["hfb"][2]})
    res.close()

    rs, rp = rows["rs"], rows["rs_prefill"]
    gf_tok = rp["gflop_per_call"] / (a.prompts * L) if rp.get("gflop_per_call") else float("nan")
    print(f"\n## GPU: causal_llm router at Llama-3-8B shape ({device})\n")
    print(f"Random bf16 weights (benchmarks/gpu/make_llama.py: hidden {cfg['hidden_size']}, "
          f"{cfg['num_hidden_layers']} layers, {cfg['num_attention_heads']}/{cfg['num_key_value_heads']} heads, "
          f"intermediate {cfg['intermediate_size']}, vocab {cfg['vocab_size']}); RouteLLM's system prefix "
          f"({P} tokens) + {L} random tokens per prompt, greedy, at most 6 new tokens.\n")
    print("| engine | prompts/s | p50 ms per call | speed-up vs RouteLLM's way |")
    print("|---|---:|---:|---:|")
    base = rows["hf1"][0] if "hf1" in rows else None

    def su(x):
        return f"{x / base:.1f}x" if base else "—"

    print(f"| routescore ({a.backend}, {a.prompts} prompts a call, {a.slots} slots) | {rs['prompts_per_s']:.1f} | "
          f"{rs['p50_ms']:.1f} | {su(rs['prompts_per_s'])} |")
    if "hf1" in rows:
        print(f"| HF generate, one prompt at a time (RouteLLM) | {rows['hf1'][0]:.2f} | {rows['hf1'][1] * 1e3:.1f} | 1.0x |")
        print(f"| HF generate, batch {a.hf_batch} | {rows['hfb'][0]:.1f} | {rows['hfb'][1] * 1e3:.1f} | "
              f"{su(rows['hfb'][0])} |")
    print(f"\nPrefill alone (routescore, max_new_tokens 1): {rp['prompts_per_s']:.1f} prompts/s, "
          f"{rp['tflops']:.1f} TFLOP/s = {100 * rp['tflops'] / a.peak_tflops:.1f}% of {a.peak_tflops:g} "
          f"({gf_tok:.1f} GFLOP per prompt token incl. attention and the LM head row).")


if __name__ == "__main__":
    main()
