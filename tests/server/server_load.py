"""server_load.py — many concurrent clients, batching visible in the metrics,
and SIGTERM under load with no accepted request lost.

1. 24 client threads each send small Score requests; every answer equals the
   scores of the same prompts sent alone (to server_util.SCORE_TOL: other
   batch compositions), and the batch-size
   histogram shows requests from different callers sharing forwards.
2. Under continuous load (unary clients, a ScoreStream client, a Health/Watch
   stream) the server gets SIGTERM. Then: the watch sees NOT_SERVING; every
   unary call ends OK or UNAVAILABLE (refused while draining, never
   accepted; no CANCELLED from calls caught in transit); the server's own
   count of Score OK equals the clients' count (nothing it finished was
   lost), no accepted call was cancelled, calls in flight at SIGTERM
   completed OK, the stream's answers
   all carry scores, and the process exits 0 within the grace period.
"""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402


def prompt(i):
    return f"Request {i}: summarise the causes of the {i % 7 + 1}th crusade in {i % 5 + 2} sentences."


def main():
    check, tmp, router, st = su.setup()
    pb, hp = st.scorer, st.health

    # ---- 1. concurrency and batching ----
    with su.serving(check, ["--model", router, "--max-queue-delay-us", "5000"]) as srv:
        ch = srv.channel()
        scorer = st.scorer_grpc.ScorerStub(ch)
        ref = {i: su.f32(scorer.Score(pb.ScoreRequest(prompts=[prompt(i)]), timeout=30).scores[0].win_prob) for i in range(48)}
        m0 = srv.metrics()
        c0 = su.metric_value(m0, "routescore_batch_size_count") or 0
        s0 = su.metric_value(m0, "routescore_batch_size_sum") or 0
        errors, mismatches, done = [], [], [0]
        lock = threading.Lock()

        def client(k):
            chk = grpc.insecure_channel(srv.addr)  # one connection per client, as separate callers
            stub = st.scorer_grpc.ScorerStub(chk)
            for j in range(6):
                ids = [(k * 6 + j + t) % 48 for t in range(1 + (k + j) % 3)]
                try:
                    r = stub.Score(pb.ScoreRequest(prompts=[prompt(i) for i in ids]), timeout=60)
                    bad = [i for i, s in zip(ids, r.scores) if not su.same_score(s.win_prob, ref[i])]
                    with lock:
                        mismatches.extend(bad)
                        done[0] += 1
                except grpc.RpcError as e:
                    with lock:
                        errors.append(e.code())
            chk.close()

        t0 = time.time()
        ts = [threading.Thread(target=client, args=(k,)) for k in range(24)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        dt = time.time() - t0
        check(not errors and done[0] == 144, f"24 clients x 6 requests all OK in {dt:.1f}s ({done[0]}, errors {set(errors)})")
        check(not mismatches, f"every concurrent answer equals the prompt scored alone ({len(mismatches)} differ)")
        m1 = srv.metrics()
        n_batches = (su.metric_value(m1, "routescore_batch_size_count") or 0) - c0
        n_prompts = (su.metric_value(m1, "routescore_batch_size_sum") or 0) - s0
        check(n_prompts == sum(1 + (k + j) % 3 for k in range(24) for j in range(6)), f"{n_prompts:.0f} prompts computed")
        check(n_batches < 144 and n_prompts / max(n_batches, 1) > 2,
              f"batching across callers: {n_prompts:.0f} prompts of 144 requests in {n_batches:.0f} forwards "
              f"(mean batch {n_prompts / max(n_batches, 1):.1f})")
        ch.close()

    # ---- 2. SIGTERM under load ----
    srv = su.Server(["--model", router, "--grace", "30", "--max-batch-size", "32"])
    stop = threading.Event()
    lock = threading.Lock()
    outcomes = []  # (code, t_start, t_end)
    stream_resps, stream_end = [], []
    watch_seen, watch_end = [], []

    def unary_client(k):
        chk = grpc.insecure_channel(srv.addr)
        stub = st.scorer_grpc.ScorerStub(chk)
        j = 0
        while not stop.is_set():
            t = time.time()
            try:
                r = stub.Score(pb.ScoreRequest(prompts=[prompt(k * 1000 + j + t) for t in range(4)]), timeout=60)
                code = grpc.StatusCode.OK if len(r.scores) == 4 else "short"
            except grpc.RpcError as e:
                code = e.code()
            with lock:
                outcomes.append((code, t, time.time()))
            if code == grpc.StatusCode.UNAVAILABLE:
                break  # the server is gone for this client
            j += 1
        chk.close()

    def stream_client():
        chk = grpc.insecure_channel(srv.addr)
        stub = st.scorer_grpc.ScorerStub(chk)

        def gen():
            i = 0
            while not stop.is_set() and i < 100000:
                yield pb.ScoreRequest(prompts=[prompt(i)], request_id=i)
                i += 1
                time.sleep(0.01)

        try:
            for r in stub.ScoreStream(gen(), timeout=60):
                stream_resps.append(r)
            stream_end.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            stream_end.append(e.code())
        chk.close()

    def watch_client():
        chk = grpc.insecure_channel(srv.addr)
        h = st.health_grpc.HealthStub(chk)
        try:
            for r in h.Watch(hp.HealthCheckRequest(), timeout=60):
                watch_seen.append(r.status)
            watch_end.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            watch_end.append(e.code())
        chk.close()

    threads = [threading.Thread(target=unary_client, args=(k,)) for k in range(12)]
    threads += [threading.Thread(target=stream_client), threading.Thread(target=watch_client)]
    [t.start() for t in threads]
    time.sleep(2.0)
    t_term = time.time()
    srv.signal(signal.SIGTERM)
    rc = srv.wait_exit(40, "timeout")
    t_exit = time.time()
    stop.set()
    [t.join(timeout=30) for t in threads]
    srv._reader.join(timeout=5)
    codes = [c for c, _, _ in outcomes]
    n_ok = codes.count(grpc.StatusCode.OK)
    n_unavail = codes.count(grpc.StatusCode.UNAVAILABLE)
    others = [c for c in codes if c not in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE)]
    in_flight_ok = sum(1 for c, ts, te in outcomes if c == grpc.StatusCode.OK and ts < t_term < te)
    check(rc == 0, f"SIGTERM under load: exit 0 ({rc}) after {t_exit - t_term:.2f}s (grace 30s)")
    check(not others, f"unary calls end OK or UNAVAILABLE only: {n_ok} OK, {n_unavail} UNAVAILABLE, others {others}")
    check(in_flight_ok > 0, f"{in_flight_ok} calls in flight at SIGTERM completed OK")
    drained = srv.events("drained")
    check(bool(drained), "logged 'drained'")
    if drained:
        d = drained[-1]
        check(d.get("score_ok") == n_ok, f"server finished {d.get('score_ok')} Score calls OK, clients received {n_ok}: none lost")
        check(d.get("accepted_calls_cancelled") == 0, "no accepted call was cancelled")
        check(d.get("score_unavailable", -1) <= n_unavail,
              f"UNAVAILABLE only for calls refused while draining ({d.get('score_unavailable')} by the server, "
              f"{d.get('refused_while_draining')} Scorer calls refused, {n_unavail} seen by clients)")
        check(d.get("in_time") is True, "drained within the grace period")
        check(d.get("stream_messages_ok") == len(stream_resps),
              f"stream: server answered {d.get('stream_messages_ok')} messages, client got {len(stream_resps)}")
    check(len(stream_resps) > 0 and all(len(r.scores) == 1 and not r.error.message for r in stream_resps),
          f"stream: {len(stream_resps)} answers before the drain, all with scores")
    check(stream_end and stream_end[0] in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK),
          f"stream ends {stream_end[0] if stream_end else None} (UNAVAILABLE: resend the rest elsewhere)")
    check(hp.HealthCheckResponse.SERVING in watch_seen and watch_seen[-1] == hp.HealthCheckResponse.NOT_SERVING,
          f"Health/Watch saw SERVING then NOT_SERVING ({watch_seen}), then ended {watch_end}")
    check.done()


if __name__ == "__main__":
    main()
