/* cli_label_io.c — label's formats and resume fingerprint; see cli_label_io.h. */
#include "cli_label_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utf8proc.h>
#include <zlib.h>

/* ---------------------------------------------------------------- sniffing */

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcasecmp(s + n - m, suf);
}

/* Up to 40 bytes of s as printable ASCII (others as '.') for a message. */
static void preview(char *buf, size_t n, const char *s, size_t len) {
    size_t k = 0;
    for (size_t i = 0; i < len && i < 40 && k + 1 < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n' || ch == '\r') break;
        buf[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
    }
    buf[k] = '\0';
}

rs_status rs_label_sniff(const char *path, const char *head, size_t len, rs_label_format *fmt, rs_err *err) {
    const char *name = strcmp(path, "-") ? path : "stdin";
    if (len >= 4 && !memcmp(head, "PAR1", 4))
        return rs_errf(err, RS_ERR_UNSUPPORTED,
                       "%s is a Parquet file; `routescore label` reads JSON lines and CSV. Label Parquet "
                       "with the Python package: `pip install .` in the routescore checkout, then "
                       "`routescore-label --model DIR --in %s --out labels.parquet` (one machine) or "
                       "routescore.ray_data.label_parquet (a Ray cluster); see docs/PYTHON.md",
                       name, name);
    static const struct {
        const char *magic;
        size_t n;
        const char *what;
    } magics[] = {
        {"Obj\x01", 4, "Avro"},         {"PK\x03\x04", 4, "zip"},   {"\xfd" "7zXZ", 5, "xz"},
        {"\x28\xb5\x2f\xfd", 4, "zstd"}, {"BZh", 3, "bzip2"},      {"ORC", 3, "ORC"},
    };
    for (size_t i = 0; i < sizeof magics / sizeof magics[0]; i++) {
        if (len <= magics[i].n || memcmp(head, magics[i].magic, magics[i].n)) continue;
        unsigned char next = (unsigned char)head[magics[i].n];
        /* "BZh" and "ORC" are also words a CSV header may start with: take
         * them only when what follows is what those formats put there. */
        if (!strcmp(magics[i].what, "bzip2") && !(next >= '1' && next <= '9')) continue;
        if (!strcmp(magics[i].what, "ORC") && next >= 0x20 && next < 0x7f) continue;
        return rs_errf(err, RS_ERR_UNSUPPORTED,
                       "%s is %s data, not JSON lines or CSV (plain or gzip): decompress or convert it first",
                       name, magics[i].what);
    }
    const char *nl = memchr(head, '\n', len);
    size_t first = nl ? (size_t)(nl - head) : len;
    const char *nul = memchr(head, '\0', first);
    if (nul)
        return rs_errf(err, RS_ERR_UNSUPPORTED,
                       "%s holds binary data (a NUL byte at offset %zu of its first line), not JSON lines or CSV",
                       name, (size_t)(nul - head));
    if (*fmt == RS_LABEL_AUTO)
        *fmt = has_suffix(path, ".csv") || has_suffix(path, ".csv.gz") ? RS_LABEL_CSV : RS_LABEL_JSONL;
    if (*fmt == RS_LABEL_JSONL) {
        size_t p = 0;
        if (len >= 3 && !memcmp(head, "\xef\xbb\xbf", 3)) p = 3;
        while (p < len && (head[p] == ' ' || head[p] == '\t' || head[p] == '\r' || head[p] == '\n')) p++;
        if (p < len && head[p] != '{' && head[p] != '[') {
            char pv[48];
            preview(pv, sizeof pv, head + p, len - p);
            return rs_errf(err, RS_ERR_UNSUPPORTED,
                           "%s does not look like JSON lines: its first record starts \"%s\" (label reads one "
                           "JSON object per line; for CSV pass --format csv)",
                           name, pv);
        }
    }
    return RS_OK;
}

/* --------------------------------------------------------------------- CSV */

void rs_label_csv_free(rs_label_csv *c) {
    rs_buf_free(&c->rec);
    rs_csv_free(&c->csv);
    free(c->fields);
    c->fields = NULL;
}

/* Lines of the reader joined with "\n" until the double quotes balance: an
 * RFC 4180 record ends at the first line end outside a quoted field, and a
 * quote character toggles in-quotes ("" toggles twice). CR of a CRLF inside
 * a quoted field is not kept (the reader strips it). */
static rs_status read_record(rs_label_csv *c, uint64_t *first_line, int *eof, int *too_long, int *blank,
                             rs_err *err) {
    c->rec.len = 0;
    *eof = *too_long = *blank = 0;
    int quoted = 0, first = 1;
    for (;;) {
        const char *line;
        size_t len;
        uint64_t ln = 0;
        rs_status st = rs_jsonl_next(c->r, &line, &len, &ln, err);
        if (st == RS_ERR_TOO_LARGE) {
            if (first) *first_line = ln;
            *too_long = 1; /* the record ends here: resynchronise on the next line */
            return RS_OK;
        }
        if (st != RS_OK) return st;
        if (!line) {
            if (first) *eof = 1;
            return RS_OK; /* an unterminated quote: csv.c says so */
        }
        if (first) {
            *first_line = ln;
            if (rs_jsonl_line_is_blank(line, len)) {
                *blank = 1;
                return RS_OK;
            }
        } else {
            if (c->rec.len + len + 1 > RS_JSONL_MAX_LINE) {
                *too_long = 1;
                return RS_OK;
            }
            if ((st = rs_buf_append(&c->rec, "\n", 1)) != RS_OK) return rs_errf(err, st, "out of memory");
        }
        if ((st = rs_buf_append(&c->rec, line, len)) != RS_OK) return rs_errf(err, st, "out of memory");
        for (const char *q = memchr(line, '"', len); q; q = memchr(q + 1, '"', len - (size_t)(q + 1 - line)))
            quoted ^= 1;
        first = 0;
        if (!quoted) return RS_OK;
    }
}

/* Parses c->rec as exactly one record (the csv scratch buffer is kept). */
static rs_status parse_record(rs_label_csv *c, uint64_t line, size_t max_fields, size_t *nf, rs_err *e) {
    char *b = c->csv.buf;
    size_t cap = c->csv.cap;
    rs_csv_init(&c->csv, c->rec.data ? c->rec.data : "", c->rec.len);
    c->csv.buf = b;
    c->csv.cap = cap;
    c->csv.line = (size_t)line;
    rs_status st = rs_csv_next(&c->csv, c->fields, max_fields, nf, e);
    if (st != RS_OK) return st;
    if (c->csv.pos < c->csv.len)
        return rs_errf(e, RS_ERR_FORMAT, "csv line %llu: trailing data after the record", (unsigned long long)line);
    return RS_OK;
}

static rs_status check_text(const char *s, size_t n, rs_err *e) {
    const char *nul = memchr(s, '\0', n);
    if (nul) return rs_errf(e, RS_ERR_FORMAT, "NUL byte at offset %zu of the record", (size_t)(nul - s));
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return rs_errf(e, RS_ERR_UTF8, "invalid UTF-8 at byte offset %zu of the record", i);
        i += (size_t)k;
    }
    return RS_OK;
}

