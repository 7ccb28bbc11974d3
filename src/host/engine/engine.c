/* engine.c — a router: tokenizer + encoder + scoring head, behind engine.h.
 *
 * A router directory is either a plain Hugging Face model directory (a
 * *ForSequenceClassification checkpoint is the `bert` router; a bare encoder
 * only embeds) or a directory with a manifest, routescore.json:
 *   {"name", "kind": "bert"|"mf"|"embed", "encoder": path relative to the
 *    router dir (default "."), "head": mf weights file, "pooling":
 *    "mean"|"cls"|"last", "normalize", "threshold", "strong_model",
 *    "weak_model", "max_tokens", "strong_labels": [label indices summed into
 *    win_prob], "encoder_layers": N}
 * The encoder is a BERT/XLM-R model (encoder.h) or a LlamaForCausalLM used
 * as one (llama.h rs_llama_embed: the hidden state after its first
 * "encoder_layers" layers, pooled by "mean" or "last" token).
 * An mf head is mf.weight [H], mf.bias [1] and optionally mf.length_weight [1]
 * (times log(token count) - 3.5, added to the logit).
 *
 * DESIGN: score() tokenizes a group of prompts in parallel (the tokenizer is
 * immutable, so OpenMP threads share it), packs the ids back to back until
 * the arena's token budget is full, runs one forward, and maps the outputs
 * back to prompt order. All buffers are allocated at open. */
#include "engine.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "file.h"
#include "causal_router.h"
#include "encoder.h"
#include "llama.h"
#include "mf.h"
#include "pins.h"
#include "model_files.h"
#include "sw.h"
#include "tokenizer.h"

#define RS_DEFAULT_BATCH_TOKENS 16384
#define RS_MAX_BATCH_SEQS 512
#define RS_STAGE_SLOTS 64 /* prompts tokenized in parallel at a time */
/* A Llama encoder keeps a KV cache slot of max_tokens positions per prompt
 * of a batch: up to 32 prompts a forward, fewer when they may be long, so
 * the cache holds at most 8192 positions (32 x 256, the default). */
#define RS_LLM_ENC_SEQS 32
#define RS_LLM_ENC_POSITIONS 8192
#define RS_LLM_ENC_MAX_TOKENS 256

/* KIND_CAUSAL (causal_router.c): a Llama rating model, not the encoder path. */
/* KIND_MF_ROUTELLM (mf.c) and KIND_SW_RANKING (sw.c) score an embedding: the
 * client's (rs_engine_score_embeddings) or the manifest's encoder's. */
typedef enum router_kind { KIND_BERT, KIND_MF, KIND_EMBED, KIND_CAUSAL, KIND_MF_ROUTELLM, KIND_SW_RANKING } router_kind;
static const char *const KIND_NAMES[] = {"bert", "mf", "embed", "causal_llm", "mf_routellm", "sw_ranking"};
#define N_KINDS 6

struct rs_engine {
    char name[128], strong[128], weak[128];
    router_kind kind;
    float threshold;
    int max_tokens;  /* per prompt, specials included */
    int batch_tokens;
    int pool_mean, pool_last, normalize;
    int enc_layers; /* manifest "encoder_layers" (Llama encoders; 0: all) */
    int parse_special; /* manifest "parse_special_tokens": specials in prompts become ids (HF) */
    rs_precision precision; /* the CPU backend's GEMMs (manifest "precision", --precision) */
    int strong_labels[RS_MAX_LABELS], n_strong_labels;
    float *mf_w, mf_b; /* (H), the mf head */
    float mf_len_w;    /* optional mf.length_weight: z += w * (log(tokens) - RS_MF_LEN_CENTER) */
    int mf_len;

    rs_model_files *files;
    rs_backend *backend;
    rs_encoder *enc;
    rs_llama *llm;     /* a Llama model as the encoder (enc and cfg stay NULL) */
    int hidden, vocab; /* the encoder's width and vocabulary */
    const char *arch;  /* the encoder's config.json architecture */
    int max_seqs;      /* sequences per forward */
    rs_causal *causal; /* KIND_CAUSAL only: then enc, cfg and staging stay NULL */
    rs_mf *mf;         /* KIND_MF_ROUTELLM */
    rs_sw *sw;         /* KIND_SW_RANKING */
    int emb_dim;       /* embedding width the mf_routellm/sw_ranking head takes */
    rs_tokenizer *tok;
    const rs_encoder_config *cfg;

    /* Staging, sized at open. */
    int32_t *stage;        /* (RS_STAGE_SLOTS, max_tokens) ids of prompts being tokenized */
    size_t *stage_n;       /* (RS_STAGE_SLOTS) */
    rs_score *stage_meta;  /* (RS_STAGE_SLOTS) */
    int32_t *pack;         /* (batch_tokens) ids of the batch, packed */
    int32_t *offsets;      /* (RS_MAX_BATCH_SEQS + 1) */
    size_t *owner;         /* (RS_MAX_BATCH_SEQS) prompt index of each packed sequence */
    float *out;            /* (RS_MAX_BATCH_SEQS, max(H, labels)) forward outputs */
    int n_seq;
};

void rs_engine_opts_default(rs_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cpu";
}

static void copy_str(char *dst, size_t n, const cJSON *obj, const char *key, const char *dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    /* dflt may be dst itself (keep the current value): snprintf must not
     * read the buffer it writes. */
    if (cJSON_IsString(v))
        snprintf(dst, n, "%s", v->valuestring);
    else if (dflt != dst)
        snprintf(dst, n, "%s", dflt);
}

/* Reads an optional int from a JSON file's key (sentence-transformers and
 * tokenizer configs); 0 when absent. */
static int optional_json_int(const char *dir, const char *file, const char *key) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    cJSON *j = NULL;
    if (!rs_file_exists(path) || rs_file_read_json(path, &j, NULL) != RS_OK) return 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    int r = cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble < 1e7 ? v->valueint : 0;
    cJSON_Delete(j);
    return r;
}

