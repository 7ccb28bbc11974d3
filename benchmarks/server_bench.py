#!/usr/bin/env python3
"""server_bench.py — load generator for `routescore serve`.

Measures, on one machine, with the same router and the same prompts:

  engine   `routescore bench` on the prompt file: the engine alone, batched,
           no RPC (the ceiling the server is compared with);
  server   `routescore serve` (dynamic batching) driven by an asyncio gRPC
           client: closed loop at saturation (N callers, each with one call
           in flight), then open loop (Poisson arrivals) at several offered
           loads given as fractions of the engine's rate; throughput, p50 and
           p99 latency as the client sees them, and refusals;
  baseline the RouteLLM way of serving: a Python gRPC server (grpcio, thread
           pool) that scores each call's prompts one at a time, one forward
           per prompt, one forward at a time. Two renderings:
           torch   (default when Debian's /usr/bin/python3 has torch and
                   transformers) the way RouteLLM serves: the router's HF
                   encoder in PyTorch fp32 (2 threads), mean pooling, L2
                   norm and the mf head in numpy. PyTorch runs in a worker
                   process under /usr/bin/python3 (the grpcio server runs
                   under this interpreter, which has no torch), fed over a
                   pipe (~0.1 ms a prompt). Its scores are checked against
                   `routescore serve`'s before timing.
           engine  the same C engine at batch 1: the Python server makes one
                   blocking call per prompt to a `routescore serve` started
                   with --max-batch-size 1 --max-queue-delay-us 0 (a stronger
                   baseline than RouteLLM's: the forward is routescore's).

Everything (load generator, servers, engine) shares this machine's cores,
which costs the server side some throughput; the figures are relative.

  python3 benchmarks/server_bench.py [--bin build-srv/routescore] [--model DIR]
        [--prompts FILE --field F] [--duration 8] [--loads 0.25,0.5,0.75,0.9,1.2]
        [--baseline torch|engine|both]

Prints a markdown block. Default prompts: GSM8K test questions from the
shared RouteLLM data (routing-sized prompts, ~57 tokens), else a built-in set.
"""
import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402


def load_prompts(path, field, limit):
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                v = rec.get(field) if field else rec.get("prompt") or rec.get("question")
                if isinstance(v, str) and v.strip():
                    out.append(v)
            if len(out) >= limit:
                break
    return out


def default_prompts(limit):
    shared = os.environ.get("RS_SHARED_DATA") or os.path.join(SRC, "..", "shared", "data")
    p = os.path.join(shared, "routellm", "gsm8k", "test.jsonl")
    if os.path.exists(p):
        return load_prompts(p, "question", limit), "GSM8K test questions"
    base = ["What is the capital of France?", "Write a haiku about the sea.",
            "Explain the difference between TCP and UDP in detail, with examples.",
            "Prove that the square root of two is irrational."]
    return [f"{base[i % 4]} (variant {i})" for i in range(limit)], "built-in prompts"


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    i = int(k)
    return xs[i] + (xs[min(i + 1, len(xs) - 1)] - xs[i]) * (k - i)


def summary(res, elapsed, per_call=1):
    """The figures of one loop (server_util.closed_loop / open_loop): prompts/s answered, p50 / p99 of the answered
    calls' latency, their count, and the other codes by name."""
    lat = [d for c, d in res if c == grpc.StatusCode.OK]
    errs = {}
    for c, _ in res:
        if c != grpc.StatusCode.OK:
            errs[c.name] = errs.get(c.name, 0) + 1
    return {"thr": len(lat) * per_call / elapsed, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "n": len(lat), "errs": errs}


async def closed_loop(addr, st, prompts, conc, duration, per_call=1):
    def request(i):  # call i: per_call prompts from i * per_call on
        return st.scorer.ScoreRequest(prompts=[prompts[(i * per_call + j) % len(prompts)] for j in range(per_call)])
    res, el = await su.closed_loop(addr, st, request, conc, duration)
    return summary(res, el, per_call)


async def open_loop(addr, st, prompts, rate, duration, seed=1):
    res, el = await su.open_loop(addr, st, lambda i: st.scorer.ScoreRequest(prompts=[prompts[i % len(prompts)]]),
                                 rate, duration, seed=seed)
    return dict(summary(res, el), offered=rate)


TORCH_PY = "/usr/bin/python3"  # Debian's interpreter: python3-torch and transformers live there


