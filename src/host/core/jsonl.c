/* jsonl.c — the bounded JSON-lines reader over zlib (jsonl.h). */
#include "jsonl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "buf.h"
#include "json_text.h"

/* Reading through gzread makes plain and gzip input one code path: zlib
 * passes non-gzip bytes through unchanged. Lines are assembled from a fixed
 * chunk into a line buffer that never grows past max_line + 1, so a huge or
 * newline-free input costs bounded memory. */
#define JSONL_CHUNK (256u << 10)

struct rs_jsonl {
    gzFile gz;
    char *path;
    size_t max_line;
    char *chunk; /* [JSONL_CHUNK] */
    size_t cpos, clen;
    int eof;
    rs_buf line; /* the line being assembled */
    uint64_t line_no;
    int is_gzip;
};

rs_status rs_jsonl_open(const char *path, size_t max_line, rs_jsonl **out, rs_err *err) {
    *out = NULL;
    rs_jsonl *r = calloc(1, sizeof *r);
    if (!r) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    r->max_line = max_line ? max_line : RS_JSONL_MAX_LINE;
    r->chunk = malloc(JSONL_CHUNK);
    r->path = strdup(path);
    if (!r->chunk || !r->path) {
        rs_jsonl_close(r);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    }
    if (!strcmp(path, "-")) {
        int fd = dup(STDIN_FILENO);
        r->gz = fd >= 0 ? gzdopen(fd, "rb") : NULL;
        if (!r->gz && fd >= 0) close(fd);
    } else {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            rs_jsonl_close(r);
            return rs_errf(err, RS_ERR_IO, "%s: is a directory", path);
        }
        r->gz = gzopen(path, "rb");
    }
    if (!r->gz) {
        int e = errno;
        rs_jsonl_close(r);
        return rs_errf(err, RS_ERR_IO, "%s: cannot open: %s", path, e ? strerror(e) : "out of memory");
    }
    gzbuffer(r->gz, 128u << 10);
    /* gzdirect right after open peeks at the header; 0 means compressed. */
    r->is_gzip = gzdirect(r->gz) == 0;
    *out = r;
    return RS_OK;
}

void rs_jsonl_close(rs_jsonl *r) {
    if (!r) return;
    if (r->gz) gzclose(r->gz);
    free(r->chunk);
    free(r->path);
    rs_buf_free(&r->line);
    free(r);
}

int rs_jsonl_is_gzip(const rs_jsonl *r) { return r->is_gzip; }

static rs_status jsonl_fill(rs_jsonl *r, rs_err *err);

rs_status rs_jsonl_peek(rs_jsonl *r, const char **data, size_t *len, rs_err *err) {
    if (r->cpos == r->clen && !r->eof) {
        rs_status st = jsonl_fill(r, err);
        if (st != RS_OK) return st;
    }
    *data = r->chunk + r->cpos;
    *len = r->clen - r->cpos;
    return RS_OK;
}

static rs_status jsonl_fill(rs_jsonl *r, rs_err *err) {
    int got = gzread(r->gz, r->chunk, JSONL_CHUNK);
    if (got < 0) {
        int code = 0;
        const char *msg = gzerror(r->gz, &code);
        return rs_errf(err, code == Z_ERRNO ? RS_ERR_IO : RS_ERR_FORMAT, "%s: read failed: %s", r->path,
                       code == Z_ERRNO ? strerror(errno) : msg);
    }
    r->cpos = 0;
    r->clen = (size_t)got;
    if (got == 0) {
        /* A truncated gzip stream reads as a short EOF; gzerror tells. */
        int code = 0;
        const char *msg = gzerror(r->gz, &code);
        if (code != Z_OK && code != Z_STREAM_END)
            return rs_errf(err, RS_ERR_FORMAT, "%s: %s", r->path, msg);
        r->eof = 1;
    }
    return RS_OK;
}

