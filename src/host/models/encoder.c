/* encoder.c — see encoder.h. The forward pass, written once for every
 * backend; all shapes are row-major [tokens, features] over packed
 * sequences. */
#include "encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct layer_weights {
    float *qkv_host;           /* (3H, H) Q, K, V rows fused: one GEMM instead of three */
    float *qkv_bias_host;      /* (3H) */
    rs_bweight *qkv_w, *qkv_b; /* backend views of the two above */
    rs_bweight *attn_out_w;    /* (H, H) */
    rs_bweight *attn_out_b;    /* (H) */
    rs_bweight *ln1_g, *ln1_b; /* (H) */
    rs_bweight *ff_in_w;       /* (I, H) */
    rs_bweight *ff_in_b;       /* (I) */
    rs_bweight *ff_out_w;      /* (H, I) */
    rs_bweight *ff_out_b;      /* (H) */
    rs_bweight *ln2_g, *ln2_b; /* (H) */
} layer_weights;

struct rs_encoder {
    rs_encoder_config cfg;
    rs_backend *b;
    int max_tokens, max_len;
    rs_bweight *word;       /* (V, H) */
    rs_bweight *pos;        /* (P, H) */
    rs_bweight *type;       /* (TV, H) */
    rs_bweight *emb_ln_g, *emb_ln_b;
    layer_weights *layers;  /* (n_layers) */
    rs_bweight *head_dense_w, *head_dense_b; /* (H, H), (H): pooler or classifier.dense */
    rs_bweight *head_out_w, *head_out_b;     /* (L, H), (L) */
    /* Activation arena in backend memory, sized for max_tokens rows. */
    float *x;      /* (T, H) hidden states */
    float *tmp;    /* (T, H) */
    float *ctx;    /* (T, H) attention output */
    float *qkv;    /* (T, 3H) */
    float *ff;     /* (T, I) */
    float *pooled; /* (T, H): one row per sequence; T bounds the sequence count */
    float *pooled2;/* (T, H) */
    float *logits; /* (T, L) */
    int32_t *pos_ids, *type_ids; /* (T) host */
};

static int json_int(const cJSON *c, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsNumber(v) ? v->valueint : dflt;
}

