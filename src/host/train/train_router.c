/* train_router.c — writes a trained mf router directory (train_router.h):
 * head.safetensors and a pinned routescore.json, each written whole. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manifest.h"
#include "model_files.h"
#include "pins.h"
#include "safetensors.h"
#include "train_router.h"

/* Path of target relative to the directory base (both must exist). */
static rs_status relative_path(const char *base, const char *target, char *out, size_t n, rs_err *err) {
    char b[PATH_MAX], t[PATH_MAX];
    if (!realpath(base, b)) return rs_errf(err, RS_ERR_IO, "%s: %s", base, strerror(errno));
    if (!realpath(target, t)) return rs_errf(err, RS_ERR_IO, "%s: %s", target, strerror(errno));
    /* Longest common prefix that ends at a component boundary. */
    size_t common = 0;
    for (size_t i = 0;; i++) {
        char cb = b[i], ct = t[i];
        if ((cb == '/' || cb == '\0') && (ct == '/' || ct == '\0')) common = i;
        if (cb != ct || cb == '\0') break;
    }
    size_t used = 0;
    out[0] = '\0';
    for (const char *p = b + common; *p; p++) { /* one ".." per component of base left */
        if (*p == '/' && p[1] && p[1] != '/') {
            int w = snprintf(out + used, n - used, "%s..", used ? "/" : "");
            if (w < 0 || (size_t)w >= n - used) return rs_errf(err, RS_ERR_TOO_LARGE, "path too long");
            used += (size_t)w;
        }
    }
    const char *rest = t + common;
    while (*rest == '/') rest++;
    int w = snprintf(out + used, n - used, "%s%s", used && *rest ? "/" : "", rest);
    if (w < 0 || (size_t)w >= n - used) return rs_errf(err, RS_ERR_TOO_LARGE, "path too long");
    if (!out[0]) snprintf(out, n, ".");
    return RS_OK;
}

rs_status rs_train_mkdir_p(const char *dir, rs_err *err) {
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return rs_errf(err, RS_ERR_TOO_LARGE, "path too long");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                return rs_errf(err, RS_ERR_IO, "cannot create %s: %s", p, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return rs_errf(err, RS_ERR_IO, "%s is not a directory", dir);
    return RS_OK;
}

/* Writes text to path through a temp file + fsync + rename, so a reader
 * sees the old file or the new one, never a torn one. */
static rs_status write_atomic(const char *path, const char *text, rs_err *err) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return rs_errf(err, RS_ERR_TOO_LARGE, "path too long");
    FILE *f = fopen(tmp, "wb");
    if (!f) return rs_errf(err, RS_ERR_IO, "%s: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return rs_errf(err, RS_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return RS_OK;
}

static void json_num(cJSON *obj, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(obj, key, v);
    else cJSON_AddNullToObject(obj, key);
}

/* sha256 pins of the files the router reads (pins.h): its head, the
 * encoder's weights (every *.safetensors in its directory, shards included)
 * and the encoder files that decide tokens and defaults. */
static rs_status add_pins(const char *out_dir, const char *enc_dir, const char *enc_rel, cJSON *man, rs_err *err) {
    cJSON *pins = cJSON_AddObjectToObject(man, "sha256");
    if (!pins) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    char path[PATH_MAX], key[PATH_MAX], hex[RS_SHA256_HEX];
    snprintf(path, sizeof path, "%s/head.safetensors", out_dir);
    rs_status st = rs_pins_sha256_file(path, hex, err);
    if (st != RS_OK) return st;
    cJSON_AddStringToObject(pins, "head.safetensors", hex);
    static const char *const named[] = {"config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                        "sentence_bert_config.json", "modules.json", "1_Pooling/config.json",
                                        "model.safetensors.index.json"};
    size_t n_named = sizeof named / sizeof *named;
    DIR *d = opendir(enc_dir);
    if (!d) return rs_errf(err, RS_ERR_IO, "%s: %s", enc_dir, strerror(errno));
    struct dirent *de;
    /* the named files first, then the weights in directory order */
    for (size_t i = 0; st == RS_OK && i < n_named + 1; i++) {
        for (;;) {
            const char *file = NULL;
            if (i < n_named) file = named[i];
            else {
                while ((de = readdir(d)) && !(strlen(de->d_name) > 12 &&
                                              !strcmp(de->d_name + strlen(de->d_name) - 12, ".safetensors"))) {}
                if (!de) break;
                file = de->d_name;
            }
            struct stat sb;
            if (snprintf(path, sizeof path, "%s/%s", enc_dir, file) >= (int)sizeof path ||
                snprintf(key, sizeof key, "%s/%s", enc_rel, file) >= (int)sizeof key) {
                st = rs_errf(err, RS_ERR_TOO_LARGE, "path too long");
                break;
            }
            if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                if ((st = rs_pins_sha256_file(path, hex, err)) != RS_OK) break;
                cJSON_AddStringToObject(pins, key, hex);
            }
            if (i < n_named) break;
        }
    }
    closedir(d);
    return st;
}

/* head.safetensors and routescore.json, each written whole (temp file +
 * rename), the head first: an interrupted run leaves the old pair, or the
 * new head beside the old manifest, never a torn file. */
