/* tok_normalize.c — HF `tokenizers` normalizers over code-point arrays.
 *
 * We need the normalized text only, never offsets back into the input, so each
 * step is a plain array -> array rewrite. ASCII takes table paths; anything
 * else goes to the class tables frozen from HF (tok_unicode_tables.c) and to
 * utf8proc for decomposition and composition. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

static void swap_cps(rs_tok_cps *a, rs_tok_cps *b) {
    rs_tok_cps t = *a;
    *a = *b;
    *b = t;
}

/* HF bert.rs is_chinese_char: the CJK ideograph blocks, not all of Han. */
static int is_chinese_char(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* clean_text + handle_chinese_chars in one pass: drop NUL, U+FFFD and
 * controls; whitespace (incl. \t\n\r) becomes ' '; CJK gets spaces around. */
static rs_status bert_clean_chinese(const rs_tok_norm *s, const rs_tok_cps *in, rs_tok_cps *out) {
    if (rs_tok_cps_reserve(out, in->n * 3 + 1)) return RS_ERR_NOMEM;
    int32_t *o = out->v;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = (uint32_t)in->v[i];
        if (s->clean_text) {
            if (c < 0x80) {
                if (c < 0x20 || c == 0x7F) {
                    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
                    else continue;
                }
            } else {
                if (c == 0xFFFD || rs_tok_is_control(c)) continue;
                if (rs_tok_is_whitespace(c)) c = ' ';
            }
        }
        if (s->handle_chinese_chars && c >= 0x3400 && is_chinese_char(c)) {
            *o++ = ' ';
            *o++ = (int32_t)c;
            *o++ = ' ';
        } else {
            *o++ = (int32_t)c;
        }
    }
    out->n = (size_t)(o - out->v);
    return RS_OK;
}

/* Canonical (or compatibility) decomposition followed by canonical ordering:
 * utf8proc decomposes one character at a time, the reorder of each run of
 * non-starters by combining class (stable) is done here. */
/* Canonical combining class as HF's tables have it. */
static int ccc(int32_t c) {
    if (c < 0x300 || !rs_tok_is_nonstarter((uint32_t)c)) return 0;
    return utf8proc_get_property(c)->combining_class;
}

static rs_status decompose(const rs_tok_cps *in, rs_tok_cps *out, int compat) {
    utf8proc_option_t opt = UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0);
    if (rs_tok_cps_reserve(out, in->n + 64)) return RS_ERR_NOMEM;
    size_t n = 0;
    int any_mark = 0;
    for (size_t i = 0; i < in->n; i++) {
        int32_t c = in->v[i];
        /* Nothing below U+00A0 decomposes, even under compatibility. */
        if (c < 0xA0 || !rs_tok_has_decomposition((uint32_t)c, compat)) {
            if (n + 1 > out->cap && rs_tok_cps_reserve(out, n + 1 + (in->n - i) + 64)) return RS_ERR_NOMEM;
            out->v[n++] = c;
            if (c >= 0x300 && !any_mark && ccc(c)) any_mark = 1;
            continue;
        }
        for (;;) {
            int boundclass = UTF8PROC_BOUNDCLASS_START;
            utf8proc_ssize_t k = utf8proc_decompose_char(c, out->v + n, (utf8proc_ssize_t)(out->cap - n), opt,
                                                         &boundclass);
            if (k < 0) return RS_ERR_INTERNAL; /* input was validated; cannot happen */
            if ((size_t)k <= out->cap - n) {
                for (utf8proc_ssize_t j = 0; j < k && !any_mark; j++)
                    if (ccc(out->v[n + j])) any_mark = 1;
                n += (size_t)k;
                break;
            }
            if (rs_tok_cps_reserve(out, n + (size_t)k + (in->n - i) + 64)) return RS_ERR_NOMEM;
        }
    }
    out->n = n;
    if (!any_mark) return RS_OK;
    /* insertion sort inside runs of non-starters: runs are a few marks long */
    int32_t *v = out->v;
    for (size_t i = 1; i < n; i++) {
        int cc = ccc(v[i]);
        if (!cc) continue;
        size_t j = i;
        int32_t c = v[i];
        while (j > 0) {
            int pc = ccc(v[j - 1]);
            if (pc <= cc) break; /* also stops at a starter (cc 0) */
            v[j] = v[j - 1];
            j--;
        }
        v[j] = c;
    }
    return RS_OK;
}