rs_status rs_jsonl_next(rs_jsonl *r, const char **line, size_t *len, uint64_t *line_no,
                             rs_err *err) {
    *line = NULL;
    *len = 0;
    r->line.len = 0;
    int too_long = 0, any = 0;
    for (;;) {
        if (r->cpos == r->clen) {
            if (r->eof) break;
            rs_status st = jsonl_fill(r, err);
            if (st != RS_OK) return st;
            if (r->eof) break;
        }
        const char *start = r->chunk + r->cpos;
        size_t avail = r->clen - r->cpos;
        const char *nl = memchr(start, '\n', avail);
        size_t take = nl ? (size_t)(nl - start) : avail;
        any = 1;
        if (!too_long) {
            if (r->line.len + take > r->max_line) {
                too_long = 1; /* keep consuming to the newline, store nothing */
            } else {
                rs_status st = rs_buf_append(&r->line, start, take);
                if (st != RS_OK) return rs_errf(err, st, "out of memory reading %s", r->path);
            }
        }
        r->cpos += take + (nl ? 1 : 0);
        if (nl) goto got_line;
    }
    if (!any) return RS_OK; /* end of input */
got_line:
    r->line_no++;
    *line_no = r->line_no;
    if (too_long) {
        r->line.len = 0;
        return rs_errf(err, RS_ERR_TOO_LARGE, "line is longer than %zu bytes", r->max_line);
    }
    if (!r->line.data) {
        rs_status st = rs_buf_append(&r->line, "", 0);
        if (st != RS_OK) return rs_errf(err, st, "out of memory");
    }
    if (r->line.len && r->line.data[r->line.len - 1] == '\r') r->line.data[--r->line.len] = '\0';
    *line = r->line.data;
    *len = r->line.len;
    return RS_OK;
}

rs_status rs_jsonl_count_lines(const char *path, uint64_t *n, rs_err *err) {
    *n = 0;
    if (!strcmp(path, "-")) return rs_errf(err, RS_ERR_UNSUPPORTED, "stdin: not counted");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rs_errf(err, RS_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s: not a regular file", path);
    }
    enum { BUF = 1 << 20 };
    char *buf = malloc(BUF);
    if (!buf) {
        close(fd);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    }
    uint64_t lines = 0;
    char last = '\n';
    int first = 1;
    rs_status st = RS_OK;
    for (;;) {
        ssize_t k = read(fd, buf, BUF);
        if (k < 0) {
            if (errno == EINTR) continue;
            st = rs_errf(err, RS_ERR_IO, "%s: %s", path, strerror(errno));
            break;
        }
        if (k == 0) break;
        if (first && k >= 2 && (unsigned char)buf[0] == 0x1f && (unsigned char)buf[1] == 0x8b) {
            st = rs_errf(err, RS_ERR_UNSUPPORTED, "%s: gzip input is not counted", path);
            break;
        }
        first = 0;
        for (const char *p = buf, *end = buf + k; (p = memchr(p, '\n', (size_t)(end - p))); p++) lines++;
        last = buf[k - 1];
    }
    free(buf);
    close(fd);
    if (st != RS_OK) return st;
    *n = lines + (last != '\n');
    return RS_OK;
}

int rs_jsonl_line_is_blank(const char *line, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '\f' && line[i] != '\v')
            return 0;
    return 1;
}

rs_status rs_jsonl_next_json(rs_jsonl *r, cJSON **json, uint64_t *line_no, int *bad_line, rs_err *err) {
    *json = NULL;
    *bad_line = 0;
    for (;;) {
        const char *line;
        size_t len;
        rs_status st = rs_jsonl_next(r, &line, &len, line_no, err);
        if (st == RS_ERR_TOO_LARGE) {
            *bad_line = 1;
            return st;
        }
        if (st != RS_OK || !line) return st; /* the input ended: I/O, corrupt gzip, or its end */
        if (rs_jsonl_line_is_blank(line, len)) continue;
        if ((st = rs_json_check_text(line, len, err)) != RS_OK) {
            *bad_line = 1;
            return st;
        }
        if (!(*json = cJSON_ParseWithLength(line, len))) {
            *bad_line = 1;
            return rs_errf(err, RS_ERR_FORMAT, "not valid JSON");
        }
        return RS_OK;
    }
}
