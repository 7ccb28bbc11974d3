/* srv_config.c — see srv_config.h. Each JSON object is read against a table
 * of the keys it may hold, so an unknown key or a wrong type is caught in
 * one place and the message names the key's full path. */
#include "srv_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "manifest.h"
#include "yaml_json.h"

void rs_srv_router_default(rs_srv_router_cfg *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->backend, sizeof r->backend, "cpu");
    r->max_batch_tokens = 16384;
    r->max_batch_size = 256;
    r->max_queue_delay_us = 2000;
    r->max_queue_tokens = 16L * 16384;
    r->max_queue_wait_ms = 250;
    r->online_share = 0.5f;
    r->online_window = 4096;
    r->online_min_samples = 256;
}

void rs_srv_config_default(rs_srv_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->listen, sizeof c->listen, "0.0.0.0:50051");
    snprintf(c->metrics_listen, sizeof c->metrics_listen, "0.0.0.0:9090");
    c->metrics_request_timeout_s = 5;
    c->http_request_timeout_s = 5;
    c->http_max_connections = 1024;
    c->metrics_client_connections = 8;
    c->metrics_max_connections = 1024;
    c->cq_threads = 2;
    c->grace_s = 25;
    c->max_request_bytes = 4L << 20;
    c->max_prompts = 1024;
    c->max_prompt_bytes = 256L << 10;
    c->stream_window = 16;
    c->ext_proc_fail_open = 1;
    snprintf(c->log_level, sizeof c->log_level, "info");
}

/* ---- table-driven object reader ---- */

typedef enum key_type { K_STR, K_PATH, K_INT, K_LONG, K_FLOAT, K_DOUBLE, K_BOOL } key_type;

typedef struct key_spec {
    const char *name;
    key_type type;
    size_t off;    /* into the target struct */
    size_t size;   /* K_STR / K_PATH: buffer size */
    double lo, hi; /* numbers: inclusive range */
    size_t has_off; /* offset of an int set to 1 when the key is present; (size_t)-1 none */
} key_spec;

#define NO_HAS ((size_t)-1)

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static rs_status read_object(const cJSON *obj, const char *where, const key_spec *keys, size_t nkeys, void *target,
                             const char *base_dir, const char *const *nested, size_t n_nested, rs_err *err) {
    if (!cJSON_IsObject(obj)) return rs_errf(err, RS_ERR_INVALID_ARG, "config: %s must be an object", where);
    for (const cJSON *it = obj->child; it; it = it->next) {
        int nested_ok = 0;
        for (size_t i = 0; i < n_nested; i++) nested_ok |= !strcmp(it->string, nested[i]);
        if (nested_ok) continue; /* the caller reads these */
        const key_spec *k = NULL;
        for (size_t i = 0; i < nkeys && !k; i++)
            if (!strcmp(keys[i].name, it->string)) k = &keys[i];
        if (!k) return rs_errf(err, RS_ERR_INVALID_ARG, "config: unknown key '%s%s%s'", where, *where ? "." : "", it->string);
        char *p = (char *)target + k->off;
        const char *what = NULL;
        switch (k->type) {
        case K_STR:
        case K_PATH:
            if (!cJSON_IsString(it)) {
                what = "a string";
                break;
            }
            if (strlen(it->valuestring) + 1 > k->size) {
                what = "a shorter string";
                break;
            }
            /* Relative paths in a config file are relative to the file's directory. */
            if (k->type == K_PATH && it->valuestring[0]) {
                if (rs_path_join(p, k->size, base_dir, it->valuestring, NULL) != RS_OK) what = "a shorter path";
            } else
                snprintf(p, k->size, "%s", it->valuestring);
            break;
        case K_BOOL:
            if (!cJSON_IsBool(it)) {
                what = "true or false";
                break;
            }
            *(int *)p = cJSON_IsTrue(it);
            break;
        default: {
            double v = it->valuedouble;
            int integral = k->type == K_INT || k->type == K_LONG;
            if (!cJSON_IsNumber(it) || !isfinite(v) || v < k->lo || v > k->hi || (integral && v != floor(v))) {
                return rs_errf(err, RS_ERR_INVALID_ARG, "config: '%s%s%s' must be %s in [%g, %g]", where,
                               *where ? "." : "", it->string, integral ? "an integer" : "a number", k->lo, k->hi);
            }
            if (k->type == K_INT) *(int *)p = (int)v;
            if (k->type == K_LONG) *(long *)p = (long)v;
            if (k->type == K_FLOAT) *(float *)p = (float)v;
            if (k->type == K_DOUBLE) *(double *)p = v;
        }
        }
        if (what) return rs_errf(err, RS_ERR_INVALID_ARG, "config: '%s%s%s' must be %s", where, *where ? "." : "", it->string, what);
        if (k->has_off != NO_HAS) *(int *)((char *)target + k->has_off) = 1;
    }
    return RS_OK;
}

