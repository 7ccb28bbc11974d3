/* tokenizer.c — the encode and decode pipelines over a loaded tokenizer
 * (tok_load.c builds it).
 *
 * DESIGN. encode = validate UTF-8 (the whole input, always) -> split out
 * added tokens that match the raw text -> for each remaining piece, in chunks
 * cut after ASCII whitespace: decode to code points -> normalizers -> split out
 * added tokens that match normalized text -> pre-tokenizers -> model, word by
 * word, into the caller's id buffer. Chunking is what lets a 1 MB prompt with
 * max_tokens 256 stop after the first few KB: every word boundary we cut at
 * is one the pipeline would have made anyway (checked per pipeline at load,
 * see `chunkable`). The tokenizer is read-only after load; each call owns its
 * scratch (two code-point buffers and a word buffer), so calls may run
 * concurrently. File truncation/padding sections are ignored on purpose: the
 * engine decides truncation through max_tokens. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

#define CHUNK_BYTES 4096 /* raw bytes per chunk before we look for a cut */

/* ---------------------------------------------------------------- encode */

typedef struct enc {
    const rs_tokenizer *t;
    const char *text;           /* the whole text: spans are offsets into it */
    const rs_tok_span *plain;   /* where special tokens are plain text */
    size_t n_plain;
    rs_tok_sink sink;
    rs_tok_pre_run pre;
    rs_tok_cps a, b; /* normalization ping-pong */
    char *word;      /* UTF-8 of the current word */
    size_t word_cap;
    rs_status st;
} enc;

static int full(const enc *e) { return e->sink.n > e->sink.limit; }

/* A match of added token tok over text bytes [a, b) is plain text: a special
 * token that overlaps the caller's text, unless the tokenizer parses specials
 * there. HF's encode_special_tokens skips the match the same way: the matcher
 * resumes after it, so no shorter token inside it matches either. */
static int plain_match(const enc *e, const rs_tok_added *tok, size_t a, size_t b) {
    if (!tok->special || e->t->parse_special) return 0;
    for (size_t i = 0; i < e->n_plain; i++)
        if (a < e->plain[i].off + e->plain[i].len && e->plain[i].off < b) return 1;
    return 0;
}

/* chunk start positions (byte offset 0 of the text gets `first`) */

static int on_word(void *ctx, const int32_t *cps, size_t start, size_t end) {
    enc *e = ctx;
    size_t need = (end - start) * 4;
    if (need > e->word_cap) {
        size_t cap = e->word_cap ? e->word_cap : 256;
        while (cap < need) cap *= 2;
        char *w = realloc(e->word, cap);
        if (!w) {
            e->st = RS_ERR_NOMEM;
            return 1;
        }
        e->word = w;
        e->word_cap = cap;
    }
    char *o = e->word;
    for (size_t i = start; i < end; i++) {
        int32_t c = cps[i];
        if (c < 0x80) *o++ = (char)c;
        else o += utf8proc_encode_char(c, (utf8proc_uint8_t *)o);
    }
    e->t->model_ops->encode_word(e->t->model, e->word, (size_t)(o - e->word), end - start, &e->sink);
    return full(e);
}

/* Leftmost-longest match of a normalized added token in cps[from..n). */
static int find_norm_added(const rs_tokenizer *t, const int32_t *cps, size_t from, size_t n, size_t *ms,
                           size_t *me, const rs_tok_added **tok) {
    for (size_t i = from; i < n; i++) {
        const rs_tok_added *best = NULL;
        for (size_t k = 0; k < t->n_added; k++) {
            const rs_tok_added *at = &t->added[k];
            if (!at->normalized || !at->n_ncps || at->n_ncps > n - i || (best && at->n_ncps <= best->n_ncps))
                continue;
            if (at->ncps[0] == cps[i] && !memcmp(at->ncps, cps + i, at->n_ncps * sizeof *cps)) best = at;
        }
        if (best) {
            *ms = i;
            *me = i + best->n_ncps;
            *tok = best;
            return 1;
        }
    }
    return 0;
}

/* Pre-tokenize and model cps[a..b) of the normalized chunk. */
static int run_words(enc *e, size_t a, size_t b, int first) {
    int r = rs_tok_pretokenize(&e->pre, e->a.v, a, b, first);
    if (e->pre.st && !e->st) e->st = e->pre.st;
    return r;
}

/* One chunk of raw text (no raw added token inside): normalize, split on
 * normalized added tokens, pre-tokenize, model. Returns nonzero to stop. */
