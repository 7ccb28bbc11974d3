/* tok_bpe.c — BPE as HF `tokenizers` models/bpe, and tiktoken rank files.
 *
 * Byte-level vocabularies (GPT-2 alphabet) are converted to raw bytes at
 * load, so a word is merged straight from its UTF-8 bytes: the ByteLevel
 * pre-tokenizer's byte -> char mapping never runs per call. A tiktoken rank
 * file is the same model with merges implied by the ranks: the pair (a, b)
 * merges, at rank r, when the bytes a ++ b are the token of rank r; every such
 * pair is put in the pair table at load.
 *
 * Merging is the greedy lowest-rank-first, leftmost-on-ties loop of both HF
 * and tiktoken. Short words (the vast majority) use an array scan; long ones a
 * binary heap with HF's lazy invalidation (an entry is stale when the pair at
 * its position no longer yields its merged id). The scan is used only when
 * every merged token comes from exactly one pair, where both give the same
 * result. The model is read-only after load. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

#define SCAN_MAX 64 /* words of up to this many symbols use the array scan */

typedef struct bpe {
    rs_tok_vocab vocab; /* keys: raw bytes (byte_level) or UTF-8 */
    rs_tok_vocab extra; /* byte_level: tokens outside GPT-2's alphabet, by their text */
    uint64_t *pair_key; /* (mask+1) left << 32 | right, UINT64_MAX = empty */
    uint32_t *pair_rank;
    int32_t *pair_new;
    size_t pair_mask;
    int32_t byte_id[256]; /* byte_level: the one-byte tokens; else <0xXX> for byte_fallback (-1: none) */
    int byte_level, ignore_merges, byte_fallback, fuse_unk, scan_ok;
    int32_t unk_id;
} bpe;

static inline uint32_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

/* rank of merging (a, b) and the id it makes; 0 when they do not merge */
static inline int pair_find(const bpe *m, int32_t a, int32_t b, uint32_t *rank, int32_t *new_id) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t s = pair_hash(k) & m->pair_mask;; s = (s + 1) & m->pair_mask) {
        uint64_t e = m->pair_key[s];
        if (e == k) {
            *rank = m->pair_rank[s];
            *new_id = m->pair_new[s];
            return 1;
        }
        if (e == UINT64_MAX) return 0;
    }
}

static rs_status pairs_alloc(bpe *m, size_t n) {
    size_t slots = 16;
    while (slots < n * 2) slots *= 2;
    m->pair_mask = slots - 1;
    m->pair_key = malloc(slots * sizeof *m->pair_key);
    m->pair_rank = malloc(slots * sizeof *m->pair_rank);
    m->pair_new = malloc(slots * sizeof *m->pair_new);
    if (!m->pair_key || !m->pair_rank || !m->pair_new) return RS_ERR_NOMEM;
    memset(m->pair_key, 0xFF, slots * sizeof *m->pair_key);
    return RS_OK;
}

/* inserts or overwrites (HF builds a map from the list: the last one wins) */
static void pair_put(bpe *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t s = pair_hash(k) & m->pair_mask;
    while (m->pair_key[s] != UINT64_MAX && m->pair_key[s] != k) s = (s + 1) & m->pair_mask;
    m->pair_key[s] = k;
    m->pair_rank[s] = rank;
    m->pair_new[s] = new_id;
}

/* ---- merging ---- */

