/* tok_regex.c — split and replace patterns: known scanners, PCRE2, literals.
 *
 * Byte-level tokenizers split text with GPT-2's or Llama 3's regex. Those
 * two run here as hand-written scanners that follow the regex alternation
 * order exactly, over \p{L}/\p{N} tables frozen from the oracles
 * (tok_regex_tables.c): several times faster than a regex engine, and exact
 * where PCRE2's Unicode tables are older than the oracles'. Any other pattern
 * is compiled with PCRE2 (UTF + UCP, JIT when available) and matched over the
 * UTF-8 of the range; literal patterns are compared code point by code point.
 * Compiled patterns are read-only, so matching is thread-safe (match data is
 * per call). Known gap: PCRE2's Unicode tables (Debian 12: Unicode 14) are
 * older than the oracles' (15.x), so a generic pattern can split differently
 * on characters assigned since; the two known patterns cannot. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

struct rs_tok_pattern {
    int kind;
    int max_digits; /* LLAMA3: \p{N}{1,max_digits} */
    int32_t *lit;   /* LITERAL */
    size_t n_lit;
    pcre2_code *code; /* PCRE2 */
};

static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- GPT-2's byte-level alphabet (bytes_to_unicode), char -> byte ---- */
int rs_tok_char_to_byte(uint32_t c) {
    if ((c >= 33 && c <= 126) || (c >= 161 && c <= 255 && c != 173)) return (int)c;
    if (c >= 256 && c <= 288) return (int)(c - 256);
    if (c >= 289 && c <= 322) return (int)(c - 289 + 127);
    if (c == 323) return 173;
    return -1;
}

/* ---- classes ---- */
static inline unsigned cls(int32_t c) {
    if (c < 0x80) {
        if ((uint32_t)(c | 32) - 'a' < 26u) return RS_TOK_CLASS_L;
        if ((uint32_t)c - '0' < 10u) return RS_TOK_CLASS_N;
        return 0;
    }
    return rs_tok_regex_class((uint32_t)c);
}
static inline int is_l(int32_t c) { return cls(c) & RS_TOK_CLASS_L; }
static inline int is_n(int32_t c) { return (cls(c) & RS_TOK_CLASS_N) != 0; }
static inline int is_ws(int32_t c) { return rs_tok_is_whitespace((uint32_t)c); }
static inline int is_other(int32_t c) { return !is_ws(c) && !(cls(c) & (RS_TOK_CLASS_L | RS_TOK_CLASS_N)); }
static inline int is_crlf(int32_t c) { return c == '\r' || c == '\n'; }

/* (?i) simple case folding for the contraction letters: only ASCII case
 * and U+017F (long s ~ s) fold onto them */
static inline int32_t fold(int32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';
    return c;
}

