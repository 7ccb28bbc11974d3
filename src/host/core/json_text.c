/* json_text.c — raw JSON text checks before parsing (json_text.h). */
#include "json_text.h"

#include <string.h>

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing past
 * U+10FFFF. Returns the offset of the first bad byte, or len. */
size_t rs_json_utf8_bad_offset(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) need = 2, lo = 0xA0;
        else if (c == 0xED) need = 2, hi = 0x9F;
        else if (c >= 0xE1 && c <= 0xEF) need = 2;
        else if (c == 0xF0) need = 3, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) need = 3, hi = 0x8F;
        else return i;
        if (i + need >= len) return i; /* truncated sequence */
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        i += need + 1;
    }
    return len;
}

/* The value of a "uXXXX" escape body at s (after its backslash), or -1. */
static long hex4_escape(const char *s, size_t n) {
    if (n < 5 || s[0] != 'u') return -1;
    long v = 0;
    for (int i = 1; i <= 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

rs_status rs_json_check_text(const char *line, size_t len, rs_err *err) {
    const char *nul = memchr(line, '\0', len);
    if (nul) return rs_errf(err, RS_ERR_FORMAT, "NUL byte at offset %zu (binary data?)", (size_t)(nul - line));
    size_t bad = rs_json_utf8_bad_offset((const unsigned char *)line, len);
    if (bad != len) return rs_errf(err, RS_ERR_UTF8, "invalid UTF-8 at byte offset %zu", bad);
    /* "\u0000" and lone UTF-16 surrogates ("\ud800" without its low half),
     * which no JSON parser can turn into text, count only when their
     * backslash is not itself escaped. */
    for (const char *p = line; (p = memchr(p, '\\', (size_t)(line + len - p)));) {
        size_t run = 0;
        while (p + run < line + len && p[run] == '\\') run++;
        const char *after = p + run;
        long u = (run & 1) ? hex4_escape(after, (size_t)(line + len - after)) : -1;
        size_t at = (size_t)(after - 1 - line);
        if (u == 0) return rs_errf(err, RS_ERR_FORMAT, "\\u0000 escape at offset %zu (NUL in a string)", at);
        if (u >= 0xD800 && u <= 0xDBFF) {
            long lo = after + 6 < line + len && after[5] == '\\' ? hex4_escape(after + 6, (size_t)(line + len - after - 6)) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF)
                return rs_errf(err, RS_ERR_UTF8,
                               "lone UTF-16 surrogate \\u%04lX at offset %zu (a high surrogate needs a low one "
                               "after it: not a character)", u, at);
            after += 11; /* the pair */
        } else if (u >= 0xDC00 && u <= 0xDFFF) {
            return rs_errf(err, RS_ERR_UTF8,
                           "lone UTF-16 surrogate \\u%04lX at offset %zu (a low surrogate without a high one "
                           "before it: not a character)", u, at);
        }
        p = after;
    }
    return RS_OK;
}
