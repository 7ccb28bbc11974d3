#!/usr/bin/env python3
"""server_replicas.py — one router served by several engine replicas
(`--replicas N`, or one per GPU with `--devices 0,1`): the batcher spreads
batches across them.

On the CPU (2 replicas of 1 thread each, small batches so there are many):
- --check-config reports the replicas and the backend;
- concurrent callers and one 64-prompt request (whose batches run on both
  replicas at once) get the scores of `routescore label --threads 1`
  (to server_util.SCORE_TOL: other batch compositions)
  on the same prompts, in request order, with sane per-request timings;
- both replicas computed (the "drained" log's replica_batches);
- CPU engines share the cores by default across routers: router_ready's
  "threads" is the explicit --threads, else the online cores divided among
  the replicas of every router without "threads" (a config of two routers,
  one with 2 replicas: 3 engines), or all of them for a lone engine;
- bad replica settings are clear errors: a device list with the cpu backend,
  a device listed twice, an empty list, --replicas 0, an unknown backend, and
  the cuda backend where there is no GPU (refused at load, naming it).
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
from server_util import prompts_for_test  # noqa: E402
from server_config import run_check, write  # noqa: E402  (this folder's)


def label_scores(router, prompts, tmp):
    inp, out = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
    with open(inp, "w") as f:
        for i, p in enumerate(prompts):
            f.write(json.dumps({"id": i, "prompt": p}) + "\n")
    subprocess.run([su.binary(), "label", "--model", router, "--in", inp, "--out", out, "--quiet", "--threads", "1"],
                   check=True)
    with open(out) as f:
        by_id = {r["id"]: r["win_prob"] for r in map(json.loads, f)}
    return [by_id[i] for i in range(len(prompts))]


def main():
    check, tmp, router, st = su.setup()
    pb = st.scorer
    prompts = prompts_for_test()
    want = label_scores(router, prompts, tmp)

    rc, out, err = run_check(["--model", router, "--replicas", "2", "--threads", "1"])
    r0 = json.loads(out)["routers"][0] if rc == 0 else {}
    check(rc == 0 and r0.get("replicas") == 2 and r0.get("backend") == "cpu",
          f"--check-config --replicas 2: {out.strip()[-80:]} {err.strip()[:100]}")

    args = ["--model", router, "--replicas", "2", "--threads", "1", "--max-batch-size", "4",
            "--max-queue-delay-us", "3000"]
    with su.serving(check, args) as srv:
        ready = srv.wait_event("router_ready")
        check(ready.get("replicas") == 2 and ready.get("backend") == "cpu", f"router_ready says 2 cpu replicas ({ready})")
        got, errs = su.callers(srv, st, prompts, 12, 8, timeout=60)
        bad = [(i, p) for i, p in got.values() if not su.same_score(p, want[i])]
        check(not errs and len(got) == 96 and not bad,
              f"12 callers x 8 calls on 2 replicas: {len(got)} answers, all equal to `label`'s "
              f"(mismatches {bad[:3]}, errors {errs})")
        with srv.channel() as ch:
            r = st.scorer_grpc.ScorerStub(ch).Score(pb.ScoreRequest(prompts=prompts), timeout=120)
        same = su.same_scores([s.win_prob for s in r.scores], want)
        check(same and len(r.scores) == 64, "one request of 64 prompts (16 batches over both replicas): scores in "
              "order, equal to `label`'s")
        check(0 < r.inference_us <= r.total_us and r.queue_us <= r.total_us,
              f"its timings are consistent (queue {r.queue_us} us, inference {r.inference_us} us, total {r.total_us} us)")
    per, counts = su.replica_batches(srv)
    check(len(counts) == 2 and all(c > 0 for c in counts), f"both replicas computed batches: {per}")

    check(ready.get("threads") == 1, f"router_ready: --threads 1 gives 1 thread ({ready.get('threads')})")
    cores = os.cpu_count() or 1
    share = {"routers": [{"name": "a", "model": router}, {"name": "b", "model": router, "replicas": 2},
                         {"name": "c", "model": router, "threads": 5}]}
    with su.serving(check, ["--config", write(os.path.join(tmp, "share.json"), share)]) as srv:
        srv.wait_event("serving")
        got = {e["router"]: e.get("threads") for e in srv.events("router_ready")}
    want = max(1, cores // 3)
    check(got == {"a": want, "b": want, "c": 5},
          f"3 CPU engines share {cores} cores ({want} each), 'threads' wins: {got}")
    with su.serving(check, ["--model", router]) as srv:
        lone = srv.wait_event("router_ready").get("threads")
    check(lone == cores, f"a lone engine uses every core ({lone} of {cores})")

    cfg = {"routers": [{"model": router, "backend": "cpu", "devices": [0, 1]}]}
    bad_cases = [
        (["--config", write(os.path.join(tmp, "cpu_devices.json"), cfg)], "'devices' needs backend cuda or auto"),
        (["--config", write(os.path.join(tmp, "empty.json"), {"routers": [{"model": router, "devices": []}]})],
         "must be a non-empty array of device indices"),
        (["--config", write(os.path.join(tmp, "rep0.json"), {"routers": [{"model": router, "replicas": 0}]})],
         "'routers[0].replicas' must be an integer in [1, 16]"),
        (["--model", router, "--backend", "cuda", "--devices", "0,0"], "device 0 listed twice"),
        (["--model", router, "--replicas", "0"], "--replicas"),
        (["--model", router, "--backend", "tpu"], "backend must be cpu, cuda or auto, not 'tpu'"),
    ]
    for i, (a, wants) in enumerate(bad_cases):
        rc, out, err = run_check(a)
        check(rc == 2 and wants in err and not out.strip(),
              f"bad replica setting {i}: exit {rc}, '{err.strip()[:120]}' (wants '{wants}')")
    rc, out, err = run_check(["--model", router, "--backend", "cuda", "--devices", "0,1"])
    if rc == 0:
        print("(a GPU is present: the cuda case is not an error here)")
    else:
        check(rc == 2 and "routers[0]" in err and ("cuda" in err.lower() or "gpu" in err.lower()),
              f"cuda replicas without a GPU: exit {rc}, '{err.strip()[:160]}'")
    check.done()


if __name__ == "__main__":
    main()
