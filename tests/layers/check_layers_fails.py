#!/usr/bin/env python3
"""check_layers_fails — tools/check_layers.py must catch what it is for: in a
temporary copy of src/ and docs/, an upward include (the tokenizer including
engine.h) and an include cycle (two core headers including each other) must
each fail the check, and the untouched copy must pass."""
import os
import shutil
import subprocess
import sys
import tempfile

root = os.environ.get("RS_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
tool = os.path.join(root, "tools", "check_layers.py")


def run(tree):
    return subprocess.run([sys.executable, tool, tree], capture_output=True, text=True)


def copy():
    d = tempfile.mkdtemp(prefix="rs_layers_")
    shutil.copytree(os.path.join(root, "src"), os.path.join(d, "src"))
    shutil.copytree(os.path.join(root, "docs"), os.path.join(d, "docs"))
    return d


def prepend(path, line):
    s = open(path).read()
    open(path, "w").write(line + "\n" + s)


fails = 0
d = copy()
r = run(d)
if r.returncode != 0:
    print("FAIL: the untouched copy does not pass:", r.stderr)
    fails += 1
prepend(os.path.join(d, "src/host/tokenizer/tok_vocab.c"), '#include "engine.h"')
r = run(d)
if r.returncode != 1 or "tok_vocab.c (tokenizer) includes src/host/engine/engine.h (engine)" not in r.stderr:
    print("FAIL: an upward include was not caught:", r.returncode, r.stderr)
    fails += 1
shutil.rmtree(d)

d = copy()
prepend(os.path.join(d, "src/host/core/status.h"), '#include "clock.h"')
prepend(os.path.join(d, "src/host/core/clock.h"), '#include "status.h"')
r = run(d)
if r.returncode != 1 or "include cycle" not in r.stderr:
    print("FAIL: an include cycle was not caught:", r.returncode, r.stderr)
    fails += 1
shutil.rmtree(d)
print("check_layers_fails:", "FAIL" if fails else "ok")
sys.exit(1 if fails else 0)
