"""drain_trials.py — SIGTERM under 4 looping clients, repeated.

Each trial: `routescore serve` starts, 4 clients loop Score calls (each on
its own channel, sending the next call as soon as the last one ends, and
carrying on after UNAVAILABLE as a retrying caller would), SIGTERM after
0.5-1.5 s, the clients stop once the process has exited. A trial passes when
every call ended OK or UNAVAILABLE (no CANCELLED, nothing else), the server
exited 0, and the server's count of Score calls finished OK equals the
clients' count of OK answers (no accepted call lost).

  python3 tests/server/drain_trials.py [--trials 100]   (CTest runs it with --trials 12)

Prints one line per trial and a summary; exits 1 if any trial failed.
"""
import argparse
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402


def trial(k, router, st, rng):
    pb = st.scorer
    srv = su.Server(["--model", router, "--grace", "20"])
    stop = threading.Event()
    lock = threading.Lock()
    codes = {}

    def client(j):
        ch = grpc.insecure_channel(srv.addr)
        stub = st.scorer_grpc.ScorerStub(ch)
        i = 0
        while not stop.is_set():
            c = su.code_of(lambda: stub.Score(pb.ScoreRequest(prompts=[f"trial {k} client {j} call {i}: what is {i}+{j}?"]
                                                              * (1 + i % 3)), timeout=30))
            with lock:
                codes[c] = codes.get(c, 0) + 1
            if c == grpc.StatusCode.UNAVAILABLE:
                time.sleep(0.005)
            i += 1
        ch.close()

    ts = [threading.Thread(target=client, args=(j,)) for j in range(4)]
    [t.start() for t in ts]
    time.sleep(rng.uniform(0.5, 1.5))
    srv.signal(signal.SIGTERM)
    rc = srv.wait_exit(30, "timeout")
    stop.set()
    [t.join(timeout=30) for t in ts]
    srv._reader.join(timeout=5)
    d = (srv.events("drained") or [{}])[-1]
    n_ok = codes.get(grpc.StatusCode.OK, 0)
    bad = {c.name: n for c, n in codes.items() if c not in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE)}
    ok = rc == 0 and not bad and d.get("score_ok") == n_ok and n_ok > 0
    print(f"trial {k}: {'ok  ' if ok else 'FAIL'} exit {rc}, {n_ok} OK (server {d.get('score_ok')}), "
          f"{codes.get(grpc.StatusCode.UNAVAILABLE, 0)} UNAVAILABLE, others {bad}, drain {d.get('seconds')}s", flush=True)
    return ok, bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100)
    a = ap.parse_args()
    check, tmp, router, st = su.setup()
    rng = random.Random(14)
    n_fail, others = 0, {}
    t0 = time.time()
    for k in range(a.trials):
        ok, bad = trial(k, router, st, rng)
        n_fail += not ok
        for c, n in bad.items():
            others[c] = others.get(c, 0) + n
    check(n_fail == 0, f"{a.trials} SIGTERM trials under 4 looping clients: {a.trials - n_fail} clean, {n_fail} failed "
                       f"(calls ending otherwise: {others}) in {time.time() - t0:.0f}s")
    check.done()


if __name__ == "__main__":
    main()
