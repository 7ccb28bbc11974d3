/* tok_cps.c — the code-point buffer (rs_tok_cps) every tokenizer stage
 * grows: normalizers, the SentencePiece precompiled map, pre-tokenizers and
 * the pipeline. In a file of its own so the stages depend on it, not on each
 * other. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

rs_status rs_tok_cps_reserve(rs_tok_cps *b, size_t need) {
    if (need <= b->cap) return RS_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    int32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v) return RS_ERR_NOMEM;
    b->v = v;
    b->cap = cap;
    return RS_OK;
}

/* Input is already validated, so this is a plain decoder. */
rs_status rs_tok_cps_from_utf8(const char *s, size_t len, rs_tok_cps *out) {
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

size_t rs_tok_utf8_invalid_at(const char *s, size_t len) {
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
