"""http_vs_grpc.py — sequential one-prompt latency: HTTP/JSON POST /v1/score (keep-alive) vs gRPC Score.
Run from tests/: RS_BIN=../build/routescore python3 ../benchmarks/http_vs_grpc.py"""
import http.client, json, os, time, sys, statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import server_util as su
check, tmp, router, stubs = su.setup()
pb = stubs.scorer
with su.serving(check, ["--model", router, "--http-port", "0"]) as srv:
    port = srv.wait_event("listening")["http_port"]
    scorer = stubs.scorer_grpc.ScorerStub(srv.channel())
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"prompt": "What is the capital of France?"}).encode()
    for _ in range(20):
        c.request("POST", "/v1/score", body=body); c.getresponse().read()
        scorer.Score(pb.ScoreRequest(prompts=["What is the capital of France?"]), timeout=30)
    for rnd in range(3):
        th, tg = [], []
        for _ in range(200):
            t = time.perf_counter(); c.request("POST", "/v1/score", body=body); c.getresponse().read(); th.append(time.perf_counter() - t)
            t = time.perf_counter(); scorer.Score(pb.ScoreRequest(prompts=["What is the capital of France?"]), timeout=30); tg.append(time.perf_counter() - t)
        print(f"round {rnd}: median ms http {statistics.median(th)*1e3:.2f} grpc {statistics.median(tg)*1e3:.2f} ratio {statistics.median(th)/statistics.median(tg):.2f}")
