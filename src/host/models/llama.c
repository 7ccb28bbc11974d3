/* llama.c — LlamaForCausalLM against the backend table (see llama.h).
 *
 * One forward: embed -> per layer [RMSNorm -> Q/K/V -> RoPE -> K/V into the
 * cache -> causal GQA attention (prefix, then the slot) -> O -> residual ->
 * RMSNorm -> SwiGLU MLP -> residual] -> final RMSNorm -> LM head on the
 * requested rows only. The residual add is fused into the next RMSNorm
 * (add_rmsnorm), so h holds the residual stream and delta the last block's
 * output until it is folded in. */
#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct llama_layer {
    rs_bweight *ln1, *wq, *wk, *wv, *wo, *ln2, *wg, *wu, *wd;
    float *k, *v;   /* (max_slots * slot_len, n_kv * D) this layer's cache */
    float *pk, *pv; /* (max_prefix, n_kv * D) the shared prefix's K/V */
} llama_layer;

struct rs_llama {
    rs_llama_config cfg;
    rs_llama_limits lim;
    int nh, nkv, inter; /* this shard's query heads, KV heads, MLP width */
    int nl;             /* layers loaded and run */
    rs_llama_allreduce_fn allreduce;
    void *ar_ctx;
    float **owned; /* column slices copied at load (the CPU backend points into them) */
    int n_owned;
    rs_backend *b;
    rs_bweight *tok_emb, *norm, *lm_head;
    llama_layer *layers;
    int n_prefix;
    float *inv_freq; /* (D/2) host */
    /* Activations, backend memory, sized for lim.max_tokens rows. */
    float *h, *xn, *delta; /* (T, H) */
    float *q, *att;        /* (T, n_heads * D) */
    float *kx, *vx;        /* (T, n_kv * D) */
    float *gate, *up;      /* (T, I) */
    float *sel;            /* (R, H) rows picked for the LM head */
    float *lg;             /* (R, V) logits */
    /* Host metadata. */
    int32_t *abs_pos, *dst, *zeros; /* (T) */
    /* Encoder mode (max_logit_rows 0): per-token slot and position, and the
     * hidden states on the host. */
    int32_t *eslot, *epos; /* (T) */
    float *hid;            /* (T, H) */
};

static int json_int(const cJSON *c, const char *key, int dflt, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return 1;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble) return 0;
    *out = v->valueint;
    return 1;
}

static float json_num(const cJSON *c, const char *key, float dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsNumber(v) ? (float)v->valuedouble : dflt;
}

