"""server_metrics_http.py — slow clients cannot starve /metrics.

The server runs with --metrics-request-timeout 2 --metrics-client-connections 8.

1. 300 trickling connections (3 from each of 100 loopback addresses
   127.0.0.2..127.0.0.101, each sending one byte of an unfinished request
   every 0.5 s and reconnecting when cut) are held for 6 s; meanwhile every
   scrape from 127.0.0.1 (every 0.2 s) succeeds and gRPC keeps scoring.
2. The deadline is total: a connection that keeps sending a byte every 0.3 s
   (an idle timeout would never fire) is closed within the deadline + 1 s.
3. Per-client limit: from one address, 8 connections are held open and the
   next ones are closed at once.
"""
import os
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402

PARTIAL = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "


def connect(src, port):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(2)
    s.connect(("127.0.0.1", port))
    return s


def closed_within(s, t):
    """Whether the peer closes s within t seconds (recv gives b'' or a reset)."""
    s.settimeout(t)
    try:
        return s.recv(4096) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def main():
    check, tmp, router, st = su.setup()
    try:
        connect("127.0.0.2", 1).close()
    except ConnectionRefusedError:
        pass
    except OSError as e:
        su.skip(f"cannot bind 127.0.0.2 as a source address ({e})")
    with su.serving(check, ["--model", router, "--metrics-request-timeout", "2",
                            "--metrics-client-connections", "8"]) as srv:
        port = srv.metrics_port
        scorer = st.scorer_grpc.ScorerStub(srv.channel())

        # ---- 1. 300 trickling connections, scrapes meanwhile ----
        stop = threading.Event()
        stats = {"cut": 0, "connects": 0, "refused": 0}
        lock = threading.Lock()

        def trickler(srcs):
            socks = {}
            while not stop.is_set():
                for key in srcs:
                    s = socks.get(key)
                    try:
                        if s is None:
                            s = socks[key] = connect(key[0], port)
                            with lock:
                                stats["connects"] += 1
                            s.sendall(PARTIAL)
                        s.sendall(b"a")
                    except OSError:
                        with lock:
                            stats["cut" if s is not None else "refused"] += 1
                        if s is not None:
                            s.close()
                        socks[key] = None
                stop.wait(0.5)
            for s in socks.values():
                if s is not None:
                    s.close()

        addrs = [(f"127.0.0.{2 + i}", k) for i in range(100) for k in range(3)]
        ts = [threading.Thread(target=trickler, args=(addrs[j::10],)) for j in range(10)]
        [t.start() for t in ts]
        time.sleep(1.0)  # all 300 open
        n_ok, n_fail, worst, fails = 0, 0, 0.0, []
        t_end = time.time() + 6
        while time.time() < t_end:
            t = time.time()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    ok = r.status == 200 and b"routescore_ready 1" in r.read()
            except OSError as e:
                ok = False
                fails.append(str(e))
            worst = max(worst, time.time() - t)
            n_ok += ok
            n_fail += not ok
            time.sleep(0.2)
        grpc_ok = len(scorer.Score(st.scorer.ScoreRequest(prompts=["still scoring?"]), timeout=30).scores) == 1
        stop.set()
        [t.join() for t in ts]
        check(n_fail == 0 and n_ok >= 15,
              f"300 trickling connections held: {n_ok} scrapes OK, {n_fail} failed (slowest {worst:.3f}s) {fails[:3]}")
        check(stats["connects"] >= 300 and stats["cut"] >= 250,
              f"the trickling connections were cut at their deadline and came back ({stats})")
        check(grpc_ok, "gRPC kept scoring meanwhile")

        # ---- 2. the deadline is total, not idle ----
        s = connect("127.0.0.150", port)
        s.sendall(PARTIAL)
        t0 = time.time()
        cut = False
        while time.time() - t0 < 6:
            try:
                s.sendall(b"b")
            except OSError:
                cut = True
                break
            if closed_within(s, 0.3):
                cut = True
                break
        dt = time.time() - t0
        s.close()
        check(cut and dt < 3.0, f"a connection sending a byte every 0.3 s is closed after {dt:.2f}s (deadline 2 s)")

        # ---- 3. per-client limit ----
        held = [connect("127.0.0.200", port) for _ in range(8)]
        time.sleep(0.2)
        extra = [connect("127.0.0.200", port) for _ in range(4)]
        n_extra_closed = sum(closed_within(x, 0.5) for x in extra)
        n_held_open = sum(not closed_within(h, 0.05) for h in held)
        check(n_extra_closed == 4 and n_held_open == 8,
              f"per-client limit 8: {n_held_open} held open, {n_extra_closed}/4 beyond it closed at once")
        for x in held + extra:
            x.close()
        check(b"routescore_ready" in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read(),
              "scrapes still served afterwards")
    check.done()


if __name__ == "__main__":
    main()