#define CF(field) offsetof(rs_srv_config, field)
#define RF(field) offsetof(rs_srv_router_cfg, field)

static const key_spec TOP_KEYS[] = {
    {"listen", K_STR, CF(listen), sizeof(((rs_srv_config *)0)->listen), 0, 0, NO_HAS},
    {"metrics_listen", K_STR, CF(metrics_listen), sizeof(((rs_srv_config *)0)->metrics_listen), 0, 0, NO_HAS},
    {"metrics_request_timeout_s", K_DOUBLE, CF(metrics_request_timeout_s), 0, 0.01, 3600, NO_HAS},
    {"http_listen", K_STR, CF(http_listen), sizeof(((rs_srv_config *)0)->http_listen), 0, 0, NO_HAS},
    {"http_request_timeout_s", K_DOUBLE, CF(http_request_timeout_s), 0, 0.01, 3600, NO_HAS},
    {"metrics_client_connections", K_INT, CF(metrics_client_connections), 0, 1, 4096, NO_HAS},
    {"metrics_max_connections", K_INT, CF(metrics_max_connections), 0, 1, 60000, NO_HAS},
    {"http_max_connections", K_INT, CF(http_max_connections), 0, 1, 60000, NO_HAS},
    {"metrics_open", K_BOOL, CF(metrics_open), 0, 0, 0, NO_HAS},
    {"cq_threads", K_INT, CF(cq_threads), 0, 1, 64, NO_HAS},
    {"grace_period_s", K_DOUBLE, CF(grace_s), 0, 0, 3600, NO_HAS},
    {"max_request_bytes", K_LONG, CF(max_request_bytes), 0, 1024, 1L << 30, NO_HAS},
    {"max_prompts_per_request", K_INT, CF(max_prompts), 0, 1, 65536, NO_HAS},
    {"max_prompt_bytes", K_LONG, CF(max_prompt_bytes), 0, 1, 1L << 28, NO_HAS},
    {"stream_window", K_INT, CF(stream_window), 0, 1, 4096, NO_HAS},
    {"log_level", K_STR, CF(log_level), sizeof(((rs_srv_config *)0)->log_level), 0, 0, NO_HAS},
};

static const key_spec TLS_KEYS[] = {
    {"cert", K_PATH, CF(tls_cert), RS_SRV_PATH, 0, 0, NO_HAS},
    {"key", K_PATH, CF(tls_key), RS_SRV_PATH, 0, 0, NO_HAS},
    {"client_ca", K_PATH, CF(tls_client_ca), RS_SRV_PATH, 0, 0, NO_HAS},
};

static const key_spec AUTH_KEYS[] = {
    {"bearer_tokens_file", K_PATH, CF(auth_tokens_file), RS_SRV_PATH, 0, 0, NO_HAS},
};

static const key_spec EXT_PROC_KEYS[] = {
    {"enabled", K_BOOL, CF(ext_proc), 0, 0, 0, NO_HAS},
    {"router", K_STR, CF(ext_proc_router), sizeof(((rs_srv_config *)0)->ext_proc_router), 0, 0, NO_HAS},
    {"strong_model", K_STR, CF(ext_proc_strong_model), sizeof(((rs_srv_config *)0)->ext_proc_strong_model), 0, 0, NO_HAS},
    {"weak_model", K_STR, CF(ext_proc_weak_model), sizeof(((rs_srv_config *)0)->ext_proc_weak_model), 0, 0, NO_HAS},
    {"rewrite_model", K_BOOL, CF(ext_proc_rewrite_model), 0, 0, 0, NO_HAS},
    {"fail_open", K_BOOL, CF(ext_proc_fail_open), 0, 0, 0, NO_HAS},
};

