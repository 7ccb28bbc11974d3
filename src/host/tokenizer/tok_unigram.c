/* tok_unigram.c — the Unigram model, as HF `tokenizers` models/unigram.
 *
 * Viterbi over the pieces of the vocabulary: best_path[i] is the best score
 * of a segmentation of word[0..i) (scores are log-probabilities, summed in
 * f64 in HF's order so ties break the same way: candidates are tried by start
 * position, then by length, and only a strictly better score replaces). A
 * position no piece covers by a single character gets the unknown token at
 * min_score - 10. On the way back consecutive unknowns fuse (fuse_unk), and a
 * fused string is looked up again (unk id when absent, or its bytes as
 * <0xXX> tokens with byte_fallback).
 *
 * The pieces sit in a byte trie: the root's children in a direct table, the
 * rest in one open-addressing hash keyed by (node, byte). Read-only after load. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

#define UNK_PENALTY 10.0

typedef struct unigram {
    rs_tok_vocab vocab;
    double *score; /* (n_ids) */
    double min_score;
    int32_t unk_id;
    int byte_fallback, fuse_unk;
    int32_t byte_id[256];
    /* trie */
    int32_t *node_tok;  /* (n_nodes) token id ending here, or -1 */
    uint32_t root[256]; /* child of the root by byte, 0 = none */
    uint64_t *edge_key; /* (mask+1) node << 8 | byte, UINT64_MAX = empty */
    uint32_t *edge_child;
    size_t edge_mask, n_nodes;
} unigram;

static inline uint32_t edge_hash(uint64_t k) {
    k *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(k >> 32);
}

static inline uint32_t child(const unigram *m, uint32_t node, unsigned char b) {
    if (node == 0) return m->root[b];
    uint64_t k = (uint64_t)node << 8 | b;
    for (size_t s = edge_hash(k) & m->edge_mask;; s = (s + 1) & m->edge_mask) {
        if (m->edge_key[s] == k) return m->edge_child[s];
        if (m->edge_key[s] == UINT64_MAX) return 0;
    }
}

static rs_status build_trie(unigram *m) {
    size_t total = 0;
    for (size_t id = 0; id < m->vocab.n_ids; id++)
        if (m->vocab.len[id] != UINT32_MAX) total += m->vocab.len[id];
    size_t slots = 16;
    while (slots < total * 2) slots *= 2;
    m->edge_mask = slots - 1;
    m->edge_key = malloc(slots * sizeof *m->edge_key);
    m->edge_child = malloc(slots * sizeof *m->edge_child);
    m->node_tok = malloc((total + 1) * sizeof *m->node_tok);
    if (!m->edge_key || !m->edge_child || !m->node_tok) return RS_ERR_NOMEM;
    memset(m->edge_key, 0xFF, slots * sizeof *m->edge_key);
    m->node_tok[0] = -1;
    m->n_nodes = 1;
    for (size_t id = 0; id < m->vocab.n_ids; id++) {
        size_t len;
        const char *s = rs_tok_vocab_str(&m->vocab, (int32_t)id, &len);
        if (!s || !len) continue;
        uint32_t node = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char b = (unsigned char)s[i];
            uint32_t c = child(m, node, b);
            if (!c) {
                c = (uint32_t)m->n_nodes++;
                m->node_tok[c] = -1;
                if (node == 0) {
                    m->root[b] = c;
                } else {
                    uint64_t k = (uint64_t)node << 8 | b;
                    size_t sl = edge_hash(k) & m->edge_mask;
                    while (m->edge_key[sl] != UINT64_MAX) sl = (sl + 1) & m->edge_mask;
                    m->edge_key[sl] = k;
                    m->edge_child[sl] = c;
                }
            }
            node = c;
        }
        /* HF's trie keeps the id the vocabulary map gives the string */
        m->node_tok[node] = rs_tok_vocab_find2(&m->vocab, "", 0, s, len);
    }
    return RS_OK;
}

static inline size_t char_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

typedef struct node {
    double score;
    int32_t start; /* -1: unreached */
    int32_t id;
} node;

static void emit_string(const unigram *m, const char *w, size_t a, size_t b, rs_tok_sink *sink) {
    int32_t id = rs_tok_vocab_find2(&m->vocab, "", 0, w + a, b - a);
    if (id >= 0) {
        rs_tok_emit(sink, id);
        return;
    }
    if (m->byte_fallback) {
        int ok = 1;
        for (size_t i = a; i < b && ok; i++) ok = m->byte_id[(unsigned char)w[i]] >= 0;
        if (ok) {
            for (size_t i = a; i < b; i++) rs_tok_emit(sink, m->byte_id[(unsigned char)w[i]]);
            return;
        }
    }
    rs_tok_emit(sink, m->unk_id);
}

