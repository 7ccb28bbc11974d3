"""python_bench.py — prompts/s through the CLI, the Python package and Ray Data on the same prompts.

    PYTHONPATH=python ROUTESCORE_LIBRARY=build/libroutescore_engine.so \
        python3 benchmarks/python_bench.py --bin build/routescore --n 1000 [--ray]

Same router (models/routers/minilm-mf), same prompts (real benchmark prompts
from ../shared/data, cut to --chars), CPU backend:
  - CLI: `routescore label --threads T` end to end (model load included, and
    reported separately from `routescore label` on 1 prompt);
  - package: Router(threads=T).score(prompts) (model load excluded; one
    batch of 64 warm-up first), compared with the CLI's time less its
    start-up (the same command on one prompt);
  - Ray (--ray): label_parquet on 2 actors x 1 thread, Parquet in and out,
    ray.init excluded.
The package's overhead goal is under 5% of the CLI's scoring time.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import rsdata  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "routescore"))
    ap.add_argument("--model", default=os.path.join(HERE, "..", "models", "routers", "minilm-mf"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--chars", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ray", action="store_true")
    a = ap.parse_args()
    import routescore

    pool = rsdata.all_prompts()
    prompts = [pool[(i * 7) % len(pool)][:a.chars] for i in range(a.n)]
    with tempfile.TemporaryDirectory(prefix="rs_pybench_") as tmp:
        inp = os.path.join(tmp, "in.jsonl")
        with open(inp, "w") as f:
            for i, p in enumerate(prompts):
                f.write(json.dumps({"id": i, "prompt": p}) + "\n")
        one = os.path.join(tmp, "one.jsonl")
        with open(one, "w") as f:
            f.write(json.dumps({"id": 0, "prompt": prompts[0]}) + "\n")

        def cli(path):
            out = os.path.join(tmp, "out.jsonl")
            if os.path.exists(out):
                os.unlink(out)
            t0 = time.perf_counter()
            subprocess.run([a.bin, "label", "--model", a.model, "--in", path, "--out", out, "--quiet",
                            "--threads", str(a.threads)], check=True)
            return time.perf_counter() - t0

        r = routescore.Router(a.model, backend="cpu", threads=a.threads)
        r.score(prompts[:64])
        cli_t, load_t, pkg_t = [], [], []
        for _ in range(a.reps):  # interleaved, so drifting load hits both alike
            cli_t.append(cli(inp))
            load_t.append(cli(one))
            t0 = time.perf_counter()
            r.score(prompts)
            pkg_t.append(time.perf_counter() - t0)
        cli_s = min(cli_t) - min(load_t)
        pkg_s = min(pkg_t)
        print(f"load average {os.getloadavg()[0]:.1f}; {a.n} prompts, <= {a.chars} chars, {a.threads} threads")
        print(f"CLI label:        {min(cli_t):.2f}s end to end, {min(load_t):.2f}s of it start-up + 1 prompt "
              f"-> {a.n / cli_s:.1f} prompts/s scoring")
        print(f"Python package:   {pkg_s:.2f}s -> {a.n / pkg_s:.1f} prompts/s "
              f"({100 * (pkg_s - cli_s) / cli_s:+.1f}% vs the CLI's scoring time)")
        if a.ray:
            import pyarrow as pa
            import pyarrow.parquet as pq
            import ray
            from routescore import ray_data
            src = os.path.join(tmp, "in.parquet")
            pq.write_table(pa.table({"id": list(range(a.n)), "prompt": prompts}), src, row_group_size=128)
            ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {k: os.environ[k] for k in ("ROUTESCORE_LIBRARY", "PYTHONPATH")
                                               if k in os.environ}})
            t0 = time.perf_counter()
            ray_data.label_parquet(src, os.path.join(tmp, "ray_out"), model=a.model, actors=2, threads=1,
                                   backend="cpu", batch_size=256)
            ray_s = time.perf_counter() - t0
            ray.shutdown()
            print(f"Ray, 2 actors x 1 thread: {ray_s:.2f}s (actor start-up and Parquet I/O included) "
                  f"-> {a.n / ray_s:.1f} prompts/s")


if __name__ == "__main__":
    main()
