#!/usr/bin/python3
"""gen_fidelity — regenerate the fidelity goldens under tests/data/fidelity/.

The oracle is HF transformers on PyTorch, fp32, CPU, one prompt at a time (no
padding), which is how RouteLLM and sentence-transformers run these models.
Run with the interpreter that has torch (Debian's python3-torch):

    models/fetch.sh
    /usr/bin/python3 tools/gen/gen_fidelity.py            # both parts
    /usr/bin/python3 tools/gen/gen_fidelity.py --only xlmr

Versions: tests/requirements-oracle.txt. The output is deterministic (seeded
selection, seeded weights, gzip without timestamps): regenerating on the same
versions should give identical files (`git diff --stat` shows any drift).

Outputs
  minilm_select.json        which prompts: indices into rsdata.all_prompts()
                            plus a few inline texts (multilingual edge cases
                            the benchmark data lacks), each with a reason tag
  minilm_golden.jsonl.gz    per row: token count, ids, ids digest, truncation,
                            classifier-head softmax
  minilm_emb.f32.gz         n x 384 little-endian float32, mean-pooled and
                            L2-normalised embeddings, rows in selection order
  minilm_cls_head.safetensors  classifier.weight [3,384], classifier.bias [3]
  xlmr_tiny/, xlmr_tiny_1label/  random XLMRobertaForSequenceClassification
  xlmr_tiny_golden.jsonl, xlmr_tiny_1label_golden.jsonl  {"ids", "probs", "logits"}
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import struct
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import rsdata  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "fidelity")
MINILM = os.path.join(ROOT, "models", "cache", "all-minilm-l6-v2")

SEED = 20240611
MAX_TOKENS = 256          # sentence_bert_config.json max_seq_length
CLS_LABELS = 3
CLS_WEIGHT_STD = 2.0      # pooler outputs vary by ~0.8 around their mean: logits spread ~1.5
CLS_BIAS_STD = 0.5

# Multilingual and tokenizer edge cases that the benchmark prompts lack (they are
# almost all English). Each exercises a step of BERT's normaliser/pre-tokeniser.
EXTRA_PROMPTS = [
    ("german", "Übersetze bitte: Die Straße ist nass, und die Bäume blühen im Frühling."),
    ("spanish", "¿Cuál es la raíz cuadrada de 144? Explícalo paso a paso, por favor."),
    ("french", "Écris un poème sur la mer, à la manière de Baudelaire ; sois concis."),
    ("russian", "Напишите функцию на Python, которая сортирует список по убыванию."),
    ("chinese", "请用中文解释什么是机器学习，并举一个例子。"),
    ("japanese", "日本の首都はどこですか？カタカナとひらがなも使ってください。"),
    ("korean", "한국어로 간단한 자기소개를 써 주세요."),
    ("arabic", "ما هي عاصمة المملكة العربية السعودية؟"),
    ("hindi", "क्या आप मुझे हिंदी में एक छोटी कहानी सुना सकते हैं?"),
    ("greek", "Γράψε μια σύντομη περίληψη για την αρχαία Αθήνα."),
    ("vietnamese", "Tiếng Việt có nhiều dấu thanh: ắ ằ ẳ ẵ ặ, và chữ đ."),
    ("turkish_dotted_i", "İstanbul ve IĞDIR şehirleri; ışık, İNCİ."),
    ("combining_marks", "cafe\u0301 vs café, nai\u0308ve vs naïve, A\u030A vs Å"),
    ("fullwidth", "ＡＢＣ１２３ fullwidth letters and ｶﾀｶﾅ halfwidth kana"),
    ("mixed_script", "中文English混合テキスト123abc한글"),
    ("emoji", "Can you explain this? 🤖🚀👍🏽 and the 👨‍👩‍👧‍👦 family emoji."),
    ("invisible", "zero\u200bwidth space, soft\u00adhyphen, BOM\ufeffhere, nbsp\u00a0and\ttab\r\nCRLF."),
    ("long_word", "Decode " + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 4
     + " and pneumonoultramicroscopicsilicovolcanoconiosis please."),
    ("code_c", "Fix this C:\n\tint main(void) {\n\t\tchar *s = malloc(10);\n\t\tstrcpy(s, \"hello, world\");"
     "\n\t\treturn s[0] == 'h' ? 0 : 1;\n\t}\n"),
    ("single_char", "a"),
    ("punctuation_only", "?!..."),
]


def log(*a):
    print(*a, flush=True)


def write_if_changed(path, data):
    """Write bytes; say whether the file changed (so reruns show drift)."""
    old = open(path, "rb").read() if os.path.exists(path) else None
    if old != data:
        with open(path, "wb") as f:
            f.write(data)
    log(f"  {os.path.relpath(path, ROOT)}: {len(data)} bytes"
        + ("" if old != data else " (unchanged)"))


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(data)
    return buf.getvalue()


def ids_digest(ids):
    """sha256 of the ids as little-endian int32: the same digest is cheap in C."""
    return hashlib.sha256(struct.pack(f"<{len(ids)}i", *ids)).hexdigest()


def prompts_digest(prompts):
    h = hashlib.sha256()
    for p in prompts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------- MiniLM

def select_prompts(prompts, lengths):
    """Deterministic selection with every awkward shape represented.

    lengths[i] is the untruncated token count (with [CLS]/[SEP]) of prompts[i].
    Returns [(index, reason)] with no repeated index, in a stable order.
    """
    import unicodedata
    rng = random.Random(SEED)
    n_mmlu = sum(1 for _ in rsdata.mmlu_rows())
    n_gsm = sum(1 for _ in rsdata.gsm8k_rows())
    mmlu_subject = [s for s, _, _, _ in rsdata.mmlu_rows()]
    mt = []
    for q in rsdata.mtbench_questions():
        mt += [q["category"]] * len(q["turns"])
    assert n_mmlu + n_gsm + len(mt) == len(prompts)

    def source(i):
        if i < n_mmlu:
            return "mmlu", mmlu_subject[i]
        if i < n_mmlu + n_gsm:
            return "gsm8k", None
        return "mt_bench", mt[i - n_mmlu - n_gsm]

    def non_ascii_letters(p):
        return any(ord(c) > 127 and unicodedata.category(c).startswith("L") for c in p)

    code_marks = ("def ", "print(", "return ", "{", "};", "#include", "int ", "for (", "while (",
                  "import ", "==", "->", "x = ", "function", "class ")
    math_subjects = {"abstract_algebra", "college_mathematics", "elementary_mathematics",
                     "high_school_mathematics", "high_school_statistics"}
    code_subjects = {"college_computer_science", "high_school_computer_science",
                     "computer_security", "machine_learning"}

    idx = range(len(prompts))
    buckets = [
        # (reason, candidates, how many: None = all, "first10" = the first 10 not yet taken)
        ("long_gt512", [i for i in idx if lengths[i] > 512], None),
        ("truncation_edge_254_258", [i for i in idx if 254 <= lengths[i] <= 258], 12),
        ("long_257_512", [i for i in idx if 258 < lengths[i] <= 512], 30),
        ("code_mt_bench", [i for i in idx if source(i) == ("mt_bench", "coding")], None),
        ("code_mmlu", [i for i in idx if source(i)[1] in code_subjects
                       and any(m in prompts[i] for m in code_marks)], 25),
        ("math_mt_bench", [i for i in idx if source(i) == ("mt_bench", "math")], None),
        ("math_gsm8k", [i for i in idx if source(i)[0] == "gsm8k"], 35),
        ("math_mmlu", [i for i in idx if source(i)[1] in math_subjects], 25),
        ("non_ascii_cjk", [i for i in idx if any(0x3000 <= ord(c) <= 0x9fff for c in prompts[i])], None),
        ("non_ascii_letters", [i for i in idx if non_ascii_letters(prompts[i])], 90),
        ("non_ascii_symbols", [i for i in idx if not non_ascii_letters(prompts[i])
                               and any(ord(c) > 127 for c in prompts[i])], 30),
        ("mt_bench_other", [i for i in idx if source(i)[0] == "mt_bench"
                            and source(i)[1] not in ("coding", "math")], 40),
        ("shortest", sorted(idx, key=lambda i: (lengths[i], i)), "first10"),
        ("random", list(idx), 110),
    ]
    taken, out = set(), []
    for reason, cands, k in buckets:
        cands = [i for i in cands if i not in taken]
        if k == "first10":
            pick = cands[:10]
        else:
            pick = cands if k is None or k >= len(cands) else sorted(rng.sample(cands, k))
        for i in pick:
            taken.add(i)
            out.append((i, reason))
    return out


def minilm(args):
    from transformers import AutoTokenizer, BertForSequenceClassification, BertModel
    from safetensors.torch import save as st_save

    if not os.path.isfile(os.path.join(MINILM, "model.safetensors")):
        sys.exit("gen_fidelity: run models/fetch.sh first")
    if rsdata.data_dir() is None:
        sys.exit("gen_fidelity: ../shared/data/routellm not found")
    modules = json.load(open(os.path.join(MINILM, "modules.json")))
    pooling = json.load(open(os.path.join(MINILM, "1_Pooling", "config.json")))
    sbert = json.load(open(os.path.join(MINILM, "sentence_bert_config.json")))
    # The pipeline this golden reproduces: Transformer -> mean pooling -> Normalize.
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    assert sbert["max_seq_length"] == MAX_TOKENS

    log("minilm: tokenizing all prompts")
    tok = AutoTokenizer.from_pretrained(MINILM)
    prompts = rsdata.all_prompts()
    full = tok(prompts, add_special_tokens=True, truncation=False)["input_ids"]
    lengths = [len(x) for x in full]
    sel = select_prompts(prompts, lengths)
    rows = [{"index": i, "reason": r} for i, r in sel]
    rows += [{"text": t, "reason": "extra_" + r} for r, t in EXTRA_PROMPTS]
    texts = [prompts[r["index"]] if "index" in r else r["text"] for r in rows]
    log(f"minilm: {len(rows)} rows selected from {len(prompts)} prompts")

    select = {
        "about": "Fidelity selection for all-MiniLM-L6-v2: 'index' rows index "
                 "tests/lib/rsdata.py all_prompts(); 'text' rows are inline edge cases. "
                 "Regenerate with tools/gen/gen_fidelity.py.",
        "seed": SEED,
        "max_tokens": MAX_TOKENS,
        "n_all_prompts": len(prompts),
        "all_prompts_sha256": prompts_digest(prompts),
        "rows": rows,
    }

    torch.manual_seed(SEED)
    enc = BertModel.from_pretrained(MINILM, torch_dtype=torch.float32).eval()
    cls = BertForSequenceClassification.from_pretrained(
        MINILM, num_labels=CLS_LABELS, torch_dtype=torch.float32).eval()
    # A random head on MiniLM's pooler saturates (p ~ 0 or 1: the pooler output has a
    # large common component), which would make a 1e-4 tolerance blind. So the bias
    # cancels the head's response to the mean pooler output of 64 seeded prompts,
    # plus noise: the logits then spread over a few units around zero.
    g = torch.Generator().manual_seed(SEED + 1)
    weight = torch.randn(CLS_LABELS, 384, generator=g) * CLS_WEIGHT_STD
    noise = torch.randn(CLS_LABELS, generator=g) * CLS_BIAS_STD
    with torch.no_grad():
        sample = random.Random(SEED + 1).sample(prompts, 64)
        pooled = torch.stack([cls.bert(**tok(p, truncation=True, max_length=MAX_TOKENS,
                                             return_tensors="pt")).pooler_output[0]
                              for p in sample])
        cls.classifier.weight.copy_(weight)
        cls.classifier.bias.copy_(noise - weight @ pooled.mean(dim=0))
    head = {"classifier.weight": cls.classifier.weight.detach().clone().contiguous(),
            "classifier.bias": cls.classifier.bias.detach().clone().contiguous()}

    log("minilm: running the encoder and the classifier one prompt at a time")
    embs, golden = [], []
    with torch.no_grad():
        for k, text in enumerate(texts):
            e = tok(text, add_special_tokens=True, truncation=True, max_length=MAX_TOKENS,
                    padding=False, return_tensors="pt")
            ids = e["input_ids"][0].tolist()
            untrunc = len(tok(text, add_special_tokens=True, truncation=False)["input_ids"])
            assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
            assert len(ids) == min(untrunc, MAX_TOKENS)
            h = enc(**e).last_hidden_state[0]                  # (T, 384)
            v = h.mean(dim=0)                                   # mask is all ones: plain mean
            v = v / v.norm(p=2).clamp_min(1e-12)                # sentence-transformers Normalize
            embs.append(v.numpy().astype("<f4"))
            logits = cls(**e).logits[0]
            probs = torch.softmax(logits, dim=-1)
            golden.append({
                "row": k,
                "prompt_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "tokens": len(ids),
                "untruncated_tokens": untrunc,
                "truncated": untrunc > MAX_TOKENS,
                "ids_sha256": ids_digest(ids),
                "ids": ids,
                "cls_logits": [float(x) for x in logits],
                "cls_probs": [float(x) for x in probs],
            })
            if (k + 1) % 100 == 0:
                log(f"  {k + 1}/{len(texts)}")

    emb = np.stack(embs).astype("<f4")
    assert emb.shape == (len(rows), 384)
    p0 = np.array([g["cls_probs"][0] for g in golden])
    log(f"minilm: truncated rows {sum(g['truncated'] for g in golden)}, "
        f"p0 min {p0.min():.3f} median {np.median(p0):.3f} max {p0.max():.3f}, "
        f"share of rows with 0.01 < p0 < 0.99: {np.mean((p0 > 0.01) & (p0 < 0.99)):.2f}")

    os.makedirs(OUT, exist_ok=True)
    write_if_changed(os.path.join(OUT, "minilm_select.json"),
                     (json.dumps(select, ensure_ascii=False, indent=0) + "\n").encode("utf-8"))
    write_if_changed(os.path.join(OUT, "minilm_golden.jsonl.gz"),
                     gz("".join(json.dumps(g) + "\n" for g in golden).encode("utf-8")))
    write_if_changed(os.path.join(OUT, "minilm_emb.f32.gz"), gz(emb.tobytes()))
    write_if_changed(os.path.join(OUT, "minilm_cls_head.safetensors"),
                     st_save(head, metadata={"format": "pt", "seed": str(SEED + 1),
                                             "note": "random head for fidelity tests"}))


# ---------------------------------------------------------------- tiny XLM-R

XLMR_VOCAB = 640          # keeps model.safetensors under 500 KB (1000 would be ~580 KB)
XLMR_MAX_TOKENS = 128     # max_position_embeddings 130 = 128 + padding_idx + 1


def xlmr_config(num_labels):
    from transformers import XLMRobertaConfig
    return XLMRobertaConfig(
        vocab_size=XLMR_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=XLMR_MAX_TOKENS + 2, type_vocab_size=1,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=num_labels,
        hidden_act="gelu", layer_norm_eps=1e-5, initializer_range=0.2,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        architectures=["XLMRobertaForSequenceClassification"])


def xlmr_inputs():
    rng = random.Random(SEED + 2)
    lengths = [1, 2, 3, 7, 63, 64, 65, 127, 128]
    lengths += [rng.randint(4, XLMR_MAX_TOKENS) for _ in range(31)]
    lengths += [rng.randint(4, 24) for _ in range(6)]       # short prompts are the common case
    seqs = []
    for n in lengths:
        s = [0] + [rng.randrange(3, XLMR_VOCAB) for _ in range(max(0, n - 2))] + ([2] if n >= 2 else [])
        seqs.append(s)
    # The vocabulary's first and last usable ids (embedding-table bounds).
    seqs.append([0, 3, XLMR_VOCAB - 1, 2])
    return seqs


def xlmr(args):
    from transformers import XLMRobertaForSequenceClassification
    seqs = xlmr_inputs()
    for name, labels in (("xlmr_tiny", 3), ("xlmr_tiny_1label", 1)):
        torch.manual_seed(SEED + 3)
        model = XLMRobertaForSequenceClassification(xlmr_config(labels)).eval()
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        # Reload what was written: the golden must come from the files on disk.
        model = XLMRobertaForSequenceClassification.from_pretrained(d).eval()
        size = os.path.getsize(os.path.join(d, "model.safetensors"))
        assert size < 500_000, size
        lines, probs_all = [], []
        with torch.no_grad():
            for s in seqs:
                ids = torch.tensor([s])
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
                probs = torch.sigmoid(logits) if labels == 1 else torch.softmax(logits, dim=-1)
                probs_all.append(probs[0].item())
                lines.append(json.dumps({"ids": s, "probs": [float(x) for x in probs],
                                         "logits": [float(x) for x in logits]}))
        write_if_changed(os.path.join(OUT, name + "_golden.jsonl"), ("\n".join(lines) + "\n").encode())
        p = np.array(probs_all)
        log(f"{name}: {len(seqs)} sequences, model.safetensors {size} bytes, "
            f"p0 min {p.min():.3f} median {np.median(p):.3f} max {p.max():.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["minilm", "xlmr"])
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    if args.only in (None, "minilm"):
        minilm(args)
    if args.only in (None, "xlmr"):
        xlmr(args)


if __name__ == "__main__":
    main()
