/* tokenizer.c — load a HF tokenizer.json (or a tiktoken rank file) and run
 * the encode and decode pipelines.
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
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

#define MAX_NORMALIZERS 16
#define MAX_PRETOKENIZERS RS_TOK_MAX_PRE
#define CHUNK_BYTES 4096 /* raw bytes per chunk before we look for a cut */

/* How ids become text again (the tokenizer.json "decoder"). */
typedef enum decoder_kind {
    DEC_NONE,      /* no decoder: tokens joined with spaces */
    DEC_BYTES,     /* byte-level (ByteLevel decoder, tiktoken): raw bytes, lossy UTF-8 */
    DEC_METASPACE, /* replacement -> space, leading space of the first token dropped */
    DEC_WORDPIECE, /* "##" pieces glued, others space-separated, optional cleanup */
    DEC_UNSUPPORTED,
} decoder_kind;

static rs_status decode_utf8(const char *s, size_t len, rs_tok_cps *out);
static size_t utf8_invalid_at(const char *s, size_t len);

typedef struct added_token {
    char *content; /* raw pattern (normalized == 0) */
    size_t len;
    int32_t *ncps; /* normalized pattern (normalized == 1) */
    size_t n_ncps;
    int32_t id;
    int single_word, lstrip, rstrip, normalized, special;
} added_token;

struct rs_tokenizer {
    rs_tok_norm norm[MAX_NORMALIZERS];
    size_t n_norm;
    rs_tok_pre pre[MAX_PRETOKENIZERS];
    size_t n_pre;
    int byte_level; /* a ByteLevel pre-tokenizer: the BPE model runs on bytes */
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
    size_t cap_added; /* allocated entries of added */
    /* decoder */
    decoder_kind dec;
    char dec_name[48]; /* DEC_UNSUPPORTED: its type */
    int32_t dec_replacement;
    int dec_prepend; /* METASPACE: drop the first leading space */
    char dec_prefix[16]; /* WORDPIECE */
    int dec_cleanup;
    int tiktoken; /* loaded from a rank file */
    int parse_special; /* special tokens in the caller's text become their ids (HF's default) */
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
    } else if (!strcmp(type, "Replace") || !strcmp(type, "Prepend")) {
        int is_replace = !strcmp(type, "Replace");
        const char *key = is_replace ? "content" : "prepend";
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, key);
        if (!cJSON_IsString(c)) return rs_errf(err, RS_ERR_FORMAT, "%s normalizer without %s", type, key);
        size_t len = strlen(c->valuestring);
        n.kind = is_replace ? RS_TOK_NORM_REPLACE : RS_TOK_NORM_PREPEND;
        n.content = malloc((len + 1) * sizeof *n.content);
        if (!n.content) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
        utf8proc_ssize_t k = utf8proc_decompose((const utf8proc_uint8_t *)c->valuestring, (utf8proc_ssize_t)len,
                                                n.content, (utf8proc_ssize_t)len + 1, 0);
        if (k < 0) {
            free(n.content);
            return rs_errf(err, RS_ERR_FORMAT, "%s normalizer: %s is not UTF-8", type, key);
        }
        n.n_content = (size_t)k;
        if (is_replace) {
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
            const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
            const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
            rs_status st = cJSON_IsString(re)    ? rs_tok_pattern_regex(re->valuestring, &n.pattern, err)
                           : cJSON_IsString(str) ? rs_tok_pattern_literal(str->valuestring, &n.pattern, err)
                                                 : rs_errf(err, RS_ERR_FORMAT, "Replace normalizer without a pattern");
            if (st) {
                free(n.content);
                return st;
            }
        }
    } else if (!strcmp(type, "Precompiled")) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "precompiled_charsmap");
        n.kind = RS_TOK_NORM_PRECOMPILED;
        if (cJSON_IsNull(c) || (cJSON_IsString(c) && !c->valuestring[0])) return RS_OK; /* HF: empty map, no-op */
        if (!cJSON_IsString(c)) return rs_errf(err, RS_ERR_FORMAT, "Precompiled normalizer without precompiled_charsmap");
        rs_status st = rs_tok_precompiled_load(c->valuestring, &n.pc, err);
        if (st) return st;
    } else {
        return rs_errf(err, RS_ERR_UNSUPPORTED, "normalizer type '%s' is not supported", type);
    }
    t->norm[t->n_norm++] = n;
    return RS_OK;
}

