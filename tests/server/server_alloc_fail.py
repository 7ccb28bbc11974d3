"""server_alloc_fail.py — one allocation failing at every position over a server request.

As tests/unit/test_alloc_fail.c does for the engine, but over the server: the test
binary tests/server/serve_faults.c (RS_FAULT_BIN) wraps the allocator of the
server's and engine's own code; with ROUTESCORE_TEST_ALLOC_FAIL_AT=N the N-th
allocation after the server logs "serving" fails, once. A first run counts
the allocations of the request (a Score call with two prompts and, when
--ext-proc is on, one ext_proc chat request); then for every N a fresh server
gets the same requests and must:
  - answer each with its correct scores, or end it with a clean status
    (RESOURCE_EXHAUSTED, UNAVAILABLE or INTERNAL with a message; an ext_proc
    answer may instead carry x-routescore-error);
  - still answer follow-up requests correctly (the counting run counts the
    drain's allocations too, so a late position falls in an early follow-up,
    which must then end cleanly; the last must be OK);
  - drain and exit 0 on SIGTERM (under ASan, LeakSanitizer turns a leak into
    a non-zero exit).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402

su.use_xds()
try:
    from envoy.config.core.v3 import base_pb2 as core  # noqa: E402
    from envoy.service.ext_proc.v3 import external_processor_pb2 as ep  # noqa: E402
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as epg  # noqa: E402
except ImportError:  # pragma: no cover
    ep = None

PROMPTS = ["What is 2+2?", "Prove that there are infinitely many primes."]
CHAT = {"model": "auto", "messages": [{"role": "user", "content": PROMPTS[1]}]}
CLEAN = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL}


def xp_request(stub):
    hs = [(":method", "POST"), (":path", "/v1/chat/completions")]
    h = ep.ProcessingRequest(request_headers=ep.HttpHeaders(
        headers=core.HeaderMap(headers=[core.HeaderValue(key=k, raw_value=v.encode()) for k, v in hs])))
    b = ep.ProcessingRequest(request_body=ep.HttpBody(body=json.dumps(CHAT).encode(), end_of_stream=True))
    ans = list(stub.Process(iter([h, b]), timeout=30))
    out = {}
    for o in ans[-1].request_body.response.header_mutation.set_headers:
        out[o.header.key] = o.header.raw_value.decode()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-positions", type=int, default=0, help="test at most this many positions, evenly spread (0: all)")
    args = ap.parse_args()
    check, tmp, router, st = su.setup()
    pb = st.scorer
    fault_bin = os.environ.get("RS_FAULT_BIN")
    if not fault_bin or not os.path.exists(fault_bin):
        su.skip("no fault-injection binary (RS_FAULT_BIN: the serve_faults test target)")
    os.environ["RS_BIN"] = fault_bin
    flags = ["--model", router, "--cq-threads", "1", "--metrics-listen", ""]
    use_xp = ep is not None
    if use_xp:
        flags += ["--ext-proc"]

    def run(n, follow_ups=3):
        """Starts a server failing allocation n; returns (outcomes, follow-up ok, exit code, counted)."""
        srv = su.Server(flags, env=dict(os.environ, ROUTESCORE_TEST_ALLOC_FAIL_AT=str(n)))
        ch = srv.channel()
        scorer = st.scorer_grpc.ScorerStub(ch)
        out = {}
        try:
            r = scorer.Score(pb.ScoreRequest(prompts=PROMPTS), timeout=30)
            out["score"] = ("ok", [x.win_prob for x in r.scores])
        except grpc.RpcError as e:
            out["score"] = (e.code(), e.details())
        if use_xp:
            xp = epg.ExternalProcessorStub(ch)
            try:
                out["xp"] = ("ok", xp_request(xp))
            except grpc.RpcError as e:
                out["xp"] = (e.code(), e.details())
        # Follow-ups: the counting run makes none, so a position past the requests' own allocations (the
        # drain's, there) falls in an early follow-up here, which must then end cleanly; the last must be OK.
        follow = []
        for _ in range(follow_ups):
            try:
                r2 = scorer.Score(pb.ScoreRequest(prompts=PROMPTS), timeout=30)
                follow.append([x.win_prob for x in r2.scores])
            except grpc.RpcError as e:
                follow.append((e.code(), e.details()))
        ch.close()
        rc = srv.stop()
        ev = srv.events("alloc_faults")
        return out, follow, rc, (ev[-1]["counted"] if ev else -1), srv

    base, follow, rc, counted, srv0 = run(-1, follow_ups=0)
    check(rc == 0 and base["score"][0] == "ok", f"counting run: served, exit {rc}")
    if base["score"][0] != "ok" or counted <= 0:
        print(srv0.log_text()[-3000:])
        check.done()
    want = base["score"][1]
    want_xp = base.get("xp", ("ok", {}))[1] if use_xp else None
    print(f"{counted} allocations counted over the request(s)")
    positions = list(range(counted))
    if args.max_positions and len(positions) > args.max_positions:
        step = len(positions) / args.max_positions
        positions = sorted({int(i * step) for i in range(args.max_positions)})
    bad = 0
    for n in positions:
        out, follow, rc, _, srv = run(n)
        sc = out["score"]
        ok_score = (sc[0] == "ok" and sc[1] == want) or (sc[0] in CLEAN and sc[1])
        ok_xp = True
        if use_xp:
            x = out["xp"]
            ok_xp = (x[0] == "ok" and (x[1] == want_xp or "x-routescore-error" in x[1])) or (x[0] in CLEAN and x[1])
        ok_follow = follow[-1] == want and all(f == want or (f[0] in CLEAN and f[1]) for f in follow)
        ok = ok_score and ok_xp and ok_follow and rc == 0
        if not ok:
            bad += 1
            print(f"allocation {n}: score {sc}, ext_proc {out.get('xp')}, follow-up {follow}, exit {rc}")
            print(srv.log_text()[-2000:])
        check(ok, f"allocation {n} fails: {sc[0] if sc[0] == 'ok' else sc[0].name}"
                  f"{'' if not use_xp else ', ext_proc ' + (out['xp'][0] if out['xp'][0] == 'ok' else out['xp'][0].name)}"
                  f", follow-ups {'ok' if ok_follow else follow}, exit {rc}")
    check.done()


if __name__ == "__main__":
    main()
