"""cli_label_formats.py — `routescore label`'s formats and trust checks (CTest label `cli`).

On the real binary:
  - --resume refuses an output made from another input, router or flags,
    naming what differs, and refuses one without a fingerprint, leaving the
    output untouched; a matching resume still completes byte-identically;
  - --out NAME.gz writes gzip that zcat (and Python's gzip) reads, equal to
    the plain output; a torn trailing gzip member is cut on --resume and the
    run ends identical to an uninterrupted one, also after a SIGKILL;
  - CSV input (--column, quoted fields with commas, quotes and newlines, an
    id column, a BOM, bad rows as error records) scores exactly what the
    same prompts score as JSON lines;
  - Parquet (a real file from pyarrow when it is installed), other binary
    containers and a non-JSON text are refused up front with one error;
  - off a terminal, JSON progress lines reach stderr every --progress-every
    seconds, with done, total, rate and ETA; --quiet silences them.
The router is cli_label.py's small mf head over the MiniLM encoder.
"""
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import rsdata  # noqa: E402
import rstest  # noqa: E402
from cli_label import make_router, read_records, write_lines  # noqa: E402
from rstest import BIN, ENCODER, check, failures  # noqa: E402


def run(args, **kw):
    return rstest.run(["label"] + args, **kw)


def prompts(n, start=0):
    return [p[:200] for _, p, _, _ in rsdata.mmlu_rows()][start::37][:n]


def jsonl_input(tmp, name, ps):
    path = os.path.join(tmp, name)
    write_lines(path, [json.dumps({"id": f"q{i}", "prompt": p}) for i, p in enumerate(ps)])
    return path


# ------------------------------------------------------------------ resume