/* sentence-transformers pipeline defaults: pooling from 1_Pooling/config.json,
 * normalisation when modules.json lists a Normalize module. */
static void sentence_transformers_defaults(rs_engine *e, const char *dir) {
    e->pool_mean = optional_json_int(dir, "1_Pooling/config.json", "pooling_mode_cls_token") ? 0 : 1;
    char path[4200];
    snprintf(path, sizeof path, "%s/modules.json", dir);
    char *text = NULL;
    if (rs_file_exists(path) && rs_file_read(path, 1 << 20, RS_FILE_TEXT, &text, NULL, NULL) == RS_OK)
        e->normalize = strstr(text, "models.Normalize") != NULL;
    free(text);
}

static rs_status parse_manifest(rs_engine *e, const char *dir, const cJSON *m, char *enc_dir, size_t n,
                                char *head_path, size_t hn, int *max_tokens, rs_err *err) {
    char kind[32], enc[2048], head[1024];
    copy_str(kind, sizeof kind, m, "kind", "bert");
    copy_str(enc, sizeof enc, m, "encoder", ".");
    copy_str(head, sizeof head, m, "head", "");
    int k;
    for (k = 0; k < N_KINDS && strcmp(kind, KIND_NAMES[k]); k++) {}
    if (k == N_KINDS)
        return rs_errf(err, RS_ERR_INVALID_ARG,
                       "%s/routescore.json: unknown kind '%s' (bert, mf, embed, causal_llm, mf_routellm, sw_ranking)",
                       dir, kind);
    e->kind = (router_kind)k;
    rs_status st = rs_path_join(enc_dir, n, dir, enc, err);
    if (st != RS_OK) return rs_errf(err, st, "%s/routescore.json: encoder: %s", dir, err->msg);
    if (e->kind == KIND_MF && !*head)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: kind 'mf' needs a \"head\" file", dir);
    if (*head && (st = rs_path_join(head_path, hn, dir, head, err)) != RS_OK)
        return rs_errf(err, st, "%s/routescore.json: head: %s", dir, err->msg);
    copy_str(e->name, sizeof e->name, m, "name", e->name);
    copy_str(e->strong, sizeof e->strong, m, "strong_model", e->strong);
    copy_str(e->weak, sizeof e->weak, m, "weak_model", e->weak);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "threshold");
    if (v) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 1))
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: threshold must be a number in [0, 1]", dir);
        e->threshold = (float)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(m, "max_tokens"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 3 || v->valuedouble > 1e6)
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: max_tokens must be a number >= 3", dir);
        *max_tokens = v->valueint;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(m, "pooling"))) {
        if (!cJSON_IsString(v) ||
            (strcmp(v->valuestring, "mean") && strcmp(v->valuestring, "cls") && strcmp(v->valuestring, "last")))
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: pooling must be \"mean\", \"cls\" or \"last\"",
                           dir);
        e->pool_mean = !strcmp(v->valuestring, "mean");
        e->pool_last = !strcmp(v->valuestring, "last");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(m, "encoder_layers"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1024 || v->valuedouble != (double)v->valueint)
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: encoder_layers must be a whole number >= 1", dir);
        e->enc_layers = v->valueint;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(m, "parse_special_tokens"))) {
        if (!cJSON_IsBool(v))
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: parse_special_tokens must be a boolean", dir);
        e->parse_special = cJSON_IsTrue(v);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(m, "precision")) &&
        (!cJSON_IsString(v) || rs_precision_parse(v->valuestring, &e->precision)))
        return rs_errf(err, RS_ERR_INVALID_ARG,
                       "%s/routescore.json: precision must be \"fp32\", \"bf16\" or \"bf16-emulated\"", dir);
    if ((v = cJSON_GetObjectItemCaseSensitive(m, "normalize"))) {
        if (!cJSON_IsBool(v)) return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: normalize must be a boolean", dir);
        e->normalize = cJSON_IsTrue(v);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(m, "strong_labels"))) {
        int cnt = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
        if (cnt < 1 || cnt > RS_MAX_LABELS)
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: strong_labels must list 1 to %d label indices",
                           dir, RS_MAX_LABELS);
        e->n_strong_labels = 0;
        for (const cJSON *it = v->child; it; it = it->next) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= RS_MAX_LABELS)
                return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: bad label index in strong_labels", dir);
            e->strong_labels[e->n_strong_labels++] = it->valueint;
        }
    }
    return RS_OK;
}

static rs_status load_mf_head(rs_engine *e, const char *path, rs_err *err) {
    rs_st_file *f;
    rs_status st = rs_st_open(path, &f, err);
    if (st != RS_OK) return st;
    const rs_st_tensor *w = rs_st_find(f, "mf.weight"), *b = rs_st_find(f, "mf.bias");
    const int64_t H = e->hidden;
    if (!w || !b)
        st = rs_errf(err, RS_ERR_NOT_FOUND, "%s: needs tensors 'mf.weight' [%lld] and 'mf.bias' [1]", path, (long long)H);
    else if (w->n_elems != H || b->n_elems != 1 || w->dtype != RS_DTYPE_F32 || b->dtype != RS_DTYPE_F32)
        st = rs_errf(err, RS_ERR_FORMAT, "%s: 'mf.weight' must be F32 [%lld] (the encoder's hidden size) and 'mf.bias' F32 [1]",
                     path, (long long)H);
    else if (!(e->mf_w = malloc((size_t)H * sizeof(float))))
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
    else {
        rs_convert_f32(e->mf_w, w->data, w->dtype, (size_t)H);
        rs_convert_f32(&e->mf_b, b->data, b->dtype, 1);
        /* Optional: a weight on the prompt's length (log of its token count,
         * specials included, after truncation), which the pooled normalised
         * embedding does not carry. */
        const rs_st_tensor *lw = rs_st_find(f, "mf.length_weight");
        if (lw && (lw->n_elems != 1 || lw->dtype != RS_DTYPE_F32))
            st = rs_errf(err, RS_ERR_FORMAT, "%s: 'mf.length_weight' must be F32 [1]", path);
        else if (lw) {
            rs_convert_f32(&e->mf_len_w, lw->data, lw->dtype, 1);
            e->mf_len = 1;
        }
    }
    rs_st_close(f);
    return st;
}

