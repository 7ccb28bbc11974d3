"""server_config.py — the config file, --check-config, flags over the file,
several routers, SIGHUP threshold reload, and the online threshold mode.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402
import grpc  # noqa: E402


def run_check(args):
    p = subprocess.run([su.binary(), "serve", "--check-config"] + args, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def write(path, obj):
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def to_yaml(obj, indent=0):
    """Block-style YAML of a JSON value (plain scalars where YAML types them
    back the same; strings double-quoted)."""
    pad = " " * indent
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:\n{to_yaml(v, indent + 2)}")
            else:
                out.append(f"{pad}{k}: {to_yaml(v)}")
        return "\n".join(out)
    if isinstance(obj, list):
        out = []
        for v in obj:
            body = to_yaml(v, indent + 2).lstrip() if isinstance(v, (dict, list)) else to_yaml(v)
            out.append(f"{pad}- {body}")
        return "\n".join(out)
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if obj is None:
        return "null"
    if isinstance(obj, (int, float)):
        return repr(obj)
    return json.dumps(obj)


def out_of(cfg):
    rc, out, err = run_check(["--config", cfg])
    return out if rc == 0 else None


def yaml_checks(check, tmp, router, good, want_out):
    """The same config as YAML gives the same --check-config summary; YAML's
    own mistakes are clear errors with a line number."""
    y = write(os.path.join(tmp, "good.yaml"), "# routescore serve config\n" + to_yaml(good) + "\n")
    check(want_out is not None and out_of(y) == want_out, f"YAML config = JSON config: {out_of(y)!r} vs {want_out!r}")
    # Anchors/aliases, comments, quoted and plain scalars, flow style, .yml.
    hand = f"""listen: 127.0.0.1:0   # a plain string with a colon inside
metrics_listen: "127.0.0.1:0"
cq_threads: 2
defaults: &d {{model: {json.dumps(router)}, max_batch_size: 64}}
routers:
  - {{<<: *d, name: a}}
"""
    rc, out, err = run_check(["--config", write(os.path.join(tmp, "hand.yml"), hand)])
    check(rc == 2 and "unknown key 'defaults'" in err, f"YAML keys are checked like JSON's: {err.strip()[:160]}")
    hand2 = f"""listen: 127.0.0.1:0
routers:
  - name: a
    model: &m {json.dumps(router)}
    threshold: 0.25
    online: {{strong_share: .3, window: 200, min_samples: 100}}
  - name: "b"
    model: *m
    threshold: 1e-1
