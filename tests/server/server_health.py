"""server_health.py — readiness and liveness, over gRPC health and HTTP, in each state of the server.

The table of docs/SERVING.md (Health), checked on both protocols in the three states a probe sees:
- loading (8 routers to load and warm up, so the state lasts): readiness (gRPC health "" and
  "routescore.v1.Scorer", HTTP /readyz) NOT_SERVING / 503, liveness (gRPC health "liveness", HTTP
  /healthz) SERVING / 200; a Score is refused UNAVAILABLE;
- serving: all four SERVING / 200;
- draining (after SIGTERM, while an accepted call is still computing): readiness NOT_SERVING / 503,
  liveness SERVING / 200; the accepted call still ends OK.
Each sample asks all four at once, so they are compared with each other in the same state; a Watch
on "liveness" stays SERVING through the drain start while a Watch on "" turns NOT_SERVING.
"""
import http.client
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402

LONG = "word " * 280


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def sample(health, hp, port):
    """(ready "", ready Scorer, live, /readyz, /healthz): gRPC statuses by name, HTTP statuses."""
    def st(svc):
        try:
            return hp.HealthCheckResponse.ServingStatus.Name(health.Check(hp.HealthCheckRequest(service=svc), timeout=5).status)
        except grpc.RpcError as e:
            return e.code().name
    return (st(""), st("routescore.v1.Scorer"), st("liveness"), http_get(port, "/readyz"), http_get(port, "/healthz"))


def main():
    check, tmp, router, st = su.setup()
    pb, hp = st.scorer, st.health
    cfg = os.path.join(tmp, "health.json")
    with open(cfg, "w") as f:
        json.dump({"http_listen": "127.0.0.1:0", "grace_period_s": 60,
                   "routers": [{"model": router, "name": f"r{i}", "max_batch_size": 8} for i in range(8)]}, f)
    srv = su.Server(["--config", cfg], wait_ready=False)
    try:
        port = srv.wait_event("listening")["http_port"]
        ch = srv.channel()
        health = st.health_grpc.HealthStub(ch)
        scorer = st.scorer_grpc.ScorerStub(ch)
        # ---- loading ----
        loading = []
        while not srv.events("serving") and len(loading) < 5:
            s = sample(health, hp, port)
            if not srv.events("serving"):  # the state did not change while it was taken
                loading.append(s)
        want = ("NOT_SERVING", "NOT_SERVING", "SERVING", 503, 200)
        check(len(loading) > 0, f"{len(loading)} sample(s) taken while the routers load")
        check(all(s == want for s in loading), f"loading: readiness NOT_SERVING / 503, liveness SERVING / 200 ({set(loading)})")
        if loading:  # the default router (loaded first) and the last one (not loaded yet: no facts about it)
            for name in ("", "r7"):
                c = su.code_of(lambda: scorer.Score(pb.ScoreRequest(prompts=["hi"], router=name), timeout=10))
                check(srv.events("serving") or c == grpc.StatusCode.UNAVAILABLE,
                      f"loading: Score (router '{name}') refused UNAVAILABLE ({c.name})")
        srv.wait_event("serving", 300)
        # ---- serving ----
        s = sample(health, hp, port)
        check(s == ("SERVING", "SERVING", "SERVING", 200, 200), f"serving: all SERVING / 200 ({s})")
        try:
            health.Check(hp.HealthCheckRequest(service="no.such"), timeout=5)
            check(False, "an unknown service: NOT_FOUND")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND, f"an unknown service: NOT_FOUND ({e.code().name})")
        w_ready = health.Watch(hp.HealthCheckRequest(service=""), timeout=120)
        w_live = health.Watch(hp.HealthCheckRequest(service="liveness"), timeout=120)
        check(next(w_ready).status == hp.HealthCheckResponse.SERVING and next(w_live).status == hp.HealthCheckResponse.SERVING,
              "Watch '' and 'liveness' start SERVING")
        live_seen = []
        th = threading.Thread(target=_drain_watch, args=(w_live, live_seen), daemon=True)
        th.start()
        # ---- draining ----
        t = time.time()
        scorer.Score(pb.ScoreRequest(prompts=[LONG + "x" + str(i) for i in range(8)]), timeout=300)
        n = max(16, min(96, int(8 * 4.0 / max(time.time() - t, 1e-3))))  # about 4 s of work
        blocker = scorer.Score.future(pb.ScoreRequest(prompts=[LONG + str(i) for i in range(n)]), timeout=300)
        time.sleep(0.3)
        srv.signal(signal.SIGTERM)
        srv.wait_event("draining", 30)
        nxt = next(w_ready).status
        check(nxt == hp.HealthCheckResponse.NOT_SERVING, f"Watch '' is told NOT_SERVING at the drain ({nxt})")
        draining = []
        while not blocker.done() and len(draining) < 5:
            s = sample(health, hp, port)
            if not blocker.done():
                draining.append(s)
            time.sleep(0.1)
        want = ("NOT_SERVING", "NOT_SERVING", "SERVING", 503, 200)
        check(len(draining) > 0, f"{len(draining)} sample(s) taken while the drain waits for the accepted call")
        check(all(s == want for s in draining), f"draining: readiness NOT_SERVING / 503, liveness SERVING / 200 ({set(draining)})")
        try:
            r = blocker.result(timeout=300)
            check(len(r.scores) == n, "the accepted call is finished OK during the drain")
        except grpc.RpcError as e:
            check(False, f"the accepted call is finished OK during the drain ({e.code()})")
        th.join(timeout=30)
        check(hp.HealthCheckResponse.NOT_SERVING not in live_seen,
              f"Watch 'liveness' never said NOT_SERVING during the drain ({live_seen})")
        ch.close()
    finally:
        rc = srv.stop()
    check(rc == 0, f"exit 0 ({rc})")
    check.done()


def _drain_watch(w, out):
    try:
        for r in w:
            out.append(r.status)
    except grpc.RpcError:
        pass


if __name__ == "__main__":
    main()
