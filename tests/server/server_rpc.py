"""server_rpc.py — every RPC of a live `routescore serve`, and scores through
the server identical (bit for bit) to `routescore label` on the same prompts.

Covers: Health/Check (SERVING after warm-up; NOT_FOUND for an unknown
service), Health/Watch, ListRouters, Score (64 prompts in one call, per-request
threshold and strong_share, decisions and model names, truncation, timings),
ScoreStream (many requests, a failing one inside, request ids), server
reflection v1alpha and v1 (list_services, file_containing_symbol decoded with
the protobuf descriptor API, file_by_filename, a miss), an unknown method
(UNIMPLEMENTED), and the Prometheus endpoint. Then a router over a Llama
encoder (the tiny test model's first layer, head fitted here by `routescore
train --standardize`): Score through the server equals `routescore label`.
"""
import json
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402


def label_scores(router, prompts, tmp):
    inp, out = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
    with open(inp, "w") as f:
        for i, p in enumerate(prompts):
            f.write(json.dumps({"id": i, "prompt": p}) + "\n")
    subprocess.run([su.binary(), "label", "--model", router, "--in", inp, "--out", out, "--quiet"], check=True)
    res = {}
    with open(out) as f:
        for line in f:
            r = json.loads(line)
            res[r["id"]] = r
    return [res[i] for i in range(len(prompts))]