static rs_status parse_behavior(const char *b, rs_tok_behavior *out, rs_err *err) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(b, names[i])) {
            *out = (rs_tok_behavior)i;
            return RS_OK;
        }
    return rs_errf(err, RS_ERR_UNSUPPORTED, "split behavior '%.32s' is not supported", b);
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
    rs_tok_pre p = {0};
    rs_status st = RS_OK;
    if (!strcmp(type, "BertPreTokenizer")) p.kind = RS_TOK_PRE_BERT;
    else if (!strcmp(type, "Whitespace")) p.kind = RS_TOK_PRE_WHITESPACE;
    else if (!strcmp(type, "WhitespaceSplit")) p.kind = RS_TOK_PRE_WHITESPACE_SPLIT;
    else if (!strcmp(type, "Metaspace")) {
        p.kind = RS_TOK_PRE_METASPACE;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "replacement");
        utf8proc_int32_t c = 0x2581;
        if (cJSON_IsString(r)) {
            size_t len = strlen(r->valuestring);
            if (!len || utf8proc_iterate((const utf8proc_uint8_t *)r->valuestring, (utf8proc_ssize_t)len, &c) !=
                            (utf8proc_ssize_t)len)
                return rs_errf(err, RS_ERR_FORMAT, "Metaspace: replacement must be one character");
        }
        p.replacement = c;
        p.split = json_bool(j, "split", 1);
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        if (cJSON_IsString(ps)) {
            if (!strcmp(ps->valuestring, "always")) p.prepend_scheme = 2;
            else if (!strcmp(ps->valuestring, "first")) p.prepend_scheme = 1;
            else if (!strcmp(ps->valuestring, "never")) p.prepend_scheme = 0;
            else return rs_errf(err, RS_ERR_FORMAT, "Metaspace: unknown prepend_scheme '%.32s'", ps->valuestring);
        } else {
            p.prepend_scheme = json_bool(j, "add_prefix_space", 1) ? 2 : 0; /* older files */
        }
    } else if (!strcmp(type, "ByteLevel")) {
        p.kind = RS_TOK_PRE_BYTELEVEL;
        p.add_prefix_space = json_bool(j, "add_prefix_space", 1);
        if (json_bool(j, "use_regex", 1)) st = rs_tok_pattern_known(RS_TOK_PAT_GPT2, &p.pattern);
        if (st) return rs_errf(err, st, "out of memory");
        t->byte_level = 1;
    } else if (!strcmp(type, "Split")) {
        p.kind = RS_TOK_PRE_SPLIT;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(j, "behavior");
        p.invert = json_bool(j, "invert", 0);
        if (!cJSON_IsString(beh)) return rs_errf(err, RS_ERR_FORMAT, "Split without a behavior");
        if ((st = parse_behavior(beh->valuestring, &p.behavior, err))) return st;
        if (cJSON_IsString(re)) st = rs_tok_pattern_regex(re->valuestring, &p.pattern, err);
        else if (cJSON_IsString(str)) st = rs_tok_pattern_literal(str->valuestring, &p.pattern, err);
        else st = rs_errf(err, RS_ERR_FORMAT, "Split without a pattern");
        if (st) return st;
    } else if (!strcmp(type, "Digits")) {
        p.kind = RS_TOK_PRE_DIGITS;
        p.individual_digits = json_bool(j, "individual_digits", 0);
    } else if (!strcmp(type, "Punctuation")) {
        p.kind = RS_TOK_PRE_PUNCTUATION;
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(j, "behavior");
        p.behavior = RS_TOK_ISOLATED;
        if (cJSON_IsString(beh) && (st = parse_behavior(beh->valuestring, &p.behavior, err))) return st;
    } else return rs_errf(err, RS_ERR_UNSUPPORTED, "pre_tokenizer type '%s' is not supported", type);
    t->pre[t->n_pre++] = p;
    return RS_OK;
}

