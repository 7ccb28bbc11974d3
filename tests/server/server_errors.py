"""server_errors.py — a live server fed bad and hostile input answers each with
the right status code and keeps serving.

Malformed protobuf, oversized messages, over-long prompts, invalid UTF-8,
empty or too many prompts, unknown router, bad threshold / strong_share,
NUL bytes inside router names, prompts, health service names and reflection
requests (refused INVALID_ARGUMENT on every path: unary, stream, health,
reflection; protobuf-c would otherwise cut the string at the NUL),
deadlines that expire in the queue (dropped, never computed), cancellation
mid-request (the rest of its prompts dropped), queue overflow
(RESOURCE_EXHAUSTED at once). After each group: Health SERVING and a Score
still work.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402

LONG = "word " * 280  # truncated to the router's max_tokens


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def raw_prompt_request(prompt_bytes):
    """A ScoreRequest with one prompt whose bytes are given (may be invalid UTF-8)."""
    return b"\x12" + varint(len(prompt_bytes)) + prompt_bytes


def code_ok(scorer, pb, name):
    return su.code_of(lambda: scorer.Score(pb.ScoreRequest(prompts=["a"], router=name), timeout=10)) == grpc.StatusCode.OK


def main():
    check, tmp, router, st = su.setup()
    pb, hp = st.scorer, st.health
    # --max-queue-wait-ms 0: admission by time off, so deadlines expire *in* the queue here
    # (server_admission.py tests the immediate refusals).
    with su.serving(check, ["--model", router, "--max-request-bytes", "262144", "--max-prompt-bytes", "8192",
                            "--max-prompts", "300", "--max-batch-size", "16", "--max-queue-delay-us", "500",
                            "--max-queue-wait-ms", "0"],
                    what="exit 0 after SIGTERM") as srv:
        ch = srv.channel()
        scorer = st.scorer_grpc.ScorerStub(ch)
        health = st.health_grpc.HealthStub(ch)
        raw_score = ch.unary_unary("/routescore.v1.Scorer/Score")

        def still_serving(what):
            ok = health.Check(hp.HealthCheckRequest(), timeout=10).status == hp.HealthCheckResponse.SERVING
            r = scorer.Score(pb.ScoreRequest(prompts=["still there?"]), timeout=30)
            check(ok and len(r.scores) == 1, f"after {what}: SERVING and scoring")

        def expect(code, fn, what):
            try:
                fn()
                check(False, f"{what}: expected {code.name}, got OK")
            except grpc.RpcError as e:
                check(e.code() == code, f"{what} -> {code.name} ({e.code().name}: {e.details()})")

        # --- malformed and hostile messages ---
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: raw_score(b"\xff\xff\xff\xff\x0f garbage", timeout=10),
               "malformed protobuf")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: raw_score(b"\x12\x50abc", timeout=10),
               "truncated protobuf (length past the end)")
        expect(grpc.StatusCode.INVALID_ARGUMENT,
               lambda: ch.unary_unary("/routescore.v1.Scorer/ListRouters")(b"\x0a\x05ab", timeout=10),
               "malformed ListRoutersRequest")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: ch.unary_unary("/grpc.health.v1.Health/Check")(b"\x0b", timeout=10),
               "malformed HealthCheckRequest")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: raw_score(raw_prompt_request(b"abc\xff\xfedef"), timeout=10),
               "invalid UTF-8 prompt")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: raw_score(raw_prompt_request(b"\xc3\x28"), timeout=10),
               "invalid UTF-8 (bad continuation byte)")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: raw_score(raw_prompt_request(b"\xed\xa0\x80"), timeout=10),
               "invalid UTF-8 (encoded surrogate)")
        expect(grpc.StatusCode.RESOURCE_EXHAUSTED,
               lambda: scorer.Score(pb.ScoreRequest(prompts=["x" * 300000]), timeout=10), "oversized message (300 KB > 256 KiB)")
        expect(grpc.StatusCode.INVALID_ARGUMENT,
               lambda: scorer.Score(pb.ScoreRequest(prompts=["ok", "y" * 9000]), timeout=10), "prompt over max_prompt_bytes")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: scorer.Score(pb.ScoreRequest(prompts=[]), timeout=10), "no prompts")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: scorer.Score(pb.ScoreRequest(prompts=["a", ""]), timeout=10),
               "an empty prompt")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: scorer.Score(pb.ScoreRequest(prompts=["   \t "]), timeout=10),
               "a whitespace-only prompt")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: scorer.Score(pb.ScoreRequest(prompts=["a"] * 301), timeout=10),
               "too many prompts (301 > 300)")
        expect(grpc.StatusCode.INVALID_ARGUMENT,
               lambda: scorer.Score(pb.ScoreRequest(prompts=["a"], router="no-such-router"), timeout=10), "unknown router")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: scorer.Score(pb.ScoreRequest(prompts=["a"], threshold=1.5), timeout=10),
               "threshold 1.5")
        expect(grpc.StatusCode.INVALID_ARGUMENT,
               lambda: scorer.Score(pb.ScoreRequest(prompts=["a"], threshold=float("nan")), timeout=10), "threshold NaN")
        expect(grpc.StatusCode.INVALID_ARGUMENT,
               lambda: scorer.Score(pb.ScoreRequest(prompts=["a"], strong_share=0.0), timeout=10), "strong_share 0")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: ch.stream_unary("/routescore.v1.Scorer/Score")(iter([]), timeout=10),
               "a unary call that sends no message")
        # a stream fed garbage ends INVALID_ARGUMENT... no: per-request errors ride in the responses
        raw_stream = ch.stream_stream("/routescore.v1.Scorer/ScoreStream")
        outs = list(raw_stream(iter([b"\xff\xff\xff", raw_prompt_request(b"fine")]), timeout=30))
        resp = [pb.ScoreResponse.FromString(o) for o in outs]
        check(len(resp) == 2 and resp[0].error.code == 3 and len(resp[1].scores) == 1,
              "ScoreStream: a malformed message gets an error response, the next one is scored")
        still_serving("malformed input")

        # --- NUL inside strings: refused, never cut short ---
        name = scorer.ListRouters(pb.ListRoutersRequest(), timeout=10).routers[0].name
        check(code_ok(scorer, pb, name), f"router '{name}' by name works")
        for bad in (name + "\0evil", "\0", "\0" + name):
            expect(grpc.StatusCode.INVALID_ARGUMENT,
                   lambda: scorer.Score(pb.ScoreRequest(prompts=["a"], router=bad), timeout=10), f"router name {bad!r}")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: scorer.Score(pb.ScoreRequest(prompts=["ok", "a\0b"]), timeout=10),
               "a prompt with an embedded NUL")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: scorer.Score(pb.ScoreRequest(prompts=["\0"]), timeout=10),
               "a prompt that is one NUL")
        try:
            scorer.Score(pb.ScoreRequest(prompts=["ok", "a\0b"]), timeout=10)
        except grpc.RpcError as e:
            check("prompts[1]" in e.details(), f"the message names the prompt ({e.details()})")
        outs = list(scorer.ScoreStream(iter([pb.ScoreRequest(prompts=["x\0y"], request_id=1),
                                             pb.ScoreRequest(prompts=["fine"], router=name + "\0", request_id=2),
                                             pb.ScoreRequest(prompts=["fine"], request_id=3)]), timeout=30))
        check([(o.request_id, o.error.code) for o in outs] == [(1, 3), (2, 3), (3, 0)] and len(outs[2].scores) == 1,
              f"ScoreStream: NUL in a prompt or router name -> an INVALID_ARGUMENT response, the next is scored "
              f"({[(o.request_id, o.error.code) for o in outs]})")
        expect(grpc.StatusCode.INVALID_ARGUMENT,
               lambda: health.Check(hp.HealthCheckRequest(service="routescore.v1.Scorer\0evil"), timeout=10),
               "Health/Check of a service name with a NUL")
        expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: health.Check(hp.HealthCheckRequest(service="\0"), timeout=10),
               "Health/Check of service '\\0'")
        refl = st.refl_grpc.ServerReflectionStub(ch)
        try:
            list(refl.ServerReflectionInfo(iter([st.refl.ServerReflectionRequest(
                file_containing_symbol="routescore.v1.Scorer\0x")]), timeout=10))
            check(False, "reflection request with a NUL: expected INVALID_ARGUMENT, got OK")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"reflection request with a NUL -> {e.code().name}")
        still_serving("NUL bytes")

        m0 = srv.metrics()
        drop_deadline0 = su.metric_value(m0, "routescore_dropped_prompts_total", {"reason": "deadline"}) or 0
        drop_cancel0 = su.metric_value(m0, "routescore_dropped_prompts_total", {"reason": "cancelled"}) or 0
        prompts0 = su.metric_value(m0, "routescore_prompts_total") or 0

        # --- a deadline that expires in the queue: DEADLINE_EXCEEDED, never computed ---
        blocker = scorer.Score.future(pb.ScoreRequest(prompts=[LONG] * 48), timeout=120)  # ~3 batches of long prompts
        time.sleep(0.05)
        t0 = time.time()
        expect(grpc.StatusCode.DEADLINE_EXCEEDED,
               lambda: scorer.Score(pb.ScoreRequest(prompts=[LONG + str(i) for i in range(16)]), timeout=0.15),
               "a request whose deadline passes while queued")
        check(time.time() - t0 < 1.0, f"DEADLINE_EXCEEDED arrives at the deadline ({time.time() - t0:.2f}s)")
        expect(grpc.StatusCode.DEADLINE_EXCEEDED,
               lambda: scorer.Score(pb.ScoreRequest(prompts=["already late"]), timeout=0.000001), "an already-expired deadline")
        blocker.result()
        t0 = time.time()
        while su.metric_value(srv.metrics(), "routescore_queue_prompts") != 0 and time.time() - t0 < 60:
            time.sleep(0.05)
        m1 = srv.metrics()
        dropped = (su.metric_value(m1, "routescore_dropped_prompts_total", {"reason": "deadline"}) or 0) - drop_deadline0
        scored = (su.metric_value(m1, "routescore_prompts_total") or 0) - prompts0
        check(dropped >= 16, f"the expired requests' prompts left the queue unscored ({dropped:.0f} >= 16)")
        check(scored == 48, f"only the blocker's 48 prompts were computed ({scored:.0f})")
        still_serving("expired deadlines")

        # --- cancellation mid-request: prompts not yet computed are dropped ---
        m1 = srv.metrics()
        prompts1 = su.metric_value(m1, "routescore_prompts_total") or 0
        drop_cancel0 = su.metric_value(m1, "routescore_dropped_prompts_total", {"reason": "cancelled"}) or 0
        fut = scorer.Score.future(pb.ScoreRequest(prompts=[LONG + str(i) for i in range(160)]), timeout=300)
        t0 = time.time()  # cancel once its first 16-prompt batch is done (slow builds take longer)
        while (su.metric_value(srv.metrics(), "routescore_prompts_total") or 0) - prompts1 < 16 and time.time() - t0 < 120:
            time.sleep(0.02)
        fut.cancel()
        try:
            fut.result()
            check(False, "cancelled call completed")
        except grpc.FutureCancelledError:
            check(True, "client-side cancel mid-request")
        # The queue gauges drop at the cancel itself; batches already formed still end (computed or dropped).
        t_c = time.time()
        while su.metric_value(srv.metrics(), "routescore_queue_prompts") != 0 and time.time() - t_c < 2:
            time.sleep(0.005)
        check(su.metric_value(srv.metrics(), "routescore_queue_prompts") == 0,
              f"queue empty {time.time() - t_c:.3f}s after the cancel (before its batches end)")

        def accounted(m):
            return ((su.metric_value(m, "routescore_dropped_prompts_total", {"reason": "cancelled"}) or 0) - drop_cancel0
                    + (su.metric_value(m, "routescore_prompts_total") or 0) - prompts1)
        t0 = time.time()
        while accounted(srv.metrics()) < 160 and time.time() - t0 < 120:
            time.sleep(0.05)
        m2 = srv.metrics()
        dropped = (su.metric_value(m2, "routescore_dropped_prompts_total", {"reason": "cancelled"}) or 0) - drop_cancel0
        scored = (su.metric_value(m2, "routescore_prompts_total") or 0) - prompts1
        check(dropped > 0 and scored < 160 and dropped + scored == 160,
              f"cancelled: {scored:.0f} prompts computed before the cancel, {dropped:.0f} dropped unscored")
        check(su.metric_value(m2, "routescore_queue_prompts") == 0, "queue empty again")
        still_serving("cancellation")
        ch.close()

    # --- queue overflow: a small queue refuses at once, never queues ---
    with su.serving(check, ["--model", router, "--max-batch-tokens", "2048", "--max-queue-tokens", "4096",
                            "--max-batch-size", "16"], what="exit 0 after SIGTERM") as srv:
        ch = srv.channel()
        scorer = st.scorer_grpc.ScorerStub(ch)
        codes, lat = [], []
        lock = threading.Lock()

        def client(k):
            t = time.time()
            c = su.code_of(lambda: scorer.Score(pb.ScoreRequest(prompts=[LONG + str(k)] * 8), timeout=120))  # ~2048 tokens
            with lock:
                codes.append(c)
                lat.append((c, time.time() - t))

        ts = [threading.Thread(target=client, args=(k,)) for k in range(12)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        n_ok = codes.count(grpc.StatusCode.OK)
        n_full = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        check(n_ok >= 2 and n_full >= 1 and n_ok + n_full == 12,
              f"queue overflow: {n_ok} OK, {n_full} RESOURCE_EXHAUSTED, nothing else ({set(codes)})")
        fast = [d for c, d in lat if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
        slow = [d for c, d in lat if c == grpc.StatusCode.OK]
        check(fast and max(fast) < max(slow), f"refusals are immediate (max {max(fast or [0]):.3f}s vs OK up to {max(slow):.3f}s)")
        m = srv.metrics()
        check((su.metric_value(m, "routescore_queue_refused_total") or 0) == n_full, "queue_refused_total counts them")
        check((su.metric_value(m, "routescore_requests_total", {"code": "RESOURCE_EXHAUSTED"}) or 0) == n_full,
              "requests_total{code=RESOURCE_EXHAUSTED} counts them")
        # 20 x 256 tokens > the whole queue
        expect_big = su.code_of(lambda: scorer.Score(pb.ScoreRequest(prompts=[LONG] * 20), timeout=30))
        check(expect_big == grpc.StatusCode.INVALID_ARGUMENT, f"a request larger than the whole queue -> INVALID_ARGUMENT ({expect_big})")
        r = scorer.Score(pb.ScoreRequest(prompts=["after the storm"]), timeout=30)
        check(len(r.scores) == 1, "serving after overflow")
        ch.close()
    check.done()


if __name__ == "__main__":
    main()