rs_status rs_label_csv_open(rs_label_csv *c, rs_jsonl *r, const char *column, const char *id_column,
                            rs_err *err) {
    memset(c, 0, sizeof *c);
    c->r = r;
    c->id_col = -1;
    if (!column) column = "prompt";
    uint64_t line = 0;
    int eof, too_long, blank;
    rs_status st;
    do {
        st = read_record(c, &line, &eof, &too_long, &blank, err);
        if (st != RS_OK) return st;
    } while (blank);
    if (eof) return rs_errf(err, RS_ERR_FORMAT, "CSV input has no header line");
    if (too_long) return rs_errf(err, RS_ERR_FORMAT, "CSV header (line %llu) is too long", (unsigned long long)line);
    size_t skip = c->rec.len >= 3 && !memcmp(c->rec.data, "\xef\xbb\xbf", 3) ? 3 : 0; /* a UTF-8 BOM */
    if (skip) {
        memmove(c->rec.data, c->rec.data + 3, c->rec.len - 3 + 1);
        c->rec.len -= 3;
    }
    enum { MAX_COLS = 4096 };
    c->fields = calloc(MAX_COLS + 1, sizeof *c->fields);
    if (!c->fields) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    if ((st = check_text(c->rec.data, c->rec.len, err)) != RS_OK) return rs_errf(err, st, "CSV header: %s", err->msg);
    size_t nf = 0;
    if ((st = parse_record(c, line, MAX_COLS, &nf, err)) != RS_OK) return rs_errf(err, st, "CSV header: %s", err->msg);
    c->n_cols = nf;
    c->max_fields = nf + 1;
    int found = 0;
    for (size_t i = 0; i < nf; i++) {
        if (!found && !strcmp(c->fields[i].s, column)) {
            c->col = i;
            found = 1;
        }
        if (c->id_col < 0 && !strcmp(c->fields[i].s, id_column ? id_column : "id")) c->id_col = (long)i;
    }
    if (!found || (id_column && c->id_col < 0)) {
        char cols[400];
        size_t k = 0;
        cols[0] = '\0';
        for (size_t i = 0; i < nf && k + 4 < sizeof cols; i++)
            k += (size_t)snprintf(cols + k, sizeof cols - k, "%s%s", i ? ", " : "", c->fields[i].s);
        if (k >= sizeof cols) k = sizeof cols - 1;
        return rs_errf(err, RS_ERR_NOT_FOUND, "no column '%s' in the CSV header (columns: %s)",
                       found ? id_column : column, cols);
    }
    return RS_OK;
}