static rs_status load_model(rs_tokenizer *t, const cJSON *j, rs_err *err) {
    const char *type = json_type(j);
    if (!type) return rs_errf(err, RS_ERR_FORMAT, "model without a type");
    if (t->byte_level && strcmp(type, "BPE"))
        return rs_errf(err, RS_ERR_UNSUPPORTED, "ByteLevel pre-tokenizer with a %s model is not supported", type);
    if (!strcmp(type, "WordPiece")) {
        t->model_ops = &rs_tok_wordpiece_ops;
        return rs_tok_wordpiece_load(j, &t->model, err);
    }
    if (!strcmp(type, "Unigram")) {
        t->model_ops = &rs_tok_unigram_ops;
        return rs_tok_unigram_load(j, &t->model, err);
    }
    if (!strcmp(type, "BPE")) {
        t->model_ops = &rs_tok_bpe_ops;
        return rs_tok_bpe_load(j, t->byte_level, &t->model, err);
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
    if (!strcmp(type, "ByteLevel")) return RS_OK; /* offsets only: ids unchanged */
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "processors"), *e;
        if (!cJSON_IsArray(list)) return rs_errf(err, RS_ERR_FORMAT, "Sequence post_processor without processors");
        cJSON_ArrayForEach(e, list) {
            rs_status st = load_post_processor(t, e, err);
            if (st) return st;
        }
        return RS_OK;
    }
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


static rs_status load_added_tokens(rs_tokenizer *t, const cJSON *list, rs_err *err) {
    if (!list || cJSON_IsNull(list)) return RS_OK;
    if (!cJSON_IsArray(list)) return rs_errf(err, RS_ERR_FORMAT, "added_tokens is not an array");
    int n = cJSON_GetArraySize(list);
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    t->cap_added = (size_t)n + 1;
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
        at->special = special;
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
        if (!a.n) {
            /* HF keeps such a token, and its empty pattern then splits the
             * normalized text between every two characters (words lose
             * their subword merges): no real tokenizer wants that, and the
             * empty pattern has no first code point to match on. */
            st = rs_errf(err, RS_ERR_FORMAT,
                         "added_tokens: '%.64s' (id %d) normalizes to nothing; such a token would split the "
                         "text between every character (as HF does): remove it or mark it \"normalized\": false",
                         at->content, at->id);
            break;
        }
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
    for (size_t i = 0; i < t->n_norm; i++) rs_tok_norm_free(&t->norm[i]);
    for (size_t i = 0; i < t->n_pre; i++) rs_tok_pre_free(&t->pre[i]);
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].ncps);
    }
    free(t->added);
    free(t->prefix_ids);
    free(t->suffix_ids);
    free(t);
}

/* Decoders are only needed for ids -> text: one we do not implement is
 * remembered and refused by rs_tokenizer_decode, not at load. */
static rs_status load_decoder(rs_tokenizer *t, const cJSON *j, rs_err *err) {
    (void)err;
    if (!j || cJSON_IsNull(j)) {
        t->dec = t->byte_level ? DEC_BYTES : DEC_NONE;
        return RS_OK;
    }
    const char *type = json_type(j);
    if (!type) type = "?";
    if (!strcmp(type, "ByteLevel") && t->byte_level) {
        t->dec = DEC_BYTES;
    } else if (!strcmp(type, "Metaspace")) {
        t->dec = DEC_METASPACE;
        t->dec_replacement = 0x2581;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "replacement");
        utf8proc_int32_t c;
        if (cJSON_IsString(r) && utf8proc_iterate((const utf8proc_uint8_t *)r->valuestring, -1, &c) > 0)
            t->dec_replacement = c;
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        t->dec_prepend = cJSON_IsString(ps) ? strcmp(ps->valuestring, "never") != 0 : json_bool(j, "add_prefix_space", 1);
    } else if (!strcmp(type, "WordPiece")) {
        t->dec = DEC_WORDPIECE;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prefix");
        snprintf(t->dec_prefix, sizeof t->dec_prefix, "%s", cJSON_IsString(p) ? p->valuestring : "##");
        t->dec_cleanup = json_bool(j, "cleanup", 1);
    } else {
        t->dec = DEC_UNSUPPORTED;
        snprintf(t->dec_name, sizeof t->dec_name, "%s", type);
    }
    return RS_OK;
}

