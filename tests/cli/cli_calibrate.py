"""cli_calibrate.py — `routescore calibrate` sets the threshold RouteLLM's way.

The threshold written equals numpy.quantile(scores, 1 - share) (linear) of
the router's scores on the sample, as `routescore label` reports them; the
manifest keeps its other keys; --dry-run writes nothing; bad input is refused.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import server_util as su  # noqa: E402

try:
    import numpy as np
except ImportError:
    su.skip("numpy missing")


def main():
    check = su.Check()
    tmp = su.tmpdir()
    router = su.make_router(os.path.join(tmp, "r"), threshold=0.5, name="cal")
    binary = su.binary()
    inp = os.path.join(tmp, "sample.jsonl")
    with open(inp, "w") as f:
        for i in range(150):
            f.write(json.dumps({"id": i, "prompt": f"sample prompt {i}: {'why ' * (i % 9)}is the sky blue at hour {i % 24}?"}) + "\n")
        f.write("not json\n")
        f.write(json.dumps({"id": "empty", "prompt": ""}) + "\n")
    out = os.path.join(tmp, "label.jsonl")
    subprocess.run([binary, "label", "--model", router, "--in", inp, "--out", out, "--quiet"], check=False)
    scores = np.array([json.loads(l)["win_prob"] for l in open(out) if '"win_prob"' in l], dtype=np.float64)
    check(len(scores) == 150, f"label scored the 150 good prompts ({len(scores)})")
    before = json.load(open(os.path.join(router, "routescore.json")))

    for share in (0.1, 0.3, 0.5, 0.8, 1.0):
        p = subprocess.run([binary, "calibrate", "--model", router, "--in", inp, "--strong-share", str(share), "--dry-run"],
                           capture_output=True, text=True)
        res = json.loads(p.stdout) if p.returncode == 0 else {}
        want = float(np.quantile(scores, 1 - share))
        check(p.returncode == 0 and abs(res.get("threshold", -1) - want) < 1e-7 and res.get("written") is None,
              f"share {share}: threshold {res.get('threshold')} = numpy quantile {want:.9g}; dry run")
        check(res.get("prompts") == 150 and res.get("skipped") == 2, "two bad records skipped")
        strong = float(np.mean(scores.astype(np.float32) >= np.float32(res.get("threshold", 2))))
        check(abs(strong - share) <= 1 / 150 + 1e-9, f"the sample's strong share is {strong:.3f}")
    check(json.load(open(os.path.join(router, "routescore.json"))) == before, "--dry-run left the manifest alone")

    p = subprocess.run([binary, "calibrate", "--model", router, "--in", inp, "--strong-share", "0.3"], capture_output=True, text=True)
    after = json.load(open(os.path.join(router, "routescore.json")))
    want = float(np.quantile(scores, 0.7))
    check(p.returncode == 0 and abs(after["threshold"] - want) < 1e-7, f"manifest threshold now {after.get('threshold')}")
    check({k: v for k, v in after.items() if k != "threshold"} == {k: v for k, v in before.items() if k != "threshold"},
          "other manifest keys kept")
    p = subprocess.run([binary, "score", "--model", router, "hello"], capture_output=True, text=True)
    check(p.returncode == 0, "the router still opens")

    # Several shares at once, with every 5th prompt held out of the quantile:
    # thresholds come from the other 120, the held-out share from the 30.
    p = subprocess.run([binary, "calibrate", "--model", router, "--in", inp, "--strong-share", "0.2,0.5",
                        "--holdout-every", "5", "--dry-run"], capture_output=True, text=True)
    rows = [json.loads(l) for l in p.stdout.splitlines()] if p.returncode == 0 else []
    check(len(rows) == 2, f"one line per share ({len(rows)})")
    held = scores[0::5]
    calib = np.array([s for i, s in enumerate(scores) if i % 5], dtype=np.float64)
    for row, share in zip(rows, (0.2, 0.5)):
        want = float(np.quantile(calib, 1 - share))
        check(row["prompts"] == 120 and row["heldout"] == 30, f"120 calibration + 30 held-out prompts ({row})")
        check(abs(row["threshold"] - want) < 1e-7, f"share {share}: threshold {row['threshold']} = quantile of the 120 {want:.9g}")
        got = float(np.mean(held.astype(np.float32) >= np.float32(row["threshold"])))
        check(abs(row["heldout_strong_share"] - got) < 1e-6, f"held-out share {row['heldout_strong_share']} = {got:.6f}")
    for args, what in ((["--strong-share", "0.5", "--holdout-every", "1"], "holdout 1"),
                       (["--strong-share", "0.5,"], "trailing comma"), (["--strong-share", "0.5,2"], "second share 2"),
                       (["--strong-share", "0"], "share 0"), (["--strong-share", "1.5"], "share 1.5"),
                       (["--strong-share", "x"], "share not a number"), ([], "no share")):
        p = subprocess.run([binary, "calibrate", "--model", router, "--in", inp] + args, capture_output=True, text=True)
        check(p.returncode == 2, f"{what} refused (exit {p.returncode})")
    bad = os.path.join(tmp, "bad.jsonl")
    open(bad, "w").write("nope\n")
    p = subprocess.run([binary, "calibrate", "--model", router, "--in", bad, "--strong-share", "0.5"], capture_output=True, text=True)
    check(p.returncode == 2 and "no usable prompt" in p.stderr, "a sample without prompts is refused")
    shutil.rmtree(tmp, ignore_errors=True)
    check.done()


if __name__ == "__main__":
    main()
