"""cli_label.py — end-to-end tests of `routescore label` (CTest label `cli`).

What a long offline labelling run needs from the command, checked on the real
binary: one record per input record in order, ids echoed, gzip and OpenAI
`messages` input, malformed lines turned into error records without stopping
the run, exact resume after SIGKILL at a random moment or a torn last line,
shards whose union is everything once, and usage errors that exit 2.

The router is a small mf head (fixed random weights) over the MiniLM encoder
in $RS_MODEL_CACHE/all-minilm-l6-v2, built here so the test does not depend
on `routescore train`. Flag checks run without a model; everything else is
skipped (exit 77) only when the encoder directory is absent.
"""
import gzip
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import rsdata  # noqa: E402
import rstest  # noqa: E402
from rstest import BIN, ENCODER, check, failures, sanitizer_check  # noqa: E402


def run(args, **kw):
    return rstest.run(["label"] + args, **kw)


def read_records(path):
    with open(path, "rb") as f:
        data = f.read()
    check(data == b"" or data.endswith(b"\n"), f"{path}: ends with a newline")
    return [json.loads(l) for l in data.decode("utf-8").splitlines()]


def write_lines(path, lines):
    with open(path, "wb") as f:
        for l in lines:
            f.write(l if isinstance(l, bytes) else l.encode("utf-8"))
            f.write(b"\n")


def make_router(d):
    """An mf router: routescore.json + head.safetensors with fixed weights."""
    rng = random.Random(1234)
    dim = 384
    w = [rng.gauss(0.0, 0.6) for _ in range(dim)]
    header = {
        "mf.weight": {"dtype": "F32", "shape": [dim], "data_offsets": [0, 4 * dim]},
        "mf.bias": {"dtype": "F32", "shape": [1], "data_offsets": [4 * dim, 4 * dim + 4]},
    }
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "head.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + struct.pack(f"<{dim}f", *w) + struct.pack("<f", 0.05))
    manifest = {"name": "test-mf", "kind": "mf", "encoder": os.path.relpath(ENCODER, d),
                "head": "head.safetensors", "pooling": "mean", "normalize": True, "threshold": 0.5}
    with open(os.path.join(d, "routescore.json"), "w") as f:
        json.dump(manifest, f)


# ---------------------------------------------------------------- no model

def test_usage(tmp):
    inp = os.path.join(tmp, "u.jsonl")
    write_lines(inp, ['{"prompt": "hello"}'])
    out = os.path.join(tmp, "u.out")
    bad = [
        ["--bogus"],
        ["--in", inp],                                   # no --out
        ["--out", out],                                  # no --in
        ["--in", inp, "--out", out, "--shard", "3/3"],
        ["--in", inp, "--out", out, "--shard", "1/0"],
        ["--in", inp, "--out", out, "--shard", "x"],
        ["--in", inp, "--out", out, "--shard", "-1/2"],
        ["--in", inp, "--out", out, "--shard", "1/2/3"],
        ["--in", inp, "--out", out, "--threshold", "1.5"],
        ["--in", inp, "--out", out, "--threshold", "-0.1"],
        ["--in", inp, "--out", out, "--threshold", "nan"],
        ["--in", inp, "--out", out, "--threshold", "0.5x"],
        ["--in", inp, "--out", out, "--batch", "0"],
        ["--in", inp, "--out", out, "--batch", "many"],
        ["--in", inp, "--out", out, "--threads", "-2"],
        ["--in", inp, "--out", out, "--field", "a["],
        ["--in", inp, "--out", out, "--field", "a..b"],
        ["--in", inp, "--out", out, "--field", ""],
        ["--in", inp, "--out", out, "extra"],
        ["--in", inp, "--out", out, "--resume=yes"],
        ["--in", inp, "--out", "-", "--resume"],
        ["--in"],
    ]
    for args in bad:
        r = run(args)
        check(r.returncode == 2, f"bad flags {args} exit 2 (got {r.returncode})")
        check(r.stderr.strip() != b"", f"bad flags {args} say why")
        check(not os.path.exists(out), f"bad flags {args} write no output")
    r = run(["--help"])
    check(r.returncode == 0 and b"--resume" in r.stdout and b"--shard" in r.stdout, "--help prints usage")
    r = run(["--in", os.path.join(tmp, "missing.jsonl"), "--out", out, "--model", tmp])
    check(r.returncode == 2 and b"missing.jsonl" in r.stderr, "missing input: exit 2 naming it")
    # An existing non-empty output is refused (before any model is loaded).
    with open(out, "w") as f:
        f.write('{"id":1}\n')
    r = run(["--in", inp, "--out", out, "--model", os.path.join(tmp, "no-such-model")])
    check(r.returncode == 2 and b"--resume" in r.stderr, "existing output refused, pointing at --resume")
    with open(out) as f:
        check(f.read() == '{"id":1}\n', "refused output left untouched")
    r = run(["--in", inp, "--out", os.path.join(tmp, "no-dir", "x.out"), "--model", tmp])
    check(r.returncode == 2, "unwritable output: exit 2")
    r = run(["--in", inp, "--out", os.path.join(tmp, "m.out"), "--model", os.path.join(tmp, "no-such-model")])
    check(r.returncode == 2 and b"no-such-model" in r.stderr, "missing model: exit 2 naming it")


