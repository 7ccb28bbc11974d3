"""rstest — what the CLI tests of the `routescore` binary (cli_label.py,
cli_train.py) share: where the binary and the MiniLM encoder are, a check()
that collects failures, run() with a sanitizer-report check, and the start
and end of a test's main().
"""
import os
import subprocess

_HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("RS_BIN") or os.path.join(_HERE, "..", "..", "build", "routescore")
CACHE = os.environ.get("RS_MODEL_CACHE") or os.path.join(_HERE, "..", "..", "models", "cache")
ENCODER = os.path.join(CACHE, "all-minilm-l6-v2")

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def sanitizer_check(r, args):
    """Under -DRS_SANITIZE=ON a report exits 1 or 2, which some checks expect
    for other reasons: look for the report itself."""
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode(errors="replace")
    if "Sanitizer" in err or "runtime error:" in err:
        check(False, f"sanitizer report for {args}: {err[-2000:]}")


def run(args, **kw):
    """`routescore ARGS...` with its output captured, checked for a sanitizer report."""
    r = subprocess.run([BIN] + args, capture_output=True, **kw)
    sanitizer_check(r, args)
    return r


def binary_missing():
    """True (and says so) when there is no binary to test."""
    if os.path.exists(BIN):
        return False
    print(f"routescore binary not found at {BIN}")
    return True


def package_unready():
    """The Python package tests' preconditions: the binary and the build's
    libroutescore_engine.so (ROUTESCORE_LIBRARY) must exist (else 1: the build
    is broken), the default encoder's weights and the shared data may not
    (else 77: skipped). None when the test can run."""
    if binary_missing():
        return 1
    lib = os.environ.get("ROUTESCORE_LIBRARY")
    if not lib or not os.path.exists(lib):
        print(f"ROUTESCORE_LIBRARY={lib!r}: the build's libroutescore_engine.so is needed")
        return 1
    if not os.path.isdir(ENCODER):
        print(f"no encoder at {ENCODER} (run bash models/fetch.sh)")
        return 77
    import rsdata
    if rsdata.data_dir() is None:
        print("skipped: ../shared/data/routellm not found")
        return 77
    return None


def result(name):
    """main()'s exit code: 1 if any check failed, else 0."""
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print(f"{name}: all passed")
    return 0