static rs_status compose(rs_tok_cps *io) {
    if (!io->n) return RS_OK;
    utf8proc_ssize_t k = utf8proc_normalize_utf32(io->v, (utf8proc_ssize_t)io->n, UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    if (k < 0) return RS_ERR_INTERNAL;
    io->n = (size_t)k;
    return RS_OK;
}

/* Rust char::to_lowercase per character (no final-sigma context: HF maps
 * each char on its own). U+0130 is the one two-char result. */
static rs_status lowercase(const rs_tok_cps *in, rs_tok_cps *out) {
    if (rs_tok_cps_reserve(out, in->n * 2 + 1)) return RS_ERR_NOMEM;
    int32_t *o = out->v;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = (uint32_t)in->v[i];
        if (c < 0x80) {
            *o++ = (int32_t)(c - 'A' < 26u ? c + 32 : c);
        } else if (c == 0x130) {
            *o++ = 'i';
            *o++ = 0x307;
        } else {
            *o++ = (int32_t)rs_tok_lower_simple(c);
        }
    }
    out->n = (size_t)(o - out->v);
    return RS_OK;
}

static void filter_marks(rs_tok_cps *io, int (*is_mark)(uint32_t)) {
    size_t k = 0;
    for (size_t i = 0; i < io->n; i++) {
        int32_t c = io->v[i];
        if (c >= 0x300 && is_mark((uint32_t)c)) continue;
        io->v[k++] = c;
    }
    io->n = k;
}

static void strip(rs_tok_cps *io, int left, int right) {
    size_t a = 0, b = io->n;
    if (left)
        while (a < b && rs_tok_is_whitespace((uint32_t)io->v[a])) a++;
    if (right)
        while (b > a && rs_tok_is_whitespace((uint32_t)io->v[b - 1])) b--;
    if (a) memmove(io->v, io->v + a, (b - a) * sizeof *io->v);
    io->n = b - a;
}

static int all_below(const rs_tok_cps *b, int32_t limit) {
    for (size_t i = 0; i < b->n; i++)
        if (b->v[i] >= limit) return 0;
    return 1;
}

typedef struct replace_ctx {
    const rs_tok_norm *s;
    const rs_tok_cps *in;
    rs_tok_cps *out;
    size_t pos; /* input copied up to here */
    rs_status st;
} replace_ctx;

static int copy_range(replace_ctx *r, size_t a, size_t b) {
    if (rs_tok_cps_reserve(r->out, r->out->n + (b - a) + 1)) return 1;
    memcpy(r->out->v + r->out->n, r->in->v + a, (b - a) * sizeof *r->in->v);
    r->out->n += b - a;
    return 0;
}

static int on_replace(void *ctx, size_t ms, size_t me) {
    replace_ctx *r = ctx;
    if (copy_range(r, r->pos, ms) || rs_tok_cps_reserve(r->out, r->out->n + r->s->n_content + 1)) {
        r->st = RS_ERR_NOMEM;
        return 1;
    }
    memcpy(r->out->v + r->out->n, r->s->content, r->s->n_content * sizeof *r->s->content);
    r->out->n += r->s->n_content;
    r->pos = me;
    return 0;
}

/* HF Replace: every non-overlapping match, left to right, becomes content */
static rs_status replace(const rs_tok_norm *s, const rs_tok_cps *in, rs_tok_cps *out) {
    replace_ctx r = {.s = s, .in = in, .out = out};
    out->n = 0;
    int rc = rs_tok_pattern_find(s->pattern, in->v, 0, in->n, on_replace, &r);
    if (rc < 0) return RS_ERR_NOMEM;
    if (r.st) return r.st;
    if (copy_range(&r, r.pos, in->n)) return RS_ERR_NOMEM;
    return RS_OK;
}

static rs_status prepend(const rs_tok_norm *s, const rs_tok_cps *in, rs_tok_cps *out) {
    if (rs_tok_cps_reserve(out, in->n + s->n_content + 1)) return RS_ERR_NOMEM;
    memcpy(out->v, s->content, s->n_content * sizeof *s->content);
    memcpy(out->v + s->n_content, in->v, in->n * sizeof *in->v);
    out->n = in->n + s->n_content;
    return RS_OK;
}

