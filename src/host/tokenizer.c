/* tokenizer.c — load a HF tokenizer.json and run the encode pipeline.
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

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

#define MAX_NORMALIZERS 16
#define MAX_PRETOKENIZERS 16
#define CHUNK_BYTES 4096 /* raw bytes per chunk before we look for a cut */

typedef struct added_token {
    char *content; /* raw pattern (normalized == 0) */
    size_t len;
    int32_t *ncps; /* normalized pattern (normalized == 1) */
    size_t n_ncps;
    int32_t id;
    int single_word, lstrip, rstrip, normalized;
} added_token;

struct rs_tokenizer {
    rs_tok_norm norm[MAX_NORMALIZERS];
    size_t n_norm;
    rs_tok_pre_kind pre[MAX_PRETOKENIZERS];
    size_t n_pre;
    const rs_tok_model_ops *model_ops;
    void *model;
    added_token *added;
    size_t n_added;
    int has_raw_added, has_norm_added;
    uint8_t raw_first_byte[256]; /* 1 where some raw added token starts with it */
    int32_t *prefix_ids, *suffix_ids; /* post-processor, single sequence */
    size_t n_prefix, n_suffix;
    int chunkable;
    size_t n_ids;
};

/* ------------------------------------------------------------------ load */

static const char *json_type(const cJSON *o) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int json_bool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static rs_status load_normalizer(rs_tokenizer *t, const cJSON *j, rs_err *err) {
    if (!j || cJSON_IsNull(j)) return RS_OK;
    const char *type = json_type(j);
    if (!type) return rs_errf(err, RS_ERR_FORMAT, "normalizer without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "normalizers"), *e;
        if (!cJSON_IsArray(list)) return rs_errf(err, RS_ERR_FORMAT, "Sequence normalizer without normalizers");
        cJSON_ArrayForEach(e, list) {
            rs_status st = load_normalizer(t, e, err);
            if (st) return st;
        }
        return RS_OK;
    }
    if (t->n_norm == MAX_NORMALIZERS) return rs_errf(err, RS_ERR_UNSUPPORTED, "more than %d normalizers", MAX_NORMALIZERS);
    rs_tok_norm n = {0};
    if (!strcmp(type, "BertNormalizer")) {
        n.kind = RS_TOK_NORM_BERT;
        n.clean_text = json_bool(j, "clean_text", 1);
        n.handle_chinese_chars = json_bool(j, "handle_chinese_chars", 1);
        n.lowercase = json_bool(j, "lowercase", 1);
        /* strip_accents null (or absent) follows lowercase, as in HF */
        n.strip_accents = json_bool(j, "strip_accents", n.lowercase);
    } else if (!strcmp(type, "Lowercase")) {
        n.kind = RS_TOK_NORM_LOWERCASE;
    } else if (!strcmp(type, "NFD")) {
        n.kind = RS_TOK_NORM_NFD;
    } else if (!strcmp(type, "NFKD")) {
        n.kind = RS_TOK_NORM_NFKD;
    } else if (!strcmp(type, "NFC")) {
        n.kind = RS_TOK_NORM_NFC;
    } else if (!strcmp(type, "NFKC")) {
        n.kind = RS_TOK_NORM_NFKC;
    } else if (!strcmp(type, "StripAccents")) {
        n.kind = RS_TOK_NORM_STRIP_ACCENTS;
    } else if (!strcmp(type, "Strip")) {
        n.kind = RS_TOK_NORM_STRIP;
        n.strip_left = json_bool(j, "strip_left", 1);
        n.strip_right = json_bool(j, "strip_right", 1);
    } else {
        return rs_errf(err, RS_ERR_UNSUPPORTED, "normalizer type '%s' is not supported", type);
    }
    t->norm[t->n_norm++] = n;
    return RS_OK;
}

