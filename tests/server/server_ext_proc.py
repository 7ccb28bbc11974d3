"""server_ext_proc.py — Envoy ext_proc (envoy.service.ext_proc.v3.ExternalProcessor/Process).

The client is built from PyPI's xds-protos (Envoy's own generated code), so
wire compatibility is checked against Envoy's definitions, not routescore's
subset in proto/. The expected scores come from routescore.v1.Scorer/Score on
the same server with the last user message as the prompt.

Checked: the header mutations on a chat request (route, model, win_prob equal
to Score's, forged client decision headers removed, route cache cleared);
content-part arrays; the threshold and strong-share request headers; body
rewriting of "model"; a non-chat path passed through untouched; fail-open (a
malformed body, no user message, a bad header: unchanged with
x-routescore-error) and fail-closed (the same answered by Envoy with 400 and
a JSON error); auth; the metrics count.
"""
import json
import os
import signal
import struct
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402

su.use_xds()

try:
    from envoy.config.core.v3 import base_pb2 as core  # noqa: E402
    from envoy.service.ext_proc.v3 import external_processor_pb2 as ep  # noqa: E402
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as epg  # noqa: E402
except ImportError as e:  # pragma: no cover
    su.skip(f"xds-protos not found ({e}); install it with: {su.XDS_HINT}")


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def headers_msg(method, path, extra=(), eos=False):
    hs = [(":method", method), (":path", path), (":authority", "llm.example"), ("content-type", "application/json")]
    hs += list(extra)
    hm = core.HeaderMap(headers=[core.HeaderValue(key=k, raw_value=v.encode()) for k, v in hs])
    return ep.ProcessingRequest(request_headers=ep.HttpHeaders(headers=hm, end_of_stream=eos))


def body_msg(body, eos=True):
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return ep.ProcessingRequest(request_body=ep.HttpBody(body=body, end_of_stream=eos))


def set_headers(common):
    out = {}
    for o in common.header_mutation.set_headers:
        out[o.header.key] = (o.header.raw_value or o.header.value.encode()).decode()
    return out


def process(stub, msgs, metadata=None):
    return list(stub.Process(iter(msgs), timeout=30, metadata=metadata))


def check_envoy_config(check):
    """The Envoy configuration in docs/SERVING.md parses into Envoy's Bootstrap (xds-protos)."""
    import re
    from google.protobuf import json_format
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    # the typed_config types the config names, so that its Any fields resolve
    from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2  # noqa: F401
    from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
    from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
    import yaml
    with open(os.path.join(su.SRC, "docs", "SERVING.md")) as f:
        doc = f.read()
    sec = doc[doc.index("## Envoy ext_proc"):]
    m = re.search(r"```yaml\n(.*?)```", sec, re.S)
    check(m is not None, "docs/SERVING.md has the Envoy config")
    cfg = yaml.safe_load(m.group(1))
    try:
        bs = json_format.ParseDict(cfg, bootstrap_pb2.Bootstrap())
        hcm = bs.static_resources.listeners[0].filter_chains[0].filters[0].typed_config
        ok = "ext_proc" in hcm.type_url or "HttpConnectionManager" in hcm.type_url
        check(ok, "docs' Envoy config parses into Envoy's Bootstrap")
    except json_format.ParseError as e:
        check(False, f"docs' Envoy config parses into Envoy's Bootstrap ({e})")