/* sw_ranking embeds battle prompts that come without an embedding with the
 * router's own encoder, at open. */
static rs_status sw_embed(void *ctx, const char *const *prompts, const size_t *lens, size_t n, float *emb, rs_err *err) {
    rs_engine *e = ctx;
    rs_score *meta = calloc(n ? n : 1, sizeof *meta);
    if (!meta) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    rs_status st = rs_engine_embed(e, prompts, lens, n, emb, meta, err);
    for (size_t i = 0; st == RS_OK && i < n; i++)
        if (meta[i].status != RS_OK) st = rs_errf(err, meta[i].status, "battle prompt %zu: %s", i + 1, meta[i].error);
    free(meta);
    return st;
}

/* The mf_routellm / sw_ranking head, after the encoder (if any) is up:
 * manifest keys "checkpoint" + "models", or "battles" + "num_tiers". */
static rs_status open_embedding_head(rs_engine *e, const char *dir, const cJSON *m, rs_err *err) {
    char file[1024], path[4200];
    /* RouteLLM's default pair when the manifest names none. */
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "strong_model")))
        snprintf(e->strong, sizeof e->strong, "gpt-4-1106-preview");
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "weak_model")))
        snprintf(e->weak, sizeof e->weak, "mixtral-8x7b-instruct-v0.1");
    const int enc_dim = e->hidden;
    rs_status st;
    if (e->kind == KIND_MF_ROUTELLM) {
        copy_str(file, sizeof file, m, "checkpoint", "model.safetensors");
        if ((st = rs_path_join(path, sizeof path, dir, file, err)) != RS_OK)
            return rs_errf(err, st, "%s/routescore.json: checkpoint: %s", dir, err->msg);
        const cJSON *models = cJSON_GetObjectItemCaseSensitive(m, "models");
        if ((st = rs_mf_open(path, models, e->strong, e->weak, &e->mf, err)) != RS_OK) return st;
        e->emb_dim = rs_mf_input_dim(e->mf);
    } else {
        copy_str(file, sizeof file, m, "battles", "battles.jsonl");
        if ((st = rs_path_join(path, sizeof path, dir, file, err)) != RS_OK)
            return rs_errf(err, st, "%s/routescore.json: battles: %s", dir, err->msg);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "num_tiers");
        if (t && (!cJSON_IsNumber(t) || t->valuedouble < 1 || t->valuedouble > 64))
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: num_tiers must be a number in [1, 64]", dir);
        if ((st = rs_sw_open(path, t ? t->valueint : 10, e->strong, e->weak, enc_dim, enc_dim ? sw_embed : NULL, e,
                             &e->sw, err)) != RS_OK)
            return st;
        e->emb_dim = rs_sw_input_dim(e->sw);
    }
    if (enc_dim && enc_dim != e->emb_dim)
        return rs_errf(err, RS_ERR_FORMAT, "%s: the %s head takes %d-d embeddings but the encoder gives %d", dir,
                       KIND_NAMES[e->kind], e->emb_dim, enc_dim);
    return RS_OK;
}

/* The engine's backend: CUDA (device, up to max_tokens per sequence and
 * batch_tokens per forward) or the CPU (cpu_max_len: the encoder attention's
 * per-thread scratch length; 1 for decoders, whose attention needs none). */
static rs_status create_backend(rs_engine *e, const rs_engine_opts *opts, int use_cuda, int max_tokens,
                                size_t batch_tokens, int cpu_max_len, rs_err *err) {
#ifdef RS_HAVE_CUDA
    if (use_cuda) return rs_backend_cuda_create(opts->device, max_tokens, batch_tokens, &e->backend, err);
#endif
    (void)use_cuda;
    (void)max_tokens;
    (void)batch_tokens;
    return rs_backend_cpu_create_prec(opts->n_threads, cpu_max_len, e->precision, &e->backend, err);
}

/* The encoder of a bert / mf / embed router: a BERT-family model. */
static rs_status open_bert_encoder(rs_engine *e, const char *enc_dir, const rs_engine_opts *opts, int use_cuda,
                                   int has_manifest, int max_tokens, rs_err *err) {
    rs_encoder_config cfg;
    rs_status st = rs_encoder_config_parse(rs_model_files_config(e->files), enc_dir, &cfg, err);
    if (st != RS_OK) return st;
    if (!has_manifest) e->kind = cfg.head != RS_HEAD_NONE ? KIND_BERT : KIND_EMBED;
    if (e->kind == KIND_BERT && cfg.head == RS_HEAD_NONE)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: kind 'bert' needs a *ForSequenceClassification checkpoint, got '%s'",
                       enc_dir, cfg.architecture);
    for (int i = 0; e->kind == KIND_BERT && i < e->n_strong_labels; i++)
        if (e->strong_labels[i] >= cfg.n_labels)
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s: strong label %d but the head has %d labels", enc_dir,
                           e->strong_labels[i], cfg.n_labels);
    if (e->enc_layers || e->pool_last)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: \"encoder_layers\" and pooling \"last\" are for Llama encoders; "
                       "this is a %s", enc_dir, cfg.architecture);

    /* Truncation length: flag > manifest > sentence-transformers > tokenizer
     * config > what the positions allow. */
    if (!max_tokens) max_tokens = optional_json_int(enc_dir, "sentence_bert_config.json", "max_seq_length");
    if (!max_tokens) max_tokens = optional_json_int(enc_dir, "tokenizer_config.json", "model_max_length");
    if (!max_tokens || max_tokens > cfg.max_seq_len) max_tokens = cfg.max_seq_len;
    e->max_tokens = max_tokens;
    e->batch_tokens = opts->max_batch_tokens ? opts->max_batch_tokens : RS_DEFAULT_BATCH_TOKENS;
    if (e->batch_tokens < max_tokens) e->batch_tokens = max_tokens;
    st = create_backend(e, opts, use_cuda, max_tokens, (size_t)e->batch_tokens, max_tokens, err);
    if (st != RS_OK || (st = rs_encoder_create(e->files, e->backend, e->batch_tokens, max_tokens, &e->enc, err)) != RS_OK)
        return st;
    e->cfg = rs_encoder_get_config(e->enc);
    e->hidden = e->cfg->hidden;
    e->vocab = e->cfg->vocab_size;
    e->arch = e->cfg->architecture;
    e->max_seqs = RS_MAX_BATCH_SEQS;
    return RS_OK;
}

