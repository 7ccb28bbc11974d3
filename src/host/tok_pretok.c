/* tok_pretok.c — HF pre-tokenizers: split normalized code points into words.
 *
 * A sequence of pre-tokenizers is run as a chain: each stage splits its range
 * and hands every piece to the next stage, the last stage to the caller's
 * word callback (the model). Nothing is copied. */
#include "tok_internal.h"

static int is_ascii_punct(uint32_t c) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

/* HF is_bert_punc: ASCII punctuation (which includes symbols like $+<=>^`|~)
 * or Unicode P* by HF's frozen table. */
static int is_bert_punct(uint32_t c) {
    if (c < 0x80) return is_ascii_punct(c);
    return rs_tok_is_punctuation(c);
}

static int next_stage(const rs_tok_pre_kind *pre, size_t n, const int32_t *cps, size_t a, size_t b,
                      rs_tok_word_fn fn, void *ctx) {
    if (a >= b) return 0; /* HF drops empty pieces */
    return rs_tok_pretokenize(pre, n, cps, a, b, fn, ctx);
}

int rs_tok_pretokenize(const rs_tok_pre_kind *pre, size_t n, const int32_t *cps, size_t start, size_t end,
                       rs_tok_word_fn fn, void *ctx) {
    if (n == 0) return start < end ? fn(ctx, cps, start, end) : 0;
    const rs_tok_pre_kind *rest = pre + 1;
    size_t nrest = n - 1;
    size_t word = start; /* start of the current word */
    switch (pre[0]) {
    case RS_TOK_PRE_BERT:
        for (size_t i = start; i < end; i++) {
            uint32_t c = (uint32_t)cps[i];
            if (rs_tok_is_whitespace(c)) {
                if (next_stage(rest, nrest, cps, word, i, fn, ctx)) return 1;
                word = i + 1;
            } else if (is_bert_punct(c)) {
                if (next_stage(rest, nrest, cps, word, i, fn, ctx)) return 1;
                if (next_stage(rest, nrest, cps, i, i + 1, fn, ctx)) return 1;
                word = i + 1;
            }
        }
        return next_stage(rest, nrest, cps, word, end, fn, ctx);
    case RS_TOK_PRE_WHITESPACE_SPLIT:
        for (size_t i = start; i < end; i++) {
            if (rs_tok_is_whitespace((uint32_t)cps[i])) {
                if (next_stage(rest, nrest, cps, word, i, fn, ctx)) return 1;
                word = i + 1;
            }
        }
        return next_stage(rest, nrest, cps, word, end, fn, ctx);
    case RS_TOK_PRE_WHITESPACE: {
        /* runs of word chars, runs of other non-space chars; spaces dropped */
        size_t i = start;
        while (i < end) {
            uint32_t c = (uint32_t)cps[i];
            if (rs_tok_is_whitespace(c)) {
                i++;
                continue;
            }
            int w = rs_tok_is_word_char(c);
            size_t j = i + 1;
            while (j < end) {
                uint32_t d = (uint32_t)cps[j];
                if (rs_tok_is_word_char(d) != w || (!w && rs_tok_is_whitespace(d))) break;
                j++;
            }
            if (next_stage(rest, nrest, cps, i, j, fn, ctx)) return 1;
            i = j;
        }
        return 0;
    }
    }
    return 0;
}
