/* kind.h — the router kinds behind engine.c, private to the engine.
 *
 * A kind is a `static const rs_kind` table of functions, one file each in
 * src/host/engine/kinds/ (on no include path but the engine's own)
 * (kind_bert.c, kind_mf.c, kind_embed.c, kind_causal_llm.c,
 * kind_mf_routellm.c, kind_sw_ranking.c), as the backends are tables
 * (backend.h). engine.c owns what every kind shares — the manifest's common
 * keys, the backend choice, tokenize-and-pack, and dispatch — and never
 * looks at which kind it runs. A NULL entry is an operation the kind does
 * not have: the engine answers RS_ERR_UNSUPPORTED for it.
 *
 * The encoder kinds (bert, mf, embed, and mf_routellm / sw_ranking when
 * their manifest names an "encoder") share kind_encoder.c: a BERT-family
 * rs_encoder or a Llama rs_llama, its tokenizer and its output buffer.
 *
 * Packed batches: a kind's score_tokens / embed_tokens get sequences that
 * the engine packed within the limits the kind's open set (e->max_tokens a
 * sequence, e->batch_tokens and e->max_seqs a call), ids already checked
 * against e->vocab; out / emb have one entry (row) per sequence. */
#ifndef RS_KIND_H
#define RS_KIND_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "encoder.h"
#include "engine.h"
#include "llama.h"
#include "manifest.h"
#include "model_files.h"
#include "status.h"
#include "tokenizer.h"

typedef struct rs_kind rs_kind;

/* What open gets besides the engine: the router directory, its parsed
 * manifest (zeroed for a plain Hugging Face directory), the encoder / model
 * directory it names, the options and the backend the engine chose. */
typedef struct rs_kind_open_args {
    const char *dir;
    const rs_manifest *manifest; /* never NULL */
    int has_manifest;
    const char *enc_dir;
    const rs_engine_opts *opts;
    int use_cuda;
    int max_tokens; /* the option, else the manifest's; 0: the kind's default */
} rs_kind_open_args;

struct rs_kind {
    const char *name; /* the manifest's "kind" */
    /* Sets up e (model, tokenizer, limits e->max_tokens / batch_tokens /
     * max_seqs / vocab, e->backend); on failure close still runs. */
    rs_status (*open)(rs_engine *e, const rs_kind_open_args *a, rs_err *err);
    /* The kind's fields of the info; the engine filled the common ones. */
    void (*info)(const rs_engine *e, rs_router_info *out);
    /* NULL: the shared tokenizer (kind_encoder.c). Thread-safe. */
    rs_status (*tokenize)(const rs_engine *e, const char *prompt, size_t len, int32_t *ids, size_t cap, size_t *n_ids,
                          int *truncated, rs_err *err);
    /* out[s] arrives zeroed with tokens set; the kind sets the scores. */
    rs_status (*score_tokens)(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, float threshold,
                              rs_score *out, rs_err *err);
    /* emb: (n_seq, embed_dim). */
    rs_status (*embed_tokens)(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, float *emb,
                              rs_err *err);
    /* emb: (n, e->emb_dim), rows checked finite; out zeroed. */
    rs_status (*score_embeddings)(rs_engine *e, const float *emb, size_t n, float threshold, rs_score *out,
                                  rs_err *err);
    /* FLOPs of one forward over these packed lengths. */
    double (*flops)(const rs_engine *e, const size_t *offsets, size_t n_seq);
    /* Frees what open made (also after a failed open). */
    void (*close)(rs_engine *e);
};

extern const rs_kind rs_kind_bert, rs_kind_mf, rs_kind_embed, rs_kind_causal_llm, rs_kind_mf_routellm,
    rs_kind_sw_ranking;

/* The engine. Common state first; `state` is the kind's own. */
struct rs_engine {
    const rs_kind *kind;
    void *state;
    char name[128], strong[128], weak[128];
    float threshold;
    int max_tokens;   /* per prompt, specials included */
    int batch_tokens; /* ids per forward */
    int max_seqs;     /* sequences per forward */
    int vocab;        /* token ids are in [0, vocab) */
    int hidden;       /* the encoder's width (embed_dim); 0 without one */
    int emb_dim;      /* client embedding width (mf_routellm, sw_ranking); 0: none */
    const char *arch; /* config.json architectures[0] */
    rs_precision precision; /* the CPU backend's GEMMs (manifest "precision", --precision) */
    rs_backend *backend;

