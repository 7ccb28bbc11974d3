/* status.h — the one error vocabulary of routescore.
 *
 * Every fallible function returns an rs_status and writes its results through
 * out-pointers. A human-readable message, when there is one, goes into an
 * rs_err the caller owns (no globals, no errno games). The server maps
 * rs_status to a gRPC code in exactly one place (src/server/). */
#ifndef RS_STATUS_H
#define RS_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rs_status {
    RS_OK = 0,
    RS_ERR_INVALID_ARG,  /* the caller's input is wrong (bad flag, empty prompt) */
    RS_ERR_IO,           /* open/read/write/mmap failed */
    RS_ERR_FORMAT,       /* a file is malformed (safetensors, JSON, config) */
    RS_ERR_UNSUPPORTED,  /* well-formed but not something we implement */
    RS_ERR_NOT_FOUND,    /* a named thing (tensor, file, field) is missing */
    RS_ERR_NOMEM,        /* allocation failed */
    RS_ERR_UTF8,         /* text is not valid UTF-8 */
    RS_ERR_TOO_LARGE,    /* input exceeds a configured bound */
    RS_ERR_BACKEND,      /* the compute backend failed */
    RS_ERR_INTERNAL,     /* a broken invariant: a bug */
    RS_STATUS_COUNT
} rs_status;

const char *rs_status_str(rs_status st);

/* Error detail owned by the caller; functions fill msg when they fail. */
typedef struct rs_err {
    char msg[512];
} rs_err;

/* Formats msg into err (if err is non-NULL) and returns st, so call sites read
 *   return rs_errf(err, RS_ERR_FORMAT, "%s: bad header", path);
 * err->msg may itself be an argument (to add context to an error). */
rs_status rs_errf(rs_err *err, rs_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