/* Array scan: ids[0..n) merged in place; returns the new count. */
static size_t merge_scan(const bpe *m, int32_t *ids, size_t n) {
    uint32_t rank[SCAN_MAX];
    int32_t nid[SCAN_MAX];
    for (size_t i = 0; i + 1 < n; i++)
        if (!pair_find(m, ids[i], ids[i + 1], &rank[i], &nid[i])) rank[i] = UINT32_MAX;
    while (n > 1) {
        size_t best = 0;
        uint32_t br = rank[0];
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < br) {
                br = rank[i];
                best = i;
            }
        if (br == UINT32_MAX) break;
        ids[best] = nid[best];
        size_t tail = n - best - 2; /* symbols after the removed one */
        memmove(ids + best + 1, ids + best + 2, tail * sizeof *ids);
        if (tail > 1) { /* pairs after the removed one */
            memmove(rank + best + 1, rank + best + 2, (tail - 1) * sizeof *rank);
            memmove(nid + best + 1, nid + best + 2, (tail - 1) * sizeof *nid);
        }
        n--;
        if (best + 1 < n && !pair_find(m, ids[best], ids[best + 1], &rank[best], &nid[best])) rank[best] = UINT32_MAX;
        if (best > 0 && !pair_find(m, ids[best - 1], ids[best], &rank[best - 1], &nid[best - 1]))
            rank[best - 1] = UINT32_MAX;
    }
    return n;
}

typedef struct hnode {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
} hnode;

