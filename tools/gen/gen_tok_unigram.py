#!/usr/bin/env python3
"""gen_tok_unigram — a small XLM-R-style tokenizer.json (Unigram + Metaspace + Precompiled).

XLM-R's own tokenizer.json is not reachable from PyPI, so this builds one the
way XLM-R's was built: train a SentencePiece Unigram model (nmt_nfkc
normalisation, so its compiled charsmap is the real thing) on the RouteLLM
prompts, then convert it with transformers' XLMRobertaConverter, which gives
XLM-R's exact normalizer (Precompiled + Replace), pre-tokenizer (Metaspace),
post-processor and decoder. The output is committed (tests/data/tokenizer/);
re-run only to change it, then regenerate its golden.

usage: python3 tools/gen/gen_tok_unigram.py VOCAB_SIZE OUT_DIR [CHARACTER_COVERAGE]
  tests/data/tokenizer/xlmr_unigram:     VOCAB_SIZE 8000
  tests/data/fidelity/xlmr_tiny_text:    VOCAB_SIZE 638 CHARACTER_COVERAGE 0.995 (the tiny
                                         model's 640 ids: the converter adds <pad>, <mask>)
Needs: sentencepiece, protobuf, transformers (no torch), tokenizers.
"""
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import rsdata  # noqa: E402


def main():
    vocab_size, out_dir = int(sys.argv[1]), sys.argv[2]
    coverage = float(sys.argv[3]) if len(sys.argv) > 3 else 0.9995
    import sentencepiece as spm
    from tokenizers import AddedToken
    from transformers import XLMRobertaTokenizer
    from transformers.convert_slow_tokenizer import XLMRobertaConverter

    prompts = rsdata.all_prompts()
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        text = os.path.join(d, "train.txt")
        with open(text, "w", encoding="utf-8") as f:
            for p in prompts:
                for line in p.splitlines():
                    if line.strip():
                        f.write(line + "\n")
        prefix = os.path.join(d, "spm")
        spm.SentencePieceTrainer.train(
            input=text, model_prefix=prefix, model_type="unigram", vocab_size=vocab_size,
            normalization_rule_name="nmt_nfkc", character_coverage=coverage, num_threads=1,
            shuffle_input_sentence=False, input_sentence_size=0, max_sentence_length=1 << 16,
            minloglevel=2)
        fast = XLMRobertaConverter(XLMRobertaTokenizer(vocab_file=prefix + ".model")).converted()
        # XLM-R's special tokens as transformers' XLMRobertaTokenizerFast adds
        # them (and its hub tokenizer.json has them): <mask> strips left
        fast.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in
                                 ("<s>", "<pad>", "</s>", "<unk>")] +
                                [AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
        fast.save(os.path.join(out_dir, "tokenizer.json"))
    print("wrote %s/tokenizer.json (vocab %d)" % (out_dir, fast.get_vocab_size()))


if __name__ == "__main__":
    main()