/* A LlamaForCausalLM as the encoder of an mf / embed / mf_routellm /
 * sw_ranking router: its first encoder_layers layers, pooled. */
static rs_status open_llama_encoder(rs_engine *e, const char *enc_dir, const rs_engine_opts *opts, int use_cuda,
                                    int max_tokens, rs_err *err) {
    if (e->kind == KIND_BERT)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: a LlamaForCausalLM is no sequence classifier: use kind 'mf' or "
                       "'embed' to encode with it, or 'causal_llm'", enc_dir);
    rs_llama_config c;
    rs_status st = rs_llama_config_parse(rs_model_files_config(e->files), enc_dir, &c, err);
    if (st != RS_OK) return st;
    if (e->enc_layers > c.n_layers)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: encoder_layers %d but the model has %d layers", enc_dir,
                       e->enc_layers, c.n_layers);
    if (!e->pool_mean && !e->pool_last)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: a Llama encoder pools by \"mean\" or \"last\" (it has no CLS token)",
                       enc_dir);
    if (!max_tokens) max_tokens = RS_LLM_ENC_MAX_TOKENS;
    if (max_tokens > c.max_positions) max_tokens = c.max_positions;
    e->max_tokens = max_tokens;
    e->max_seqs = RS_LLM_ENC_POSITIONS / max_tokens;
    if (e->max_seqs > RS_LLM_ENC_SEQS) e->max_seqs = RS_LLM_ENC_SEQS;
    if (e->max_seqs < 1) e->max_seqs = 1;
    e->batch_tokens = opts->max_batch_tokens ? opts->max_batch_tokens : e->max_seqs * max_tokens;
    if (e->batch_tokens < max_tokens) e->batch_tokens = max_tokens;
    if ((st = create_backend(e, opts, use_cuda, max_tokens, (size_t)e->batch_tokens, 1, err)) != RS_OK) return st;
    rs_llama_limits lim = {.max_tokens = e->batch_tokens, .max_slots = e->max_seqs, .slot_len = max_tokens,
                           .n_layers = e->enc_layers};
    if ((st = rs_llama_create(e->files, e->backend, &lim, &e->llm, err)) != RS_OK) return st;
    e->hidden = c.hidden;
    e->vocab = c.vocab_size;
    e->arch = "LlamaForCausalLM";
    return RS_OK;
}

rs_status rs_engine_open(const char *dir, const rs_engine_opts *opts_in, rs_engine **out, rs_err *err) {
    *out = NULL;
    rs_engine_opts opts;
    if (opts_in)
        opts = *opts_in;
    else
        rs_engine_opts_default(&opts);
    /* Backend: per process or engine, never per op. "auto" is cuda when a
     * GPU is visible, else cpu. */
    const char *bname = opts.backend ? opts.backend : "cpu";
    int use_cuda = 0;
    if (!strcmp(bname, "cuda"))
        use_cuda = 1;
    else if (!strcmp(bname, "auto")) {
#ifdef RS_HAVE_CUDA
        const int n_dev = rs_cuda_device_count(err);
        /* A GPU with an unusable driver is an error, not a reason to run
         * silently (and far slower) on the CPU. */
        if (n_dev < 0)
            return rs_errf(err, RS_ERR_BACKEND, "backend 'auto': %s (choose --backend cpu to run without it)",
                           err->msg);
        use_cuda = n_dev > 0;
#endif
    } else if (strcmp(bname, "cpu"))
        return rs_errf(err, RS_ERR_INVALID_ARG, "unknown backend '%s' (cpu, cuda, auto)", bname);
#ifndef RS_HAVE_CUDA
    if (use_cuda)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "backend 'cuda' is not built into this binary (cpu is)");
