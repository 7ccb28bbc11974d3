"""server_header_bounds.py — request headers are bounded on both ports.

/metrics (libmicrohttpd, 32 KiB of connection memory for the request):
headers of a few KiB are served; one 64 KiB header, or 2,000 small ones, are
refused (an HTTP 4xx, or the connection closed) without a 200, and the
endpoint still serves afterwards. The slow-request deadline is tested by
server_metrics_http.py.

gRPC: metadata far past the core's limit (64 KiB in one entry, or 2,000
entries), sent by a client whose own limits are raised, ends the call with an
error, never OK, and the server still scores.
"""
import os
import re
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402


def http_get(port, extra_headers):
    """The status of GET /metrics with extra header lines (0: closed without a status line)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    req = "GET /metrics HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in extra_headers) + "Connection: close\r\n\r\n"
    try:
        s.sendall(req.encode())
    except OSError:
        pass
    data = b""
    try:
        while len(data) < 1 << 20:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except OSError:
        pass
    s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else 0


def main():
    check, tmp, router, st = su.setup()
    pb = st.scorer
    with su.serving(check, ["--model", router]) as srv:
        port = srv.metrics_port
        check(http_get(port, []) == 200, "/metrics: a plain scrape is served")
        check(http_get(port, [("X-Pad", "a" * 4096)]) == 200, "/metrics: a 4 KiB header is served")
        code = http_get(port, [("X-Pad", "a" * 65536)])
        check(code != 200 and (code == 0 or 400 <= code < 500), f"/metrics: a 64 KiB header is refused ({code})")
        code = http_get(port, [(f"X-H{i}", "v" * 20) for i in range(2000)])
        check(code != 200 and (code == 0 or 400 <= code < 500), f"/metrics: 2,000 headers are refused ({code})")
        check(http_get(port, []) == 200, "/metrics: still served afterwards")

        # The client's own core would refuse first: raise its limits so the server's decide.
        ch = srv.channel(options=[("grpc.max_metadata_size", 1 << 22), ("grpc.absolute_max_metadata_size", 1 << 22)])
        scorer = st.scorer_grpc.ScorerStub(ch)
        req = pb.ScoreRequest(prompts=["hello"])
        c1 = su.code_of(lambda: scorer.Score(req, timeout=10, metadata=[("x-pad", "a" * 65536)]))
        check(c1 != grpc.StatusCode.OK, f"gRPC: 64 KiB of metadata is refused ({c1.name})")
        c2 = su.code_of(lambda: scorer.Score(req, timeout=10, metadata=[(f"x-h{i}", "v" * 20) for i in range(2000)]))
        check(c2 != grpc.StatusCode.OK, f"gRPC: 2,000 metadata entries are refused ({c2.name})")
        ch.close()
        ch = srv.channel()
        r = st.scorer_grpc.ScorerStub(ch).Score(req, timeout=30)
        check(len(r.scores) == 1, "gRPC: still scoring afterwards")
        ch.close()
    check.done()


if __name__ == "__main__":
    main()