rs_status rs_llama_config_parse(const cJSON *c, const char *dir, rs_llama_config *o, rs_err *err) {
    memset(o, 0, sizeof *o);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(c, "architectures");
    const cJSON *a0 = cJSON_IsArray(arch) ? cJSON_GetArrayItem(arch, 0) : NULL;
    if (a0 && (!cJSON_IsString(a0) || strcmp(a0->valuestring, "LlamaForCausalLM")))
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s/config.json: architecture '%s' is not LlamaForCausalLM", dir,
                       cJSON_IsString(a0) ? a0->valuestring : "?");
    if (!json_int(c, "vocab_size", 0, &o->vocab_size) || !json_int(c, "hidden_size", 0, &o->hidden) ||
        !json_int(c, "num_hidden_layers", 0, &o->n_layers) || !json_int(c, "num_attention_heads", 0, &o->n_heads) ||
        !json_int(c, "num_key_value_heads", o->n_heads, &o->n_kv_heads) ||
        !json_int(c, "intermediate_size", 0, &o->intermediate) ||
        !json_int(c, "max_position_embeddings", 2048, &o->max_positions))
        return rs_errf(err, RS_ERR_FORMAT, "%s/config.json: a size field is not an integer", dir);
    if (o->n_heads <= 0 || !json_int(c, "head_dim", o->n_heads ? o->hidden / o->n_heads : 0, &o->head_dim))
        return rs_errf(err, RS_ERR_FORMAT, "%s/config.json: bad num_attention_heads/head_dim", dir);
    if (o->vocab_size <= 0 || o->hidden <= 0 || o->n_layers <= 0 || o->n_kv_heads <= 0 ||
        o->n_heads % o->n_kv_heads || o->head_dim <= 0 || o->head_dim % 2 || o->head_dim > 256 ||
        o->n_heads / o->n_kv_heads > 16 || o->intermediate <= 0 || o->max_positions <= 0)
        return rs_errf(err, RS_ERR_UNSUPPORTED,
                       "%s/config.json: unsupported sizes (vocab %d, hidden %d, layers %d, heads %d/%d kv, "
                       "head_dim %d: even, <= 256, <= 16 heads per KV head)",
                       dir, o->vocab_size, o->hidden, o->n_layers, o->n_heads, o->n_kv_heads, o->head_dim);
    o->rms_eps = json_num(c, "rms_norm_eps", 1e-6f);
    o->rope_theta = json_num(c, "rope_theta", 10000.f);
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings");
    o->tie_embeddings = tie ? cJSON_IsTrue(tie) : 0; /* LlamaConfig's default: untied */
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(c, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s/config.json: hidden_act must be silu", dir);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "attention_bias")) ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "mlp_bias")))
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s/config.json: attention_bias/mlp_bias are not supported", dir);
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(c, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!t) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "llama3"))
            return rs_errf(err, RS_ERR_UNSUPPORTED, "%s/config.json: rope_scaling type '%s' (only llama3)", dir,
                           cJSON_IsString(t) ? t->valuestring : "?");
        o->rope_factor = json_num(rs, "factor", 0.f);
        o->rope_low_freq = json_num(rs, "low_freq_factor", 1.f);
        o->rope_high_freq = json_num(rs, "high_freq_factor", 4.f);
        if (!json_int(rs, "original_max_position_embeddings", 8192, &o->rope_orig_max_pos) || o->rope_factor <= 0 ||
            o->rope_high_freq <= o->rope_low_freq)
            return rs_errf(err, RS_ERR_FORMAT, "%s/config.json: bad llama3 rope_scaling", dir);
    }
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(c, "eos_token_id");
    if (cJSON_IsNumber(eos))
        o->eos_ids[o->n_eos++] = eos->valueint;
    else if (cJSON_IsArray(eos))
        for (const cJSON *it = eos->child; it && o->n_eos < 4; it = it->next)
            if (cJSON_IsNumber(it)) o->eos_ids[o->n_eos++] = it->valueint;
    return RS_OK;
}

void rs_llama_inv_freq(const rs_llama_config *c, float *inv_freq) {
    const int D = c->head_dim;
    for (int i = 0; i < D / 2; i++) {
        /* HF: 1 / base ** (arange(0, D, 2).float() / D), in fp32. */
        float f = 1.f / powf(c->rope_theta, (float)(2 * i) / (float)D);
        if (c->rope_factor > 0) {
            const double old = c->rope_orig_max_pos, lo = old / c->rope_low_freq, hi = old / c->rope_high_freq;
            const double wavelen = 2 * M_PI / f;
            double g = f;
            if (wavelen > lo)
                g = f / c->rope_factor;
            else if (wavelen >= hi) { /* between: interpolate */
                double smooth = (old / wavelen - c->rope_low_freq) / (c->rope_high_freq - c->rope_low_freq);
                g = (1 - smooth) * f / c->rope_factor + smooth * f;
            }
            f = (float)g;
        }
        inv_freq[i] = f;
    }
}

/* The checkpoint's tensor `name` as fp32, (rows, cols) (cols 1: a vector). */
static rs_status tensor(rs_model_files *files, const char *name, int64_t rows, int64_t cols, const float **data,
                        rs_err *err) {
    const int64_t shape[2] = {rows, cols};
    return rs_model_files_f32(files, name, cols > 1 ? 2 : 1, shape, data, err);
}

