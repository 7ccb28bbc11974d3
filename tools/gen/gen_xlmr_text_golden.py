#!/usr/bin/env python3
"""gen_xlmr_text_golden — XLM-R fidelity from raw text: goldens by HF transformers.

Makes tests/data/fidelity/xlmr_tiny_text/: the tiny random
XLMRobertaForSequenceClassification of tests/data/fidelity/xlmr_tiny (config and
weights copied) with an XLM-R-style tokenizer.json whose vocabulary fits its 640
ids (SentencePiece Unigram, nmt_nfkc charsmap, converted by transformers'
XLMRobertaConverter: made beforehand by `tools/gen/gen_tok_unigram.py 638
tests/data/fidelity/xlmr_tiny_text 0.995`, which needs sentencepiece). Then
scores ~50 raw-text prompts the way RouteLLM's bert router does: HF tokenizer
(<s> ... </s>, truncation on the right to the model's 128 tokens), one prompt at
a time, fp32 on the CPU, softmax over the 3 logits. Writes
tests/data/fidelity/xlmr_tiny_text_golden.jsonl: {"prompt_index" (into
tests/lib/rsdata.py all_prompts(): benchmark prompts are read from ../shared/data at
run time, never stored here) or "text" (the edge cases below), "text_sha256",
"ids", "probs"}.
tests/fidelity/fidelity_xlmr_text.py checks `routescore score --model DIR TEXT` against it.

Run with Debian's /usr/bin/python3 (torch 1.13, transformers 4.40.2):
  /usr/bin/python3 tools/gen/gen_xlmr_text_golden.py
"""
import hashlib
import json
import os
import random
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import rsdata  # noqa: E402

FID = os.path.join(ROOT, "tests", "data", "fidelity")
SRC = os.path.join(FID, "xlmr_tiny")
OUT = os.path.join(FID, "xlmr_tiny_text")
GOLDEN = os.path.join(FID, "xlmr_tiny_text_golden.jsonl")
MAX_TOKENS = 128
SEED = 20240612

# (no empty or all-space text: the engine refuses a prompt with no content tokens)
EXTRA = [
    "Hello", "  leading and trailing spaces  ", "tabs\tand\nnew\r\nlines", "many     spaces   here",
    "Ünïcödé naïve café Straße İstanbul ΣΊΣΥΦΟΣ", "日本語のテキストと中文字", "한국어 텍스트", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "ﬁnance ﬀ Ⅻ ① x² ½ ™", "emoji 👍🏽 👨‍👩‍👧‍👦 🇺🇸", "zero\u200bwidth\u200djoiner", "e\u0301 combining a\u0308",
    "<s> not special? </s> <mask>", "What is 12345 + 67890?", "word " * 300,
]


def prompts():
    """(prompt_index or None, text)"""
    rng = random.Random(SEED)
    allp = rsdata.all_prompts()
    return [(i, allp[i]) for i in sorted(rng.sample(range(len(allp)), 33))] + [(None, t) for t in EXTRA]


def main():
    import torch
    from transformers import XLMRobertaForSequenceClassification, XLMRobertaTokenizerFast
    tok_json = os.path.join(OUT, "tokenizer.json")
    if not os.path.isfile(tok_json):
        sys.exit("%s missing: run tools/gen/gen_tok_unigram.py 638 %s 0.995 first" % (tok_json, OUT))
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(os.path.join(SRC, name), os.path.join(OUT, name))
    tok = XLMRobertaTokenizerFast(tokenizer_file=tok_json, model_max_length=MAX_TOKENS)
    assert len(tok) <= 640, len(tok)
    model = XLMRobertaForSequenceClassification.from_pretrained(OUT).eval()
    torch.set_num_threads(1)
    n = 0
    with open(GOLDEN, "w", encoding="utf-8") as f, torch.no_grad():
        for index, text in prompts():
            enc = tok(text, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            logits = model(**enc).logits[0]
            probs = torch.softmax(logits.double(), dim=-1).tolist()
            row = {"prompt_index": index} if index is not None else {"text": text}
            row.update({"text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                        "ids": enc["input_ids"][0].tolist(), "probs": probs})
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    print("wrote %s (%d prompts)" % (GOLDEN, n))


if __name__ == "__main__":
    main()
