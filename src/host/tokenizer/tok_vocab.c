/* tok_vocab.c — token string -> id, an open-addressing hash table.
 *
 * Built once at load; lookups are read-only so any number of threads may
 * share it. The key may arrive in two parts (WordPiece's "##" + piece), so the
 * hash is streamed over both and the compare walks both: no key is copied on
 * the hot path. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* FNV-1a: tokens are short, so a byte loop beats anything with setup cost. */
static uint32_t hash_bytes(uint32_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}
#define HASH_SEED 2166136261u

static int key_eq(const char *k, size_t klen, const char *a, size_t alen, const char *b, size_t blen) {
    return klen == alen + blen && memcmp(k, a, alen) == 0 && memcmp(k + alen, b, blen) == 0;
}

int32_t rs_tok_vocab_find2(const rs_tok_vocab *v, const char *a, size_t alen, const char *b, size_t blen) {
    if (alen + blen > v->max_len) return -1;
    uint32_t h = hash_bytes(hash_bytes(HASH_SEED, a, alen), b, blen);
    for (size_t s = h & v->mask;; s = (s + 1) & v->mask) {
        uint32_t id1 = v->slot_id[s];
        if (!id1) return -1;
        if (v->slot_h[s] == h) {
            uint32_t id = id1 - 1;
            if (key_eq(v->arena + v->off[id], v->len[id], a, alen, b, blen)) return (int32_t)id;
        }
    }
}

void rs_tok_vocab_free(rs_tok_vocab *v) {
    if (!v) return;
    free(v->arena);
    free(v->off);
    free(v->len);
    free(v->slot_id);
    free(v->slot_h);
    memset(v, 0, sizeof *v);
}

rs_status rs_tok_vocab_init(rs_tok_vocab *v, const void *json, rs_err *err) {
    const cJSON *obj = json;
    memset(v, 0, sizeof *v);
    if (!cJSON_IsObject(obj)) return rs_errf(err, RS_ERR_FORMAT, "model.vocab is not an object");
    size_t n_keys = 0, bytes = 0;
    double max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, obj) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 0x7FFFFFFE ||
            e->valuedouble != (double)(int64_t)e->valuedouble)
            return rs_errf(err, RS_ERR_FORMAT, "model.vocab: bad id for token '%.64s'", e->string);
        n_keys++;
        bytes += strlen(e->string);
        if (e->valuedouble > max_id) max_id = e->valuedouble;
    }
    if (bytes > 0xFFFFFFF0u) return rs_errf(err, RS_ERR_TOO_LARGE, "model.vocab is too large");
    v->n_ids = (size_t)(max_id + 1);
    v->n_keys = n_keys;
    size_t slots = 16;
    while (slots < n_keys * 2) slots *= 2; /* load <= 0.5: short probes */
    v->mask = slots - 1;
    v->arena = malloc(bytes + 1);
    v->off = malloc((v->n_ids + 1) * sizeof *v->off);
    v->len = malloc((v->n_ids + 1) * sizeof *v->len);
    v->slot_id = calloc(slots, sizeof *v->slot_id);
    v->slot_h = calloc(slots, sizeof *v->slot_h);
    if (!v->arena || !v->off || !v->len || !v->slot_id || !v->slot_h) {
        rs_tok_vocab_free(v);
        return rs_errf(err, RS_ERR_NOMEM, "model.vocab: out of memory");
    }
    for (size_t i = 0; i < v->n_ids; i++) v->len[i] = UINT32_MAX;
    size_t pos = 0;
    cJSON_ArrayForEach(e, obj) {
        size_t len = strlen(e->string);
        uint32_t id = (uint32_t)e->valuedouble;
        if (v->len[id] != UINT32_MAX) {
            rs_tok_vocab_free(v);
            return rs_errf(err, RS_ERR_FORMAT, "model.vocab: id %u is used twice", id);
        }
        memcpy(v->arena + pos, e->string, len);
        v->off[id] = (uint32_t)pos;
        v->len[id] = (uint32_t)len;
        if (len > v->max_len) v->max_len = len;
        uint32_t h = hash_bytes(HASH_SEED, e->string, len);
        size_t s = h & v->mask;
        while (v->slot_id[s]) {
            uint32_t o = v->slot_id[s] - 1;
            if (v->slot_h[s] == h && key_eq(v->arena + v->off[o], v->len[o], e->string, len, "", 0)) {
                /* cJSON keeps duplicate keys; serde (HF) keeps the last one */
                v->len[o] = UINT32_MAX;
                break;
            }
            s = (s + 1) & v->mask;
        }
        v->slot_id[s] = id + 1;
        v->slot_h[s] = h;
        pos += len;
    }
    return RS_OK;
}

rs_status rs_tok_vocab_build(rs_tok_vocab *v, size_t n_ids, const char *const *key, const uint32_t *len, rs_err *err) {
    memset(v, 0, sizeof *v);
    size_t n_keys = 0, bytes = 0;
    for (size_t id = 0; id < n_ids; id++)
        if (key[id]) {
            n_keys++;
            bytes += len[id];
        }
    if (bytes > 0xFFFFFFF0u) return rs_errf(err, RS_ERR_TOO_LARGE, "vocabulary is too large");
    v->n_ids = n_ids;
    v->n_keys = n_keys;
    size_t slots = 16;
    while (slots < n_keys * 2) slots *= 2;
    v->mask = slots - 1;
    v->arena = malloc(bytes + 1);
    v->off = malloc((n_ids + 1) * sizeof *v->off);
    v->len = malloc((n_ids + 1) * sizeof *v->len);
    v->slot_id = calloc(slots, sizeof *v->slot_id);
    v->slot_h = calloc(slots, sizeof *v->slot_h);
    if (!v->arena || !v->off || !v->len || !v->slot_id || !v->slot_h) {
        rs_tok_vocab_free(v);
        return rs_errf(err, RS_ERR_NOMEM, "vocabulary: out of memory");
    }
    size_t pos = 0;
    for (size_t id = 0; id < n_ids; id++) {
        v->len[id] = UINT32_MAX;
        if (!key[id]) continue;
        size_t l = len[id];
        memcpy(v->arena + pos, key[id], l);
        v->off[id] = (uint32_t)pos;
        v->len[id] = (uint32_t)l;
        if (l > v->max_len) v->max_len = l;
        uint32_t h = hash_bytes(HASH_SEED, key[id], l);
        size_t s = h & v->mask;
        while (v->slot_id[s]) {
            uint32_t o = v->slot_id[s] - 1;
            if (v->slot_h[s] == h && key_eq(v->arena + v->off[o], v->len[o], key[id], l, "", 0)) {
                v->n_keys--; /* as a map built from the list: the last id gets the key */
                break;
            }
            s = (s + 1) & v->mask;
        }
        v->slot_id[s] = (uint32_t)id + 1;
        v->slot_h[s] = h;
        pos += l;
    }
    return RS_OK;
}
