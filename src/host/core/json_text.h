/* json_text.h — checks on raw JSON text, shared by the CLI's JSON-lines
 * reader and the server's HTTP bodies. Pure functions, thread-safe. */
#ifndef RS_JSON_TEXT_H
#define RS_JSON_TEXT_H

#include <stddef.h>

#include "status.h"

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing past
 * U+10FFFF. Returns the offset of the first bad byte, or len. */
size_t rs_json_utf8_bad_offset(const unsigned char *s, size_t len);

/* Checks raw JSON text (a JSON-lines record, an HTTP body) before it is parsed: no NUL bytes (binary data), no
 * "\u0000" escape (cJSON would decode it to a NUL and cut the string there),
 * valid UTF-8, no lone UTF-16 surrogate escape ("\ud800" unpaired: cJSON
 * refuses the line, and the message should say why). RS_ERR_FORMAT /
 * RS_ERR_UTF8 with a message naming the cause and the byte offset. */
rs_status rs_json_check_text(const char *line, size_t len, rs_err *err);

#endif
