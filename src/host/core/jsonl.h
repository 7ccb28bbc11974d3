/* jsonl.h — a JSON-lines reader: plain or gzip input (detected from the
 * bytes; "-" is stdin), any line length up to a bound, and one bad line
 * (too long, NUL bytes, invalid UTF-8, not JSON) never ends the input. The
 * CLI's prompt files and the sw_ranking router's battles read through it.
 *
 * Ownership: the reader owns its line buffer (valid until the next call).
 * No global state: distinct readers on distinct threads are fine. */
#ifndef RS_JSONL_H
#define RS_JSONL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "status.h"

/* Lines longer than this are bad lines (RS_ERR_TOO_LARGE) instead of being
 * buffered: it bounds memory whatever the input holds. */
#define RS_JSONL_MAX_LINE (16u << 20)

typedef struct rs_jsonl rs_jsonl;

/* path "-" reads stdin. max_line 0 means RS_JSONL_MAX_LINE. */
rs_status rs_jsonl_open(const char *path, size_t max_line, rs_jsonl **out, rs_err *err);
void rs_jsonl_close(rs_jsonl *r);

/* Reads the next line into *line (without its "\n" or "\r\n"; NUL-terminated;
 * owned by the reader, valid until the next call) and *len. *line_no is its
 * 1-based physical line number. At end of input returns RS_OK with
 * *line == NULL. A final line without "\n" is still a line.
 * Per-line problems are not fatal: a line longer than max_line returns
 * RS_ERR_TOO_LARGE (the line is consumed, *line == NULL, *line_no set) and the
 * next call continues with the following line. Only I/O and decompression
 * errors (RS_ERR_IO, RS_ERR_FORMAT for a corrupt gzip stream) end the input. */
rs_status rs_jsonl_next(rs_jsonl *r, const char **line, size_t *len, uint64_t *line_no,
                             rs_err *err);

/* The next non-blank line, checked (rs_json_check_text) and parsed as JSON;
 * the caller owns *json (cJSON_Delete). RS_OK with *json NULL at end of
 * input. A line that is no record (too long, NUL bytes, invalid UTF-8, not
 * JSON) fails with *bad_line = 1 and err saying why: the caller reports it
 * and calls again. Other failures (I/O, a corrupt gzip stream, memory) end
 * the input, with *bad_line = 0. *line_no is the line's 1-based number. */
rs_status rs_jsonl_next_json(rs_jsonl *r, cJSON **json, uint64_t *line_no, int *bad_line, rs_err *err);

/* The first bytes of the (decompressed) input, without consuming them: up to
 * one read chunk (256 KiB), fewer only at end of input. For sniffing the
 * format before the first line is taken. Call before rs_jsonl_next. */
rs_status rs_jsonl_peek(rs_jsonl *r, const char **data, size_t *len, rs_err *err);

/* 1 when the input is gzip-compressed (known after open). */
int rs_jsonl_is_gzip(const rs_jsonl *r);

/* Counts "\n"-terminated lines (plus a final unterminated one) of a plain
 * file by a fast raw scan, for progress totals. RS_ERR_UNSUPPORTED for gzip
 * input or a non-regular file (stdin, pipes): callers show no total then. */
rs_status rs_jsonl_count_lines(const char *path, uint64_t *n, rs_err *err);

/* 1 when the line holds nothing but ASCII whitespace. Such lines are not
 * records: the subcommands skip them (they keep their line numbers). */
int rs_jsonl_line_is_blank(const char *line, size_t len);

#endif