static const key_spec ROUTER_KEYS[] = {
    {"name", K_STR, RF(name), sizeof(((rs_srv_router_cfg *)0)->name), 0, 0, NO_HAS},
    {"model", K_PATH, RF(model), RS_SRV_PATH, 0, 0, NO_HAS},
    {"threshold", K_FLOAT, RF(threshold), 0, 0, 1, RF(has_threshold)},
    {"backend", K_STR, RF(backend), sizeof(((rs_srv_router_cfg *)0)->backend), 0, 0, NO_HAS},
    {"device", K_INT, RF(device), 0, 0, 1024, NO_HAS},
    {"replicas", K_INT, RF(replicas), 0, 1, RS_SRV_MAX_REPLICAS, NO_HAS},
    {"threads", K_INT, RF(threads), 0, 0, 1024, NO_HAS},
    {"max_tokens", K_INT, RF(max_tokens), 0, 0, 1 << 20, NO_HAS},
    {"max_batch_tokens", K_INT, RF(max_batch_tokens), 0, 16, 1 << 22, NO_HAS},
    {"max_batch_size", K_INT, RF(max_batch_size), 0, 1, 512, NO_HAS},
    {"max_queue_delay_us", K_LONG, RF(max_queue_delay_us), 0, 0, 10000000, NO_HAS},
    {"max_queue_tokens", K_LONG, RF(max_queue_tokens), 0, 16, 1L << 30, NO_HAS},
    {"max_queue_wait_ms", K_LONG, RF(max_queue_wait_ms), 0, 0, 3600000, NO_HAS},
};

static const key_spec ONLINE_KEYS[] = {
    {"strong_share", K_FLOAT, RF(online_share), 0, 1e-6, 1, RF(online)},
    {"window", K_INT, RF(online_window), 0, 1, 1 << 24, NO_HAS},
    {"min_samples", K_INT, RF(online_min_samples), 0, 1, 1 << 24, NO_HAS},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Appends device d to r->devices; what names the source in errors. */
static rs_status add_device(rs_srv_router_cfg *r, double d, const char *what, rs_err *err) {
    if (!(d >= 0 && d <= 1024 && d == floor(d)))
        return rs_errf(err, RS_ERR_INVALID_ARG, "config: %s: device indices are integers in [0, 1024]", what);
    if (r->n_devices == RS_SRV_MAX_REPLICAS)
        return rs_errf(err, RS_ERR_INVALID_ARG, "config: %s: at most %d devices", what, RS_SRV_MAX_REPLICAS);
    for (int i = 0; i < r->n_devices; i++)
        if (r->devices[i] == (int)d) return rs_errf(err, RS_ERR_INVALID_ARG, "config: %s: device %d listed twice", what, (int)d);
    r->devices[r->n_devices++] = (int)d;
    return RS_OK;
}

static rs_status read_devices(const cJSON *v, const char *where, rs_srv_router_cfg *r, rs_err *err) {
    char what[48];
    snprintf(what, sizeof what, "'%s.devices'", where);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) < 1)
        return rs_errf(err, RS_ERR_INVALID_ARG, "config: %s must be a non-empty array of device indices", what);
    r->n_devices = 0;
    for (const cJSON *it = v->child; it; it = it->next) {
        rs_status st = add_device(r, cJSON_IsNumber(it) ? it->valuedouble : -1, what, err);
        if (st != RS_OK) return st;
    }
    return RS_OK;
}

rs_status rs_srv_parse_devices(const char *s, rs_srv_router_cfg *r, rs_err *err) {
    r->n_devices = 0;
    for (const char *p = s;;) {
        char *end;
        double d = strtod(p, &end);
        if (end == p) return rs_errf(err, RS_ERR_INVALID_ARG, "--devices '%s': want indices like 0,1", s);
        rs_status st = add_device(r, d, "--devices", err);
        if (st != RS_OK) return st;
        if (!*end) return RS_OK;
        if (*end != ',') return rs_errf(err, RS_ERR_INVALID_ARG, "--devices '%s': want indices like 0,1", s);
        p = end + 1;
    }
}