void rs_tok_norm_free(rs_tok_norm *n) {
    rs_tok_pattern_free(n->pattern);
    free(n->content);
    rs_tok_precompiled_free(n->pc);
    n->pattern = NULL;
    n->content = NULL;
    n->pc = NULL;
}

rs_status rs_tok_normalize(const rs_tok_norm *steps, size_t n, rs_tok_cps *io, rs_tok_cps *tmp) {
    rs_status st = RS_OK;
    for (size_t k = 0; k < n && st == RS_OK; k++) {
        const rs_tok_norm *s = &steps[k];
        switch (s->kind) {
        case RS_TOK_NORM_BERT:
            if (s->clean_text || s->handle_chinese_chars) {
                if ((st = bert_clean_chinese(s, io, tmp))) break;
                swap_cps(io, tmp);
            }
            /* HF order: clean, chinese, strip accents (NFD then drop Mn), lowercase */
            if (s->strip_accents && !all_below(io, 0xA0)) {
                if ((st = decompose(io, tmp, 0))) break;
                swap_cps(io, tmp);
                filter_marks(io, rs_tok_is_mark_nonspacing);
            }
            if (s->lowercase) {
                if ((st = lowercase(io, tmp))) break;
                swap_cps(io, tmp);
            }
            break;
        case RS_TOK_NORM_LOWERCASE:
            if ((st = lowercase(io, tmp))) break;
            swap_cps(io, tmp);
            break;
        case RS_TOK_NORM_NFD:
        case RS_TOK_NORM_NFKD:
        case RS_TOK_NORM_NFC:
        case RS_TOK_NORM_NFKC:
            if (all_below(io, 0xA0)) break; /* ASCII and C1 are fixed points of all four */
            if ((st = decompose(io, tmp, s->kind == RS_TOK_NORM_NFKD || s->kind == RS_TOK_NORM_NFKC))) break;
            swap_cps(io, tmp);
            if (s->kind == RS_TOK_NORM_NFC || s->kind == RS_TOK_NORM_NFKC) st = compose(io);
            break;
        case RS_TOK_NORM_STRIP_ACCENTS:
            filter_marks(io, rs_tok_is_combining_mark);
            break;
        case RS_TOK_NORM_STRIP:
            strip(io, s->strip_left, s->strip_right);
            break;
        case RS_TOK_NORM_REPLACE:
            if ((st = replace(s, io, tmp))) break;
            swap_cps(io, tmp);
            break;
        case RS_TOK_NORM_PREPEND:
            if (!io->n) break; /* HF prepends to non-empty text only */
            if ((st = prepend(s, io, tmp))) break;
            swap_cps(io, tmp);
            break;
        case RS_TOK_NORM_PRECOMPILED:
            if ((st = rs_tok_precompiled_apply(s->pc, io, tmp))) break;
            swap_cps(io, tmp);
            break;
        }
    }
    return st;
}

/* Chunks are cut before an ASCII space that follows ASCII non-space
 * (tokenizer.c), so a step is chunkable when it cannot see across such a cut:
 * per-character steps, right-only Strip (a chunk never ends in whitespace but
 * the last), Precompiled (the cut is a grapheme boundary), Replace of runs of
 * spaces or of literals without a space. Left Strip and Prepend act on each
 * piece's start, unknown regexes on anything. */
int rs_tok_norm_chunkable(const rs_tok_norm *steps, size_t n) {
    for (size_t k = 0; k < n; k++) {
        const rs_tok_norm *s = &steps[k];
        if (s->kind == RS_TOK_NORM_STRIP && s->strip_left) return 0;
        if (s->kind == RS_TOK_NORM_PREPEND) return 0;
        if (s->kind == RS_TOK_NORM_REPLACE) {
            int kind = rs_tok_pattern_kind(s->pattern);
            if (kind == RS_TOK_PAT_PCRE2) return 0;
            if (kind == RS_TOK_PAT_LITERAL) return 0; /* conservative: literals may hold spaces */
        }
    }
    return 1;
}
