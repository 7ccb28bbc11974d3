/* mf.c — RouteLLM's MFModel (see mf.h) folded into one vector at open. */
#include "mf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_files.h"
#include "safetensors.h"

/* routellm/routers/matrix_factorization/model.py MODEL_IDS, in id order. */
static const char *const ROUTELLM_MODELS[] = {
    "RWKV-4-Raven-14B", "alpaca-13b", "chatglm-6b", "chatglm2-6b", "chatglm3-6b", "claude-1", "claude-2.0",
    "claude-2.1", "claude-instant-1", "codellama-34b-instruct", "deepseek-llm-67b-chat", "dolly-v2-12b",
    "dolphin-2.2.1-mistral-7b", "falcon-180b-chat", "fastchat-t5-3b", "gemini-pro", "gemini-pro-dev-api",
    "gpt-3.5-turbo-0125", "gpt-3.5-turbo-0314", "gpt-3.5-turbo-0613", "gpt-3.5-turbo-1106", "gpt-4-0125-preview",
    "gpt-4-0314", "gpt-4-0613", "gpt-4-1106-preview", "gpt4all-13b-snoozy", "guanaco-33b", "koala-13b",
    "llama-13b", "llama-2-13b-chat", "llama-2-70b-chat", "llama-2-7b-chat", "llama2-70b-steerlm-chat",
    "mistral-7b-instruct", "mistral-7b-instruct-v0.2", "mistral-medium", "mixtral-8x7b-instruct-v0.1",
    "mpt-30b-chat", "mpt-7b-chat", "nous-hermes-2-mixtral-8x7b-dpo", "oasst-pythia-12b", "openchat-3.5",
    "openchat-3.5-0106", "openhermes-2.5-mistral-7b", "palm-2", "pplx-70b-online", "pplx-7b-online",
    "qwen-14b-chat", "qwen1.5-4b-chat", "qwen1.5-72b-chat", "qwen1.5-7b-chat", "solar-10.7b-instruct-v1.0",
    "stablelm-tuned-alpha-7b", "starling-lm-7b-alpha", "stripedhyena-nous-7b", "tulu-2-dpo-70b", "vicuna-13b",
    "vicuna-33b", "vicuna-7b", "wizardlm-13b", "wizardlm-70b", "yi-34b-chat", "zephyr-7b-alpha", "zephyr-7b-beta",
};
#define N_ROUTELLM_MODELS ((int)(sizeof ROUTELLM_MODELS / sizeof ROUTELLM_MODELS[0]))

struct rs_mf {
    int text_dim;
    float *v; /* (text_dim) text_proj^T (classifier ⊙ (P̂_strong − P̂_weak)) */
};

/* Id of `name` in the manifest's list or RouteLLM's table; -1 if absent. */
static int model_id(const cJSON *models, const char *name) {
    if (!models) {
        for (int i = 0; i < N_ROUTELLM_MODELS; i++)
            if (!strcmp(ROUTELLM_MODELS[i], name)) return i;
        return -1;
    }
    int i = 0;
    for (const cJSON *it = models->child; it; it = it->next, i++)
        if (cJSON_IsString(it) && !strcmp(it->valuestring, name)) return i;
    return -1;
}

static const rs_st_tensor *f32_2d(const rs_st_file *f, const char *name) {
    const rs_st_tensor *t = rs_st_find(f, name);
    return t && t->n_dims == 2 && (t->dtype == RS_DTYPE_F32 || t->dtype == RS_DTYPE_F16 || t->dtype == RS_DTYPE_BF16)
               ? t
               : NULL;
}

