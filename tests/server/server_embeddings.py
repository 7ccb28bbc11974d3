#!/usr/bin/env python3
"""server_embeddings.py — client-sent embeddings through a live `routescore serve`.

RouteLLM's mf router takes 1536-d embeddings from a remote service; the gRPC
API carries them (ScoreRequest.embeddings) to the mf_routellm and sw_ranking
routers. Against one server holding an embeddings-only mf_routellm router, an
embeddings-only sw_ranking router and a text router:
- ListRouters states each router's client_embedding_dim and takes_text;
- scores through the server equal `routescore score --embeddings-in` on the
  same vectors (bit for bit: the same engine call) and the expected values
  tools/gen/gen_mf_routellm.py / gen_sw_ranking.py wrote with the numpy
  references of tests/lib/routellm_router_ref.py;
- concurrent callers' embeddings are batched (batch size histogram), a
  threshold per request applies, ScoreStream carries them too;
- a router with both (mf_routellm on a local encoder) takes text and
  embeddings from concurrent callers: batches switch kind in FIFO order and a
  prompt's text scores as its own embedding does;
- every wrong request is INVALID_ARGUMENT with a message that says why: both
  prompts and embeddings, the wrong width, a NaN or an infinity, embeddings
  to a text router, text to an embeddings-only router; the server serves on.
"""
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402


def load_case(data, name):
    d = os.path.join(data, name)
    with open(os.path.join(d, "embeddings.jsonl")) as f:
        embs = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(d, "expected.json")) as f:
        exp = json.load(f)["win_prob"]
    return d, embs, exp


def cli_scores(d):
    r = subprocess.run([su.binary(), "score", "--model", d, "--embeddings-in", os.path.join(d, "embeddings.jsonl")],
                       capture_output=True, text=True, check=True)
    return [json.loads(line)["win_prob"] for line in r.stdout.splitlines()]


def both_router(tmp):
    """An mf_routellm router on the tiny XLM-R test encoder (hidden 64), some
    prompts, and their embeddings from `routescore embed`."""
    import numpy as np
    from routellm_router_ref import save_safetensors
    from tiny_encoder import ENC, WORDS, embed

    rng = np.random.default_rng(11)
    prompts = [" ".join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(24)]
    emb = embed(tmp, prompts)
    d = os.path.join(tmp, "both")
    os.mkdir(d)
    H = emb.shape[1]
    save_safetensors(os.path.join(d, "model.safetensors"), {
        "P.weight": rng.standard_normal((3, 4)).astype(np.float32),
        "text_proj.0.weight": (rng.standard_normal((4, H)) / np.sqrt(H)).astype(np.float32),
        "classifier.0.weight": rng.standard_normal((1, 4)).astype(np.float32)})
    with open(os.path.join(d, "routescore.json"), "w") as f:
        json.dump({"kind": "mf_routellm", "encoder": ENC, "models": ["a", "b", "c"], "strong_model": "c",
                   "weak_model": "a"}, f)
    return d, prompts, [[float(x) for x in e] for e in emb]