int rs_srv_replicas(const rs_srv_router_cfg *r) {
    return r->replicas > 0 ? r->replicas : r->n_devices > 0 ? r->n_devices : 1;
}

static rs_status read_file(const char *path, cJSON **out, rs_err *err) {
    *out = NULL;
    char *buf = NULL;
    size_t n = 0;
    rs_status st = rs_file_read(path, 16u << 20, RS_FILE_TEXT, &buf, &n, err);
    if (st != RS_OK)
        return rs_errf(err, st, "config: %s%s", st == RS_ERR_NOT_FOUND || st == RS_ERR_IO ? "cannot open " : "", err->msg);
    const size_t pl = strlen(path);
    if ((pl > 5 && !strcmp(path + pl - 5, ".yaml")) || (pl > 4 && !strcmp(path + pl - 4, ".yml"))) {
        rs_status st = rs_yaml_to_json(buf, n, path, out, err);
        free(buf);
        return st;
    }
    const char *end = NULL;
    *out = cJSON_ParseWithOpts(buf, &end, 1);
    if (!*out) {
        size_t off = end ? (size_t)(end - buf) : 0;
        free(buf);
        return rs_errf(err, RS_ERR_FORMAT, "config: %s is not valid JSON (near byte %zu)", path, off);
    }
    free(buf);
    return RS_OK;
}

static void dir_of(const char *path, char *dir, size_t n) {
    snprintf(dir, n, "%s", path);
    char *s = strrchr(dir, '/');
    if (s)
        *s = 0;
    else
        snprintf(dir, n, ".");
}

rs_status rs_srv_config_load(const char *path, rs_srv_config *c, rs_err *err) {
    cJSON *root;
    rs_status st = read_file(path, &root, err);
    if (st != RS_OK) return st;
    char base[RS_SRV_PATH];
    dir_of(path, base, sizeof base);
    static const char *const TOP_NESTED[] = {"tls", "auth", "ext_proc", "routers"};
    st = read_object(root, "", TOP_KEYS, N(TOP_KEYS), c, base, TOP_NESTED, N(TOP_NESTED), err);
    const cJSON *v;
    if (st == RS_OK && (v = cJSON_GetObjectItemCaseSensitive(root, "tls")))
        st = read_object(v, "tls", TLS_KEYS, N(TLS_KEYS), c, base, NULL, 0, err);
    if (st == RS_OK && (v = cJSON_GetObjectItemCaseSensitive(root, "auth")))
        st = read_object(v, "auth", AUTH_KEYS, N(AUTH_KEYS), c, base, NULL, 0, err);
    if (st == RS_OK && (v = cJSON_GetObjectItemCaseSensitive(root, "ext_proc")))
        st = read_object(v, "ext_proc", EXT_PROC_KEYS, N(EXT_PROC_KEYS), c, base, NULL, 0, err);
    if (st == RS_OK && (v = cJSON_GetObjectItemCaseSensitive(root, "routers"))) {
        int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
        if (n < 1 || n > RS_SRV_MAX_ROUTERS)
            st = rs_errf(err, RS_ERR_INVALID_ARG, "config: 'routers' must be an array of 1 to %d routers", RS_SRV_MAX_ROUTERS);
        c->n_routers = 0;
        int i = 0;
        for (const cJSON *r = st == RS_OK ? v->child : NULL; r && st == RS_OK; r = r->next, i++) {
            char where[32];
            snprintf(where, sizeof where, "routers[%d]", i);
            rs_srv_router_cfg *rc = &c->routers[i];
            rs_srv_router_default(rc);
            static const char *const R_NESTED[] = {"online", "devices"};
            st = read_object(r, where, ROUTER_KEYS, N(ROUTER_KEYS), rc, base, R_NESTED, N(R_NESTED), err);
            const cJSON *dv;
            if (st == RS_OK && (dv = cJSON_GetObjectItemCaseSensitive(r, "devices")))
                st = read_devices(dv, where, rc, err);
            const cJSON *on;
            if (st == RS_OK && (on = cJSON_GetObjectItemCaseSensitive(r, "online"))) {
                char w2[48];
                snprintf(w2, sizeof w2, "%s.online", where);
                st = read_object(on, w2, ONLINE_KEYS, N(ONLINE_KEYS), rc, base, NULL, 0, err);
                if (st == RS_OK && !rc->online)
                    st = rs_errf(err, RS_ERR_INVALID_ARG, "config: '%s.strong_share' is required", w2);
            }
            if (st == RS_OK && !rc->model[0]) st = rs_errf(err, RS_ERR_INVALID_ARG, "config: '%s.model' is required", where);
            c->n_routers = i + 1;
        }
    }
    if (st == RS_OK) snprintf(c->path, sizeof c->path, "%s", path);
    cJSON_Delete(root);
    return st;
}