rs_status rs_label_csv_next(rs_label_csv *c, rs_label_csv_rec *rec, int *eof, rs_err *err) {
    int too_long;
    rec->blank = rec->bad = 0;
    rec->prompt = NULL;
    rec->prompt_len = 0;
    rec->msg[0] = '\0';
    rs_status st = read_record(c, &rec->line, eof, &too_long, &rec->blank, err);
    if (st != RS_OK || *eof) return st;
    snprintf(rec->id, sizeof rec->id, "%llu", (unsigned long long)rec->line);
    if (rec->blank) return RS_OK;
    rs_err e = {{0}};
    if (too_long) {
        rec->bad = 1;
        snprintf(rec->msg, sizeof rec->msg, "record is longer than %u bytes", RS_JSONL_MAX_LINE);
        return RS_OK;
    }
    size_t nf = 0;
    if ((st = check_text(c->rec.data, c->rec.len, &e)) == RS_OK) st = parse_record(c, rec->line, c->max_fields, &nf, &e);
    if (st == RS_ERR_NOMEM) return rs_errf(err, st, "out of memory");
    if (st == RS_OK && nf != c->n_cols) st = rs_errf(&e, RS_ERR_FORMAT, "%zu fields, the header has %zu", nf, c->n_cols);
    if (st != RS_OK) {
        rec->bad = 1;
        snprintf(rec->msg, sizeof rec->msg, "%s", e.msg);
        return RS_OK;
    }
    if (c->id_col >= 0) {
        cJSON *s = cJSON_CreateString(c->fields[c->id_col].s);
        char *js = s ? cJSON_PrintUnformatted(s) : NULL;
        if (js && strlen(js) < sizeof rec->id) snprintf(rec->id, sizeof rec->id, "%s", js);
        cJSON_free(js);
        cJSON_Delete(s);
    }
    rec->prompt = c->fields[c->col].s;
    rec->prompt_len = c->fields[c->col].len;
    return RS_OK;
}