rs_status rs_train_router_write(const rs_train_router *o, rs_err *err) {
    const rs_train_split *sp = o->split;
    const rs_train_metrics *mh = o->heldout;
    const float *wf = o->head;
    const int d = o->d, nf = o->nf;
    char path[PATH_MAX], enc_rel[PATH_MAX], enc_dir[PATH_MAX];
    /* An encoder spec (a router dir of kind "embed"): its encoder and the
     * keys that decide how it embeds carry over. */
    cJSON *spec = NULL;
    snprintf(enc_dir, sizeof enc_dir, "%s", o->encoder);
    {
        rs_manifest m;
        int found = 0;
        rs_status st = rs_manifest_open(o->encoder, &m, &found, err);
        if (st != RS_OK) return st;
        if (found) {
            if (m.encoder) snprintf(enc_dir, sizeof enc_dir, "%s", m.encoder_dir);
            spec = m.json; /* its keys carry over below */
            m.json = NULL;
            rs_manifest_close(&m);
        }
    }
    rs_status st = relative_path(o->out, enc_dir, enc_rel, sizeof enc_rel, err);
    if (st != RS_OK) {
        cJSON_Delete(spec);
        return st;
    }
    snprintf(path, sizeof path, "%s/head.safetensors", o->out);
    /* wf = [w (d), lw (nf > d), b] */
    rs_st_out_tensor tensors[3] = {
        {.name = "mf.weight", .n_dims = 1, .shape = {d}, .data = wf},
        {.name = "mf.bias", .n_dims = 1, .shape = {1}, .data = wf + nf},
        {.name = "mf.length_weight", .n_dims = 1, .shape = {1}, .data = wf + d},
    };
    st = rs_st_write_f32(path, tensors, nf > d ? 3 : 2, err);
    if (st != RS_OK) {
        cJSON_Delete(spec);
        return st;
    }
    const char *name = o->name;
    char dir_name[PATH_MAX];
    if (!name) {
        char real[PATH_MAX];
        const char *r = realpath(o->out, real) ? real : o->out;
        const char *slash = strrchr(r, '/');
        snprintf(dir_name, sizeof dir_name, "%s", slash && slash[1] ? slash + 1 : r);
        name = dir_name;
    }
    const char *src = strrchr(o->source, '/') ? strrchr(o->source, '/') + 1 : o->source;
    cJSON *man = cJSON_CreateObject();
    cJSON_AddStringToObject(man, "name", name);
    cJSON_AddStringToObject(man, "kind", "mf");
    cJSON_AddStringToObject(man, "encoder", enc_rel);
    cJSON_AddStringToObject(man, "head", "head.safetensors");
    if (spec) {
        static const char *const keys[] = {"encoder_layers", "pooling", "normalize", "max_tokens"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, keys[k]);
            if (v) cJSON_AddItemToObject(man, keys[k], cJSON_Duplicate(v, 1));
        }
        cJSON_Delete(spec);
    } else {
        cJSON_AddStringToObject(man, "pooling", "mean");
        cJSON_AddTrueToObject(man, "normalize");
    }
    json_num(man, "threshold", (double)(float)o->threshold);
    cJSON_AddStringToObject(man, "strong_model", "gpt-4-1106-preview");
    cJSON_AddStringToObject(man, "weak_model", "mixtral-8x7b-instruct-v0.1");
    cJSON *tr = cJSON_AddObjectToObject(man, "trained");
    cJSON_AddNumberToObject(tr, "examples", (double)sp->n_train);
    cJSON_AddNumberToObject(tr, "heldout", (double)sp->n_held);
    if (sp->weighted) {
        json_num(tr, "examples_weight", sp->w_train);
        json_num(tr, "heldout_weight", sp->w_held);
    }
    cJSON_AddNumberToObject(tr, "l2", o->l2);
    cJSON_AddBoolToObject(tr, "length_term", nf > d);
    cJSON_AddBoolToObject(tr, "standardized", o->standardized);
    json_num(tr, "heldout_logloss", mh->logloss);
    json_num(tr, "heldout_auc", mh->auc);
    json_num(tr, "heldout_brier", mh->brier);
    cJSON_AddStringToObject(tr, "source", src);
    if ((st = add_pins(o->out, enc_dir, enc_rel, man, err)) != RS_OK) {
        cJSON_Delete(man);
        return st;
    }
    /* the manifest's own pin, over the form open will parse back */
    char *text = cJSON_Print(man);
    cJSON_Delete(man);
    man = text ? cJSON_Parse(text) : NULL;
    free(text);
    text = NULL;
    if (man && (st = rs_pins_update_manifest(man, err)) != RS_OK) {
        cJSON_Delete(man);
        return st;
    }
    text = man ? cJSON_Print(man) : NULL;
    cJSON_Delete(man);
    snprintf(path, sizeof path, "%s/routescore.json", o->out);
    size_t tl = text ? strlen(text) : 0;
    char *with_nl = text ? realloc(text, tl + 2) : NULL;
    if (with_nl) {
        text = with_nl;
        memcpy(text + tl, "\n", 2);
    }
    st = text ? write_atomic(path, text, err) : rs_errf(err, RS_ERR_NOMEM, "out of memory");
    free(text);
    return st;
}
