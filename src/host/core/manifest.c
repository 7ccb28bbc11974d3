/* manifest.c — see manifest.h. */
#include "manifest.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "file.h"

/* The keys some router kind reads, plus what train writes for people
 * ("trained") and the pins. */
static const char *const KNOWN_KEYS[] = {
    "name", "kind", "encoder", "head", "pooling", "normalize", "threshold", "strong_model", "weak_model",
    "max_tokens", "strong_labels", "encoder_layers", "parse_special_tokens", "trained", "sha256",
    "checkpoint", "models", "battles", "num_tiers", "tokenizer", "system_file", "classifier_file",
    "max_new_tokens", "max_slots", "tensor_parallel", "orig_vocab_size", "precision", "allreduce_timeout_ms",
};

int rs_manifest_known_key(const char *key) {
    for (size_t i = 0; i < sizeof KNOWN_KEYS / sizeof *KNOWN_KEYS; i++)
        if (!strcmp(key, KNOWN_KEYS[i])) return 1;
    return 0;
}

/* A string key; non-empty ones name files or models. */
static rs_status get_str(const rs_manifest *m, const char *key, const char **out, rs_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m->json, key);
    *out = NULL;
    if (!v) return RS_OK;
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: %s must be a non-empty string", m->path, key);
    *out = v->valuestring;
    return RS_OK;
}

/* One of the NULL-terminated names. */
static rs_status get_enum(const rs_manifest *m, const char *key, const char *const *names, const char *what,
                          const char **out, rs_err *err) {
    rs_status st = get_str(m, key, out, err);
    if (st != RS_OK || !*out) return st == RS_OK ? RS_OK : rs_errf(err, RS_ERR_INVALID_ARG, "%s: %s must be %s", m->path, key, what);
    for (size_t i = 0; names[i]; i++)
        if (!strcmp(*out, names[i])) return RS_OK;
    return rs_errf(err, RS_ERR_INVALID_ARG, "%s: %s must be %s", m->path, key, what);
}

/* A number in [lo, hi] (a whole one when whole); *has = 1 when present. */
static rs_status get_num(const rs_manifest *m, const char *key, double lo, double hi, int whole, double *out, int *has,
                         rs_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m->json, key);
    *has = v != NULL;
    if (!v) return RS_OK;
    const double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && d <= hi) || (whole && d != floor(d)))
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: %s must be %s in [%g, %g]", m->path, key,
                       whole ? "a whole number" : "a number", lo, hi);
    *out = d;
    return RS_OK;
}

static rs_status get_int(const rs_manifest *m, const char *key, double lo, double hi, int *out, int *has, rs_err *err) {
    double d = 0;
    int h = 0;
    rs_status st = get_num(m, key, lo, hi, 1, &d, &h, err);
    if (st == RS_OK && h) *out = (int)d;
    if (has) *has = h;
    return st;
}

static rs_status get_bool(const rs_manifest *m, const char *key, int *out, int *has, rs_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m->json, key);
    *has = v != NULL;
    if (!v) return RS_OK;
    if (!cJSON_IsBool(v)) return rs_errf(err, RS_ERR_INVALID_ARG, "%s: %s must be a boolean", m->path, key);
    *out = cJSON_IsTrue(v);
    return RS_OK;
}