/* -------------------------------------------------------------- gzip output */

rs_status rs_label_gz_member(FILE *f, const char *data, size_t len, rs_err *err) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return rs_errf(err, RS_ERR_NOMEM, "gzip: cannot start a stream");
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    unsigned char *out = malloc(cap);
    if (!out) {
        deflateEnd(&zs);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    }
    zs.next_in = (Bytef *)(uintptr_t)data;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    size_t n = cap - zs.avail_out;
    deflateEnd(&zs);
    rs_status st = RS_OK;
    if (rc != Z_STREAM_END) st = rs_errf(err, RS_ERR_INTERNAL, "gzip: deflate did not finish (%d)", rc);
    else if (fwrite(out, 1, n, f) != n) st = rs_errf(err, RS_ERR_IO, "write failed: %s", strerror(errno));
    free(out);
    return st;
}

/* Counts the records of one complete member and keeps its last line. */
static rs_status commit_member(const rs_buf *m, uint64_t *n_records, uint64_t *n_errors, rs_buf *last,
                               const char *path, rs_err *err) {
    if (m->len == 0) return RS_OK;
    if (m->data[m->len - 1] != '\n')
        return rs_errf(err, RS_ERR_FORMAT, "%s: a gzip member does not end with a whole record; not a label output",
                       path);
    const char *p = m->data, *end = m->data + m->len;
    const char *line = p;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        (*n_records)++;
        if (memmem(p, (size_t)(nl - p), "\"error\":", 8)) (*n_errors)++;
        line = p;
        p = nl + 1;
    }
    last->len = 0;
    return rs_buf_append(last, line, (size_t)(end - line - 1)) == RS_OK ? RS_OK
                                                                           : rs_errf(err, RS_ERR_NOMEM, "out of memory");
}