rs_status rs_encoder_config_parse(const cJSON *c, const char *dir, rs_encoder_config *out, rs_err *err) {
    memset(out, 0, sizeof *out);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(c, "model_type");
    const char *model_type = cJSON_IsString(mt) ? mt->valuestring : "";
    if (!strcmp(model_type, "bert"))
        out->family = RS_ENC_BERT;
    else if (!strcmp(model_type, "roberta") || !strcmp(model_type, "xlm-roberta"))
        out->family = RS_ENC_ROBERTA;
    else
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s/config.json: model_type '%s' is not an encoder we run "
                       "(bert, roberta, xlm-roberta)", dir, model_type);

    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(c, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const char *arch = cJSON_IsString(a0) ? a0->valuestring : "";
    snprintf(out->architecture, sizeof out->architecture, "%s", *arch ? arch : model_type);
    if (!strcmp(arch, "BertForSequenceClassification"))
        out->head = RS_HEAD_BERT_CLS;
    else if (!strcmp(arch, "RobertaForSequenceClassification") || !strcmp(arch, "XLMRobertaForSequenceClassification"))
        out->head = RS_HEAD_ROBERTA_CLS;
    else if (!*arch || !strcmp(arch, "BertModel") || !strcmp(arch, "RobertaModel") || !strcmp(arch, "XLMRobertaModel"))
        out->head = RS_HEAD_NONE;
    else
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s/config.json: architecture '%s' is not supported", dir, arch);
    if ((out->head == RS_HEAD_BERT_CLS && out->family != RS_ENC_BERT) ||
        (out->head == RS_HEAD_ROBERTA_CLS && out->family != RS_ENC_ROBERTA))
        return rs_errf(err, RS_ERR_FORMAT, "%s/config.json: architecture '%s' does not match model_type '%s'", dir,
                       arch, model_type);

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(c, "hidden_act");
    if (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu"))
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s/config.json: hidden_act '%s' (only exact 'gelu')", dir,
                       cJSON_IsString(act) ? act->valuestring : "?");
    const cJSON *pet = cJSON_GetObjectItemCaseSensitive(c, "position_embedding_type");
    if (pet && !(cJSON_IsString(pet) && !strcmp(pet->valuestring, "absolute")))
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s/config.json: position_embedding_type must be 'absolute'", dir);

    out->vocab_size = json_int(c, "vocab_size", 0);
    out->hidden = json_int(c, "hidden_size", 0);
    out->n_layers = json_int(c, "num_hidden_layers", 0);
    out->n_heads = json_int(c, "num_attention_heads", 0);
    out->intermediate = json_int(c, "intermediate_size", 0);
    out->max_positions = json_int(c, "max_position_embeddings", 0);
    out->type_vocab_size = json_int(c, "type_vocab_size", 2);
    out->pad_token_id = json_int(c, "pad_token_id", out->family == RS_ENC_ROBERTA ? 1 : 0);
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(c, "layer_norm_eps");
    out->ln_eps = cJSON_IsNumber(eps) ? (float)eps->valuedouble : 1e-12f;
    if (out->vocab_size <= 0 || out->hidden <= 0 || out->n_layers <= 0 || out->n_heads <= 0 ||
        out->intermediate <= 0 || out->max_positions <= 0 || out->type_vocab_size <= 0 ||
        out->hidden % out->n_heads || out->hidden > 16384 || out->n_layers > 256 || out->intermediate > 65536 ||
        out->pad_token_id < 0 || out->pad_token_id >= out->vocab_size)
        return rs_errf(err, RS_ERR_FORMAT, "%s/config.json: missing or inconsistent sizes (vocab %d, hidden %d, "
                       "layers %d, heads %d, intermediate %d, positions %d)", dir, out->vocab_size, out->hidden,
                       out->n_layers, out->n_heads, out->intermediate, out->max_positions);
    /* RoBERTa numbers positions from padding_idx + 1, losing that many. */
    out->max_seq_len = out->family == RS_ENC_ROBERTA ? out->max_positions - out->pad_token_id - 1 : out->max_positions;
    if (out->max_seq_len <= 0)
        return rs_errf(err, RS_ERR_FORMAT, "%s/config.json: max_position_embeddings %d leaves no positions", dir,
                       out->max_positions);
    if (out->head != RS_HEAD_NONE) {
        const cJSON *id2label = cJSON_GetObjectItemCaseSensitive(c, "id2label");
        out->n_labels = json_int(c, "num_labels", cJSON_IsObject(id2label) ? cJSON_GetArraySize(id2label) : 2);
        if (out->n_labels < 1 || out->n_labels > 8)
            return rs_errf(err, RS_ERR_UNSUPPORTED, "%s/config.json: %d labels (1 to 8 supported)", dir, out->n_labels);
    }
    return RS_OK;
}

/* Loads tensor `name` of the given shape into the backend. */
static rs_status load(rs_encoder *e, rs_model_files *f, const char *name, int64_t rows, int64_t cols,
                      rs_bweight **out, rs_err *err) {
    const float *data;
    int64_t shape[2] = {rows, cols};
    rs_status st = rs_model_files_f32(f, name, cols ? 2 : 1, shape, &data, err);
    if (st != RS_OK) return st;
    st = e->b->ops->weight_load(e->b, data, rows, cols ? cols : 1, out);
    return st == RS_OK ? st : rs_errf(err, st, "%s: uploading tensor '%s' failed", rs_model_files_dir(f), name);
}

