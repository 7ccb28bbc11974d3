#!/usr/bin/env python3
"""bench_gpu.py — the CUDA backend on an XLM-R-base-shaped router against
PyTorch (transformers, bf16, sdpa attention) on the same GPU, in one run.

  python3 bench_gpu.py --bin build-cuda/routescore [--model DIR] [--out DIR]
                       [--lens 32,64,128,256,512] [--batches 1,8,32,128,512,1024]
                       [--no-torch] [--quick]

For every (prompt length, batch size): prompts/s and achieved TFLOP/s of
`routescore bench --backend cuda --synthetic LEN --batch B` (random ids, fixed
seed, all prompts of one length) and of the PyTorch model on the same ids;
then p50/p99 latency of one prompt (batch 1) per length. FLOPs use one formula
for both (rs_encoder_flops: the four GEMMs per token plus QK^T and PV per
sequence, 2 flops a multiply-add; the classifier head is left out), so the
two TFLOP/s columns compare directly. Peak for the percentage: --peak-tflops
(default 989: NVIDIA's H100 SXM dense bf16 figure).

Writes OUT/results.jsonl (one record per measurement) and prints a markdown
report last, ready for benchmarks/RESULTS.md.
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


def encoder_flops(cfg, length, batch):
    H, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    tokens = length * batch
    per_layer = tokens * (2 * H * 3 * H + 2 * H * H + 2 * 2 * H * I) + 2 * 2 * batch * length * length * H
    return per_layer * L


def iters_for(length, batch, budget_tokens=400_000, lo=5, hi=200):
    return max(lo, min(hi, budget_tokens // (length * batch)))


def run_routescore(binary, model, length, batch, iters, batch_tokens):
    cmd = [binary, "bench", "--model", model, "--backend", "cuda", "--synthetic", str(length), "--batch",
           str(batch), "--iters", str(iters)]
    if batch_tokens:
        cmd += ["--batch-tokens", str(batch_tokens)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def ids_for(length, batch, vocab, seed=1234):
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, vocab, (batch, length), generator=g, dtype=torch.long)


class TorchModel:
    def __init__(self, model_dir):
        import torch
        from transformers import AutoModelForSequenceClassification
        self.torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, torch_dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
        self.max_tokens = 1 << 30

    def run(self, ids):
        """One forward of the whole batch; on OOM, in token-budgeted chunks."""
        torch = self.torch
        b, n = ids.shape
        step = max(1, min(b, self.max_tokens // n))
        with torch.inference_mode():
            while True:
                try:
                    for i in range(0, b, step):
                        self.model(input_ids=ids[i:i + step]).logits
                    return
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    if step == 1:
                        raise
                    step = max(1, step // 2)
                    self.max_tokens = step * n

    def time(self, length, batch, iters, vocab):
        torch = self.torch
        ids = ids_for(length, batch, vocab).cuda()
        self.run(ids)  # warm-up (and cuDNN/sdpa kernel selection)
        torch.cuda.synchronize()
        lat = []
        for _ in range(iters):
            t0 = time.perf_counter()
            self.run(ids)
            torch.cuda.synchronize()
            lat.append(time.perf_counter() - t0)
        return lat


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-cuda", "routescore"))
    ap.add_argument("--model", default=os.path.join(ROOT, "benchmarks", "out", "xlmr_base_random"))
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "out", "gpu"))
    ap.add_argument("--lens", default="32,64,128,256,512")
    ap.add_argument("--batches", default="1,8,32,128,512,1024")
    ap.add_argument("--latency-iters", type=int, default=300)
    ap.add_argument("--batch-tokens", type=int, default=0, help="routescore arena tokens (0: engine default 16384)")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--quick", action="store_true", help="lengths 128, batches 1 and 128 only")
    a = ap.parse_args()
    if a.quick:
        a.lens, a.batches, a.latency_iters = "128", "1,128", 50
    lens = [int(x) for x in a.lens.split(",")]
    batches = [int(x) for x in a.batches.split(",")]
    os.makedirs(a.out, exist_ok=True)
    if not os.path.exists(os.path.join(a.model, "model.safetensors")):
        subprocess.run([sys.executable, os.path.join(HERE, "make_router.py"), a.model], check=True)
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    max_len = cfg["max_position_embeddings"] - cfg.get("pad_token_id", 1) - 1
    lens = [n for n in lens if n <= max_len]

    tm = None
    if not a.no_torch:
        try:
            tm = TorchModel(a.model)
        except Exception as ex:  # report, and still measure routescore
            print(f"bench_gpu: PyTorch model unavailable: {ex!r}", file=sys.stderr)
    device = "?"
    try:
        device = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        pass

    rows, lat_rows = [], []
    res = open(os.path.join(a.out, "results.jsonl"), "w")
    for n in lens:
        for b in batches:
            it = iters_for(n, b)
            gf = encoder_flops(cfg, n, b)
            r = run_routescore(a.bin, a.model, n, b, it, a.batch_tokens)
            rec = {"engine": "routescore", "len": n, "batch": b, "prompts_per_s": r["prompts_per_s"],
                   "tflops": r["tflops"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "iters": it}
            res.write(json.dumps(rec) + "\n")
            t_pps = t_tf = None
            if tm:
                lat = tm.time(n, b, max(3, it // 2), cfg["vocab_size"])
                med = statistics.median(lat)
                t_pps, t_tf = b / med, gf / med / 1e12
                res.write(json.dumps({"engine": "pytorch", "len": n, "batch": b, "prompts_per_s": t_pps,
                                      "tflops": t_tf, "p50_ms": med * 1e3, "p99_ms": pct(lat, 0.99) * 1e3}) + "\n")
            res.flush()
            rows.append((n, b, r["prompts_per_s"], r["tflops"], t_pps, t_tf))
            print(f"len {n:4d} batch {b:5d}: routescore {r['prompts_per_s']:10.1f} prompts/s {r['tflops']:7.1f} "
                  f"TFLOP/s" + (f" | pytorch {t_pps:10.1f} prompts/s {t_tf:7.1f} TFLOP/s" if tm else ""),
                  flush=True)
        r = run_routescore(a.bin, a.model, n, 1, a.latency_iters, a.batch_tokens)
        t50 = t99 = None
        if tm:
            lat = tm.time(n, 1, a.latency_iters, cfg["vocab_size"])
            t50, t99 = statistics.median(lat) * 1e3, pct(lat, 0.99) * 1e3
        lat_rows.append((n, r["p50_ms"], r["p99_ms"], t50, t99))
        res.write(json.dumps({"engine": "routescore", "latency": True, "len": n, "p50_ms": r["p50_ms"],
                              "p99_ms": r["p99_ms"], "pytorch_p50_ms": t50, "pytorch_p99_ms": t99}) + "\n")
    res.close()

    def f(x, spec):
        return "—" if x is None else format(x, spec)

    print(f"\n## GPU: XLM-R-base-shaped router, CUDA backend vs PyTorch ({device})\n")
    print(f"Random weights (benchmarks/gpu/make_router.py, seed 0), random ids, every prompt of the given length; "
          f"TFLOP/s from the encoder FLOPs; % of {a.peak_tflops:g} TFLOP/s bf16 peak.\n")
    print("| len | batch | routescore prompts/s | TFLOP/s | % peak | PyTorch prompts/s | TFLOP/s | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, b, pps, tf, tpps, ttf in rows:
        print(f"| {n} | {b} | {pps:.0f} | {tf:.1f} | {100 * tf / a.peak_tflops:.1f} | {f(tpps, '.0f')} | "
              f"{f(ttf, '.1f')} | {f(pps / tpps if tpps else None, '.2f')} |")
    print("\n| len | routescore p50 ms | p99 ms | PyTorch p50 ms | p99 ms |  (batch 1)")
    print("|---:|---:|---:|---:|---:|")
    for n, p50, p99, t50, t99 in lat_rows:
        print(f"| {n} | {p50:.3f} | {p99:.3f} | {f(t50, '.3f')} | {f(t99, '.3f')} |")


if __name__ == "__main__":
    main()