#endif
    if (opts.device < 0) return rs_errf(err, RS_ERR_INVALID_ARG, "negative device index %d", opts.device);
    if (opts.max_batch_tokens < 0 || opts.max_tokens < 0 || opts.n_threads < 0)
        return rs_errf(err, RS_ERR_INVALID_ARG, "negative engine option");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return rs_errf(err, RS_ERR_NOT_FOUND, "%s: no such router directory", dir);

    rs_engine *e = calloc(1, sizeof *e);
    if (!e) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    const char *base = strrchr(dir, '/');
    snprintf(e->name, sizeof e->name, "%s", base && base[1] ? base + 1 : dir);
    snprintf(e->strong, sizeof e->strong, "strong");
    snprintf(e->weak, sizeof e->weak, "weak");
    e->threshold = 0.5f;
    e->strong_labels[0] = 0;
    e->n_strong_labels = 1;

    char enc_dir[4096], head_path[4096] = "", path[4200];
    int max_tokens = 0;
    snprintf(enc_dir, sizeof enc_dir, "%s", dir);
    snprintf(path, sizeof path, "%s/routescore.json", dir);
    cJSON *manifest = NULL;
    rs_status st = RS_OK;
    int has_manifest = rs_file_exists(path);
    if (has_manifest && (st = rs_file_read_json(path, &manifest, err)) != RS_OK) goto fail;
    if (has_manifest && !cJSON_IsObject(manifest)) {
        st = rs_errf(err, RS_ERR_FORMAT, "%s: not a JSON object", path);
        goto fail;
    }
    /* Pinned files first: nothing of a changed or corrupt router is read. */
    if (has_manifest && (st = rs_pins_check(dir, manifest, err)) != RS_OK) goto fail;
    /* Encoder defaults first; the manifest overrides them. */
    if (has_manifest) {
        const cJSON *encv = cJSON_GetObjectItemCaseSensitive(manifest, "encoder");
        if (cJSON_IsString(encv) && (st = rs_path_join(enc_dir, sizeof enc_dir, dir, encv->valuestring, err)) != RS_OK) {
            st = rs_errf(err, st, "%s: encoder: %s", path, err->msg);
            goto fail;
        }
    }
    sentence_transformers_defaults(e, enc_dir);
    if (has_manifest &&
        (st = parse_manifest(e, dir, manifest, enc_dir, sizeof enc_dir, head_path, sizeof head_path, &max_tokens, err)) != RS_OK)
        goto fail;
    if (opts.precision && rs_precision_parse(opts.precision, &e->precision)) {
        st = rs_errf(err, RS_ERR_INVALID_ARG, "unknown precision '%s' (fp32, bf16, bf16-emulated)", opts.precision);
        goto fail;
    }

    int llama_dir = 0;
    if (!has_manifest && (st = rs_causal_is_llama_dir(enc_dir, &llama_dir, err)) != RS_OK) goto fail;
    if (e->kind == KIND_CAUSAL || llama_dir) {
        /* The causal router brings its own model; the backend needs no
         * encoder attention scratch (max_len 1). */
        e->kind = KIND_CAUSAL;
        int bt, mt;
        rs_causal_limits(opts.max_tokens ? opts.max_tokens : max_tokens, opts.max_batch_tokens, &mt, &bt);
        st = create_backend(e, &opts, use_cuda, mt, (size_t)bt, 1, err);
        if (st != RS_OK || (st = rs_causal_open(dir, enc_dir, manifest, e->backend, opts.device, mt, bt, &e->causal, err)) != RS_OK)
            goto fail;
        e->max_tokens = rs_causal_max_tokens(e->causal);
        cJSON_Delete(manifest);
        *out = e;
        return RS_OK;
    }
    const int emb_kind = e->kind == KIND_MF_ROUTELLM || e->kind == KIND_SW_RANKING;
    if (emb_kind && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(manifest, "encoder"))) {
        /* No encoder: the router scores client embeddings only. */
        if ((st = open_embedding_head(e, dir, manifest, err)) != RS_OK) goto fail;
        cJSON_Delete(manifest);
        *out = e;
        return RS_OK;
    }
    if ((st = rs_model_files_open(enc_dir, &e->files, err)) != RS_OK) goto fail;
    if (opts.max_tokens) max_tokens = opts.max_tokens;
    st = rs_causal_is_llama_config(rs_model_files_config(e->files)) ? open_llama_encoder(e, enc_dir, &opts, use_cuda, max_tokens, err)
                                         : open_bert_encoder(e, enc_dir, &opts, use_cuda, has_manifest, max_tokens, err);
    if (st != RS_OK) goto fail;
    max_tokens = e->max_tokens;
    if (*head_path && (st = load_mf_head(e, head_path, err)) != RS_OK) goto fail;

    /* Without a tokenizer.json the router still scores token ids
     * (rs_engine_score_tokens), e.g. test checkpoints. */
    snprintf(path, sizeof path, "%s/tokenizer.json", enc_dir);
    if (rs_file_exists(path) && (st = rs_tokenizer_load(path, &e->tok, err)) != RS_OK) goto fail;
    if (e->tok) rs_tokenizer_set_parse_special(e->tok, e->parse_special);
    if (e->tok && rs_tokenizer_num_special(e->tok) >= (size_t)max_tokens) {
        st = rs_errf(err, RS_ERR_INVALID_ARG, "%s: max_tokens %d leaves no room beside the special tokens", dir, max_tokens);
        goto fail;
    }

    const size_t width = (size_t)(e->hidden > RS_MAX_LABELS ? e->hidden : RS_MAX_LABELS);
    e->stage = malloc((size_t)RS_STAGE_SLOTS * (size_t)max_tokens * sizeof *e->stage);
    e->stage_n = calloc(RS_STAGE_SLOTS, sizeof *e->stage_n);
    e->stage_meta = calloc(RS_STAGE_SLOTS, sizeof *e->stage_meta);
    e->pack = malloc((size_t)e->batch_tokens * sizeof *e->pack);
    e->offsets = malloc((RS_MAX_BATCH_SEQS + 1) * sizeof *e->offsets);
    e->owner = malloc(RS_MAX_BATCH_SEQS * sizeof *e->owner);
    e->out = malloc(RS_MAX_BATCH_SEQS * width * sizeof *e->out);
    if (!e->stage || !e->stage_n || !e->stage_meta || !e->pack || !e->offsets || !e->owner || !e->out) {
        st = rs_errf(err, RS_ERR_NOMEM, "no memory for staging buffers");
        goto fail;
    }
    if (emb_kind && (st = open_embedding_head(e, dir, manifest, err)) != RS_OK) goto fail;
    cJSON_Delete(manifest);
    *out = e;
    return RS_OK;
