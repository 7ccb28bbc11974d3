#!/usr/bin/env python3
"""soak_memory.py — resident memory of `routescore serve` over a soak with
bursts of large messages (not in CI: it runs for minutes).

Phases, with VmRSS of the server sampled every second:
  steady   closed-loop load near capacity (4 callers, 8 short prompts a call);
  burst    every `--burst-every` s, 8 callers send 3.5 MB messages for 10 s
           (ScoreRequests of 14 x 250 KB prompts to an unknown router: read,
           unpacked and refused; plus 5 MB messages that gRPC refuses past
           max_request_bytes), while the steady load goes on;
  after each burst the steady load alone.
At the end: the steady-state RSS (median of the first steady minute after
warm-up), the peak, and the RSS 20 s after each burst, as a ratio of steady.

  python3 benchmarks/soak_memory.py [--bin build/routescore] [--minutes 10] [--burst-every 120]

Prints a markdown block with the trace (one sample every 10 s).
"""
import argparse
import asyncio
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "server"))
import server_util as su  # noqa: E402
import server_admission as sa  # noqa: E402
import grpc  # noqa: E402


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--burst-every", type=float, default=120)
    a = ap.parse_args()
    if a.bin:
        os.environ["RS_BIN"] = os.path.abspath(a.bin)
    tmp = su.tmpdir()
    router = a.model or su.router_dir(tmp)
    st = su.Stubs(tmp)
    pb = st.scorer
    srv = su.Server(["--model", router, "--max-queue-wait-ms", "250"])
    pid = srv.proc.pid
    stop = threading.Event()
    trace, bursts = [], []  # (t, rss); (t_start, t_end)
    t0 = time.time()

    def steady():
        async def run():
            while not stop.is_set():
                await sa.closed_loop(srv.addr, st, 4, 8, 5.0)
        asyncio.run(run())

    def burst_caller(k, until):
        ch = grpc.insecure_channel(srv.addr, options=[("grpc.max_send_message_length", 64 << 20)])
        stub = st.scorer_grpc.ScorerStub(ch)
        big = pb.ScoreRequest(prompts=["x" * 250_000] * 14, router="no-such-router")
        huge = pb.ScoreRequest(prompts=["y" * 250_000] * 20)
        i = 0
        while time.time() < until and not stop.is_set():
            su.code_of(lambda: stub.Score(huge if i % 4 == 3 else big, timeout=30))
            i += 1
        ch.close()

    th = threading.Thread(target=steady)
    th.start()
    end = t0 + a.minutes * 60
    next_burst = t0 + a.burst_every
    while time.time() < end:
        now = time.time()
        if now >= next_burst and now + 30 < end:
            until = now + 10
            bs = [threading.Thread(target=burst_caller, args=(k, until)) for k in range(8)]
            [b.start() for b in bs]
            bursts.append((now - t0, until - t0))
            next_burst += a.burst_every
        trace.append((now - t0, rss_mb(pid)))
        time.sleep(1.0)
    stop.set()
    th.join()
    rc = srv.stop()
    warm = [r for t, r in trace if 30 <= t < min(90, bursts[0][0] if bursts else 90)]
    steady_rss = statistics.median(warm) if warm else float("nan")
    peak = max(r for _, r in trace)
    print(f"Soak: {a.minutes:.0f} min, steady load 4 callers x 8 prompts, bursts of 3.5-5 MB messages "
          f"every {a.burst_every:.0f} s for 10 s; server exit {rc}\n")
    print(f"steady RSS {steady_rss:.1f} MB (median, 30-90 s), peak {peak:.1f} MB\n")
    print("| burst at s | RSS 20 s after its end, MB | ÷ steady |\n|---:|---:|---:|")
    for b0, b1 in bursts:
        after = [r for t, r in trace if b1 + 20 <= t < b1 + 21.5]
        if after:
            print(f"| {b0:.0f} | {after[0]:.1f} | {after[0] / steady_rss:.2f} |")
    print("\ntrace (t s: RSS MB): " + ", ".join(f"{t:.0f}: {r:.0f}" for t, r in trace[::10]))


if __name__ == "__main__":
    main()
