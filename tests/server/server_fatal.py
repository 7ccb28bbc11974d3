"""server_fatal.py — a fatal engine error (a lost GPU) ends in NOT_SERVING
and a non-zero exit, never in a server that keeps answering with errors.

The backend failure is injected by the test binary tests/server/serve_faults.c
(RS_FAULT_BIN; ROUTESCORE_TEST_BACKEND_FAIL_AFTER=N: every forward after the
N-th fails with RS_ERR_BACKEND, as a CUDA sticky error does); the production
binary has no such switch. The caller of the failed batch gets UNAVAILABLE (retry elsewhere), a
Health/Watch stream sees NOT_SERVING (readiness, and liveness too), the log has engine_fatal, and the
process exits 3 for its supervisor to restart it.
"""
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402


def main():
    check, tmp, router, st = su.setup()
    pb, hp = st.scorer, st.health
    fault_bin = os.environ.get("RS_FAULT_BIN")
    if not fault_bin or not os.path.exists(fault_bin):
        su.skip("no fault-injection binary (RS_FAULT_BIN: the serve_faults test target)")
    os.environ["RS_BIN"] = fault_bin  # server_util starts this binary
    env = dict(os.environ, ROUTESCORE_TEST_BACKEND_FAIL_AFTER="2")
    srv = su.Server(["--model", router, "--grace", "10"], env=env)
    ch = srv.channel()
    scorer = st.scorer_grpc.ScorerStub(ch)
    seen, seen_live = [], []

    def watch(service, out):
        try:
            for r in st.health_grpc.HealthStub(grpc.insecure_channel(srv.addr)).Watch(
                    hp.HealthCheckRequest(service=service), timeout=60):
                out.append(r.status)
        except grpc.RpcError:
            pass

    w = threading.Thread(target=watch, args=("", seen))
    wl = threading.Thread(target=watch, args=("liveness", seen_live))
    w.start()
    wl.start()
    for i in range(2):
        r = scorer.Score(pb.ScoreRequest(prompts=[f"fine {i}"]), timeout=30)
        check(len(r.scores) == 1, f"forward {i + 1} works")
    try:
        scorer.Score(pb.ScoreRequest(prompts=["this forward fails"]), timeout=30)
        check(False, "the failed forward's caller gets an error")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAVAILABLE and "injected" in (e.details() or ""),
              f"the failed forward's caller gets UNAVAILABLE ({e.code().name}: {e.details()})")
    rc = srv.wait_exit(30, "did not exit")
    w.join(timeout=10)
    wl.join(timeout=10)
    srv._reader.join(timeout=5)
    check(rc == 3, f"the process exits 3 by itself ({rc})")
    check(bool(srv.events("engine_fatal")), "logged engine_fatal")
    check(seen[:1] == [hp.HealthCheckResponse.SERVING] and hp.HealthCheckResponse.NOT_SERVING in seen,
          f"Health/Watch: SERVING, then NOT_SERVING ({seen})")
    check(seen_live[:1] == [hp.HealthCheckResponse.SERVING] and hp.HealthCheckResponse.NOT_SERVING in seen_live,
          f"Health/Watch 'liveness' (alive until the engine fails): SERVING, then NOT_SERVING ({seen_live})")
    check.done()


if __name__ == "__main__":
    main()
