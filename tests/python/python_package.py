"""python_package.py — the Python package `routescore` over libroutescore_engine.so (CTest label `python`).

Checked against the `routescore label` binary as the oracle, on real prompts:
  - Router.score gives the CLI's win_prob, route, tokens and truncated, row
    for row and bit for bit (same batches of 64, bad rows in their slots);
  - score_messages scores an OpenAI conversation by its last user message,
    as label does for "messages" records;
  - info() reports the router's manifest;
  - an engine error raises RouteScoreError carrying the status name and the
    engine's message; a bad prompt raises PromptError (or is marked);
  - the GIL is released during a score call (another Python thread keeps
    running), and one Router shared by threads gives the serial results;
  - routescore-label writes Parquet with the input's columns kept and the
    CLI's scores.
The package is imported from python/ with ROUTESCORE_LIBRARY pointing at the
build's library (what this build made; python_install checks `pip install`).
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import rsdata  # noqa: E402
import rstest  # noqa: E402
from rstest import check  # noqa: E402

SRC = os.environ.get("RS_SOURCE_DIR") or os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(SRC, "python"))

try:
    import numpy as np
except ImportError:
    print("numpy is not installed (tests/requirements-ci.txt)")
    sys.exit(77)


def cli_label(model, records, tmp, name, extra=()):
    inp = os.path.join(tmp, name + ".jsonl")
    out = os.path.join(tmp, name + ".out")
    with open(inp, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    r = rstest.run(["label", "--model", model, "--in", inp, "--out", out, "--quiet", *extra])
    check(r.returncode in (0, 1), f"label {name}: exit {r.returncode}: {r.stderr[-300:]!r}")
    with open(out) as f:
        return [json.loads(l) for l in f]


def same_as_cli(s, recs, what):
    n_bad = 0
    ok = len(s) == len(recs)
    for i, x in enumerate(recs if ok else []):
        if "error" in x:
            n_bad += 1
            ok &= s.error[i] is not None and math.isnan(s.win_prob[i])
            continue
        ok &= (s.error[i] is None and np.float32(x["win_prob"]) == s.win_prob[i] and x["route"] == s.route[i]
               and x["tokens"] == s.tokens[i] and x["truncated"] == bool(s.truncated[i]))
        if not ok:
            print(f"  row {i}: cli {x} / package {s.win_prob[i]!r} {s.route[i]} {s.tokens[i]} {s.truncated[i]}")
            break
    check(ok, f"{what}: the package's scores equal the CLI's, row for row ({len(recs)} rows, {n_bad} errors)")


def main():
    unready = rstest.package_unready()
    if unready is not None:
        return unready
    import routescore

    model = os.path.join(SRC, "models", "routers", "minilm-mf")
    prompts = [p for _, p, _, _ in rsdata.mmlu_rows()][::23][:300]
    prompts[7] = ""                                  # an empty prompt: an error in its slot
    prompts[100] = prompts[100] * 20                 # long: truncated
    with tempfile.TemporaryDirectory(prefix="rs_python_") as tmp:
        t0 = time.time()
        recs = cli_label(model, [{"id": i, "prompt": p} for i, p in enumerate(prompts)], tmp, "plain",
                         ["--threads", "1"])
        cli_s = time.time() - t0

        r = routescore.Router(model, backend="cpu", threads=1)
        info = r.info()
        with open(os.path.join(model, "routescore.json")) as f:
            manifest = json.load(f)
        check(info["kind"] == manifest["kind"] and info["name"] == os.path.basename(model)
              and abs(info["threshold"] - manifest["threshold"]) < 1e-6 and info["backend"] == "cpu"
              and info["embed_dim"] == 384 and info["max_tokens"] > 0, f"info() reports the manifest: {info}")

        t0 = time.time()
        s = r.score(prompts, errors="mark")
        pkg_s = time.time() - t0
        print(f"  {len(prompts)} prompts: CLI {cli_s:.2f}s (with model load), package {pkg_s:.2f}s")
        same_as_cli(s, recs, "score")
        check(s.truncated[100] and not s.truncated[0], "a long prompt is flagged truncated")
        check(s.win_prob.dtype == np.float32 and s.tokens.dtype == np.int32 and s.truncated.dtype == bool,
              "numpy dtypes: float32 win_prob, int32 tokens, bool truncated")

        # A threshold moves the routes, not the scores.
        s2 = r.score(prompts[:50], threshold=0.9, errors="mark")
        recs2 = cli_label(model, [{"id": i, "prompt": p} for i, p in enumerate(prompts[:50])], tmp, "thr",
                          ["--threads", "1", "--threshold", "0.9"])
        same_as_cli(s2, recs2, "score with threshold 0.9")

        # OpenAI conversations.
        convs = []
        for i, p in enumerate(prompts[:80]):
            if not p:
                continue
            c = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "an earlier turn"},
                 {"role": "assistant", "content": "ok"}]
            if i % 3 == 0:
                c.append({"role": "user", "content": [{"type": "text", "text": p},
                                                       {"type": "image_url", "image_url": {"url": "x"}},
                                                       {"type": "text", "text": "part two"}]})
            else:
                c.append({"role": "user", "content": p})
            convs.append(c)
        convs.append([{"role": "system", "content": "no user here"}])
        recs3 = cli_label(model, [{"id": i, "messages": c} for i, c in enumerate(convs)], tmp, "msgs",
                          ["--threads", "1"])
        s3 = r.score_messages(convs, errors="mark")
        same_as_cli(s3, recs3, "score_messages")

        # Errors.
        try:
            routescore.Router(os.path.join(tmp, "no-such-router"))
            check(False, "a missing router raises")
        except routescore.RouteScoreError as e:
            check(e.status == "RS_ERR_NOT_FOUND" and "no-such-router" in e.message,
                  f"missing router: RouteScoreError(status, message): {e.status!r} {e.message!r}")
        try:
            r.score(["fine", ""])
            check(False, "an empty prompt raises by default")
        except routescore.PromptError as e:
            check(e.index == 1 and e.status == "RS_ERR_INVALID_ARG" and "empty" in e.message,
                  f"PromptError names the row and why: {e}")
        try:
            r.score(["fine", "bad \ud800 surrogate"])
            check(False, "a lone surrogate raises")
        except routescore.PromptError as e:
            check(e.index == 1 and e.status == "RS_ERR_UTF8", f"invalid UTF-8 named: {e.status}")
        for bad in (dict(backend="tpu"), dict(threads=-1), dict(max_tokens=2)):
            try:
                routescore.Router(model, **bad)
                check(False, f"Router({bad}) raises")
            except ValueError:
                pass
        try:
            r.score("one string")
            check(False, "a bare string is refused")
        except TypeError:
            pass

        # The GIL is released during the engine call: one call over all the
        # prompts on a thread, while this thread keeps counting.
        big = routescore.Router(model, backend="cpu", threads=1, batch_size=10 ** 6)
        done = threading.Event()
        span = {}

        def worker():
            span["t0"] = time.perf_counter()
            big.score(prompts, errors="mark")
            span["t1"] = time.perf_counter()
            done.set()

        th = threading.Thread(target=worker)
        ticks = []
        th.start()
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)
        th.join()
        inside = [t for t in ticks if span["t0"] < t < span["t1"]]
        gaps = np.diff(inside) if len(inside) > 1 else np.array([span["t1"] - span["t0"]])
        call = span["t1"] - span["t0"]
        check(len(inside) > 20 and gaps.max() < 0.5 * call,
              f"GIL released: {len(inside)} ticks of another thread during a {call:.2f}s call, "
              f"longest gap {gaps.max():.3f}s")

        # One Router shared by threads: serialised, same results.
        outs = [None] * 4

        def shared(k):
            outs[k] = r.score(prompts[k * 20:(k + 1) * 20], errors="mark")

        ths = [threading.Thread(target=shared, args=(k,)) for k in range(4)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        serial = [r.score(prompts[k * 20:(k + 1) * 20], errors="mark") for k in range(4)]
        check(all(np.array_equal(a.win_prob, b.win_prob, equal_nan=True) for a, b in zip(outs, serial)),
              "a Router shared by 4 threads gives the serial results")
        r.close()
        try:
            r.score(["x"])
            check(False, "a closed Router raises")
        except routescore.RouteScoreError:
            pass

        # RouteScorer's pandas path (Spark's mapInPandas) and numpy path (Ray's "numpy" batches).
        from routescore.ray_data import RouteScorer
        sc = RouteScorer(model, column="prompt", backend="cpu", threads=1)
        try:
            import pandas as pd
        except ImportError:
            pd = None
        if pd is not None:
            frames = [pd.DataFrame({"rid": list(range(k, k + 64)), "prompt": prompts[k:k + 64]})
                      for k in range(0, 128, 64)]
            outs = list(sc.map_pandas(iter(frames)))
            df = pd.concat(outs)
            ok = list(df.columns) == ["rid", "prompt", "win_prob", "route", "tokens", "truncated", "error"]
            for i, x in enumerate(recs[:128]):
                row = df.iloc[i]
                if "error" in x:
                    ok &= pd.isna(row["win_prob"]) and isinstance(row["error"], str)
                else:
                    ok &= (np.float32(x["win_prob"]) == np.float32(row["win_prob"]) and row["route"] == x["route"]
                           and int(row["tokens"]) == x["tokens"] and pd.isna(row["error"]))
            check(ok, "RouteScorer.map_pandas (Spark's mapInPandas): the CLI's scores, input columns kept")
        nb = sc({"rid": np.arange(64), "prompt": np.array(prompts[:64], dtype=object)})
        check(sorted(nb) == ["error", "prompt", "rid", "route", "tokens", "truncated", "win_prob"]
              and all(np.float32(x["win_prob"]) == nb["win_prob"][i] for i, x in enumerate(recs[:64]) if "error" not in x),
              "RouteScorer on a numpy batch: the CLI's scores")
        try:
            sc({"rid": np.arange(3), "text": np.array(["a", "b", "c"], dtype=object)})
            check(False, "a batch without the prompt column raises")
        except KeyError as e:
            check("prompt" in str(e), "a missing column is named")
        try:
            sc({"prompt": np.array(["a"], dtype=object), "win_prob": np.zeros(1)})
            check(False, "a batch that already has win_prob raises")
        except ValueError as e:
            check("prefix" in str(e), f"a clashing label column points at prefix=: {e}")

        # routescore-label on Parquet keeps the input's columns.
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            print("  (pyarrow not installed: routescore-label Parquet check skipped)")
            pa = None
        if pa is not None:
            src = os.path.join(tmp, "in.parquet")
            ids = list(range(len(prompts)))
            pq.write_table(pa.table({"rid": ids, "prompt": prompts, "topic": [f"t{i % 5}" for i in ids]}), src,
                           row_group_size=64)
            dst = os.path.join(tmp, "out.parquet")
            env = dict(os.environ, PYTHONPATH=os.path.join(SRC, "python"))
            p = subprocess.run([sys.executable, "-m", "routescore.label", "--model", model, "--in", src, "--out",
                                dst, "--threads", "1", "--backend", "cpu"], capture_output=True, env=env)
            check(p.returncode == 1 and b"1 errors" in p.stderr,
                  f"routescore-label: exit 1 for the empty prompt ({p.returncode}: {p.stderr[-300:]!r})")
            if os.path.exists(dst):
                t = pq.read_table(dst)
                check(t.column_names == ["rid", "prompt", "topic", "win_prob", "route", "tokens", "truncated", "error"],
                      f"routescore-label keeps the input's columns: {t.column_names}")
                check(t.column("rid").to_pylist() == ids and t.column("topic").to_pylist()[:3] == ["t0", "t1", "t2"],
                      "input rows and values kept, in order")
                wp = t.column("win_prob").to_pylist()
                ok = all((("error" in x) and wp[i] is None) or
                         (("error" not in x) and np.float32(x["win_prob"]) == np.float32(wp[i]))
                         for i, x in enumerate(recs))
                check(ok, "routescore-label's Parquet scores equal the CLI's")
    return rstest.result("python_package")


if __name__ == "__main__":
    sys.exit(main())