static int run_chunk(enc *e, const char *s, size_t len, int first) {
    const rs_tokenizer *t = e->t;
    /* normalized positions do not map back to bytes: a special token matched
     * after normalization is plain when any of the chunk is the caller's */
    const size_t off = (size_t)(s - e->text);
    if ((e->st = rs_tok_cps_from_utf8(s, len, &e->a))) return 1;
    if ((e->st = rs_tok_normalize(t->norm, t->n_norm, &e->a, &e->b))) return 1;
    if (!t->has_norm_added) return run_words(e, 0, e->a.n, first);
    /* HF find_matches over the normalized text, in code points */
    const int32_t *v = e->a.v;
    size_t n = e->a.n, from = 0, done = 0, ms, me;
    const rs_tok_added *tok;
    while (find_norm_added(t, v, from, n, &ms, &me, &tok)) {
        from = me; /* the matcher resumes after the raw match either way */
        if (plain_match(e, tok, off, off + len)) continue;
        if (tok->single_word && ((ms > 0 && rs_tok_is_word_char((uint32_t)v[ms - 1])) ||
                                 (me < n && rs_tok_is_word_char((uint32_t)v[me]))))
            continue;
        if (tok->lstrip) {
            while (ms > done && rs_tok_is_whitespace((uint32_t)v[ms - 1])) ms--;
        }
        if (tok->rstrip) {
            while (me < n && rs_tok_is_whitespace((uint32_t)v[me])) me++;
            from = me;
        }
        if (run_words(e, done, ms, first && done == 0)) return 1;
        rs_tok_emit(&e->sink, tok->id);
        if (full(e)) return 1;
        done = me;
    }
    return run_words(e, done, n, first && done == 0);
}

/* A piece of raw text between raw added tokens; first: it starts the text. */
static int run_piece(enc *e, const char *s, size_t len, int first) {
    if (!e->t->chunkable) return run_chunk(e, s, len, first);
    size_t pos = 0;
    while (pos < len) {
        size_t end = len;
        if (len - pos > CHUNK_BYTES) {
            /* cut just before a space that follows a printable ASCII char: a
             * word boundary for every chunkable pipeline (no pre-tokenizer
             * joins such a pair, none of the chunkable normalizers looks
             * across it, it is a grapheme boundary), never inside UTF-8 */
            end = pos + CHUNK_BYTES;
            while (end < len && !(s[end] == ' ' && s[end - 1] > ' ' && s[end - 1] < 0x7F)) end++;
        }
        if (run_chunk(e, s + pos, end - pos, first && pos == 0)) return 1;
        pos = end;
    }
    return 0;
}

/* Last code point before s[pos] (pos > 0; text is valid UTF-8). */
static uint32_t cp_before(const char *s, size_t pos) {
    size_t i = pos - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    utf8proc_int32_t cp = 0;
    utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(pos - i), &cp);
    return (uint32_t)cp;
}

static uint32_t cp_at(const char *s, size_t pos, size_t len) {
    utf8proc_int32_t cp = 0;
    utf8proc_iterate((const utf8proc_uint8_t *)s + pos, (utf8proc_ssize_t)(len - pos), &cp);
    return (uint32_t)cp;
}