rs_status rs_mf_open(const char *path, const cJSON *models, const char *strong, const char *weak, rs_mf **out,
                     rs_err *err) {
    *out = NULL;
    if (models && !cJSON_IsArray(models)) return rs_errf(err, RS_ERR_INVALID_ARG, "\"models\" must be an array of names");
    const int n_names = models ? cJSON_GetArraySize(models) : N_ROUTELLM_MODELS;
    const int is = model_id(models, strong), iw = model_id(models, weak);
    if (is < 0 || iw < 0)
        return rs_errf(err, RS_ERR_INVALID_ARG, "model '%s' is not in the %s", is < 0 ? strong : weak,
                       models ? "manifest's \"models\" list" : "RouteLLM MODEL_IDS table (give a \"models\" list)");
    rs_st_file *f;
    rs_status st = rs_st_open(path, &f, err);
    if (st != RS_OK) return st;
    const rs_st_tensor *P = f32_2d(f, "P.weight"), *W = f32_2d(f, "text_proj.0.weight"),
                       *c = f32_2d(f, "classifier.0.weight");
    float *buf = NULL;
    rs_mf *m = NULL;
    if (!P || !c) {
        st = rs_errf(err, RS_ERR_NOT_FOUND, "%s: needs 2-d float tensors 'P.weight' [models, dim] and "
                     "'classifier.0.weight' [1, dim] (RouteLLM MFModel layout)", path);
        goto done;
    }
    const int64_t M = P->shape[0], D = P->shape[1];
    const int64_t T = W ? W->shape[1] : D;
    if (c->shape[0] != 1 || c->shape[1] != D || (W && W->shape[0] != D) || M < 2 || D < 1 || T < 1 || T > (1 << 20)) {
        st = rs_errf(err, RS_ERR_FORMAT, "%s: shapes disagree: P.weight [%lld, %lld], classifier.0.weight [%lld, %lld]%s",
                     path, (long long)M, (long long)D, (long long)c->shape[0], (long long)c->shape[1],
                     W ? ", text_proj.0.weight must be [dim, text_dim]" : "");
        goto done;
    }
    if (n_names > M || is >= M || iw >= M) {
        st = rs_errf(err, RS_ERR_FORMAT, "%s: P.weight has %lld models but the name table has %d", path, (long long)M,
                     n_names);
        goto done;
    }
    m = calloc(1, sizeof *m);
    buf = malloc((size_t)(3 * D + (W ? D * T : 0)) * sizeof *buf);
    if (!m || !buf || !(m->v = calloc((size_t)T, sizeof *m->v))) {
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
        goto done;
    }
    m->text_dim = (int)T;
    float *ps = buf, *pw = buf + D, *cw = buf + 2 * D, *wt = buf + 3 * D;
    const size_t row = (size_t)D * rs_st_dtype_size(P->dtype);
    rs_convert_f32(ps, (const char *)P->data + (size_t)is * row, P->dtype, (size_t)D);
    rs_convert_f32(pw, (const char *)P->data + (size_t)iw * row, P->dtype, (size_t)D);
    rs_convert_f32(cw, c->data, c->dtype, (size_t)D);
    /* F.normalize(p=2, eps=1e-12): x / max(||x||, eps). */
    double ns = 0, nw = 0;
    for (int64_t d = 0; d < D; d++) ns += (double)ps[d] * ps[d], nw += (double)pw[d] * pw[d];
    ns = fmax(sqrt(ns), 1e-12);
    nw = fmax(sqrt(nw), 1e-12);
    /* u[d] = c[d] (P̂s[d] − P̂w[d]); v = W^T u (W is [dim, text_dim]). */
    double *u = calloc((size_t)D, sizeof *u), *v = calloc((size_t)T, sizeof *v);
    if (!u || !v) {
        free(u);
        free(v);
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
        goto done;
    }
    for (int64_t d = 0; d < D; d++) u[d] = (double)cw[d] * (ps[d] / ns - pw[d] / nw);
    if (W) {
        rs_convert_f32(wt, W->data, W->dtype, (size_t)(D * T));
        for (int64_t d = 0; d < D; d++)
            for (int64_t t = 0; t < T; t++) v[t] += u[d] * wt[d * T + t];
    } else {
        for (int64_t d = 0; d < D; d++) v[d] = u[d];
    }
    for (int64_t t = 0; t < T; t++) m->v[t] = (float)v[t];
    free(u);
    free(v);
done:
    free(buf);
    rs_st_close(f);
    if (st != RS_OK) {
        rs_mf_close(m);
        return st;
    }
    *out = m;
    return RS_OK;
}

void rs_mf_close(rs_mf *m) {
    if (!m) return;
    free(m->v);
    free(m);
}

int rs_mf_input_dim(const rs_mf *m) { return m->text_dim; }

float rs_mf_win_prob(const rs_mf *m, const float *emb) {
    double z = 0;
    for (int t = 0; t < m->text_dim; t++) z += (double)m->v[t] * emb[t];
    return (float)(1.0 / (1.0 + exp(-z)));
}
