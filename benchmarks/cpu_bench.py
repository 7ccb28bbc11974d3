#!/usr/bin/python3
"""cpu_bench — routescore against onnxruntime and PyTorch on the CPU, same prompts.

One run measures, on the same seeded sample of benchmark prompts (truncated to 256
tokens, 2 threads for every engine):
  routescore   `BIN bench --model M --in prompts.jsonl --threads 2` (one prompt at a
               time, its own warm-up pass), plus `BIN bench --gemm-peak`;
  onnxruntime  BertModel exported to ONNX fp32 (dynamic batch and sequence axes),
               intra_op 2 / inter_op 1, graph optimisations on;
  pytorch      BertModel fp32, no_grad, torch.set_num_threads(2).
The peers get batches of 32 prompts, padded to the batch's longest: once in input
order (how a server sees traffic) and once sorted by length (their best case). Their
timed loop includes tokenisation (HF fast tokenizer), the forward pass, masked mean
pooling and L2 normalisation, i.e. the same work as `routescore embed`. Every engine
is warmed up with one full pass first. Tokens are real tokens, never padding.

Run with the interpreter that has torch (Debian's python3-torch):
    /usr/bin/python3 benchmarks/cpu_bench.py --bin build/routescore
It prints a table and a markdown block for benchmarks/RESULTS.md.
"""
import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import rsdata  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def set_thread_env(n):
    # Before torch/onnxruntime/tokenizers load: caps every pool at n threads.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


# ------------------------------------------------------------------ workload

def minilm_flops(lengths, cfg):
    """Forward FLOPs (2 per multiply-add) of a BERT encoder over unpadded sequences."""
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    total = 0
    for t in lengths:
        dense = 2 * t * (4 * h * h + 2 * h * i)      # QKV, output projection, FFN
        attn = 2 * 2 * t * t * h                     # QK^T and PV
        total += layers * (dense + attn)
    return total


def sample_prompts(n, seed):
    if rsdata.data_dir() is None:
        sys.exit("cpu_bench: ../shared/data/routellm not found (set RS_SHARED_DATA)")
    prompts = rsdata.all_prompts()
    return random.Random(seed).sample(prompts, min(n, len(prompts)))


# ------------------------------------------------------------------ routescore

