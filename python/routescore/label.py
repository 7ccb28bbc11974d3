"""routescore-label — `routescore label` for Parquet.

    routescore-label --model DIR --in prompts.parquet --out labels.parquet [--column prompt]

Parquet is columnar and needs Arrow to read, so the C CLI refuses it and
this entry point (pyarrow, in process, one engine) handles it: it writes the
input's columns with win_prob, route, tokens, truncated and error added, row
group by row group, so memory stays bounded by one row group. Any other
input (JSON lines, CSV, gzip) is passed to the `routescore` binary's label.
For a cluster, routescore.ray_data.label_parquet does the same over Ray.
"""
import argparse
import os
import shutil
import sys


def _is_parquet(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(prog="routescore-label", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.environ.get("ROUTESCORE_MODEL"), help="router directory")
    ap.add_argument("--in", dest="inp", required=True, help="input file (Parquet here; others go to the CLI)")
    ap.add_argument("--out", required=True, help="output Parquet file (refused if it exists)")
    ap.add_argument("--column", default="prompt", help="prompt column: strings or OpenAI messages lists")
    ap.add_argument("--backend", default="auto", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--device", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--prefix", default="", help="put before the label column names")
    args, rest = ap.parse_known_args(argv)

    if not _is_parquet(args.inp):
        exe = shutil.which("routescore")
        if not exe:
            print("routescore-label: the input is not Parquet and no `routescore` binary is on PATH "
                  "for JSON lines or CSV", file=sys.stderr)
            return 2
        cmd = [exe, "label", "--in", args.inp, "--out", args.out]
        if args.model:
            cmd += ["--model", args.model]
        for flag, v in (("--backend", args.backend), ("--device", args.device), ("--threads", args.threads),
                        ("--max-tokens", args.max_tokens), ("--threshold", args.threshold)):
            if v is not None:
                cmd += [flag, str(v)]
        if args.column != "prompt":
            low = args.inp.lower()
            cmd += ["--column" if low.endswith((".csv", ".csv.gz")) or "csv" in rest else "--field", args.column]
        os.execv(exe, cmd + rest)
    if rest:
        ap.error(f"unrecognized arguments for a Parquet input: {' '.join(rest)}")
    if not args.model:
        ap.error("--model is required (or set ROUTESCORE_MODEL)")
    if os.path.exists(args.out):
        print(f"routescore-label: --out {args.out} exists; remove it first", file=sys.stderr)
        return 2

    import pyarrow.parquet as pq
    from . import RouteScoreError
    from .ray_data import RouteScorer

    try:
        pf = pq.ParquetFile(args.inp)
    except Exception as e:  # pyarrow raises several types for a bad file
        print(f"routescore-label: --in {args.inp}: {e}", file=sys.stderr)
        return 2
    try:
        scorer = RouteScorer(args.model, column=args.column, backend=args.backend, device=args.device,
                             threads=args.threads, max_tokens=args.max_tokens, threshold=args.threshold,
                             prefix=args.prefix)
    except RouteScoreError as e:
        print(f"routescore-label: --model {args.model}: {e}", file=sys.stderr)
        return 2
    tmp = args.out + ".partial"
    writer = None
    n = n_err = 0
    try:
        for i in range(pf.num_row_groups):
            t = scorer(pf.read_row_group(i))
            if writer is None:
                writer = pq.ParquetWriter(tmp, t.schema)
            writer.write_table(t)
            n += t.num_rows
            n_err += t.num_rows - t.column(scorer.names["error"]).null_count
        if writer is None:  # no row groups: still an output with the schema
            import pyarrow as pa
            t = scorer(pa.Table.from_batches([], schema=pf.schema_arrow))
            writer = pq.ParquetWriter(tmp, t.schema)
        writer.close()
        writer = None
        os.replace(tmp, args.out)
    except (KeyError, ValueError, RouteScoreError) as e:
        print(f"routescore-label: {e}", file=sys.stderr)
        return 2
    finally:
        if writer is not None:
            writer.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"routescore-label: {n} records, {n_err} errors -> {args.out}", file=sys.stderr)
    return 1 if n_err else 0


if __name__ == "__main__":
    sys.exit(main())
