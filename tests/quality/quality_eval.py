"""quality_eval — `routescore eval --scores` against the Python rendering of
RouteLLM's evaluation (tests/lib/routellm_eval_ref.py) on generated score files:
random (fixed seeds), oracle-like, reversed, constant, heavy ties, joined by
prompt and by id. Every figure (points, AUC, APGR, CPT50/80) must agree to
1e-6. Also: random routing on MMLU gives APGR in [0.45, 0.55] (a sanity
check); the loaders reproduce the README's W/S; bad score files exit 2; the
SVG plot is well-formed XML. Skips (77) without ../shared/data."""
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import rsdata  # noqa: E402
import routellm_eval_ref as ref  # noqa: E402

rsdata.skip_if_absent()
BIN = os.environ.get("RS_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "routescore")
DATA = rsdata.data_dir()
failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg)


def run_eval(bench, path, *extra):
    p = subprocess.run([BIN, "eval", "--benchmark", bench, "--data", DATA, "--scores", path, "--json", *extra],
                       capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def write_scores(path, prompts, scores, by_id=False):
    with open(path, "w", encoding="utf-8") as f:
        for i, (p, s) in enumerate(zip(prompts, scores)):
            rec = {"id": i} if by_id else {"prompt": p}
            rec["win_prob"] = float(s)
            f.write(json.dumps(rec) + "\n")


def close(a, b):
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def compare(name, got, want):
    for k in ("items", "weak_quality", "strong_quality", "auc", "apgr", "cpt50", "cpt80"):
        check(close(got[k], want[k]), f"{name}: {k} {got[k]!r} vs reference {want[k]!r}")
    for i, (g, w) in enumerate(zip(got["points"], want["points"])):
        for k in ("threshold", "strong_share", "quality"):
            check(close(g[k], w[k]), f"{name}: point {i} {k} {g[k]!r} vs {w[k]!r}")


EXPECTED_WS = {"mmlu": (14037, 68.09, 80.59), "gsm8k": (1307, 63.73, 85.77), "mt-bench": (72, 8.281, 9.212)}

with tempfile.TemporaryDirectory() as tmp:
    for bench in ("mmlu", "gsm8k", "mt-bench"):
        prompts, weak, strong, scale = ref.load(bench, DATA)
        n = len(prompts)
        gain = np.array([np.mean(s) - np.mean(w) for w, s in zip(weak, strong)])
        rng = np.random.default_rng(1234)
        cases = {
            "random1": rng.random(n),
            "random2": rng.random(n),
            "oracle": gain + 0.01 * rng.random(n),
            "reversed": -gain + 0.01 * rng.random(n),
            "constant": np.full(n, 0.5),
            "ties3": np.round(rng.random(n) * 2) / 2,
            "ties_noisy_oracle": np.round(np.clip(gain * 0.3 + rng.normal(0.5, 0.3, n), 0, 1), 1),
        }
        for name, scores in cases.items():
            path = os.path.join(tmp, f"{bench}_{name}.jsonl")
            by_id = name == "random2"
            write_scores(path, prompts, scores, by_id=by_id)
            rc, out, err = run_eval(bench, path)
            if rc != 0:
                check(False, f"{bench}/{name}: exit {rc}: {err}")
                continue
            got = json.loads(out)
            want = ref.evaluate(ref.join_scores(prompts, path), weak, strong, scale)
            compare(f"{bench}/{name}", got, want)
            if name == "random1":
                exp_n, exp_w, exp_s = EXPECTED_WS[bench]
                check(got["items"] == exp_n, f"{bench}: {got['items']} items, want {exp_n}")
                check(round(got["weak_quality"], 3 if bench == "mt-bench" else 2) == exp_w,
                      f"{bench}: weak {got['weak_quality']}")
                check(round(got["strong_quality"], 3 if bench == "mt-bench" else 2) == exp_s,
                      f"{bench}: strong {got['strong_quality']}")
                if bench == "mmlu":
                    check(0.45 <= got["apgr"] <= 0.55, f"mmlu random APGR {got['apgr']} not in [0.45, 0.55]")
            if name == "oracle":
                check(got["apgr"] > 0.6, f"{bench}: oracle-like APGR {got['apgr']}")
            if name == "reversed":
                check(got["apgr"] < 0.45, f"{bench}: reversed APGR {got['apgr']}")
            print(f"{bench:9s} {name:18s} APGR {got['apgr']:.6f} CPT50 {got['cpt50']:.4f} CPT80 {got['cpt80']:.4f}")

        if bench == "gsm8k":
            # Plot: well-formed SVG with the three curves' colours (cairo draws
            # paths; tests/cli/cli_eval_plot.py checks the geometry).
            svg = os.path.join(tmp, "plot.svg")
            rc, _, err = run_eval(bench, os.path.join(tmp, "gsm8k_random1.jsonl"), "--plot", svg)
            check(rc == 0, f"plot run exit {rc}: {err}")
            root = ET.parse(svg).getroot()
            strokes = {m for e in root.iter("{http://www.w3.org/2000/svg}path")
                       for m in re.findall(r"stroke:(rgb\([^)]*\))", e.get("style", ""))}
            for col in ("rgb(0%,0%,100%)", "rgb(50.196078%,50.196078%,50.196078%)", "rgb(0%,50.196078%,0%)"):
                check(col in strokes, f"svg: no path stroked {col} (router, random, oracle): {strokes}")
            # A file missing one row fails (exit 2) and says so.
            short = os.path.join(tmp, "short.jsonl")
            write_scores(short, prompts[1:], cases["random1"][1:])
            rc, _, err = run_eval(bench, short)
            check(rc == 2 and "no score" in err, f"missing row: exit {rc}, {err!r}")
            # Malformed lines fail cleanly.
            for bad in ('{"prompt": "x"}', 'not json', '{"id": 1.5, "win_prob": 0.2}',
                        '{"prompt": 3, "win_prob": 0.1}'):
                with open(short, "w") as f:
                    f.write(bad + "\n")
                rc, _, err = run_eval(bench, short)
                check(rc == 2 and "routescore eval" in err, f"bad line {bad!r}: exit {rc} {err!r}")
            # Extra lines that match no row are ignored (and counted).
            extra = os.path.join(tmp, "extra.jsonl")
            write_scores(extra, prompts + ["not a gsm8k prompt"], list(cases["random1"]) + [0.3])
            rc, out, err = run_eval(bench, extra)
            check(rc == 0 and "1 score lines match no row" in err, f"extra line: exit {rc} {err!r}")

print("quality_eval:", "FAILED" if failures else "ok")
sys.exit(1 if failures else 0)