static rs_status load_pre_tokenizer(rs_tokenizer *t, const cJSON *j, rs_err *err) {
    if (!j || cJSON_IsNull(j)) return RS_OK;
    const char *type = json_type(j);
    if (!type) return rs_errf(err, RS_ERR_FORMAT, "pre_tokenizer without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers"), *e;
        if (!cJSON_IsArray(list)) return rs_errf(err, RS_ERR_FORMAT, "Sequence pre_tokenizer without pretokenizers");
        cJSON_ArrayForEach(e, list) {
            rs_status st = load_pre_tokenizer(t, e, err);
            if (st) return st;
        }
        return RS_OK;
    }
    if (t->n_pre == MAX_PRETOKENIZERS)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "more than %d pre-tokenizers", MAX_PRETOKENIZERS);
    if (!strcmp(type, "BertPreTokenizer")) t->pre[t->n_pre++] = RS_TOK_PRE_BERT;
    else if (!strcmp(type, "Whitespace")) t->pre[t->n_pre++] = RS_TOK_PRE_WHITESPACE;
    else if (!strcmp(type, "WhitespaceSplit")) t->pre[t->n_pre++] = RS_TOK_PRE_WHITESPACE_SPLIT;
    else return rs_errf(err, RS_ERR_UNSUPPORTED, "pre_tokenizer type '%s' is not supported", type);
    return RS_OK;
}

static rs_status load_model(rs_tokenizer *t, const cJSON *j, rs_err *err) {
    const char *type = json_type(j);
    if (!type) return rs_errf(err, RS_ERR_FORMAT, "model without a type");
    if (!strcmp(type, "WordPiece")) {
        t->model_ops = &rs_tok_wordpiece_ops;
        return rs_tok_wordpiece_load(j, &t->model, err);
    }
    return rs_errf(err, RS_ERR_UNSUPPORTED, "model type '%s' is not supported", type);
}

static rs_status push_id(int32_t **arr, size_t *n, int32_t id) {
    int32_t *a = realloc(*arr, (*n + 1) * sizeof *a);
    if (!a) return RS_ERR_NOMEM;
    a[(*n)++] = id;
    *arr = a;
    return RS_OK;
}

/* BertProcessing / RobertaProcessing: "cls": ["[CLS]", 101] */
static rs_status pair_id(const cJSON *j, const char *key, int32_t *id, rs_err *err) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, key);
    const cJSON *v = cJSON_IsArray(p) ? cJSON_GetArrayItem(p, 1) : NULL;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0) return rs_errf(err, RS_ERR_FORMAT, "post_processor.%s malformed", key);
    *id = (int32_t)v->valuedouble;
    return RS_OK;
}

static rs_status load_template(rs_tokenizer *t, const cJSON *j, rs_err *err) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    if (!cJSON_IsArray(single)) return rs_errf(err, RS_ERR_FORMAT, "TemplateProcessing without a single template");
    int seen_seq = 0;
    const cJSON *piece;
    cJSON_ArrayForEach(piece, single) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(piece, "Sequence");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(piece, "SpecialToken");
        if (seq) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(seq, "id");
            if (seen_seq || !cJSON_IsString(id) || strcmp(id->valuestring, "A"))
                return rs_errf(err, RS_ERR_UNSUPPORTED, "TemplateProcessing: single template must hold sequence A once");
            seen_seq = 1;
        } else if (sp) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
            if (!cJSON_IsString(name)) return rs_errf(err, RS_ERR_FORMAT, "TemplateProcessing: SpecialToken without id");
            const cJSON *def = cJSON_GetObjectItemCaseSensitive(specials, name->valuestring);
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids"), *e;
            if (!cJSON_IsArray(ids))
                return rs_errf(err, RS_ERR_FORMAT, "TemplateProcessing: special token '%.64s' undefined", name->valuestring);
            cJSON_ArrayForEach(e, ids) {
                if (!cJSON_IsNumber(e) || e->valuedouble < 0) return rs_errf(err, RS_ERR_FORMAT, "TemplateProcessing: bad id");
                rs_status st = seen_seq ? push_id(&t->suffix_ids, &t->n_suffix, (int32_t)e->valuedouble)
                                        : push_id(&t->prefix_ids, &t->n_prefix, (int32_t)e->valuedouble);
                if (st) return rs_errf(err, st, "out of memory");
            }
        } else {
            return rs_errf(err, RS_ERR_FORMAT, "TemplateProcessing: unknown template piece");
        }
    }
    if (!seen_seq) return rs_errf(err, RS_ERR_UNSUPPORTED, "TemplateProcessing: single template without the sequence");
    return RS_OK;
}