def baseline_server_main(port, backend, workers, torch_model, max_tokens):
    """The RouteLLM-style server: Python grpcio, one prompt per forward, one
    forward at a time (RouteLLM scores synchronously inside its server)."""
    import threading

    tmp = su.tmpdir()
    st = su.Stubs(tmp)
    lock = threading.Lock()
    if torch_model:
        worker = subprocess.Popen([TORCH_PY, os.path.join(HERE, "torch_mf_worker.py"), torch_model, str(max_tokens)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        if worker.stdout.readline().strip() != "ready":
            sys.exit("torch baseline worker failed to start")

        def score_one(p, router):
            with lock:
                worker.stdin.write(json.dumps(p) + "\n")
                worker.stdin.flush()
                return st.scorer.PromptScore(win_prob=float(worker.stdout.readline()))
    else:
        back = st.scorer_grpc.ScorerStub(grpc.insecure_channel(backend))

        def score_one(p, router):
            with lock:
                return back.Score(st.scorer.ScoreRequest(prompts=[p], router=router), timeout=60).scores[0]

    class Scorer(st.scorer_grpc.ScorerServicer):
        def Score(self, request, context):
            out = st.scorer.ScoreResponse(request_id=request.request_id, router=request.router)
            for p in request.prompts:  # one prompt at a time
                out.scores.append(score_one(p, request.router))
            return out

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    st.scorer_grpc.add_ScorerServicer_to_server(Scorer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    server.stop(2).wait()
    if torch_model:
        worker.stdin.close()
        worker.wait(timeout=30)


def torch_available():
    return os.path.exists(TORCH_PY) and subprocess.run(
        [TORCH_PY, "-c", "import torch, transformers, safetensors"], capture_output=True).returncode == 0


def run_baseline(kind, st, model, prompts, srv_scores, max_tokens, a):
    """Starts one baseline server, checks its scores, drives it; returns its figures."""
    back = None
    if kind == "engine":
        back = su.Server(["--model", model, "--max-batch-size", "1", "--max-queue-delay-us", "0"])
    port = su.free_port()
    cmd = [sys.executable, os.path.abspath(__file__), "--baseline-server", str(port)]
    cmd += ["--backend", back.addr] if back else ["--torch-model", model, "--max-tokens", str(max_tokens)]
    py = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        if py.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{kind} baseline server failed to start")
        addr = f"127.0.0.1:{port}"
        with grpc.insecure_channel(addr) as ch:
            got = st.scorer_grpc.ScorerStub(ch).Score(st.scorer.ScoreRequest(prompts=prompts[:64]), timeout=120)
        diff = max(abs(s.win_prob - r) for s, r in zip(got.scores, srv_scores))
        print(f"{kind} baseline: max |win_prob - routescore's| over 64 prompts = {diff:.2e}", file=sys.stderr)
        asyncio.run(closed_loop(addr, st, prompts, 4, 2.0))
        base = asyncio.run(closed_loop(addr, st, prompts, a.concurrency, a.duration, 1))
        print(f"{kind} one-per-call, saturated: {base}", file=sys.stderr)
        base_open = asyncio.run(open_loop(addr, st, prompts, 0.5 * base["thr"], a.duration))
        print(f"{kind} one-per-call, open loop 0.5 x its max: {base_open}", file=sys.stderr)
    finally:
        py.send_signal(signal.SIGTERM)
        py.wait(timeout=30)
        if back:
            back.stop()
    return {"kind": kind, "sat": base, "open": base_open, "diff": diff}


def fmt_ms(x):
    return f"{x * 1e3:.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompts", default=None)
    ap.add_argument("--field", default=None)
    ap.add_argument("--limit", type=int, default=512)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--loads", default="0.25,0.5,0.75,0.9,1.2")
    ap.add_argument("--baseline-server", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--baseline", choices=["torch", "engine", "both"], default=None,
                    help="the one-prompt-per-call server (default: torch where /usr/bin/python3 has it, else engine)")
    ap.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--torch-model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--max-tokens", type=int, default=256, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.baseline_server:
        baseline_server_main(a.baseline_server, a.backend, 16, a.torch_model, a.max_tokens)
        return
    kinds = {"torch": ["torch"], "engine": ["engine"], "both": ["torch", "engine"]}[
        a.baseline or ("torch" if torch_available() else "engine")]
    if a.bin:
        os.environ["RS_BIN"] = os.path.abspath(a.bin)
    binary = su.binary()
    tmp = su.tmpdir()
    model = a.model or su.router_dir(tmp)
    if a.prompts:
        prompts, src = load_prompts(a.prompts, a.field, a.limit), a.prompts
    else:
        prompts, src = default_prompts(a.limit)
    pfile = os.path.join(tmp, "prompts.jsonl")
    with open(pfile, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt": p}) + "\n")
    st = su.Stubs(tmp)
    nproc = os.cpu_count()

    load0 = os.getloadavg()[0]

    # 1. engine alone (again at the end: the machine may be shared)
    def engine_alone():
        out = subprocess.run([binary, "bench", "--model", model, "--in", pfile, "--repeat", "2"], capture_output=True,
                             text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    eng = engine_alone()
    eng_rate = eng["prompts_per_s"]
    print(f"engine alone: {eng_rate:.1f} prompts/s ({eng['tokens'] / eng['prompts']:.1f} tokens/prompt)", file=sys.stderr)

    # 2. the server
    srv = su.Server(["--model", model])
    try:
        asyncio.run(closed_loop(srv.addr, st, prompts, 8, 2.0))  # warm-up
        sat1 = asyncio.run(closed_loop(srv.addr, st, prompts, a.concurrency, a.duration, 1))
        print(f"server saturated, 1 prompt/call: {sat1}", file=sys.stderr)
        sat16 = asyncio.run(closed_loop(srv.addr, st, prompts, 8, a.duration, 16))
        print(f"server saturated, 16 prompts/call: {sat16}", file=sys.stderr)
        opens = []
        for f in [float(x) for x in a.loads.split(",")]:
            r = asyncio.run(open_loop(srv.addr, st, prompts, f * eng_rate, a.duration))
            r["frac"] = f
            opens.append(r)
            print(f"server open loop {f:.2f} x engine: {r}", file=sys.stderr)
        with grpc.insecure_channel(srv.addr) as ch:
            stub = st.scorer_grpc.ScorerStub(ch)
            srv_scores = [x.win_prob for x in stub.Score(st.scorer.ScoreRequest(prompts=prompts[:64]), timeout=120).scores]
            max_tokens = stub.ListRouters(st.scorer.ListRoutersRequest()).routers[0].max_tokens
        m = srv.metrics()
        bs = (su.metric_value(m, "routescore_batch_size_sum") or 0) / max(su.metric_value(m, "routescore_batch_size_count") or 1, 1)
    finally:
        srv.stop()

    # 3. the one-prompt-per-call Python server(s)
    bases = [run_baseline(k, st, model, prompts, srv_scores, max_tokens, a) for k in kinds]

    eng2 = engine_alone()
    print(f"engine alone, again: {eng2['prompts_per_s']:.1f} prompts/s", file=sys.stderr)
    eng_best = max(eng_rate, eng2["prompts_per_s"])
    load1 = os.getloadavg()[0]
    tokens = eng["tokens"] / eng["prompts"]
    print()
    print(f"### Server benchmark ({nproc} cores, CPU backend, router `{os.path.basename(model.rstrip('/'))}`, "
          f"{src}: {len(prompts)} prompts, {tokens:.0f} tokens each on average)")
    print()
    print("| setup | load | prompts/s | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---|")
    print(f"| engine alone (`routescore bench`, batched, no RPC) | before / after the server runs | "
          f"{eng_rate:.1f} / {eng2['prompts_per_s']:.1f} | – | – | – |")
    print(f"| `routescore serve`, 1 prompt/call | closed loop, {a.concurrency} callers | {sat1['thr']:.1f} | "
          f"{fmt_ms(sat1['p50'])} | {fmt_ms(sat1['p99'])} | {sat1['errs'] or '–'} |")
    print(f"| `routescore serve`, 16 prompts/call | closed loop, 8 callers | {sat16['thr']:.1f} | "
          f"{fmt_ms(sat16['p50'])} | {fmt_ms(sat16['p99'])} | {sat16['errs'] or '–'} |")
    for r in opens:
        print(f"| `routescore serve`, 1 prompt/call | open loop {r['offered']:.1f}/s ({r['frac']:.2f} × engine) | "
              f"{r['thr']:.1f} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | {r['errs'] or '–'} |")
    label = {"torch": "Python gRPC + PyTorch (RouteLLM's way), one prompt per forward",
             "engine": "Python gRPC → routescore at batch 1, one prompt per forward"}
    for b in bases:
        base, base_open = b["sat"], b["open"]
        print(f"| {label[b['kind']]} | closed loop, {a.concurrency} callers | {base['thr']:.1f} | "
              f"{fmt_ms(base['p50'])} | {fmt_ms(base['p99'])} | {base['errs'] or '–'} |")
        print(f"| {label[b['kind']]} | open loop {base_open['offered']:.1f}/s | {base_open['thr']:.1f} | "
              f"{fmt_ms(base_open['p50'])} | {fmt_ms(base_open['p99'])} | {base_open['errs'] or '–'} |")
    print()
    print(f"- server at saturation / engine alone (best of two): {sat1['thr'] / eng_best:.2f} (1 prompt/call), "
          f"{sat16['thr'] / eng_best:.2f} (16 prompts/call); goal ≥ 0.90")
    for b in bases:
        print(f"- server / one-per-call {b['kind']} baseline at saturation: {sat1['thr'] / b['sat']['thr']:.1f}× "
              f"(1 prompt/call), {sat16['thr'] / b['sat']['thr']:.1f}× (16 prompts/call); goal ≥ 5×; "
              f"its scores differ from routescore's by ≤ {b['diff']:.1e}")
    print(f"- mean batch during the server runs: {bs:.1f} prompts per forward")
    print(f"- 1-minute load average before / after: {load0:.2f} / {load1:.2f} on {nproc} cores "
          f"(above {nproc} means other work shared the cores)")


if __name__ == "__main__":
    main()
