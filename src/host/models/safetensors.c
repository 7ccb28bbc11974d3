/* safetensors.c — validated mmap reader and atomic F32 writer.
 *
 * The header is parsed with cJSON, then every entry is checked before any
 * tensor is handed out: dtype known, dims non-negative and few, element count
 * without overflow, byte range == elems x dtype size, range inside the data
 * section, and no two ranges overlapping (sorted sweep). A file that passes
 * can be read through rs_st_tensor.data without further checks. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header larger than this is refused: real ones are a few hundred KB. */
#define RS_ST_MAX_HEADER (100u << 20)

struct rs_st_file {
    char *path;
    void *map;
    size_t map_len;
    rs_st_tensor *tensors; /* sorted by data offset */
    size_t n;
    char *names; /* all names, NUL-separated; tensors[i].name points here */
};

static const struct {
    const char *name;
    size_t size;
} DTYPES[RS_DTYPE_COUNT] = {
    [RS_DTYPE_F32] = {"F32", 4}, [RS_DTYPE_F16] = {"F16", 2},  [RS_DTYPE_BF16] = {"BF16", 2},
    [RS_DTYPE_I64] = {"I64", 8}, [RS_DTYPE_I32] = {"I32", 4},  [RS_DTYPE_I16] = {"I16", 2},
    [RS_DTYPE_I8] = {"I8", 1},   [RS_DTYPE_U8] = {"U8", 1},    [RS_DTYPE_BOOL] = {"BOOL", 1},
    [RS_DTYPE_F64] = {"F64", 8},
};

const char *rs_st_dtype_name(rs_dtype t) { return t < RS_DTYPE_COUNT ? DTYPES[t].name : "?"; }
size_t rs_st_dtype_size(rs_dtype t) { return t < RS_DTYPE_COUNT ? DTYPES[t].size : 0; }

static int dtype_parse(const char *s, rs_dtype *out) {
    for (int i = 0; i < RS_DTYPE_COUNT; i++)
        if (!strcmp(s, DTYPES[i].name)) {
            *out = (rs_dtype)i;
            return 1;
        }
    return 0;
}

/* A tensor's byte range, relative to the data section. */
typedef struct span {
    uint64_t begin, end;
    size_t idx;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static int json_u64(const cJSON *j, uint64_t *out) {
    /* cJSON keeps numbers as double: exact up to 2^53, ample for offsets. */
    if (!cJSON_IsNumber(j) || j->valuedouble < 0 || j->valuedouble > 9007199254740992.0 ||
        j->valuedouble != (double)(uint64_t)j->valuedouble)
        return 0;
    *out = (uint64_t)j->valuedouble;
    return 1;
}

static rs_status parse_header(rs_st_file *f, const char *hdr, size_t hdr_len,
                              const unsigned char *data, size_t data_len, rs_err *err) {
    cJSON *root = cJSON_ParseWithLength(hdr, hdr_len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rs_errf(err, RS_ERR_FORMAT, "%s: safetensors header is not a JSON object", f->path);
    }
    rs_status st = RS_OK;
    size_t n = 0, names_len = 0;
    for (cJSON *it = root->child; it; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) continue;
        n++;
        names_len += strlen(it->string) + 1;
    }
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    f->names = malloc(names_len ? names_len : 1);
    span *spans = calloc(n ? n : 1, sizeof *spans);
    if (!f->tensors || !f->names || !spans) {
        st = rs_errf(err, RS_ERR_NOMEM, "%s: no memory for %zu tensor entries", f->path, n);
        goto done;
    }
    size_t i = 0;
    char *np = f->names;
    for (cJSON *it = root->child; it; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) continue;
        rs_st_tensor *t = &f->tensors[i];
        const char *name = it->string;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsObject(it) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
            !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
            st = rs_errf(err, RS_ERR_FORMAT, "%s: tensor '%s': entry needs dtype, shape, data_offsets[2]",
                         f->path, name);
            goto done;
        }
        if (!dtype_parse(dt->valuestring, &t->dtype)) {
            st = rs_errf(err, RS_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", f->path, name,
                         dt->valuestring);
            goto done;
        }
        int nd = cJSON_GetArraySize(shape);
        if (nd > RS_ST_MAX_DIMS) {
            st = rs_errf(err, RS_ERR_FORMAT, "%s: tensor '%s': %d dims (max %d)", f->path, name, nd,
                         RS_ST_MAX_DIMS);
            goto done;
        }
        t->n_dims = nd;
        uint64_t elems = 1;
        for (int d = 0; d < nd; d++) {
            uint64_t v;
            if (!json_u64(cJSON_GetArrayItem(shape, d), &v) || (v && elems > UINT64_MAX / v / 8)) {
                st = rs_errf(err, RS_ERR_FORMAT, "%s: tensor '%s': bad shape", f->path, name);
                goto done;
            }
            t->shape[d] = (int64_t)v;
            elems *= v;
        }
        uint64_t b, e;
        if (!json_u64(cJSON_GetArrayItem(offs, 0), &b) || !json_u64(cJSON_GetArrayItem(offs, 1), &e) ||
            e < b) {
            st = rs_errf(err, RS_ERR_FORMAT, "%s: tensor '%s': bad data_offsets", f->path, name);
            goto done;
        }
        if (e - b != elems * rs_st_dtype_size(t->dtype)) {
            st = rs_errf(err, RS_ERR_FORMAT,
                         "%s: tensor '%s': %llu bytes for %llu x %s elements", f->path, name,
                         (unsigned long long)(e - b), (unsigned long long)elems, dt->valuestring);
            goto done;
        }
        if (e > data_len) {
            st = rs_errf(err, RS_ERR_FORMAT,
                         "%s: tensor '%s': bytes [%llu, %llu) past the end of the data (%zu bytes): "
                         "file truncated?",
                         f->path, name, (unsigned long long)b, (unsigned long long)e, data_len);
            goto done;
        }
        size_t len = strlen(name) + 1;
        memcpy(np, name, len);
        t->name = np;
        np += len;
        t->n_elems = (int64_t)elems;
        t->n_bytes = (size_t)(e - b);
        t->data = data + b;
        spans[i] = (span){b, e, i};
        i++;
    }
    qsort(spans, n, sizeof *spans, span_cmp);
    for (size_t k = 1; k < n; k++)
        if (spans[k].begin < spans[k - 1].end) {
            st = rs_errf(err, RS_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", f->path,
                         f->tensors[spans[k - 1].idx].name, f->tensors[spans[k].idx].name);
            goto done;
        }
    f->n = n;