static rs_status load_layer(rs_encoder *e, rs_model_files *f, int i, rs_err *err) {
    const int64_t H = e->cfg.hidden, I = e->cfg.intermediate;
    layer_weights *l = &e->layers[i];
    char name[256];
    rs_status st;
    l->qkv_host = malloc((size_t)(3 * H * H) * sizeof(float));
    l->qkv_bias_host = malloc((size_t)(3 * H) * sizeof(float));
    if (!l->qkv_host || !l->qkv_bias_host) return rs_errf(err, RS_ERR_NOMEM, "no memory for layer %d", i);
    static const char *const QKV[3] = {"query", "key", "value"};
    for (int k = 0; k < 3; k++) {
        const float *w, *bias;
        int64_t ws[2] = {H, H}, bs[1] = {H};
        snprintf(name, sizeof name, "encoder.layer.%d.attention.self.%s.weight", i, QKV[k]);
        if ((st = rs_model_files_f32(f, name, 2, ws, &w, err)) != RS_OK) return st;
        snprintf(name, sizeof name, "encoder.layer.%d.attention.self.%s.bias", i, QKV[k]);
        if ((st = rs_model_files_f32(f, name, 1, bs, &bias, err)) != RS_OK) return st;
        memcpy(l->qkv_host + k * H * H, w, (size_t)(H * H) * sizeof(float));
        memcpy(l->qkv_bias_host + k * H, bias, (size_t)H * sizeof(float));
    }
    if ((st = e->b->ops->weight_load(e->b, l->qkv_host, 3 * H, H, &l->qkv_w)) != RS_OK ||
        (st = e->b->ops->weight_load(e->b, l->qkv_bias_host, 3 * H, 1, &l->qkv_b)) != RS_OK)
        return rs_errf(err, st, "uploading layer %d attention weights failed", i);
    struct {
        const char *suffix;
        int64_t rows, cols;
        rs_bweight **dst;
    } T[] = {
        {"attention.output.dense.weight", H, H, &l->attn_out_w},
        {"attention.output.dense.bias", H, 0, &l->attn_out_b},
        {"attention.output.LayerNorm.weight", H, 0, &l->ln1_g},
        {"attention.output.LayerNorm.bias", H, 0, &l->ln1_b},
        {"intermediate.dense.weight", I, H, &l->ff_in_w},
        {"intermediate.dense.bias", I, 0, &l->ff_in_b},
        {"output.dense.weight", H, I, &l->ff_out_w},
        {"output.dense.bias", H, 0, &l->ff_out_b},
        {"output.LayerNorm.weight", H, 0, &l->ln2_g},
        {"output.LayerNorm.bias", H, 0, &l->ln2_b},
    };
    for (size_t k = 0; k < sizeof T / sizeof T[0]; k++) {
        snprintf(name, sizeof name, "encoder.layer.%d.%s", i, T[k].suffix);
        if ((st = load(e, f, name, T[k].rows, T[k].cols, T[k].dst, err)) != RS_OK) return st;
    }
    return RS_OK;
}

/* The weights of linear get their GEMM form now, at load (the CPU backend's
 * bf16 packing), not at the first forward. */
static rs_status prepare_gemms(rs_encoder *e, rs_err *err) {
    for (int i = 0; i < e->cfg.n_layers; i++) {
        layer_weights *l = &e->layers[i];
        rs_bweight *lw[] = {l->qkv_w, l->attn_out_w, l->ff_in_w, l->ff_out_w};
        for (size_t k = 0; k < sizeof lw / sizeof lw[0]; k++) {
            rs_status st = rs_backend_linear_prepare(e->b, lw[k]);
            if (st != RS_OK) return rs_errf(err, st, "preparing layer %d's GEMM weights failed", i);
        }
    }
    rs_bweight *hw[] = {e->head_dense_w, e->head_out_w};
    for (size_t k = 0; k < sizeof hw / sizeof hw[0]; k++) {
        rs_status st = hw[k] ? rs_backend_linear_prepare(e->b, hw[k]) : RS_OK;
        if (st != RS_OK) return rs_errf(err, st, "preparing the head's GEMM weights failed");
    }
    return RS_OK;
}