rs_status rs_srv_split_hostport(const char *s, char *host, int hn, int *port, rs_err *err) {
    const char *colon = strrchr(s, ':');
    if (!colon) return rs_errf(err, RS_ERR_INVALID_ARG, "'%s' is not host:port", s);
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= (size_t)hn) return rs_errf(err, RS_ERR_INVALID_ARG, "'%s': missing or overlong host", s);
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 0 || p > 65535) return rs_errf(err, RS_ERR_INVALID_ARG, "'%s': port must be 0 to 65535", s);
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)p;
    return RS_OK;
}

static rs_status check_readable(const char *what, const char *path, rs_err *err) {
    if (access(path, R_OK) != 0) return rs_errf(err, RS_ERR_NOT_FOUND, "config: %s '%s' is not a readable file", what, path);
    return RS_OK;
}

rs_status rs_srv_config_validate(const rs_srv_config *c, rs_err *err) {
    char host[256];
    int port;
    rs_err e2;
    rs_status st = rs_srv_split_hostport(c->listen, host, sizeof host, &port, &e2);
    if (st != RS_OK) return rs_errf(err, st, "config: listen: %s", e2.msg);
    if (c->metrics_listen[0] && (st = rs_srv_split_hostport(c->metrics_listen, host, sizeof host, &port, &e2)) != RS_OK)
        return rs_errf(err, st, "config: metrics_listen: %s", e2.msg);
    if (c->metrics_listen[0] && !strcmp(c->metrics_listen, c->listen) && port != 0)
        return rs_errf(err, RS_ERR_INVALID_ARG, "config: listen and metrics_listen are the same address");
    if (c->http_listen[0] && (st = rs_srv_split_hostport(c->http_listen, host, sizeof host, &port, &e2)) != RS_OK)
        return rs_errf(err, st, "config: http_listen: %s", e2.msg);
    if (c->http_listen[0] && port != 0 &&
        (!strcmp(c->http_listen, c->listen) || !strcmp(c->http_listen, c->metrics_listen)))
        return rs_errf(err, RS_ERR_INVALID_ARG, "config: http_listen is the same address as listen or metrics_listen");
    static const char *const LEVELS[] = {"debug", "info", "warn", "error"};
    int ok = 0;
    for (int i = 0; i < 4; i++) ok |= !strcmp(c->log_level, LEVELS[i]);
    if (!ok) return rs_errf(err, RS_ERR_INVALID_ARG, "config: log_level must be debug, info, warn or error");
    if (!!c->tls_cert[0] != !!c->tls_key[0]) return rs_errf(err, RS_ERR_INVALID_ARG, "config: tls needs both 'cert' and 'key'");
    if (c->tls_client_ca[0] && !c->tls_cert[0])
        return rs_errf(err, RS_ERR_INVALID_ARG, "config: tls.client_ca (mTLS) needs tls.cert and tls.key");
    if (c->tls_cert[0] && (st = check_readable("tls.cert", c->tls_cert, err)) != RS_OK) return st;
    if (c->tls_key[0] && (st = check_readable("tls.key", c->tls_key, err)) != RS_OK) return st;
    if (c->tls_client_ca[0] && (st = check_readable("tls.client_ca", c->tls_client_ca, err)) != RS_OK) return st;
    if (c->auth_tokens_file[0] && (st = check_readable("auth.bearer_tokens_file", c->auth_tokens_file, err)) != RS_OK)
        return st;
    if (c->n_routers < 1) return rs_errf(err, RS_ERR_INVALID_ARG, "config: no router (give --model DIR or 'routers' in --config)");
    for (int i = 0; i < c->n_routers; i++) {
        const rs_srv_router_cfg *r = &c->routers[i];
        if (!is_dir(r->model)) return rs_errf(err, RS_ERR_NOT_FOUND, "config: routers[%d].model '%s' is not a directory", i, r->model);
        if (r->max_queue_tokens < r->max_batch_tokens)
            return rs_errf(err, RS_ERR_INVALID_ARG, "config: routers[%d]: max_queue_tokens (%ld) must be >= max_batch_tokens (%d)", i,
                           r->max_queue_tokens, r->max_batch_tokens);
        if (r->max_tokens && r->max_tokens > r->max_batch_tokens)
            return rs_errf(err, RS_ERR_INVALID_ARG, "config: routers[%d]: max_tokens (%d) must be <= max_batch_tokens (%d)", i,
                           r->max_tokens, r->max_batch_tokens);
        if (strcmp(r->backend, "cpu") && strcmp(r->backend, "cuda") && strcmp(r->backend, "auto"))
            return rs_errf(err, RS_ERR_INVALID_ARG, "config: routers[%d].backend must be cpu, cuda or auto, not '%s'", i,
                           r->backend);
        if (r->n_devices > 0 && !strcmp(r->backend, "cpu"))
            return rs_errf(err, RS_ERR_INVALID_ARG, "config: routers[%d]: 'devices' needs backend cuda or auto", i);
        if (r->online && r->online_min_samples > r->online_window)
            return rs_errf(err, RS_ERR_INVALID_ARG, "config: routers[%d].online: min_samples must be <= window", i);
        for (int j = 0; j < i; j++)
            if (r->name[0] && !strcmp(r->name, c->routers[j].name))
                return rs_errf(err, RS_ERR_INVALID_ARG, "config: two routers are named '%s'", r->name);
    }
    return RS_OK;
}

