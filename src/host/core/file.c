/* file.c — see file.h. */
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RS_MAX_JSON_BYTES (64u << 20)

rs_status rs_file_read(const char *path, size_t max_bytes, rs_file_flags flags, char **out, size_t *len, rs_err *err) {
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rs_errf(err, errno == ENOENT ? RS_ERR_NOT_FOUND : RS_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return rs_errf(err, RS_ERR_IO, "%s: not a regular file", path);
    }
    if ((unsigned long long)sb.st_size > (unsigned long long)max_bytes) {
        fclose(f);
        return rs_errf(err, RS_ERR_TOO_LARGE, "%s: %lld bytes (limit %zu)", path, (long long)sb.st_size, max_bytes);
    }
    const size_t size = (size_t)sb.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        fclose(f);
        return rs_errf(err, RS_ERR_NOMEM, "%s: no memory for %zu bytes", path, size);
    }
    size_t n = fread(buf, 1, size, f);
    /* One byte more than stat said: the file grew while we read it. */
    const int grew = n == size && fgetc(f) != EOF;
    const int failed = ferror(f);
    fclose(f);
    if (failed || n != size || grew) {
        free(buf);
        return rs_errf(err, RS_ERR_IO, "%s: %s", path,
                       failed ? "read error" : grew ? "the file grew while being read" : "short read");
    }
    buf[n] = 0;
    if ((flags & RS_FILE_TEXT) && memchr(buf, 0, n)) {
        const size_t at = (size_t)((char *)memchr(buf, 0, n) - buf);
        free(buf);
        return rs_errf(err, RS_ERR_FORMAT, "%s: NUL byte at offset %zu in a text file", path, at);
    }
    *out = buf;
    if (len) *len = n;
    return RS_OK;
}

rs_status rs_file_read_json(const char *path, cJSON **out, rs_err *err) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    rs_status st = rs_file_read(path, RS_MAX_JSON_BYTES, RS_FILE_TEXT, &text, &len, err);
    if (st != RS_OK) return st;
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!*out) {
        size_t at = end ? (size_t)(end - text) : 0;
        free(text);
        /* cJSON returns NULL for a failed allocation too: end is then unset */
        return rs_errf(err, RS_ERR_FORMAT, "%s: invalid JSON near byte %zu (or no memory)", path, at);
    }
    free(text);
    return RS_OK;
}

int rs_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

rs_status rs_path_join(char *dst, size_t n, const char *dir, const char *path, rs_err *err) {
    if (n) dst[0] = 0;
    if (!path || !path[0]) return rs_errf(err, RS_ERR_INVALID_ARG, "empty path");
    const int whole = path[0] == '/' || !dir || !dir[0];
    const int w = whole ? snprintf(dst, n, "%s", path) : snprintf(dst, n, "%s/%s", dir, path);
    if (w < 0 || (size_t)w >= n) {
        if (n) dst[0] = 0;
        return rs_errf(err, RS_ERR_TOO_LARGE, "path too long: %.200s%s%.200s", whole ? "" : dir, whole ? "" : "/", path);
    }
    return RS_OK;
}