static rs_status alloc_arena(rs_encoder *e, rs_err *err) {
    const size_t T = (size_t)e->max_tokens, H = (size_t)e->cfg.hidden, I = (size_t)e->cfg.intermediate;
    const size_t L = (size_t)(e->cfg.n_labels ? e->cfg.n_labels : 1);
    struct {
        float **p;
        size_t n;
    } A[] = {{&e->x, T * H},      {&e->tmp, T * H},    {&e->ctx, T * H},     {&e->qkv, T * 3 * H},
             {&e->ff, T * I},     {&e->pooled, T * H}, {&e->pooled2, T * H}, {&e->logits, T * L}};
    size_t total = 0;
    for (size_t k = 0; k < sizeof A / sizeof A[0]; k++) {
        total += A[k].n * sizeof(float);
        if (e->b->ops->alloc(e->b, A[k].n * sizeof(float), (void **)A[k].p) != RS_OK)
            return rs_errf(err, RS_ERR_NOMEM, "%s backend: no memory for the activation arena (%zu MiB for %d tokens)",
                           e->b->ops->name, total >> 20, e->max_tokens);
    }
    e->pos_ids = malloc(T * sizeof *e->pos_ids);
    e->type_ids = calloc(T, sizeof *e->type_ids); /* single sequences: all type 0 */
    if (!e->pos_ids || !e->type_ids) return rs_errf(err, RS_ERR_NOMEM, "no memory for token metadata");
    return RS_OK;
}

rs_status rs_encoder_create(rs_model_files *f, rs_backend *b, int max_batch_tokens, int max_len, rs_encoder **out,
                            rs_err *err) {
    *out = NULL;
    rs_encoder *e = calloc(1, sizeof *e);
    if (!e) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    e->b = b;
    rs_status st = rs_encoder_config_parse(rs_model_files_config(f), rs_model_files_dir(f), &e->cfg, err);
    if (st != RS_OK) goto fail;
    if (max_len <= 0 || max_len > e->cfg.max_seq_len) max_len = e->cfg.max_seq_len;
    if (max_batch_tokens < max_len) max_batch_tokens = max_len;
    e->max_tokens = max_batch_tokens;
    e->max_len = max_len;
    const int64_t H = e->cfg.hidden, L = e->cfg.n_labels;
    if (b->ops->max_head_dim && H / e->cfg.n_heads > b->ops->max_head_dim) {
        st = rs_errf(err, RS_ERR_UNSUPPORTED, "%s: head dimension %lld: the %s backend's attention takes at most %d",
                     rs_model_files_dir(f), (long long)(H / e->cfg.n_heads), b->ops->name, b->ops->max_head_dim);
        goto fail;
    }
    if ((st = load(e, f, "embeddings.word_embeddings.weight", e->cfg.vocab_size, H, &e->word, err)) != RS_OK ||
        (st = load(e, f, "embeddings.position_embeddings.weight", e->cfg.max_positions, H, &e->pos, err)) != RS_OK ||
        (st = load(e, f, "embeddings.token_type_embeddings.weight", e->cfg.type_vocab_size, H, &e->type, err)) != RS_OK ||
        (st = load(e, f, "embeddings.LayerNorm.weight", H, 0, &e->emb_ln_g, err)) != RS_OK ||
        (st = load(e, f, "embeddings.LayerNorm.bias", H, 0, &e->emb_ln_b, err)) != RS_OK)
        goto fail;
    e->layers = calloc((size_t)e->cfg.n_layers, sizeof *e->layers);
    if (!e->layers) {
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
        goto fail;
    }
    for (int i = 0; i < e->cfg.n_layers; i++)
        if ((st = load_layer(e, f, i, err)) != RS_OK) goto fail;
    if (e->cfg.head != RS_HEAD_NONE) {
        int bert = e->cfg.head == RS_HEAD_BERT_CLS;
        if ((st = load(e, f, bert ? "pooler.dense.weight" : "classifier.dense.weight", H, H, &e->head_dense_w, err)) ||
            (st = load(e, f, bert ? "pooler.dense.bias" : "classifier.dense.bias", H, 0, &e->head_dense_b, err)) ||
            (st = load(e, f, bert ? "classifier.weight" : "classifier.out_proj.weight", L, H, &e->head_out_w, err)) ||
            (st = load(e, f, bert ? "classifier.bias" : "classifier.out_proj.bias", L, 0, &e->head_out_b, err)))
            goto fail;
    }
    if ((st = prepare_gemms(e, err)) != RS_OK || (st = alloc_arena(e, err)) != RS_OK) goto fail;
    *out = e;
    return RS_OK;
fail:
    rs_encoder_free(e);
    return st;
}