def main():
    check, tmp, router, st = su.setup()
    pb, hp = st.scorer, st.health
    with su.serving(check, ["--model", router, "--max-queue-delay-us", "1000"], what="SIGTERM when idle: exit 0") as srv:
        ch = srv.channel()
        health = st.health_grpc.HealthStub(ch)
        scorer = st.scorer_grpc.ScorerStub(ch)

        # --- health ---
        r = health.Check(hp.HealthCheckRequest(service=""), timeout=10)
        check(r.status == hp.HealthCheckResponse.SERVING, "Health/Check '' is SERVING after warm-up")
        r = health.Check(hp.HealthCheckRequest(service="routescore.v1.Scorer"), timeout=10)
        check(r.status == hp.HealthCheckResponse.SERVING, "Health/Check routescore.v1.Scorer is SERVING")
        try:
            health.Check(hp.HealthCheckRequest(service="no.such.Service"), timeout=10)
            check(False, "Health/Check of an unknown service fails")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND, f"Health/Check unknown service -> NOT_FOUND ({e.code()})")
        watch = health.Watch(hp.HealthCheckRequest(service=""), timeout=10)
        first = next(watch)
        check(first.status == hp.HealthCheckResponse.SERVING, "Health/Watch sends SERVING first")
        watch.cancel()
        w2 = health.Watch(hp.HealthCheckRequest(service="nope"), timeout=10)
        check(next(w2).status == hp.HealthCheckResponse.SERVICE_UNKNOWN, "Health/Watch unknown service -> SERVICE_UNKNOWN")
        w2.cancel()

        # --- ListRouters ---
        lr = scorer.ListRouters(pb.ListRoutersRequest(), timeout=10)
        check(len(lr.routers) == 1, "ListRouters lists one router")
        info = lr.routers[0]
        check(info.is_default and info.kind == "mf" and info.max_tokens > 0 and info.embed_dim == 384,
              f"ListRouters: default mf router, max_tokens {info.max_tokens}, embed_dim {info.embed_dim}")
        name = info.name

        # --- Score: 64 prompts in one call, identical to `routescore label` ---
        prompts = su.prompts_for_test()
        resp = scorer.Score(pb.ScoreRequest(prompts=prompts, request_id=7), timeout=60)
        check(len(resp.scores) == 64 and resp.request_id == 7 and resp.router == name,
              f"Score answers 64 prompts in one call ({len(resp.scores)})")
        want = label_scores(router, prompts, tmp)
        same = sum(su.f32(s.win_prob) == su.f32(w["win_prob"]) for s, w in zip(resp.scores, want))
        maxdiff = max(abs(s.win_prob - w["win_prob"]) for s, w in zip(resp.scores, want))
        check(same == 64, f"win_prob identical to `routescore label` for {same}/64 prompts (max diff {maxdiff:.3g})")
        check(all(s.tokens == w["tokens"] and s.truncated == w["truncated"] for s, w in zip(resp.scores, want)),
              "tokens and truncated flags equal label's")
        check(any(s.truncated for s in resp.scores), "the long prompt is reported truncated")
        thr = info.threshold
        ok_route = all((s.route == pb.ROUTE_STRONG) == (s.win_prob >= thr) and
                       s.model == (info.strong_model if s.route == pb.ROUTE_STRONG else info.weak_model)
                       for s in resp.scores)
        check(ok_route and abs(resp.threshold - thr) < 1e-7, "decisions use the router threshold and name the model")
        check(all(w["route"] == ("strong" if s.route == pb.ROUTE_STRONG else "weak") for s, w in zip(resp.scores, want)),
              "decisions equal label's")
        check(resp.total_us >= resp.inference_us > 0 and resp.tokenize_us > 0,
              f"timings: tokenize {resp.tokenize_us}us queue {resp.queue_us}us inference {resp.inference_us}us "
              f"total {resp.total_us}us")

        # the same prompts in 8 concurrent requests: other batch packings, the same scores
        results = [None] * 8

        def worker(k):
            results[k] = scorer.Score(pb.ScoreRequest(prompts=prompts[k * 8:(k + 1) * 8]), timeout=60)

        ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        split = [s.win_prob for r in results for s in r.scores]
        check(su.same_scores(split, [b.win_prob for b in resp.scores]),
              "scores do not depend on how prompts are batched")

        # per-request threshold and strong_share
        r0 = scorer.Score(pb.ScoreRequest(prompts=prompts, threshold=0.0), timeout=60)
        r1 = scorer.Score(pb.ScoreRequest(prompts=prompts, threshold=1.0), timeout=60)
        check(all(s.route == pb.ROUTE_STRONG for s in r0.scores), "threshold 0 routes everything strong")
        check(all(s.route == pb.ROUTE_WEAK or s.win_prob >= 1.0 for s in r1.scores), "threshold 1 routes (almost) all weak")
        rs = scorer.Score(pb.ScoreRequest(prompts=prompts, strong_share=0.25), timeout=60)
        share = sum(s.route == pb.ROUTE_STRONG for s in rs.scores) / len(rs.scores)
        check(0.1 <= share <= 0.45, f"strong_share 0.25 over the recent window gives share {share:.2f}")

        # --- ScoreStream ---
        def reqs():
            for i in range(20):
                yield pb.ScoreRequest(prompts=prompts[i:i + 3], request_id=1000 + i)
            yield pb.ScoreRequest(prompts=["ok", ""], request_id=5000)  # empty prompt: an error response
            yield pb.ScoreRequest(prompts=["fine"], router="nope", request_id=5001)

        got = {r.request_id: r for r in scorer.ScoreStream(reqs(), timeout=60)}
        check(len(got) == 22, f"ScoreStream answers every request ({len(got)}/22)")
        ok_ids = all(len(got[1000 + i].scores) == 3 and
                     su.same_scores([a.win_prob for a in got[1000 + i].scores], [b.win_prob for b in resp.scores[i:i + 3]])
                     for i in range(20) if 1000 + i in got)
        check(ok_ids, "ScoreStream scores match Score")
        e1, e2 = got.get(5000), got.get(5001)
        check(e1 is not None and e1.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "prompts[1]" in e1.error.message,
              f"ScoreStream: empty prompt -> error INVALID_ARGUMENT in its response ({e1.error if e1 else None})")
        check(e2 is not None and e2.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0],
              "ScoreStream: unknown router -> error response, stream goes on")

        # --- reflection (v1alpha and v1) ---
        for path in ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                     "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"):
            call = ch.stream_stream(path, request_serializer=st.refl.ServerReflectionRequest.SerializeToString,
                                    response_deserializer=st.refl.ServerReflectionResponse.FromString)
            qs = [st.refl.ServerReflectionRequest(list_services=""),
                  st.refl.ServerReflectionRequest(file_containing_symbol="routescore.v1.Scorer"),
                  st.refl.ServerReflectionRequest(file_by_filename="grpc/health/v1/health.proto"),
                  st.refl.ServerReflectionRequest(file_containing_symbol="no.such.Thing")]
            ans = list(call(iter(qs), timeout=10))
            check(len(ans) == 4, f"{path.split('/')[1]}: one answer per question")
            if len(ans) < 4:
                continue
            svcs = {s.name for s in ans[0].list_services_response.service}
            check({"routescore.v1.Scorer", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= svcs,
                  f"list_services: {sorted(svcs)}")
            fd = descriptor_pb2.FileDescriptorProto.FromString(ans[1].file_descriptor_response.file_descriptor_proto[0])
            methods = {m.name for s in fd.service for m in s.method}
            check(fd.package == "routescore.v1" and methods == {"Score", "ScoreStream", "ListRouters"},
                  f"file_containing_symbol: {fd.name} with methods {sorted(methods)}")
            fd2 = descriptor_pb2.FileDescriptorProto.FromString(ans[2].file_descriptor_response.file_descriptor_proto[0])
            check(fd2.package == "grpc.health.v1", "file_by_filename: the health proto")
            check(ans[3].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], "an unknown symbol -> NOT_FOUND")

        # --- unknown method ---
        try:
            ch.unary_unary("/routescore.v1.Scorer/Nope")(b"", timeout=10)
            check(False, "an unknown method fails")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNIMPLEMENTED, f"unknown method -> UNIMPLEMENTED ({e.code()})")

        # --- metrics ---
        m = srv.metrics()
        n_ok = su.metric_value(m, "routescore_requests_total", {"method": "Score", "code": "OK"})
        check(n_ok is not None and n_ok >= 12, f"metrics count Score OK requests ({n_ok})")
        for metric in ("routescore_prompts_total", "routescore_tokens_total", "routescore_batch_size_bucket",
                       "routescore_batch_tokens_bucket", "routescore_queue_wait_seconds_bucket",
                       "routescore_tokenize_seconds_bucket", "routescore_inference_seconds_bucket",
                       "routescore_decisions_total", "routescore_queue_prompts", "routescore_build_info",
                       "routescore_ready", "routescore_request_duration_seconds_bucket"):
            check(su.metric_value(m, metric) is not None, f"metric {metric} present")
        check(su.metric_value(m, "routescore_ready") == 1, "routescore_ready is 1")
        strong = su.metric_value(m, "routescore_decisions_total", {"route": "strong"}) or 0
        weak = su.metric_value(m, "routescore_decisions_total", {"route": "weak"}) or 0
        check(strong + weak == su.metric_value(m, "routescore_prompts_total"),
              f"decisions ({strong:.0f}+{weak:.0f}) = prompts scored")
        ch.close()
    check(bool(srv.events("drained")), "logged 'drained'")
    llama_encoder_router(check, tmp, st, su.prompts_for_test())
    check.done()


