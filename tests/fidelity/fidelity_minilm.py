#!/usr/bin/env python3
"""fidelity_minilm — routescore's MiniLM path against HF transformers goldens.

Checks, on the prompts chosen in tests/data/fidelity/minilm_select.json:
  1. `routescore tokenize` ids equal HF's (WordPiece, [CLS]..[SEP], right truncation at 256);
  2. `routescore embed` token counts, truncation flags, and embeddings with
     cosine >= 0.99999 to sentence-transformers' (mean pool + L2 normalise);
  3. `routescore label` on a router dir = MiniLM encoder + its pooler + a random
     3-label classifier (committed head): softmax within 1e-4 absolute.
Goldens come from tools/gen/gen_fidelity.py. Stdlib only (CI runs it without torch).

Env (set by CTest): RS_BIN, RS_MODEL_CACHE, RS_TEST_DATA, RS_SHARED_DATA, RS_SOURCE_DIR.
Exit 0 pass, 1 fail, 77 skipped (no model cache or shared data).
`--self-test` feeds the goldens themselves instead of running the binary (`--self-test
perturb` damages a few rows to show that the checks catch it).
"""
import argparse
import array
import gzip
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("RS_SOURCE_DIR") or os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import rsdata  # noqa: E402

TEST_DATA = os.environ.get("RS_TEST_DATA") or os.path.join(HERE, "..", "data")
FID = os.path.join(TEST_DATA, "fidelity")
CACHE = os.environ.get("RS_MODEL_CACHE") or os.path.join(SRC, "models", "cache")
MODEL = os.path.join(CACHE, "all-minilm-l6-v2")

COS_MIN = 0.99999
PROB_TOL = 1e-4
DIM = 384
SHOW = 8          # worst cases printed per check
ENCODER_SHARD = "encoder.safetensors"   # in the router dir: a symlink to MiniLM's weights


def skip(why):
    print(f"skipped: {why}")
    sys.exit(77)


def load_goldens():
    sel = json.load(open(os.path.join(FID, "minilm_select.json"), encoding="utf-8"))
    rows = sel["rows"]
    with gzip.open(os.path.join(FID, "minilm_golden.jsonl.gz"), "rt", encoding="utf-8") as f:
        gold = [json.loads(line) for line in f if line.strip()]
    raw = gzip.open(os.path.join(FID, "minilm_emb.f32.gz"), "rb").read()
    emb = array.array("f")
    emb.frombytes(raw)
    if sys.byteorder != "little":
        emb.byteswap()
    assert len(gold) == len(rows) and len(emb) == len(rows) * DIM, "golden files disagree"
    return sel, rows, gold, [emb[i * DIM:(i + 1) * DIM] for i in range(len(rows))]


def prompt_texts(sel, rows, gold):
    """The selected prompts, checked against the digests taken at generation."""
    need_data = any("index" in r for r in rows)
    prompts = None
    if need_data:
        if rsdata.data_dir() is None:
            skip("../shared/data/routellm not found (set RS_SHARED_DATA)")
        prompts = rsdata.all_prompts()
        if len(prompts) != sel["n_all_prompts"]:
            sys.exit(f"FAIL: shared data changed: {len(prompts)} prompts, goldens were made "
                     f"on {sel['n_all_prompts']}; regenerate with tools/gen/gen_fidelity.py")
    texts = [prompts[r["index"]] if "index" in r else r["text"] for r in rows]
    drift = [k for k, (t, g) in enumerate(zip(texts, gold))
             if hashlib.sha256(t.encode("utf-8")).hexdigest() != g["prompt_sha256"]]
    if drift:
        sys.exit(f"FAIL: {len(drift)} selected prompts differ from the ones the goldens were "
                 f"made on (rows {drift[:10]}); regenerate with tools/gen/gen_fidelity.py")
    return texts


def run(cmd, what, rep, out_path=None):
    """Run the binary; its stdout (or out_path's text), or None after reporting why not."""
    print("+ " + " ".join(cmd), flush=True)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=1200)
    except FileNotFoundError:
        return rep.fail(what, f"{cmd[0]} not found (not built yet?)")
    except subprocess.TimeoutExpired:
        return rep.fail(what, "timed out")
    if p.returncode != 0:
        return rep.fail(what, f"exit {p.returncode} (not built yet?)\n{p.stderr[-4000:]}")
    if out_path is None:
        return p.stdout
    with open(out_path, encoding="utf-8") as f:
        return f.read()


def parse_lines(text, n, what, rep):
    if text is None:
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != n:
        return rep.fail(what, f"{len(lines)} output lines for {n} inputs")
    try:
        return [json.loads(line) for line in lines]
    except json.JSONDecodeError as e:
        return rep.fail(what, f"output is not JSON lines: {e}")


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na > 0 and nb > 0 else 0.0


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