/* Rows [r0, r0 + nr) of a (rows, cols) tensor: a view of the file's data. */
static rs_status load_rows(rs_llama *m, rs_model_files *files, const char *name, int64_t rows, int64_t cols, int64_t r0,
                           int64_t nr, rs_bweight **out, rs_err *err) {
    const float *data;
    rs_status st = tensor(files, name, rows, cols, &data, err);
    if (st == RS_OK && (st = m->b->ops->weight_load(m->b, data + r0 * cols, nr, cols, out)) != RS_OK)
        return rs_errf(err, st, "loading %s into the backend failed", name);
    return st;
}

static rs_status load_w(rs_llama *m, rs_model_files *files, const char *name, int64_t rows, int64_t cols,
                        rs_bweight **out, rs_err *err) {
    return load_rows(m, files, name, rows, cols, 0, rows, out, err);
}

/* Columns [c0, c0 + nc) of a (rows, cols) matrix, copied (kept until free). */
static rs_status load_cols(rs_llama *m, rs_model_files *files, const char *name, int64_t rows, int64_t cols, int64_t c0,
                           int64_t nc, rs_bweight **out, rs_err *err) {
    const float *data;
    rs_status st = tensor(files, name, rows, cols, &data, err);
    if (st != RS_OK) return st;
    float **no = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *no);
    float *slice = no ? malloc((size_t)(rows * nc) * sizeof *slice) : NULL;
    if (no) m->owned = no;
    if (!slice) return rs_errf(err, RS_ERR_NOMEM, "no memory for a shard of %s", name);
    m->owned[m->n_owned++] = slice;
    for (int64_t r = 0; r < rows; r++) memcpy(slice + r * nc, data + r * cols + c0, (size_t)nc * sizeof *slice);
    st = m->b->ops->weight_load(m->b, slice, rows, nc, out);
    return st == RS_OK ? RS_OK : rs_errf(err, st, "loading %s into the backend failed", name);
}

void rs_llama_set_allreduce(rs_llama *m, rs_llama_allreduce_fn fn, void *ctx) {
    m->allreduce = fn;
    m->ar_ctx = ctx;
}

static rs_status alloc_act(rs_llama *m, size_t n_floats, float **out, rs_err *err) {
    rs_status st = m->b->ops->alloc(m->b, (n_floats ? n_floats : 1) * sizeof(float), (void **)out);
    return st == RS_OK ? RS_OK : rs_errf(err, st, "llama: no memory for %zu activation floats", n_floats);
}