fail:
    cJSON_Delete(manifest);
    rs_engine_close(e);
    return st;
}

void rs_engine_close(rs_engine *e) {
    if (!e) return;
    rs_causal_free(e->causal);
    rs_mf_free(e->mf);
    rs_sw_free(e->sw);
    rs_encoder_free(e->enc);
    rs_llama_free(e->llm);
    if (e->backend) e->backend->ops->destroy(e->backend);
    rs_model_files_close(e->files);
    rs_tokenizer_free(e->tok);
    free(e->mf_w);
    free(e->stage);
    free(e->stage_n);
    free(e->stage_meta);
    free(e->pack);
    free(e->offsets);
    free(e->owner);
    free(e->out);
    free(e);
}

void rs_engine_info(const rs_engine *e, rs_router_info *out) {
    out->name = e->name;
    out->kind = KIND_NAMES[e->kind];
    out->client_embed_dim = e->mf || e->sw ? e->emb_dim : 0;
    if (e->causal) {
        out->architecture = rs_causal_architecture(e->causal);
        out->strong_model = e->strong;
        out->weak_model = e->weak;
        out->threshold = e->threshold;
        out->max_tokens = e->max_tokens;
        out->embed_dim = rs_causal_hidden(e->causal);
        out->n_labels = 5;
        out->vocab_size = rs_causal_vocab_size(e->causal);
        return;
    }
    if (!e->hidden) { /* an embeddings-only mf_routellm / sw_ranking router */
        out->architecture = e->kind == KIND_MF_ROUTELLM ? "MFModel" : "SWRanking";
        out->strong_model = e->strong;
        out->weak_model = e->weak;
        out->threshold = e->threshold;
        out->max_tokens = 0;
        out->embed_dim = e->emb_dim;
        out->n_labels = 0;
        out->vocab_size = 0;
        return;
    }
    out->architecture = e->arch;
    out->strong_model = e->strong;
    out->weak_model = e->weak;
    out->threshold = e->threshold;
    out->max_tokens = e->max_tokens;
    out->embed_dim = e->hidden;
    out->n_labels = e->kind == KIND_BERT ? e->cfg->n_labels : 0;
    out->vocab_size = e->vocab;
}

rs_status rs_engine_tokenize(const rs_engine *e, const char *prompt, size_t len, int32_t *ids, size_t cap,
                             size_t *n_ids, int *truncated, rs_err *err) {
    *n_ids = 0;
    *truncated = 0;
    if (e->causal) return rs_causal_tokenize(e->causal, prompt, len, ids, cap, n_ids, err);
    if (!e->tok) return rs_errf(err, RS_ERR_NOT_FOUND, "router '%s' has no tokenizer.json: it takes token ids only", e->name);
    if (len == 0) return rs_errf(err, RS_ERR_INVALID_ARG, "empty prompt");
    rs_status st = rs_tokenizer_encode(e->tok, prompt, len, 1, (size_t)e->max_tokens, ids, cap, n_ids, truncated, err);
    if (st == RS_OK && *n_ids <= rs_tokenizer_num_special(e->tok))
        return rs_errf(err, RS_ERR_INVALID_ARG, "prompt has no tokens (only whitespace or control characters)");
    return st;
}

/* What a forward is asked for, per router kind. */
typedef enum batch_mode { MODE_SCORE, MODE_EMBED } batch_mode;

typedef struct sink {
    batch_mode mode;
    float threshold;
    rs_score *scores; /* MODE_SCORE: per prompt; MODE_EMBED: optional meta */
    float *emb;       /* MODE_EMBED: (n, H) */
} sink;

/* mf_routellm / sw_ranking: n embeddings (n, emb_dim) to scores. */
static void head_score(rs_engine *e, const float *emb, size_t n, float threshold, rs_score *out) {
    rs_err herr = {{0}};
    float p[64];
    for (size_t c = 0; c < n; c += 64) {
        const size_t m = n - c < 64 ? n - c : 64;
        rs_status st = RS_OK;
        if (e->mf)
            for (size_t i = 0; i < m; i++) p[i] = rs_mf_win_prob(e->mf, emb + (c + i) * (size_t)e->emb_dim);
        else
            st = rs_sw_win_probs(e->sw, emb + c * (size_t)e->emb_dim, m, p, &herr);
        for (size_t i = 0; i < m; i++) {
            rs_score *s = &out[c + i];
            s->n_labels = 0;
            if (st == RS_OK && isnan(p[i])) {
                s->status = RS_ERR_INVALID_ARG;
                snprintf(s->error, sizeof s->error, "zero or non-finite embedding");
            } else if (st != RS_OK) {
                s->status = st;
                snprintf(s->error, sizeof s->error, "%.*s", (int)sizeof s->error - 1, herr.msg);
            } else {
                s->win_prob = p[i];
                s->route_strong = p[i] >= threshold;
            }
        }
    }
}

static float sigmoidf(float x) { return 1.f / (1.f + expf(-x)); }

static void finish_score(rs_engine *e, const float *o, int n_tokens, float threshold, rs_score *s) {
    const int H = e->hidden;
    if (e->kind == KIND_MF_ROUTELLM || e->kind == KIND_SW_RANKING) {
        head_score(e, o, 1, threshold, s);
        return;
    }
    if (e->kind == KIND_MF) {
        double z = e->mf_b;
        for (int i = 0; i < H; i++) z += (double)e->mf_w[i] * o[i];
        if (e->mf_len) z += (double)e->mf_len_w * (log((double)n_tokens) - RS_MF_LEN_CENTER);
        s->win_prob = sigmoidf((float)z);
        s->n_labels = 0;
    } else {
        const int L = e->cfg->n_labels;
        s->n_labels = L;
        if (L == 1) {
            s->label_probs[0] = s->win_prob = sigmoidf(o[0]);
        } else {
            float mx = o[0], sum = 0.f;
            for (int l = 1; l < L; l++) mx = o[l] > mx ? o[l] : mx;
            for (int l = 0; l < L; l++) sum += (s->label_probs[l] = expf(o[l] - mx));
            for (int l = 0; l < L; l++) s->label_probs[l] /= sum;
            float p = 0.f;
            for (int k = 0; k < e->n_strong_labels; k++) p += s->label_probs[e->strong_labels[k]];
            s->win_prob = p > 1.f ? 1.f : p;
        }
    }
    s->route_strong = s->win_prob >= threshold;
}