static rs_status load_from_json(rs_tokenizer *t, const cJSON *root, rs_err *err) {
    rs_status st;
    if ((st = load_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err))) return st;
    if ((st = load_pre_tokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err))) return st;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return rs_errf(err, RS_ERR_FORMAT, "no model");
    if ((st = load_model(t, model, err))) return st;
    if ((st = load_post_processor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), err))) return st;
    /* every pre-tokenizer we implement, bar arbitrary Split patterns, splits
     * before a space that follows a printable ASCII char (see run_piece); with
     * none, the text is one word */
    t->chunkable = t->n_pre > 0 && rs_tok_norm_chunkable(t->norm, t->n_norm);
    for (size_t i = 0; i < t->n_pre; i++)
        if (t->pre[i].kind == RS_TOK_PRE_SPLIT) {
            int k = rs_tok_pattern_kind(t->pre[i].pattern);
            if (k != RS_TOK_PAT_GPT2 && k != RS_TOK_PAT_LLAMA3) t->chunkable = 0;
        }
    if ((st = load_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), err))) return st;
    if ((st = load_added_tokens(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err))) return st;
    size_t n = t->model_ops->n_ids(t->model);
    if (n > t->n_ids) t->n_ids = n;
    return RS_OK;
}

/* A tiktoken rank file: lines of base64, a space, a decimal rank. */
static int looks_like_ranks(const char *buf, size_t len) {
    size_t i = 0;
    while (i < len && (isalnum((unsigned char)buf[i]) || buf[i] == '+' || buf[i] == '/' || buf[i] == '=')) i++;
    if (i == 0 || i % 4 || i >= len || buf[i] != ' ') return 0;
    size_t j = ++i;
    while (i < len && buf[i] >= '0' && buf[i] <= '9') i++;
    return i > j && (i == len || buf[i] == '\n');
}

/* Llama 3's special tokens, after the ranked ones (Meta's tokenizer.py). */
static const char *const LLAMA3_SPECIALS[] = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
    "<|eot_id|>", "<|python_tag|>", "<|image|>",
};
#define LLAMA3_N_SPECIAL 256

/* A rank file is read as Llama 3's tokenizer: its split pattern, its 256
 * special tokens from the first id after the ranks, and BOS as the one
 * special token --add-special puts in front (as HF's Llama 3 tokenizer). */
static rs_status load_tiktoken(rs_tokenizer *t, const char *buf, size_t len, rs_err *err) {
    rs_status st = rs_tok_bpe_load_ranks(buf, len, &t->model, err);
    if (st) return st;
    t->model_ops = &rs_tok_bpe_ops;
    t->tiktoken = 1;
    t->byte_level = 1;
    t->dec = DEC_BYTES;
    rs_tok_pre p = {.kind = RS_TOK_PRE_SPLIT, .behavior = RS_TOK_ISOLATED};
    if (rs_tok_pattern_known(RS_TOK_PAT_LLAMA3, &p.pattern)) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    t->pre[t->n_pre++] = p;
    t->chunkable = 1;
    size_t base = t->model_ops->n_ids(t->model);
    t->n_ids = base;
    size_t n_named = sizeof LLAMA3_SPECIALS / sizeof LLAMA3_SPECIALS[0];
    for (size_t i = 0; i < LLAMA3_N_SPECIAL; i++) {
        char name[64];
        if (i < n_named) snprintf(name, sizeof name, "%s", LLAMA3_SPECIALS[i]);
        else snprintf(name, sizeof name, "<|reserved_special_token_%zu|>", i - n_named + 2);
        if ((st = rs_tokenizer_add_special(t, name, (int32_t)(base + i), err))) return st;
    }
    return push_id(&t->prefix_ids, &t->n_prefix, (int32_t)base) ? rs_errf(err, RS_ERR_NOMEM, "out of memory") : RS_OK;
}