static void ug_encode_word(const void *model, const char *w, size_t len, size_t n_chars, rs_tok_sink *sink) {
    (void)n_chars;
    const unigram *m = model;
    node small[257];
    node *best = len < 256 ? small : malloc((len + 1) * sizeof *best);
    if (!best) {
        rs_tok_emit(sink, m->unk_id);
        return;
    }
    for (size_t i = 0; i <= len; i++) best[i].start = -1;
    best[0].score = 0;
    best[0].start = 0;
    double unk_score = m->min_score - UNK_PENALTY;
    for (size_t s = 0; s < len;) {
        double base = best[s].score;
        size_t mb = char_len((unsigned char)w[s]);
        if (mb > len - s) mb = len - s;
        int single = 0;
        uint32_t nd = 0;
        for (size_t e = s; e < len; e++) {
            nd = child(m, nd, (unsigned char)w[e]);
            if (!nd) break;
            int32_t id = m->node_tok[nd];
            if (id < 0) continue;
            node *t = &best[e + 1];
            double cand = m->score[id] + base;
            if (t->start < 0 || cand > t->score) {
                t->score = cand;
                t->start = (int32_t)s;
                t->id = id;
            }
            if (e + 1 - s == mb) single = 1;
        }
        if (!single) {
            node *t = &best[s + mb];
            double cand = unk_score + base;
            if (t->start < 0 || cand > t->score) {
                t->score = cand;
                t->start = (int32_t)s;
                t->id = m->unk_id;
            }
        }
        s += mb;
    }
    /* back to front into a stack of (start, end) segments, then emit in order */
    size_t n_seg = 0;
    uint32_t seg_small[2 * 128];
    uint32_t *seg = len < 128 ? seg_small : malloc(2 * (len + 1) * sizeof *seg);
    if (!seg) {
        if (best != small) free(best);
        rs_tok_emit(sink, m->unk_id);
        return;
    }
    size_t end = len;
    while (end > 0) {
        const node *nd = &best[end];
        size_t st = (size_t)nd->start;
        if (m->fuse_unk && nd->id == m->unk_id && n_seg && seg[2 * (n_seg - 1) + 1] == UINT32_MAX) {
            seg[2 * (n_seg - 1)] = (uint32_t)st; /* extend the open unknown run leftwards */
        } else {
            seg[2 * n_seg] = (uint32_t)st;
            seg[2 * n_seg + 1] = (m->fuse_unk && nd->id == m->unk_id) ? UINT32_MAX : (uint32_t)end;
            n_seg++;
        }
        end = st;
    }
    /* a fused run's end is the start of the segment after it */
    size_t next_start = len;
    for (size_t k = 0; k < n_seg; k++) {
        if (seg[2 * k + 1] == UINT32_MAX) seg[2 * k + 1] = (uint32_t)next_start;
        next_start = seg[2 * k];
    }
    for (size_t k = n_seg; k-- > 0;) emit_string(m, w, seg[2 * k], seg[2 * k + 1], sink);
    if (seg != seg_small) free(seg);
    if (best != small) free(best);
}

static int32_t ug_token_id(const void *model, const char *tok, size_t len) {
    return rs_tok_vocab_find2(&((const unigram *)model)->vocab, "", 0, tok, len);
}

static const char *ug_id_to_token(const void *model, int32_t id, size_t *len) {
    return rs_tok_vocab_str(&((const unigram *)model)->vocab, id, len);
}

static size_t ug_n_ids(const void *model) { return ((const unigram *)model)->vocab.n_ids; }

static void ug_free(void *model) {
    unigram *m = model;
    if (!m) return;
    rs_tok_vocab_free(&m->vocab);
    free(m->score);
    free(m->node_tok);
    free(m->edge_key);
    free(m->edge_child);
    free(m);
}

const rs_tok_model_ops rs_tok_unigram_ops = {
    .name = "Unigram",
    .encode_word = ug_encode_word,
    .token_id = ug_token_id,
    .n_ids = ug_n_ids,
    .id_to_token = ug_id_to_token,
    .free = ug_free,
};

rs_status rs_tok_unigram_load(const void *json, void **out, rs_err *err) {
    const cJSON *j = json;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(j, "vocab");
    if (!cJSON_IsArray(vocab)) return rs_errf(err, RS_ERR_FORMAT, "Unigram: vocab is not an array");
    size_t n = (size_t)cJSON_GetArraySize(vocab);
    if (!n) return rs_errf(err, RS_ERR_FORMAT, "Unigram: empty vocab");
    unigram *m = calloc(1, sizeof *m);
    const char **key = calloc(n, sizeof *key);
    uint32_t *klen = calloc(n, sizeof *klen);
    rs_status st = RS_OK;
    if (!m || !key || !klen || !(m->score = malloc(n * sizeof *m->score))) {
        st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t id = 0;
    const cJSON *e;
    m->min_score = 1e300;
    cJSON_ArrayForEach(e, vocab) {
        const cJSON *piece = cJSON_GetArrayItem(e, 0), *sc = cJSON_GetArrayItem(e, 1);
        if (!cJSON_IsArray(e) || !cJSON_IsString(piece) || !cJSON_IsNumber(sc)) {
            st = rs_errf(err, RS_ERR_FORMAT, "Unigram: vocab entry %zu is not [piece, score]", id);
            goto done;
        }
        key[id] = piece->valuestring;
        klen[id] = (uint32_t)strlen(piece->valuestring);
        m->score[id] = sc->valuedouble;
        if (sc->valuedouble < m->min_score) m->min_score = sc->valuedouble;
        id++;
    }
    /* a duplicate piece maps to its last id, as in HF's map */
    if ((st = rs_tok_vocab_build(&m->vocab, n, key, klen, err))) goto done;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "unk_id");
    m->unk_id = -1;
    if (cJSON_IsNumber(u)) {
        if (u->valuedouble < 0 || u->valuedouble >= (double)n) {
            st = rs_errf(err, RS_ERR_FORMAT, "Unigram: unk_id out of range");
            goto done;
        }
        m->unk_id = (int32_t)u->valuedouble;
    }
    m->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "byte_fallback"));
    m->fuse_unk = 1; /* HF: Unigram always fuses unknowns */
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_id[b] = m->byte_fallback ? rs_tok_vocab_find2(&m->vocab, "", 0, name, 6) : -1;
    }
    if (m->unk_id < 0) {
        /* HF fails at encode time when it needs unk and has none; we refuse early */
        st = rs_errf(err, RS_ERR_UNSUPPORTED, "Unigram: no unk_id");
        goto done;
    }
    if (build_trie(m)) {
        st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
        goto done;
    }
done:
    free(key);
    free(klen);
    if (st) {
        ug_free(m);
        return st;
    }
    *out = m;
    return RS_OK;
}
