#!/usr/bin/env python3
"""fidelity_xlmr_text — the XLM-R router path from raw text, against HF transformers.

tests/data/fidelity/xlmr_tiny_text/ is the tiny random XLM-R classifier with its
own XLM-R-style tokenizer.json (Unigram + Metaspace + Precompiled, made by
tools/gen/gen_tok_unigram.py); tools/gen/gen_xlmr_text_golden.py scored ~50 prompts with
HF (tokenizer, truncation to 128, model, softmax). Here
`routescore score --model DIR TEXT...` must give the same ids count and the
golden label probabilities within 1e-4, and `routescore tokenize` the same ids.
HF parses special-token strings written in a text ("<s>", "<mask>"), which
routescore does only when asked (manifest "parse_special_tokens", tokenize
--parse-special): the comparison runs in that mode, through a router copy with
that manifest key, and an edge-case text with specials in it must tokenize
differently by default.
Benchmark prompts are named by index and read from ../shared/data (skipped when
absent; the edge-case texts still run). Stdlib only.

Env (set by CTest): RS_BIN, RS_TEST_DATA. Exit 0 pass, 1 fail.
"""
import atexit
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import rsdata  # noqa: E402

TEST_DATA = os.environ.get("RS_TEST_DATA") or os.path.join(HERE, "..", "data")
MODEL = os.path.join(TEST_DATA, "fidelity", "xlmr_tiny_text")
GOLDEN = os.path.join(TEST_DATA, "fidelity", "xlmr_tiny_text_golden.jsonl")
TOL = 1e-4


def main():
    rs_bin = os.environ.get("RS_BIN") or os.path.join(HERE, "..", "..", "build", "routescore")
    if not os.path.isfile(rs_bin):
        print("FAIL: %s not found (not built yet)" % rs_bin)
        return 1
    with open(GOLDEN, encoding="utf-8") as f:
        gold = [json.loads(line) for line in f if line.strip()]
    prompts = rsdata.all_prompts() if rsdata.data_dir() else None
    rows, texts = [], []
    for g in gold:
        if "text" in g:
            text = g["text"]
        elif prompts is None:
            continue
        else:
            text = prompts[g["prompt_index"]]
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != g["text_sha256"]:
            print("FAIL: prompt %s changed since the golden was made" % g.get("prompt_index"))
            return 1
        rows.append(g)
        texts.append(text)
    if prompts is None:
        print("note: ../shared/data absent: %d edge-case texts only" % len(rows))
    tmp = tempfile.mkdtemp(prefix="rs_xlmr_text_")
    atexit.register(shutil.rmtree, tmp, True)
    router = os.path.join(tmp, "router")
    os.mkdir(router)
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        os.symlink(os.path.abspath(os.path.join(MODEL, f)), os.path.join(router, f))
    with open(os.path.join(router, "routescore.json"), "w") as f:
        json.dump({"kind": "bert", "parse_special_tokens": True}, f)
    p = subprocess.run([rs_bin, "score", "--model", router, "--", *texts], capture_output=True, text=True)
    if p.returncode != 0:
        print("FAIL: routescore score exited %d: %s" % (p.returncode, p.stderr[-2000:]))
        return 1
    out = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    t = subprocess.run([rs_bin, "tokenize", "--tokenizer", MODEL, "--add-special", "--parse-special", "--max-tokens",
                        "128", "--", *texts], capture_output=True, text=True)
    with_specials = [k for k, x in enumerate(texts) if "<mask>" in x or "</s>" in x]
    if with_specials:
        k = with_specials[0]
        d = subprocess.run([rs_bin, "score", "--model", MODEL, "--", texts[k]], capture_output=True, text=True)
        plain = json.loads(d.stdout.splitlines()[0]) if d.returncode == 0 and d.stdout.strip() else {}
        if plain.get("tokens") == len(rows[k]["ids"]):
            print("FAIL: text %d %r: the default mode parsed its special-token strings (%s tokens)" % (
                k, texts[k][:60], plain.get("tokens")))
            return 1
    ids = [json.loads(line) for line in t.stdout.split("\n") if line.strip()]
    bad = []
    worst = 0.0
    if len(out) != len(rows) or len(ids) != len(rows):
        print("FAIL: %d score lines, %d tokenize lines for %d texts" % (len(out), len(ids), len(rows)))
        return 1
    for k, (g, o, i) in enumerate(zip(rows, out, ids)):
        d = max(abs(a - b) for a, b in zip(o["label_probs"], g["probs"]))
        worst = max(worst, d)
        if d > TOL or o["tokens"] != len(g["ids"]) or i != g["ids"]:
            bad.append("  text %d %r: probs %s vs %s, tokens %d vs %d, ids %s" % (
                k, texts[k][:60], o["label_probs"], g["probs"], o["tokens"], len(g["ids"]),
                "equal" if i == g["ids"] else "differ"))
    if bad:
        print("FAIL: %d/%d texts differ:\n%s" % (len(bad), len(rows), "\n".join(bad[:8])))
        return 1
    print("ok   xlmr_tiny_text: %d raw-text prompts, ids equal, max|diff| %.2e" % (len(rows), worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
