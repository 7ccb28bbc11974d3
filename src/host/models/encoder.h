/* encoder.h — BERT / RoBERTa / XLM-RoBERTa encoders and their heads, written
 * once against the backend interface (backend.h).
 *
 * Post-LayerNorm transformer, exact GELU, absolute positions (RoBERTa's start
 * at padding_idx + 1), token types. Heads: BertForSequenceClassification
 * (pooler dense+tanh on [CLS], then classifier), RobertaForSequenceClassification
 * and XLMRobertaForSequenceClassification (classifier.dense+tanh on <s>, then
 * out_proj), or none (sentence embeddings by mean or CLS pooling).
 *
 * Ownership: an rs_encoder owns its backend weights and its activation arena,
 * sized at create for max_tokens tokens per forward (sequences packed, no
 * padding); nothing is allocated per call. One thread at a time. */
#ifndef RS_ENCODER_H
#define RS_ENCODER_H

#include <stdint.h>

#include "backend.h"
#include "model_files.h"
#include "status.h"

typedef enum rs_enc_family {
    RS_ENC_BERT = 0,
    RS_ENC_ROBERTA, /* roberta and xlm-roberta */
} rs_enc_family;

typedef enum rs_enc_head {
    RS_HEAD_NONE = 0,  /* a bare encoder: embeddings only */
    RS_HEAD_BERT_CLS,  /* pooler + classifier */
    RS_HEAD_ROBERTA_CLS,
} rs_enc_head;

typedef struct rs_encoder_config {
    char architecture[96];
    rs_enc_family family;
    rs_enc_head head;
    int vocab_size, hidden, n_layers, n_heads, intermediate;
    int max_positions, type_vocab_size, pad_token_id;
    int n_labels;      /* classifier outputs (0 without a head) */
    int max_seq_len;   /* longest sequence positions allow, specials included */
    float ln_eps;
} rs_encoder_config;

/* Reads and validates config.json (architecture, sizes, activation). */
rs_status rs_encoder_config_parse(const cJSON *config, const char *dir, rs_encoder_config *out, rs_err *err);

typedef struct rs_encoder rs_encoder;

/* Loads the weights of `files` (which must outlive the encoder) into backend
 * b (which the encoder borrows). max_batch_tokens sizes the arena; max_len
 * bounds one sequence. */
rs_status rs_encoder_create(rs_model_files *files, rs_backend *b, int max_batch_tokens, int max_len,
                            rs_encoder **out, rs_err *err);
void rs_encoder_free(rs_encoder *e);
const rs_encoder_config *rs_encoder_get_config(const rs_encoder *e);

typedef enum rs_enc_output {
    RS_ENC_OUT_LOGITS = 0,  /* out[n_seq, n_labels]: the classification head */
    RS_ENC_OUT_MEAN,        /* out[n_seq, hidden]: mean over each sequence's tokens */
    RS_ENC_OUT_CLS,         /* out[n_seq, hidden]: each sequence's first token */
} rs_enc_output;

/* One forward over packed sequences: sequence s is ids[offsets[s] ..
 * offsets[s+1]). Ids must be < vocab_size and each length in [1, max_len];
 * offsets[n_seq] <= max_batch_tokens. out is host memory. */
rs_status rs_encoder_forward(rs_encoder *e, const int32_t *ids, const int32_t *offsets, int n_seq,
                             rs_enc_output what, int normalize, float *out, rs_err *err);

/* Floating-point operations of one forward over these lengths (GEMMs and
 * attention), for benchmarks. */
double rs_encoder_flops(const rs_encoder_config *c, const int32_t *offsets, int n_seq);

#endif