def llama_encoder_router(check, tmp, st, prompts):
    spec = os.path.join(tmp, "tiny-spec")
    os.makedirs(spec, exist_ok=True)
    with open(os.path.join(spec, "routescore.json"), "w") as f:
        json.dump({"kind": "embed", "encoder": os.path.join(os.environ["RS_TEST_DATA"], "causal_tiny", "router"),
                   "encoder_layers": 1, "pooling": "mean", "normalize": False}, f)
    train = os.path.join(tmp, "tiny-train.jsonl")
    with open(train, "w") as f:
        for i, p in enumerate(prompts):
            f.write(json.dumps({"prompt": p, "label": int(len(p) > 60)}) + "\n")
    router = os.path.join(tmp, "tiny-llm-mf")
    subprocess.run([su.binary(), "train", "--encoder", spec, "--in", train, "--out", router, "--standardize",
                    "--l2", "3", "--holdout-every", "0", "--quiet"], check=True, capture_output=True)
    want = label_scores(router, prompts, spec)  # its own in/out files
    with su.serving(check, ["--model", router]) as srv:
        with srv.channel() as ch:
            resp = st.scorer_grpc.ScorerStub(ch).Score(st.scorer.ScoreRequest(prompts=prompts), timeout=60)
    got = [s.win_prob for s in resp.scores]
    check(len(got) == len(prompts) and all(abs(g - w["win_prob"]) < 1e-6 for g, w in zip(got, want))
          and len(set(round(g, 4) for g in got)) > 3,
          f"Llama-encoder router: server = label ({got[:3]} vs {[w['win_prob'] for w in want[:3]]})")


if __name__ == "__main__":
    main()
