/* kind_encoder.c — the encoder the bert, mf and embed kinds (and
 * mf_routellm / sw_ranking with an "encoder") share: a BERT / RoBERTa /
 * XLM-R rs_encoder, or a LlamaForCausalLM used as one (llama.h
 * rs_llama_embed: the hidden state after its first "encoder_layers" layers,
 * pooled by "mean" or "last" token); its tokenizer.json; the manifest keys
 * "pooling", "normalize", "encoder_layers", "parse_special_tokens",
 * "strong_labels", with sentence-transformers' defaults under them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "kind.h"

#define RS_DEFAULT_BATCH_TOKENS 16384
#define RS_MAX_BATCH_SEQS 512
/* A Llama encoder keeps a KV cache slot of max_tokens positions per prompt
 * of a batch: up to 32 prompts a forward, fewer when they may be long, so
 * the cache holds at most 8192 positions (32 x 256, the default). */
#define RS_LLM_ENC_SEQS 32
#define RS_LLM_ENC_POSITIONS 8192
#define RS_LLM_ENC_MAX_TOKENS 256

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

/* The manifest's encoder keys over the defaults (types and ranges checked
 * by the manifest). */
static void apply_keys(rs_engine *e, const rs_manifest *m) {
    e->strong_labels[0] = 0;
    e->n_strong_labels = 1;
    if (m->pooling) {
        e->pool_mean = !strcmp(m->pooling, "mean");
        e->pool_last = !strcmp(m->pooling, "last");
    }
    e->enc_layers = m->encoder_layers;
    e->parse_special = m->parse_special;
    if (m->has_normalize) e->normalize = m->normalize;
    if (m->n_strong_labels) {
        e->n_strong_labels = m->n_strong_labels;
        memcpy(e->strong_labels, m->strong_labels, sizeof e->strong_labels);
    }
}

/* A BERT-family model; a plain directory without a classification head
 * becomes the embed kind here. */
static rs_status open_bert(rs_engine *e, const rs_kind_open_args *a, int classifier, rs_err *err) {
    const char *enc_dir = a->enc_dir;
    rs_encoder_config cfg;
    rs_status st = rs_encoder_config_parse(rs_model_files_config(e->files), enc_dir, &cfg, err);
    if (st != RS_OK) return st;
    if (classifier && !a->has_manifest && cfg.head == RS_HEAD_NONE) {
        e->kind = &rs_kind_embed;
        classifier = 0;
    }
    if (classifier && cfg.head == RS_HEAD_NONE)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: kind 'bert' needs a *ForSequenceClassification checkpoint, got '%s'",
                       enc_dir, cfg.architecture);
    for (int i = 0; classifier && i < e->n_strong_labels; i++)
        if (e->strong_labels[i] >= cfg.n_labels)
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s: strong label %d but the head has %d labels", enc_dir,
                           e->strong_labels[i], cfg.n_labels);
    if (e->enc_layers || e->pool_last)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: \"encoder_layers\" and pooling \"last\" are for Llama encoders; "
                       "this is a %s", enc_dir, cfg.architecture);

    /* Truncation length: flag > manifest > sentence-transformers > tokenizer
     * config > what the positions allow. */
    int max_tokens = a->max_tokens;
    if (!max_tokens) max_tokens = optional_json_int(enc_dir, "sentence_bert_config.json", "max_seq_length");
    if (!max_tokens) max_tokens = optional_json_int(enc_dir, "tokenizer_config.json", "model_max_length");
    if (!max_tokens || max_tokens > cfg.max_seq_len) max_tokens = cfg.max_seq_len;
    e->max_tokens = max_tokens;
    e->batch_tokens = a->opts->max_batch_tokens ? a->opts->max_batch_tokens : RS_DEFAULT_BATCH_TOKENS;
    if (e->batch_tokens < max_tokens) e->batch_tokens = max_tokens;
    st = rs_kind_backend(e, a, max_tokens, (size_t)e->batch_tokens, max_tokens, err);
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
static rs_status open_llama(rs_engine *e, const rs_kind_open_args *a, int classifier, rs_err *err) {
    const char *enc_dir = a->enc_dir;
    if (classifier)
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
    int max_tokens = a->max_tokens ? a->max_tokens : RS_LLM_ENC_MAX_TOKENS;
    if (max_tokens > c.max_positions) max_tokens = c.max_positions;
    e->max_tokens = max_tokens;
    e->max_seqs = RS_LLM_ENC_POSITIONS / max_tokens;
    if (e->max_seqs > RS_LLM_ENC_SEQS) e->max_seqs = RS_LLM_ENC_SEQS;
    if (e->max_seqs < 1) e->max_seqs = 1;
    e->batch_tokens = a->opts->max_batch_tokens ? a->opts->max_batch_tokens : e->max_seqs * max_tokens;
    if (e->batch_tokens < max_tokens) e->batch_tokens = max_tokens;
    if ((st = rs_kind_backend(e, a, max_tokens, (size_t)e->batch_tokens, 1, err)) != RS_OK) return st;
    rs_llama_limits lim = {.max_tokens = e->batch_tokens, .max_slots = e->max_seqs, .slot_len = max_tokens,
                           .n_layers = e->enc_layers};
    if ((st = rs_llama_create(e->files, e->backend, &lim, &e->llm, err)) != RS_OK) return st;
    e->hidden = c.hidden;
    e->vocab = c.vocab_size;
    e->arch = "LlamaForCausalLM";
    return RS_OK;
}

