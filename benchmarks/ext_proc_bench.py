"""ext_proc_bench.py — what the Envoy ext_proc path costs beside a Score call.

One server (`routescore serve --ext-proc [--ext-proc-rewrite-model]`), one
client at a time, interleaved: a unary Score with the last user message, and
an ext_proc stream (request headers, then the buffered chat body) for the
same conversation. Prints p50/p90/p99 of each, in ms, client side.

    python3 benchmarks/ext_proc_bench.py --bin build/routescore --n 300 [--rewrite]
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "lib"))
import server_util as su  # noqa: E402

su.use_xds()
from envoy.config.core.v3 import base_pb2 as core  # noqa: E402
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep  # noqa: E402
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as epg  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rewrite", action="store_true")
    a = ap.parse_args()
    os.environ["RS_BIN"] = os.path.abspath(a.bin)
    check, tmp, router, st = su.setup()
    data = os.environ.get("RS_SHARED_DATA") or os.path.join(su.SRC, "..", "shared", "data", "routellm", "gsm8k")
    prompts = []
    for root, _, files in os.walk(data):
        for f in sorted(files):
            if f.endswith(".jsonl"):
                with open(os.path.join(root, f)) as fh:
                    for line in fh:
                        try:
                            r = json.loads(line)
                            p = r.get("prompt") or r.get("question")
                        except ValueError:
                            continue
                        if isinstance(p, str) and p.strip():
                            prompts.append(p[:300])
                        if len(prompts) >= a.n:
                            break
        if len(prompts) >= a.n:
            break
    while len(prompts) < a.n:
        prompts.append(f"Explain topic number {len(prompts)} in two sentences.")
    flags = ["--model", router, "--ext-proc", "--max-queue-delay-us", "0"] + (["--ext-proc-rewrite-model"] if a.rewrite else [])
    with su.serving(check, flags) as srv:
        ch = srv.channel()
        scorer = st.scorer_grpc.ScorerStub(ch)
        xp = epg.ExternalProcessorStub(ch)
        hm = core.HeaderMap(headers=[core.HeaderValue(key=":method", raw_value=b"POST"),
                                     core.HeaderValue(key=":path", raw_value=b"/v1/chat/completions")])
        hdr = ep.ProcessingRequest(request_headers=ep.HttpHeaders(headers=hm))
        t_score, t_xp = [], []
        for i, p in enumerate(prompts * 2):  # first pass warms up, second is measured
            body = json.dumps({"model": "auto", "messages": [{"role": "system", "content": "Be brief."},
                                                              {"role": "user", "content": p}]}).encode()
            t0 = time.perf_counter()
            scorer.Score(st.scorer.ScoreRequest(prompts=[p]), timeout=30)
            t1 = time.perf_counter()
            ans = list(xp.Process(iter([hdr, ep.ProcessingRequest(request_body=ep.HttpBody(body=body, end_of_stream=True))]),
                                  timeout=30))
            t2 = time.perf_counter()
            if len(ans) != 2 or not ans[1].request_body.response.header_mutation.set_headers:
                raise SystemExit(f"ext_proc answer without a decision: {ans}")
            if i >= len(prompts):
                t_score.append((t1 - t0) * 1e3)
                t_xp.append((t2 - t1) * 1e3)
        ch.close()
    for name, t in (("Score", t_score), ("ext_proc", t_xp)):
        print(f"{name:9s} n={len(t)} p50 {pct(t, 50):.2f} ms  p90 {pct(t, 90):.2f} ms  p99 {pct(t, 99):.2f} ms"
              f"  mean {statistics.mean(t):.2f} ms")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
