#!/usr/bin/env python3
"""tokenizer_bench — tokens/s of routescore's tokenizers against HF `tokenizers`
(and `tiktoken` for the Llama 3 rank file), single-threaded, on the same prompts
(every RouteLLM prompt, tests/lib/rsdata.py all_prompts()) in one run.

Times are CPU seconds of the process (the machines are shared, wall time is
noisy). routescore is timed by `routescore tokenize --bench N` (texts loaded
first, only the encode calls timed, one thread). HF runs encode_batch with RAYON_NUM_THREADS=1
and encode_batch_fast (no offsets) when the version has it: its fastest
single-threaded path, no per-call Python overhead; tiktoken runs
encode_batch with num_threads=1. Each side encodes the prompts PASSES times; the
best pass is reported. Prints a markdown block for benchmarks/RESULTS.md.

usage: python3 benchmarks/tokenizer_bench.py [--bin build/routescore] [--passes 3]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fidelity"))
import rsdata  # noqa: E402
import tokenizer_families as fam  # noqa: E402

CACHE = os.environ.get("RS_MODEL_CACHE") or os.path.join(ROOT, "models", "cache")
TOKENIZERS = [
    # name, path, kind, add_special
    ("MiniLM WordPiece", os.path.join(CACHE, "all-minilm-l6-v2", "tokenizer.json"), "hf", True),
    ("XLM-R-style Unigram", os.path.join(ROOT, "tests", "data", "tokenizer", "xlmr_unigram", "tokenizer.json"), "hf", True),
    ("SmolLM2 byte-level BPE", os.path.join(CACHE, "smollm2", "tokenizer.json"), "hf", True),
    ("Llama 3 tiktoken", os.path.join(CACHE, "llama3", "tokenizer.model"), "tiktoken", False),
]


def hf_batch(tok):
    return getattr(tok, "encode_batch_fast", tok.encode_batch)


def bench_rs(binary, path, jsonl, add_special, passes):
    best = None
    for _ in range(passes):
        cmd = [binary, "tokenize", "--tokenizer", path, "--in", jsonl, "--bench", "1"]
        if add_special:
            cmd.append("--add-special")
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        if best is None or r["cpu_seconds"] < best["cpu_seconds"]:
            best = r
    return best["tokens"], best["cpu_seconds"]


def best_of(fn, passes):
    best, n = None, 0
    for _ in range(passes):
        t0 = time.process_time()
        n = fn()
        dt = time.process_time() - t0
        best = dt if best is None else min(best, dt)
    return n, best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "routescore"))
    ap.add_argument("--passes", type=int, default=3)
    a = ap.parse_args()
    rsdata.skip_if_absent()
    prompts = rsdata.all_prompts()
    nbytes = sum(len(p.encode()) for p in prompts)
    import tokenizers
    rows = []
    with tempfile.TemporaryDirectory() as d:
        jsonl = os.path.join(d, "prompts.jsonl")
        with open(jsonl, "w", encoding="utf-8") as f:
            for p in prompts:
                f.write(json.dumps({"prompt": p}, ensure_ascii=False) + "\n")
        for name, path, kind, add_special in TOKENIZERS:
            if not os.path.isfile(path):
                print("skipping %s: %s not found" % (name, path), file=sys.stderr)
                continue
            n_rs, t_rs = bench_rs(a.bin, path, jsonl, add_special, a.passes)
            if kind == "hf":
                tok = tokenizers.Tokenizer.from_file(path)
                tok.no_truncation()
                tok.no_padding()
                n_hf, t_hf = best_of(lambda: sum(len(e.ids) for e in hf_batch(tok)(prompts, add_special_tokens=add_special)),
                                     a.passes)
                if n_hf != n_rs:
                    print("WARNING %s: %d tokens from routescore, %d from HF" % (name, n_rs, n_hf), file=sys.stderr)
                rows.append((name, n_rs, n_rs / t_rs, n_hf / t_hf, None))
            else:
                tt = fam.Tiktoken(path)
                import tiktoken  # noqa: F401
                n_tt, t_tt = best_of(lambda: sum(len(x) for x in tt.encode(prompts)), a.passes)
                # HF on the same ranks: its Llama 3 tokenizer.json form (Split + ByteLevel BPE)
                n_hf = t_hf = None
                try:
                    hf = fam.llama3_hf(tt)
                    n_hf, t_hf = best_of(lambda: sum(len(e.ids) for e in hf_batch(hf)(prompts, add_special_tokens=False)),
                                         a.passes)
                except Exception as e:  # noqa: BLE001
                    print("HF form of Llama 3 unavailable: %s" % e, file=sys.stderr)
                for who, k in (("tiktoken", n_tt), ("HF form", n_hf)):
                    if k is not None and k != n_rs:
                        print("WARNING %s: %d tokens from routescore, %d from %s" % (name, n_rs, k, who), file=sys.stderr)
                rows.append((name, n_rs, n_rs / t_rs, n_hf / t_hf if t_hf else None, n_tt / t_tt))
    import tiktoken
    print("### Tokenizer throughput (single thread)\n")
    print("%d RouteLLM prompts (%.1f MB); best of %d passes, CPU time; %s, %s; tokenizers %s, tiktoken %s. "
          "Llama 3's HF column is its tokenizer.json form (Split + ByteLevel BPE) built from the same ranks.\n"
          % (len(prompts), nbytes / 1e6, a.passes, platform.machine(), platform.processor() or "cpu",
             tokenizers.__version__, tiktoken.__version__))
    print("| tokenizer | tokens | routescore tok/s | HF tokenizers tok/s | vs HF | tiktoken tok/s | vs tiktoken |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, rs, hf, tt in rows:
        print("| %s | %d | %.2fM | %s | %s | %s | %s |" % (
            name, n, rs / 1e6, "%.2fM" % (hf / 1e6) if hf else "-", "%.2fx" % (rs / hf) if hf else "-",
            "%.2fM" % (tt / 1e6) if tt else "-", "%.2fx" % (rs / tt) if tt else "-"))
    print("\nCommand: `python3 benchmarks/tokenizer_bench.py --bin %s --passes %d`" % (os.path.relpath(a.bin, ROOT), a.passes))


if __name__ == "__main__":
    main()