# ------------------------------------------------------------- with model

def test_mtbench(tmp, model):
    q = os.path.join(rsdata.data_dir(), "mt_bench", "question.jsonl")
    qs = rsdata.mtbench_questions()
    out = os.path.join(tmp, "mt.jsonl")
    r = run(["--model", model, "--in", q, "--out", out, "--field", "turns[0]", "--threshold", "0.5"])
    check(r.returncode == 0, f"mt_bench label exit 0 (got {r.returncode}: {r.stderr[-500:]!r})")
    recs = read_records(out)
    check(len(recs) == 80, f"mt_bench: 80 records (got {len(recs)})")
    check([x.get("id") for x in recs] == [x["question_id"] for x in qs], "mt_bench: ids are question_id, in order")
    for x in recs:
        p = x.get("win_prob")
        check(isinstance(p, float) and 0.0 <= p <= 1.0, f"win_prob in [0,1]: {x}")
        check(x.get("route") == ("strong" if p >= 0.5 else "weak"), f"route follows --threshold 0.5: {x}")
        check(isinstance(x.get("tokens"), int) and x["tokens"] > 2, f"tokens counted: {x}")
        check(x.get("truncated") is (x["tokens"] >= 256), f"truncated only at the encoder's 256 tokens: {x}")
        check("label_probs" not in x and "error" not in x, f"mf record shape: {x}")
    ps = [x["win_prob"] for x in recs]
    check(max(ps) - min(ps) > 1e-3, "scores vary across prompts")
    # Same prompts, second turn: a different field gives different scores.
    out2 = os.path.join(tmp, "mt2.jsonl")
    r = run(["--model", model, "--in", q, "--out", out2, "--field", "turns[1]", "--quiet"])
    check(r.returncode == 0 and r.stderr == b"", "turns[1] run, --quiet is silent")
    check([x["win_prob"] for x in read_records(out2)] != ps, "turns[1] scores differ from turns[0]")
    # The backend flags: cpu named explicitly gives the same bytes; an unknown one is refused.
    out3 = os.path.join(tmp, "mt3.jsonl")
    r = run(["--model", model, "--in", q, "--out", out3, "--field", "turns[0]", "--threshold", "0.5", "--quiet",
             "--backend", "cpu", "--device", "0"])
    check(r.returncode == 0 and open(out3, "rb").read() == open(out, "rb").read(),
          "--backend cpu --device 0: the same output bytes")
    r = run(["--model", model, "--in", q, "--out", os.path.join(tmp, "mt4.jsonl"), "--backend", "tpu"])
    check(r.returncode == 2 and b"unknown backend 'tpu'" in r.stderr, f"--backend tpu: exit 2 naming it ({r.stderr[-200:]!r})")
    return recs


