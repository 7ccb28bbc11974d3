/* buf.h — a growable, NUL-terminated byte buffer: the line the JSON-lines
 * reader assembles, the CLI's records and scratch strings.
 *
 * Ownership: the caller's; zero-initialise, append, release with
 * rs_buf_free. Thread-compatible. */
#ifndef RS_BUF_H
#define RS_BUF_H

#include <stddef.h>

#include "status.h"

typedef struct rs_buf {
    char *data; /* NUL-terminated after any append; NULL before the first */
    size_t len;
    size_t cap;
} rs_buf;

/* Appends n bytes of s (geometric growth); RS_ERR_NOMEM leaves b as it was. */
rs_status rs_buf_append(rs_buf *b, const char *s, size_t n);
void rs_buf_free(rs_buf *b);

#endif