static rs_status load_post_processor(rs_tokenizer *t, const cJSON *j, rs_err *err) {
    if (!j || cJSON_IsNull(j)) return RS_OK;
    const char *type = json_type(j);
    if (!type) return rs_errf(err, RS_ERR_FORMAT, "post_processor without a type");
    if (!strcmp(type, "TemplateProcessing")) return load_template(t, j, err);
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        /* single sequence: cls A sep for both */
        int32_t cls = -1, sep = -1;
        rs_status st = pair_id(j, "cls", &cls, err);
        if (!st) st = pair_id(j, "sep", &sep, err);
        if (st) return st;
        if (push_id(&t->prefix_ids, &t->n_prefix, cls) || push_id(&t->suffix_ids, &t->n_suffix, sep))
            return rs_errf(err, RS_ERR_NOMEM, "out of memory");
        return RS_OK;
    }
    return rs_errf(err, RS_ERR_UNSUPPORTED, "post_processor type '%s' is not supported", type);
}

static rs_status decode_utf8(const char *s, size_t len, rs_tok_cps *out);
static size_t utf8_invalid_at(const char *s, size_t len);

static rs_status load_added_tokens(rs_tokenizer *t, const cJSON *list, rs_err *err) {
    if (!list || cJSON_IsNull(list)) return RS_OK;
    if (!cJSON_IsArray(list)) return rs_errf(err, RS_ERR_FORMAT, "added_tokens is not an array");
    int n = cJSON_GetArraySize(list);
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    rs_tok_cps a = {0}, b = {0};
    const cJSON *e;
    rs_status st = RS_OK;
    cJSON_ArrayForEach(e, list) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsString(content) || !cJSON_IsNumber(id) || id->valuedouble < 0) {
            st = rs_errf(err, RS_ERR_FORMAT, "added_tokens: entry without content or id");
            break;
        }
        size_t len = strlen(content->valuestring);
        if (!len) continue; /* HF ignores empty added tokens */
        if (utf8_invalid_at(content->valuestring, len) < len) continue; /* could never match valid text */
        added_token *at = &t->added[t->n_added];
        at->id = (int32_t)id->valuedouble;
        at->single_word = json_bool(e, "single_word", 0);
        at->lstrip = json_bool(e, "lstrip", 0);
        at->rstrip = json_bool(e, "rstrip", 0);
        int special = json_bool(e, "special", 0);
        at->normalized = json_bool(e, "normalized", !special);
        at->content = malloc(len + 1);
        if (!at->content) {
            st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(at->content, content->valuestring, len + 1);
        at->len = len;
        t->n_added++;
        if ((size_t)at->id + 1 > t->n_ids) t->n_ids = (size_t)at->id + 1;
        if (!at->normalized) {
            t->raw_first_byte[(unsigned char)at->content[0]] = 1;
            t->has_raw_added = 1;
            continue;
        }
        /* a normalized token matches its normalized form in normalized text */
        if ((st = decode_utf8(at->content, len, &a))) {
            st = rs_errf(err, st, "added_tokens: '%.64s' is not valid UTF-8", at->content);
            break;
        }
        if ((st = rs_tok_normalize(t->norm, t->n_norm, &a, &b))) {
            st = rs_errf(err, st, "added_tokens: cannot normalize '%.64s'", at->content);
            break;
        }
        if (!a.n) continue; /* normalizes to nothing: can never match */
        at->ncps = malloc(a.n * sizeof *at->ncps);
        if (!at->ncps) {
            st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(at->ncps, a.v, a.n * sizeof *a.v);
        at->n_ncps = a.n;
        t->has_norm_added = 1;
        /* a pattern with whitespace could straddle a chunk cut */
        for (size_t i = 0; i < a.n; i++)
            if (rs_tok_is_whitespace((uint32_t)a.v[i])) t->chunkable = 0;
    }
    free(a.v);
    free(b.v);
    return st;
}

void rs_tokenizer_free(rs_tokenizer *t) {
    if (!t) return;
    if (t->model_ops) t->model_ops->free(t->model);
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].ncps);
    }
    free(t->added);
    free(t->prefix_ids);
    free(t->suffix_ids);
    free(t);
}

