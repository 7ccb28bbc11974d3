"""server_http_cancel.py — an HTTP client that closes its connection while its request is queued.

Behind a gRPC blocker whose work takes seconds (one FIFO per router: every HTTP request waits behind
it), 12 `POST /v1/score` requests of 4 prompts each are sent on their own connections. Eight of
them close their socket before the answer (four with a FIN, four with a reset); the other four
wait. Checks:
- the closed ones are cancelled the way a cancelled gRPC call is: their prompts leave the queue
  (routescore_queue_prompts / _tokens fall) while the blocker still computes, they are never
  computed (routescore_prompts_total counts the blocker and the waiting requests only;
  routescore_dropped_prompts_total{reason="cancelled"} counts exactly their 32 prompts), they are
  counted in routescore_requests_total{method="http.Score",code="CANCELLED"}, and each is logged
  (event client_closed);
- the four that waited get their scores, equal to gRPC's on the same prompts
  (to server_util.SCORE_TOL), and a
  request sent afterwards is answered at once with the right scores.
"""
import http.client
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402

LONG = "word " * 280  # truncated to the router's max_tokens (256)


def http_port(srv):
    return srv.wait_event("listening")["http_port"]


def prompts_of(i):
    return [f"Request {i}, prompt {j}: how many {j + 2}-sided dice sum to {i + 5}? " + "and why " * (10 * j)
            for j in range(4)]


def raw_request(port, body, key):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = json.dumps(dict(body, request_key=key)).encode()
    s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return s


def read_response(s):
    r = http.client.HTTPResponse(s)
    r.begin()
    return r.status, json.loads(r.read())


def main():
    check, tmp, router, st = su.setup()
    pb = st.scorer
    args = ["--model", router, "--http-port", "0", "--max-batch-size", "8", "--log-level", "info"]
    with su.serving(check, args) as srv:
        port = http_port(srv)
        scorer = st.scorer_grpc.ScorerStub(srv.channel())
        scorer.Score(pb.ScoreRequest(prompts=["warm up"]), timeout=60)
        # The oracle: each request's prompts scored alone over gRPC (before the load).
        want = {i: [su.f32(s.win_prob) for s in scorer.Score(pb.ScoreRequest(prompts=prompts_of(i)), timeout=60).scores]
                for i in range(13)}

        def metric(text, name, labels=None):
            return su.metric_value(text, name, labels) or 0

        # The blocker: about 3 s of work here (16 to 64 long prompts; the sanitizer build is slower).
        t = time.time()
        scorer.Score(pb.ScoreRequest(prompts=[LONG + "x" + str(i) for i in range(8)]), timeout=600)
        n_block = max(16, min(64, int(8 * 3.0 / max(time.time() - t, 1e-3))))
        m0 = srv.metrics()
        t0 = time.time()
        blocker = scorer.Score.future(pb.ScoreRequest(prompts=[LONG + str(i) for i in range(n_block)]), timeout=600)
        time.sleep(0.2)
        socks = {i: raw_request(port, {"prompts": prompts_of(i)}, f"cancel-{i}") for i in range(12)}
        closed = [i for i in socks if i % 3 != 2]  # 8 closed, 4 waiting
        waiting = [i for i in socks if i % 3 == 2]
        # All twelve admitted (queued behind the blocker) before any is closed: admitted prompts are
        # the queued ones plus those computed since m0.
        p0 = metric(m0, "routescore_prompts_total")
        t_wait = time.time()
        while time.time() - t_wait < 20:
            m_before = srv.metrics()
            q_before, p_before = metric(m_before, "routescore_queue_prompts"), metric(m_before, "routescore_prompts_total")
            if q_before + p_before - p0 >= n_block + 48:
                break
            time.sleep(0.01)
        check(q_before + p_before - p0 >= n_block + 48 and not blocker.done(),
              f"12 requests queued behind the blocker of {n_block} prompts ({q_before:.0f} prompts queued)")
        for k, i in enumerate(closed):
            if k % 2:  # a reset instead of a FIN
                socks[i].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socks[i].close()
        t_close = time.time()
        # Left the queue: the gauge fell by 32 more than the prompts computed meanwhile.
        q_after, left, dt = q_before, 0, None
        while time.time() - t_close < 5:
            m = srv.metrics()
            q_after = metric(m, "routescore_queue_prompts")
            left = (q_before - q_after) - (metric(m, "routescore_prompts_total") - p_before)
            if left >= 32:
                dt = time.time() - t_close
                break
            time.sleep(0.01)
        running = not blocker.done()
        check(dt is not None and dt < 1.0 and running,
              f"the closed requests' 32 prompts left the queue {dt if dt is None else round(dt, 3)} s after the close "
              f"(not computed), while the blocker was still computing ({running}; {q_before:.0f} -> {q_after:.0f} "
              f"prompts queued, {left:.0f} left uncomputed)")
        for i in waiting:
            socks[i].settimeout(600)
            code, js = read_response(socks[i])
            socks[i].close()
            got = [su.f32(s["win_prob"]) for s in js.get("scores", [])]
            check(code == 200 and su.same_scores(got, want[i]), f"waiting request {i}: 200 with gRPC's scores ({code})")
        blocker.result()
        print(f"blocker: {time.time() - t0:.2f} s")
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", "/v1/score", body=json.dumps({"prompts": prompts_of(12)}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        js = json.loads(r.read())
        c.close()
        check(r.status == 200 and su.same_scores([s["win_prob"] for s in js["scores"]], want[12]),
              f"a later request: 200 with gRPC's scores ({r.status})")
        time.sleep(0.3)
        m1 = srv.metrics()

        def delta(name, labels=None):
            return metric(m1, name, labels) - metric(m0, name, labels)

        computed = delta("routescore_prompts_total")
        check(computed == n_block + 4 * len(waiting) + 4,
              f"computed prompts: the blocker's {n_block}, the waiting {4 * len(waiting)} and the later 4 only ({computed:.0f})")
        dropped = delta("routescore_dropped_prompts_total", {"reason": "cancelled"})
        check(dropped == 4 * len(closed), f"dropped_prompts_total{{reason=cancelled}}: {dropped:.0f} (want {4 * len(closed)})")
        canc = delta("routescore_requests_total", {"method": "http.Score", "code": "CANCELLED"})
        ok = delta("routescore_requests_total", {"method": "http.Score", "code": "OK"})
        check(canc == len(closed) and ok == len(waiting) + 1,
              f"requests_total{{method=http.Score}}: {canc:.0f} CANCELLED, {ok:.0f} OK")
        check(metric(m1, "routescore_queue_prompts") == 0 and metric(m1, "routescore_queue_tokens") == 0,
              "the queue gauges are back to zero")
        logged = sorted(r.get("request_key") for r in srv.events("client_closed"))
        check(logged == sorted(f"cancel-{i}" for i in closed), f"each closed request logged (client_closed: {logged})")
        reqs = {r.get("request_key"): r.get("code") for r in srv.events("request")}
        check(all(reqs.get(f"cancel-{i}") == 1 for i in closed) and all(reqs.get(f"cancel-{i}") == 0 for i in waiting),
              "their request log lines say CANCELLED (1) / OK (0)")
    check.done()


if __name__ == "__main__":
    main()