/* Runs the packed batch and hands each sequence's output to its prompt. */
static rs_status flush(rs_engine *e, const sink *k, rs_err *err) {
    if (!e->n_seq) return RS_OK;
    const int H = e->hidden;
    rs_enc_output what = (k->mode == MODE_SCORE && e->kind == KIND_BERT) ? RS_ENC_OUT_LOGITS
                         : e->pool_mean ? RS_ENC_OUT_MEAN : RS_ENC_OUT_CLS;
    rs_status st = e->llm ? rs_llama_embed(e->llm, e->pack, e->offsets, e->n_seq, e->pool_last, e->normalize, e->out, err)
                          : rs_encoder_forward(e->enc, e->pack, e->offsets, e->n_seq, what, e->normalize, e->out, err);
    if (st != RS_OK) return st;
    const int width = what == RS_ENC_OUT_LOGITS ? e->cfg->n_labels : H;
    for (int s = 0; s < e->n_seq; s++) {
        const float *o = e->out + (size_t)s * (size_t)width;
        size_t p = e->owner[s];
        if (k->mode == MODE_SCORE)
            finish_score(e, o, e->offsets[s + 1] - e->offsets[s], k->threshold, &k->scores[p]);
        else
            memcpy(k->emb + p * (size_t)H, o, (size_t)H * sizeof(float));
    }
    e->n_seq = 0;
    e->offsets[0] = 0;
    return RS_OK;
}

/* Appends one tokenized sequence to the pack, running the batch first if it
 * would overflow the arena. */
static rs_status append(rs_engine *e, const int32_t *ids, size_t n, size_t owner, const sink *k, rs_err *err) {
    if (e->n_seq == e->max_seqs || (size_t)e->offsets[e->n_seq] + n > (size_t)e->batch_tokens) {
        rs_status st = flush(e, k, err);
        if (st != RS_OK) return st;
    }
    memcpy(e->pack + e->offsets[e->n_seq], ids, n * sizeof *ids);
    e->owner[e->n_seq] = owner;
    e->offsets[e->n_seq + 1] = e->offsets[e->n_seq] + (int32_t)n;
    e->n_seq++;
    return RS_OK;
}

static rs_status need_encoder(const rs_engine *e, rs_err *err) {
    if (!e->enc && !e->llm)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "router '%s' (%s) has no encoder: it scores client embeddings only",
                       e->name, KIND_NAMES[e->kind]);
    return RS_OK;
}

static rs_status run_prompts(rs_engine *e, const char *const *prompts, const size_t *lens, size_t n, const sink *k,
                             rs_score *meta, rs_err *err) {
    e->n_seq = 0;
    e->offsets[0] = 0;
    for (size_t g = 0; g < n; g += RS_STAGE_SLOTS) {
        const int m = (int)(n - g < RS_STAGE_SLOTS ? n - g : RS_STAGE_SLOTS);
        /* Tokenize the group in parallel; the tokenizer is shared read-only. */
#pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < m; i++) {
            rs_score *s = &e->stage_meta[i];
            memset(s, 0, sizeof *s);
            rs_err terr = {{0}};
            int trunc = 0;
            s->status = prompts[g + i] ? rs_engine_tokenize(e, prompts[g + i], lens[g + i],
                                                             e->stage + (size_t)i * (size_t)e->max_tokens,
                                                             (size_t)e->max_tokens, &e->stage_n[i], &trunc, &terr)
                                       : rs_errf(&terr, RS_ERR_INVALID_ARG, "missing prompt");
            s->truncated = trunc;
            s->tokens = (int)e->stage_n[i];
            if (s->status != RS_OK) snprintf(s->error, sizeof s->error, "%.*s", (int)sizeof s->error - 1, terr.msg);
        }
        for (int i = 0; i < m; i++) {
            if (meta) meta[g + i] = e->stage_meta[i];
            if (e->stage_meta[i].status != RS_OK) continue;
            rs_status st = append(e, e->stage + (size_t)i * (size_t)e->max_tokens, e->stage_n[i], g + i, k, err);
            if (st != RS_OK) return st;
        }
    }
    return flush(e, k, err);
}

static rs_status check_threshold(const rs_engine *e, float *threshold, rs_err *err) {
    if (isnan(*threshold)) *threshold = e->threshold;
    if (!(*threshold >= 0.f && *threshold <= 1.f))
        return rs_errf(err, RS_ERR_INVALID_ARG, "threshold %g outside [0, 1]", (double)*threshold);
    if (e->kind == KIND_EMBED)
        return rs_errf(err, RS_ERR_INVALID_ARG, "router '%s' is a bare encoder (kind embed): it embeds but has no "
                       "scoring head; train one with `routescore train`", e->name);
    return RS_OK;
}

rs_status rs_engine_score(rs_engine *e, const char *const *prompts, const size_t *lens, size_t n, float threshold,
                          rs_score *out, rs_err *err) {
    rs_status st = check_threshold(e, &threshold, err);
    if (st != RS_OK) return st;
    if (e->causal) return rs_causal_score(e->causal, prompts, lens, n, threshold, out, err);
    if ((st = need_encoder(e, err)) != RS_OK) return st;
    sink k = {MODE_SCORE, threshold, out, NULL};
    return run_prompts(e, prompts, lens, n, &k, out, err);
}

