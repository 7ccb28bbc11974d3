/* tok_pretok.c — HF pre-tokenizers: split normalized code points into words.
 *
 * A sequence of pre-tokenizers is run as a chain: each stage splits its range
 * and hands every piece to the next stage, the last stage to the caller's
 * word callback (the model). Stages that only split copy nothing; the two
 * that rewrite text (Metaspace's replacement and prefix, ByteLevel's prefix
 * space) write the piece into their own per-call buffer first.
 *
 * Splitting follows HF's NormalizedString::split: the text is cut into
 * segments (matches and the gaps between them, or the reverse with invert),
 * the behaviour decides which segments are kept and which merge with a
 * neighbour, and empty pieces are dropped. */
#include <stdlib.h>
#include <string.h>

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

static int stage(rs_tok_pre_run *run, size_t k, const int32_t *cps, size_t start, size_t end, int first);

static int next_stage(rs_tok_pre_run *run, size_t k, const int32_t *cps, size_t a, size_t b, int first) {
    if (a >= b) return 0; /* HF drops empty pieces */
    return stage(run, k + 1, cps, a, b, first);
}

/* ---- segment -> piece with HF's split behaviours, streamed ----
 * Pieces are only known once the next segment is seen (merges), so one
 * pending piece is held back. */
typedef struct splitter {
    rs_tok_pre_run *run;
    size_t k; /* this stage */
    const int32_t *cps;
    size_t start;         /* of the whole range (for `first`) */
    int first;
    rs_tok_behavior behavior;
    int invert;
    int have; /* a pending piece [ps, pe) */
    size_t ps, pe;
    int prev_match; /* previous segment was a match */
    int pending_next; /* MERGED_WITH_NEXT: a match [ns, ...) waits for the next segment */
    size_t ns;
    size_t pos; /* end of the last segment seen */
} splitter;

static int flush(splitter *s) {
    if (!s->have) return 0;
    s->have = 0;
    return next_stage(s->run, s->k, s->cps, s->ps, s->pe, s->first && s->ps == s->start);
}

static int push_piece(splitter *s, size_t a, size_t b) {
    if (flush(s)) return 1;
    s->have = 1;
    s->ps = a;
    s->pe = b;
    return 0;
}

static int segment(splitter *s, size_t a, size_t b, int is_match) {
    if (s->invert) is_match = !is_match;
    int r = 0;
    switch (s->behavior) {
    case RS_TOK_REMOVED:
        if (!is_match) r = push_piece(s, a, b);
        break;
    case RS_TOK_ISOLATED:
        r = push_piece(s, a, b);
        break;
    case RS_TOK_MERGED_WITH_PREVIOUS:
        if (is_match && !s->prev_match && s->have) s->pe = b;
        else r = push_piece(s, a, b);
        break;
    case RS_TOK_MERGED_WITH_NEXT:
        /* HF folds from the right: a match joins the segment after it unless
         * that one is a match too */
        if (s->pending_next) {
            s->pending_next = 0;
            if (!is_match) {
                r = push_piece(s, s->ns, b);
                break;
            }
            r = push_piece(s, s->ns, a);
            if (r) break;
        }
        if (is_match) {
            s->pending_next = 1;
            s->ns = a;
        } else {
            r = push_piece(s, a, b);
        }
        break;
    case RS_TOK_CONTIGUOUS:
        if (is_match == s->prev_match && s->have) s->pe = b;
        else r = push_piece(s, a, b);
        break;
    }
    s->prev_match = is_match;
    s->pos = b;
    return r;
}

static int split_finish(splitter *s) {
    if (s->pending_next) {
        s->pending_next = 0;
        if (push_piece(s, s->ns, s->pos)) return 1;
    }
    return flush(s);
}

/* a match [ms, me): the gap before it, then the match */
static int on_match(void *ctx, size_t ms, size_t me) {
    splitter *s = ctx;
    if (ms > s->pos && segment(s, s->pos, ms, 0)) return 1;
    return segment(s, ms, me, 1);
}

static void splitter_init(splitter *s, rs_tok_pre_run *run, size_t k, const int32_t *cps, size_t start, int first,
                          rs_tok_behavior behavior, int invert) {
    memset(s, 0, sizeof *s);
    s->run = run;
    s->k = k;
    s->cps = cps;
    s->start = start;
    s->pos = start;
    s->first = first;
    s->behavior = behavior;
    s->invert = invert;
}

/* split on a per-character predicate: each matching char is one match */
static int split_chars(rs_tok_pre_run *run, size_t k, const int32_t *cps, size_t start, size_t end, int first,
                       rs_tok_behavior behavior, int (*pred)(uint32_t, const rs_tok_pre *)) {
    splitter s;
    splitter_init(&s, run, k, cps, start, first, behavior, 0);
    const rs_tok_pre *p = &run->pre[k];
    for (size_t i = start; i < end; i++)
        if (pred((uint32_t)cps[i], p) && on_match(&s, i, i + 1)) return 1;
    if (end > s.pos && segment(&s, s.pos, end, 0)) return 1;
    return split_finish(&s);
}