rs_status rs_tokenizer_add_special(rs_tokenizer *t, const char *content, int32_t id, rs_err *err) {
    size_t len = content ? strlen(content) : 0;
    if (!len || id < 0) return rs_errf(err, RS_ERR_INVALID_ARG, "added token needs content and an id >= 0");
    if (utf8_invalid_at(content, len) < len) return rs_errf(err, RS_ERR_UTF8, "added token is not valid UTF-8");
    if (t->n_added + 1 > t->cap_added) {
        size_t cap = t->cap_added ? t->cap_added * 2 : 64;
        added_token *a = realloc(t->added, cap * sizeof *a);
        if (!a) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
        t->added = a;
        t->cap_added = cap;
    }
    added_token *at = &t->added[t->n_added];
    memset(at, 0, sizeof *at);
    at->content = malloc(len + 1);
    if (!at->content) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    memcpy(at->content, content, len + 1);
    at->len = len;
    at->id = id;
    at->special = 1;
    t->n_added++;
    t->raw_first_byte[(unsigned char)content[0]] = 1;
    t->has_raw_added = 1;
    if ((size_t)id + 1 > t->n_ids) t->n_ids = (size_t)id + 1;
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
    if (looks_like_ranks(buf, len)) {
        rs_tokenizer *t = calloc(1, sizeof *t);
        rs_err inner;
        rs_status st = t ? load_tiktoken(t, buf, len, &inner) : rs_errf(&inner, RS_ERR_NOMEM, "out of memory");
        free(buf);
        if (st) {
            rs_tokenizer_free(t);
            return rs_errf(err, st, "%s: %s", path, inner.msg);
        }
        *out = t;
        return RS_OK;
    }
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

void rs_tokenizer_set_parse_special(rs_tokenizer *t, int on) { t->parse_special = on != 0; }

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
static int plain_match(const enc *e, const added_token *tok, size_t a, size_t b) {
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
                           size_t *me, const added_token **tok) {
    for (size_t i = from; i < n; i++) {
        const added_token *best = NULL;
        for (size_t k = 0; k < t->n_added; k++) {
            const added_token *at = &t->added[k];
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
    if ((e->st = decode_utf8(s, len, &e->a))) return 1;
    if ((e->st = rs_tok_normalize(t->norm, t->n_norm, &e->a, &e->b))) return 1;
    if (!t->has_norm_added) return run_words(e, 0, e->a.n, first);
    /* HF find_matches over the normalized text, in code points */
    const int32_t *v = e->a.v;
    size_t n = e->a.n, from = 0, done = 0, ms, me;
    const added_token *tok;
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
        run_piece(e, s, len, 1);
        return;
    }
    size_t from = 0, done = 0, ms, me;
    const added_token *tok;
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
    if (t->dec == DEC_UNSUPPORTED)
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
        case DEC_BYTES:
            if (added && !t->tiktoken) { /* text in GPT-2's alphabet where it maps */
                rs_tok_cps tmp = {0};
                int ok = decode_utf8(s, len, &tmp) == RS_OK;
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
        case DEC_NONE:
            if (k) sb_put(&b, " ", 1);
            sb_put(&b, s, len);
            break;
        case DEC_METASPACE: {
            rs_tok_cps tmp = {0};
            if (decode_utf8(s, len, &tmp) == RS_OK)
                for (size_t c = 0; c < tmp.n; c++) {
                    if (tmp.v[c] != t->dec_replacement) sb_put_cp(&b, tmp.v[c]);
                    else if (!(k == 0 && t->dec_prepend)) sb_put(&b, " ", 1);
                }
            free(tmp.v);
            break;
        }
        case DEC_WORDPIECE: {
            size_t from = b.n, pl = strlen(t->dec_prefix);
            if (k && len >= pl && !memcmp(s, t->dec_prefix, pl)) sb_put(&b, s + pl, len - pl);
            else {
                if (k) sb_put(&b, " ", 1);
                sb_put(&b, s, len);
            }
            if (t->dec_cleanup && !b.oom) wordpiece_cleanup(&b, from);
            break;
        }
        case DEC_UNSUPPORTED:
            break;
        }
        k++;
    next:;
    }
    if (t->dec == DEC_BYTES && !b.oom) { /* bytes -> text, invalid UTF-8 replaced */
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