rs_status rs_llama_create(rs_model_files *files, rs_backend *b, const rs_llama_limits *lim, rs_llama **out,
                          rs_err *err) {
    *out = NULL;
    const rs_backend_ops *ops = b->ops;
    if (!ops->embed_rows || !ops->add_rmsnorm || !ops->rope || !ops->swiglu || !ops->copy_rows || !ops->attention_kv)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "backend '%s' lacks the decoder ops LlamaForCausalLM needs", ops->name);
    const int tp = lim->tp_size > 1 ? lim->tp_size : 1;
    if (lim->max_tokens <= 0 || lim->max_slots <= 0 || lim->slot_len <= 0 || lim->max_prefix < 0 ||
        lim->max_logit_rows < 0 || lim->tp_rank < 0 || lim->tp_rank >= tp || lim->n_layers < 0)
        return rs_errf(err, RS_ERR_INVALID_ARG, "llama: bad limits");
    rs_llama *m = calloc(1, sizeof *m);
    if (!m) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    m->b = b;
    m->lim = *lim;
    rs_status st = rs_llama_config_parse(rs_model_files_config(files), rs_model_files_dir(files), &m->cfg, err);
    if (st != RS_OK) goto fail;
    const rs_llama_config *c = &m->cfg;
    if (c->n_heads % tp || c->n_kv_heads % tp || c->intermediate % tp) {
        st = rs_errf(err, RS_ERR_INVALID_ARG, "llama: tensor parallelism %d must divide the heads (%d), KV heads (%d) and "
                     "intermediate size (%d)", tp, c->n_heads, c->n_kv_heads, c->intermediate);
        goto fail;
    }
    if (ops->max_head_dim && c->head_dim > ops->max_head_dim) {
        st = rs_errf(err, RS_ERR_UNSUPPORTED, "%s: head_dim %d: the %s backend's attention takes at most %d",
                     rs_model_files_dir(files), c->head_dim, ops->name, ops->max_head_dim);
        goto fail;
    }
    if (lim->n_layers > c->n_layers) {
        st = rs_errf(err, RS_ERR_INVALID_ARG, "llama: %d layers asked for, the model has %d", lim->n_layers,
                     c->n_layers);
        goto fail;
    }
    m->nl = lim->n_layers ? lim->n_layers : c->n_layers;
    m->nh = c->n_heads / tp;
    m->nkv = c->n_kv_heads / tp;
    m->inter = c->intermediate / tp;
    const int rank = lim->tp_rank;
    /* Full widths of the checkpoint's matrices, and this shard's. */
    const int64_t H = c->hidden, D = c->head_dim, FQ = (int64_t)c->n_heads * D, FK = (int64_t)c->n_kv_heads * D;
    const int64_t FI = c->intermediate, QW = (int64_t)m->nh * D, KW = (int64_t)m->nkv * D, I = m->inter;
    const int64_t V = c->vocab_size, T = lim->max_tokens, R = lim->max_logit_rows;
    if (lim->max_prefix + lim->slot_len > c->max_positions) {
        st = rs_errf(err, RS_ERR_INVALID_ARG, "llama: prefix %d + slot %d positions exceed max_position_embeddings %d",
                     lim->max_prefix, lim->slot_len, c->max_positions);
        goto fail;
    }
    if ((st = load_w(m, files, "model.embed_tokens.weight", V, H, &m->tok_emb, err)) != RS_OK) goto fail;
    if ((st = load_w(m, files, "model.norm.weight", H, 1, &m->norm, err)) != RS_OK) goto fail;
    if (R && (st = load_w(m, files, c->tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", V, H,
                          &m->lm_head, err)) != RS_OK)
        goto fail;
    if (!(m->layers = calloc((size_t)m->nl, sizeof *m->layers))) {
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
        goto fail;
    }
    const size_t cache = (size_t)lim->max_slots * (size_t)lim->slot_len * (size_t)KW;
    for (int l = 0; l < m->nl; l++) {
        llama_layer *L = &m->layers[l];
        char n[160];
        /* A whole tensor; a shard's rows (r0, nr); a shard's columns (c0, nc). */
#define NAME(suffix) snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix)
#define W(field, suffix, rows, cols) \
    NAME(suffix);                    \
    if ((st = load_w(m, files, n, rows, cols, &L->field, err)) != RS_OK) goto fail;
#define WR(field, suffix, rows, cols, r0, nr) \
    NAME(suffix);                             \
    if ((st = load_rows(m, files, n, rows, cols, r0, nr, &L->field, err)) != RS_OK) goto fail;
#define WC(field, suffix, rows, cols, c0, nc) \
    NAME(suffix);                             \
    if ((st = (tp > 1 ? load_cols(m, files, n, rows, cols, c0, nc, &L->field, err)                  \
                      : load_w(m, files, n, rows, cols, &L->field, err))) != RS_OK)                  \
        goto fail;
        W(ln1, "input_layernorm.weight", H, 1)
        WR(wq, "self_attn.q_proj.weight", FQ, H, rank * QW, QW)
        WR(wk, "self_attn.k_proj.weight", FK, H, rank * KW, KW)
        WR(wv, "self_attn.v_proj.weight", FK, H, rank * KW, KW)
        WC(wo, "self_attn.o_proj.weight", H, FQ, rank * QW, QW)
        W(ln2, "post_attention_layernorm.weight", H, 1)
        WR(wg, "mlp.gate_proj.weight", FI, H, rank * I, I)
        WR(wu, "mlp.up_proj.weight", FI, H, rank * I, I)
        WC(wd, "mlp.down_proj.weight", H, FI, rank * I, I)
#undef WC
#undef WR
#undef W
#undef NAME
        /* The GEMM weights' backend form now, at load (the CPU's bf16 packing). */
        rs_bweight *gw[] = {L->wq, L->wk, L->wv, L->wo, L->wg, L->wu, L->wd};
        for (size_t k = 0; k < sizeof gw / sizeof gw[0]; k++)
            if ((st = rs_backend_linear_prepare(b, gw[k])) != RS_OK) {
                rs_errf(err, st, "llama: preparing layer %d's GEMM weights failed", l);
                goto fail;
            }
        if ((st = alloc_act(m, cache, &L->k, err)) != RS_OK || (st = alloc_act(m, cache, &L->v, err)) != RS_OK ||
            (st = alloc_act(m, (size_t)lim->max_prefix * KW, &L->pk, err)) != RS_OK ||
            (st = alloc_act(m, (size_t)lim->max_prefix * KW, &L->pv, err)) != RS_OK)
            goto fail;
    }
    if (m->lm_head && (st = rs_backend_linear_prepare(b, m->lm_head)) != RS_OK) {
        rs_errf(err, st, "llama: preparing the LM head's GEMM weights failed");
        goto fail;
    }
    if ((st = alloc_act(m, (size_t)(T * H), &m->h, err)) || (st = alloc_act(m, (size_t)(T * H), &m->xn, err)) ||
        (st = alloc_act(m, (size_t)(T * H), &m->delta, err)) || (st = alloc_act(m, (size_t)(T * QW), &m->q, err)) ||
        (st = alloc_act(m, (size_t)(T * QW), &m->att, err)) || (st = alloc_act(m, (size_t)(T * KW), &m->kx, err)) ||
        (st = alloc_act(m, (size_t)(T * KW), &m->vx, err)) || (st = alloc_act(m, (size_t)(T * I), &m->gate, err)) ||
        (st = alloc_act(m, (size_t)(T * I), &m->up, err)) || (st = alloc_act(m, (size_t)(R * H), &m->sel, err)) ||
        (st = alloc_act(m, (size_t)(R * V), &m->lg, err)))
        goto fail;
    m->inv_freq = malloc((size_t)(D / 2) * sizeof *m->inv_freq);
    m->abs_pos = malloc((size_t)T * sizeof(int32_t));
    m->dst = malloc((size_t)T * sizeof(int32_t));
    m->zeros = calloc((size_t)T, sizeof(int32_t));
    if (!R) {
        m->eslot = malloc((size_t)T * sizeof(int32_t));
        m->epos = malloc((size_t)T * sizeof(int32_t));
        m->hid = malloc((size_t)(T * H) * sizeof(float));
    }
    if (!m->inv_freq || !m->abs_pos || !m->dst || !m->zeros || (!R && (!m->eslot || !m->epos || !m->hid))) {
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
        goto fail;
    }
    rs_llama_inv_freq(c, m->inv_freq);
    *out = m;
    return RS_OK;
