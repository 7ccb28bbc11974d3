#!/usr/bin/env python3
"""admission_bench.py — latency and shedding under overload, with and without
admission by time.

For each setting of max_queue_wait_ms (default: 250, the default, and 0:
admission by the token bound only, as before), on a fresh `routescore serve`:
capacity is measured closed-loop (4 callers, P prompts per call, refusals
retried after 10 ms), then Poisson arrivals at 1x, 2x and 4x that rate for D
seconds each. Per load: calls offered, accepted calls' p50 / p99 latency as
the client sees it, the shed rate (RESOURCE_EXHAUSTED + DEADLINE_EXCEEDED
share) and any other code.

  python3 benchmarks/admission_bench.py [--bin build/routescore] [--model DIR]
        [--duration 10] [--per-call 8] [--waits 250,0] [--loads 1,2,4]

Prints a markdown table.
"""
import argparse
import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "server"))
import server_util as su  # noqa: E402
import server_admission as sa  # noqa: E402
import grpc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--per-call", type=int, default=8)
    ap.add_argument("--waits", default="250,0")
    ap.add_argument("--loads", default="1,2,4")
    a = ap.parse_args()
    if a.bin:
        os.environ["RS_BIN"] = os.path.abspath(a.bin)
    tmp = su.tmpdir()
    router = a.model or su.router_dir(tmp)
    st = su.Stubs(tmp)
    rows = []
    for w in a.waits.split(","):
        with su.serving(su.Check(), ["--model", router, "--max-queue-wait-ms", w]) as srv:
            asyncio.run(sa.closed_loop(srv.addr, st, 4, a.per_call, 2.0))  # warm-up and throughput estimate
            cap = asyncio.run(sa.closed_loop(srv.addr, st, 4, a.per_call, a.duration / 2))
            for x in a.loads.split(","):
                res = asyncio.run(sa.open_loop(srv.addr, st, float(x) * cap, a.per_call, a.duration))
                ok = [d for c, d in res if c == grpc.StatusCode.OK]
                shed = sum(c in (sa.RE, sa.DE) and d < 0.5 for c, d in res)  # refused at once
                late = sum(c == sa.DE and d >= 0.5 for c, d in res)  # waited in the queue, then ran out of time
                other = {}
                for c, _ in res:
                    if c not in (sa.OK, sa.RE, sa.DE):
                        other[c.name] = other.get(c.name, 0) + 1
                rows.append((w, cap, x, len(res), sa.pct(ok, 0.5), sa.pct(ok, 0.99), shed / max(len(res), 1),
                             late / max(len(res), 1), other))
                print(rows[-1], file=sys.stderr, flush=True)
    print(f"Admission under overload ({a.per_call} prompts/call, {a.duration:.0f} s per load, Poisson arrivals)\n")
    print("| max_queue_wait_ms | capacity calls/s | load | calls | accepted p50 ms | accepted p99 ms | shed at once "
          "| timed out in queue (30 s deadline) | other |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for w, cap, x, n, p50, p99, shed, late, other in rows:
        print(f"| {w} | {cap:.1f} | {x}x | {n} | {p50 * 1e3:.0f} | {p99 * 1e3:.0f} | {shed:.0%} | {late:.0%} "
              f"| {other or '–'} |")


if __name__ == "__main__":
    main()