def run_json(cmd, timeout):
    log("+ " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-800:]}")
    for line in reversed(p.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON object in output: {p.stdout[-400:]!r}")


def native_bf16():
    with open("/proc/cpuinfo") as f:
        return "avx512_bf16" in f.read().split()


def rs_precision(p):
    """bf16 runs as bf16-emulated (the same arithmetic, oneDNN's emulation) on a
    CPU without AVX-512 BF16, where routescore refuses plain bf16."""
    return "bf16-emulated" if p == "bf16" and not native_bf16() else p


def bench_routescore(args, prompts_path, precision):
    return run_json([args.bin, "bench", "--model", args.model, "--in", prompts_path,
                     "--threads", str(args.threads), "--precision", rs_precision(precision)], args.timeout)


def gemm_peaks(args):
    """{fp32: dnnl_sgemm GFLOP/s, bf16: oneDNN bf16 matmul GFLOP/s} at M=2048 N=1536 K=384."""
    peaks = {}
    for p in ("fp32", "bf16"):
        try:
            peaks[p] = run_json([args.bin, "bench", "--gemm-peak", "--threads", str(args.threads),
                                 "--precision", rs_precision(p)], args.timeout)
        except Exception as e:  # the throughput numbers are still worth reporting
            log(f"routescore --gemm-peak --precision {p} failed: {e}")
    return peaks


def length_sweep(args, ort_sessions, cfg, np):
    """Tokens/s at fixed lengths: routescore `bench --synthetic LEN` per precision and
    onnxruntime on the same shape (batch of random ids, no padding), about
    args.sweep_tokens tokens a call."""
    rows = []
    for L in args.lengths:
        B = max(1, args.sweep_tokens // L)
        flop = minilm_flops([L] * B, cfg)
        for p in args.precisions:
            try:
                r = run_json([args.bin, "bench", "--model", args.model, "--synthetic", str(L),
                              "--batch", str(B), "--iters", str(args.sweep_iters), "--max-tokens", "512",
                              "--threads", str(args.threads), "--precision", rs_precision(p)], args.timeout)
                rows.append({"len": L, "batch": B, "engine": f"routescore {rs_precision(p)}",
                             "tokens_per_s": r["tokens_per_s"], "gflops": flop * r["prompts_per_s"] / B / 1e9,
                             "p50_ms": r["p50_ms"]})
            except Exception as e:
                log(f"sweep routescore {p} len {L}: {e}")
        rng = np.random.default_rng(L)
        ids = rng.integers(1000, cfg["vocab_size"], size=(B, L)).astype("int64")
        enc = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        for name, fwd in ort_sessions:
            fwd(enc)  # warm-up
            lat = []
            for _ in range(args.sweep_iters):
                t0 = time.perf_counter()
                fwd(enc)
                lat.append(time.perf_counter() - t0)
            lat.sort()
            sec = sum(lat) / len(lat)
            rows.append({"len": L, "batch": B, "engine": name, "tokens_per_s": B * L / sec,
                         "gflops": flop / sec / 1e9, "p50_ms": 1e3 * lat[(len(lat) - 1) // 2]})
    return rows


# ------------------------------------------------------------------ peers

def batches(order, size):
    return [order[i:i + size] for i in range(0, len(order), size)]


def run_peer(name, forward, tok, prompts, order, args, np):
    """Warm-up pass then a timed pass; returns seconds (total and forward only)."""
    groups = batches(order, args.batch)

    def one_pass(keep):
        fwd = 0.0
        t0 = time.perf_counter()
        for g in groups:
            enc = tok([prompts[i] for i in g], padding="longest", truncation=True,
                      max_length=args.max_tokens, return_tensors="np")
            f0 = time.perf_counter()
            hidden = forward(enc)                              # (B, T, H) float32
            mask = enc["attention_mask"][:, :, None].astype(np.float32)
            emb = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            fwd += time.perf_counter() - f0
            if keep is not None:
                for k, i in enumerate(g):
                    keep[i] = emb[k]
        return time.perf_counter() - t0, fwd

    log(f"{name}: warm-up pass")
    one_pass(None)
    log(f"{name}: timed pass")
    keep = {}
    secs, fwd = one_pass(keep)
    return secs, fwd, keep


def setup_torch(args):
    import torch
    from transformers import BertModel
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    model = BertModel.from_pretrained(args.model, torch_dtype=torch.float32).eval()

    def forward(enc):
        with torch.no_grad():
            out = model(input_ids=torch.from_numpy(enc["input_ids"]),
                        attention_mask=torch.from_numpy(enc["attention_mask"]),
                        token_type_ids=torch.from_numpy(enc["token_type_ids"]))
        return out.last_hidden_state.numpy()
    return forward, model, torch.__version__


def export_onnx(args, model):
    import torch
    path = os.path.join(args.work, "minilm_fp32_opset14.onnx")
    if os.path.isfile(path) and not args.reexport:
        log(f"onnx: reusing {path}")
        return path
    log(f"onnx: exporting to {path}")
    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), path,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state", "pooler_output"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "last_hidden_state": axes, "pooler_output": {0: "batch"}},
            opset_version=14, do_constant_folding=True)
    return path


def setup_ort(args, onnx_path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]

    def forward(enc):
        feed = {n: enc[n].astype("int64") for n in names}
        return sess.run(["last_hidden_state"], feed)[0]
    return forward, ort.__version__


def quantize_int8(args, onnx_path):
    """onnxruntime's own int8 mode for transformers on the CPU: dynamic
    quantization (int8 weights per channel, activations quantized at run time,
    MatMulInteger / DynamicQuantizeMatMul kernels). onnxruntime's CPU provider
    has no bf16 GEMM mode on x86 (its bf16 fastmath option is arm64-only)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    path = os.path.join(args.work, "minilm_int8_dynamic.onnx")
    if not os.path.isfile(path) or args.reexport:
        log(f"onnx: quantizing to {path}")
        quantize_dynamic(onnx_path, path, weight_type=QuantType.QInt8, per_channel=True)
    return path


# ------------------------------------------------------------------ report

def lscpu_summary():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor() or "unknown CPU"
    info = {}
    for line in out.splitlines():
        k, _, v = line.partition(":")
        info[k.strip()] = v.strip()
    flags = info.get("Flags", "").split()
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return (f"{info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs "
            f"({info.get('Thread(s) per core', '?')} thread/core), {', '.join(simd)}"
            + (f", {info['Hypervisor vendor']} guest" if "Hypervisor vendor" in info else ""))


def torch_blas():
    """Debian's torch is built with BLAS_INFO=generic: its GEMMs go to libblas.so.3."""
    import torch
    cfg = torch.__config__.show()
    blas = next((w for w in cfg.replace(",", " ").split() if w.startswith("BLAS_INFO=")), "BLAS_INFO=?")
    lib = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    core = os.environ.get("OPENBLAS_CORETYPE")
    return (f"{blas}, libblas.so.3 -> {lib}" + (f", OPENBLAS_CORETYPE={core}" if core else "")
            + ("; MKL-DNN present" if "MKL-DNN" in cfg else ""))


def git_head():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        return "?"


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "routescore"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "cache", "all-minilm-l6-v2"))
    ap.add_argument("--n", type=int, default=2000, help="prompts (seeded sample)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--engines", default="routescore,onnxruntime,onnxruntime-int8,pytorch",
                    help="comma list of routescore, onnxruntime, pytorch")
    ap.add_argument("--work", default=os.path.join(ROOT, "benchmarks", "out"),
                    help="where the ONNX export is cached (git-ignored)")
    ap.add_argument("--reexport", action="store_true", help="export the ONNX model again")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per routescore call")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--precisions", default="fp32,bf16",
                    help="routescore precisions (bf16 runs as bf16-emulated without AVX-512 BF16)")
    ap.add_argument("--lengths", default="16,64,128,256,512",
                    help="fixed lengths for the throughput sweep ('' to skip)")
    ap.add_argument("--sweep-tokens", type=int, default=2048, help="tokens per call in the sweep")
    ap.add_argument("--sweep-iters", type=int, default=5)
    args = ap.parse_args()
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    set_thread_env(args.threads)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ("routescore", "onnxruntime", "onnxruntime-int8", "pytorch"):
            sys.exit(f"cpu_bench: unknown engine {e}")
    args.bin = os.path.abspath(args.bin)
    args.model = os.path.abspath(args.model)
    if not os.path.isfile(os.path.join(args.model, "model.safetensors")):
        sys.exit(f"cpu_bench: {args.model} has no model.safetensors (run models/fetch.sh)")
    os.makedirs(args.work, exist_ok=True)

    import numpy as np
    from transformers import AutoTokenizer
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    tok = AutoTokenizer.from_pretrained(args.model)
    prompts = sample_prompts(args.n, args.seed)
    lengths = [min(len(x), args.max_tokens) for x in
               tok(prompts, truncation=False, add_special_tokens=True)["input_ids"]]
    tokens = sum(lengths)
    gflop = minilm_flops(lengths, cfg) / 1e9
    log(f"workload: {len(prompts)} prompts, {tokens} tokens (max {args.max_tokens}), "
        f"{gflop:.1f} GFLOP of encoder work")

    load_before = os.getloadavg()[0]
    results = []     # dicts: engine, config, seconds, fwd_seconds, note
    rs_runs, peaks = {}, {}
    with tempfile.TemporaryDirectory(prefix="rs_cpu_bench_") as tmp:
        path = os.path.join(tmp, "prompts.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for k, p in enumerate(prompts):
                f.write(json.dumps({"id": k, "prompt": p}, ensure_ascii=False) + "\n")

        if "routescore" in engines:
            for prec in args.precisions:
                try:
                    r = bench_routescore(args, path, prec)
                    if r.get("tokens") not in (None, tokens):
                        log(f"WARNING: routescore counted {r['tokens']} tokens, HF {tokens}")
                    if r.get("prompts") not in (None, len(prompts)):
                        log(f"WARNING: routescore counted {r['prompts']} prompts, not {len(prompts)}")
                    rs_runs[prec] = r
                    results.append({"engine": f"routescore {rs_precision(prec)}", "config": "packed, no padding",
                                    "seconds": r["seconds"], "fwd_seconds": None, "precision": prec,
                                    "gflops_reported": r.get("gflops")})
                except Exception as e:
                    log(f"routescore {prec} failed: {e}")
                    results.append({"engine": f"routescore {prec}", "config": "failed", "error": str(e)})
            peaks = gemm_peaks(args)
        rs = rs_runs.get("fp32") or next(iter(rs_runs.values()), None)

        orders = {"input order": list(range(len(prompts))),
                  "sorted by length": sorted(range(len(prompts)), key=lambda i: lengths[i])}
        versions = {}
        torch_model, embs = None, {}
        ort_engines = [e for e in engines if e.startswith("onnxruntime")]
        if "pytorch" in engines or ort_engines:
            try:
                fwd_torch, torch_model, versions["torch"] = setup_torch(args)
            except Exception as e:
                log(f"pytorch setup failed: {e}")
                fwd_torch = None
            import transformers
            versions["transformers"] = transformers.__version__
        peers = []
        if ort_engines and torch_model is not None:
            try:
                onnx_path = export_onnx(args, torch_model)
                if "onnxruntime" in engines:
                    f, versions["onnxruntime"] = setup_ort(args, onnx_path)
                    peers.append(("onnxruntime", f))
                if "onnxruntime-int8" in engines:
                    f, versions["onnxruntime"] = setup_ort(args, quantize_int8(args, onnx_path))
                    peers.append(("onnxruntime int8 (dynamic)", f))
            except Exception as e:
                log(f"onnxruntime setup failed: {e}")
                results.append({"engine": "onnxruntime", "config": "failed", "error": str(e)})
        if "pytorch" in engines and fwd_torch is not None:
            peers.append(("pytorch", fwd_torch))
        for name, forward in peers:
            for oname, order in orders.items():
                cfgname = f"batch {args.batch}, {oname}"
                try:
                    secs, fwd, keep = run_peer(f"{name} ({cfgname})", forward, tok, prompts,
                                               order, args, np)
                    embs[(name, oname)] = keep
                    results.append({"engine": name, "config": cfgname, "seconds": secs,
                                    "fwd_seconds": fwd})
                except Exception as e:
                    log(f"{name} ({cfgname}) failed: {e}")
                    results.append({"engine": name, "config": cfgname + " (failed)", "error": str(e)})

        sweep = []
        if args.lengths and "routescore" in engines:
            sweep = length_sweep(args, [(n, f) for n, f in peers if n.startswith("onnxruntime")], cfg, np)

    # The peers must agree with each other, or their timings mean nothing.
    agree, agree_int8 = None, None
    fp32_keys = [k for k in embs if "int8" not in k[0]]
    int8_keys = [k for k in embs if "int8" in k[0]]
    if len(fp32_keys) >= 2:
        ref = embs[fp32_keys[0]]
        agree = min(float(np.dot(ref[i], e[i])) for k in fp32_keys[1:] for e in [embs[k]] for i in ref)
        log(f"peer embeddings agree: min cosine {agree:.7f}")
    if fp32_keys and int8_keys:
        ref = embs[fp32_keys[0]]
        agree_int8 = min(float(np.dot(ref[i], e[i])) for k in int8_keys for e in [embs[k]] for i in ref)
        log(f"onnxruntime int8 vs fp32 embeddings: min cosine {agree_int8:.5f}")

    rs_pps = len(prompts) / rs["seconds"] if rs else None
    peak32 = (peaks.get("fp32") or {}).get("gemm_gflops")
    peak16 = (peaks.get("bf16") or {}).get("gemm_gflops")
    for r in results:
        if "seconds" in r:
            r["prompts_per_s"] = len(prompts) / r["seconds"]
            r["tokens_per_s"] = tokens / r["seconds"]
            r["useful_gflops"] = gflop / r["seconds"]
            r["rs_speedup"] = rs_pps / r["prompts_per_s"] if rs_pps else None

    load_after = os.getloadavg()[0]
    date = datetime.date.today().isoformat()
    cmd = "/usr/bin/python3 benchmarks/cpu_bench.py " + " ".join(
        a if not a.startswith(ROOT) else os.path.relpath(a, ROOT) for a in sys.argv[1:])
    lines = [
        f"### CPU throughput, all-MiniLM-L6-v2, {date} (commit {git_head()})",
        "",
        f"- Machine: {lscpu_summary()}; {args.threads} threads for every engine.",
        f"- Workload: {len(prompts)} prompts sampled from `rsdata.all_prompts()` (seed {args.seed}), "
        f"truncated to {args.max_tokens} tokens: {tokens} real tokens, "
        f"mean {tokens / len(prompts):.1f}; {gflop:.1f} GFLOP of encoder work (no padding).",
        f"- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"- Command: `{cmd.strip()}`",
        f"- Load average (1 min) before/after: {load_before:.1f}/{load_after:.1f}"
        + (f" -- **the machine was busy (more than {args.threads} runnable threads): these "
           f"numbers understate every engine, compare only within this run.**"
           if max(load_before, load_after) > args.threads + 0.5 else "."),
        "",
        "| engine | configuration | prompts/s | tokens/s | useful GFLOP/s | routescore speed-up |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if "seconds" not in r:
            lines.append(f"| {r['engine']} | {r['config']}: {r.get('error', '')[:80]} | — | — | — | — |")
            continue
        lines.append(f"| {r['engine']} | {r['config']} | {r['prompts_per_s']:.1f} | "
                     f"{r['tokens_per_s']:.0f} | {r['useful_gflops']:.1f} | "
                     f"{fmt(r['rs_speedup'], '.2f')}x |")
    lines.append("")
    lines.append("Speed-up = routescore fp32's prompts/s over the row's (the first routescore row is 1.00x).")
    lines.append("")
    if peaks:
        pk = peaks.get("bf16") or {}
        lines.append(f"- GEMM peaks in this run (M=2048 N=1536 K=384, {args.threads} threads): dnnl_sgemm "
                     f"{fmt(peak32, '.1f')} GFLOP/s; oneDNN bf16 matmul {fmt(peak16, '.1f')} GFLOP/s "
                     f"({pk.get('impl', '?')}, native bf16: {pk.get('native_bf16', '?')}).")
    for prec, r in rs_runs.items():
        rep = r.get("gflops")
        pk = peak32 if prec == "fp32" else peak16
        lines.append(f"- routescore {rs_precision(prec)}: {fmt(rep, '.1f')} GFLOP/s = "
                     + (f"{100 * rep / pk:.0f}% of the {'fp32' if prec == 'fp32' else 'bf16'} GEMM peak"
                        if rep and pk else "—")
                     + (f"; tokenisation {r['tokenize_seconds']:.2f} s of {r['seconds']:.2f} s"
                        if r.get("tokenize_seconds") is not None else "") + ".")
    if sweep:
        lines += ["", f"Fixed lengths (random ids, about {args.sweep_tokens} tokens a call, no padding; "
                  "GFLOP/s as a share of the matching GEMM peak):", "",
                  "| length | batch | engine | tokens/s | GFLOP/s | % of peak | call p50 ms |",
                  "|---:|---:|---|---:|---:|---:|---:|"]
        for w in sweep:
            pk = peak16 if "bf16" in w["engine"] else peak32
            lines.append(f"| {w['len']} | {w['batch']} | {w['engine']} | {w['tokens_per_s']:.0f} | "
                         f"{w['gflops']:.1f} | {fmt(100 * w['gflops'] / pk if pk else None, '.0f')} | "
                         f"{w['p50_ms']:.1f} |")
        lines.append("")
    lines.append("- Peers: HF fast tokenizer + forward + masked mean pooling + L2 norm, batches "
                 f"of {args.batch} padded to their longest; forward-only share of their time: "
                 + ", ".join(f"{r['engine']} {r['config'].split(', ')[-1]} "
                             f"{100 * r['fwd_seconds'] / r['seconds']:.0f}%"
                             for r in results if r.get("fwd_seconds")) + ".")
    if "torch" in versions:
        lines.append(f"- PyTorch BLAS: {torch_blas()}.")
    if agree is not None:
        lines.append(f"- Peer embeddings agree with each other: min cosine {agree:.6f}.")
    if agree_int8 is not None:
        lines.append(f"- onnxruntime int8 (dynamic quantization) against fp32: min cosine {agree_int8:.5f}.")
    lines.append("- useful GFLOP/s = encoder FLOPs of the real tokens / wall time (padding "
                 "not counted), the same for every engine.")
    block = "\n".join(lines)
    print(block)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": date, "prompts": len(prompts), "tokens": tokens, "gflop": gflop,
                       "routescore": rs_runs, "gemm_peaks": peaks, "results": results, "sweep": sweep,
                       "versions": versions, "peer_min_cosine": agree}, f, indent=1)
    failed = [r for r in results if "error" in r]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