def main():
    check, tmp, router, st = su.setup()
    pb = st.scorer
    data = os.environ.get("RS_TEST_DATA") or os.path.join(su.SRC, "tests", "data")
    mf_dir, mf_embs, mf_exp = load_case(data, "mf_routellm")
    sw_dir, sw_embs, sw_exp = load_case(data, "sw_ranking")
    both_dir, both_prompts, both_embs = both_router(tmp)
    cfg = os.path.join(tmp, "serve.json")
    with open(cfg, "w") as f:
        json.dump({"routers": [{"name": "mf", "model": mf_dir, "max_batch_size": 64, "max_queue_delay_us": 20000},
                               {"name": "sw", "model": sw_dir},
                               {"name": "text", "model": router},
                               {"name": "both", "model": both_dir, "max_batch_size": 8, "max_queue_delay_us": 5000}]}, f)

    def emb_req(router_name, embs, **kw):
        return pb.ScoreRequest(router=router_name, embeddings=[pb.Embedding(values=e) for e in embs], **kw)

    with su.serving(check, ["--config", cfg]) as srv:
        with srv.channel() as ch:
            stub = st.scorer_grpc.ScorerStub(ch)
            info = {r.name: r for r in stub.ListRouters(pb.ListRoutersRequest(), timeout=30).routers}
            check(info["mf"].client_embedding_dim == len(mf_embs[0]) and not info["mf"].takes_text and
                  info["sw"].client_embedding_dim == len(sw_embs[0]) and not info["sw"].takes_text and
                  info["text"].client_embedding_dim == 0 and info["text"].takes_text,
                  "ListRouters: client_embedding_dim and takes_text per router")

            for name, embs, exp, d, tol in (("mf", mf_embs, mf_exp, mf_dir, 1e-5), ("sw", sw_embs, sw_exp, sw_dir, 1e-4)):
                r = stub.Score(emb_req(name, embs), timeout=60)
                got = [s.win_prob for s in r.scores]
                cli = cli_scores(d)
                same = len(got) == len(cli) and all(su.f32(a) == su.f32(b) for a, b in zip(got, cli))
                worst = max(abs(a - b) for a, b in zip(got, exp)) if len(got) == len(exp) else float("inf")
                check(same, f"{name}: {len(got)} server scores identical to `routescore score --embeddings-in`")
                check(worst < tol, f"{name}: server scores vs numpy reference, max diff {worst:.2e} (< {tol})")
                check(all(s.tokens == 0 and not s.truncated for s in r.scores) and r.router == name,
                      f"{name}: embeddings report 0 tokens, never truncated")
                thr = 0.37
                r = stub.Score(emb_req(name, embs, threshold=thr), timeout=60)
                check(r.threshold == su.f32(thr) and all(
                    (s.route == pb.ROUTE_STRONG) == (s.win_prob >= su.f32(thr)) and
                    s.model == (info[name].strong_model if s.route == pb.ROUTE_STRONG else info[name].weak_model)
                    for s in r.scores), f"{name}: a per-request threshold decides each embedding")

            # Many concurrent one-embedding callers: answers right, batched.
            before = su.metric_value(srv.metrics(), "routescore_batch_size_count", {"router": "mf"}) or 0
            results, errs = su.callers(srv, st, None, 16, 4, make_req=lambda k, j: (
                (k * 4 + j) % len(mf_embs), emb_req("mf", [mf_embs[(k * 4 + j) % len(mf_embs)]])))
            m = srv.metrics()
            batches = (su.metric_value(m, "routescore_batch_size_count", {"router": "mf"}) or 0) - before
            ok = not errs and len(results) == 64 and all(abs(p - mf_exp[i]) < 1e-5 for i, p in results.values())
            check(ok, f"16 concurrent callers x 4 calls: all answered right ({len(results)} answers, errors {errs})")
            check(0 < batches < 64, f"their 64 embeddings were batched: {batches:.0f} forwards")

            # Text and embeddings to one router from concurrent callers.
            def mixed_req(k, j):  # callers k and k + 4 send the same prompts, as text (k < 4) or embeddings
                i = (k * 6 + j) % len(both_prompts)
                req = (pb.ScoreRequest(router="both", prompts=[both_prompts[i]]) if k < 4
                       else emb_req("both", [both_embs[i]]))
                return (i, k < 4), req

            both, errs = su.callers(srv, st, None, 8, 6, make_req=mixed_req)
            per = {}
            for (i, by_text), p in both.values():
                per.setdefault(i, {}).setdefault(by_text, []).append(p)
            pairs = [(v[True][0], v[False][0]) for v in per.values() if True in v and False in v]
            worst = max((abs(a - b) for a, b in pairs), default=float("inf"))
            check(not errs and len(both) == 48 and len(pairs) == len(both_prompts) and worst < 1e-6,
                  f"one router, text and embedding callers mixed: {len(both)} answers, {len(pairs)} prompts scored "
                  f"both ways, max |text - embedding| {worst:.1e} (errors {errs})")

            # ScoreStream carries embeddings too.
            reqs = [emb_req("mf", mf_embs[i:i + 3], request_id=100 + i) for i in range(0, 12, 3)]
            resps = list(stub.ScoreStream(iter(reqs), timeout=60))
            by_id = {r.request_id: r for r in resps}
            check(len(resps) == 4 and all(
                abs(by_id[100 + i].scores[j].win_prob - mf_exp[i + j]) < 1e-5 for i in range(0, 12, 3) for j in range(3)),
                "ScoreStream: 4 requests of 3 embeddings each, answered in full")

            # Wrong requests: INVALID_ARGUMENT, with a message that says why.
            dim = len(mf_embs[0])
            nan, inf = list(mf_embs[0]), list(mf_embs[0])
            nan[3], inf[dim - 1] = math.nan, -math.inf
            bad = [
                ("both prompts and embeddings", pb.ScoreRequest(router="mf", prompts=["hi"],
                                                                embeddings=[pb.Embedding(values=mf_embs[0])]),
                 "not both"),
                ("the wrong width", emb_req("mf", [mf_embs[0], mf_embs[1][:-1]]), f"embeddings[1]: {dim - 1} values"),
                ("an empty embedding", emb_req("mf", [[]]), "embeddings[0]: 0 values"),
                ("a NaN", emb_req("mf", [mf_embs[0], nan]), "embeddings[1]: value 3 is not finite"),
                ("an infinity", emb_req("mf", [inf]), f"embeddings[0]: value {dim - 1} is not finite"),
                ("embeddings to a text router", emb_req("text", [mf_embs[0]]), "not embeddings"),
                ("text to an embeddings-only router", pb.ScoreRequest(router="mf", prompts=["hi"]), "send embeddings"),
            ]
            for what, req, want in bad:
                try:
                    stub.Score(req, timeout=30)
                    check(False, f"{what}: refused (it was answered)")
                except grpc.RpcError as e:
                    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and want in (e.details() or ""),
                          f"{what}: {e.code().name} '{e.details()}' (wants INVALID_ARGUMENT, '{want}')")
            r = stub.Score(emb_req("mf", mf_embs[:2]), timeout=30)
            check(len(r.scores) == 2, "the server serves on after the refusals")
            r = stub.Score(pb.ScoreRequest(router="text", prompts=["What is 2+2?"]), timeout=30)
            check(len(r.scores) == 1 and r.scores[0].tokens > 0, "the text router still scores text")
    check.done()


if __name__ == "__main__":
    main()