static size_t utf8_len_at(const char *s, size_t pos) {
    unsigned char c = (unsigned char)s[pos];
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Leftmost-longest match of a raw added token in s[from..len). */
static int find_raw_added(const rs_tokenizer *t, const char *s, size_t from, size_t len, size_t *ms, size_t *me,
                          const rs_tok_added **tok) {
    for (size_t i = from; i < len; i++) {
        if (!t->raw_first_byte[(unsigned char)s[i]]) continue;
        const rs_tok_added *best = NULL;
        for (size_t k = 0; k < t->n_added; k++) {
            const rs_tok_added *at = &t->added[k];
            if (at->normalized || at->len > len - i || (best && at->len <= best->len)) continue;
            if (!memcmp(at->content, s + i, at->len)) best = at;
        }
        if (best) {
            *ms = i;
            *me = i + best->len;
            *tok = best;
            return 1;
        }
    }
    return 0;
}

/* The whole text: HF AddedVocabulary::find_matches on the raw input, then
 * the pipeline on what lies between the matches. */
static void run_text(enc *e, const char *s, size_t len) {
    const rs_tokenizer *t = e->t;
    if (!t->has_raw_added) {
        run_piece(e, s, len, 1);
        return;
    }
    size_t from = 0, done = 0, ms, me;
    const rs_tok_added *tok;
    while (find_raw_added(t, s, from, len, &ms, &me, &tok)) {
        from = me;
        if (plain_match(e, tok, ms, me)) continue;
        if (tok->single_word && ((ms > 0 && rs_tok_is_word_char(cp_before(s, ms))) || (me < len && rs_tok_is_word_char(cp_at(s, me, len)))))
            continue;
        if (tok->lstrip)
            while (ms > done && rs_tok_is_whitespace(cp_before(s, ms))) {
                size_t k = ms - 1;
                while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
                ms = k;
            }
        if (tok->rstrip) {
            while (me < len && rs_tok_is_whitespace(cp_at(s, me, len))) me += utf8_len_at(s, me);
            from = me;
        }
        if (ms > done && run_piece(e, s + done, ms - done, done == 0)) return;
        rs_tok_emit(&e->sink, tok->id);
        if (full(e)) return;
        done = me;
    }
    if (done < len) run_piece(e, s + done, len - done, done == 0);
}

rs_status rs_tokenizer_encode(const rs_tokenizer *t, const char *text, size_t len, int add_special,
                              size_t max_tokens, int32_t *ids, size_t cap, size_t *n_out, int *truncated,
                              rs_err *err) {
    rs_tok_span all = {0, len};
    return rs_tokenizer_encode_spans(t, text, len, &all, 1, add_special, max_tokens, ids, cap, n_out, truncated, err);
}

rs_status rs_tokenizer_encode_spans(const rs_tokenizer *t, const char *text, size_t len, const rs_tok_span *plain,
                                    size_t n_plain, int add_special, size_t max_tokens, int32_t *ids, size_t cap,
                                    size_t *n_out, int *truncated, rs_err *err) {
    *n_out = 0;
    if (truncated) *truncated = 0;
    if (!text && len) return rs_errf(err, RS_ERR_INVALID_ARG, "text is NULL");
    size_t bad = rs_tok_utf8_invalid_at(text, len);
    if (bad < len) return rs_errf(err, RS_ERR_UTF8, "invalid UTF-8 at byte offset %zu", bad);
    size_t n_pre = add_special ? t->n_prefix : 0, n_suf = add_special ? t->n_suffix : 0;
    size_t n_special = n_pre + n_suf;
    if (max_tokens && max_tokens < n_special)
        return rs_errf(err, RS_ERR_INVALID_ARG, "max_tokens %zu is less than the %zu special tokens", max_tokens,
                       n_special);
    if (cap < n_special) return rs_errf(err, RS_ERR_TOO_LARGE, "id buffer of %zu cannot hold the special tokens", cap);
    size_t keep = max_tokens ? max_tokens - n_special : SIZE_MAX;
    size_t room = cap - n_special;
    enc e = {.t = t, .text = text, .plain = plain, .n_plain = n_plain,
             .sink = {.ids = ids + n_pre, .n = 0, .limit = keep < room ? keep : room}};
    e.pre.pre = t->pre;
    e.pre.n = t->n_pre;
    e.pre.fn = on_word;
    e.pre.ctx = &e;
    run_text(&e, text, len);
    free(e.a.v);
    free(e.b.v);
    free(e.word);
    rs_tok_pre_run_free(&e.pre);
    if (e.st) return rs_errf(err, e.st, "tokenize failed: %s", rs_status_str(e.st));
    size_t n = e.sink.n;
    if (n > e.sink.limit) {
        if (keep > room) return rs_errf(err, RS_ERR_TOO_LARGE, "more than %zu tokens do not fit the id buffer", cap);
        n = keep;
        if (truncated) *truncated = 1;
    }
    if (n_pre) memcpy(ids, t->prefix_ids, n_pre * sizeof *ids);
    if (n_suf) memcpy(ids + n_pre + n, t->suffix_ids, n_suf * sizeof *ids);
    *n_out = n_pre + n + n_suf;
    return RS_OK;
}

/* ---------------------------------------------------------------- decode */

typedef struct strbuf {
    char *v;
    size_t n, cap;
    int oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *v = realloc(b->v, cap);
        if (!v) {
            b->oom = 1;
            return;
        }
        b->v = v;
        b->cap = cap;
    }
    memcpy(b->v + b->n, s, len);
    b->n += len;
    b->v[b->n] = 0;
}

static void sb_put_cp(strbuf *b, int32_t c) {
    utf8proc_uint8_t u[4];
    sb_put(b, (const char *)u, (size_t)utf8proc_encode_char(c, u));
}

/* Rust's String::from_utf8_lossy (and Python's errors="replace"): each
 * maximal invalid subsequence becomes one U+FFFD. */
