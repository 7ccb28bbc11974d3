#!/usr/bin/python3
"""causal_bench — the causal_llm router on the CPU: routescore against RouteLLM's way
(HF transformers `generate`), same prompts, same weights, same answers.

The router: SmolLM2-135M-Instruct's fp32 weights (models/cache/smollm2-135m, from
models/fetch_smollm2_model.sh) with RouteLLM's 5 rating tokens (and the 4 Llama 3
header specials of its prompt template) added to the vocabulary: new embedding /
tied LM-head rows, seeded. Built with tests/lib/causal_ref.py, the code that builds the
tiny test router, into the git-ignored models/cache/causal-smollm2-SCENARIO/ (reused
while its parameters match). Two scenarios:
  unrated  the new rows keep their random init: the rating never wins the argmax, so
           every prompt decodes all 6 steps (or to end-of-sequence) on every side:
           RouteLLM's worst case and the same work on both sides;
  rated    the rating rows are set so that every sample prompt's first generated
           token is a rating (what a fine-tuned router does): routescore stops there,
           RouteLLM's `generate` goes on to 6 tokens (or end-of-sequence); a third HF
           row stops at the rating too (same steps as routescore).

Per scenario, on a fixed seeded sample of benchmark prompts (~100 tokens each):
  routescore  `BIN label` (the win probabilities), `BIN bench --repeat R` (all prompts
              in one call: the engine's batching) and `BIN bench --batch 1` (one prompt
              per call: latency), threads 2;
  hf          RouteLLM's scorer (docs/ROUTERS.md: greedy generate, max_new_tokens 6,
              output_scores) one prompt at a time, fp32, torch.set_num_threads(2);
  hf-batch-B  the same with left-padded batches of B prompts.
Each way is warmed up first. Every way's win_prob is compared with routescore's
(goal: within 1e-4), so the speeds compare equal answers. FLOPs: "work" is what each
way computes (HF recomputes the system prefix per prompt and runs the LM head on
every input position); "useful" is the same formula for every way (routescore's
work), so redundant work shows up as lost throughput. routescore's prefill rate is
also given as a fraction of `BIN bench --gemm-peak`.

The SmolLM2 tokenizer.json needs tokenizers >= 0.20 (Debian's is 0.19): tokenizing
runs in a child process under --tok-python (default: python3 on PATH).

Run with Debian's interpreter (torch 1.13 + transformers 4.40):
    /usr/bin/python3 benchmarks/causal_bench.py --bin build/routescore
It prints a table and a markdown block for benchmarks/RESULTS.md.
"""
import argparse
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import causal_ref  # noqa: E402
import rsdata  # noqa: E402

BUILD_VERSION = 1  # bump when the router construction changes


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ tokenizer child

def tokenize_child():
    """Runs under --tok-python. stdin: {base, routers, candidates, lo, hi, n, system,
    classifier}; picks the first n candidates whose own token count is in [lo, hi],
    writes the router tokenizer into each router dir, and returns the picks' ids."""
    from tokenizers import Tokenizer
    req = json.load(sys.stdin)
    tok = Tokenizer.from_file(os.path.join(req["base"], "tokenizer.json"))
    picks = []
    for i, q in enumerate(req["candidates"]):
        if req["lo"] <= len(tok.encode(q, add_special_tokens=False).ids) <= req["hi"]:
            picks.append(i)
            if len(picks) == req["n"]:
                break
    orig_vocab = causal_ref.add_router_tokens(tok)
    for r in req["routers"]:
        os.makedirs(r, exist_ok=True)
        tok.save(os.path.join(r, "tokenizer.json"))
    ids = [tok.encode(causal_ref.prompt_text(req["system"], req["classifier"], req["candidates"][i]),
                      add_special_tokens=False).ids for i in picks]
    prefix = tok.encode(causal_ref.prompt_text(req["system"], "", "").split("<|start_header_id|>user")[0],
                        add_special_tokens=False).ids
    json.dump({"picks": picks, "ids": ids, "orig_vocab": orig_vocab, "vocab": tok.get_vocab_size(),
               "eot": tok.token_to_id("<|eot_id|>"), "n_prefix": len(prefix)}, sys.stdout)


# ------------------------------------------------------------------ workload