rs_status rs_label_gz_resume_scan(const char *path, uint64_t *n_records, uint64_t *n_errors, rs_err *err) {
    *n_records = *n_errors = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return RS_OK;
        return rs_errf(err, RS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    enum { IN = 64 << 10, OUT = 256 << 10 };
    unsigned char *in = malloc(IN), *out = malloc(OUT);
    rs_buf member = {0}, last = {0};
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    rs_status st = RS_OK;
    int zinit = 0;
    if (!in || !out) {
        st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (inflateInit2(&zs, 15 + 16) != Z_OK) {
        st = rs_errf(err, RS_ERR_NOMEM, "gzip: cannot start a stream");
        goto done;
    }
    zinit = 1;
    long long off = 0, complete_end = 0;
    size_t n;
    while ((n = fread(in, 1, IN, f)) > 0) {
        zs.next_in = in;
        zs.avail_in = (uInt)n;
        for (;;) {
            zs.next_out = out;
            zs.avail_out = OUT;
            int rc = inflate(&zs, Z_NO_FLUSH);
            size_t got = OUT - zs.avail_out;
            if (got && rs_buf_append(&member, (const char *)out, got) != RS_OK) {
                st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
                goto done;
            }
            if (rc == Z_STREAM_END) {
                if ((st = commit_member(&member, n_records, n_errors, &last, path, err)) != RS_OK) goto done;
                member.len = 0;
                complete_end = off + (long long)(zs.next_in - in);
                inflateReset(&zs);
                if (zs.avail_in == 0) break;
                continue;
            }
            if (rc == Z_OK) {
                if (zs.avail_in == 0 && zs.avail_out != 0) break; /* needs the next chunk */
                continue;                                         /* output full: drain */
            }
            if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;
            st = rs_errf(err, RS_ERR_FORMAT,
                         complete_end == 0 ? "%s: not a gzip label output (%s); refusing to append to it"
                                           : "%s: corrupt gzip data (%s); refusing to append to it",
                         path, zs.msg ? zs.msg : "bad data");
            goto done;
        }
        off += (long long)n;
    }
    if (ferror(f)) {
        st = rs_errf(err, RS_ERR_IO, "%s: read failed", path);
        goto done;
    }
    if (last.len) {
        cJSON *j = cJSON_ParseWithLength(last.data, last.len);
        int ok = cJSON_IsObject(j) && cJSON_GetObjectItemCaseSensitive(j, "id");
        cJSON_Delete(j);
        if (!ok) {
            st = rs_errf(err, RS_ERR_FORMAT, "%s: the last complete record is not a label record; refusing to append to it",
                         path);
            goto done;
        }
    }
    if (off != complete_end && truncate(path, complete_end) != 0)
        st = rs_errf(err, RS_ERR_IO, "%s: cannot cut the torn last gzip member: %s", path, strerror(errno));
done:
    if (zinit) inflateEnd(&zs);
    fclose(f);
    free(in);
    free(out);
    rs_buf_free(&member);
    rs_buf_free(&last);
    return st;
}

/* ------------------------------------------------------------- fingerprint */

rs_status rs_label_fp_path(const char *out_path, char *buf, size_t n, rs_err *err) {
    if ((size_t)snprintf(buf, n, "%s.fingerprint.json", out_path) >= n)
        return rs_errf(err, RS_ERR_TOO_LARGE, "--out path too long");
    return RS_OK;
}

static void fp_set(cJSON *fp, const char *key, const char *val) {
    cJSON_DeleteItemFromObjectCaseSensitive(fp, key);
    cJSON_AddStringToObject(fp, key, val ? val : "");
}

/* Size and CRC-32 of the first RS_LABEL_HEAD_BYTES of a file. */
static rs_status file_head(const char *path, long long *size, uLong *crc, rs_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rs_errf(err, RS_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return rs_errf(err, RS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    *size = S_ISREG(sb.st_mode) ? (long long)sb.st_size : -1;
    char *buf = malloc(RS_LABEL_HEAD_BYTES);
    if (!buf) {
        close(fd);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < RS_LABEL_HEAD_BYTES) {
        ssize_t k = read(fd, buf + got, RS_LABEL_HEAD_BYTES - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    *crc = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)buf, (uInt)got);
    free(buf);
    close(fd);
    return RS_OK;
}

rs_status rs_label_fp_input(cJSON *fp, const char *path, rs_err *err) {
    if (!strcmp(path, "-")) {
        fp_set(fp, "input.path", "-");
        fp_set(fp, "input.size", "stdin");
        return RS_OK;
    }
    char real[PATH_MAX];
    fp_set(fp, "input.path", realpath(path, real) ? real : path);
    long long size;
    uLong crc;
    rs_status st = file_head(path, &size, &crc, err);
    if (st != RS_OK) return st;
    char v[32];
    if (size >= 0) snprintf(v, sizeof v, "%lld", size);
    else snprintf(v, sizeof v, "not a regular file");
    fp_set(fp, "input.size", v);
    snprintf(v, sizeof v, "%08lx", crc);
    fp_set(fp, "input.head_crc32", v);
    return RS_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_model_file(const char *name) {
    return has_suffix(name, ".json") || has_suffix(name, ".safetensors") || has_suffix(name, ".model") ||
           has_suffix(name, ".txt") || has_suffix(name, ".bin");
}

rs_status rs_label_fp_router(cJSON *fp, const char *dir, const rs_router_info *info, rs_err *err) {
    char real[PATH_MAX], v[64];
    fp_set(fp, "router.path", realpath(dir, real) ? real : dir);
    fp_set(fp, "router.name", info->name);
    fp_set(fp, "router.kind", info->kind);
    fp_set(fp, "router.architecture", info->architecture);
    snprintf(v, sizeof v, "%.9g", info->threshold);
    fp_set(fp, "router.threshold", v);
    snprintf(v, sizeof v, "%d", info->max_tokens);
    fp_set(fp, "router.max_tokens", v);
    snprintf(v, sizeof v, "%d", info->embed_dim);
    fp_set(fp, "router.embed_dim", v);
    snprintf(v, sizeof v, "%d", info->n_labels);
    fp_set(fp, "router.n_labels", v);

    DIR *d = opendir(dir);
    if (!d) return rs_errf(err, RS_ERR_IO, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    rs_status st = RS_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !is_model_file(de->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (names) qsort(names, n, sizeof *names, cmp_str);
    uLong all = crc32(0L, Z_NULL, 0);
    for (size_t i = 0; i < n && st == RS_OK; i++) {
        char p[PATH_MAX];
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, names[i]) >= sizeof p) continue;
        struct stat sb;
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        long long size;
        uLong crc;
        if ((st = file_head(p, &size, &crc, err)) != RS_OK) break;
        char rec[64];
        int k = snprintf(rec, sizeof rec, "%lld:%08lx:", size, crc);
        all = crc32(all, (const Bytef *)names[i], (uInt)strlen(names[i]) + 1);
        all = crc32(all, (const Bytef *)rec, (uInt)k);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (st != RS_OK) return st;
    snprintf(v, sizeof v, "%08lx", all);
    fp_set(fp, "router.files_crc32", v);
    return RS_OK;
}

rs_status rs_label_fp_write(const char *out_path, const cJSON *fp, rs_err *err) {
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    rs_status st = rs_label_fp_path(out_path, path, sizeof path, err);
    if (st != RS_OK) return st;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    char *text = cJSON_Print(fp);
    if (!text) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        cJSON_free(text);
        return rs_errf(err, RS_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    }
    int bad = fputs(text, f) < 0 || fputc('\n', f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    cJSON_free(text);
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return rs_errf(err, RS_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    return RS_OK;
}

static int is_path_key(const char *k) { return has_suffix(k, ".path"); }

static void add_diff(char *msg, size_t cap, size_t *k, const char *key, const cJSON *was, const cJSON *now) {
    if (*k >= cap) return;
    const char *a = cJSON_IsString(was) ? was->valuestring : "(absent)";
    const char *b = cJSON_IsString(now) ? now->valuestring : "(absent)";
    int w = snprintf(msg + *k, cap - *k, "%s%s was '%s', now '%s'", *k ? "; " : "", key, a, b);
    *k = w < 0 ? cap : *k + (size_t)w;
}

rs_status rs_label_fp_check(const char *out_path, const cJSON *fp, rs_err *err) {
    char path[PATH_MAX];
    rs_status st = rs_label_fp_path(out_path, path, sizeof path, err);
    if (st != RS_OK) return st;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return rs_errf(err, RS_ERR_NOT_FOUND, "%s is missing", path);
        return rs_errf(err, RS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    char *buf = malloc(1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (!buf) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    buf[n] = '\0';
    cJSON *old = cJSON_Parse(buf);
    free(buf);
    if (!cJSON_IsObject(old)) {
        cJSON_Delete(old);
        return rs_errf(err, RS_ERR_FORMAT, "%s is not a label fingerprint", path);
    }
    char diffs[400];
    size_t k = 0;
    diffs[0] = '\0';
    const cJSON *it;
    cJSON_ArrayForEach(it, fp) {
        if (is_path_key(it->string)) continue;
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(old, it->string);
        if (!cJSON_IsString(o) || !cJSON_IsString(it) || strcmp(o->valuestring, it->valuestring))
            add_diff(diffs, sizeof diffs, &k, it->string, o, it);
    }
    cJSON_ArrayForEach(it, old) {
        if (is_path_key(it->string) || cJSON_GetObjectItemCaseSensitive(fp, it->string)) continue;
        add_diff(diffs, sizeof diffs, &k, it->string, it, NULL);
    }
    cJSON_Delete(old);
    if (k) return rs_errf(err, RS_ERR_INVALID_ARG, "%s", diffs);
    return RS_OK;
}