static inline int h_less(const hnode *a, const hnode *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void h_push(hnode *h, size_t *n, hnode x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!h_less(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static hnode h_pop(hnode *h, size_t *n) {
    hnode top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h_less(&h[c + 1], &h[c])) c++;
        if (!h_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = x;
    return top;
}

/* Heap merge (HF word.rs merge_all): returns the new count, or SIZE_MAX on
 * allocation failure. */
static size_t merge_heap(const bpe *m, int32_t *ids, size_t n) {
    int32_t *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
    hnode *heap = malloc(2 * n * sizeof *heap + sizeof *heap);
    if (!next || !prev || !heap) {
        free(next);
        free(prev);
        free(heap);
        return SIZE_MAX;
    }
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
        hnode e = {.pos = (uint32_t)i};
        if (i + 1 < n && pair_find(m, ids[i], ids[i + 1], &e.rank, &e.new_id)) h_push(heap, &hn, e);
    }
    /* each merge removes a symbol and pushes at most two entries: the heap
     * never outgrows 2n */
    while (hn) {
        hnode top = h_pop(heap, &hn);
        int32_t p = (int32_t)top.pos;
        if (ids[p] < 0 || next[p] < 0) continue;
        int32_t q = next[p];
        uint32_t r;
        int32_t nid;
        if (!pair_find(m, ids[p], ids[q], &r, &nid) || nid != top.new_id) continue;
        ids[p] = nid;
        ids[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        hnode e;
        if (prev[p] >= 0 && pair_find(m, ids[prev[p]], ids[p], &e.rank, &e.new_id)) {
            e.pos = (uint32_t)prev[p];
            h_push(heap, &hn, e);
        }
        if (next[p] >= 0 && pair_find(m, ids[p], ids[next[p]], &e.rank, &e.new_id)) {
            e.pos = (uint32_t)p;
            h_push(heap, &hn, e);
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0) ids[k++] = ids[i];
    free(next);
    free(prev);
    free(heap);
    return k;
}

static void bpe_encode_word(const void *model, const char *w, size_t len, size_t n_chars, rs_tok_sink *sink) {
    const bpe *m = model;
    if (m->ignore_merges) {
        int32_t id = rs_tok_vocab_find2(&m->vocab, "", 0, w, len);
        if (id >= 0) {
            rs_tok_emit(sink, id);
            return;
        }
    }
    size_t cap = m->byte_level ? len : n_chars * 4; /* byte fallback: up to 4 symbols a char */
    int32_t stack[SCAN_MAX];
    int32_t *ids = cap <= SCAN_MAX ? stack : malloc(cap * sizeof *ids);
    if (!ids) {
        rs_tok_emit(sink, m->unk_id >= 0 ? m->unk_id : 0); /* cannot happen in practice; keep counts sane */
        return;
    }
    size_t n = 0;
    if (m->byte_level) {
        int unk_open = 0;
        for (size_t i = 0; i < len; i++) {
            int32_t id = m->byte_id[(unsigned char)w[i]];
            if (id >= 0) {
                ids[n++] = id;
                unk_open = 0;
            } else if (m->unk_id >= 0) { /* a byte without a token: HF's unknown handling */
                if (!(m->fuse_unk && unk_open)) ids[n++] = m->unk_id;
                unk_open = 1;
            }
        }
    } else {
        int unk_open = 0;
        for (size_t i = 0; i < len;) {
            size_t k = 1;
            unsigned char c = (unsigned char)w[i];
            if (c >= 0xF0) k = 4;
            else if (c >= 0xE0) k = 3;
            else if (c >= 0xC0) k = 2;
            int32_t id = rs_tok_vocab_find2(&m->vocab, "", 0, w + i, k);
            if (id >= 0) {
                ids[n++] = id;
                unk_open = 0;
            } else {
                int ok = m->byte_fallback;
                for (size_t j = 0; ok && j < k; j++) ok = m->byte_id[(unsigned char)w[i + j]] >= 0;
                if (ok) {
                    for (size_t j = 0; j < k; j++) ids[n++] = m->byte_id[(unsigned char)w[i + j]];
                    unk_open = 0;
                } else if (m->unk_id >= 0) {
                    if (!(m->fuse_unk && unk_open)) ids[n++] = m->unk_id;
                    unk_open = 1;
                }
            }
            i += k;
        }
    }
    if (n > 1) {
        if (m->scan_ok && n <= SCAN_MAX) {
            n = merge_scan(m, ids, n);
        } else {
            size_t k = merge_heap(m, ids, n);
            if (k != SIZE_MAX) n = k;
        }
    }
    for (size_t i = 0; i < n; i++) rs_tok_emit(sink, ids[i]);
    if (ids != stack) free(ids);
}

/* text -> the vocabulary's key: byte-level tokens become raw bytes; returns
 * the key length, or -1 when a char is outside GPT-2's alphabet */
static long to_bytes(const char *s, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) return -1;
        int b = rs_tok_char_to_byte((uint32_t)c);
        if (b < 0) return -1;
        out[o++] = (char)b;
        i += (size_t)k;
    }
    return (long)o;
}

static int32_t bpe_token_id(const void *model, const char *tok, size_t len) {
    const bpe *m = model;
    if (!m->byte_level) return rs_tok_vocab_find2(&m->vocab, "", 0, tok, len);
    char small[256] = {0};
    char *buf = len <= sizeof small ? small : malloc(len);
    if (!buf) return -1;
    long k = to_bytes(tok, len, buf);
    int32_t id = k >= 0 ? rs_tok_vocab_find2(&m->vocab, "", 0, buf, (size_t)k) : -1;
    if (id < 0 && m->extra.n_keys) id = rs_tok_vocab_find2(&m->extra, "", 0, tok, len);
    if (buf != small) free(buf);
    return id;
}

static const char *bpe_id_to_token(const void *model, int32_t id, size_t *len) {
    const bpe *m = model;
    const char *s = rs_tok_vocab_str(&m->vocab, id, len);
    if (!s && m->extra.n_ids) s = rs_tok_vocab_str(&m->extra, id, len);
    return s;
}

static size_t bpe_n_ids(const void *model) {
    const bpe *m = model;
    return m->vocab.n_ids > m->extra.n_ids ? m->vocab.n_ids : m->extra.n_ids;
}

static void bpe_free(void *model) {
    bpe *m = model;
    if (!m) return;
    rs_tok_vocab_free(&m->vocab);
    rs_tok_vocab_free(&m->extra);
    free(m->pair_key);
    free(m->pair_rank);
    free(m->pair_new);
    free(m);
}

const rs_tok_model_ops rs_tok_bpe_ops = {
    .name = "BPE",
    .encode_word = bpe_encode_word,
    .token_id = bpe_token_id,
    .n_ids = bpe_n_ids,
    .id_to_token = bpe_id_to_token,
    .free = bpe_free,
};

static bpe *bpe_new(void) {
    bpe *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    for (int i = 0; i < 256; i++) m->byte_id[i] = -1;
    m->unk_id = -1;
    return m;
}

/* the one-byte tokens; a rank file must have all of them (tiktoken fails
 * without), a tokenizer.json may lack some (HF: unknown, or dropped) */
static rs_status fill_byte_ids(bpe *m, int need_all, rs_err *err) {
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        m->byte_id[b] = rs_tok_vocab_find2(&m->vocab, "", 0, &c, 1);
        if (m->byte_id[b] < 0 && need_all)
            return rs_errf(err, RS_ERR_FORMAT, "byte-level BPE: no token for byte 0x%02X", b);
    }
    return RS_OK;
}

/* ---- tokenizer.json ---- */

static rs_status load_vocab_json(bpe *m, const cJSON *vocab, rs_err *err) {
    if (!m->byte_level) return rs_tok_vocab_init(&m->vocab, vocab, err);
    if (!cJSON_IsObject(vocab)) return rs_errf(err, RS_ERR_FORMAT, "model.vocab is not an object");
    size_t n_ids = 0, bytes = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 0x7FFFFFFE ||
            e->valuedouble != (double)(int64_t)e->valuedouble)
            return rs_errf(err, RS_ERR_FORMAT, "model.vocab: bad id for token '%.64s'", e->string);
        if ((size_t)e->valuedouble + 1 > n_ids) n_ids = (size_t)e->valuedouble + 1;
        bytes += strlen(e->string);
    }
    const char **key = calloc(n_ids + 1, sizeof *key), **xkey = calloc(n_ids + 1, sizeof *xkey);
    uint32_t *klen = calloc(n_ids + 1, sizeof *klen), *xlen = calloc(n_ids + 1, sizeof *xlen);
    char *arena = malloc(bytes + 1);
    rs_status st = RS_OK;
    if (!key || !xkey || !klen || !xlen || !arena) {
        st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t pos = 0, n_extra = 0;
    cJSON_ArrayForEach(e, vocab) {
        size_t id = (size_t)e->valuedouble, len = strlen(e->string);
        long k = to_bytes(e->string, len, arena + pos);
        if (k < 0) { /* unreachable by byte-level merges: kept for decoding */
            xkey[id] = e->string;
            xlen[id] = (uint32_t)len;
            key[id] = NULL;
            n_extra++;
            continue;
        }
        xkey[id] = NULL;
        key[id] = arena + pos;
        klen[id] = (uint32_t)k;
        pos += (size_t)k;
    }
    st = rs_tok_vocab_build(&m->vocab, n_ids, key, klen, err);
    if (!st && n_extra) st = rs_tok_vocab_build(&m->extra, n_ids, xkey, xlen, err);
done:
    free(key);
    free(xkey);
    free(klen);
    free(xlen);
    free(arena);
    return st;
}

