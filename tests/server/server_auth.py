"""server_auth.py — bearer-token auth, TLS and mutual TLS refusals.

Bearer tokens: no token, a wrong token and a wrong scheme get UNAUTHENTICATED
on Scorer and reflection; a listed token is served; Health stays open (the
orchestrator's probes carry no token). TLS: a plaintext client cannot talk
to a TLS server, a client trusting the test CA can. mTLS: a client without a
certificate, or with one from another CA, is refused; one signed by the
configured client CA is served. Certificates are made with the openssl CLI
at test time (skipped when openssl is missing).
"""
import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    os.makedirs(d, exist_ok=True)
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                "-subj", f"/CN={ca}", cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ca in (("server", "ca"), ("client", "ca"), ("rogue", "other-ca")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                f"/CN={'localhost' if name == 'server' else name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial", "-out",
                f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)

    def rd(n):
        with open(os.path.join(d, n), "rb") as f:
            return f.read()
    return rd


def scrape(url, token=None, ctx=None):
    """HTTP status of GET url (0: the connection or handshake failed)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status if b"routescore_ready" in r.read() else -1
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ssl.SSLError):
        return 0


def main():
    check, tmp, router, st = su.setup()
    pb, hp = st.scorer, st.health

    # ---- bearer tokens ----
    tokens = os.path.join(tmp, "tokens.txt")
    with open(tokens, "w") as f:
        f.write("# one token a line\n  s3cret-token-1  \n\nsecond-token\n")
    with su.serving(check, ["--model", router, "--auth-tokens", tokens]) as srv:
        ch = srv.channel()
        scorer = st.scorer_grpc.ScorerStub(ch)
        req = pb.ScoreRequest(prompts=["hello"])

        check(su.code_of(lambda: scorer.Score(req, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED, "no token -> UNAUTHENTICATED")
        check(su.code_of(lambda: scorer.Score(req, timeout=10, metadata=[("authorization", "Bearer wrong")]))
              == grpc.StatusCode.UNAUTHENTICATED, "wrong token -> UNAUTHENTICATED")
        check(su.code_of(lambda: scorer.Score(req, timeout=10, metadata=[("authorization", "Basic s3cret-token-1")]))
              == grpc.StatusCode.UNAUTHENTICATED, "wrong scheme -> UNAUTHENTICATED")
        check(su.code_of(lambda: scorer.Score(req, timeout=10, metadata=[("authorization", "Bearer s3cret-token-")]))
              == grpc.StatusCode.UNAUTHENTICATED, "a token's prefix -> UNAUTHENTICATED")
        check(su.code_of(lambda: scorer.Score(req, timeout=10, metadata=[("authorization", "Bearer s3cret-token-1")]))
              == grpc.StatusCode.OK, "first token -> OK (surrounding blanks in the file ignored)")
        check(su.code_of(lambda: scorer.Score(req, timeout=10, metadata=[("authorization", "bearer second-token")]))
              == grpc.StatusCode.OK, "second token, scheme case-insensitive -> OK")
        check(su.code_of(lambda: scorer.ListRouters(pb.ListRoutersRequest(), timeout=10)) == grpc.StatusCode.UNAUTHENTICATED,
              "ListRouters needs the token too")
        refl = ch.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                request_serializer=st.refl.ServerReflectionRequest.SerializeToString,
                                response_deserializer=st.refl.ServerReflectionResponse.FromString)
        check(su.code_of(lambda: list(refl(iter([st.refl.ServerReflectionRequest(list_services="")]), timeout=10)))
              == grpc.StatusCode.UNAUTHENTICATED, "reflection needs the token")
        h = st.health_grpc.HealthStub(ch).Check(hp.HealthCheckRequest(), timeout=10)
        check(h.status == hp.HealthCheckResponse.SERVING, "Health needs no token (probes)")
        murl = f"http://127.0.0.1:{srv.metrics_port}/metrics"
        check(scrape(murl) == 401, "/metrics without a token -> 401")
        check(scrape(murl, "wrong") == 401, "/metrics with a wrong token -> 401")
        check(scrape(murl, "second-token") == 200, "/metrics with a listed token -> 200")
        req_m = urllib.request.Request(murl, headers={"Authorization": "Bearer s3cret-token-1"})
        m = urllib.request.urlopen(req_m, timeout=10).read().decode()
        check((su.metric_value(m, "routescore_requests_total", {"code": "UNAUTHENTICATED"}) or 0) >= 5,
              "refusals counted by code")
        ch.close()
    cfg = os.path.join(tmp, "open-metrics.json")
    with open(cfg, "w") as f:
        json.dump({"metrics_open": True, "auth": {"bearer_tokens_file": tokens}, "routers": [{"model": router}]}, f)
    with su.serving(check, ["--config", cfg]) as srv:
        check(scrape(f"http://127.0.0.1:{srv.metrics_port}/metrics") == 200,
              "metrics_open: /metrics needs no token while Score does")

    if not shutil.which("openssl"):
        print("openssl missing: TLS part skipped")
        check.done()
    rd = make_pki(os.path.join(tmp, "pki"))
    pki = os.path.join(tmp, "pki")
    opts = [("grpc.ssl_target_name_override", "localhost")]

    # ---- TLS ----
    with su.serving(check, ["--model", router, "--tls-cert", os.path.join(pki, "server.pem"),
                            "--tls-key", os.path.join(pki, "server.key")]) as srv:
        plain = st.scorer_grpc.ScorerStub(grpc.insecure_channel(srv.addr))
        try:
            plain.Score(pb.ScoreRequest(prompts=["hi"]), timeout=5)
            check(False, "plaintext client refused by a TLS server")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAVAILABLE, f"plaintext client -> {e.code().name}")
        creds = grpc.ssl_channel_credentials(root_certificates=rd("ca.pem"))
        sch = grpc.secure_channel(srv.addr, creds, options=opts)
        r = st.scorer_grpc.ScorerStub(sch).Score(pb.ScoreRequest(prompts=["hi"]), timeout=20)
        check(len(r.scores) == 1, "TLS client trusting the CA is served")
        wrong = grpc.secure_channel(srv.addr, grpc.ssl_channel_credentials(root_certificates=rd("other-ca.pem")), options=opts)
        try:
            st.scorer_grpc.ScorerStub(wrong).Score(pb.ScoreRequest(prompts=["hi"]), timeout=5)
            check(False, "client not trusting the server's CA fails")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAVAILABLE, f"client trusting another CA -> {e.code().name}")
        sch.close()
        murl = f"https://127.0.0.1:{srv.metrics_port}/metrics"
        ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
        check(scrape(murl, ctx=ctx) == 200, "/metrics over HTTPS with the gRPC certificate")
        check(scrape(f"http://127.0.0.1:{srv.metrics_port}/metrics") == 0, "/metrics refuses plain HTTP under TLS")

    # ---- mTLS ----
    with su.serving(check, ["--model", router, "--tls-cert", os.path.join(pki, "server.pem"),
                            "--tls-key", os.path.join(pki, "server.key"),
                            "--tls-client-ca", os.path.join(pki, "ca.pem")]) as srv:
        def try_client(key, cert):
            creds = grpc.ssl_channel_credentials(root_certificates=rd("ca.pem"), private_key=key, certificate_chain=cert)
            c = grpc.secure_channel(srv.addr, creds, options=opts)
            try:
                return su.code_of(lambda: st.scorer_grpc.ScorerStub(c).Score(pb.ScoreRequest(prompts=["hi"]), timeout=5))
            finally:
                c.close()

        check(try_client(None, None) == grpc.StatusCode.UNAVAILABLE, "mTLS: a client without a certificate is refused")
        check(try_client(rd("rogue.key"), rd("rogue.pem")) == grpc.StatusCode.UNAVAILABLE,
              "mTLS: a certificate from another CA is refused")
        check(try_client(rd("client.key"), rd("client.pem")) == grpc.StatusCode.OK, "mTLS: the client CA's certificate is served")

        def mctx(name):
            c = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
            if name:
                c.load_cert_chain(os.path.join(pki, f"{name}.pem"), os.path.join(pki, f"{name}.key"))
            return c
        murl = f"https://127.0.0.1:{srv.metrics_port}/metrics"
        check(scrape(murl, ctx=mctx(None)) in (0, 403), f"/metrics mTLS: no client certificate refused ({scrape(murl, ctx=mctx(None))})")
        check(scrape(murl, ctx=mctx("rogue")) in (0, 403), "/metrics mTLS: another CA's certificate refused")
        check(scrape(murl, ctx=mctx("client")) == 200, "/metrics mTLS: the client CA's certificate is served")
    check.done()


if __name__ == "__main__":
    main()
