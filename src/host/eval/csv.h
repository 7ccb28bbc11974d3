/* csv.h — a small RFC 4180 reader for the benchmark label files (MMLU and
 * GSM8K responses): comma-separated fields, double-quoted fields that may hold
 * commas, newlines (LF or CRLF) and doubled quotes (""), records ended by LF
 * or CRLF, a last record without a newline. Works on a buffer the caller owns
 * (a whole file read into memory); never reads outside [data, data + len).
 *
 * Ownership: rs_csv_next fills a caller-provided array of field views that
 * point into the reader's own unescape buffer, valid until the next call. */
#ifndef RS_CSV_H
#define RS_CSV_H

#include <stddef.h>

#include "status.h"

typedef struct rs_csv_field {
    const char *s; /* NUL-terminated copy, quotes removed and "" unescaped */
    size_t len;
} rs_csv_field;

typedef struct rs_csv {
    const char *data;
    size_t len, pos;
    size_t line; /* 1-based physical line where the next record starts */
    char *buf;   /* unescaped fields, back to back, each NUL-terminated */
    size_t cap;
} rs_csv;

void rs_csv_init(rs_csv *c, const char *data, size_t len);
void rs_csv_free(rs_csv *c);

/* Reads the next record into fields[0 .. max_fields) and *n_fields. At end of
 * input returns RS_OK with *n_fields == 0. RS_ERR_FORMAT (with the line) for
 * an unterminated quoted field, a stray character after a closing quote, or
 * more than max_fields fields. */
rs_status rs_csv_next(rs_csv *c, rs_csv_field *fields, size_t max_fields, size_t *n_fields, rs_err *err);

#endif
