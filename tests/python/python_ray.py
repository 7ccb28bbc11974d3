"""python_ray.py — routescore on Ray Data, on a local Ray cluster (CTest label `python`).

A Parquet file of a few thousand real prompts (with an id column and an extra
column) goes through routescore.ray_data.label_parquet on 2 CPU actors, one
engine each. One actor is killed (os._exit) in the middle of a batch; Ray
restarts it and retries the batch. Checked against `routescore label` on the
same prompts:
  - every input row comes out exactly once (no row lost, none duplicated),
    with the input's columns and values kept, each 250-row block whole and
    in order (the retried block may come out after later ones: Ray 2.60's
    preserve_order does not hold across an actor restart);
  - win_prob equals the CLI's row for row (within 2e-6: Ray's batches are
    not the CLI's 64-row batches, and a prompt's last float bits may depend
    on its batch-mates), tokens and truncated exactly, route wherever the
    score is not within that tolerance of the threshold;
  - the empty prompt is an error row, as in the CLI;
  - the kill really happened.
Skipped (77) when ray or pyarrow is not installed.
"""
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import rsdata  # noqa: E402
import rstest  # noqa: E402
from rstest import check  # noqa: E402

SRC = os.environ.get("RS_SOURCE_DIR") or os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(SRC, "python"))
BLOCK = 250  # rows per row group, per Ray block and per batch
N = max(BLOCK, int(os.environ.get("RS_RAY_N", "2000")) // BLOCK * BLOCK)

try:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
except ImportError as e:
    print(f"{e.name} is not installed (tests/requirements-ci.txt)")
    sys.exit(77)

from routescore.ray_data import RouteScorer  # noqa: E402


class KillOnce(RouteScorer):
    """Dies (the whole actor process) in the middle of its third batch, once
    per test run: the first actor to get there wins the marker file."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 3:
            try:
                fd = os.open(os.environ["RS_TEST_KILL_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, f"{os.getpid()}\n".encode())
                os.close(fd)
                self.router.score([str(v) for v in batch.column(self.column).to_pylist()[:8]], errors="mark")
                os._exit(1)
            except FileExistsError:
                pass
        return super().__call__(batch)


def main():
    unready = rstest.package_unready()
    if unready is not None:
        return unready
    lib = os.environ["ROUTESCORE_LIBRARY"]  # the workers' too
    from routescore import ray_data

    model = os.path.join(SRC, "models", "routers", "minilm-mf")
    pool = [p[:100] for p in rsdata.all_prompts()]
    prompts = [pool[i % len(pool)] for i in range(0, N * 7, 7)][:N]
    prompts[N // 3] = ""
    ids = list(range(N))
    with tempfile.TemporaryDirectory(prefix="rs_python_ray_") as tmp:
        src = os.path.join(tmp, "in.parquet")
        pq.write_table(pa.table({"rid": ids, "prompt": prompts, "src": [f"s{i % 7}" for i in ids]}), src,
                       row_group_size=BLOCK)
        inp = os.path.join(tmp, "in.jsonl")
        with open(inp, "w") as f:
            for i, p in zip(ids, prompts):
                f.write(json.dumps({"id": i, "prompt": p}) + "\n")
        ref_out = os.path.join(tmp, "ref.jsonl")
        t0 = time.time()
        r = rstest.run(["label", "--model", model, "--in", inp, "--out", ref_out, "--quiet", "--threads", "2"])
        cli_s = time.time() - t0
        check(r.returncode == 1, f"CLI reference: exit 1 for the empty prompt ({r.returncode}: {r.stderr[-200:]!r})")
        ref = {}
        with open(ref_out) as f:
            for line in f:
                x = json.loads(line)
                ref[x["id"]] = x

        marker = os.path.join(tmp, "killed")
        os.environ["RS_TEST_KILL_MARKER"] = marker
        os.environ["ROUTESCORE_LIBRARY"] = lib
        os.environ["PYTHONPATH"] = os.path.join(SRC, "python") + os.pathsep + os.environ.get("PYTHONPATH", "")
        t0 = time.time()
        # 2 actors hold 2 CPUs; the read and write tasks need one more, or they
        # wait forever (logical CPUs: the engines still run one thread each).
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"RS_TEST_KILL_MARKER": marker, "ROUTESCORE_LIBRARY": lib,
                                           "PYTHONPATH": os.environ["PYTHONPATH"]}})
        init_s = time.time() - t0
        try:
            dst = os.path.join(tmp, "out")
            t0 = time.time()
            ray_data.label_parquet(src, dst, model=model, column="prompt", actors=2, batch_size=BLOCK,
                                   backend="cpu", threads=1, scorer=KillOnce, override_num_blocks=-(-N // BLOCK))
            ray_s = time.time() - t0
        finally:
            ray.shutdown()
        print(f"  {N} prompts: CLI {cli_s:.1f}s (2 threads), ray.init {init_s:.1f}s, "
              f"label_parquet on 2 actors {ray_s:.1f}s (with one actor killed and restarted)")
        check(os.path.exists(marker), "an actor was killed mid-run")

        t = pq.read_table(dst)
        check(t.column_names == ["rid", "prompt", "src", "win_prob", "route", "tokens", "truncated", "error"],
              f"input columns kept, label columns added: {t.column_names}")
        rid = t.column("rid").to_pylist()
        check(len(rid) == N and sorted(rid) == ids, f"every row exactly once ({len(rid)} rows, {len(set(rid))} distinct)")
        # preserve_order holds within each block; Ray 2.60 emits a block whose
        # task was retried after an actor death after the blocks that
        # finished meanwhile, so blocks may move but never split or reorder.
        blocks = [rid[k:k + BLOCK] for k in range(0, len(rid), BLOCK)]
        check(all(b == list(range(b[0], b[0] + BLOCK)) and b[0] % BLOCK == 0 for b in blocks),
              "each 250-row block whole and in input order (preserve_order within blocks)")
        moved = sum(1 for j, b in enumerate(blocks) if b[0] != j * BLOCK)
        print(f"  blocks out of input position after the retry: {moved}")
        rows = t.to_pylist()
        by = {x["rid"]: x for x in rows}
        check(all(by[i]["prompt"] == prompts[i] and by[i]["src"] == f"s{i % 7}" for i in ids if i in by),
              "input values kept with their rows")
        thr = json.load(open(os.path.join(model, "routescore.json")))["threshold"]
        diffs, bad = [], []
        for i in ids:
            x, y = ref.get(i), by.get(i)
            if x is None or y is None:
                bad.append(i)
                continue
            if "error" in x:
                if not (y["error"] and y["win_prob"] is None):
                    bad.append(i)
                continue
            d = abs(x["win_prob"] - y["win_prob"])
            diffs.append(d)
            if (d > 2e-6 or y["error"] is not None or x["tokens"] != y["tokens"] or x["truncated"] != y["truncated"]
                    or (x["route"] != y["route"] and abs(x["win_prob"] - thr) > 2e-6)):
                bad.append(i)
        check(not bad, f"Ray's labels equal the CLI's row for row ({len(bad)} differ, e.g. "
                       f"{[(ref.get(i), by.get(i)) for i in bad[:2]]})")
        print(f"  max |win_prob(ray) - win_prob(cli)| = {max(diffs) if diffs else float('nan'):.2e}")
        check(by.get(N // 3, {}).get("error") == "empty prompt", "the empty prompt is an error row")
    return rstest.result("python_ray")


if __name__ == "__main__":
    sys.exit(main())