fail:
    rs_llama_free(m);
    return st;
}

void rs_llama_free(rs_llama *m) {
    if (!m) return;
    const rs_backend_ops *ops = m->b->ops;
    rs_bweight *ws[] = {m->tok_emb, m->norm, m->lm_head};
    for (size_t i = 0; i < 3; i++)
        if (ws[i]) ops->weight_free(m->b, ws[i]);
    for (int l = 0; m->layers && l < m->nl; l++) {
        llama_layer *L = &m->layers[l];
        rs_bweight *lw[] = {L->ln1, L->wq, L->wk, L->wv, L->wo, L->ln2, L->wg, L->wu, L->wd};
        for (size_t i = 0; i < 9; i++)
            if (lw[i]) ops->weight_free(m->b, lw[i]);
        float *bufs[] = {L->k, L->v, L->pk, L->pv};
        for (size_t i = 0; i < 4; i++)
            if (bufs[i]) ops->release(m->b, bufs[i]);
    }
    float *acts[] = {m->h, m->xn, m->delta, m->q, m->att, m->kx, m->vx, m->gate, m->up, m->sel, m->lg};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++)
        if (acts[i]) ops->release(m->b, acts[i]);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->inv_freq);
    free(m->abs_pos);
    free(m->dst);
    free(m->zeros);
    free(m->eslot);
    free(m->epos);
    free(m->hid);
    free(m);
}