"""
    rc, out, err = run_check(["--config", write(os.path.join(tmp, "hand2.yml"), hand2)])
    r = json.loads(out)["routers"] if rc == 0 else []
    check(rc == 0 and [x["name"] for x in r] == ["a", "b"] and abs(r[1]["threshold"] - 0.1) < 1e-9,
          f"hand-written YAML with an alias: exit {rc}, {out.strip()[:200]} {err.strip()[:200]}")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8))
    bad = [
        ("listen: [unclosed\n", "line 2"),
        ("listen: a\nlisten: b\n", "key 'listen' given twice"),
        ("cq_threads: \"2\"\n", "'cq_threads' must be an integer"),
        ("cq_threads: 2\n---\ncq_threads: 3\n", "more than one YAML document"),
        ("? [a, b]\n: 1\n", "a mapping key must be a scalar"),
        (bomb, "more than 100000 nodes"),
        ("- just\n- a list\n", "must be an object"),
        ("", "no YAML document"),
    ]
    for i, (text, want) in enumerate(bad):
        rc, out, err = run_check(["--config", write(os.path.join(tmp, f"bad{i}.yaml"), text)])
        check(rc == 2 and want in err and not out.strip(), f"bad YAML {i}: exit {rc}, says '{err.strip()[:160]}' "
              f"(wants '{want}')")


def main():
    check, tmp, router, st = su.setup()
    pb = st.scorer

    good = {"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0", "cq_threads": 2, "grace_period_s": 5,
            "log_level": "info", "max_prompts_per_request": 512, "stream_window": 8,
            "routers": [{"name": "a", "model": router, "threshold": 0.3, "max_batch_tokens": 8192,
                         "max_batch_size": 64, "max_queue_delay_us": 1000, "max_queue_tokens": 65536},
                        {"name": "b", "model": router, "threshold": 0.8,
                         "online": {"strong_share": 0.3, "window": 200, "min_samples": 100}}]}
    cfg = write(os.path.join(tmp, "good.json"), good)
    rc, out, err = run_check(["--config", cfg])
    summary = json.loads(out) if rc == 0 else {}
    check(rc == 0 and [r["name"] for r in summary.get("routers", [])] == ["a", "b"],
          f"--check-config on a good file: exit {rc}, {out.strip()} {err.strip()}")

    bad_cases = [
        ({**good, "listne": "x"}, "unknown key 'listne'"),
        ({**good, "cq_threads": "2"}, "'cq_threads' must be an integer"),
        ({**good, "cq_threads": 0}, "'cq_threads' must be an integer in [1, 64]"),
        ({**good, "grace_period_s": -1}, "'grace_period_s'"),
        ({**good, "listen": "no-port"}, "listen: 'no-port' is not host:port"),
        ({**good, "log_level": "loud"}, "log_level"),
        ({**good, "tls": {"cert": "/nonexistent.pem"}}, "tls needs both"),
        ({**good, "tls": {"cert": "/nonexistent.pem", "key": "/nonexistent.key"}}, "tls.cert"),
        ({**good, "auth": {"bearer_tokens_file": "/nonexistent"}}, "auth.bearer_tokens_file"),
        ({**good, "auth": {"tokens": ["x"]}}, "unknown key 'auth.tokens'"),
        ({**good, "routers": []}, "'routers' must be an array"),
        ({**good, "routers": [{"name": "a"}]}, "routers[0].model' is required"),
        ({**good, "routers": [{"model": "/nonexistent/router"}]}, "routers[0].model '/nonexistent/router' is not a directory"),
        ({**good, "routers": [{"model": router, "threshold": 1.5}]}, "'routers[0].threshold' must be a number in [0, 1]"),
        ({**good, "routers": [{"model": router, "max_batch_size": 0}]}, "routers[0].max_batch_size"),
        ({**good, "routers": [{"model": router, "max_queue_wait_ms": -1}]}, "routers[0].max_queue_wait_ms"),
        ({**good, "metrics_client_connections": 0}, "'metrics_client_connections' must be an integer in [1, 4096]"),
        ({**good, "metrics_request_timeout_s": 0}, "'metrics_request_timeout_s'"),
        ({**good, "metrics_open": "yes"}, "'metrics_open'"),
        ({**good, "routers": [{"model": router, "max_batch_tokens": 4096, "max_queue_tokens": 1024}]},
         "max_queue_tokens (1024) must be >= max_batch_tokens"),
        ({**good, "routers": [{"model": router, "max_batch_tokens": 128}]}, "max_batch_tokens 128 is below its max_tokens"),
        ({**good, "routers": [{"model": router, "online": {"window": 10}}]}, "strong_share' is required"),
        ({**good, "routers": [{"model": router, "online": {"strong_share": 0.2, "windw": 10}}]},
         "unknown key 'routers[0].online.windw'"),
        ({**good, "routers": [{"name": "x", "model": router}, {"name": "x", "model": router}]}, "two routers are named 'x'"),
        ({**good, "routers": [{"model": tmp}]}, "routers[0]"),  # a directory that is no router
        ("{not json", "not valid JSON"),
    ]
    for i, (obj, want) in enumerate(bad_cases):
        rc, out, err = run_check(["--config", write(os.path.join(tmp, f"bad{i}.json"), obj)])
        check(rc == 2 and want in err, f"bad config {i}: exit {rc}, says '{err.strip()[:150]}' (wants '{want}')")
    yaml_checks(check, tmp, router, good, out_of(cfg))
    emb_only = os.path.join(os.environ["RS_TEST_DATA"], "mf_routellm")  # no encoder: embeddings only
    rc, out, err = run_check(["--model", emb_only])
    r0 = json.loads(out)["routers"][0] if rc == 0 else {}
    check(rc == 0 and r0.get("client_embedding_dim") == 32 and r0.get("max_tokens") == 0,
          f"an embeddings-only router is accepted and says so ({out.strip()[:150]} {err.strip()[:150]})")
    rc, _, err = run_check(["--config", os.path.join(tmp, "missing.json")])
    check(rc == 2 and "cannot open" in err, "a missing config file is an error")
    rc, _, err = run_check(["--config", cfg, "--max-batch-size", "0"])
    check(rc == 2 and "--max-batch-size" in err, "a bad flag value is an error")
    rc, out, _ = run_check(["--config", cfg, "--threshold", "0.45"])
    check(rc == 0 and all(abs(r["threshold"] - 0.45) < 1e-6 for r in json.loads(out)["routers"]),
          "--threshold overrides the file's thresholds")

    # ---- a live server from the file: two routers, flags over the file ----
    with su.serving(check, ["--config", cfg, "--stream-window", "4"]) as srv:
        ch = srv.channel()
        scorer = st.scorer_grpc.ScorerStub(ch)
        lr = scorer.ListRouters(pb.ListRoutersRequest(), timeout=10)
        names = [(r.name, round(r.threshold, 6), r.online, r.is_default) for r in lr.routers]
        check(names == [("a", 0.3, False, True), ("b", 0.8, True, False)], f"ListRouters from the file: {names}")
        prompts = [f"prompt number {i} about topic {i % 13}" for i in range(60)]
        ra = scorer.Score(pb.ScoreRequest(prompts=prompts), timeout=60)
        rb = scorer.Score(pb.ScoreRequest(prompts=prompts, router="b"), timeout=60)
        check(ra.router == "a" and abs(ra.threshold - 0.3) < 1e-6, "empty router name -> the first router, threshold 0.3")
        check(all(x.win_prob == y.win_prob for x, y in zip(ra.scores, rb.scores)), "same model dir: same scores")
        check(abs(rb.threshold - 0.8) < 1e-6, f"router b below min_samples uses its static threshold ({rb.threshold})")

        # online mode: after enough traffic, b's threshold keeps 30% strong
        more = [f"another prompt {i}, on subject {i * 7 % 17}, with a twist {i % 3}" for i in range(200)]
        scorer.Score(pb.ScoreRequest(prompts=more, router="b"), timeout=120)
        rb2 = scorer.Score(pb.ScoreRequest(prompts=more[:100], router="b"), timeout=60)
        share = sum(s.route == pb.ROUTE_STRONG for s in rb2.scores) / 100
        check(abs(rb2.threshold - 0.8) > 1e-3 and 0.15 <= share <= 0.45,
              f"online mode: threshold {rb2.threshold:.4f} gives strong share {share:.2f} (target 0.30)")

        # SIGHUP: thresholds from the edited file; nothing else changes
        write(cfg, {**good, "routers": [{**good["routers"][0], "threshold": 0.7}, good["routers"][1]]})
        srv.signal(signal.SIGHUP)
        t0 = time.time()
        while not any(e.get("router") == "a" and abs(e.get("new", 0) - 0.7) < 1e-6 for e in srv.events("threshold_reloaded")):
            if time.time() - t0 > 10:
                break
            time.sleep(0.05)
        lr = scorer.ListRouters(pb.ListRoutersRequest(), timeout=10)
        check(abs(lr.routers[0].threshold - 0.7) < 1e-6, f"SIGHUP reloaded router a's threshold ({lr.routers[0].threshold})")
        ra2 = scorer.Score(pb.ScoreRequest(prompts=prompts), timeout=60)
        check(all((s.route == pb.ROUTE_STRONG) == (s.win_prob >= 0.7) for s in ra2.scores), "decisions use the new threshold")
        m = srv.metrics()
        check(abs((su.metric_value(m, "routescore_threshold", {"router": "a"}) or 0) - 0.7) < 1e-6, "metrics show it")
        write(cfg, "{broken")
        n_fail = len(srv.events("reload_failed"))
        srv.signal(signal.SIGHUP)
        t0 = time.time()
        while len(srv.events("reload_failed")) == n_fail and time.time() - t0 < 10:
            time.sleep(0.05)
        lr = scorer.ListRouters(pb.ListRoutersRequest(), timeout=10)
        check(len(srv.events("reload_failed")) > n_fail and abs(lr.routers[0].threshold - 0.7) < 1e-6,
              "a broken file on SIGHUP is logged and changes nothing")
        check(len(scorer.Score(pb.ScoreRequest(prompts=["ok"]), timeout=30).scores) == 1, "still serving")
        ch.close()

    # ---- the manifest's threshold is what SIGHUP re-reads without a config file ----
    r2 = su.make_router(os.path.join(tmp, "r2"), threshold=0.25, name="r2")
    with su.serving(check, ["--model", r2]) as srv:
        ch = srv.channel()
        scorer = st.scorer_grpc.ScorerStub(ch)
        man = json.load(open(os.path.join(r2, "routescore.json")))
        man["threshold"] = 0.65
        write(os.path.join(r2, "routescore.json"), man)
        srv.signal(signal.SIGHUP)
        t0 = time.time()
        while not srv.events("threshold_reloaded") and time.time() - t0 < 10:
            time.sleep(0.05)
        lr = scorer.ListRouters(pb.ListRoutersRequest(), timeout=10)
        check(abs(lr.routers[0].threshold - 0.65) < 1e-6, f"SIGHUP re-reads the manifest's threshold ({lr.routers[0].threshold})")
        ch.close()
    check.done()


if __name__ == "__main__":
    main()
