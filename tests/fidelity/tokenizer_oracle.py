#!/usr/bin/env python3
"""tokenizer_oracle — routescore's tokenizer against HF `tokenizers` on real text.

Runs `routescore tokenize --add-special` over every RouteLLM prompt plus the
adversarial texts of tests/lib/advtext.py and compares each line with the golden
made by tools/gen/gen_tokenizer_golden.py (and, when `tokenizers` is importable,
live against HF too, plus a truncation pass with --max-tokens). Then checks
that invalid-UTF-8 and malformed lines come back as per-line errors while the
lines around them still tokenize. Zero mismatches is the bar.
Exit 77 (skipped) when the tokenizer.json or the shared data is absent.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import rsdata  # noqa: E402
import tok_golden as gold  # noqa: E402

SHOW = 5  # diffs printed per check


def run_cli(binary, tok_path, jsonl_bytes, extra=("--parse-special",)):
    # --parse-special by default: HF parses special tokens written in the text
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as f:
        f.write(jsonl_bytes)
        name = f.name
    try:
        p = subprocess.run([binary, "tokenize", "--tokenizer", tok_path, "--add-special", *extra,
                            "--in", name, "--field", "prompt"], capture_output=True)
    finally:
        os.unlink(name)
    return p.returncode, p.stdout.decode("utf-8", "replace").splitlines(), p.stderr.decode("utf-8", "replace")


def to_jsonl(texts):
    return "".join(json.dumps({"prompt": t}, ensure_ascii=False) + "\n" for t in texts).encode("utf-8")


def parse_ids(line):
    v = json.loads(line)
    return v if isinstance(v, list) else None


def excerpt(t, n=80):
    return repr(t if len(t) <= n else t[:n] + "...")


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def report(name, texts, got, expected_digests, hf_ids):
    """Counts lines whose ids differ from the golden (or HF); prints the first few."""
    bad = []
    for i, t in enumerate(texts):
        ids = parse_ids(got[i]) if i < len(got) else None
        ok = ids is not None and (gold.ids_digest(ids), len(ids)) == expected_digests[i]
        if hf_ids is not None and ids != hf_ids[i]:
            ok = False
        if not ok:
            bad.append(i)
    print("%s: %d texts, %d mismatches" % (name, len(texts), len(bad)))
    for i in bad[:SHOW]:
        got_line = got[i] if i < len(got) else "<missing>"
        print("  text %d %s" % (i, excerpt(texts[i])))
        if hf_ids is not None:
            ids = parse_ids(got_line) if got_line.startswith("[") else None
            k = first_diff(hf_ids[i], ids or [])
            print("    expected (HF) from %d: %s" % (k, hf_ids[i][k:k + 12]))
            print("    got           from %d: %s" % (k, (ids or [])[k:k + 12] if ids else got_line[:200]))
        else:
            print("    expected digest %s count %d; got %s" % (expected_digests[i] + (got_line[:200],)))
    return len(bad)


def load_golden(path):
    with open(path) as f:
        header = f.readline()
        rows = []
        for line in f:
            d, n = line.split()
            rows.append((d, int(n)))
    return header, rows


def check_errors(binary, tok_path):
    """Invalid UTF-8 and malformed lines: an error line each, neighbours intact."""
    lines = [b'{"prompt": "hello world"}', b'{"prompt": "bad \xff byte"}', b'{"prompt": "caf\xc3"}',
             b'{"prompt": "\xed\xa0\x80 surrogate"}', b'{"prompt": "overlong \xc0\xaf"}',
             b'{"prompt": "\xf4\x90\x80\x80 above U+10FFFF"}', b'not json', b'{"other": "x"}',
             b'{"prompt": 5}', b'{"prompt": "fine again"}',
             # NUL is refused as label refuses it (it would cut the text), raw or escaped;
             # a lone surrogate escape names itself; a proper pair and an escaped backslash pass
             b'{"prompt": "cut\x00here"}', b'{"prompt": "cut\\u0000here"}', b'{"prompt": "x\\ud800y"}',
             b'{"prompt": "x\\udc00y"}', b'{"prompt": "pair \\ud83d\\ude00"}', b'{"prompt": "\\\\ud800"}']
    rc, out, err = run_cli(binary, tok_path, b"\n".join(lines) + b"\n")
    failures = 0
    expect_err = [False, True, True, True, True, True, True, True, True, False, True, True, True, True, False, False]
    cause = {11: "NUL", 12: "NUL", 13: "surrogate", 14: "surrogate"}
    if rc != 1:
        print("invalid-utf8 check: exit code %d, expected 1 (stderr: %s)" % (rc, err.strip()))
        failures += 1
    if len(out) != len(lines):
        print("invalid-utf8 check: %d output lines for %d input lines" % (len(out), len(lines)))
        return failures + 1
    for i, (line, want_err) in enumerate(zip(out, expect_err)):
        v = json.loads(line)
        is_err = isinstance(v, dict) and v.get("line") == i + 1 and "error" in v
        if is_err != want_err or (not want_err and not isinstance(v, list)):
            print("invalid-utf8 check: line %d: got %s" % (i + 1, line))
            failures += 1
        elif i + 1 in cause and cause[i + 1] not in v["error"]:
            print("invalid-utf8 check: line %d error should name the cause (%s): %s" % (i + 1, cause[i + 1], line))
            failures += 1
        elif i == 1 and "offset 16" not in v["error"]:
            # the line is checked before it is parsed, as label checks it: the offset is the line's
            print("invalid-utf8 check: line 2 error should give byte offset 16: %s" % line)
            failures += 1
    print("invalid-utf8 check: %d lines, %d failures" % (len(lines), failures))
    return failures


def check_added_options(binary, tok_path):
    """Added tokens with normalized/lstrip/rstrip/single_word set, live against HF."""
    from tokenizers import AddedToken
    hf = gold.hf_tokenizer(tok_path)
    hf.add_tokens([AddedToken("Foo Bar", normalized=True), AddedToken("zap", normalized=True, single_word=True),
                   AddedToken("<x>", normalized=False, lstrip=True, rstrip=True),
                   AddedToken("\u00e9clair", normalized=True), AddedToken("<y>", normalized=False, single_word=True),
                   AddedToken("ab", normalized=False, lstrip=True)])
    hf.add_special_tokens([AddedToken("<sp>", normalized=False, rstrip=True)])
    texts = ["foo bar", "FOO BAR baz", "xfoo barx", "zap zapper zap_ zap.", "a <x>  b", "a<x>b", "  <x>",
             "ECLAIR eclair \u00c9clair", "a <y> b", "a<y>b", "<y>", "<sp>  hi", "xx ab ab", "  ab", "zapzap",
             "Foo  Bar", "foo bar<x>foo bar", "[SEP]foo bar", "\u4e2dzap\u4e2d", "zap\u0301 zap\u00e9"]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tokenizer.json")
        hf.save(path)
        rc, out, err = run_cli(binary, path, to_jsonl(texts))
    want = [e.ids for e in hf.encode_batch(texts)]
    got = [parse_ids(line) for line in out]
    wrong = [i for i in range(len(texts)) if i >= len(got) or got[i] != want[i]]
    print("added-token options: %d texts, %d mismatches" % (len(texts), len(wrong)))
    for i in wrong[:SHOW]:
        print("  %s\n    expected %s\n    got      %s" % (excerpt(texts[i]), want[i], got[i] if i < len(got) else None))
    return len(wrong) + (rc != 0)


def check_plain_specials(binary, tok_path, hf, texts):
    """routescore's default: special tokens written in the text are plain text,
    as HF with encode_special_tokens=True; on every text plus some that write
    [CLS]/[SEP]/[MASK]."""
    sp = [a.content for a in hf.get_added_tokens_decoder().values() if a.special]
    extra = ["%s hello %s" % (t, t) for t in sp] + ["".join(sp), "a[SEP]b", "[[MASK]]", "[sep] [SEP]"]
    texts = texts + extra
    hf.encode_special_tokens = True
    want = [e.ids for e in hf.encode_batch(texts)]
    hf.encode_special_tokens = False
    rc, out, err = run_cli(binary, tok_path, to_jsonl(texts), [])
    got = [parse_ids(line) for line in out]
    wrong = [i for i in range(len(texts)) if i >= len(got) or got[i] != want[i]]
    print("special tokens as plain text (default): %d texts, %d mismatches" % (len(texts), len(wrong)))
    for i in wrong[:SHOW]:
        print("  %s\n    expected %s\n    got      %s" % (excerpt(texts[i]), want[i], got[i] if i < len(got) else None))
    parsed = [e.ids for e in hf.encode_batch(extra)]
    if parsed == want[-len(extra):]:
        print("special tokens: HF encodes them the same in both modes: no check")
        return 1
    return len(wrong) + (rc != 0)


def main():
    binary = os.environ.get("RS_BIN")
    tok_path = gold.default_tokenizer_json()
    if not os.path.isfile(tok_path):
        print("skipped: %s not found (run models/fetch.sh)" % tok_path)
        return 77
    rsdata.skip_if_absent()
    if not binary or not os.path.exists(binary):
        print("RS_BIN not set or missing: %s" % binary)
        return 1
    header, golden = load_golden(gold.GOLDEN)
    real, adv = gold.all_texts()
    texts = real + adv
    digest = gold.texts_digest(texts)
    if digest not in header or len(golden) != len(texts):
        print("golden does not match the texts (%d texts, digest %s; golden: %s): regenerate it with "
              "tools/gen/gen_tokenizer_golden.py" % (len(texts), digest, header.strip()))
        return 1
    try:
        hf = gold.hf_tokenizer(tok_path)
    except ImportError:
        hf = None
        print("note: `tokenizers` not importable; checking against the golden only")
    rc, out, err = run_cli(binary, tok_path, to_jsonl(texts))
    if rc != 0:
        print("routescore tokenize exited %d: %s" % (rc, err.strip()[:500]))
    hf_ids = [e.ids for e in hf.encode_batch(texts)] if hf else None
    n = len(real)
    bad = report("real prompts", real, out[:n], golden[:n], hf_ids[:n] if hf else None)
    bad += report("adversarial texts", adv, out[n:], golden[n:], hf_ids[n:] if hf else None)
    if rc != 0:
        bad += 1
    if hf:
        # truncation: HF cuts content on the right and keeps the specials
        for max_len in (8, 128):
            hf.enable_truncation(max_len)
            want = [e.ids for e in hf.encode_batch(texts)]
            hf.no_truncation()
            rc, out, err = run_cli(binary, tok_path, to_jsonl(texts), ["--parse-special", "--max-tokens", str(max_len)])
            got = [parse_ids(line) for line in out]
            wrong = [i for i in range(len(texts)) if i >= len(got) or got[i] != want[i]]
            print("truncation --max-tokens %d: %d texts, %d mismatches" % (max_len, len(texts), len(wrong)))
            for i in wrong[:SHOW]:
                print("  text %d %s\n    expected %s\n    got      %s"
                      % (i, excerpt(texts[i]), want[i], got[i] if i < len(got) else None))
            bad += len(wrong) + (rc != 0)
        bad += check_added_options(binary, tok_path)
        bad += check_plain_specials(binary, tok_path, hf, texts)
    bad += check_errors(binary, tok_path)
    print("tokenizer_oracle: %s" % ("ok" if not bad else "FAILED (%d)" % bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