class Report:
    """Collects failures per check; prints counts and the worst cases."""

    def __init__(self):
        self.failed = []

    def fail(self, name, why):
        print(f"FAIL {name}: {why}")
        self.failed.append(name)
        return None

    def check(self, name, n, bad, worst_lines):
        if bad:
            print(f"FAIL {name}: {len(bad)}/{n} rows")
            for line in worst_lines[:SHOW]:
                print("    " + line)
            self.failed.append(name)
        else:
            print(f"ok   {name}: {n} rows")


def tag(rows, k):
    r = rows[k]
    return f"row {k} ({r['reason']}{', prompt ' + str(r['index']) if 'index' in r else ''})"


# ----------------------------------------------------------------- fakes for --self-test

def fake_outputs(gold, emb, mode):
    """What a perfect (or, with 'perturb', a slightly broken) engine would print."""
    tok, embd, lab = [], [], []
    for k, g in enumerate(gold):
        ids, e, probs = list(g["ids"]), list(emb[k]), list(g["cls_probs"])
        if mode == "perturb" and k % 97 == 5:
            ids[-2] += 1
            e = [x + (0.01 if j % 7 == 0 else 0) for j, x in enumerate(e)]
            probs = [probs[0] - 3e-4, probs[1] + 3e-4, probs[2]]
        tok.append(json.dumps(ids))
        embd.append(json.dumps({"id": k, "tokens": g["tokens"], "truncated": g["truncated"],
                                "embedding": e}))
        lab.append(json.dumps({"id": k, "win_prob": probs[0], "route": "strong",
                               "label_probs": probs, "tokens": g["tokens"],
                               "truncated": g["truncated"]}))
    return "\n".join(tok), "\n".join(embd), "\n".join(lab)


# ----------------------------------------------------------------- router dir