def sample_and_tokenize(args, routers):
    if rsdata.data_dir() is None:
        sys.exit("causal_bench: ../shared/data/routellm not found (set RS_SHARED_DATA)")
    system, classifier = causal_ref.read_prompt_files(args.prompt_dir)
    cands = rsdata.all_prompts()
    random.Random(args.seed).shuffle(cands)
    req = {"base": args.base, "routers": routers, "candidates": cands[:4000], "lo": args.min_tokens,
           "hi": args.max_tokens, "n": args.n, "system": system, "classifier": classifier}
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tests", "lib"))
    p = subprocess.run([args.tok_python, os.path.abspath(__file__), "--tokenize-child"], input=json.dumps(req),
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"causal_bench: tokenizer child ({args.tok_python}) failed: {p.stderr[-800:]}")
    res = json.loads(p.stdout)
    if len(res["picks"]) < args.n:
        sys.exit(f"causal_bench: only {len(res['picks'])} prompts of {args.min_tokens}..{args.max_tokens} tokens")
    res["prompts"] = [cands[i] for i in res["picks"]]
    return res


def llama_flops(cfg, n_tokens, ctx_sum, n_rows):
    """FLOPs (2 per multiply-add) of n_tokens through the decoder, attending to ctx_sum
    positions in all, plus n_rows rows of the LM head."""
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    qw = cfg["num_attention_heads"] * (h // cfg["num_attention_heads"])
    kw = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])
    dense = 2 * (2 * h * qw + 2 * h * kw + 3 * h * i)
    return layers * (n_tokens * dense + 4 * qw * ctx_sum) + 2 * h * cfg["vocab_size"] * n_rows


def steps_until_decided(gen, orig_vocab, eos, max_new=6):
    """Tokens a scorer that stops at the rating generates (routescore's decode)."""
    for k, x in enumerate(gen[:max_new]):
        if x >= orig_vocab or x in eos:
            return k + 1
    return max_new


def work_flops(cfg, n_prefix, ids, steps, recompute_prefix):
    """One prompt's FLOPs: prefill (own tokens after a reused prefix, or the whole input
    with logits on every position as transformers 4.40 computes them) + steps-1 decodes."""
    L = len(ids)
    if recompute_prefix:
        f = llama_flops(cfg, L, L * (L + 1) / 2, L)
    else:
        own = L - n_prefix
        f = llama_flops(cfg, own, own * n_prefix + own * (own + 1) / 2, 1)
    for k in range(1, steps):
        f += llama_flops(cfg, 1, L + k, 1)
    return f


# ------------------------------------------------------------------ router dirs

def build_router(args, router, scenario, tk, sample_ids):
    import torch
    from transformers import LlamaForCausalLM
    stamp = {"version": BUILD_VERSION, "scenario": scenario, "seed": args.seed, "vocab": tk["vocab"],
             "base": os.path.abspath(args.base), "base_size": os.path.getsize(os.path.join(args.base, "model.safetensors")),
             "sample": sample_ids if scenario == "rated" else None}
    stamp_path = os.path.join(router, ".bench-stamp")
    if os.path.exists(stamp_path) and os.path.exists(os.path.join(router, "model.safetensors")):
        with open(stamp_path) as f:
            if json.load(f) == stamp:
                log(f"{router}: up to date")
                return
    log(f"{router}: building ({scenario})")
    model = LlamaForCausalLM.from_pretrained(args.base, torch_dtype=torch.float32).eval()
    torch.manual_seed(args.seed)
    model.resize_token_embeddings(tk["vocab"])  # new rows: normal(0, initializer_range)
    ov = tk["orig_vocab"]
    if scenario == "rated":
        # Rating rows r_i = a*u + s*n_i: u the mean direction of the sample's last
        # hidden states (after the final norm), n_i seeded noise scaled so that the
        # 5 rating logits differ by ~1 (a spread of win probabilities), a large
        # enough that a rating is every sample prompt's greedy first token.
        with torch.no_grad():
            hs, mx = [], []
            for ids in sample_ids:
                o = model(torch.tensor([ids]), output_hidden_states=True)
                hs.append(o.hidden_states[-1][0, -1])
                mx.append(float(o.logits[0, -1, :ov].max()))
            H = torch.stack(hs)
            u = H.mean(0)
            u = u / u.norm()
            g = torch.Generator().manual_seed(args.seed + 1)
            noise = torch.randn(5, H.shape[1], generator=g) / float(H.norm(dim=1).mean())
            proj, nz = H @ u, H @ noise.T  # (P), (P, 5)
            assert bool((proj > 0).all()), "sample hidden states do not share a direction"
            a = max(float((mx[p] + 2.0 - nz[p].min()) / proj[p]) for p in range(len(sample_ids)))
            W = model.get_input_embeddings().weight
            W[ov:ov + 5] = a * u + noise
    model.save_pretrained(router, safe_serialization=True)  # tokenizer.json: the child wrote it
    for f in os.listdir(router):
        if f not in ("config.json", "model.safetensors", "tokenizer.json"):
            os.remove(os.path.join(router, f))
    causal_ref.write_router_files(router, args.prompt_dir, {
        "name": f"causal-smollm2-{scenario}", "kind": "causal_llm", "threshold": 0.5,
        "strong_model": "gpt-4-1106-preview", "weak_model": "mixtral-8x7b-instruct-v0.1"})
    with open(stamp_path, "w") as f:
        json.dump(stamp, f)


