"""server_http.py — the HTTP/JSON API (--http-port) with a real HTTP client (http.client).

Checks: POST /v1/score equals gRPC Score and `routescore label` on the same prompts; a request with
OpenAI `messages` (string content and content-part lists) equals the request with the last user
message as its prompt, over HTTP and gRPC; string request ids (request_key) round-trip over both and
are logged with x-request-id and traceparent; decision_rule names the rule; GET /v1/routers,
/healthz and /readyz; malformed JSON, an unknown field, an unknown router (404), an oversized body
(413), a slow client (the request timeout closes it), keep-alive (several requests on one
connection), bearer auth refused (401) and accepted, a full queue (429) and the drain (503 with
Retry-After).
"""
import http.client
import json
import os
import select
import socket
import subprocess
import threading
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402


def http_port(srv):
    return srv.wait_event("listening")["http_port"]


def req(port, method, path, body=None, headers=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    raw = r.read()
    try:
        js = json.loads(raw)
    except ValueError:
        js = None
    if conn is None:
        c.close()
    return r.status, js, r


def label_scores(router, prompts, tmp):
    inp, out = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
    with open(inp, "w") as f:
        for i, p in enumerate(prompts):
            f.write(json.dumps({"id": i, "prompt": p}) + "\n")
    subprocess.run([su.binary(), "label", "--model", router, "--in", inp, "--out", out, "--quiet"], check=True)
    with open(out) as f:
        rows = {r["id"]: r for r in map(json.loads, f)}
    return [rows[i] for i in range(len(prompts))]


def main():
    check, tmp, router, stubs = su.setup()
    pb = stubs.scorer
    prompts = ["hi", "What is the capital of France?", "Write a proof that sqrt(2) is irrational, step by step.",
               "Translate 'good morning' into German and explain the grammar."]
    lab = label_scores(router, prompts, tmp)
    srv_t0 = time.time()
    with su.serving(check, ["--model", router, "--http-port", "0", "--log-level", "info"]) as srv:
        port = http_port(srv)
        check(isinstance(port, int) and port > 0, f"the listening line names the HTTP port ({port})")
        st, js, _ = req(port, "POST", "/v1/score", {"prompts": prompts, "request_key": "req-abc-1"},
                        {"x-request-id": "xr-77", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
        check(st == 200, f"POST /v1/score: 200 ({st} {js})")
        scorer = stubs.scorer_grpc.ScorerStub(srv.channel())
        g = scorer.Score(pb.ScoreRequest(prompts=prompts, request_key="grpc-key-9"), timeout=30,
                         metadata=[("x-request-id", "xr-grpc"), ("traceparent", "00-aa-bb-01")])
        hw = [s["win_prob"] for s in js["scores"]]
        hw = [su.f32(x) for x in hw]
        check(hw == [su.f32(s.win_prob) for s in g.scores], "HTTP scores equal gRPC's (float32, bit for bit)")
        check(hw == [su.f32(r["win_prob"]) for r in lab], f"HTTP scores equal `label`'s ({hw} vs {[r['win_prob'] for r in lab]})")
        check([s["route"] for s in js["scores"]] == [pb.Route.Name(s.route) for s in g.scores], "routes equal gRPC's")
        check(js["request_key"] == "req-abc-1" and g.request_key == "grpc-key-9", "request_key echoed (HTTP and gRPC)")
        check(js["decision_rule"] == "DECISION_RULE_ROUTER_THRESHOLD" and
              g.decision_rule == pb.DECISION_RULE_ROUTER_THRESHOLD, "decision_rule: the router's threshold")
        st, js2, _ = req(port, "POST", "/v1/score", {"prompt": prompts[1], "threshold": 0.0})
        check(st == 200 and js2["decision_rule"] == "DECISION_RULE_REQUEST_THRESHOLD" and js2["scores"][0]["route"] == "ROUTE_STRONG",
              "a request threshold: its rule, and threshold 0 routes strong")
        st, js3, _ = req(port, "POST", "/v1/score", {"prompt": prompts[1], "strong_share": 0.5})
        check(st == 200 and js3["decision_rule"] == "DECISION_RULE_STRONG_SHARE_WARMING_UP",
              f"strong_share below min_samples says it is warming up ({js3.get('decision_rule')}, samples {js3.get('strong_share_samples')})")
        time.sleep(0.3)
        logs = srv.events("request")
        check(any(r.get("request_key") == "req-abc-1" and r.get("x_request_id") == "xr-77" and
                  r.get("traceparent", "").startswith("00-4bf9") and "queue_us" in r for r in logs),
              "HTTP: request_key, x-request-id and traceparent logged with the stage timings")
        check(any(r.get("request_key") == "grpc-key-9" and r.get("x_request_id") == "xr-grpc" for r in logs),
              "gRPC: request_key and x-request-id metadata logged")
        # messages
        conv = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "old question"},
                {"role": "assistant", "content": "old answer"}, {"role": "user", "content": prompts[2]}]
        st, jm, _ = req(port, "POST", "/v1/score", {"messages": conv})
        check(st == 200 and su.f32(jm["scores"][0]["win_prob"]) == hw[2], f"messages (string content) equal the prompt ({st} {jm})")
        parts = [{"role": "user", "content": [{"type": "text", "text": "Write a proof that sqrt(2)"},
                                              {"type": "image_url", "image_url": {"url": "http://x"}},
                                              {"type": "text", "text": "is irrational, step by step."}]}]
        joined = "Write a proof that sqrt(2)\nis irrational, step by step."
        st, jp, _ = req(port, "POST", "/v1/score", {"messages": parts})
        st2, jj, _ = req(port, "POST", "/v1/score", {"prompt": joined})
        check(st == 200 and st2 == 200 and jp["scores"][0]["win_prob"] == jj["scores"][0]["win_prob"],
              "content parts: the text parts joined with newlines")
        gm = scorer.Score(pb.ScoreRequest(messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in conv]),
                          timeout=30)
        check(su.f32(gm.scores[0].win_prob) == hw[2], "gRPC messages equal the prompt")
        gp = scorer.Score(pb.ScoreRequest(messages=[pb.ChatMessage(role="user", content_parts=[
            pb.ChatContentPart(type="text", text="Write a proof that sqrt(2)"), pb.ChatContentPart(type="image_url"),
            pb.ChatContentPart(type="text", text="is irrational, step by step.")])]), timeout=30)
        check(su.f32(gp.scores[0].win_prob) == su.f32(jj["scores"][0]["win_prob"]), "gRPC content parts equal HTTP's")
        st, je, _ = req(port, "POST", "/v1/score", {"messages": [{"role": "assistant", "content": "x"}]})
        check(st == 400 and "user" in je["error"]["message"], f"messages without a user message: 400 ({st} {je})")
        # errors
        st, je, _ = req(port, "POST", "/v1/score", {"prompts": prompts}, {"x-request-timeout-ms": "0.001"})
        check(st == 504 and je["error"]["code"] == "DEADLINE_EXCEEDED", f"a deadline already passed: 504 ({st} {je})")
        st, je, _ = req(port, "POST", "/v1/score", {"messages": conv, "prompts": ["a"]})
        check(st == 400 and "not both" in je["error"]["message"], f"messages and prompts: 400 ({st} {je})")
        st, je, _ = req(port, "POST", "/v1/score", b"{\"prompts\": [\"a\"")
        check(st == 400 and je["error"]["code"] == "INVALID_ARGUMENT", f"malformed JSON: 400 ({st} {je})")
        st, je, _ = req(port, "POST", "/v1/score", {"prompts": ["a"], "bogus": 1})
        check(st == 400 and "bogus" in je["error"]["message"], "unknown field: 400 naming it")
        st, je, _ = req(port, "POST", "/v1/score", b'{"messages": [], "messages": [], "messages": [{"role": "user", "content": "x"}]}')
        check(st == 400 and "twice" in je["error"]["message"], f"a field given twice: 400 ({st} {je})")
        st, je, _ = req(port, "POST", "/v1/score", b'{"prompts": ["a\\u0000b"]}')
        check(st == 400, f"a NUL escape: 400 ({st})")
        st, je, _ = req(port, "POST", "/v1/score", {"prompts": ["a"], "router": "nope"})
        check(st == 404 and je["error"]["code"] == "INVALID_ARGUMENT", f"unknown router: 404 ({st} {je})")
        # oversized: refused on the headers, before the body is read
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n")
        head = s.recv(4096).decode(errors="replace")
        s.close()
        check(head.startswith("HTTP/1.1 413") and "RESOURCE_EXHAUSTED" in head or head.startswith("HTTP/1.1 413"),
              f"oversized body (Content-Length): 413 ({head[:60]!r})")
        # and a chunked body that grows past the limit
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        head, sent = "", 0
        try:
            for _ in range(80):
                sent += 1
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                if select.select([s], [], [], 0.05)[0]:
                    head = s.recv(4096).decode(errors="replace")
                    break
        except (BrokenPipeError, ConnectionResetError):
            head = head or "closed"
        s.close()
        # libmicrohttpd cannot answer in the middle of a chunked upload: it closes the connection
        check(head.startswith("HTTP/1.1 413") or (head in ("", "closed") and sent < 80),
              f"oversized chunked body: 413 or closed before the end ({head[:60]!r}, {sent} of 80 chunks)")
        st, je, _ = req(port, "GET", "/v1/score")
        check(st == 405, f"GET /v1/score: 405 ({st})")
        st, je, _ = req(port, "GET", "/nope")
        check(st == 404 and "error" in je, f"unknown path: 404 ({st})")
        st, jr, _ = req(port, "GET", "/v1/routers")
        check(st == 200 and jr["routers"][0]["is_default"] is True and jr["routers"][0]["takes_text"] is True,
              f"GET /v1/routers ({st})")
        check(req(port, "GET", "/healthz")[0] == 200 and req(port, "GET", "/readyz")[0] == 200, "/healthz and /readyz: 200")
        # process_* metrics and the HTTP methods' counters on /metrics
        text = srv.metrics()
        rss = su.metric_value(text, "process_resident_memory_bytes")
        start = su.metric_value(text, "process_start_time_seconds")
        fds = su.metric_value(text, "process_open_fds")
        cpu = su.metric_value(text, "process_cpu_seconds_total")
        check(rss is not None and rss > 10e6, f"process_resident_memory_bytes ({rss})")
        check(start is not None and abs(start - srv_t0) < 120, f"process_start_time_seconds near the launch ({start} vs {srv_t0})")
        check(fds is not None and fds >= 5 and cpu is not None and cpu > 0, f"process_open_fds {fds}, process_cpu_seconds_total {cpu}")
        check((su.metric_value(text, "routescore_requests_total", {"method": "http.Score", "code": "OK"}) or 0) >= 5,
              "HTTP scores counted in routescore_requests_total (method http.Score)")
        try:
            from prometheus_client.parser import text_string_to_metric_families
            fams = {f.name for f in text_string_to_metric_families(text)}
            check({"process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds",
                   "process_start_time_seconds", "routescore_build_info"} <= fams,
                  "the exposition parses (prometheus_client) with the process_* families")
        except ImportError:
            print("note: prometheus_client not installed: exposition-format parse skipped")
        # keep-alive: several requests on one connection
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.connect()
        sock = c.sock
        sts = [req(port, "POST", "/v1/score", {"prompt": p}, conn=c)[0] for p in prompts]
        check(sts == [200] * 4 and c.sock is sock, "keep-alive: four requests on one connection")
        c.close()
        # slow client: headers never finish
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(20)
        t0 = time.time()
        try:
            got = s.recv(100)
        except (socket.timeout, ConnectionResetError):
            got = b"timeout"
        dt = time.time() - t0
        check(got != b"timeout" and dt < 12, f"slow client: closed by the request timeout ({dt:.1f}s, {got[:40]!r})")
        s.close()

    # the config file's key
    cfg = os.path.join(tmp, "http.json")
    with open(cfg, "w") as f:
        json.dump({"http_listen": "127.0.0.1:0", "http_request_timeout_s": 2, "routers": [{"model": router}]}, f)
    with su.serving(check, ["--config", cfg]) as srv:
        port = http_port(srv)
        check(port > 0 and req(port, "GET", "/readyz")[0] == 200, f"config http_listen serves ({port})")

    # auth
    tokens = os.path.join(tmp, "tokens")
    with open(tokens, "w") as f:
        f.write("tok-1\n")
    with su.serving(check, ["--model", router, "--http-port", "0", "--auth-tokens", tokens]) as srv:
        port = http_port(srv)
        st, je, r = req(port, "POST", "/v1/score", {"prompt": "hi"})
        check(st == 401 and je["error"]["code"] == "UNAUTHENTICATED" and r.getheader("WWW-Authenticate") == "Bearer",
              f"no token: 401 ({st})")
        check(req(port, "POST", "/v1/score", {"prompt": "hi"}, {"Authorization": "Bearer wrong"})[0] == 401, "wrong token: 401")
        check(req(port, "POST", "/v1/score", {"prompt": "hi"}, {"Authorization": "Bearer tok-1"})[0] == 200, "right token: 200")
        check(req(port, "GET", "/readyz")[0] == 200, "/readyz needs no token (like gRPC health)")

    # queue full -> 429, then drain -> 503
    with su.serving(check, ["--model", router, "--http-port", "0", "--max-queue-tokens", "64", "--max-batch-tokens", "64", "--max-tokens", "32",
                            "--max-queue-delay-us", "200000", "--grace", "20"]) as srv:
        port = http_port(srv)
        long = "word " * 40
        res = []

        def one():
            res.append(req(port, "POST", "/v1/score", {"prompts": [long]})[0])

        th = [threading.Thread(target=one) for _ in range(12)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        check(429 in res and 200 in res, f"a full queue: 429 for some, 200 for others ({sorted(res)})")
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        req(port, "GET", "/healthz", conn=c)
        srv.signal(15)
        time.sleep(0.3)
        st, je, r = req(port, "POST", "/v1/score", {"prompt": "hi"}, conn=c)
        check(st == 503 and r.getheader("Retry-After") == "1" and je["error"]["code"] == "UNAVAILABLE",
              f"draining: 503 with Retry-After ({st} {je})")
        st, _, _ = req(port, "GET", "/readyz")
        check(st == 503, f"draining: /readyz 503 ({st})")
    check.done()


if __name__ == "__main__":
    main()
