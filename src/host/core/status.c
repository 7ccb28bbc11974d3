/* status.c — names for rs_status and the rs_errf helper. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *rs_status_str(rs_status st) {
    switch (st) {
    case RS_OK: return "ok";
    case RS_ERR_INVALID_ARG: return "invalid argument";
    case RS_ERR_IO: return "i/o error";
    case RS_ERR_FORMAT: return "malformed input";
    case RS_ERR_UNSUPPORTED: return "unsupported";
    case RS_ERR_NOT_FOUND: return "not found";
    case RS_ERR_NOMEM: return "out of memory";
    case RS_ERR_UTF8: return "invalid utf-8";
    case RS_ERR_TOO_LARGE: return "too large";
    case RS_ERR_BACKEND: return "backend failure";
    case RS_ERR_INTERNAL: return "internal error";
    case RS_STATUS_COUNT: break;
    }
    return "unknown status";
}

rs_status rs_errf(rs_err *err, rs_status st, const char *fmt, ...) {
    if (err) {
        /* Via a copy: callers may pass err->msg itself as an argument, to
         * prefix context to an error ("router 'x': %s", err->msg). */
        char buf[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        memcpy(err->msg, buf, sizeof buf);
    }
    return st;
}