static int32_t lookup_text(const bpe *m, const char *s, size_t len) { return bpe_token_id(m, s, len); }

static rs_status load_merges(bpe *m, const cJSON *merges, rs_err *err) {
    if (!cJSON_IsArray(merges)) return rs_errf(err, RS_ERR_FORMAT, "model.merges is not an array");
    size_t n = (size_t)cJSON_GetArraySize(merges);
    if (pairs_alloc(m, n + 1)) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    /* merged ids seen, to know whether the array scan is exact */
    size_t n_ids = bpe_n_ids(m);
    uint8_t *made = calloc(n_ids + 1, 1);
    char *cat = NULL;
    size_t cat_cap = 0;
    rs_status st = RS_OK;
    if (!made) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    m->scan_ok = 1;
    uint32_t rank = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = rs_errf(err, RS_ERR_FORMAT, "merge '%.64s' is not two tokens", e->valuestring);
                break;
            }
            a = e->valuestring;
            alen = (size_t)(sp - a);
            b = sp + 1;
            blen = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            alen = strlen(a);
            blen = strlen(b);
        } else {
            st = rs_errf(err, RS_ERR_FORMAT, "merge %u is malformed", rank);
            break;
        }
        if (alen + blen > cat_cap) {
            cat_cap = (alen + blen) * 2 + 64;
            char *c = realloc(cat, cat_cap);
            if (!c) {
                st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
                break;
            }
            cat = c;
        }
        memcpy(cat, a, alen);
        memcpy(cat + alen, b, blen);
        int32_t ia = lookup_text(m, a, alen), ib = lookup_text(m, b, blen), in = lookup_text(m, cat, alen + blen);
        if (ia < 0 || ib < 0 || in < 0) {
            st = rs_errf(err, RS_ERR_FORMAT, "merge '%.*s' '%.*s' uses a token missing from the vocabulary",
                         (int)(alen > 64 ? 64 : alen), a, (int)(blen > 64 ? 64 : blen), b);
            break;
        }
        if (made[in]) m->scan_ok = 0;
        made[in] = 1;
        pair_put(m, ia, ib, rank++, in);
    }
    free(made);
    free(cat);
    return st;
}

