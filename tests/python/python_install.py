"""python_install.py — `pip install .` from the checkout builds and installs a
working package (CTest label `python`).

pip (no build isolation, no network) runs scikit-build-core, which builds
libroutescore_engine.so with this checkout's CMake (RS_LIB_ONLY, and
RS_WITH_CUDA=OFF here to keep the test short) and puts it inside the
package. A fresh interpreter with only the install target on its path (no
ROUTESCORE_LIBRARY) then loads it and must score exactly what the CMake
build's library scores, and the routescore-label entry point must exist.
Skipped (77) without scikit-build-core (tests/requirements-ci.txt).
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import rstest  # noqa: E402
from rstest import ENCODER, check  # noqa: E402

SRC = os.path.abspath(os.environ.get("RS_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
PROMPTS = ["Prove that sqrt(2) is irrational.", "hi there", "Write a haiku about the sea."]
SNIPPET = """
import json, sys, routescore
r = routescore.Router(sys.argv[1], backend="cpu", threads=1)
s = r.score(json.loads(sys.argv[2]))
print(json.dumps({"lib": r.info()["library"], "win_prob": [float(x) for x in s.win_prob],
                  "tokens": [int(x) for x in s.tokens]}))
"""


def main():
    try:
        import scikit_build_core  # noqa: F401
    except ImportError:
        print("scikit-build-core is not installed (tests/requirements-ci.txt)")
        return 77
    if not os.path.isdir(ENCODER):
        print(f"no encoder at {ENCODER} (run bash models/fetch.sh)")
        return 77
    model = os.path.join(SRC, "models", "routers", "minilm-mf")
    with tempfile.TemporaryDirectory(prefix="rs_python_install_") as tmp:
        target = os.path.join(tmp, "site")
        env = dict(os.environ, RS_WITH_CUDA="OFF")
        env.pop("ROUTESCORE_LIBRARY", None)
        p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "--no-build-isolation", "--no-deps", "--target", target, SRC],
                           capture_output=True, env=env, cwd=tmp)
        check(p.returncode == 0, f"pip install . exit 0 (got {p.returncode}: {p.stderr[-1500:]!r})")
        if p.returncode:
            return rstest.result("python_install")
        libs = [f for f in os.listdir(os.path.join(target, "routescore")) if f.startswith("libroutescore_engine")]
        check(libs == ["libroutescore_engine.so"], f"the library is inside the package: {libs}")
        check(os.path.exists(os.path.join(target, "bin", "routescore-label")), "routescore-label entry point installed")
        env_inst = dict(env, PYTHONPATH=target)
        a = subprocess.run([sys.executable, "-c", SNIPPET, model, json.dumps(PROMPTS)], capture_output=True,
                           env=env_inst, cwd=tmp)
        check(a.returncode == 0, f"the installed package imports and scores ({a.stderr[-500:]!r})")
        lib = os.environ.get("ROUTESCORE_LIBRARY")
        if a.returncode == 0 and lib:
            got = json.loads(a.stdout)
            check(got["lib"].startswith(target), f"it loads its own library: {got['lib']}")
            env_build = dict(os.environ, PYTHONPATH=os.path.join(SRC, "python"))
            b = subprocess.run([sys.executable, "-c", SNIPPET, model, json.dumps(PROMPTS)], capture_output=True,
                               env=env_build, cwd=tmp)
            want = json.loads(b.stdout) if b.returncode == 0 else {}
            check(got["win_prob"] == want.get("win_prob") and got["tokens"] == want.get("tokens"),
                  f"installed scores equal the CMake build's: {got['win_prob']} / {want.get('win_prob')}")
    return rstest.result("python_install")


if __name__ == "__main__":
    sys.exit(main())
