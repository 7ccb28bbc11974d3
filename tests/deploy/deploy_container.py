"""deploy_container.py — the CPU image, run as Kubernetes would run it.

Run by deploy/ci_image.sh after it builds the image (not a CTest: it needs the
image). The container runs on the host network with the restrictions of the
chart's pod security context (a read-only root filesystem with no tmpfs, every
capability dropped, no-new-privileges, the image's non-root user) and ports
picked by the server (127.0.0.1, port 0, read from its "listening" log line).

Checks:
- the image's user is numeric and non-root, and it carries the OCI labels;
- `serve --check-config` accepts the image's own config and the chart's
  (--chart-dir/routescore.json: the ConfigMap's file as the chart renders it), and
  opens every router they name; the server then runs on the chart's config,
  mounted read-only where the ConfigMap goes;
- gRPC Health/Check turns SERVING; ListRouters names the image's router;
- Score on a few prompts gives the win_prob of the host build's
  `routescore score` on the same router (the oracle: an independent build of
  the same source), and the route the threshold implies;
- /metrics counts the prompts and exports every metric the Helm chart's
  autoscalers read (--chart-dir/scaling-metrics.json, from the rendered HPA
  and KEDA ScaledObject);
- SIGTERM with calls in flight: every call ends OK or UNAVAILABLE, the
  server's count of finished calls equals the clients' count of OK answers,
  the drain is logged in time and the container exits 0.

usage: deploy_container.py --image IMAGE --chart-dir DIR [--engine podman]
  DIR: what `tests/deploy/deploy_chart.py --write-config DIR` wrote.
Exit 0 all checks passed, 1 a check failed, 2 the container could not be run.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402

PROMPTS = ["What is 2+2?", "Prove that the square root of 2 is irrational.",
           "Write a haiku about autumn leaves.",
           "Derive the closed form of the sum of the first n squares and prove it by induction."]
LABELS = ["org.opencontainers.image.title", "org.opencontainers.image.version",
          "org.opencontainers.image.revision", "org.opencontainers.image.base.name"]


def sh(cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def log_records(engine, name):
    r = sh([engine, "logs", name], check=False)
    out = []
    for line in (r.stdout + r.stderr).splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def wait_log(engine, name, event, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        for rec in log_records(engine, name):
            if rec.get("event") == event:
                return rec
        state = sh([engine, "inspect", name, "--format", "{{.State.Status}}"], check=False).stdout.strip()
        if state not in ("running", "created", "configured"):
            raise RuntimeError(f"container {state} before '{event}': {sh([engine, 'logs', name], check=False).stderr}")
        time.sleep(0.2)
    raise RuntimeError(f"no '{event}' log line after {timeout} s")


def host_scores(router):
    """The host build's `routescore score` on PROMPTS: win_prob per prompt."""
    r = sh([su.binary(), "score", "--model", router] + PROMPTS)
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return [rec["win_prob"] for rec in recs]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--chart-dir", required=True)
    ap.add_argument("--engine", default="podman")
    a = ap.parse_args()
    eng = a.engine
    check = su.Check()
    tmp = su.tmpdir()
    stubs = su.Stubs(tmp)
    router = os.path.join(su.SRC, "models", "routers", "minilm-mf")
    with open(os.path.join(router, "routescore.json")) as f:
        manifest = json.load(f)

    cfg = json.loads(sh([eng, "image", "inspect", a.image, "--format", "{{json .Config}}"]).stdout)
    user = (cfg.get("User") or "").split(":")[0]
    check(user.isdigit() and int(user) != 0, f"image user is numeric and non-root ({cfg.get('User')!r})")
    labels = cfg.get("Labels") or {}
    check(all(labels.get(k) for k in LABELS), f"OCI labels set ({ {k: labels.get(k) for k in LABELS} })")

    restricted = ["--runtime", "runc", "--network", "host", "--read-only", "--read-only-tmpfs=false",
                  "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    chart_cfg = os.path.abspath(os.path.join(a.chart_dir, "routescore.json"))
    with open(os.path.join(a.chart_dir, "scaling-metrics.json")) as f:
        scaling_metrics = json.load(f)
    check(len(scaling_metrics) > 0, f"the chart's autoscalers read {scaling_metrics}")
    mount = ["-v", f"{chart_cfg}:/etc/routescore-chart/routescore.json:ro"]
    for what, extra, path in (("the image's config", [], "/etc/routescore/routescore.json"),
                              ("the chart's config", mount, "/etc/routescore-chart/routescore.json")):
        r = sh([eng, "run", "--rm"] + restricted + extra + [a.image, "--check-config", "--config", path], check=False)
        try:
            summary = json.loads(r.stdout)
        except ValueError:
            summary = None
        check(r.returncode == 0 and summary is not None,
              f"serve --check-config accepts {what} (exit {r.returncode}){'' if r.returncode == 0 else ': ' + r.stderr[-500:]}")

    name = f"routescore-ci-{os.getpid()}"
    run = [eng, "run", "-d", "--name", name] + restricted + mount + [a.image,
           "--config", "/etc/routescore-chart/routescore.json",
           "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
    try:
        sh(run)
    except RuntimeError as e:
        print(f"FAIL could not start the container: {e}")
        sys.exit(2)
    try:
        lis = wait_log(eng, name, "listening", 60)
        port, mport = lis["port"], lis["metrics_port"]
        addr = f"127.0.0.1:{port}"
        print(f"container {name}: gRPC {addr}, metrics {mport}")
        ch = su.grpc.insecure_channel(addr)
        health = stubs.health_grpc.HealthStub(ch)
        t0, status = time.time(), None
        while time.time() - t0 < 120:
            try:
                status = health.Check(stubs.health.HealthCheckRequest(service=""), timeout=5).status
                if status == stubs.health.HealthCheckResponse.SERVING:
                    break
            except su.grpc.RpcError:
                pass
            time.sleep(0.2)
        check(status == stubs.health.HealthCheckResponse.SERVING,
              f"Health SERVING after {time.time() - t0:.1f} s")

        scorer = stubs.scorer_grpc.ScorerStub(ch)
        routers = scorer.ListRouters(stubs.scorer.ListRoutersRequest(), timeout=10).routers
        check([r.name for r in routers] == [manifest["name"]], f"ListRouters: {[r.name for r in routers]}")

        resp = scorer.Score(stubs.scorer.ScoreRequest(prompts=PROMPTS, request_id=4242), timeout=30)
        want = host_scores(router)
        got = [r.win_prob for r in resp.scores]
        diff = max(abs(g - w) for g, w in zip(got, want)) if len(got) == len(want) else float("inf")
        check(len(got) == len(PROMPTS) and diff <= 1e-6,
              f"container scores = host `routescore score` (max |diff| {diff:.2e}; {got})")
        routes_ok = all((r.route == stubs.scorer.ROUTE_STRONG) == (r.win_prob >= resp.threshold) and
                        r.model == (manifest["strong_model"] if r.route == stubs.scorer.ROUTE_STRONG
                                    else manifest["weak_model"]) for r in resp.scores)
        check(routes_ok and resp.request_id == 4242, f"routes follow threshold {resp.threshold:.4f}, models named")

        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
            text = r.read().decode()
        n = su.metric_value(text, "routescore_prompts_total", {"router": manifest["name"]})
        check(n == len(PROMPTS), f"routescore_prompts_total = {n}")
        for m in scaling_metrics:
            check(re.search(rf"^{m}[{{ ]", text, re.M) is not None, f"/metrics exports {m} (the chart scales on it)")
        check(su.metric_value(text, "routescore_ready") == 1, "routescore_ready 1")

        # Drain with calls in flight.
        results, lock, first = [], threading.Lock(), threading.Event()

        def client(k):
            c = su.grpc.insecure_channel(addr)
            s = stubs.scorer_grpc.ScorerStub(c)
            for j in range(40):
                code = su.code_of(lambda: s.Score(stubs.scorer.ScoreRequest(prompts=PROMPTS * 8), timeout=30))
                with lock:
                    results.append(code)
                first.set()
                if code == su.grpc.StatusCode.RESOURCE_EXHAUSTED:
                    # shed by admission (the queue's expected wait is over
                    # max_queue_wait_ms): a gateway retries it elsewhere
                    time.sleep(0.05)
                    continue
                if code != su.grpc.StatusCode.OK:
                    break
            c.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        first.wait(30)
        sh([eng, "kill", "--signal", "TERM", name])
        for t in threads:
            t.join(60)
        rc = sh([eng, "wait", name], timeout=60).stdout.strip()
        ok = sum(1 for c in results if c == su.grpc.StatusCode.OK)
        shed = sum(1 for c in results if c == su.grpc.StatusCode.RESOURCE_EXHAUSTED)
        bad = {c for c in results if c not in (su.grpc.StatusCode.OK, su.grpc.StatusCode.UNAVAILABLE,
                                                 su.grpc.StatusCode.RESOURCE_EXHAUSTED)}
        check(not bad, f"calls during the drain end OK or UNAVAILABLE, or were shed by admission before it "
                       f"({ok} OK, {shed} shed, of {len(results)}; other: {bad})")
        recs = log_records(eng, name)
        drained = [r for r in recs if r.get("event") == "drained"]
        check(bool(drained) and drained[-1].get("in_time") is True, f"drained in time: {drained[-1:] }")
        served = drained[-1].get("score_ok") if drained else None
        # score_ok counts every Score call finished OK, the first one included.
        check(served == ok + 1, f"server finished {served} calls = clients' {ok} OK + 1")
        check(rc == "0", f"container exit code {rc} after SIGTERM")
    except Exception as e:  # noqa: BLE001 - report, then clean up
        check(False, f"container test aborted: {e}")
        print(sh([eng, "logs", name], check=False).stderr[-4000:])
    finally:
        sh([eng, "rm", "-f", name], check=False)
    check.done()


if __name__ == "__main__":
    main()