const rs_llama_config *rs_llama_get_config(const rs_llama *m) { return &m->cfg; }
int rs_llama_prefix_len(const rs_llama *m) { return m->n_prefix; }

#define CK(call)                                                                        \
    do {                                                                                \
        rs_status st_ = (call);                                                         \
        if (st_ != RS_OK) return rs_errf(err, st_, "llama: backend op failed: %s", #call); \
    } while (0)

/* The forward itself. prefix_mode: tokens are prefix positions (slot 0 of
 * the prefix buffers, no prefix to attend to). hidden (host, [n, H]), when
 * not NULL, gets every token's hidden state after the loaded layers (see
 * rs_llama_embed). */
static rs_status forward(rs_llama *m, const int32_t *ids, const int32_t *slot, const int32_t *pos, int n,
                         int prefix_mode, const int32_t *rows, int n_rows, float *logits, float *hidden,
                         rs_err *err) {
    const rs_llama_config *c = &m->cfg;
    const rs_backend_ops *ops = m->b->ops;
    rs_backend *b = m->b;
    const int64_t H = c->hidden, D = c->head_dim, QW = (int64_t)m->nh * D, KW = (int64_t)m->nkv * D;
    const int64_t I = m->inter;
    const int n_prefix = prefix_mode ? 0 : m->n_prefix;
    for (int t = 0; t < n; t++) {
        m->abs_pos[t] = n_prefix + pos[t];
        m->dst[t] = prefix_mode ? pos[t] : slot[t] * m->lim.slot_len + pos[t];
    }
    if (prefix_mode) slot = m->zeros;
    CK(ops->embed_rows(b, m->tok_emb, ids, n, m->h));
    const float *delta = NULL;
    for (int l = 0; l < m->nl; l++) {
        llama_layer *L = &m->layers[l];
        float *ck = prefix_mode ? L->pk : L->k, *cv = prefix_mode ? L->pv : L->v;
        CK(ops->add_rmsnorm(b, m->h, delta, L->ln1, c->rms_eps, n, H, m->xn));
        CK(ops->linear(b, m->xn, H, n, H, L->wq, NULL, RS_ACT_NONE, m->q));
        CK(ops->linear(b, m->xn, H, n, H, L->wk, NULL, RS_ACT_NONE, m->kx));
        CK(ops->linear(b, m->xn, H, n, H, L->wv, NULL, RS_ACT_NONE, m->vx));
        CK(ops->rope(b, m->q, QW, n, m->abs_pos, m->nh, (int)D, m->inv_freq));
        CK(ops->rope(b, m->kx, KW, n, m->abs_pos, m->nkv, (int)D, m->inv_freq));
        CK(ops->copy_rows(b, ck, m->dst, m->kx, NULL, n, KW));
        CK(ops->copy_rows(b, cv, m->dst, m->vx, NULL, n, KW));
        CK(ops->attention_kv(b, m->q, n, slot, pos, L->pk, L->pv, n_prefix, ck, cv, m->lim.slot_len, m->nh, m->nkv,
                             (int)D, m->att));
        CK(ops->linear(b, m->att, QW, n, QW, L->wo, NULL, RS_ACT_NONE, m->delta));
        if (m->allreduce) CK(m->allreduce(m->ar_ctx, m->lim.tp_rank, b, m->delta, (size_t)n * (size_t)H));
        CK(ops->add_rmsnorm(b, m->h, m->delta, L->ln2, c->rms_eps, n, H, m->xn));
        CK(ops->linear(b, m->xn, H, n, H, L->wg, NULL, RS_ACT_NONE, m->gate));
        CK(ops->linear(b, m->xn, H, n, H, L->wu, NULL, RS_ACT_NONE, m->up));
        CK(ops->swiglu(b, m->gate, m->up, (int64_t)n * I));
        CK(ops->linear(b, m->gate, I, n, I, L->wd, NULL, RS_ACT_NONE, m->delta));
        if (m->allreduce) CK(m->allreduce(m->ar_ctx, m->lim.tp_rank, b, m->delta, (size_t)n * (size_t)H));
        delta = m->delta;
    }
    if (n_rows == 0 && !hidden) return RS_OK;
    /* Only the requested rows go through the final norm's output into the
     * LM head: with a 128k vocabulary the head is the largest GEMM. The
     * add folds the last layer's output into the residual stream h. */
    CK(ops->add_rmsnorm(b, m->h, delta, m->norm, c->rms_eps, n, H, m->xn));
    if (hidden) CK(ops->to_host(b, hidden, m->nl == c->n_layers ? m->xn : m->h, (size_t)n * (size_t)H));
    if (n_rows == 0) return RS_OK;
    CK(ops->copy_rows(b, m->sel, NULL, m->xn, rows, n_rows, H));
    CK(ops->linear(b, m->sel, H, n_rows, H, m->lm_head, NULL, RS_ACT_NONE, m->lg));
    CK(ops->to_host(b, logits, m->lg, (size_t)n_rows * (size_t)c->vocab_size));
    return RS_OK;
}

static rs_status check_ids(const rs_llama *m, const int32_t *ids, int n, rs_err *err) {
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= m->cfg.vocab_size)
            return rs_errf(err, RS_ERR_INVALID_ARG, "token id %d outside the vocabulary (%d)", ids[t],
                           m->cfg.vocab_size);
    return RS_OK;
}

