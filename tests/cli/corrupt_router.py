#!/usr/bin/env python3
"""corrupt_router — random single-byte corruptions of every file of a pinned
router: `label` must refuse with a named error (exit 2, a message on stderr
that is valid UTF-8 and names what is wrong) or give exactly the scores it
gave before. It must never crash, never leave a sanitizer report, and never
give other scores silently.

The router is trained here by `routescore train` (so it carries the sha256
pins train writes) on the tiny XLM-R checkpoint of tests/data/fidelity
(config.json, tokenizer.json, model.safetensors; 0.8 MB): its files are the
encoder's three, head.safetensors and routescore.json.

usage: corrupt_router.py [--mutations N] [--unpinned] [--seed S]
  --mutations N  per file (default 50; RS_CORRUPT_MUTATIONS overrides)
  --unpinned     also run the same mutations on a copy without pins and
                 report (not fail on) how many change the scores silently
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import rstest  # noqa: E402
from rstest import check  # noqa: E402

ENCODER = os.path.join(HERE, "..", "data", "fidelity", "xlmr_tiny_text")
WORDS = ("what is the capital of france explain quantum physics write a poem about cats prove this theorem "
         "hello world code in python sort a list translate to german summarise the article").split()


def prompts(n, seed):
    r = random.Random(seed)
    return [" ".join(r.choice(WORDS) for _ in range(r.randint(2, 14))) for _ in range(n)]


def label(router, inp, out):
    """(exit code, scores or None, stderr bytes); a signal is a negative code."""
    if os.path.exists(out):
        os.unlink(out)
    r = subprocess.run([rstest.BIN, "label", "--model", router, "--in", inp, "--out", out, "--threads", "1"],
                       capture_output=True, timeout=120)
    rstest.sanitizer_check(r, ["label", router])
    scores = None
    if r.returncode == 0:
        with open(out) as f:
            scores = [(d.get("win_prob"), d.get("tokens"), d.get("error")) for d in map(json.loads, f)]
    return r.returncode, scores, r.stderr


def loop(router, files, inp, out, want, n, seed, pinned):
    """Mutates each file n times; returns {file: (refused, same, different)}."""
    r = random.Random(seed)
    result = {}
    for path in files:
        orig = open(path, "rb").read()
        refused = same = different = 0
        for _ in range(n):
            pos = r.randrange(len(orig))
            byte = (orig[pos] + r.randrange(1, 256)) % 256
            with open(path, "wb") as f:
                f.write(orig[:pos] + bytes([byte]) + orig[pos + 1:])
            try:
                rc, scores, err = label(router, inp, out)
            finally:
                with open(path, "wb") as f:
                    f.write(orig)
            what = "%s byte %d -> 0x%02x" % (os.path.basename(path), pos, byte)
            if rc < 0 or rc not in (0, 1, 2):
                check(False, "%s: label crashed (exit %d): %s" % (what, rc, err[-800:]))
                continue
            if rc == 0 and scores == want:
                same += 1
                continue
            if rc == 2:
                refused += 1
                try:
                    msg = err.decode("utf-8")
                except UnicodeDecodeError:
                    check(False, "%s: the error message is not valid UTF-8: %r" % (what, err[-300:]))
                    continue
                check("routescore label: --model" in msg and len(msg.strip()) > 30,
                      "%s: refused without a named error: %r" % (what, msg[-300:]))
                continue
            different += 1
            if pinned:
                check(False, "%s: exit %d and other scores, silently: %s" % (what, rc, (scores or [])[:2]))
        result[os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path)] = (refused, same, different)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mutations", type=int, default=int(os.environ.get("RS_CORRUPT_MUTATIONS", "50")))
    ap.add_argument("--unpinned", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if rstest.binary_missing():
        return 1
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        enc = os.path.join(d, "enc")
        shutil.copytree(ENCODER, enc)
        train = os.path.join(d, "train.jsonl")
        with open(train, "w") as f:
            for i, p in enumerate(prompts(60, 1)):
                f.write(json.dumps({"prompt": p, "label": int(len(p) > 40)}) + "\n")
        router = os.path.join(d, "router")
        r = rstest.run(["train", "--encoder", enc, "--in", train, "--out", router])
        check(r.returncode == 0, "train: exit %d: %s" % (r.returncode, r.stderr.decode()[-500:]))
        if r.returncode:
            return rstest.result("corrupt_router")
        with open(os.path.join(router, "routescore.json")) as f:
            pins = json.load(f).get("sha256", {})
        files = [os.path.join(router, "head.safetensors"), os.path.join(router, "routescore.json")] + \
                [os.path.join(enc, x) for x in ("config.json", "tokenizer.json", "model.safetensors")]
        for p in files:
            rel = os.path.relpath(p, router)
            check(rel in pins, "train did not pin %s (pins: %s)" % (rel, sorted(pins)))
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        with open(inp, "w") as f:
            for i, p in enumerate(prompts(6, 2)):
                f.write(json.dumps({"id": i, "prompt": p}) + "\n")
        rc, want, err = label(router, inp, out)
        check(rc == 0 and want, "label on the intact router: exit %d: %s" % (rc, err[-500:]))
        if rc:
            return rstest.result("corrupt_router")

        res = loop(router, files, inp, out, want, a.mutations, a.seed, True)
        tot = [sum(v[i] for v in res.values()) for i in range(3)]
        for k, (ref, same, diff) in res.items():
            print("pinned   %-26s refused %4d  same %4d  silently different %4d" % (k, ref, same, diff))
        print("pinned: %d mutations per file, %d files: refused %d, same scores %d, silently different %d"
              % (a.mutations, len(files), *tot))

        # calibrate rewrites the threshold: the manifest's own pin follows it
        r = rstest.run(["calibrate", "--model", router, "--in", inp, "--strong-share", "0.5"])
        check(r.returncode == 0, "calibrate: exit %d: %s" % (r.returncode, r.stderr.decode()[-300:]))
        rc, scores, err = label(router, inp, out)
        check(rc == 0 and [s[0] for s in scores or []] == [w[0] for w in want],
              "label after calibrate: exit %d: %s" % (rc, err[-300:]))
        # a pinned manifest refuses keys it does not know, and malformed pins
        mpath = os.path.join(router, "routescore.json")
        orig = open(mpath).read()
        for edit, needle in ((lambda m: m.update(poolng="cls"), b"unknown key 'poolng'"),
                             (lambda m: m["sha256"].update({"head.safetensors": "00"}), b"not 64 hex digits"),
                             (lambda m: m.update(max_tokens=5), b"sha256 of 'routescore.json'"),
                             (lambda m: m["sha256"].update({"missing.bin": "0" * 64}), b"missing.bin"),
                             (lambda m: m.update(threshold=0.9, name="x"), None)):
            m = json.loads(orig)
            edit(m)
            with open(mpath, "w") as f:
                json.dump(m, f)
            rc, got, err = label(router, inp, out)
            if needle is None:  # the threshold and names are not pinned: same scores
                check(rc == 0 and got == want, "edited threshold: exit %d: %s" % (rc, err[-300:]))
            else:
                check(rc == 2 and needle in err, "edited manifest (%s): exit %d: %s" % (needle, rc, err[-300:]))
        with open(mpath, "w") as f:
            f.write(orig)

        if a.unpinned:
            with open(os.path.join(router, "routescore.json")) as f:
                m = json.load(f)
            del m["sha256"]
            with open(os.path.join(router, "routescore.json"), "w") as f:
                json.dump(m, f, indent=1)
            res = loop(router, files, inp, out, want, a.mutations, a.seed, False)
            for k, (ref, same, diff) in res.items():
                print("unpinned %-26s refused %4d  same %4d  silently different %4d" % (k, ref, same, diff))
            tot = [sum(v[i] for v in res.values()) for i in range(3)]
            print("unpinned: refused %d, same scores %d, silently different %d (reported, not failed)" % tuple(tot))
    print("corrupt_router: %.1f s" % (time.time() - t0))
    return rstest.result("corrupt_router")


if __name__ == "__main__":
    sys.exit(main())