/* length of a contraction at cps[i] ('s 't 're 've 'm 'll 'd), or 0 */
static size_t contraction(const int32_t *v, size_t i, size_t end, int icase) {
    if (v[i] != '\'' || i + 1 >= end) return 0;
    int32_t a = icase ? fold(v[i + 1]) : v[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= end) return 0;
    int32_t b = icase ? fold(v[i + 2]) : v[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S) | \s+ from i (a whitespace char): the run, less its last char
 * when a non-space follows and the run is longer than one */
static size_t ws_run(const int32_t *v, size_t i, size_t end) {
    size_t j = i;
    while (j < end && is_ws(v[j])) j++;
    if (j < end && j - i > 1) j--;
    return j;
}

static int scan_gpt2(const int32_t *v, size_t start, size_t end, rs_tok_match_fn fn, void *ctx) {
    size_t i = start;
    while (i < end) {
        size_t j, k = contraction(v, i, end, 0);
        if (k) {
            j = i + k;
        } else {
            size_t off = (v[i] == ' ' && i + 1 < end) ? 1 : 0;
            int32_t d = v[i + off];
            unsigned c = cls(d);
            if (c & RS_TOK_CLASS_L) {
                j = i + off + 1;
                while (j < end && is_l(v[j])) j++;
            } else if (c & RS_TOK_CLASS_N) {
                j = i + off + 1;
                while (j < end && is_n(v[j])) j++;
            } else if (!is_ws(d)) {
                j = i + off + 1;
                while (j < end && is_other(v[j])) j++;
            } else {
                j = ws_run(v, i, end);
            }
        }
        if (fn(ctx, i, j)) return 1;
        i = j;
    }
    return 0;
}

static int scan_llama3(const int32_t *v, size_t start, size_t end, int max_digits, rs_tok_match_fn fn, void *ctx) {
    size_t i = start;
    while (i < end) {
        int32_t c = v[i];
        size_t j, k = contraction(v, i, end, 1);
        if (k) {
            j = i + k;
        } else if (is_l(c)) { /* [^\r\n\p{L}\p{N}]?\p{L}+ with the option empty */
            j = i + 1;
            while (j < end && is_l(v[j])) j++;
        } else if (!is_crlf(c) && !is_n(c) && i + 1 < end && is_l(v[i + 1])) {
            j = i + 2;
            while (j < end && is_l(v[j])) j++;
        } else if (is_n(c)) { /* \p{N}{1,3} */
            j = i + 1;
            while (j < end && j - i < (size_t)max_digits && is_n(v[j])) j++;
        } else {
            size_t off = (c == ' ' && i + 1 < end) ? 1 : 0;
            if (is_other(v[i + off])) { /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
                j = i + off + 1;
                while (j < end && is_other(v[j])) j++;
                while (j < end && is_crlf(v[j])) j++;
            } else { /* c is whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+ */
                size_t last_nl = 0;
                j = i;
                while (j < end && is_ws(v[j])) {
                    if (is_crlf(v[j])) last_nl = j + 1;
                    j++;
                }
                if (last_nl) j = last_nl;
                else j = ws_run(v, i, end);
            }
        }
        if (fn(ctx, i, j)) return 1;
        i = j;
    }
    return 0;
}

/* " {2,}": runs of two or more U+0020 */
static int scan_spaces2(const int32_t *v, size_t start, size_t end, rs_tok_match_fn fn, void *ctx) {
    size_t i = start;
    while (i < end) {
        if (v[i] != ' ') {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < end && v[j] == ' ') j++;
        if (j - i >= 2 && fn(ctx, i, j)) return 1;
        i = j;
    }
    return 0;
}

static int find_literal(const rs_tok_pattern *p, const int32_t *v, size_t start, size_t end, rs_tok_match_fn fn,
                        void *ctx) {
    if (!p->n_lit) return 0;
    size_t i = start;
    while (i + p->n_lit <= end) {
        if (v[i] == p->lit[0] && !memcmp(v + i, p->lit, p->n_lit * sizeof *v)) {
            if (fn(ctx, i, i + p->n_lit)) return 1;
            i += p->n_lit;
        } else {
            i++;
        }
    }
    return 0;
}

/* PCRE2 over the UTF-8 of v[start..end); byte offsets are walked back to
 * code-point indices as matches arrive in order. */
static int find_pcre2(const rs_tok_pattern *p, const int32_t *v, size_t start, size_t end, rs_tok_match_fn fn,
                      void *ctx) {
    size_t n = end - start;
    unsigned char *buf = malloc(n * 4 + 1);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->code, NULL);
    if (!buf || !md) {
        free(buf);
        pcre2_match_data_free(md);
        return -1;
    }
    size_t len = 0;
    for (size_t i = start; i < end; i++) len += (size_t)utf8proc_encode_char(v[i], buf + len);
    size_t off = 0, cur_b = 0, cur_c = start; /* byte cur_b is code point cur_c */
    int r = 0;
    while (off <= len) {
        int rc = pcre2_match(p->code, buf, len, off, 0, md, NULL);
        if (rc < 0) break; /* no match (or a matching limit: treat as none) */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: skip one character */
            if (ms >= len) break;
            off = ms + 1;
            while (off < len && (buf[off] & 0xC0) == 0x80) off++;
            continue;
        }
        while (cur_b < ms) {
            cur_b += (size_t)utf8proc_utf8class[buf[cur_b]] > 0 ? (size_t)utf8proc_utf8class[buf[cur_b]] : 1;
            cur_c++;
        }
        size_t cs = cur_c;
        while (cur_b < me) {
            cur_b += (size_t)utf8proc_utf8class[buf[cur_b]] > 0 ? (size_t)utf8proc_utf8class[buf[cur_b]] : 1;
            cur_c++;
        }
        if ((r = fn(ctx, cs, cur_c))) break;
        off = me;
    }
    pcre2_match_data_free(md);
    free(buf);
    return r;
}

int rs_tok_pattern_find(const rs_tok_pattern *p, const int32_t *cps, size_t start, size_t end, rs_tok_match_fn fn,
                        void *ctx) {
    switch (p->kind) {
    case RS_TOK_PAT_GPT2:
        return scan_gpt2(cps, start, end, fn, ctx);
    case RS_TOK_PAT_LLAMA3:
        return scan_llama3(cps, start, end, p->max_digits, fn, ctx);
    case RS_TOK_PAT_SPACES2:
        return scan_spaces2(cps, start, end, fn, ctx);
    case RS_TOK_PAT_LITERAL:
        return find_literal(p, cps, start, end, fn, ctx);
    default:
        return find_pcre2(p, cps, start, end, fn, ctx);
    }
}

