/* tok_wordpiece.c — the WordPiece model, as HF `tokenizers` models/wordpiece.
 *
 * Greedy longest-match-first: from the start of the word take the longest
 * vocabulary entry, then continue with continuing_subword_prefix + the
 * longest entry for the rest. A word with more than max_input_chars_per_word
 * code points, or with any piece not in the vocabulary, is one unk_token. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

typedef struct wordpiece {
    rs_tok_vocab vocab;
    char prefix[64]; /* continuing_subword_prefix */
    size_t prefix_len;
    size_t max_chars;
    int32_t unk_id;
} wordpiece;

/* Largest char boundary <= pos in word[0..len). */
static size_t floor_boundary(const char *w, size_t pos) {
    while (pos > 0 && ((unsigned char)w[pos] & 0xC0) == 0x80) pos--;
    return pos;
}

static void wp_encode_word(const void *model, const char *w, size_t len, size_t n_chars, rs_tok_sink *sink) {
    const wordpiece *m = model;
    if (n_chars > m->max_chars) {
        rs_tok_emit(sink, m->unk_id);
        return;
    }
    size_t mark = sink->n;
    size_t start = 0;
    /* no entry is longer than max_len bytes, so longer candidates are skipped */
    size_t max_first = m->vocab.max_len;
    size_t max_cont = m->vocab.max_len > m->prefix_len ? m->vocab.max_len - m->prefix_len : 0;
    while (start < len) {
        size_t room = start ? max_cont : max_first;
        size_t end = len - start > room ? floor_boundary(w, start + room) : len;
        int32_t id = -1;
        while (end > start) {
            id = start ? rs_tok_vocab_find2(&m->vocab, m->prefix, m->prefix_len, w + start, end - start)
                       : rs_tok_vocab_find2(&m->vocab, "", 0, w, end);
            if (id >= 0) break;
            end = floor_boundary(w, end - 1);
        }
        if (id < 0) {
            sink->n = mark;
            rs_tok_emit(sink, m->unk_id);
            return;
        }
        rs_tok_emit(sink, id);
        start = end;
    }
}

static int32_t wp_token_id(const void *model, const char *tok, size_t len) {
    const wordpiece *m = model;
    return rs_tok_vocab_find2(&m->vocab, "", 0, tok, len);
}

static const char *wp_id_to_token(const void *model, int32_t id, size_t *len) {
    return rs_tok_vocab_str(&((const wordpiece *)model)->vocab, id, len);
}

static size_t wp_n_ids(const void *model) { return ((const wordpiece *)model)->vocab.n_ids; }

static void wp_free(void *model) {
    wordpiece *m = model;
    if (!m) return;
    rs_tok_vocab_free(&m->vocab);
    free(m);
}

const rs_tok_model_ops rs_tok_wordpiece_ops = {
    .name = "WordPiece",
    .encode_word = wp_encode_word,
    .token_id = wp_token_id,
    .n_ids = wp_n_ids,
    .id_to_token = wp_id_to_token,
    .free = wp_free,
};

rs_status rs_tok_wordpiece_load(const void *json, void **out, rs_err *err) {
    const cJSON *j = json;
    wordpiece *m = calloc(1, sizeof *m);
    if (!m) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    rs_status st = rs_tok_vocab_init(&m->vocab, cJSON_GetObjectItemCaseSensitive(j, "vocab"), err);
    if (st) {
        free(m);
        return st;
    }
    /* HF defaults when a field is absent */
    const char *unk = "[UNK]", *prefix = "##";
    double max_chars = 100;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "unk_token");
    if (cJSON_IsString(f)) unk = f->valuestring;
    f = cJSON_GetObjectItemCaseSensitive(j, "continuing_subword_prefix");
    if (cJSON_IsString(f)) prefix = f->valuestring;
    f = cJSON_GetObjectItemCaseSensitive(j, "max_input_chars_per_word");
    if (cJSON_IsNumber(f)) max_chars = f->valuedouble;
    if (strlen(prefix) >= sizeof m->prefix) {
        wp_free(m);
        return rs_errf(err, RS_ERR_UNSUPPORTED, "WordPiece: continuing_subword_prefix longer than %zu bytes",
                       sizeof m->prefix - 1);
    }
    memcpy(m->prefix, prefix, strlen(prefix) + 1);
    m->prefix_len = strlen(prefix);
    m->max_chars = max_chars < 0 ? 0 : (size_t)max_chars;
    /* HF fails at encode time when unk is needed and missing; we refuse early */
    m->unk_id = rs_tok_vocab_find2(&m->vocab, "", 0, unk, strlen(unk));
    if (m->unk_id < 0) {
        wp_free(m);
        return rs_errf(err, RS_ERR_FORMAT, "WordPiece: unk_token '%.64s' is not in the vocabulary", unk);
    }
    *out = m;
    return RS_OK;
}
