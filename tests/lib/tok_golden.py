"""tok_golden — the MiniLM tokenizer golden's format and texts, shared by
tools/gen/gen_tokenizer_golden.py (which writes it with HF `tokenizers`) and the
tests that read it (tests/fidelity/tokenizer_oracle.py, tokenizer_families.py).

The texts: every RouteLLM prompt (rsdata.all_prompts()) then the adversarial
texts of advtext.py. The golden: a header line, then one line per text, a
16-hex digest of the ids (blake2b-64 of little-endian int32) and the id count.
"""
import hashlib
import os
import struct

import advtext
import rsdata

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.normpath(os.path.join(HERE, "..", "data", "tokenizer", "minilm_golden.txt"))


def default_tokenizer_json():
    if os.environ.get("RS_TOKENIZER_JSON"):
        return os.environ["RS_TOKENIZER_JSON"]
    cache = os.environ.get("RS_MODEL_CACHE") or os.path.join(HERE, "..", "..", "models", "cache")
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