def test_resume_refusals(tmp, model, ps):
    inp = jsonl_input(tmp, "a.jsonl", ps)
    other = jsonl_input(tmp, "b.jsonl", ps[:-1] + ["a different last prompt"])
    args = ["--model", model, "--batch", "8", "--quiet"]
    ref = os.path.join(tmp, "ref.jsonl")
    r = run(args + ["--in", inp, "--out", ref])
    check(r.returncode == 0, f"reference run exit 0 (got {r.returncode}: {r.stderr[-300:]!r})")
    want = open(ref, "rb").read()
    fp = ref + ".fingerprint.json"
    check(os.path.exists(fp), "a fresh run writes OUT.fingerprint.json")
    half = want[:want.index(b"\n", len(want) // 2) + 1]

    def partial(name):
        out = os.path.join(tmp, name)
        with open(out, "wb") as f:
            f.write(half)
        shutil.copyfile(fp, out + ".fingerprint.json")
        return out

    model2 = os.path.join(tmp, "router2")
    make_router(model2)
    with open(os.path.join(model2, "routescore.json")) as f:
        m = json.load(f)
    m["threshold"] = 0.6
    with open(os.path.join(model2, "routescore.json"), "w") as f:
        json.dump(m, f)
    base = ["--batch", "8", "--quiet"]
    cases = [
        ("another input", ["--model", model, "--in", other] + base, "input."),
        ("another router", ["--model", model2, "--in", inp] + base, "router."),
        ("another field", ["--model", model, "--in", inp, "--field", "prompt"] + base, "field"),
        ("another shard", ["--model", model, "--in", inp, "--shard", "0/2"] + base, "shard"),
        ("another max-tokens", ["--model", model, "--in", inp, "--max-tokens", "32"] + base, "max_tokens"),
        ("another batch", ["--model", model, "--in", inp, "--batch", "16", "--quiet"], "batch"),
        ("another threshold", ["--model", model, "--in", inp, "--threshold", "0.9"] + base, "threshold"),
    ]
    for what, a, key in cases:
        out = partial("p_" + what.replace(" ", "_") + ".jsonl")
        r = run(a + ["--out", out, "--resume"])
        err = r.stderr.decode(errors="replace")
        check(r.returncode == 2, f"resume with {what}: exit 2 (got {r.returncode}: {err[-300:]!r})")
        check(key in err and "refusing" in err.lower(), f"resume with {what}: names '{key}' ({err[-300:]!r})")
        check(open(out, "rb").read() == half, f"resume with {what}: the output is untouched")

    # A moved input (same bytes, another path) is the same input.
    moved = os.path.join(tmp, "moved.jsonl")
    shutil.copyfile(inp, moved)
    out = partial("p_moved.jsonl")
    r = run(args + ["--in", moved, "--out", out, "--resume"])
    check(r.returncode == 0 and open(out, "rb").read() == want,
          f"resume from a moved copy of the input completes identically (exit {r.returncode}: {r.stderr[-300:]!r})")

    # No fingerprint: refused, untouched.
    out = os.path.join(tmp, "p_nofp.jsonl")
    with open(out, "wb") as f:
        f.write(half)
    r = run(args + ["--in", inp, "--out", out, "--resume"])
    check(r.returncode == 2 and b"fingerprint" in r.stderr and open(out, "rb").read() == half,
          f"resume without a fingerprint: refused, untouched ({r.returncode}: {r.stderr[-200:]!r})")

    # The matching resume completes byte-identically.
    out = partial("p_same.jsonl")
    r = run(args + ["--in", inp, "--out", out, "--resume"])
    check(r.returncode == 0 and open(out, "rb").read() == want, "matching resume completes byte-identically")


# -------------------------------------------------------------------- gzip

def test_gzip_out(tmp, model, ps):
    inp = jsonl_input(tmp, "g.jsonl", ps)
    args = ["--model", model, "--in", inp, "--batch", "8", "--quiet"]
    plain = os.path.join(tmp, "g.out.jsonl")
    gz = os.path.join(tmp, "g.out.jsonl.gz")
    r1 = run(args + ["--out", plain])
    r2 = run(args + ["--out", gz])
    check(r1.returncode == 0 and r2.returncode == 0, f"plain and gzip runs exit 0 ({r1.returncode}, {r2.returncode})")
    want = open(plain, "rb").read()
    raw = open(gz, "rb").read()
    check(raw[:2] == b"\x1f\x8b", "--out .gz starts with the gzip magic")
    z = subprocess.run(["zcat", gz], capture_output=True)
    check(z.returncode == 0 and z.stdout == want, f"zcat reads it and it equals the plain output (zcat exit {z.returncode})")
    check(gzip.decompress(raw) == want, "Python's gzip reads all of its members")

    # Torn trailing member: cut at random bytes, resume, identical.
    rng = random.Random(5)
    for cut in sorted(rng.sample(range(len(raw) // 3, len(raw) - 1), 2)):
        out = os.path.join(tmp, f"gcut{cut}.jsonl.gz")
        with open(out, "wb") as f:
            f.write(raw[:cut])
        shutil.copyfile(gz + ".fingerprint.json", out + ".fingerprint.json")
        r = run(args + ["--out", out, "--resume"])
        got = open(out, "rb").read()
        check(r.returncode == 0 and gzip.decompress(got) == want,
              f"gzip cut at {cut}: resumed output decompresses to the full run (exit {r.returncode}: {r.stderr[-200:]!r})")

    # SIGKILL mid-run, then resume.
    big = jsonl_input(tmp, "gbig.jsonl", ps * 2)
    bargs = ["--model", model, "--in", big, "--batch", "8", "--quiet"]
    ref = os.path.join(tmp, "gbig.ref.jsonl")
    t0 = time.time()
    run(bargs + ["--out", ref])
    full_s = time.time() - t0
    out = os.path.join(tmp, "gbig.jsonl.gz")
    p = subprocess.Popen([BIN, "label"] + bargs + ["--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(max(0.3, full_s * 0.5))
    killed = p.poll() is None
    if killed:
        p.send_signal(signal.SIGKILL)
    p.wait()
    r = run(bargs + ["--out", out, "--resume"])
    check(r.returncode == 0 and gzip.decompress(open(out, "rb").read()) == open(ref, "rb").read(),
          f"gzip output after {'a SIGKILL' if killed else 'a finished run'} and --resume equals the plain run "
          f"(exit {r.returncode}: {r.stderr[-200:]!r})")

    # A plain file named .gz is not resumed into.
    out = os.path.join(tmp, "notgz.jsonl.gz")
    with open(out, "wb") as f:
        f.write(want[:want.index(b"\n") + 1])
    shutil.copyfile(gz + ".fingerprint.json", out + ".fingerprint.json")
    r = run(args + ["--out", out, "--resume"])
    check(r.returncode == 2 and b"gzip" in r.stderr, f"resume into a plain file named .gz refused ({r.stderr[-200:]!r})")


# --------------------------------------------------------------------- CSV

def csv_quote(s):
    return '"' + s.replace('"', '""') + '"'


def test_csv(tmp, model, ps):
    ps = list(ps[:40]) + ['He said "hi", then left.', "line one\nline two, with a comma"]
    ref_in = jsonl_input(tmp, "c.jsonl", ps)
    ref_out = os.path.join(tmp, "c.ref.jsonl")
    r = run(["--model", model, "--in", ref_in, "--out", ref_out, "--quiet"])
    check(r.returncode == 0, f"JSON-lines reference exit 0 ({r.returncode})")
    ref = read_records(ref_out)

    rows = ["\ufeffid,topic,text"] + [f"q{i},t{i % 3},{csv_quote(p)}" for i, p in enumerate(ps)]
    csv = os.path.join(tmp, "c.csv")
    with open(csv, "w", newline="") as f:
        f.write("\r\n".join(rows) + "\r\n")
    out = os.path.join(tmp, "c.csv.out")
    r = run(["--model", model, "--in", csv, "--out", out, "--column", "text", "--quiet"])
    check(r.returncode == 0, f"CSV run exit 0 (got {r.returncode}: {r.stderr[-300:]!r})")
    got = read_records(out)
    check(len(got) == len(ref), f"CSV: one record per row ({len(got)} vs {len(ref)})")
    check([g["id"] for g in got] == [x["id"] for x in ref], "CSV: ids from the id column, in order")
    check(all(g.get("win_prob") == x.get("win_prob") and g.get("tokens") == x.get("tokens")
              for g, x in zip(got, ref)), "CSV: scores equal the same prompts as JSON lines")

    # gzip CSV with --format csv under another name, plus bad rows.
    bad_rows = ["id,prompt", "a,fine prompt", "b,too,many", "c,", '"d,"unterminated', ""]
    gzcsv = os.path.join(tmp, "rows.txt.gz")
    with gzip.open(gzcsv, "wt", newline="") as f:
        f.write("\n".join(bad_rows) + "\n")
    out = os.path.join(tmp, "rows.out")
    r = run(["--model", model, "--in", gzcsv, "--out", out, "--format", "csv", "--quiet"])
    recs = read_records(out) if os.path.exists(out) else []
    check(r.returncode == 1, f"CSV with bad rows: exit 1 (got {r.returncode}: {r.stderr[-300:]!r})")
    check(len(recs) == 4 and "win_prob" in recs[0] and all("error" in x for x in recs[1:]),
          f"CSV bad rows become error records, the run goes on: {recs}")
    if len(recs) == 4:
        check("fields" in recs[1]["error"] and "empty" in recs[2]["error"] and "quote" in recs[3]["error"],
              f"CSV errors say why: {[x['error'] for x in recs[1:]]}")

    # A missing column is one refusal naming the header.
    r = run(["--model", model, "--in", csv, "--out", os.path.join(tmp, "nocol.out"), "--column", "nope"])
    check(r.returncode == 2 and b"nope" in r.stderr and b"topic" in r.stderr,
          f"missing CSV column: exit 2 listing the columns ({r.stderr[-200:]!r})")
    r = run(["--model", model, "--in", csv, "--out", os.path.join(tmp, "fld.out"), "--field", "text"])
    check(r.returncode == 2 and b"--column" in r.stderr, "--field on CSV points at --column")


# ---------------------------------------------------------- up-front refusals

def test_refusals(tmp, model):
    pq_path = os.path.join(tmp, "t.parquet")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({"prompt": ["hello", "world"] * 100}), pq_path)
        real = True
    except ImportError:
        with open(pq_path, "wb") as f:  # the layout's magic at both ends, as a writer leaves it
            f.write(b"PAR1" + bytes(range(256)) * 4 + b"\x00\x00\x00\x00PAR1")
        real = False
    cases = [(pq_path, "Parquet", b"routescore-label"),
             (os.path.join(tmp, "t.zip"), "zip", b"zip"),
             (os.path.join(tmp, "t.bin"), "binary", b"binary"),
             (os.path.join(tmp, "t.txt"), "text", b"JSON lines")]
    with open(cases[1][0], "wb") as f:
        f.write(b"PK\x03\x04" + os.urandom(200))
    with open(cases[2][0], "wb") as f:
        f.write(b'{"prompt": "x\x00y"}\n' + os.urandom(100))
    with open(cases[3][0], "w") as f:
        f.write("a,b\n1,2\n")
    for path, what, needle in cases:
        out = os.path.join(tmp, os.path.basename(path) + ".out")
        r = run(["--model", model, "--in", path, "--out", out])
        err = r.stderr.decode(errors="replace")
        check(r.returncode == 2 and needle in r.stderr and err.count("\n") == 1,
              f"{what} input ({'pyarrow' if real or what != 'Parquet' else 'magic only'}): one error, exit 2 ({err!r})")
        check(not os.path.exists(out), f"{what} input: no output written")
    # gzip-compressed Parquet is sniffed after decompression
    gz = pq_path + ".gz"
    with open(pq_path, "rb") as f, gzip.open(gz, "wb") as g:
        g.write(f.read())
    r = run(["--model", model, "--in", gz, "--out", os.path.join(tmp, "pgz.out")])
    check(r.returncode == 2 and b"Parquet" in r.stderr, "gzip-compressed Parquet refused too")


# ---------------------------------------------------------------- progress

def test_progress(tmp, model, ps):
    ps = ps[:15]
    inp = jsonl_input(tmp, "prog.jsonl", ps)
    out = os.path.join(tmp, "prog.out")
    r = run(["--model", model, "--in", inp, "--out", out, "--batch", "3", "--progress-every", "0.001"])
    check(r.returncode == 0, f"progress run exit 0 ({r.returncode})")
    lines = [l for l in r.stderr.decode().splitlines() if l.startswith("{")]
    recs = []
    for l in lines:
        try:
            recs.append(json.loads(l)["progress"])
        except (ValueError, KeyError):
            check(False, f"progress line is JSON with a progress object: {l!r}")
    check(len(recs) >= 2, f"off a terminal: progress lines on stderr ({len(recs)} of them)")
    check(all(x["cmd"] == "label" and x["total"] == len(ps) and x["rate"] > 0 for x in recs),
          f"progress lines carry total and rate: {recs[:2]}")
    check(all(isinstance(x["eta_s"], (int, float)) and x["eta_s"] >= 0 for x in recs), "progress lines carry an ETA")
    dones = [x["done"] for x in recs]
    check(dones == sorted(dones) and 0 < dones[-1] <= len(ps), f"done grows: {dones}")
    check("\r" not in r.stderr.decode(), "no terminal redraws off a terminal")
    os.unlink(out)
    r = run(["--model", model, "--in", inp, "--out", out, "--batch", "3", "--progress-every", "0.001", "--quiet"])
    check(r.returncode == 0 and r.stderr == b"", "--quiet silences progress lines")
    os.unlink(out)
    r = run(["--model", model, "--in", inp, "--out", out, "--batch", "3", "--progress-every", "0"])
    check(b'"progress"' not in r.stderr, "--progress-every 0: no progress lines")


def main():
    if rstest.binary_missing():
        return 1
    if not os.path.isdir(ENCODER):
        print(f"no encoder at {ENCODER} (run bash models/fetch.sh)")
        return 77
    rsdata.skip_if_absent()
    with tempfile.TemporaryDirectory(prefix="rs_cli_formats_") as tmp:
        model = os.path.join(tmp, "router")
        make_router(model)
        ps = prompts(32)
        for name, fn in [("resume_refusals", lambda: test_resume_refusals(tmp, model, ps)),
                         ("gzip_out", lambda: test_gzip_out(tmp, model, ps)),
                         ("csv", lambda: test_csv(tmp, model, ps)),
                         ("refusals", lambda: test_refusals(tmp, model)),
                         ("progress", lambda: test_progress(tmp, model, ps))]:
            t0 = time.time()
            fn()
            print(f"  {name}: {time.time() - t0:.1f}s", flush=True)
    return rstest.result("cli_label_formats")


if __name__ == "__main__":
    sys.exit(main())