static void sb_put_lossy(strbuf *b, const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            sb_put(b, (const char *)s + i, 1);
            i++;
            continue;
        }
        size_t need = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        }
        size_t k = 1;
        if (need) {
            if (i + 1 < len && s[i + 1] >= lo && s[i + 1] <= hi) {
                k = 2;
                while (k <= need && i + k < len && s[i + k] >= 0x80 && s[i + k] <= 0xBF) k++;
            }
        }
        if (need && k == need + 1) sb_put(b, (const char *)s + i, k);
        else sb_put(b, "\xEF\xBF\xBD", 3);
        i += need && k == need + 1 ? k : (k > 1 ? k : 1);
    }
}

static void wordpiece_cleanup(strbuf *b, size_t from) {
    static const char *const pairs[][2] = {{" .", "."},   {" ?", "?"},     {" !", "!"},     {" ,", ","},
                                           {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},   {" do not", " don't"},
                                           {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        size_t fl = strlen(pairs[p][0]), tl = strlen(pairs[p][1]);
        size_t r = from, w = from;
        while (r < b->n) {
            if (r + fl <= b->n && !memcmp(b->v + r, pairs[p][0], fl)) {
                memmove(b->v + w, pairs[p][1], tl); /* tl <= fl: never overtakes r */
                w += tl;
                r += fl;
            } else {
                b->v[w++] = b->v[r++];
            }
        }
        b->n = w;
        b->v[w] = 0;
    }
}

rs_status rs_tokenizer_decode(const rs_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                              size_t *text_len, rs_err *err) {
    *text = NULL;
    if (text_len) *text_len = 0;
    if (t->dec == RS_TOK_DEC_UNSUPPORTED)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "decoder type '%s' is not supported", t->dec_name);
    strbuf b = {0};
    sb_put(&b, "", 0);
    size_t k = 0; /* tokens written (HF drops unknown ids and skipped specials first) */
    for (size_t i = 0; i < n; i++) {
        const char *s = NULL;
        size_t len = 0;
        int added = 0;
        for (size_t a = 0; a < t->n_added; a++)
            if (t->added[a].id == ids[i]) {
                if (skip_special && t->added[a].special) goto next;
                s = t->added[a].content;
                len = t->added[a].len;
                added = 1;
                break;
            }
        if (!s) s = t->model_ops->id_to_token(t->model, ids[i], &len);
        if (!s) continue;
        switch (t->dec) {
        case RS_TOK_DEC_BYTES:
            if (added && !t->tiktoken) { /* text in GPT-2's alphabet where it maps */
                rs_tok_cps tmp = {0};
                int ok = rs_tok_cps_from_utf8(s, len, &tmp) == RS_OK;
                for (size_t c = 0; ok && c < tmp.n; c++) ok = rs_tok_char_to_byte((uint32_t)tmp.v[c]) >= 0;
                if (ok)
                    for (size_t c = 0; c < tmp.n; c++) {
                        char byte = (char)rs_tok_char_to_byte((uint32_t)tmp.v[c]);
                        sb_put(&b, &byte, 1);
                    }
                else sb_put(&b, s, len);
                free(tmp.v);
            } else {
                sb_put(&b, s, len);
            }
            break;
        case RS_TOK_DEC_NONE:
            if (k) sb_put(&b, " ", 1);
            sb_put(&b, s, len);
            break;
        case RS_TOK_DEC_METASPACE: {
            rs_tok_cps tmp = {0};
            if (rs_tok_cps_from_utf8(s, len, &tmp) == RS_OK)
                for (size_t c = 0; c < tmp.n; c++) {
                    if (tmp.v[c] != t->dec_replacement) sb_put_cp(&b, tmp.v[c]);
                    else if (!(k == 0 && t->dec_prepend)) sb_put(&b, " ", 1);
                }
            free(tmp.v);
            break;
        }
        case RS_TOK_DEC_WORDPIECE: {
            size_t from = b.n, pl = strlen(t->dec_prefix);
            if (k && len >= pl && !memcmp(s, t->dec_prefix, pl)) sb_put(&b, s + pl, len - pl);
            else {
                if (k) sb_put(&b, " ", 1);
                sb_put(&b, s, len);
            }
            if (t->dec_cleanup && !b.oom) wordpiece_cleanup(&b, from);
            break;
        }
        case RS_TOK_DEC_UNSUPPORTED:
            break;
        }
        k++;
    next:;
    }
    if (t->dec == RS_TOK_DEC_BYTES && !b.oom) { /* bytes -> text, invalid UTF-8 replaced */
        strbuf o = {0};
        sb_put(&o, "", 0);
        sb_put_lossy(&o, (const unsigned char *)b.v, b.n);
        free(b.v);
        b = o;
    }
    if (b.oom) {
        free(b.v);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    }
    *text = b.v;
    if (text_len) *text_len = b.n;
    return RS_OK;
}