def main():
    check, tmp, router, st = su.setup()
    check_envoy_config(check)
    pb = st.scorer
    conv = {"model": "auto", "temperature": 0.2, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Prove that the square root of 2 is irrational, then generalise to primes."}]}
    last = conv["messages"][-1]["content"]
    parts = {"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Write a haiku"}, {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
        {"type": "text", "text": "about autumn rain"}]}]}
    parts_text = "Write a haiku\nabout autumn rain"
    chat = "/v1/chat/completions"

    # ---- fail-open, body rewriting ----
    with su.serving(check, ["--model", router, "--ext-proc", "--ext-proc-rewrite-model"]) as srv:
        ch = srv.channel()
        xp = epg.ExternalProcessorStub(ch)
        scorer = st.scorer_grpc.ScorerStub(ch)
        # One prompt per Score call, as ext_proc sends them (a forward's arithmetic may differ in the last
        # bits with the batch it runs in).
        ref = scorer.Score(pb.ScoreRequest(prompts=[last]), timeout=30)
        want = ref.scores[0]
        want2 = scorer.Score(pb.ScoreRequest(prompts=[parts_text]), timeout=30).scores[0]

        ans = process(xp, [headers_msg("POST", chat, [("x-routescore-route", "strong"), ("x-routescore-model", "forged")]),
                           body_msg(conv)])
        check(len(ans) == 2, f"chat: one answer per message ({len(ans)})")
        h, b = ans[0], ans[1]
        check(h.WhichOneof("response") == "request_headers", "chat: headers answered with a HeadersResponse")
        rm = set(h.request_headers.response.header_mutation.remove_headers)
        check({"x-routescore-route", "x-routescore-model", "x-routescore-win-prob"} <= rm,
              f"chat: client-sent decision headers are removed ({sorted(rm)})")
        check(b.WhichOneof("response") == "request_body", "chat: body answered with a BodyResponse")
        cr = b.request_body.response
        sh = set_headers(cr)
        check(cr.status == ep.CommonResponse.CONTINUE, "chat: CONTINUE")
        check(cr.clear_route_cache, "chat: route cache cleared so routes can match the new headers")
        wp = float(sh.get("x-routescore-win-prob", "nan"))
        check(f32(wp) == f32(want.win_prob), f"chat: win_prob {wp} equals Score's {want.win_prob} on the last user message")
        route = "strong" if want.route == pb.ROUTE_STRONG else "weak"
        check(sh.get("x-routescore-route") == route, f"chat: route {sh.get('x-routescore-route')} equals Score's {route}")
        check(sh.get("x-routescore-model") == want.model, f"chat: model {sh.get('x-routescore-model')} equals Score's {want.model}")
        check(f32(float(sh.get("x-routescore-threshold", "nan"))) == f32(ref.threshold), "chat: threshold header is the router's")
        check("x-routescore-error" not in sh, "chat: no error header")
        check(cr.body_mutation.WhichOneof("mutation") == "body", "rewrite_model: the body is replaced")
        nb = json.loads(cr.body_mutation.body)
        check(nb["model"] == want.model, f"rewrite_model: body model {nb.get('model')} is the chosen model")
        check(nb["messages"] == conv["messages"] and nb["temperature"] == 0.2 and set(nb) == set(conv),
              "rewrite_model: the rest of the body is unchanged")

        # content-part arrays; no "model" in the body: it is added
        p2 = dict(parts)
        del p2["model"]
        ans = process(xp, [headers_msg("POST", chat + "?api-version=1"), body_msg(p2)])
        sh = set_headers(ans[1].request_body.response)
        check(f32(float(sh.get("x-routescore-win-prob", "nan"))) == f32(want2.win_prob),
              f"content parts: the text parts joined, scored as Score scores them ({sh} vs {want2.win_prob})")
        check(json.loads(ans[1].request_body.response.body_mutation.body).get("model") == want2.model,
              "rewrite_model: a body without model gets one")

        # decision headers
        for hv, rt in (("0", "strong"), ("1", "strong" if want.win_prob >= 1 else "weak")):
            ans = process(xp, [headers_msg("POST", chat, [("x-routescore-threshold", hv)]), body_msg(conv)])
            sh = set_headers(ans[1].request_body.response)
            check(sh.get("x-routescore-route") == rt and float(sh["x-routescore-threshold"]) == float(hv),
                  f"x-routescore-threshold {hv}: route {sh.get('x-routescore-route')}")
        ans = process(xp, [headers_msg("POST", chat, [("x-routescore-strong-share", "0.5")]), body_msg(conv)])
        sh = set_headers(ans[1].request_body.response)
        check("x-routescore-route" in sh, "x-routescore-strong-share: decided")
        ans = process(xp, [headers_msg("POST", chat, [("x-routescore-threshold", "1.5")]), body_msg(conv)])
        sh = set_headers(ans[1].request_body.response)
        check("x-routescore-route" not in sh and "x-routescore-threshold" in sh.get("x-routescore-error", ""),
              f"fail-open: a bad threshold header passes with an error ({sh.get('x-routescore-error')})")
        ans = process(xp, [headers_msg("POST", chat, [("x-routescore-router", "nope")]), body_msg(conv)])
        sh = set_headers(ans[1].request_body.response)
        check("unknown router" in sh.get("x-routescore-error", ""), "fail-open: an unknown router header passes with an error")

        # non-chat paths pass through untouched
        ans = process(xp, [headers_msg("GET", "/v1/models", eos=True)])
        hm = ans[0].request_headers.response.header_mutation
        check(len(ans) == 1 and not hm.set_headers and not ans[0].request_headers.response.HasField("body_mutation"),
              "GET /v1/models: passed through (no header set)")
        ans = process(xp, [headers_msg("POST", "/v1/embeddings"), body_msg({"input": "hi", "model": "e"})])
        br = ans[1].request_body.response
        check(not br.header_mutation.set_headers and not br.HasField("body_mutation"),
              "POST /v1/embeddings: the body passes untouched")
        ans = process(xp, [headers_msg("POST", "/v1/chat/completionsX"), body_msg(conv)])
        check(not ans[1].request_body.response.header_mutation.set_headers, "a path that only starts like chat passes")
        rh = ep.ProcessingRequest(response_headers=ep.HttpHeaders(headers=core.HeaderMap()))
        ans = process(xp, [headers_msg("POST", chat), body_msg(conv), rh])
        check(len(ans) == 3 and ans[2].WhichOneof("response") == "response_headers", "response headers answered in kind")

        # fail-open: bodies that cannot be scored pass unchanged, with the reason
        for what, body in (("malformed JSON", "{\"messages\": [ {\"role\": \"user\""),
                           ("trailing garbage", json.dumps(conv) + " x"),
                           ("not an object", "[1, 2]"),
                           ("no user message", {"messages": [{"role": "system", "content": "x"}]}),
                           ("no messages", {"prompt": "hi"}),
                           ("invalid UTF-8", b'{"messages": [{"role": "user", "content": "\xff"}]}'),
                           ("empty body", b"")):
            ans = process(xp, [headers_msg("POST", chat), body_msg(body)])
            br = ans[1].request_body.response
            sh = set_headers(br)
            check(ans[1].WhichOneof("response") == "request_body" and "x-routescore-error" in sh
                  and "x-routescore-route" not in sh and not br.HasField("body_mutation"),
                  f"fail-open, {what}: passes unchanged ({sh.get('x-routescore-error')})")
        ans = process(xp, [headers_msg("POST", chat), body_msg(conv, eos=False)])
        check("BUFFERED" in set_headers(ans[1].request_body.response).get("x-routescore-error", ""),
              "fail-open: a streamed (unbuffered) body passes with the reason")
        ans = process(xp, [headers_msg("POST", chat, eos=True)])
        check("without a body" in set_headers(ans[0].request_headers.response).get("x-routescore-error", ""),
              "fail-open: a chat request without a body passes with the reason")

        # not an ext_proc message at all
        raw = ch.stream_stream("/envoy.service.ext_proc.v3.ExternalProcessor/Process",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
        check(su.code_of(lambda: list(raw(iter([b"\xff\xff\xff"]), timeout=10))) == grpc.StatusCode.INVALID_ARGUMENT,
              "malformed ProcessingRequest -> INVALID_ARGUMENT")
        # the server still serves
        ans = process(xp, [headers_msg("POST", chat), body_msg(conv)])
        check(set_headers(ans[1].request_body.response).get("x-routescore-model") == want.model, "still serving after abuse")
        m = urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10).read().decode()
        n_ok = su.metric_value(m, "routescore_requests_total", {"method": "ExternalProcessor.Process", "code": "OK"}) or 0
        check(n_ok >= 7, f"metrics: scored ext_proc requests counted ({n_ok})")
        ch.close()

    # ---- fail-closed, configured model names, no rewrite ----
    with su.serving(check, ["--model", router, "--ext-proc", "--ext-proc-fail-closed",
                            "--ext-proc-strong-model", "big-llm", "--ext-proc-weak-model", "small-llm"]) as srv:
        ch = srv.channel()
        xp = epg.ExternalProcessorStub(ch)
        ans = process(xp, [headers_msg("POST", chat), body_msg(conv)])
        cr = ans[1].request_body.response
        sh = set_headers(cr)
        check(sh.get("x-routescore-model") == ("big-llm" if sh.get("x-routescore-route") == "strong" else "small-llm"),
              f"configured model names: {sh.get('x-routescore-route')} -> {sh.get('x-routescore-model')}")
        check(not cr.HasField("body_mutation"), "without rewrite_model the body is untouched")
        for what, msgs in (("malformed body", [headers_msg("POST", chat), body_msg("{oops")]),
                           ("bad threshold header", [headers_msg("POST", chat, [("x-routescore-threshold", "x")]),
                                                     body_msg(conv)])):
            ans = process(xp, msgs)
            last_ans = ans[-1]
            ok = last_ans.WhichOneof("response") == "immediate_response"
            ir = last_ans.immediate_response
            err = json.loads(ir.body).get("error", {}) if ok else {}
            check(ok and ir.status.code == 400 and err.get("code") == 400 and err.get("message"),
                  f"fail-closed, {what}: Envoy answers 400 with a JSON error ({err.get('message')})")
        ans = process(xp, [headers_msg("GET", "/healthz", eos=True)])
        check(ans[0].WhichOneof("response") == "request_headers", "fail-closed: a non-chat path still passes")
        # The server's own fault: a body that arrives once the drain has begun gets 503 from Envoy.
        go = threading.Event()

        def msgs():
            yield headers_msg("POST", chat)
            go.wait(30)
            yield body_msg(conv)
        it = xp.Process(msgs(), timeout=30)
        first = next(it)
        check(first.WhichOneof("response") == "request_headers", "drain: the headers were answered before SIGTERM")
        srv.signal(signal.SIGTERM)
        srv.wait_event("draining")
        go.set()
        try:
            rest = list(it)
        except grpc.RpcError as e:
            rest = [e]
        ir = rest[0].immediate_response if rest and isinstance(rest[0], ep.ProcessingResponse) else None
        check(ir is not None and ir.status.code == 503 and "shutting down" in json.loads(ir.body)["error"]["message"],
              f"fail-closed, draining: the open stream's body gets 503 ({rest[:1]})")
        ch.close()

    # ---- auth ----
    tokens = os.path.join(tmp, "tokens.txt")
    with open(tokens, "w") as f:
        f.write("xp-token\n")
    with su.serving(check, ["--model", router, "--ext-proc", "--auth-tokens", tokens]) as srv:
        ch = srv.channel()
        xp = epg.ExternalProcessorStub(ch)
        check(su.code_of(lambda: process(xp, [headers_msg("POST", chat), body_msg(conv)])) == grpc.StatusCode.UNAUTHENTICATED,
              "auth: Process without the token -> UNAUTHENTICATED")
        ans = process(xp, [headers_msg("POST", chat), body_msg(conv)], metadata=[("authorization", "Bearer xp-token")])
        check("x-routescore-route" in set_headers(ans[1].request_body.response), "auth: Process with the token is served")
        # A stream left idle between messages does not hold the drain: it ends OK when the listener closes.
        hold = threading.Event()

        def idle():
            yield headers_msg("POST", chat)
            hold.wait(60)
        it = xp.Process(idle(), timeout=60, metadata=[("authorization", "Bearer xp-token")])
        next(it)
        t0 = time.time()
        srv.signal(signal.SIGTERM)
        try:
            rest, code = list(it), grpc.StatusCode.OK
        except grpc.RpcError as e:
            rest, code = [], e.code()
        hold.set()
        check(code == grpc.StatusCode.OK and not rest and time.time() - t0 < 10,
              f"drain: an idle stream ends {code.name} after {time.time() - t0:.1f}s")
        ch.close()

    # ---- configuration ----
    import subprocess
    for what, xp_cfg, want in (("unknown key", {"enabled": True, "bogus": 1}, "ext_proc.bogus"),
                               ("wrong type", {"fail_open": "no"}, "ext_proc.fail_open"),
                               ("unknown router", {"enabled": True, "router": "nope"}, "ext_proc.router 'nope'")):
        cfgp = os.path.join(tmp, "xp.json")
        with open(cfgp, "w") as f:
            json.dump({"listen": "127.0.0.1:0", "metrics_listen": "", "ext_proc": xp_cfg, "routers": [{"model": router}]}, f)
        r = subprocess.run([su.binary(), "serve", "--config", cfgp], capture_output=True, text=True, timeout=120)
        check(r.returncode == 2 and want in r.stderr, f"config, {what}: exit {r.returncode}, names {want!r}")

    # ---- off by default ----
    with su.serving(check, ["--model", router]) as srv:
        ch = srv.channel()
        xp = epg.ExternalProcessorStub(ch)
        check(su.code_of(lambda: process(xp, [headers_msg("POST", chat)])) == grpc.StatusCode.UNIMPLEMENTED,
              "without --ext-proc: UNIMPLEMENTED")
        ch.close()
    check.done()


if __name__ == "__main__":
    main()