rs_status rs_engine_embed(rs_engine *e, const char *const *prompts, const size_t *lens, size_t n, float *emb,
                          rs_score *meta, rs_err *err) {
    if (e->causal) return rs_errf(err, RS_ERR_UNSUPPORTED, "router '%s' (causal_llm) does not embed", e->name);
    rs_status st = need_encoder(e, err);
    if (st != RS_OK) return st;
    memset(emb, 0, n * (size_t)e->hidden * sizeof *emb);
    sink k = {MODE_EMBED, 0.f, NULL, emb};
    return run_prompts(e, prompts, lens, n, &k, meta, err);
}

static rs_status run_tokens(rs_engine *e, const int32_t *ids, const size_t *offsets, size_t n, const sink *k,
                            rs_err *err) {
    e->n_seq = 0;
    e->offsets[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (offsets[i + 1] <= offsets[i] || offsets[i + 1] - offsets[i] > (size_t)e->max_tokens)
            return rs_errf(err, RS_ERR_INVALID_ARG, "sequence %zu has %zu tokens (1 to %d allowed)", i,
                           offsets[i + 1] > offsets[i] ? offsets[i + 1] - offsets[i] : 0, e->max_tokens);
        for (size_t t = offsets[i]; t < offsets[i + 1]; t++)
            if (ids[t] < 0 || ids[t] >= e->vocab)
                return rs_errf(err, RS_ERR_INVALID_ARG, "sequence %zu: token id %d outside the vocabulary (%d)", i,
                               ids[t], e->vocab);
        if (k->scores) {
            memset(&k->scores[i], 0, sizeof k->scores[i]);
            k->scores[i].tokens = (int)(offsets[i + 1] - offsets[i]);
        }
        rs_status st = append(e, ids + offsets[i], offsets[i + 1] - offsets[i], i, k, err);
        if (st != RS_OK) return st;
    }
    return flush(e, k, err);
}

rs_status rs_engine_score_tokens(rs_engine *e, const int32_t *ids, const size_t *offsets, size_t n, float threshold,
                                 rs_score *out, rs_err *err) {
    rs_status st = check_threshold(e, &threshold, err);
    if (st != RS_OK) return st;
    if (e->causal) {
        for (size_t i = 0; i < n; i++) {
            memset(&out[i], 0, sizeof out[i]);
            out[i].tokens = (int)(offsets[i + 1] - offsets[i]);
        }
        return rs_causal_score_tokens(e->causal, ids, offsets, n, threshold, out, err);
    }
    if ((st = need_encoder(e, err)) != RS_OK) return st;
    sink k = {MODE_SCORE, threshold, out, NULL};
    return run_tokens(e, ids, offsets, n, &k, err);
}

rs_status rs_engine_embed_tokens(rs_engine *e, const int32_t *ids, const size_t *offsets, size_t n, float *emb,
                                 rs_err *err) {
    if (e->causal) return rs_errf(err, RS_ERR_UNSUPPORTED, "router '%s' (causal_llm) does not embed", e->name);
    rs_status st = need_encoder(e, err);
    if (st != RS_OK) return st;
    sink k = {MODE_EMBED, 0.f, NULL, emb};
    return run_tokens(e, ids, offsets, n, &k, err);
}

int rs_engine_lost(const rs_engine *e) { return e->backend ? e->backend->ops->lost(e->backend) : 0; }

const char *rs_engine_backend(const rs_engine *e) { return e->backend ? e->backend->ops->name : "cpu"; }

const char *rs_engine_precision(const rs_engine *e) {
    return e->backend && strcmp(e->backend->ops->name, "cpu") ? "bf16" : rs_precision_name(e->precision);
}

double rs_engine_flops(const rs_engine *e, const int32_t *offsets, int n_seq) {
    if (e->causal) return rs_causal_flops(e->causal, offsets, n_seq);
    if (e->llm) {
        double f = 0;
        for (int s = 0; s < n_seq; s++) {
            const int len = offsets[s + 1] - offsets[s];
            f += rs_llama_model_flops(e->llm, len, (len + 1) / 2.0, 0);
        }
        return f;
    }
    if (!e->cfg) return 0;
    return rs_encoder_flops(e->cfg, offsets, n_seq);
}

rs_status rs_engine_score_embeddings(rs_engine *e, const float *emb, size_t n, size_t dim, float threshold, rs_score *out,
                                     rs_err *err) {
    if (isnan(threshold)) threshold = e->threshold;
    if (!(threshold >= 0.f && threshold <= 1.f))
        return rs_errf(err, RS_ERR_INVALID_ARG, "threshold %g outside [0, 1]", (double)threshold);
    if (!e->mf && !e->sw)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "router '%s' (%s) does not score embeddings (mf_routellm and "
                       "sw_ranking do)", e->name, KIND_NAMES[e->kind]);
    if (dim != (size_t)e->emb_dim)
        return rs_errf(err, RS_ERR_INVALID_ARG, "embeddings have %zu values; router '%s' takes %d", dim, e->name, e->emb_dim);
    memset(out, 0, n * sizeof *out);
    for (size_t i = 0; i < n; i++)
        for (size_t d = 0; d < dim; d++)
            if (!isfinite(emb[i * dim + d])) {
                out[i].status = RS_ERR_INVALID_ARG;
                snprintf(out[i].error, sizeof out[i].error, "embedding value %zu is not finite", d);
                break;
            }
    /* Score all (non-finite rows give NaN or garbage), then keep the
     * per-prompt errors found above. */
    rs_score *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    memset(tmp, 0, (n ? n : 1) * sizeof *tmp);
    head_score(e, emb, n, threshold, tmp);
    for (size_t i = 0; i < n; i++)
        if (out[i].status == RS_OK) out[i] = tmp[i];
    free(tmp);
    return RS_OK;
}