static rs_status load_from_json(rs_tokenizer *t, const cJSON *root, rs_err *err) {
    rs_status st;
    if ((st = load_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err))) return st;
    if ((st = load_pre_tokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err))) return st;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return rs_errf(err, RS_ERR_FORMAT, "no model");
    if ((st = load_model(t, model, err))) return st;
    if ((st = load_post_processor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), err))) return st;
    /* every pre-tokenizer we implement splits at whitespace, so a cut after
     * whitespace is a word boundary; with none, the text is one word */
    t->chunkable = t->n_pre > 0 && rs_tok_norm_chunkable(t->norm, t->n_norm);
    if ((st = load_added_tokens(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err))) return st;
    size_t n = t->model_ops->n_ids(t->model);
    if (n > t->n_ids) t->n_ids = n;
    /* the decoder only matters for ids -> text, which we never do */
    return RS_OK;
}

rs_status rs_tokenizer_load(const char *path, rs_tokenizer **out, rs_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return rs_errf(err, RS_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 65536) {
            char *nb = realloc(buf, cap = cap ? cap * 2 : 1 << 20);
            if (!nb) {
                free(buf);
                fclose(f);
                return rs_errf(err, RS_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t k = fread(buf + len, 1, cap - len - 1, f);
        len += k;
        if (k == 0) break;
    }
    int io_err = ferror(f);
    fclose(f);
    if (io_err) {
        free(buf);
        return rs_errf(err, RS_ERR_IO, "%s: read error", path);
    }
    buf[len] = 0;
    cJSON *root = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rs_errf(err, RS_ERR_FORMAT, "%s: not a JSON object", path);
    }
    rs_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(root);
        return rs_errf(err, RS_ERR_NOMEM, "%s: out of memory", path);
    }
    rs_err inner;
    rs_status st = load_from_json(t, root, &inner);
    cJSON_Delete(root);
    if (st) {
        rs_tokenizer_free(t);
        return rs_errf(err, st, "%s: %s", path, inner.msg);
    }
    *out = t;
    return RS_OK;
}

size_t rs_tokenizer_num_special(const rs_tokenizer *t) { return t->n_prefix + t->n_suffix; }

size_t rs_tokenizer_vocab_size(const rs_tokenizer *t) { return t->n_ids; }

int32_t rs_tokenizer_token_id(const rs_tokenizer *t, const char *token) {
    size_t len = strlen(token);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && !memcmp(t->added[i].content, token, len)) return t->added[i].id;
    return t->model_ops->token_id(t->model, token, len);
}

/* ---------------------------------------------------------------- encode */

/* Input is already validated, so this is a plain decoder. */
static rs_status decode_utf8(const char *s, size_t len, rs_tok_cps *out) {
    if (rs_tok_cps_reserve(out, len + 1)) return RS_ERR_NOMEM;
    const unsigned char *p = (const unsigned char *)s, *e = p + len;
    int32_t *o = out->v;
    while (p < e) {
        unsigned c = *p;
        if (c < 0x80) {
            *o++ = (int32_t)c;
            p++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, e - p, &cp);
        if (k <= 0) return RS_ERR_UTF8;
        *o++ = cp;
        p += k;
    }
    out->n = (size_t)(o - out->v);
    return RS_OK;
}

/* Offset of the first invalid byte, or len when s[0..len) is valid UTF-8. */
static size_t utf8_invalid_at(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        /* ASCII runs, 8 bytes at a time */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= len) break;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0) return i;
        i += (size_t)k;
    }
    return len;
}

typedef struct enc {
    const rs_tokenizer *t;
    rs_tok_sink sink;
    rs_tok_cps a, b; /* normalization ping-pong */
    char *word;      /* UTF-8 of the current word */
    size_t word_cap;
    rs_status st;
} enc;