# ------------------------------------------------------------------ routescore

def run(cmd, timeout):
    log("+ " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-800:]}")
    return p.stdout


def last_json(out):
    return json.loads([x for x in out.strip().splitlines() if x.startswith("{")][-1])


def bench_routescore(args, router, prompts_path, tmp):
    t = str(args.threads)
    out_path = os.path.join(tmp, f"labels-{os.path.basename(router)}.jsonl")
    t0 = time.perf_counter()
    run([args.bin, "label", "--model", router, "--in", prompts_path, "--out", out_path, "--threads", t], args.timeout)
    label_s = time.perf_counter() - t0
    with open(out_path) as f:
        recs = [json.loads(x) for x in f if x.strip()]
    batch = last_json(run([args.bin, "bench", "--model", router, "--in", prompts_path, "--threads", t,
                           "--repeat", str(args.repeat)], args.timeout))
    one = last_json(run([args.bin, "bench", "--model", router, "--in", prompts_path, "--threads", t,
                         "--batch", "1"], args.timeout))
    return recs, label_s, batch, one


# ------------------------------------------------------------------ HF

class StopAtRating:
    """A generate stopping criterion: a sequence is done once it produced a rating."""

    def __init__(self, orig_vocab, start):
        self.orig_vocab, self.start = orig_vocab, start

    def __call__(self, input_ids, scores, **kw):
        return (input_ids[:, self.start:] >= self.orig_vocab).any(dim=1)


def bench_hf(args, model, ids, tk, mode, batch=1):
    """Warm-up call, then a timed pass: (seconds, per-call latencies, [(p, gen, sm)])."""
    from transformers import StoppingCriteriaList
    ov, pad = tk["orig_vocab"], tk["eot"]

    def call(group):
        if mode == "stop":
            crit = StoppingCriteriaList([StopAtRating(ov, len(group[0]))])
            return [causal_ref.route(model, group[0], ov, pad, stopping_criteria=crit)]
        if batch == 1:
            return [causal_ref.route(model, group[0], ov, pad)]
        return causal_ref.route_batch(model, group, ov, pad)

    groups = [ids[i:i + batch] for i in range(0, len(ids), batch)]
    call(groups[0])  # warm-up
    lat, res = [], []
    t0 = time.perf_counter()
    for g in groups:
        c0 = time.perf_counter()
        res += call(g)
        lat.append(time.perf_counter() - c0)
    return time.perf_counter() - t0, lat, res


# ------------------------------------------------------------------ report