rs_status rs_llama_set_prefix(rs_llama *m, const int32_t *ids, int n, rs_err *err) {
    m->n_prefix = 0;
    if (n > m->lim.max_prefix)
        return rs_errf(err, RS_ERR_TOO_LARGE, "prefix of %d tokens (at most %d)", n, m->lim.max_prefix);
    rs_status st = check_ids(m, ids, n, err);
    if (st != RS_OK) return st;
    /* Chunks of at most max_tokens: each sees the chunks before it. */
    for (int t0 = 0; t0 < n; t0 += m->lim.max_tokens) {
        int cnt = n - t0 < m->lim.max_tokens ? n - t0 : m->lim.max_tokens;
        for (int i = 0; i < cnt; i++) m->dst[i] = t0 + i; /* reused below as pos */
        int32_t *pos = malloc((size_t)cnt * sizeof *pos);
        if (!pos) return rs_errf(err, RS_ERR_NOMEM, "no memory");
        memcpy(pos, m->dst, (size_t)cnt * sizeof *pos);
        st = forward(m, ids + t0, NULL, pos, cnt, 1, NULL, 0, NULL, NULL, err);
        free(pos);
        if (st != RS_OK) return st;
    }
    m->n_prefix = n;
    return RS_OK;
}

rs_status rs_llama_forward(rs_llama *m, const int32_t *ids, const int32_t *slot, const int32_t *pos, int n,
                           const int32_t *rows, int n_rows, float *logits, rs_err *err) {
    if (n <= 0 || n > m->lim.max_tokens || n_rows < 0 || n_rows > m->lim.max_logit_rows)
        return rs_errf(err, RS_ERR_INVALID_ARG, "llama forward: %d tokens (1..%d), %d logit rows (..%d)", n,
                       m->lim.max_tokens, n_rows, m->lim.max_logit_rows);
    rs_status st = check_ids(m, ids, n, err);
    if (st != RS_OK) return st;
    for (int t = 0; t < n; t++)
        if (slot[t] < 0 || slot[t] >= m->lim.max_slots || pos[t] < 0 || pos[t] >= m->lim.slot_len)
            return rs_errf(err, RS_ERR_INVALID_ARG, "llama forward: token %d at slot %d position %d (limits %d, %d)", t,
                           slot[t], pos[t], m->lim.max_slots, m->lim.slot_len);
    for (int r = 0; r < n_rows; r++)
        if (rows[r] < 0 || rows[r] >= n) return rs_errf(err, RS_ERR_INVALID_ARG, "llama forward: logit row %d", rows[r]);
    return forward(m, ids, slot, pos, n, 0, rows, n_rows, logits, NULL, err);
}

