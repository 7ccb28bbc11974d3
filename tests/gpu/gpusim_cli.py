#!/usr/bin/env python3
"""gpusim_cli.py — the binary with `--backend cuda` end to end, on the
simulated GPUs of a -DRS_CUDA_SIM=ON build (label gpusim; on a build with a
real GPU it runs there too):

- `label` and `score` with --backend cuda give the CPU's scores within the
  CUDA backend's bound (bf16: 2e-2 on win_prob for the MiniLM mf router, the
  routes equal wherever the CPU's win_prob is not within the bound of the
  threshold), with the same token counts;
- `serve --backend cuda --devices 0,1` under load (12 concurrent callers and
  one 64-prompt request, small batches): every answer within the same bound
  of `label --backend cpu`, both GPU replicas computed batches, and the
  server drains and exits 0;
- a driver that is present but unusable (RS_SIM_DRIVER_ERROR: older than the
  runtime) is named: `--backend auto` and `--backend cuda` fail with the
  CUDA error instead of running on the CPU, `--backend cpu` still works.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
from server_util import prompts_for_test  # noqa: E402

BOUND = 2e-2


def label(router, prompts, tmp, backend, tag, env=None):
    inp, out = os.path.join(tmp, f"in_{tag}.jsonl"), os.path.join(tmp, f"out_{tag}.jsonl")
    with open(inp, "w") as f:
        for i, p in enumerate(prompts):
            f.write(json.dumps({"id": i, "prompt": p}) + "\n")
    r = subprocess.run([su.binary(), "label", "--model", router, "--in", inp, "--out", out, "--quiet",
                        "--backend", backend], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return None, r.stderr
    with open(out) as f:
        rows = {x["id"]: x for x in map(json.loads, f)}
    return [rows[i] for i in range(len(prompts))], r.stderr


def main():
    check, tmp, router, st = su.setup()
    pb = st.scorer
    prompts = prompts_for_test()
    cpu, err = label(router, prompts, tmp, "cpu", "cpu")
    check(cpu is not None, f"label --backend cpu: {err[-200:] if err else ''}")
    gpu, err = label(router, prompts, tmp, "cuda", "cuda")
    check(gpu is not None, f"label --backend cuda: {err[-300:] if err else ''}")
    if cpu is None or gpu is None:
        check.done()
    thr = 0.5
    with open(os.path.join(router, "routescore.json")) as f:
        thr = json.load(f).get("threshold", 0.5)
    worst = max(abs(a["win_prob"] - b["win_prob"]) for a, b in zip(cpu, gpu))
    flips = [i for i, (a, b) in enumerate(zip(cpu, gpu))
             if a["route"] != b["route"] and abs(a["win_prob"] - thr) > BOUND]
    check(worst <= BOUND and not flips and all(a["tokens"] == b["tokens"] for a, b in zip(cpu, gpu)),
          f"label cuda vs cpu over {len(prompts)} prompts: max |dwin_prob| {worst:.2e} (bound {BOUND}), "
          f"route flips away from the threshold {flips[:5]}, token counts equal")
    print(f"label: {len(prompts)} prompts, cuda vs cpu max |dwin_prob| {worst:.2e}")

    r = subprocess.run([su.binary(), "score", "--model", router, "--backend", "cuda", prompts[0], prompts[1]],
                       capture_output=True, text=True)
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    check(r.returncode == 0 and len(rows) == 2 and
          all(abs(rows[i]["win_prob"] - cpu[i]["win_prob"]) <= BOUND for i in range(min(2, len(rows)))),
          f"score --backend cuda: exit {r.returncode}, {r.stdout[:200]} {r.stderr[-200:]}")

    args = ["--model", router, "--backend", "cuda", "--devices", "0,1", "--max-batch-size", "4",
            "--max-queue-delay-us", "3000"]
    with su.serving(check, args) as srv:
        ready = srv.wait_event("router_ready")
        check(ready.get("replicas") == 2 and ready.get("backend") == "cuda",
              f"router_ready says 2 cuda replicas ({ready})")
        got, errs = su.callers(srv, st, prompts, 12, 6, timeout=120)
        bad = [(i, p) for i, p in got.values() if abs(p - cpu[i]["win_prob"]) > BOUND]
        check(not errs and len(got) == 72 and not bad,
              f"12 callers x 6 calls on 2 simulated GPUs: {len(got)} answers within {BOUND} of the CPU "
              f"(outside {bad[:3]}, errors {errs})")
        with srv.channel() as ch:
            rr = st.scorer_grpc.ScorerStub(ch).Score(pb.ScoreRequest(prompts=prompts), timeout=300)
        d = max(abs(s.win_prob - c["win_prob"]) for s, c in zip(rr.scores, cpu))
        check(len(rr.scores) == len(prompts) and d <= BOUND,
              f"one request of {len(prompts)} prompts over both GPUs: max |dwin_prob| {d:.2e}")
    per, counts = su.replica_batches(srv)
    check(len(counts) == 2 and all(c > 0 for c in counts), f"both GPU replicas computed batches: {per}")

    env = dict(os.environ, RS_SIM_DRIVER_ERROR="1")
    for be in ("auto", "cuda"):
        r = subprocess.run([su.binary(), "score", "--model", router, "--backend", be, "hello"], capture_output=True,
                           text=True, env=env)
        check(r.returncode != 0 and "cudaErrorInsufficientDriver" in r.stderr and "older" in r.stderr,
              f"--backend {be} with an unusable driver: exit {r.returncode}, '{r.stderr.strip()[:200]}'")
    r = subprocess.run([su.binary(), "score", "--model", router, "--backend", "cpu", "hello"], capture_output=True,
                       text=True, env=env)
    check(r.returncode == 0, f"--backend cpu with an unusable driver still works: {r.stderr[-200:]}")
    check.done()


if __name__ == "__main__":
    main()