def lscpu_summary():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next((x.split(":", 1)[1].strip() for x in out.splitlines() if x.startswith("Model name")), "?")
        return f"{name}, {os.cpu_count()} cores"
    except OSError:
        return f"{os.cpu_count()} cores"


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "routescore"))
    ap.add_argument("--base", default=os.path.join(ROOT, "models", "cache", "smollm2-135m"))
    ap.add_argument("--cache", default=os.path.join(ROOT, "models", "cache"), help="where the router dirs go")
    ap.add_argument("--prompt-dir", default=causal_ref.default_prompt_dir())
    ap.add_argument("--tok-python", default="python3")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--min-tokens", type=int, default=80, help="prompt's own tokens, before the template")
    ap.add_argument("--max-tokens", type=int, default=120)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="8,16", help="HF batch sizes")
    ap.add_argument("--repeat", type=int, default=3, help="routescore timed passes (best kept)")
    ap.add_argument("--scenarios", default="unrated,rated")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch
    import transformers
    from transformers import LlamaForCausalLM
    transformers.logging.set_verbosity_error()  # "right-padding detected": the prompts end with the pad id
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    scenarios = args.scenarios.split(",")
    routers = {s: os.path.join(args.cache, f"causal-smollm2-{s}") for s in scenarios}
    load_before = os.getloadavg()
    tk = sample_and_tokenize(args, list(routers.values()))
    ids = tk["ids"]
    own = [len(x) - tk["n_prefix"] for x in ids]
    log(f"{len(ids)} prompts, own tokens mean {statistics.mean(own):.1f} (min {min(own)}, max {max(own)}), "
        f"shared prefix {tk['n_prefix']}, model input mean {statistics.mean(map(len, ids)):.1f}")
    with open(os.path.join(args.base, "config.json")) as f:
        cfg = json.load(f)
    cfg["vocab_size"] = tk["vocab"]
    eos = {cfg["eos_token_id"]} if isinstance(cfg["eos_token_id"], int) else set(cfg["eos_token_id"])
    peak = last_json(run([args.bin, "bench", "--gemm-peak", "--threads", str(args.threads)], 300))["gemm_gflops"]

    tmp = tempfile.mkdtemp(prefix="causal_bench.")
    prompts_path = os.path.join(tmp, "prompts.jsonl")
    with open(prompts_path, "w", encoding="utf-8") as f:
        for i, q in enumerate(tk["prompts"]):
            f.write(json.dumps({"id": f"p{i}", "prompt": q}, ensure_ascii=False) + "\n")

    results, failed = {}, False
    for sc in scenarios:
        build_router(args, routers[sc], sc, tk, ids)
        rows = []
        recs, label_s, rs_batch, rs_one = bench_routescore(args, routers[sc], prompts_path, tmp)
        model = LlamaForCausalLM.from_pretrained(routers[sc], torch_dtype=torch.float32).eval()
        ways = [("hf", "routellm", 1)]
        if sc == "rated":
            ways.append(("hf-stop", "stop", 1))
        ways += [(f"hf-batch-{b}", "routellm", int(b)) for b in args.batches.split(",") if b]
        hf = {}
        for name, mode, b in ways:
            hf[name] = bench_hf(args, model, ids, tk, mode, b)
            log(f"{sc}: {name}: {hf[name][0]:.1f} s")
        del model
        ref = hf["hf"][2]
        steps = [steps_until_decided(g, tk["orig_vocab"], eos) for _, g, _ in ref]
        useful = sum(work_flops(cfg, tk["n_prefix"], x, s, False) for x, s in zip(ids, steps))
        prefill = sum(work_flops(cfg, tk["n_prefix"], x, 1, False) for x in ids)
        n = len(ids)
        bad_tokens = sum(r.get("tokens") != len(x) for r, x in zip(recs, ids))
        rs_wp = [r.get("win_prob", float("nan")) for r in recs]

        def row(way, secs, lat, calls, work, res=None):
            d = {"way": way, "seconds": secs, "prompts_per_s": n / secs, "ms_per_prompt": 1e3 * secs / n,
                 "p50_ms": 1e3 * pct(lat, 0.5) if lat else None, "p99_ms": 1e3 * pct(lat, 0.99) if lat else None,
                 "call_size": calls, "work_gflops": work / secs / 1e9, "useful_gflops": useful / secs / 1e9}
            if res is not None:
                d["max_abs_diff"] = max(abs(a - p) for a, (p, _, _) in zip(rs_wp, res))
                d["gen_tokens_mean"] = statistics.mean(len(g) for _, g, _ in res)
            return d

        rows.append(row("routescore, all prompts in one call", rs_batch["seconds"], None, n, useful))
        rows.append(row("routescore, one prompt per call", rs_one["seconds"],
                        [rs_one["p50_ms"] / 1e3, rs_one["p99_ms"] / 1e3], 1, useful))
        rows[-1]["p50_ms"], rows[-1]["p99_ms"] = rs_one["p50_ms"], rs_one["p99_ms"]
        for name, mode, b in ways:
            secs, lat, res = hf[name]
            # A batch computes every row at its longest input's width (left padding)
            # for as many steps as its longest generation.
            work = 0
            for i in range(0, n, b):
                width = max(len(x) for x in ids[i:i + b])
                work += sum(work_flops(cfg, tk["n_prefix"], [0] * width, len(g), True) for _, g, _ in res[i:i + b])
            label = {"hf": "HF generate, one prompt per call (RouteLLM)",
                     "hf-stop": "HF generate, one per call, stop at the rating"}.get(name, f"HF generate, batch {b}, left-padded")
            rows.append(row(label, secs, lat, b, work, res))
        rated = sum(p is not None for _, _, p in ref)
        max_diff = max(r["max_abs_diff"] for r in rows if "max_abs_diff" in r)
        ok = max_diff <= 1e-4 and bad_tokens == 0 and all(r.get("win_prob") is not None for r in recs)
        failed |= not ok
        results[sc] = {"rows": rows, "rated": rated, "steps_mean": statistics.mean(steps), "max_abs_diff": max_diff,
                       "token_mismatches": bad_tokens, "agree": ok, "label_seconds": label_s,
                       "prefill_gflop": prefill / 1e9, "useful_gflop": useful / 1e9,
                       "rs_batch": rs_batch, "rs_one": rs_one}
        log(f"{sc}: {rated}/{n} rated; routescore decode steps mean {statistics.mean(steps):.2f}; "
            f"max |win_prob diff| {max_diff:.2e}; token count mismatches {bad_tokens}")
    shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()

    # ---------------------------------------------------------------- print
    date = datetime.date.today().isoformat()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    cmd = "/usr/bin/python3 benchmarks/causal_bench.py " + " ".join(sys.argv[1:])
    lines = [f"{date}, commit {commit}. {lscpu_summary()}; {args.threads} threads for every way. "
             f"Load average {load_before[0]:.1f} before / {load_after[0]:.1f} after.", "",
             f"Command: `{cmd.strip()}`", "",
             f"Workload: {len(ids)} benchmark prompts (seed {args.seed}, {args.min_tokens}..{args.max_tokens} own "
             f"tokens, mean {statistics.mean(own):.1f}); model input mean {statistics.mean(map(len, ids)):.1f} "
             f"tokens of which {tk['n_prefix']} are the shared system prefix. SmolLM2-135M fp32 "
             f"+ 5 rating tokens (vocab {tk['vocab']}). sgemm peak (`bench --gemm-peak`): {peak:.1f} GFLOP/s.", ""]
    for sc in scenarios:
        r = results[sc]
        lines += [f"**{sc}** ({r['rated']}/{len(ids)} prompts rated; routescore decodes "
                  f"{r['steps_mean']:.2f} tokens a prompt; max |win_prob − routescore| {r['max_abs_diff']:.1e}"
                  f"{'' if r['agree'] else ' — DISAGREE'})", "",
                  "| way | prompts/s | ms/prompt | call p50 ms | call p99 ms | generated tokens | work GFLOP/s "
                  "| useful GFLOP/s | routescore speed-up |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        base = r["rows"][0]["prompts_per_s"]
        for w in r["rows"]:
            f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
            lines.append(f"| {w['way']} | {w['prompts_per_s']:.2f} | {w['ms_per_prompt']:.0f} | "
                         f"{f(w['p50_ms'], '.0f')} | {f(w['p99_ms'], '.0f')} | "
                         f"{f(w.get('gen_tokens_mean'), '.2f')} | {w['work_gflops']:.1f} | "
                         f"{w['useful_gflops']:.1f} | {base / w['prompts_per_s']:.2f}x |")
        lines.append("")
    if "rated" in results:
        r = results["rated"]
        rate = r["prefill_gflop"] / r["rows"][0]["seconds"]
        lines.append(f"routescore prefill (rated scenario, batched: prefill + one logit row a prompt): "
                     f"{rate:.1f} GFLOP/s = {100 * rate / peak:.0f}% of the sgemm peak.")
    block = "\n".join(lines)
    print(block)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak_gflops": peak, "load": [load_before, load_after], "n_prefix": tk["n_prefix"],
                       "own_tokens": own, "results": results}, f, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    if sys.argv[1:] == ["--tokenize-child"]:
        tokenize_child()
    else:
        main()