/* The "threshold" of a router manifest, NaN when absent or unreadable. */
static float manifest_threshold(const char *dir) {
    rs_manifest m;
    int found = 0;
    if (rs_manifest_open(dir, &m, &found, NULL) != RS_OK || !found) return NAN;
    const float t = m.has_threshold ? m.threshold : NAN;
    rs_manifest_close(&m);
    return t;
}

rs_status rs_srv_config_thresholds(const rs_srv_config *c, float *out, rs_err *err) {
    rs_srv_config fresh;
    const rs_srv_config *src = c;
    if (c->path[0]) {
        rs_srv_config_default(&fresh);
        rs_status st = rs_srv_config_load(c->path, &fresh, err);
        if (st != RS_OK) return st;
        src = &fresh;
    }
    for (int i = 0; i < c->n_routers; i++) {
        out[i] = NAN;
        /* Match by position and model: a reload changes thresholds, not the router set. */
        const rs_srv_router_cfg *r = &c->routers[i];
        if (r->threshold_flag)
            out[i] = r->threshold;
        else if (c->path[0] && i < src->n_routers && src->routers[i].has_threshold)
            out[i] = src->routers[i].threshold;
        else if (!c->path[0] && r->has_threshold)
            out[i] = r->threshold;
        else
            out[i] = manifest_threshold(r->model);
    }
    return RS_OK;
}

int rs_srv_bearer_ok(const char (*tokens)[256], int n, const char *v, size_t vl) {
    /* Only public facts decide branches: the scheme, the presented value's
     * length and whether it holds a NUL. Each token is compared over its
     * whole zero-padded 256-byte buffer, so neither its bytes nor its
     * length change the time taken or the path through the code
     * (tests/unit/test_bearer_ct.c checks that under valgrind). */
    if (vl < 7 || strncasecmp(v, "Bearer ", 7)) return 0;
    v += 7;
    vl -= 7;
    if (vl == 0 || vl >= 256 || memchr(v, 0, vl)) return 0; /* tokens are 1..255 bytes without NUL */
    unsigned ok = 0;
    for (int t = 0; t < n; t++) {
        unsigned diff = 0;
        for (size_t j = 0; j < 256; j++) {
            const unsigned char pj = j < vl ? (unsigned char)v[j] : 0; /* (branches on the public length only) */
            diff |= (unsigned char)tokens[t][j] ^ pj;
        }
        ok |= 1u & ((diff - 1u) >> 8); /* diff in [0, 255]: 1 iff diff == 0, without a branch */
    }
    return (int)ok;
}