void rs_encoder_free(rs_encoder *e) {
    if (!e) return;
    const rs_backend_ops *ops = e->b->ops;
    rs_bweight *ws[] = {e->word, e->pos, e->type, e->emb_ln_g, e->emb_ln_b,
                        e->head_dense_w, e->head_dense_b, e->head_out_w, e->head_out_b};
    for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++)
        if (ws[k]) ops->weight_free(e->b, ws[k]);
    for (int i = 0; e->layers && i < e->cfg.n_layers; i++) {
        layer_weights *l = &e->layers[i];
        rs_bweight *lw[] = {l->qkv_w, l->qkv_b, l->attn_out_w, l->attn_out_b, l->ln1_g, l->ln1_b,
                            l->ff_in_w, l->ff_in_b, l->ff_out_w, l->ff_out_b, l->ln2_g, l->ln2_b};
        for (size_t k = 0; k < sizeof lw / sizeof lw[0]; k++)
            if (lw[k]) ops->weight_free(e->b, lw[k]);
        free(l->qkv_host);
        free(l->qkv_bias_host);
    }
    free(e->layers);
    float *bufs[] = {e->x, e->tmp, e->ctx, e->qkv, e->ff, e->pooled, e->pooled2, e->logits};
    for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++)
        if (bufs[k]) ops->release(e->b, bufs[k]);
    free(e->pos_ids);
    free(e->type_ids);
    free(e);
}

const rs_encoder_config *rs_encoder_get_config(const rs_encoder *e) { return &e->cfg; }