done:
    free(spans);
    cJSON_Delete(root);
    return st;
}

rs_status rs_st_open(const char *path, rs_st_file **out, rs_err *err) {
    *out = NULL;
    rs_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return rs_errf(err, RS_ERR_NOMEM, "%s: no memory", path);
    }
    rs_status st = RS_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = rs_errf(err, errno == ENOENT ? RS_ERR_NOT_FOUND : RS_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (sb.st_size < 8) {
        st = rs_errf(err, RS_ERR_FORMAT, "%s: %lld bytes is too short for a safetensors file", path,
                     (long long)sb.st_size);
        goto fail;
    }
    f->map_len = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        st = rs_errf(err, RS_ERR_IO, "%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    const unsigned char *p = f->map;
    uint64_t hdr_len = 0;
    for (int i = 7; i >= 0; i--) hdr_len = (hdr_len << 8) | p[i];
    if (hdr_len == 0 || hdr_len > RS_ST_MAX_HEADER || hdr_len > f->map_len - 8) {
        st = rs_errf(err, RS_ERR_FORMAT, "%s: header length %llu does not fit the file (%zu bytes): truncated, or not safetensors", path,
                     (unsigned long long)hdr_len, f->map_len);
        goto fail;
    }
    size_t data_off = 8 + (size_t)hdr_len;
    st = parse_header(f, (const char *)p + 8, (size_t)hdr_len, p + data_off, f->map_len - data_off, err);
    if (st != RS_OK) goto fail;
    close(fd);
    *out = f;
    return RS_OK;
fail:
    if (fd >= 0) close(fd);
    rs_st_close(f);
    return st;
}

void rs_st_close(rs_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    free(f->tensors);
    free(f->names);
    free(f->path);
    free(f);
}

const char *rs_st_path(const rs_st_file *f) { return f->path; }
size_t rs_st_count(const rs_st_file *f) { return f->n; }
const rs_st_tensor *rs_st_at(const rs_st_file *f, size_t i) { return i < f->n ? &f->tensors[i] : NULL; }

const rs_st_tensor *rs_st_find(const rs_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

rs_status rs_st_write_f32(const char *path, const rs_st_out_tensor *tensors, size_t n, rs_err *err) {
    cJSON *hdr = cJSON_CreateObject();
    uint64_t off = 0;
    for (size_t i = 0; hdr && i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(hdr, tensors[i].name);
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        uint64_t elems = 1;
        for (int d = 0; d < tensors[i].n_dims; d++) {
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensors[i].shape[d]));
            elems *= (uint64_t)tensors[i].shape[d];
        }
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += elems * 4;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *json = hdr ? cJSON_PrintUnformatted(hdr) : NULL;
    cJSON_Delete(hdr);
    if (!json) return rs_errf(err, RS_ERR_NOMEM, "%s: no memory for the header", path);
    /* Pad the header with spaces to 8 bytes so the data is aligned. */
    size_t hlen = strlen(json), padded = (hlen + 7) & ~(size_t)7;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *fp = fopen(tmp, "wb");
    rs_status st = RS_OK;
    if (!fp) {
        st = rs_errf(err, RS_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(json, 1, hlen, fp) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (size_t i = 0; ok && i < n; i++) {
        size_t elems = 1;
        for (int d = 0; d < tensors[i].n_dims; d++) elems *= (size_t)tensors[i].shape[d];
        ok = fwrite(tensors[i].data, 4, elems, fp) == elems; /* little-endian host */
    }
    ok = (fflush(fp) == 0) && ok && fsync(fileno(fp)) == 0;
    if (fclose(fp) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        st = rs_errf(err, RS_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
    }
out:
    free(json);
    return st;
}
