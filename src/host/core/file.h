/* file.h — reading a whole small file, and paths relative to a directory.
 *
 * One reader for every config-sized file routescore reads whole (router
 * manifests, config.json, tokenizer side files, battle files, the server's
 * config and token files): a size bound checked before reading, every I/O
 * failure an error naming the file, nothing silently truncated.
 *
 * Pure functions; the caller owns what they return. */
#ifndef RS_FILE_H
#define RS_FILE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "status.h"

/* What rs_file_read checks besides the size. */
typedef enum rs_file_flags {
    RS_FILE_BINARY = 0,
    RS_FILE_TEXT = 1, /* a NUL byte inside the file is an RS_ERR_FORMAT error */
} rs_file_flags;

/* Reads the regular file `path` whole into *out (NUL-terminated, so text can
 * be used as a C string; caller frees) and its length into *len (may be
 * NULL). RS_ERR_NOT_FOUND when it does not exist, RS_ERR_IO when it cannot be
 * opened or read (or is not a regular file), RS_ERR_TOO_LARGE above
 * max_bytes, RS_ERR_NOMEM, RS_ERR_FORMAT for a NUL byte with RS_FILE_TEXT.
 * On error *out is NULL. */
rs_status rs_file_read(const char *path, size_t max_bytes, rs_file_flags flags, char **out, size_t *len, rs_err *err);

/* Parses a JSON file (at most 64 MiB, text) with cJSON; caller
 * cJSON_Delete()s. RS_ERR_FORMAT names the byte where parsing stopped. */
rs_status rs_file_read_json(const char *path, cJSON **out, rs_err *err);

/* Non-zero when path names a regular file (following links). */
int rs_file_exists(const char *path);

/* dst = path when it is absolute (or dir is NULL or empty), else dir/path.
 * RS_ERR_TOO_LARGE when the result does not fit n bytes (dst is then
 * empty), RS_ERR_INVALID_ARG for an empty path. */
rs_status rs_path_join(char *dst, size_t n, const char *dir, const char *path, rs_err *err);

#endif