rs_status rs_llama_embed(rs_llama *m, const int32_t *ids, const int32_t *offsets, int n_seq, int pool_last,
                         int normalize, float *out, rs_err *err) {
    if (!m->hid) return rs_errf(err, RS_ERR_INVALID_ARG, "llama embed: the model was opened with an LM head");
    if (n_seq <= 0 || n_seq > m->lim.max_slots || offsets[0] != 0 || offsets[n_seq] > m->lim.max_tokens)
        return rs_errf(err, RS_ERR_INVALID_ARG, "llama embed: %d sequences (1..%d) of %d tokens (..%d)", n_seq,
                       m->lim.max_slots, n_seq > 0 ? offsets[n_seq] : 0, m->lim.max_tokens);
    for (int s = 0; s < n_seq; s++) {
        const int len = offsets[s + 1] - offsets[s];
        if (len <= 0 || len > m->lim.slot_len)
            return rs_errf(err, RS_ERR_INVALID_ARG, "llama embed: sequence %d has %d tokens (1..%d)", s, len,
                           m->lim.slot_len);
        for (int t = 0; t < len; t++) {
            m->eslot[offsets[s] + t] = s;
            m->epos[offsets[s] + t] = t;
        }
    }
    const int n = offsets[n_seq];
    rs_status st = check_ids(m, ids, n, err);
    if (st != RS_OK) return st;
    if (m->n_prefix) return rs_errf(err, RS_ERR_INVALID_ARG, "llama embed: sequences stand alone, no prefix is set");
    if ((st = forward(m, ids, m->eslot, m->epos, n, 0, NULL, 0, NULL, m->hid, err)) != RS_OK) return st;
    const int H = m->cfg.hidden;
    for (int s = 0; s < n_seq; s++) {
        float *o = out + (size_t)s * (size_t)H;
        const int t0 = pool_last ? offsets[s + 1] - 1 : offsets[s], t1 = offsets[s + 1];
        memset(o, 0, (size_t)H * sizeof *o);
        for (int t = t0; t < t1; t++) {
            const float *h = m->hid + (size_t)t * (size_t)H;
            for (int i = 0; i < H; i++) o[i] += h[i];
        }
        double nrm = 0;
        for (int i = 0; i < H; i++) {
            o[i] /= (float)(t1 - t0);
            nrm += (double)o[i] * o[i];
        }
        const float scale = normalize ? (float)(1.0 / fmax(sqrt(nrm), 1e-12)) : 1.f;
        for (int i = 0; i < H; i++) o[i] *= scale;
    }
    return RS_OK;
}

double rs_llama_model_flops(const rs_llama *m, int n, double ctx, int n_rows) {
    rs_llama_config c = m->cfg;
    c.n_layers = m->nl;
    return rs_llama_flops(&c, n, ctx, n_rows);
}

double rs_llama_flops(const rs_llama_config *c, int n, double ctx, int n_rows) {
    const double H = c->hidden, QW = (double)c->n_heads * c->head_dim, KW = (double)c->n_kv_heads * c->head_dim;
    const double per_tok = 2 * (H * QW * 2 + H * KW * 2 + 3 * H * c->intermediate) + 4 * ctx * QW;
    return (double)n * per_tok * c->n_layers + 2.0 * n_rows * H * c->vocab_size;
}