static int full(const enc *e) { return e->sink.n > e->sink.limit; }

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
                           size_t *me, const added_token **tok) {
    for (size_t i = from; i < n; i++) {
        const added_token *best = NULL;
        for (size_t k = 0; k < t->n_added; k++) {
            const added_token *at = &t->added[k];
            if (!at->normalized || at->n_ncps > n - i || (best && at->n_ncps <= best->n_ncps)) continue;
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
static int run_words(enc *e, size_t a, size_t b) {
    const rs_tokenizer *t = e->t;
    return rs_tok_pretokenize(t->pre, t->n_pre, e->a.v, a, b, on_word, e);
}

/* One chunk of raw text (no raw added token inside): normalize, split on
 * normalized added tokens, pre-tokenize, model. Returns nonzero to stop. */
static int run_chunk(enc *e, const char *s, size_t len) {
    const rs_tokenizer *t = e->t;
    if ((e->st = decode_utf8(s, len, &e->a))) return 1;
    if ((e->st = rs_tok_normalize(t->norm, t->n_norm, &e->a, &e->b))) return 1;
    if (!t->has_norm_added) return run_words(e, 0, e->a.n);
    /* HF find_matches over the normalized text, in code points */
    const int32_t *v = e->a.v;
    size_t n = e->a.n, from = 0, done = 0, ms, me;
    const added_token *tok;
    while (find_norm_added(t, v, from, n, &ms, &me, &tok)) {
        from = me; /* the matcher resumes after the raw match either way */
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
        if (run_words(e, done, ms)) return 1;
        rs_tok_emit(&e->sink, tok->id);
        if (full(e)) return 1;
        done = me;
    }
    return run_words(e, done, n);
}

/* A piece of raw text between raw added tokens. */
static int run_piece(enc *e, const char *s, size_t len) {
    if (!e->t->chunkable) return run_chunk(e, s, len);
    size_t pos = 0;
    while (pos < len) {
        size_t end = len;
        if (len - pos > CHUNK_BYTES) {
            /* cut just after ASCII whitespace: a word boundary for every
             * chunkable pipeline, and never inside a UTF-8 sequence */
            end = pos + CHUNK_BYTES;
            while (end < len && s[end - 1] != ' ' && s[end - 1] != '\n' && s[end - 1] != '\t' && s[end - 1] != '\r')
                end++;
        }
        if (run_chunk(e, s + pos, end - pos)) return 1;
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
                          const added_token **tok) {
    for (size_t i = from; i < len; i++) {
        if (!t->raw_first_byte[(unsigned char)s[i]]) continue;
        const added_token *best = NULL;
        for (size_t k = 0; k < t->n_added; k++) {
            const added_token *at = &t->added[k];
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
        run_piece(e, s, len);
        return;
    }
    size_t from = 0, done = 0, ms, me;
    const added_token *tok;
    while (find_raw_added(t, s, from, len, &ms, &me, &tok)) {
        from = me;
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
        if (ms > done && run_piece(e, s + done, ms - done)) return;
        rs_tok_emit(&e->sink, tok->id);
        if (full(e)) return;
        done = me;
    }
    if (done < len) run_piece(e, s + done, len - done);
}

rs_status rs_tokenizer_encode(const rs_tokenizer *t, const char *text, size_t len, int add_special,
                              size_t max_tokens, int32_t *ids, size_t cap, size_t *n_out, int *truncated,
                              rs_err *err) {
    *n_out = 0;
    if (truncated) *truncated = 0;
    if (!text && len) return rs_errf(err, RS_ERR_INVALID_ARG, "text is NULL");
    size_t bad = utf8_invalid_at(text, len);
    if (bad < len) return rs_errf(err, RS_ERR_UTF8, "invalid UTF-8 at byte offset %zu", bad);
    size_t n_pre = add_special ? t->n_prefix : 0, n_suf = add_special ? t->n_suffix : 0;
    size_t n_special = n_pre + n_suf;
    if (max_tokens && max_tokens < n_special)
        return rs_errf(err, RS_ERR_INVALID_ARG, "max_tokens %zu is less than the %zu special tokens", max_tokens,
                       n_special);
    if (cap < n_special) return rs_errf(err, RS_ERR_TOO_LARGE, "id buffer of %zu cannot hold the special tokens", cap);
    size_t keep = max_tokens ? max_tokens - n_special : SIZE_MAX;
    size_t room = cap - n_special;
    enc e = {.t = t, .sink = {.ids = ids + n_pre, .n = 0, .limit = keep < room ? keep : room}};
    run_text(&e, text, len);
    free(e.a.v);
    free(e.b.v);
    free(e.word);
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