int rs_tok_pattern_kind(const rs_tok_pattern *p) { return p->kind; }

rs_status rs_tok_pattern_known(int which, rs_tok_pattern **out) {
    rs_tok_pattern *p = calloc(1, sizeof *p);
    if (!p) return RS_ERR_NOMEM;
    p->kind = which;
    p->max_digits = 3;
    *out = p;
    return RS_OK;
}

/* HF's regexes are Oniguruma's, whose Unicode word class is Alphabetic, marks,
 * all numbers and connector punctuation (probed from HF), where PCRE2's is
 * letters, decimal digits and '_': the word escapes are spelled out before
 * compiling (inside a class only the positive one; the negated one there and
 * word boundaries keep PCRE2's meaning). Returns a malloc'd pattern or NULL. */
static char *onig_classes(const char *re) {
    static const char W_IN[] = "\\p{Alphabetic}\\p{M}\\p{N}\\p{Pc}";
    size_t len = strlen(re), cap = len * 8 + 64, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    int in_class = 0;
    for (size_t i = 0; i < len; i++) {
        char c = re[i];
        if (c == '\\' && i + 1 < len) {
            char d = re[i + 1];
            if (d == 'w' || (d == 'W' && !in_class)) {
                if (!in_class) out[o++] = '[';
                if (d == 'W') out[o++] = '^';
                memcpy(out + o, W_IN, sizeof W_IN - 1);
                o += sizeof W_IN - 1;
                if (!in_class) out[o++] = ']';
            } else {
                out[o++] = c;
                out[o++] = d;
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            out[o++] = c;
            if (i + 1 < len && re[i + 1] == '^') out[o++] = re[++i];
            if (i + 1 < len && re[i + 1] == ']') out[o++] = re[++i]; /* a leading ] is literal */
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        out[o++] = c;
    }
    out[o] = 0;
    return out;
}

rs_status rs_tok_pattern_regex(const char *re, rs_tok_pattern **out, rs_err *err) {
    *out = NULL;
    if (!strcmp(re, GPT2_RE)) return rs_tok_pattern_known(RS_TOK_PAT_GPT2, out);
    if (!strcmp(re, LLAMA3_RE) || !strcmp(re, QWEN2_RE)) {
        rs_status st = rs_tok_pattern_known(RS_TOK_PAT_LLAMA3, out);
        if (!st && !strcmp(re, QWEN2_RE)) (*out)->max_digits = 1;
        return st;
    }
    if (!strcmp(re, " {2,}")) return rs_tok_pattern_known(RS_TOK_PAT_SPACES2, out);
    int ec;
    PCRE2_SIZE eo;
    char *onig = onig_classes(re);
    if (!onig) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)onig, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    free(onig);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return rs_errf(err, RS_ERR_UNSUPPORTED, "regex '%.100s' does not compile at offset %zu: %s", re, (size_t)eo,
                       (const char *)msg);
    }
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* without JIT it still matches, slower */
    rs_tok_pattern *p = calloc(1, sizeof *p);
    if (!p) {
        pcre2_code_free(code);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    }
    p->kind = RS_TOK_PAT_PCRE2;
    p->code = code;
    *out = p;
    return RS_OK;
}

rs_status rs_tok_pattern_literal(const char *s, rs_tok_pattern **out, rs_err *err) {
    *out = NULL;
    size_t len = strlen(s);
    rs_tok_pattern *p = calloc(1, sizeof *p);
    int32_t *lit = malloc((len + 1) * sizeof *lit);
    if (!p || !lit) {
        free(p);
        free(lit);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    }
    utf8proc_ssize_t n = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, lit,
                                            (utf8proc_ssize_t)len + 1, 0);
    if (n < 0) {
        free(p);
        free(lit);
        return rs_errf(err, RS_ERR_FORMAT, "pattern '%.64s' is not valid UTF-8", s);
    }
    p->kind = RS_TOK_PAT_LITERAL;
    p->lit = lit;
    p->n_lit = (size_t)n;
    *out = p;
    return RS_OK;
}

void rs_tok_pattern_free(rs_tok_pattern *p) {
    if (!p) return;
    if (p->code) pcre2_code_free(p->code);
    free(p->lit);
    free(p);
}