static int pred_numeric(uint32_t c, const rs_tok_pre *p) {
    (void)p;
    if (c < 0x80) return c - '0' < 10u;
    return (rs_tok_regex_class(c) & RS_TOK_CLASS_NUMERIC) != 0;
}
static int pred_punct(uint32_t c, const rs_tok_pre *p) {
    (void)p;
    return is_bert_punct(c);
}
static int pred_replacement(uint32_t c, const rs_tok_pre *p) { return (int32_t)c == p->replacement; }

/* Stage k over cps[start..end). */
static int stage(rs_tok_pre_run *run, size_t k, const int32_t *cps, size_t start, size_t end, int first) {
    if (k == run->n) return start < end ? run->fn(run->ctx, cps, start, end) : 0;
    const rs_tok_pre *p = &run->pre[k];
    size_t word = start; /* start of the current word */
    switch (p->kind) {
    case RS_TOK_PRE_BERT:
        for (size_t i = start; i < end; i++) {
            uint32_t c = (uint32_t)cps[i];
            if (rs_tok_is_whitespace(c)) {
                if (next_stage(run, k, cps, word, i, first && word == start)) return 1;
                word = i + 1;
            } else if (is_bert_punct(c)) {
                if (next_stage(run, k, cps, word, i, first && word == start)) return 1;
                if (next_stage(run, k, cps, i, i + 1, first && i == start)) return 1;
                word = i + 1;
            }
        }
        return next_stage(run, k, cps, word, end, first && word == start);
    case RS_TOK_PRE_WHITESPACE_SPLIT:
        for (size_t i = start; i < end; i++) {
            if (rs_tok_is_whitespace((uint32_t)cps[i])) {
                if (next_stage(run, k, cps, word, i, first && word == start)) return 1;
                word = i + 1;
            }
        }
        return next_stage(run, k, cps, word, end, first && word == start);
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
            if (next_stage(run, k, cps, i, j, first && i == start)) return 1;
            i = j;
        }
        return 0;
    }
    case RS_TOK_PRE_DIGITS:
        return split_chars(run, k, cps, start, end, first,
                           p->individual_digits ? RS_TOK_ISOLATED : RS_TOK_CONTIGUOUS, pred_numeric);
    case RS_TOK_PRE_PUNCTUATION:
        return split_chars(run, k, cps, start, end, first, p->behavior, pred_punct);
    case RS_TOK_PRE_SPLIT: {
        splitter s;
        splitter_init(&s, run, k, cps, start, first, p->behavior, p->invert);
        int r = rs_tok_pattern_find(p->pattern, cps, start, end, on_match, &s);
        if (r < 0) {
            run->st = RS_ERR_NOMEM;
            return 1;
        }
        if (r) return 1;
        if (end > s.pos && segment(&s, s.pos, end, 0)) return 1;
        return split_finish(&s);
    }
    case RS_TOK_PRE_METASPACE:
    case RS_TOK_PRE_BYTELEVEL: {
        int meta = p->kind == RS_TOK_PRE_METASPACE;
        int32_t lead = meta ? p->replacement : ' ';
        int prepend = meta ? (p->prepend_scheme == 2 || (p->prepend_scheme == 1 && first)) : p->add_prefix_space;
        prepend = prepend && cps[start] != lead && !(meta && cps[start] == ' ');
        const int32_t *src = cps;
        if (prepend || meta) {
            rs_tok_cps *b = &run->buf[k];
            if (rs_tok_cps_reserve(b, end - start + 1)) {
                run->st = RS_ERR_NOMEM;
                return 1;
            }
            size_t o = 0;
            if (prepend) b->v[o++] = lead;
            for (size_t i = start; i < end; i++) b->v[o++] = meta && cps[i] == ' ' ? p->replacement : cps[i];
            b->n = o;
            src = b->v;
            start = 0;
            end = o;
        }
        if (meta) {
            if (!p->split) return next_stage(run, k, src, start, end, first);
            return split_chars(run, k, src, start, end, first, RS_TOK_MERGED_WITH_NEXT, pred_replacement);
        }
        if (!p->pattern) return next_stage(run, k, src, start, end, first);
        splitter s;
        splitter_init(&s, run, k, src, start, first, RS_TOK_ISOLATED, 0);
        int r = rs_tok_pattern_find(p->pattern, src, start, end, on_match, &s);
        if (r < 0) {
            run->st = RS_ERR_NOMEM;
            return 1;
        }
        if (r) return 1;
        if (end > s.pos && segment(&s, s.pos, end, 0)) return 1;
        return split_finish(&s);
    }
    }
    return 0;
}

int rs_tok_pretokenize(rs_tok_pre_run *run, const int32_t *cps, size_t start, size_t end, int first) {
    if (start >= end) return 0;
    return stage(run, 0, cps, start, end, first);
}

void rs_tok_pre_run_free(rs_tok_pre_run *run) {
    for (size_t i = 0; i < RS_TOK_MAX_PRE; i++) free(run->buf[i].v);
}

void rs_tok_pre_free(rs_tok_pre *p) {
    rs_tok_pattern_free(p->pattern);
    p->pattern = NULL;
}