rs_status rs_encoder_forward(rs_encoder *e, const int32_t *ids, const int32_t *offsets, int n_seq,
                             rs_enc_output what, int normalize, float *out, rs_err *err) {
    const rs_backend_ops *ops = e->b->ops;
    const rs_encoder_config *c = &e->cfg;
    const int64_t H = c->hidden, I = c->intermediate;
    if (n_seq <= 0 || offsets[0] != 0 || offsets[n_seq] > e->max_tokens)
        return rs_errf(err, RS_ERR_INVALID_ARG, "forward: %d sequences of %d tokens (arena holds %d)", n_seq,
                       n_seq > 0 ? offsets[n_seq] : 0, e->max_tokens);
    if (what == RS_ENC_OUT_LOGITS && c->head == RS_HEAD_NONE)
        return rs_errf(err, RS_ERR_INVALID_ARG, "forward: '%s' has no classification head", c->architecture);
    const int T = offsets[n_seq];
    int max_len = 0;
    const int32_t pos0 = c->family == RS_ENC_ROBERTA ? c->pad_token_id + 1 : 0;
    for (int s = 0; s < n_seq; s++) {
        int len = offsets[s + 1] - offsets[s];
        if (len < 1 || len > e->max_len)
            return rs_errf(err, RS_ERR_INVALID_ARG, "forward: sequence %d has %d tokens (1 to %d allowed)", s, len,
                           e->max_len);
        if (len > max_len) max_len = len;
        for (int t = 0; t < len; t++) e->pos_ids[offsets[s] + t] = pos0 + t;
    }
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return rs_errf(err, RS_ERR_INVALID_ARG, "forward: token id %d outside the vocabulary (%d)", ids[t],
                           c->vocab_size);

    rs_status st;
#define RUN(call)                                                                                   \
    do {                                                                                            \
        if ((st = (call)) != RS_OK)                                                                 \
            return rs_errf(err, st, "%s backend: %s failed (%s:%d)", ops->name, #call, __FILE__, __LINE__); \
    } while (0)
    float *x = e->x, *tmp = e->tmp;
    RUN(ops->embed(e->b, ids, e->pos_ids, e->type_ids, T, e->word, e->pos, e->type, e->emb_ln_g, e->emb_ln_b,
                   c->ln_eps, (int)H, x));
    for (int i = 0; i < c->n_layers; i++) {
        const layer_weights *l = &e->layers[i];
        RUN(ops->linear(e->b, x, H, T, H, l->qkv_w, l->qkv_b, RS_ACT_NONE, e->qkv));
        RUN(ops->attention(e->b, e->qkv, offsets, n_seq, max_len, c->n_heads, (int)(H / c->n_heads), e->ctx));
        RUN(ops->linear(e->b, e->ctx, H, T, H, l->attn_out_w, l->attn_out_b, RS_ACT_NONE, tmp));
        RUN(ops->add_layernorm(e->b, tmp, x, l->ln1_g, l->ln1_b, c->ln_eps, T, H));
        float *t = x; /* post-LN: the normalised sum becomes the stream */
        x = tmp;
        tmp = t;
        RUN(ops->linear(e->b, x, H, T, H, l->ff_in_w, l->ff_in_b, RS_ACT_GELU, e->ff));
        RUN(ops->linear(e->b, e->ff, I, T, I, l->ff_out_w, l->ff_out_b, RS_ACT_NONE, tmp));
        RUN(ops->add_layernorm(e->b, tmp, x, l->ln2_g, l->ln2_b, c->ln_eps, T, H));
        t = x;
        x = tmp;
        tmp = t;
    }
    if (what == RS_ENC_OUT_LOGITS) {
        /* Both heads are dense+tanh on the first token, then a projection. */
        RUN(ops->pool(e->b, x, offsets, n_seq, H, 0, 0, e->pooled));
        RUN(ops->linear(e->b, e->pooled, H, n_seq, H, e->head_dense_w, e->head_dense_b, RS_ACT_TANH, e->pooled2));
        RUN(ops->linear(e->b, e->pooled2, H, n_seq, H, e->head_out_w, e->head_out_b, RS_ACT_NONE, e->logits));
        RUN(ops->to_host(e->b, out, e->logits, (size_t)n_seq * (size_t)c->n_labels));
    } else {
        RUN(ops->pool(e->b, x, offsets, n_seq, H, what == RS_ENC_OUT_MEAN, normalize, e->pooled));
        RUN(ops->to_host(e->b, out, e->pooled, (size_t)n_seq * (size_t)H));
    }
#undef RUN
    return RS_OK;
}

double rs_encoder_flops(const rs_encoder_config *c, const int32_t *offsets, int n_seq) {
    const double H = c->hidden, I = c->intermediate;
    double tokens = offsets[n_seq], sq = 0;
    for (int s = 0; s < n_seq; s++) {
        double len = offsets[s + 1] - offsets[s];
        sq += len * len;
    }
    /* Per layer: QKV, output projection and the two FFN GEMMs per token,
     * plus QK^T and SV per sequence (2 flops per multiply-add). */
    double per_layer = tokens * (2 * H * 3 * H + 2 * H * H + 2 * 2 * H * I) + 2 * 2 * sq * H;
    return per_layer * c->n_layers;
}