rs_status rs_tok_bpe_load(const void *json, int byte_level, void **out, rs_err *err) {
    const cJSON *j = json;
    bpe *m = bpe_new();
    if (!m) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    m->byte_level = byte_level;
    rs_status st = RS_OK;
    const cJSON *f;
    const char *unsupported[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        f = cJSON_GetObjectItemCaseSensitive(j, unsupported[i]);
        if (cJSON_IsString(f) && f->valuestring[0]) {
            st = rs_errf(err, RS_ERR_UNSUPPORTED, "BPE: %s is not supported", unsupported[i]);
            goto fail;
        }
    }
    f = cJSON_GetObjectItemCaseSensitive(j, "dropout");
    if (cJSON_IsNumber(f) && f->valuedouble > 0) {
        st = rs_errf(err, RS_ERR_UNSUPPORTED, "BPE: dropout is not supported (not deterministic)");
        goto fail;
    }
    m->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ignore_merges"));
    m->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "byte_fallback"));
    m->fuse_unk = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "fuse_unk"));
    if ((st = load_vocab_json(m, cJSON_GetObjectItemCaseSensitive(j, "vocab"), err))) goto fail;
    f = cJSON_GetObjectItemCaseSensitive(j, "unk_token");
    if (cJSON_IsString(f)) {
        m->unk_id = lookup_text(m, f->valuestring, strlen(f->valuestring));
        if (m->unk_id < 0) {
            st = rs_errf(err, RS_ERR_FORMAT, "BPE: unk_token '%.64s' is not in the vocabulary", f->valuestring);
            goto fail;
        }
    }
    if (byte_level) {
        if ((st = fill_byte_ids(m, 0, err))) goto fail;
    } else if (m->byte_fallback) {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            m->byte_id[b] = rs_tok_vocab_find2(&m->vocab, "", 0, name, 6);
        }
    }
    if ((st = load_merges(m, cJSON_GetObjectItemCaseSensitive(j, "merges"), err))) goto fail;
    *out = m;
    return RS_OK;
fail:
    bpe_free(m);
    return st;
}

/* ---- tiktoken rank files ---- */

long rs_tok_base64_decode(const char *s, size_t len, unsigned char *out) {
    if (len % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = s[i + k];
            int d;
            if (c >= 'A' && c <= 'Z') d = c - 'A';
            else if (c >= 'a' && c <= 'z') d = c - 'a' + 26;
            else if (c >= '0' && c <= '9') d = c - '0' + 52;
            else if (c == '+') d = 62;
            else if (c == '/') d = 63;
            else if (c == '=' && i + 4 == len && k >= 2) {
                d = 0;
                pad++;
            } else return -1;
            if (pad && c != '=') return -1;
            v = v << 6 | (uint32_t)d;
        }
        out[o++] = (unsigned char)(v >> 16);
        if (pad < 2) out[o++] = (unsigned char)(v >> 8);
        if (pad < 1) out[o++] = (unsigned char)v;
    }
    return (long)o;
}

