#!/usr/bin/env python3
"""gen_tokenizer_golden — the MiniLM tokenizer golden, made by HF `tokenizers`.

Tokenizes every RouteLLM prompt (tests/lib/rsdata.py all_prompts()) and the
adversarial texts of tests/lib/advtext.py with the real all-MiniLM-L6-v2
tokenizer.json (add_special_tokens=True, no truncation, no padding) and writes
one line per text: a 16-hex digest of the ids (blake2b-64 of little-endian
int32) and the id count (the format: tests/lib/tok_golden.py).
tests/fidelity/tokenizer_oracle.py checks routescore against it.

usage: python3 tools/gen/gen_tokenizer_golden.py [TOKENIZER_JSON] [OUT]
  TOKENIZER_JSON defaults to $RS_MODEL_CACHE/all-minilm-l6-v2/tokenizer.json
  OUT defaults to tests/data/tokenizer/minilm_golden.txt
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import advtext  # noqa: E402
from tok_golden import GOLDEN, all_texts, default_tokenizer_json, hf_tokenizer, ids_digest, texts_digest  # noqa: E402


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else default_tokenizer_json()
    out = sys.argv[2] if len(sys.argv) > 2 else GOLDEN
    import tokenizers
    real, adv = all_texts()
    texts = real + adv
    tok = hf_tokenizer(path)
    encs = tok.encode_batch(texts, add_special_tokens=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("# all-MiniLM-L6-v2 ids by tokenizers %s; real %d adversarial %d seed %d texts %s\n"
                % (tokenizers.__version__, len(real), len(adv), advtext.SEED, texts_digest(texts)))
        for e in encs:
            f.write("%s %d\n" % (ids_digest(e.ids), len(e.ids)))
    print("wrote %s: %d texts (%d real, %d adversarial)" % (out, len(texts), len(real), len(adv)))


if __name__ == "__main__":
    main()
