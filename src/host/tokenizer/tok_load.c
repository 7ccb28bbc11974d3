/* tok_load.c — builds an rs_tokenizer (tok_internal.h) from a HF
 * tokenizer.json (normalizers, pre-tokenizers, the model, post-processor,
 * added tokens, decoder) or a tiktoken rank file (Llama 3), and the loaded
 * tokenizer's accessors. Pipelines we do not implement are refused here,
 * except decoders (refused by rs_tokenizer_decode). File truncation/padding
 * sections are ignored on purpose: the engine decides truncation through
 * max_tokens. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"
#include "tokenizer.h"

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
    if (t->n_norm == RS_TOK_MAX_NORM) return rs_errf(err, RS_ERR_UNSUPPORTED, "more than %d normalizers", RS_TOK_MAX_NORM);
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
    if (t->n_pre == RS_TOK_MAX_PRE)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "more than %d pre-tokenizers", RS_TOK_MAX_PRE);
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
        if (rs_tok_utf8_invalid_at(content->valuestring, len) < len) continue; /* could never match valid text */
        rs_tok_added *at = &t->added[t->n_added];
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
        if ((st = rs_tok_cps_from_utf8(at->content, len, &a))) {
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
        t->dec = t->byte_level ? RS_TOK_DEC_BYTES : RS_TOK_DEC_NONE;
        return RS_OK;
    }
    const char *type = json_type(j);
    if (!type) type = "?";
    if (!strcmp(type, "ByteLevel") && t->byte_level) {
        t->dec = RS_TOK_DEC_BYTES;
    } else if (!strcmp(type, "Metaspace")) {
        t->dec = RS_TOK_DEC_METASPACE;
        t->dec_replacement = 0x2581;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "replacement");
        utf8proc_int32_t c;
        if (cJSON_IsString(r) && utf8proc_iterate((const utf8proc_uint8_t *)r->valuestring, -1, &c) > 0)
            t->dec_replacement = c;
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
        t->dec_prepend = cJSON_IsString(ps) ? strcmp(ps->valuestring, "never") != 0 : json_bool(j, "add_prefix_space", 1);
    } else if (!strcmp(type, "WordPiece")) {
        t->dec = RS_TOK_DEC_WORDPIECE;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prefix");
        snprintf(t->dec_prefix, sizeof t->dec_prefix, "%s", cJSON_IsString(p) ? p->valuestring : "##");
        t->dec_cleanup = json_bool(j, "cleanup", 1);
    } else {
        t->dec = RS_TOK_DEC_UNSUPPORTED;
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
    t->dec = RS_TOK_DEC_BYTES;
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
    if (rs_tok_utf8_invalid_at(content, len) < len) return rs_errf(err, RS_ERR_UTF8, "added token is not valid UTF-8");
    if (t->n_added + 1 > t->cap_added) {
        size_t cap = t->cap_added ? t->cap_added * 2 : 64;
        rs_tok_added *a = realloc(t->added, cap * sizeof *a);
        if (!a) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
        t->added = a;
        t->cap_added = cap;
    }
    rs_tok_added *at = &t->added[t->n_added];
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