rs_status rs_tok_bpe_load_ranks(const char *text, size_t len, void **out, rs_err *err) {
    /* pass 1: count lines and the largest rank */
    size_t n_lines = 0, n_ids = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        if (e > i) {
            const char *sp = memchr(text + i, ' ', e - i);
            if (!sp) return rs_errf(err, RS_ERR_FORMAT, "rank file line %zu: no space", n_lines + 1);
            char *end;
            unsigned long r = strtoul(sp + 1, &end, 10);
            if (end != text + e || sp + 1 == end || r > 0x7FFFFFFE)
                return rs_errf(err, RS_ERR_FORMAT, "rank file line %zu: bad rank", n_lines + 1);
            if (r + 1 > n_ids) n_ids = r + 1;
            n_lines++;
        }
        i = e + 1;
    }
    if (!n_lines) return rs_errf(err, RS_ERR_FORMAT, "rank file is empty");
    bpe *m = bpe_new();
    const char **key = calloc(n_ids, sizeof *key);
    uint32_t *klen = calloc(n_ids, sizeof *klen);
    unsigned char *arena = malloc(len);
    rs_status st = RS_OK;
    if (!m || !key || !klen || !arena) {
        st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
        goto done;
    }
    m->byte_level = 1;
    m->ignore_merges = 1; /* tiktoken returns a piece that is a token as is */
    m->scan_ok = 1;       /* one rank per token: the scan is exact */
    size_t pos = 0, line = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        if (e > i) {
            line++;
            const char *sp = memchr(text + i, ' ', e - i);
            unsigned long r = strtoul(sp + 1, NULL, 10);
            long k = rs_tok_base64_decode(text + i, (size_t)(sp - text - (long)i), arena + pos);
            if (k <= 0) {
                st = rs_errf(err, RS_ERR_FORMAT, "rank file line %zu: bad base64", line);
                goto done;
            }
            if (key[r]) {
                st = rs_errf(err, RS_ERR_FORMAT, "rank file line %zu: rank %lu used twice", line, r);
                goto done;
            }
            key[r] = (const char *)arena + pos;
            klen[r] = (uint32_t)k;
            pos += (size_t)k;
        }
        i = e + 1;
    }
    if ((st = rs_tok_vocab_build(&m->vocab, n_ids, key, klen, err))) goto done;
    if (m->vocab.n_keys != n_lines) {
        st = rs_errf(err, RS_ERR_FORMAT, "rank file: the same bytes have two ranks");
        goto done;
    }
    if ((st = fill_byte_ids(m, 1, err))) goto done;
    /* every split of every token into two tokens is a merge at its rank */
    size_t n_pairs = 0;
    for (size_t id = 0; id < n_ids; id++)
        if (key[id] && klen[id] > 1) n_pairs += klen[id] - 1;
    if (pairs_alloc(m, n_pairs + 1)) {
        st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t id = 0; id < n_ids; id++) {
        if (!key[id] || klen[id] < 2) continue;
        for (uint32_t s = 1; s < klen[id]; s++) {
            int32_t a = rs_tok_vocab_find2(&m->vocab, "", 0, key[id], s);
            if (a < 0) continue;
            int32_t b = rs_tok_vocab_find2(&m->vocab, "", 0, key[id] + s, klen[id] - s);
            if (b >= 0) pair_put(m, a, b, (uint32_t)id, (int32_t)id);
        }
    }
done:
    free(key);
    free(klen);
    free(arena);
    if (st) {
        bpe_free(m);
        return st;
    }
    *out = m;
    return RS_OK;
}