    /* The shared encoder (kind_encoder.c): manifest keys and models. */
    int pool_mean, pool_last, normalize;
    int enc_layers;    /* manifest "encoder_layers" (Llama encoders; 0: all) */
    int parse_special; /* manifest "parse_special_tokens" */
    int strong_labels[RS_MAX_LABELS], n_strong_labels;
    rs_model_files *files;
    rs_encoder *enc;
    rs_llama *llm; /* a Llama model as the encoder (enc and cfg stay NULL) */
    const rs_encoder_config *cfg;
    rs_tokenizer *tok;
    float *out; /* (max_seqs, max(hidden, RS_MAX_LABELS)) forward outputs */

    /* Staging of the engine's prompt loop, sized after open. */
    int32_t *stage;       /* (RS_STAGE_SLOTS, max_tokens) ids of prompts being tokenized */
    size_t *stage_n;      /* (RS_STAGE_SLOTS) */
    rs_score *stage_meta; /* (RS_STAGE_SLOTS) */
    int32_t *pack;        /* (batch_tokens) ids of the batch, packed */
    int32_t *offsets;     /* (max_seqs + 1) */
    size_t *owner;        /* (max_seqs) prompt index of each packed sequence */
    rs_score *seq_out;    /* (max_seqs) the kind's scores of the packed sequences */
    float *seq_emb;       /* (max_seqs, hidden) the kind's embeddings of them */
    int n_seq;
};

/* The engine's backend for a kind: CUDA (opts->device; max_tokens a
 * sequence, batch_tokens a forward) or the CPU (cpu_max_len: the encoder
 * attention's per-thread scratch; 1 for decoders). engine.c. */
rs_status rs_kind_backend(rs_engine *e, const rs_kind_open_args *a, int max_tokens, size_t batch_tokens,
                          int cpu_max_len, rs_err *err);
/* The engine's prompt-loop buffers for the limits open set; engine.c calls
 * it after open, a kind whose open already scores or embeds calls it
 * first (sw_ranking embeds its battles). Idempotent. */
rs_status rs_kind_stage(rs_engine *e, rs_err *err);

/* kind_encoder.c: opens the encoder of a->enc_dir (BERT family, or a
 * LlamaForCausalLM used as one), its tokenizer and output buffer;
 * classifier: the kind scores with the sequence-classification head (the
 * bert kind; a plain directory without one becomes the embed kind). */
rs_status rs_kenc_open(rs_engine *e, const rs_kind_open_args *a, int classifier, rs_err *err);
void rs_kenc_close(rs_engine *e);
/* The encoder's tokenizer.json, truncating to e->max_tokens. */
rs_status rs_kenc_tokenize(const rs_engine *e, const char *prompt, size_t len, int32_t *ids, size_t cap,
                           size_t *n_ids, int *truncated, rs_err *err);
/* The forward into e->out: classifier logits (n_seq, n_labels) when
 * logits, else the pooled (normalised) embeddings (n_seq, hidden). */
rs_status rs_kenc_forward(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, int logits, rs_err *err);
rs_status rs_kenc_embed_tokens(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, float *emb,
                               rs_err *err);
double rs_kenc_flops(const rs_engine *e, const size_t *offsets, size_t n_seq);
/* A config.json of a Llama causal LM (model_type llama). */
int rs_kenc_is_llama(const cJSON *config);

/* kind_embedding.c, what mf_routellm and sw_ranking share: RouteLLM's
 * default model pair when the manifest names none, the encoder when it
 * names one (then the head's width must match), the head's open. */
rs_status rs_kemb_open(rs_engine *e, const rs_kind_open_args *a,
                       rs_status (*open_head)(rs_engine *e, const rs_kind_open_args *a, rs_err *err), rs_err *err);
/* Without an encoder: arch, no text input, embed_dim = the head's width. */
void rs_kemb_info(const rs_engine *e, rs_router_info *out, const char *arch);
/* Encodes the packed sequences, then the kind's score_embeddings. */
rs_status rs_kemb_score_tokens(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, float threshold,
                               rs_score *out, rs_err *err);
/* out[i] from p[i]: NaN is a zero or non-finite embedding; st != RS_OK
 * (herr) a failed head for all n. */
void rs_kemb_finish(const float *p, size_t n, float threshold, rs_status st, const rs_err *herr, rs_score *out);

#endif
