/* csv.c — RFC 4180 reader; see csv.h. */
#include "csv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void rs_csv_init(rs_csv *c, const char *data, size_t len) {
    memset(c, 0, sizeof *c);
    c->data = data;
    c->len = len;
    c->line = 1;
}

void rs_csv_free(rs_csv *c) {
    free(c->buf);
    c->buf = NULL;
    c->cap = 0;
}

rs_status rs_csv_next(rs_csv *c, rs_csv_field *fields, size_t max_fields, size_t *n_fields, rs_err *err) {
    *n_fields = 0;
    if (c->pos >= c->len) return RS_OK;
    /* A record's unescaped text is never longer than its raw bytes, plus one
     * NUL per field: the rest of the input bounds it. */
    const size_t need = c->len - c->pos + max_fields + 1;
    if (need > c->cap) {
        char *nb = realloc(c->buf, need);
        if (!nb) return rs_errf(err, RS_ERR_NOMEM, "csv: out of memory");
        c->buf = nb;
        c->cap = need;
    }
    const size_t start_line = c->line;
    size_t out = 0, nf = 0;
    const char *d = c->data;
    size_t p = c->pos;
    for (;;) { /* one field per iteration */
        if (nf == max_fields)
            return rs_errf(err, RS_ERR_FORMAT, "csv line %zu: more than %zu fields", start_line, max_fields);
        const size_t fstart = out;
        if (p < c->len && d[p] == '"') {
            p++;
            for (;;) {
                if (p >= c->len)
                    return rs_errf(err, RS_ERR_FORMAT, "csv line %zu: unterminated quoted field", start_line);
                if (d[p] == '"') {
                    if (p + 1 < c->len && d[p + 1] == '"') {
                        c->buf[out++] = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (d[p] == '\n') c->line++;
                c->buf[out++] = d[p++];
            }
            if (p < c->len && d[p] != ',' && d[p] != '\n' && !(d[p] == '\r' && p + 1 < c->len && d[p + 1] == '\n') &&
                !(d[p] == '\r' && p + 1 == c->len))
                return rs_errf(err, RS_ERR_FORMAT, "csv line %zu: character after a closing quote", c->line);
        } else {
            while (p < c->len && d[p] != ',' && d[p] != '\n') {
                if (d[p] == '\r' && (p + 1 == c->len || d[p + 1] == '\n')) break;
                if (d[p] == '"')
                    return rs_errf(err, RS_ERR_FORMAT, "csv line %zu: quote inside an unquoted field", c->line);
                c->buf[out++] = d[p++];
            }
        }
        c->buf[out] = '\0';
        fields[nf].len = out - fstart;
        fields[nf].s = c->buf + fstart; /* buf never moves within one call */
        out++;
        nf++;
        if (p < c->len && d[p] == ',') {
            p++;
            continue;
        }
        if (p < c->len && d[p] == '\r') p++;
        if (p < c->len && d[p] == '\n') {
            p++;
            c->line++;
        }
        break;
    }
    c->pos = p;
    *n_fields = nf;
    return RS_OK;
}
