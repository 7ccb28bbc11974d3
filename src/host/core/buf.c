/* buf.c — see buf.h. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

rs_status rs_buf_append(rs_buf *b, const char *s, size_t n) {
    if (n > (size_t)-1 - b->len - 1) return RS_ERR_NOMEM;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap = cap > (size_t)-1 / 2 ? b->len + n + 1 : cap * 2;
        char *d = realloc(b->data, cap);
        if (!d) return RS_ERR_NOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return RS_OK;
}

void rs_buf_free(rs_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