int rs_kenc_is_llama(const cJSON *config) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(config, "model_type");
    return cJSON_IsString(mt) && !strcmp(mt->valuestring, "llama");
}

rs_status rs_kenc_open(rs_engine *e, const rs_kind_open_args *a, int classifier, rs_err *err) {
    /* Encoder defaults first; the manifest overrides them. */
    sentence_transformers_defaults(e, a->enc_dir);
    apply_keys(e, a->manifest);
    rs_status st = rs_model_files_open(a->enc_dir, &e->files, err);
    if (st != RS_OK) return st;
    if ((st = rs_kenc_is_llama(rs_model_files_config(e->files)) ? open_llama(e, a, classifier, err) : open_bert(e, a, classifier, err)) != RS_OK) return st;

    /* Without a tokenizer.json the router still scores token ids
     * (rs_engine_score_tokens), e.g. test checkpoints. */
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", a->enc_dir);
    if (rs_file_exists(path) && (st = rs_tokenizer_load(path, &e->tok, err)) != RS_OK) return st;
    if (e->tok) rs_tokenizer_set_parse_special(e->tok, e->parse_special);
    if (e->tok && rs_tokenizer_num_special(e->tok) >= (size_t)e->max_tokens)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: max_tokens %d leaves no room beside the special tokens", a->dir,
                       e->max_tokens);
    const size_t width = (size_t)(e->hidden > RS_MAX_LABELS ? e->hidden : RS_MAX_LABELS);
    if (!(e->out = malloc((size_t)e->max_seqs * width * sizeof *e->out)))
        return rs_errf(err, RS_ERR_NOMEM, "no memory for the encoder's outputs");
    return RS_OK;
}

void rs_kenc_close(rs_engine *e) {
    rs_encoder_free(e->enc);
    rs_llama_free(e->llm);
    rs_model_files_close(e->files);
    rs_tokenizer_free(e->tok);
    free(e->out);
    e->enc = NULL;
    e->llm = NULL;
    e->files = NULL;
    e->tok = NULL;
    e->out = NULL;
}

rs_status rs_kenc_tokenize(const rs_engine *e, const char *prompt, size_t len, int32_t *ids, size_t cap, size_t *n_ids,
                           int *truncated, rs_err *err) {
    if (!e->tok) return rs_errf(err, RS_ERR_NOT_FOUND, "router '%s' has no tokenizer.json: it takes token ids only", e->name);
    if (len == 0) return rs_errf(err, RS_ERR_INVALID_ARG, "empty prompt");
    rs_status st = rs_tokenizer_encode(e->tok, prompt, len, 1, (size_t)e->max_tokens, ids, cap, n_ids, truncated, err);
    if (st == RS_OK && *n_ids <= rs_tokenizer_num_special(e->tok))
        return rs_errf(err, RS_ERR_INVALID_ARG, "prompt has no tokens (only whitespace or control characters)");
    return st;
}

rs_status rs_kenc_forward(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, int logits, rs_err *err) {
    if (e->llm) return rs_llama_embed(e->llm, ids, offsets, n_seq, e->pool_last, e->normalize, e->out, err);
    rs_enc_output what = logits ? RS_ENC_OUT_LOGITS : e->pool_mean ? RS_ENC_OUT_MEAN : RS_ENC_OUT_CLS;
    return rs_encoder_forward(e->enc, ids, offsets, n_seq, what, e->normalize, e->out, err);
}

rs_status rs_kenc_embed_tokens(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, float *emb,
                               rs_err *err) {
    rs_status st = rs_kenc_forward(e, ids, offsets, n_seq, 0, err);
    if (st == RS_OK) memcpy(emb, e->out, (size_t)n_seq * (size_t)e->hidden * sizeof *emb);
    return st;
}

double rs_kenc_flops(const rs_engine *e, const size_t *offsets, size_t n_seq) {
    double f = 0;
    for (size_t s = 0; s < n_seq; s++) {
        const int len = (int)(offsets[s + 1] - offsets[s]);
        if (e->llm) {
            f += rs_llama_model_flops(e->llm, len, (len + 1) / 2.0, 0);
        } else if (e->cfg) {
            const int32_t one[2] = {0, len}; /* an encoder's FLOPs add up per sequence */
            f += rs_encoder_flops(e->cfg, one, 1);
        }
    }
    return f;
}
