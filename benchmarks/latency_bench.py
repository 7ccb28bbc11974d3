#!/usr/bin/env python3
"""latency_bench — p50/p99 of one short prompt: the engine (`routescore bench
--batch 1`, i.e. what `routescore score` runs per call: tokenize, forward,
pool, head) and `routescore serve` (one caller, one prompt per unary Score
call), idle and beside load.

- engine, idle: `bench --in short.jsonl --batch 1 --repeat R --threads T`;
- engine, beside load: the same while another `routescore bench` (batched,
  T threads) keeps the cores busy;
- server, idle: one synchronous gRPC caller, one prompt a call, at the
  default max_queue_delay_us (2000) and at 0;
- server, beside load: the same caller while an open-loop Poisson stream of
  other callers sends benchmark prompts at --load x the engine's batched rate.

Server overhead = server p50 - engine p50 on the same prompts. Prints a
markdown block for benchmarks/RESULTS.md. Needs grpcio (tests/requirements-ci.txt).

    python3 benchmarks/latency_bench.py --bin build/routescore
"""
import argparse
import asyncio
import datetime
import json
import os
import random
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import rsdata  # noqa: E402
import server_util as su  # noqa: E402
import grpc  # noqa: E402
from server_bench import open_loop, pct  # noqa: E402

SHORT = ["What is the capital of Australia?", "hi! how are you today?", "Translate 'good morning' into French.",
         "Is 97 a prime number?", "Name three primary colours.", "What does HTTP stand for?",
         "Give me a synonym for happy.", "How many legs does a spider have?"]


def engine_latency(binary, model, path, repeat, threads, precision, env=None):
    out = subprocess.run([binary, "bench", "--model", model, "--in", path, "--batch", "1", "--repeat", str(repeat),
                          "--threads", str(threads), "--precision", precision],
                         capture_output=True, text=True, check=True, env=env).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {"p50": r["p50_ms"], "p99": r["p99_ms"], "n": r["calls"] * repeat, "tokens": r["tokens"] / r["prompts"]}


def server_probe(st, addr, prompts, n):
    lat = []
    with grpc.insecure_channel(addr) as ch:
        stub = st.scorer_grpc.ScorerStub(ch)
        for i in range(8):  # warm-up
            stub.Score(st.scorer.ScoreRequest(prompts=[prompts[i % len(prompts)]]), timeout=30)
        for i in range(n):
            t = time.perf_counter()
            stub.Score(st.scorer.ScoreRequest(prompts=[prompts[i % len(prompts)]]), timeout=30)
            lat.append(1e3 * (time.perf_counter() - t))
    return {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "n": len(lat)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "routescore"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "routers", "minilm-mf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=40, help="passes over the short prompts (engine)")
    ap.add_argument("--calls", type=int, default=300, help="probe calls per server measurement")
    ap.add_argument("--load", type=float, default=0.5, help="background rate, x the engine's batched rate")
    ap.add_argument("--precision", default="fp32")
    a = ap.parse_args()
    os.environ["RS_BIN"] = os.path.abspath(a.bin)
    binary = su.binary()
    tmp = su.tmpdir()
    spath = os.path.join(tmp, "short.jsonl")
    with open(spath, "w") as f:
        for k, p in enumerate(SHORT):
            f.write(json.dumps({"id": k, "prompt": p}) + "\n")
    bg_prompts = random.Random(7).sample(rsdata.all_prompts(), 512) if rsdata.data_dir() else SHORT * 64
    bpath = os.path.join(tmp, "bg.jsonl")
    with open(bpath, "w") as f:
        for k, p in enumerate(bg_prompts):
            f.write(json.dumps({"id": k, "prompt": p}) + "\n")
    load0 = os.getloadavg()[0]
    rows = []

    eng = engine_latency(binary, a.model, spath, a.repeat, a.threads, a.precision)
    rows.append(("engine (`bench --batch 1`, = `score` per call)", "idle", eng))
    # libgomp's default spin-wait: on a shared machine a spinning worker holds
    # a core another process wants, and each of a forward's barriers can wait
    # a scheduler slice; passive sleeps at once.
    passive = dict(os.environ, OMP_WAIT_POLICY="passive")
    engp = engine_latency(binary, a.model, spath, a.repeat, a.threads, a.precision, passive)
    rows.append(("engine, OMP_WAIT_POLICY=passive", "idle", engp))
    hog = subprocess.Popen([binary, "bench", "--model", a.model, "--in", bpath, "--repeat", "1000",
                            "--threads", str(a.threads)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        rows.append(("engine (`bench --batch 1`)", f"beside a batched `bench` on {a.threads} threads",
                     engine_latency(binary, a.model, spath, max(4, a.repeat // 4), a.threads, a.precision)))
    finally:
        hog.kill()
        hog.wait()
    batched = json.loads(subprocess.run([binary, "bench", "--model", a.model, "--in", bpath, "--threads",
                                         str(a.threads)], capture_output=True, text=True,
                                        check=True).stdout.strip().splitlines()[-1])["prompts_per_s"]

    st = su.Stubs(tmp)
    for delay in (None, 0):
        args = ["--model", a.model, "--threads", str(a.threads)]
        if delay is not None:
            args += ["--max-queue-delay-us", str(delay)]
        if a.precision != "fp32":
            args = None  # the server takes the precision from the router's manifest
            break
        srv = su.Server(args)
        try:
            dname = "2000 (default)" if delay is None else str(delay)
            rows.append((f"server, max_queue_delay_us {dname}", "idle", server_probe(st, srv.addr, SHORT, a.calls)))
            box = {}
            rate = a.load * batched
            t = threading.Thread(target=lambda: box.update(
                r=asyncio.run(open_loop(srv.addr, st, bg_prompts, rate, 8.0 + a.calls * 0.02))))
            t.start()
            time.sleep(1.0)
            probe = server_probe(st, srv.addr, SHORT, a.calls // 2)
            t.join()
            rows.append((f"server, max_queue_delay_us {dname}",
                         f"beside {rate:.0f} prompts/s open loop ({a.load:.2f} x engine; got "
                         f"{box['r']['thr']:.0f}/s, p50 {1e3 * box['r']['p50']:.1f} ms)", probe))
        finally:
            srv.stop()
    load1 = os.getloadavg()[0]
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    print(f"### Single-prompt latency, {datetime.date.today().isoformat()} (commit {git.strip()})")
    print()
    print(f"- Router `{os.path.basename(a.model.rstrip('/'))}`, {a.precision}, {a.threads} threads; "
          f"short prompts ({eng['tokens']:.1f} tokens on average); engine batched rate {batched:.1f} prompts/s "
          f"on 512 benchmark prompts.")
    print(f"- Command: `python3 benchmarks/latency_bench.py {' '.join(sys.argv[1:])}`")
    print(f"- Load average (1 min) before/after: {load0:.1f}/{load1:.1f}.")
    print()
    print("| path | condition | calls | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|")
    for name, cond, r in rows:
        print(f"| {name} | {cond} | {r['n']} | {r['p50']:.2f} | {r['p99']:.2f} |")
    idle = {name: r for name, cond, r in rows if cond == "idle"}
    e50 = min(eng["p50"], engp["p50"])
    print()
    for name, r in idle.items():
        if name.startswith("server"):
            print(f"- {name}: p50 {r['p50']:.2f} ms = the engine's best idle p50 {e50:.2f} ms "
                  f"+ {r['p50'] - e50:.2f} ms (goal: ≤ 1 ms over the forward).")


if __name__ == "__main__":
    main()
