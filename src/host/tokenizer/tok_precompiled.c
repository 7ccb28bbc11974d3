/* tok_precompiled.c — SentencePiece's compiled normalisation map (Precompiled).
 *
 * The blob (base64 in tokenizer.json) is: u32 little-endian trie size in
 * bytes, the trie (a Darts double array of u32 units), then NUL-terminated
 * replacement strings. HF's normalizer (spm_precompiled), which we follow
 * exactly: for each extended grapheme cluster shorter than 6 bytes, if some
 * key is a prefix of it, the whole cluster becomes the replacement of the
 * shortest such key; otherwise each character is looked up on its own and
 * replaced or kept. Every read of the trie and the strings is bounds-checked
 * (a corrupt map normalises nothing rather than reading out of bounds).
 * Grapheme clusters come from utf8proc. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

struct rs_tok_precompiled {
    uint32_t *units;
    size_t n_units;
    char *strings; /* NUL-terminated replacements */
    size_t n_strings;
    /* single ASCII chars, precomputed: -1 keep, else offset into strings */
    int32_t ascii[128];
};

static inline uint32_t u_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }
static inline uint32_t u_label(uint32_t u) { return u & ((1u << 31) | 0xFF); }
static inline int u_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t u_value(uint32_t u) { return u & ((1u << 31) - 1); }

/* value of the shortest key that is a prefix of key[0..len), or -1 */
static long first_prefix(const rs_tok_precompiled *pc, const unsigned char *key, size_t len) {
    if (!pc->n_units) return -1;
    size_t pos = 0;
    uint32_t u = pc->units[0];
    pos ^= u_offset(u);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = key[i];
        if (c == 0) return -1;
        pos ^= c;
        if (pos >= pc->n_units) return -1;
        u = pc->units[pos];
        if (u_label(u) != c) return -1;
        pos ^= u_offset(u);
        if (u_has_leaf(u)) {
            if (pos >= pc->n_units) return -1;
            uint32_t v = u_value(pc->units[pos]);
            return v < pc->n_strings ? (long)v : -1;
        }
    }
    return -1;
}

static rs_status append_str(rs_tok_cps *out, const char *s) {
    size_t len = strlen(s);
    if (rs_tok_cps_reserve(out, out->n + len + 1)) return RS_ERR_NOMEM;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) return RS_OK; /* validated at load; stop rather than loop */
        out->v[out->n++] = c;
        i += (size_t)k;
    }
    return RS_OK;
}

rs_status rs_tok_precompiled_apply(const rs_tok_precompiled *pc, const rs_tok_cps *in, rs_tok_cps *out) {
    out->n = 0;
    if (rs_tok_cps_reserve(out, in->n + 16)) return RS_ERR_NOMEM;
    const int32_t *v = in->v;
    size_t n = in->n, i = 0;
    unsigned char buf[8];
    while (i < n) {
        int32_t c = v[i];
        /* an ASCII char followed by ASCII (not CR LF) is a cluster of its own */
        if (c < 0x80 && (i + 1 == n || (v[i + 1] < 0x80 && !(c == '\r' && v[i + 1] == '\n')))) {
            if (pc->ascii[c] < 0) {
                if (out->n + 1 > out->cap && rs_tok_cps_reserve(out, out->n + 1 + (n - i))) return RS_ERR_NOMEM;
                out->v[out->n++] = c;
            } else if (append_str(out, pc->strings + pc->ascii[c])) {
                return RS_ERR_NOMEM;
            }
            i++;
            continue;
        }
        /* the extended grapheme cluster at i */
        size_t j = i + 1;
        utf8proc_int32_t state = 0;
        while (j < n && !utf8proc_grapheme_break_stateful(v[j - 1], v[j], &state)) j++;
        size_t blen = 0;
        for (size_t k = i; k < j; k++) blen += v[k] < 0x80 ? 1 : v[k] < 0x800 ? 2 : v[k] < 0x10000 ? 3 : 4;
        if (blen < 6) {
            size_t o = 0;
            for (size_t k = i; k < j; k++) o += (size_t)utf8proc_encode_char(v[k], buf + o);
            long r = first_prefix(pc, buf, o);
            if (r >= 0) {
                if (append_str(out, pc->strings + r)) return RS_ERR_NOMEM;
                i = j;
                continue;
            }
        }
        for (size_t k = i; k < j; k++) {
            size_t o = (size_t)utf8proc_encode_char(v[k], buf);
            long r = first_prefix(pc, buf, o);
            if (r >= 0) {
                if (append_str(out, pc->strings + r)) return RS_ERR_NOMEM;
            } else {
                if (rs_tok_cps_reserve(out, out->n + 1 + (n - k))) return RS_ERR_NOMEM;
                out->v[out->n++] = v[k];
            }
        }
        i = j;
    }
    return RS_OK;
}

void rs_tok_precompiled_free(rs_tok_precompiled *pc) {
    if (!pc) return;
    free(pc->units);
    free(pc->strings);
    free(pc);
}

rs_status rs_tok_precompiled_load(const char *b64, rs_tok_precompiled **out, rs_err *err) {
    *out = NULL;
    size_t len = strlen(b64);
    unsigned char *raw = malloc(len / 4 * 3 + 4);
    rs_tok_precompiled *pc = calloc(1, sizeof *pc);
    if (!raw || !pc) {
        free(raw);
        free(pc);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    }
    long n = rs_tok_base64_decode(b64, len, raw);
    rs_status st = RS_OK;
    if (n < 4) {
        st = rs_errf(err, RS_ERR_FORMAT, "Precompiled: precompiled_charsmap is not base64 of a charsmap");
        goto fail;
    }
    uint32_t trie_size = (uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 24;
    if (trie_size % 4 || (size_t)trie_size > (size_t)n - 4) {
        st = rs_errf(err, RS_ERR_FORMAT, "Precompiled: trie size %u does not fit the %ld-byte charsmap", trie_size, n);
        goto fail;
    }
    pc->n_units = trie_size / 4;
    pc->n_strings = (size_t)n - 4 - trie_size;
    pc->units = malloc(pc->n_units * sizeof *pc->units + 4);
    pc->strings = malloc(pc->n_strings + 1);
    if (!pc->units || !pc->strings) {
        st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < pc->n_units; i++) {
        const unsigned char *p = raw + 4 + 4 * i;
        pc->units[i] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
    memcpy(pc->strings, raw + 4 + trie_size, pc->n_strings);
    pc->strings[pc->n_strings] = 0; /* every replacement ends by the end of the blob */
    /* HF refuses a replacement pool that is not UTF-8 */
    for (size_t i = 0; i < pc->n_strings;) {
        if (!pc->strings[i]) {
            i++;
            continue;
        }
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)pc->strings + i,
                                              (utf8proc_ssize_t)(pc->n_strings - i), &c);
        if (k <= 0) {
            st = rs_errf(err, RS_ERR_FORMAT, "Precompiled: replacement strings are not UTF-8");
            goto fail;
        }
        i += (size_t)k;
    }
    for (int c = 0; c < 128; c++) {
        unsigned char b = (unsigned char)c;
        pc->ascii[c] = (int32_t)first_prefix(pc, &b, 1);
    }
    free(raw);
    *out = pc;
    return RS_OK;
fail:
    free(raw);
    rs_tok_precompiled_free(pc);
    return st;
}