def test_messages_and_gzip(tmp, model):
    texts = ["What is the capital of France?", "Write a haiku about routers.",
             "Prove that there are infinitely many primes.", "Quelle heure est-il ?"]
    lines = []
    for i, t in enumerate(texts):
        lines.append(json.dumps({"id": f"p{i}", "prompt": t}))
        lines.append(json.dumps({"id": f"m{i}", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": t}]}))
        # A list of parts: text parts joined with "\n", images ignored.
        head, _, tail = t.partition(" ")
        lines.append(json.dumps({"id": f"l{i}", "messages": [
            {"role": "user", "content": [{"type": "text", "text": head},
                                         {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                                         {"type": "text", "text": tail}]},
            {"role": "assistant", "content": "ok"}]}))
        lines.append(json.dumps({"id": f"j{i}", "prompt": head + "\n" + tail}))
    lines.append(json.dumps({"id": "nouser", "messages": [{"role": "system", "content": "x"}]}))
    inp = os.path.join(tmp, "msg.jsonl")
    write_lines(inp, lines)
    out = os.path.join(tmp, "msg.out")
    # --batch 1: every prompt alone, so equal texts give bit-equal scores.
    r = run(["--model", model, "--in", inp, "--out", out, "--batch", "1", "--quiet"])
    check(r.returncode == 1, f"messages: one bad record -> exit 1 (got {r.returncode})")
    recs = {x["id"]: x for x in read_records(out)}
    check(len(recs) == len(lines), "messages: one record per line")
    for i in range(len(texts)):
        check(recs[f"m{i}"].get("win_prob") == recs[f"p{i}"].get("win_prob"),
              f"messages: last user message scored like the prompt ({i})")
        check(recs[f"l{i}"].get("win_prob") == recs[f"j{i}"].get("win_prob"),
              f"messages: text parts joined with newline ({i})")
    check("error" in recs["nouser"] and recs["nouser"].get("line") == len(lines), "no user message -> error record")

    # gzip input gives the same bytes as the plain file.
    gz = os.path.join(tmp, "msg.jsonl.gz")
    with open(inp, "rb") as f, gzip.open(gz, "wb") as g:
        g.write(f.read())
    outgz = os.path.join(tmp, "msg.gz.out")
    r = run(["--model", model, "--in", gz, "--out", outgz, "--batch", "1", "--quiet"])
    check(r.returncode == 1, "gzip: same exit code")
    check(open(out, "rb").read() == open(outgz, "rb").read(), "gzip input: output identical to plain")
    # stdin works too.
    with open(inp, "rb") as f:
        r = subprocess.run([BIN, "label", "--model", model, "--in", "-", "--out", "-", "--batch", "1", "--quiet"],
                           stdin=f, capture_output=True)
    sanitizer_check(r, ["stdin"])
    check(r.stdout == open(out, "rb").read(), "stdin -> stdout: same output")
    # A truncated gzip stream is a fatal input error, not silent success.
    data = open(gz, "rb").read()
    bad = os.path.join(tmp, "cut.jsonl.gz")
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 2])
    r = run(["--model", model, "--in", bad, "--out", os.path.join(tmp, "cut.out"), "--quiet"])
    check(r.returncode == 2, f"truncated gzip: exit 2 (got {r.returncode})")


def test_malformed(tmp, model):
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(300)).replace(b"\n", b"x")
    big = "lorem ipsum dolor sit amet " * ((1 << 20) // 27 + 1)  # ~1 MB
    huge = b'{"prompt": "' + b"a" * (17 << 20) + b'"}'           # over the 16 MB line bound
    lines = [
        '{"id": "ok1", "prompt": "Explain the difference between TCP and UDP."}',  # 1
        garbage,                                                                   # 2 binary
        '{"prompt": "unterminated',                                                # 3 bad JSON
        '{"text": "no prompt field here"}',                                        # 4 missing field
        b'{"prompt": "bad \xff\xfe utf8"}',                                        # 5 invalid UTF-8
        '{"prompt": ""}',                                                          # 6 empty prompt
        json.dumps({"id": "big", "prompt": big}),                                  # 7 1 MB prompt
        '{"prompt": 42}',                                                          # 8 not a string
        huge,                                                                      # 9 line too long
        '{"prompt": "nul \\u0000 inside"}',                                       # 10 escaped NUL
        '{"prompt": "two values"} {"prompt": "x"}',                                # 11 trailing data
        "   ",                                                                     # 12 blank: skipped
        '[1, 2, 3]',                                                               # 13 not an object
        b'{"prompt": "raw\x00nul"}',                                               # 14 raw NUL
        '{"id": 17, "prompt": "What is 2 + 2?"}',                                  # 15
    ]
    inp = os.path.join(tmp, "bad.jsonl")
    write_lines(inp, lines)
    out = os.path.join(tmp, "bad.out")
    r = run(["--model", model, "--in", inp, "--out", out, "--quiet"])
    check(r.returncode == 1, f"malformed: exit 1 (got {r.returncode}: {r.stderr[-300:]!r})")
    recs = read_records(out)
    check(len(recs) == 14, f"malformed: blank line skipped, 14 records (got {len(recs)})")
    by_line = {}
    for x in recs:
        if "error" in x:
            by_line[x["line"]] = x
    check(sorted(by_line) == [2, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14],
          f"malformed: error records at the bad lines (got {sorted(by_line)})")
    for ln, x in by_line.items():
        check(isinstance(x["error"], str) and x["error"], f"line {ln}: error says why")
        check(x["id"] == ln, f"line {ln}: id falls back to the line number")
    check("line is longer" in by_line[9]["error"], "long line: error names the bound")
    check("UTF-8" in by_line[5]["error"], "invalid UTF-8 named")
    check("empty" in by_line[6]["error"], "empty prompt named")
    good = [x for x in recs if "error" not in x]
    check([x["id"] for x in good] == ["ok1", "big", 17], f"good records scored: {[x['id'] for x in good]}")
    bigrec = [x for x in good if x["id"] == "big"]
    check(bigrec and bigrec[0]["truncated"] is True and bigrec[0]["tokens"] > 100, "1 MB prompt scored, truncated")
    check([x["id"] for x in recs][:2] == ["ok1", 2], "records stay in input order")


def resume_input(tmp):
    """A few hundred real prompts (cut short to keep the test fast), with a
    few bad and blank lines mixed in. String ids, so they never collide with
    the line numbers that error records fall back to."""
    prompts = [p[:240] for _, p, _, _ in rsdata.mmlu_rows()][::61][:220]
    lines = []
    for i, p in enumerate(prompts):
        if i % 97 == 50:
            lines.append('{"prompt": broken')
        if i % 113 == 60:
            lines.append("")
        lines.append(json.dumps({"id": f"q{i}", "prompt": p}))
    path = os.path.join(tmp, "resume.jsonl")
    write_lines(path, lines)
    return path


def test_resume(tmp, model, seed):
    rng = random.Random(seed)
    inp = resume_input(tmp)
    ref = os.path.join(tmp, "ref.out")
    args = ["--model", model, "--in", inp, "--batch", "16", "--quiet"]
    t0 = time.time()
    r = run(args + ["--out", ref])
    full_s = time.time() - t0
    check(r.returncode == 1, f"resume input: exit 1 for its bad lines (got {r.returncode})")
    want = open(ref, "rb").read()
    n_ref = want.count(b"\n")

    # SIGKILL at random moments, then --resume (possibly several times).
    for trial in range(2):
        out = os.path.join(tmp, f"kill{trial}.out")
        kills = 0
        for attempt in range(2):
            p = subprocess.Popen([BIN, "label"] + args + ["--out", out] + (["--resume"] if attempt else []),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.05, max(0.1, full_s * 0.6)))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait()
        partial = os.path.getsize(out) if os.path.exists(out) else 0
        print(f"    kill trial {trial}: {kills} SIGKILLs, {partial} of {len(want)} bytes written before the last resume")
        r = run(args + ["--out", out, "--resume"])
        check(r.returncode == 1, f"kill trial {trial}: resumed run exit 1 like the full run (got {r.returncode})")
        got = open(out, "rb").read()
        n_got = got.count(b"\n")
        check(got == want, f"kill trial {trial} ({kills} kills): resumed output equals the full run "
                           f"({n_got} vs {n_ref} records)")

    # Torn last line at random byte offsets (and on a boundary, and empty).
    cuts = sorted(rng.sample(range(len(want) // 2, len(want) - 1), 3)) + [want.rindex(b"\n", 0, len(want) - 1) + 1,
                                                                        len(want)]
    for cut in cuts:
        out = os.path.join(tmp, f"cut{cut}.out")
        with open(out, "wb") as f:
            f.write(want[:cut])
        # as a killed run leaves it: the fingerprint is written before any record
        shutil.copyfile(ref + ".fingerprint.json", out + ".fingerprint.json")
        r = run(args + ["--out", out, "--resume"])
        check(r.returncode == 1, f"cut at {cut}: exit 1 (got {r.returncode}: {r.stderr[-300:]!r})")
        check(open(out, "rb").read() == want, f"cut at byte {cut}: resumed output equals the full run")

    # --resume on something that is not a label output is refused untouched.
    out = os.path.join(tmp, "foreign.out")
    with open(out, "w") as f:
        f.write("hello\nworld\n")
    r = run(args + ["--out", out, "--resume"])
    check(r.returncode == 2 and open(out).read() == "hello\nworld\n", "resume refuses a foreign file")


def test_shards(tmp, model):
    inp = resume_input(tmp)
    full = os.path.join(tmp, "ref.out")
    ref = {x["id"]: x for x in read_records(full)}
    n_lines = open(inp, "rb").read().count(b"\n")
    seen = {}
    for i in range(3):
        out = os.path.join(tmp, f"shard{i}.out")
        r = run(["--model", model, "--in", inp, "--out", out, "--batch", "16", "--quiet", "--shard", f"{i}/3"])
        check(r.returncode in (0, 1), f"shard {i}/3 ran (got {r.returncode})")
        for x in read_records(out):
            seen.setdefault(x["id"], []).append((i, x))
    check(sorted(seen, key=str) == sorted(ref, key=str), "shards: union of ids equals the full run")
    check(all(len(v) == 1 for v in seen.values()), "shards: each record exactly once")
    # Membership is by 0-based physical line index.
    with open(inp, encoding="utf-8") as f:
        for idx, line in enumerate(f):
            if not line.strip():
                continue
            try:
                rid = json.loads(line)["id"]
            except (ValueError, KeyError):
                rid = idx + 1
            got = seen.get(rid)
            check(got and got[0][0] == idx % 3, f"shards: line {idx + 1} in shard {idx % 3}")
    for rid, [(i, x)] in seen.items():
        y = ref[rid]
        if "error" in y:
            check(x == y, f"shards: error record {rid} identical")
        else:
            check(abs(x["win_prob"] - y["win_prob"]) < 1e-5, f"shards: record {rid} scores like the full run")
    check(n_lines > 200, "shards: enough lines")


def test_max_tokens(tmp, model):
    """--max-tokens on label and embed: prompts are cut to N ids (specials
    included) and flagged truncated, which changes the score; short prompts
    are untouched; N below 3 is refused."""
    long_p = "Prove that there are infinitely many primes, then explain the proof to a child in detail."
    inp = os.path.join(tmp, "maxtok.jsonl")
    write_lines(inp, [json.dumps({"id": 1, "prompt": long_p}), json.dumps({"id": 2, "prompt": "hi"})])
    full, cut = os.path.join(tmp, "maxtok_full.jsonl"), os.path.join(tmp, "maxtok_cut.jsonl")
    r1 = run(["--model", model, "--in", inp, "--out", full, "--quiet"])
    r2 = run(["--model", model, "--in", inp, "--out", cut, "--quiet", "--max-tokens", "8"])
    check(r1.returncode == 0 and r2.returncode == 0, f"label --max-tokens: exit {r1.returncode}/{r2.returncode}")
    if r1.returncode == 0 and r2.returncode == 0:
        a, b = read_records(full), read_records(cut)
        check(a[0]["tokens"] > 8 and not a[0]["truncated"] and b[0]["tokens"] == 8 and b[0]["truncated"],
              f"label --max-tokens 8 cuts the long prompt: {a[0]} / {b[0]}")
        check(abs(a[0]["win_prob"] - b[0]["win_prob"]) > 1e-6, "cutting the prompt changes its score")
        # (its batch-mate's length differs, so the GEMM blocking may round differently)
        check(a[1]["tokens"] == b[1]["tokens"] and not b[1]["truncated"]
              and abs(a[1]["win_prob"] - b[1]["win_prob"]) < 1e-6, f"a short prompt is untouched: {a[1]} / {b[1]}")
    r = rstest.run(["embed", "--model", model, "--in", inp, "--max-tokens", "8"])
    recs = [json.loads(l) for l in r.stdout.decode().splitlines()] if r.returncode == 0 else []
    check(len(recs) == 2 and recs[0]["tokens"] == 8 and recs[0]["truncated"] and not recs[1]["truncated"],
          f"embed --max-tokens 8: exit {r.returncode}, {[(x['tokens'], x['truncated']) for x in recs]}")
    r = run(["--model", model, "--in", inp, "--out", os.path.join(tmp, "maxtok_bad.jsonl"), "--max-tokens", "2"])
    check(r.returncode == 2 and b"--max-tokens" in r.stderr, f"label --max-tokens 2 is refused ({r.returncode})")


def main():
    if rstest.binary_missing():
        return 1
    seed = int(os.environ.get("RS_TEST_SEED", str(int(time.time()))))
    print(f"seed {seed} (set RS_TEST_SEED to repeat)")
    with tempfile.TemporaryDirectory(prefix="rs_cli_label_") as tmp:
        test_usage(tmp)
        if not os.path.isdir(ENCODER):
            print(f"skipped the model tests: no encoder at {ENCODER} (run bash models/fetch.sh)")
            return 1 if failures else 77
        rsdata.skip_if_absent()
        model = os.path.join(tmp, "router")
        make_router(model)
        for name, fn in [("mtbench", lambda: test_mtbench(tmp, model)),
                         ("messages_and_gzip", lambda: test_messages_and_gzip(tmp, model)),
                         ("malformed", lambda: test_malformed(tmp, model)),
                         ("resume", lambda: test_resume(tmp, model, seed)),
                         ("shards", lambda: test_shards(tmp, model)),
                         ("max_tokens", lambda: test_max_tokens(tmp, model))]:
            t0 = time.time()
            fn()
            print(f"  {name}: {time.time() - t0:.1f}s", flush=True)
    return rstest.result("cli_label")


if __name__ == "__main__":
    sys.exit(main())