static rs_status parse(const char *dir, rs_manifest *m, rs_err *err) {
    static const char *const POOLINGS[] = {"mean", "cls", "last", NULL};
    static const char *const PRECISIONS[] = {"fp32", "bf16", "bf16-emulated", NULL};
    if (!cJSON_IsObject(m->json)) return rs_errf(err, RS_ERR_FORMAT, "%s: not a JSON object", m->path);
    rs_status st;
    double d = 0;
    int has = 0;
    if ((st = get_str(m, "kind", &m->kind, err)) != RS_OK || (st = get_str(m, "name", &m->name, err)) != RS_OK ||
        (st = get_str(m, "strong_model", &m->strong_model, err)) != RS_OK ||
        (st = get_str(m, "weak_model", &m->weak_model, err)) != RS_OK ||
        (st = get_str(m, "encoder", &m->encoder, err)) != RS_OK || (st = get_str(m, "head", &m->head, err)) != RS_OK ||
        (st = get_str(m, "checkpoint", &m->checkpoint, err)) != RS_OK ||
        (st = get_str(m, "battles", &m->battles, err)) != RS_OK ||
        (st = get_str(m, "tokenizer", &m->tokenizer, err)) != RS_OK ||
        (st = get_str(m, "system_file", &m->system_file, err)) != RS_OK ||
        (st = get_str(m, "classifier_file", &m->classifier_file, err)) != RS_OK)
        return st;
    if (!m->kind) m->kind = "bert";
    if (m->encoder && (st = rs_path_join(m->encoder_dir, sizeof m->encoder_dir, dir, m->encoder, err)) != RS_OK)
        return rs_errf(err, st, "%s: encoder: %s", m->path, err->msg);
    if ((st = get_num(m, "threshold", 0, 1, 0, &d, &m->has_threshold, err)) != RS_OK)
        return rs_errf(err, st, "%s: threshold must be a number in [0, 1]", m->path);
    m->threshold = (float)d;
    if ((st = get_num(m, "max_tokens", 3, 1e6, 0, &d, &has, err)) != RS_OK)
        return rs_errf(err, st, "%s: max_tokens must be a number >= 3", m->path);
    if (has) m->max_tokens = (int)d;
    if ((st = get_enum(m, "precision", PRECISIONS, "\"fp32\", \"bf16\" or \"bf16-emulated\"", &m->precision, err)) != RS_OK ||
        (st = get_enum(m, "pooling", POOLINGS, "\"mean\", \"cls\" or \"last\"", &m->pooling, err)) != RS_OK ||
        (st = get_bool(m, "parse_special_tokens", &m->parse_special, &m->has_parse_special, err)) != RS_OK ||
        (st = get_bool(m, "normalize", &m->normalize, &m->has_normalize, err)) != RS_OK ||
        (st = get_int(m, "encoder_layers", 1, 1024, &m->encoder_layers, NULL, err)) != RS_OK ||
        (st = get_int(m, "num_tiers", 1, 64, &m->num_tiers, NULL, err)) != RS_OK ||
        (st = get_int(m, "max_new_tokens", 1, 64, &m->max_new_tokens, NULL, err)) != RS_OK ||
        (st = get_int(m, "max_slots", 1, 4096, &m->max_slots, NULL, err)) != RS_OK ||
        (st = get_int(m, "tensor_parallel", 1, 64, &m->tensor_parallel, NULL, err)) != RS_OK ||
        (st = get_int(m, "orig_vocab_size", 1, 1 << 30, &m->orig_vocab_size, NULL, err)) != RS_OK ||
        (st = get_int(m, "allreduce_timeout_ms", 0, 3600000, &m->allreduce_timeout_ms, &m->has_allreduce_timeout,
                      err)) != RS_OK)
        return st;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m->json, "strong_labels");
    if (v) {
        const int cnt = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
        if (cnt < 1 || cnt > RS_MANIFEST_MAX_LABELS)
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s: strong_labels must list 1 to %d label indices", m->path,
                           RS_MANIFEST_MAX_LABELS);
        for (const cJSON *it = v->child; it; it = it->next) {
            if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0 && it->valuedouble < RS_MANIFEST_MAX_LABELS) ||
                it->valuedouble != floor(it->valuedouble))
                return rs_errf(err, RS_ERR_INVALID_ARG, "%s: bad label index in strong_labels", m->path);
            m->strong_labels[m->n_strong_labels++] = it->valueint;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(m->json, "models"))) {
        int ok = cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0;
        for (const cJSON *it = ok ? v->child : NULL; it; it = it->next) ok &= cJSON_IsString(it);
        if (!ok) return rs_errf(err, RS_ERR_INVALID_ARG, "%s: models must be a non-empty array of model names", m->path);
        m->models = v;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(m->json, "sha256"))) {
        if (!cJSON_IsObject(v))
            return rs_errf(err, RS_ERR_FORMAT, "%s: \"sha256\" must map file names to sha256 digests", m->path);
        m->sha256 = v;
    }
    return RS_OK;
}

rs_status rs_manifest_from_json(const char *dir, cJSON *json, rs_manifest *m, rs_err *err) {
    memset(m, 0, sizeof *m);
    m->json = json;
    snprintf(m->path, sizeof m->path, "%s/routescore.json", dir);
    rs_status st = parse(dir, m, err);
    if (st != RS_OK) rs_manifest_close(m);
    return st;
}

rs_status rs_manifest_open(const char *dir, rs_manifest *m, int *found, rs_err *err) {
    memset(m, 0, sizeof *m);
    *found = 0;
    char path[RS_MANIFEST_PATH + 32];
    if (snprintf(path, sizeof path, "%s/routescore.json", dir) >= (int)sizeof path)
        return rs_errf(err, RS_ERR_TOO_LARGE, "router path too long: %.200s", dir);
    if (!rs_file_exists(path)) return RS_OK;
    *found = 1;
    cJSON *json = NULL;
    rs_status st = rs_file_read_json(path, &json, err);
    return st != RS_OK ? st : rs_manifest_from_json(dir, json, m, err);
}

void rs_manifest_close(rs_manifest *m) {
    if (!m) return;
    cJSON_Delete(m->json);
    memset(m, 0, sizeof *m);
}
