/* model_files.c — see model_files.h. */
#include "model_files.h"

#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RS_MAX_SHARDS 64

struct rs_model_files {
    char dir[4096];
    cJSON *config;
    rs_st_file *shards[RS_MAX_SHARDS];
    int n_shards;
    float **owned; /* fp32 copies of F16/BF16 tensors */
    size_t n_owned, cap_owned;
};

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) { /* zero or subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* A tensor's data offset in a safetensors file need not be a multiple of its
 * element size, so 16-bit values are read through memcpy, never a cast. */
static uint16_t load_u16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

void rs_convert_f32(float *dst, const void *src, rs_dtype dtype, size_t n) {
    const unsigned char *s = src;
    if (dtype == RS_DTYPE_F32) {
        memcpy(dst, src, n * 4);
    } else if (dtype == RS_DTYPE_BF16) {
        for (size_t i = 0; i < n; i++) dst[i] = bits_f32((uint32_t)load_u16(s + 2 * i) << 16);
    } else if (dtype == RS_DTYPE_F16) {
        for (size_t i = 0; i < n; i++) dst[i] = half_to_f32(load_u16(s + 2 * i));
    }
}

static rs_status add_shard(rs_model_files *m, const char *file, rs_err *err) {
    /* The index names files inside the directory: no paths, no escapes. */
    if (!*file || strchr(file, '/') || !strcmp(file, "..") || !strcmp(file, "."))
        return rs_errf(err, RS_ERR_FORMAT, "%s/model.safetensors.index.json: bad shard file name '%s'", m->dir, file);
    for (int i = 0; i < m->n_shards; i++) {
        const char *p = rs_st_path(m->shards[i]);
        const char *base = strrchr(p, '/');
        if (!strcmp(base ? base + 1 : p, file)) return RS_OK;
    }
    if (m->n_shards == RS_MAX_SHARDS)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s: more than %d shards", m->dir, RS_MAX_SHARDS);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", m->dir, file);
    return rs_st_open(path, &m->shards[m->n_shards++], err);
}

rs_status rs_model_files_open(const char *dir, rs_model_files **out, rs_err *err) {
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return rs_errf(err, RS_ERR_NOT_FOUND, "%s: not a model directory (%s)", dir,
                       errno ? strerror(errno) : "not a directory");
    rs_model_files *m = calloc(1, sizeof *m);
    if (!m) return rs_errf(err, RS_ERR_NOMEM, "%s: no memory", dir);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    rs_status st = rs_file_read_json(path, &m->config, err);
    if (st != RS_OK) goto fail;
    if (!cJSON_IsObject(m->config)) {
        st = rs_errf(err, RS_ERR_FORMAT, "%s: not a JSON object", path);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (stat(path, &sb) == 0) {
        st = add_shard(m, "model.safetensors", err);
        if (st != RS_OK) goto fail;
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        cJSON *index = NULL;
        st = rs_file_read_json(path, &index, err);
        if (st == RS_ERR_NOT_FOUND) {
            st = rs_errf(err, RS_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
            goto fail;
        }
        if (st != RS_OK) goto fail;
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(index, "weight_map");
        if (!cJSON_IsObject(map)) st = rs_errf(err, RS_ERR_FORMAT, "%s: no weight_map object", path);
        for (const cJSON *it = map ? map->child : NULL; st == RS_OK && it; it = it->next) {
            if (!cJSON_IsString(it))
                st = rs_errf(err, RS_ERR_FORMAT, "%s: weight_map['%s'] is not a file name", path, it->string);
            else
                st = add_shard(m, it->valuestring, err);
        }
        cJSON_Delete(index);
        if (st != RS_OK) goto fail;
    }
    *out = m;
    return RS_OK;
fail:
    rs_model_files_close(m);
    return st;
}

void rs_model_files_close(rs_model_files *m) {
    if (!m) return;
    for (int i = 0; i < m->n_shards; i++) rs_st_close(m->shards[i]);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    cJSON_Delete(m->config);
    free(m);
}

const char *rs_model_files_dir(const rs_model_files *m) { return m->dir; }
const cJSON *rs_model_files_config(const rs_model_files *m) { return m->config; }

static const rs_st_tensor *find(const rs_model_files *m, const char *name, const rs_st_file **file) {
    /* Task heads wrap the encoder as "bert." / "roberta."; bare encoders
     * (sentence-transformers) store it unprefixed. */
    static const char *const PREFIXES[] = {"", "bert.", "roberta."};
    char full[512];
    for (size_t p = 0; p < sizeof PREFIXES / sizeof PREFIXES[0]; p++) {
        snprintf(full, sizeof full, "%s%s", PREFIXES[p], name);
        for (int i = 0; i < m->n_shards; i++) {
            const rs_st_tensor *t = rs_st_find(m->shards[i], full);
            if (t) {
                *file = m->shards[i];
                return t;
            }
        }
    }
    return NULL;
}

static void shape_str(char *buf, size_t n, int n_dims, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < n_dims && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

rs_status rs_model_files_f32(rs_model_files *m, const char *name, int n_dims, const int64_t *shape,
                             const float **out, rs_err *err) {
    const rs_st_file *file = NULL;
    const rs_st_tensor *t = find(m, name, &file);
    if (!t) return rs_errf(err, RS_ERR_NOT_FOUND, "%s: tensor '%s' is missing from the weights", m->dir, name);
    if (t->dtype != RS_DTYPE_F32 && t->dtype != RS_DTYPE_F16 && t->dtype != RS_DTYPE_BF16)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (want F32, F16 or BF16)",
                       rs_st_path(file), t->name, rs_st_dtype_name(t->dtype));
    if (n_dims) {
        int same = t->n_dims == n_dims;
        for (int d = 0; same && d < n_dims; d++) same = t->shape[d] == shape[d];
        if (!same) {
            char want[128], got[128];
            shape_str(want, sizeof want, n_dims, shape);
            shape_str(got, sizeof got, t->n_dims, t->shape);
            return rs_errf(err, RS_ERR_FORMAT, "%s: tensor '%s' has shape %s but config.json implies %s",
                           rs_st_path(file), t->name, got, want);
        }
    }
    if (t->dtype == RS_DTYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
        return RS_OK;
    }
    /* Converted (or realigned) copy, owned by m. */
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? 2 * m->cap_owned : 64;
        float **p = realloc(m->owned, cap * sizeof *p);
        if (!p) return rs_errf(err, RS_ERR_NOMEM, "%s: no memory", m->dir);
        m->owned = p;
        m->cap_owned = cap;
    }
    float *buf = malloc((size_t)t->n_elems * sizeof *buf + 1);
    if (!buf) return rs_errf(err, RS_ERR_NOMEM, "%s: no memory for tensor '%s'", m->dir, t->name);
    rs_convert_f32(buf, t->data, t->dtype, (size_t)t->n_elems);
    m->owned[m->n_owned++] = buf;
    *out = buf;
    return RS_OK;
}
