#!/usr/bin/env python3
"""gen_tokenizer_golden — the MiniLM tokenizer golden, made by HF `tokenizers`.

Tokenizes every RouteLLM prompt (tests/rsdata.py all_prompts()) and the
adversarial texts of tests/advtext.py with the real all-MiniLM-L6-v2
tokenizer.json (add_special_tokens=True, no truncation, no padding) and writes
one line per text: a 16-hex digest of the ids (blake2b-64 of little-endian
int32) and the id count. tests/tokenizer_oracle.py checks routescore against it.

usage: python3 tests/gen_tokenizer_golden.py [TOKENIZER_JSON] [OUT]
  TOKENIZER_JSON defaults to $RS_MODEL_CACHE/all-minilm-l6-v2/tokenizer.json
  OUT defaults to tests/data/tokenizer/minilm_golden.txt
"""
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import advtext  # noqa: E402
import rsdata  # noqa: E402

GOLDEN = os.path.join(HERE, "data", "tokenizer", "minilm_golden.txt")


def default_tokenizer_json():
    if os.environ.get("RS_TOKENIZER_JSON"):
        return os.environ["RS_TOKENIZER_JSON"]
    cache = os.environ.get("RS_MODEL_CACHE") or os.path.join(HERE, "..", "models", "cache")
    return os.path.join(cache, "all-minilm-l6-v2", "tokenizer.json")


def ids_digest(ids):
    return hashlib.blake2b(struct.pack("<%di" % len(ids), *ids), digest_size=8).hexdigest()


def texts_digest(texts):
    h = hashlib.blake2b(digest_size=8)
    for t in texts:
        b = t.encode("utf-8")
        h.update(struct.pack("<Q", len(b)))
        h.update(b)
    return h.hexdigest()


def all_texts():
    """(real prompts, adversarial texts)."""
    return rsdata.all_prompts(), advtext.texts()


def hf_tokenizer(path):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok


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