def make_router_dir(d):
    """MiniLM encoder + committed classifier head, laid out as routescore loads it."""
    cfg = json.load(open(os.path.join(MODEL, "config.json"), encoding="utf-8"))
    cfg["architectures"] = ["BertForSequenceClassification"]
    cfg["id2label"] = {str(i): f"LABEL_{i}" for i in range(3)}
    cfg["label2id"] = {f"LABEL_{i}": i for i in range(3)}
    with open(os.path.join(d, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json", "sentence_bert_config.json"):
        os.symlink(os.path.abspath(os.path.join(MODEL, name)), os.path.join(d, name))
    # The encoder shard is not called model.safetensors: a loader that, like HF, prefers
    # model.safetensors over the index would otherwise never see the head.
    os.symlink(os.path.abspath(os.path.join(MODEL, "model.safetensors")),
               os.path.join(d, ENCODER_SHARD))
    shutil.copyfile(os.path.join(FID, "minilm_cls_head.safetensors"),
                    os.path.join(d, "head.safetensors"))
    weight_map = {name: ENCODER_SHARD for name in safetensors_names(
        os.path.join(MODEL, "model.safetensors"))}
    for name in safetensors_names(os.path.join(d, "head.safetensors")):
        assert name not in weight_map, name
        weight_map[name] = "head.safetensors"
    assert {"classifier.weight", "classifier.bias"} <= set(weight_map)
    with open(os.path.join(d, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=1, sort_keys=True)


def safetensors_names(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return sorted(k for k in header if k != "__metadata__")


# ----------------------------------------------------------------- checks

def check_ids(rep, rows, texts, gold, got):
    if got is None:
        return
    bad, worst = [], []
    for k, (ids, g) in enumerate(zip(got, gold)):
        if ids != g["ids"]:
            i = first_diff(ids, g["ids"]) if isinstance(ids, list) else 0
            ids = ids if isinstance(ids, list) else [ids]
            bad.append(k)
            worst.append(f"{tag(rows, k)}: len {len(ids)} vs {len(g['ids'])}, first diff at "
                         f"{i}: got {ids[max(0, i - 2):i + 4]} want {g['ids'][max(0, i - 2):i + 4]}"
                         f" text {texts[k][:60]!r}")
    rep.check("tokenize ids", len(gold), bad, worst)


def check_embed(rep, rows, gold, emb, got):
    if got is None:
        return
    bad_meta, worst_meta, cos = [], [], []
    for k, (o, g) in enumerate(zip(got, gold)):
        if o.get("id") != k or o.get("tokens") != g["tokens"] or o.get("truncated") != g["truncated"]:
            bad_meta.append(k)
            worst_meta.append(f"{tag(rows, k)}: got id {o.get('id')!r} tokens {o.get('tokens')!r} "
                              f"truncated {o.get('truncated')!r}, want id {k} tokens "
                              f"{g['tokens']} truncated {g['truncated']}")
        e = o.get("embedding")
        if not isinstance(e, list) or len(e) != DIM:
            cos.append((-2.0, k, f"embedding has {len(e) if isinstance(e, list) else e!r} values"
                                 + (f" (error {o['error']!r})" if "error" in o else "")))
            continue
        c = cosine(e, emb[k])
        maxabs = max(abs(x - y) for x, y in zip(e, emb[k]))
        norm = math.sqrt(sum(x * x for x in e))
        cos.append((c, k, f"cosine {c:.7f} max|diff| {maxabs:.2e} norm {norm:.6f}"))
    rep.check("embed tokens/truncated/id", len(gold), bad_meta, worst_meta)
    cos.sort()
    bad = [k for c, k, _ in cos if not c >= COS_MIN]
    rep.check(f"embed cosine >= {COS_MIN}", len(gold), bad,
              [f"{tag(rows, k)}: {msg}" for c, k, msg in cos if not c >= COS_MIN])
    print(f"     embed cosine: min {cos[0][0]:.8f}, 1 - cos {1 - cos[0][0]:.1e} ({tag(rows, cos[0][1])})")


def check_label(rep, rows, gold, got):
    if got is None:
        return
    errs, bad_meta, worst_meta = [], [], []
    for k, (o, g) in enumerate(zip(got, gold)):
        p = o.get("label_probs")
        want = g["cls_probs"]
        if not isinstance(p, list) or len(p) != len(want):
            errs.append((math.inf, k, f"label_probs {p!r}"
                                      + (f" (error {o['error']!r})" if "error" in o else "")))
            continue
        d = max(abs(x - y) for x, y in zip(p, want))
        errs.append((d, k, f"max|diff| {d:.2e} got {[round(x, 6) for x in p]} "
                           f"want {[round(x, 6) for x in want]}"))
        wp = o.get("win_prob")
        if (o.get("id") != k or o.get("tokens") != g["tokens"]
                or o.get("truncated") != g["truncated"] or o.get("route") not in ("strong", "weak")
                or not isinstance(wp, (int, float)) or abs(wp - p[0]) > 1e-6):
            bad_meta.append(k)
            worst_meta.append(f"{tag(rows, k)}: id {o.get('id')!r} tokens {o.get('tokens')!r} "
                              f"truncated {o.get('truncated')!r} route {o.get('route')!r} "
                              f"win_prob {wp!r} (want tokens {g['tokens']}, "
                              f"win_prob = label_probs[0] = {p[0]!r})")
    errs.sort(key=lambda t: -t[0])
    bad = [k for d, k, _ in errs if not d <= PROB_TOL]
    rep.check(f"label probs within {PROB_TOL}", len(gold), bad,
              [f"{tag(rows, k)}: {msg}" for d, k, msg in errs if not d <= PROB_TOL])
    print(f"     label max|diff|: {errs[0][0]:.2e} ({tag(rows, errs[0][1])})")
    rep.check("label fields (id, tokens, truncated, route, win_prob = p0)", len(gold),
              bad_meta, worst_meta)


# ----------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--self-test", choices=["ok", "perturb"],
                    help="check the comparison logic on the goldens themselves")
    args = ap.parse_args()

    if not os.path.isfile(os.path.join(MODEL, "model.safetensors")):
        skip(f"{MODEL} not found (run models/fetch.sh)")
    sel, rows, gold, emb = load_goldens()
    texts = prompt_texts(sel, rows, gold)
    n = len(rows)
    max_tokens = sel["max_tokens"]
    rs_bin = os.environ.get("RS_BIN", os.path.join(SRC, "build", "routescore"))
    rep = Report()

    with tempfile.TemporaryDirectory(prefix="rs_fid_minilm_") as tmp:
        inp = os.path.join(tmp, "prompts.jsonl")
        with open(inp, "w", encoding="utf-8") as f:
            for k, t in enumerate(texts):
                f.write(json.dumps({"id": k, "prompt": t}, ensure_ascii=False) + "\n")
        router = os.path.join(tmp, "router")
        os.mkdir(router)
        make_router_dir(router)

        if args.self_test:
            tok_out, emb_out, lab_out = fake_outputs(gold, emb, args.self_test)
        else:
            if not os.path.isfile(rs_bin):
                sys.exit(f"FAIL: {rs_bin} not found (not built yet)")
            tok_out = run([rs_bin, "tokenize", "--tokenizer", os.path.join(MODEL, "tokenizer.json"),
                           "--add-special", "--max-tokens", str(max_tokens), "--in", inp,
                           "--field", "prompt"], "tokenize", rep)
            out = os.path.join(tmp, "embed.jsonl")
            emb_out = run([rs_bin, "embed", "--model", MODEL, "--in", inp, "--out", out],
                          "embed", rep, out)
            out = os.path.join(tmp, "label.jsonl")
            lab_out = run([rs_bin, "label", "--model", router, "--in", inp, "--out", out],
                          "label", rep, out)

        check_ids(rep, rows, texts, gold, parse_lines(tok_out, n, "tokenize", rep))
        check_embed(rep, rows, gold, emb, parse_lines(emb_out, n, "embed", rep))
        check_label(rep, rows, gold, parse_lines(lab_out, n, "label", rep))

    if rep.failed:
        print(f"FAILED: {', '.join(rep.failed)}")
        sys.exit(1)
    print("PASSED")


if __name__ == "__main__":
    main()
