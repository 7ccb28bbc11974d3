/* engine.h — the narrow public boundary of the scoring engine.
 *
 * The CLI and the server see only this header: open a router, score a batch of
 * prompts, close. They never touch tensors, tokenizer internals or backends.
 *
 * Ownership and threads: an rs_engine owns its weights (mmap'd), its tokenizer
 * and one activation arena sized at open for max_batch_tokens. It is NOT
 * thread-safe: one thread at a time calls score/embed on a given engine (the
 * server gives each engine its own worker thread). Inside a call the engine
 * uses all n_threads cores itself (BLAS threads plus its own OpenMP loops).
 * Caller-owned: prompt buffers and the output arrays. */
#ifndef RS_ENGINE_H
#define RS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define RS_MAX_LABELS 8
/* An mf head's optional length term: the engine adds mf.length_weight *
 * (log(tokens) - RS_MF_LEN_CENTER) to the logit, tokens = the prompt's ids
 * specials included, after truncation (rs_score.tokens). `routescore train
 * --length-term` fits the weight on this same feature. */
#define RS_MF_LEN_CENTER 3.5

typedef struct rs_engine rs_engine;

typedef struct rs_engine_opts {
    int n_threads;         /* 0: all online cores */
    int max_batch_tokens;  /* arena size in tokens per forward; 0: 16384 */
    int max_tokens;        /* per-prompt truncation; 0: the router's own */
    const char *backend;   /* "cpu" (default, NULL ok), "cuda", or "auto" (cuda when a GPU is present) */
    int device;            /* GPU index for the cuda backend; 0 by default */
    const char *precision; /* the CPU backend's GEMMs: "fp32", "bf16" (needs AVX-512 BF16) or "bf16-emulated";
                              NULL: the manifest's "precision", else fp32. CUDA is bf16 whatever this says. */
} rs_engine_opts;

/* One prompt's result. status != RS_OK marks a per-prompt failure (empty
 * prompt, invalid UTF-8): error says why and the numeric fields are 0. */
typedef struct rs_score {
    rs_status status;
    float win_prob;                   /* P(strong model wins), in [0, 1] */
    int route_strong;                 /* win_prob >= threshold */
    int n_labels;                     /* 0 for mf, else the classifier's labels */
    float label_probs[RS_MAX_LABELS]; /* softmax (or sigmoid) of the head */
    int tokens;                       /* ids fed to the model, specials included */
    int truncated;                    /* the prompt was cut to max tokens */
    char error[160];
} rs_score;

typedef struct rs_router_info {
    const char *name;         /* router name (manifest "name", else dir name) */
    const char *kind;         /* "bert", "mf", "embed" (encoder without head), "causal_llm",
                                 "mf_routellm" or "sw_ranking" */
    const char *architecture; /* config.json architectures[0] */
    const char *strong_model;
    const char *weak_model;
    float threshold;          /* default decision threshold */
    int max_tokens;           /* truncation length, specials included */
    int embed_dim;            /* hidden size of the encoder */
    int n_labels;
    int vocab_size;           /* token ids are in [0, vocab_size) */
    int client_embed_dim;     /* width rs_engine_score_embeddings takes (mf_routellm,
                                 sw_ranking); 0: the router scores no embeddings */
} rs_router_info;

void rs_engine_opts_default(rs_engine_opts *o);

/* The CPU precision the engine's GEMMs run at ("fp32", "bf16",
 * "bf16-emulated"); "bf16" for the cuda backend. */
const char *rs_engine_precision(const rs_engine *e);

/* Opens a router directory (see docs/ARCHITECTURE.md: a manifest
 * routescore.json, or a plain Hugging Face model directory). */
rs_status rs_engine_open(const char *dir, const rs_engine_opts *opts, rs_engine **out, rs_err *err);
void rs_engine_close(rs_engine *e);

void rs_engine_info(const rs_engine *e, rs_router_info *out);

/* Scores n prompts. threshold: NaN uses the router's default. The call fails
 * as a whole only for engine-level errors; per-prompt problems land in
 * out[i].status. prompts[i] need not be NUL-terminated (lens[i] bytes). */
rs_status rs_engine_score(rs_engine *e, const char *const *prompts, const size_t *lens, size_t n,
                          float threshold, rs_score *out, rs_err *err);

/* Sentence embeddings (the router's pooling and normalisation) into
 * emb[n * embed_dim]; meta[i] gets tokens/truncated/status like score. */
rs_status rs_engine_embed(rs_engine *e, const char *const *prompts, const size_t *lens, size_t n,
                          float *emb, rs_score *meta, rs_err *err);

/* The two halves of score, for callers that tokenize on other threads (the
 * server) or bring their own ids (tests of models without a tokenizer).
 * rs_engine_tokenize is thread-safe and may run concurrently with score calls
 * on the same engine. ids gets at most max_tokens ids (cap must be >= that). */
rs_status rs_engine_tokenize(const rs_engine *e, const char *prompt, size_t len, int32_t *ids,
                             size_t cap, size_t *n_ids, int *truncated, rs_err *err);
/* Sequences packed back to back: sequence i is ids[offsets[i] .. offsets[i+1]),
 * specials included; offsets has n + 1 entries. Each sequence must be
 * non-empty and at most max_tokens long. out[i].truncated is left 0. */
rs_status rs_engine_score_tokens(rs_engine *e, const int32_t *ids, const size_t *offsets, size_t n,
                                 float threshold, rs_score *out, rs_err *err);
rs_status rs_engine_embed_tokens(rs_engine *e, const int32_t *ids, const size_t *offsets, size_t n,
                                 float *emb, rs_err *err);

/* Scores n client-supplied prompt embeddings emb (n, dim), e.g. 1536-d
 * text-embedding-3-small vectors from an external service; dim must equal
 * the router's embed_dim. Only the mf_routellm and sw_ranking kinds take
 * embeddings (others: RS_ERR_UNSUPPORTED). Per-prompt problems (non-finite
 * or zero vectors) land in out[i].status. */
rs_status rs_engine_score_embeddings(rs_engine *e, const float *emb, size_t n, size_t dim, float threshold,
                                     rs_score *out, rs_err *err);

/* Non-zero once the engine's compute backend hit an unrecoverable device
 * fault (CUDA sticky error): every later call fails with RS_ERR_BACKEND, so
 * a server should report NOT_SERVING and exit for a restart. */
int rs_engine_lost(const rs_engine *e);
/* The backend this engine runs on: "cpu" or "cuda". */
const char *rs_engine_backend(const rs_engine *e);

/* Floating-point operations of one forward over these packed lengths:
 * sequence i is offsets[i] .. offsets[i+1], offsets as rs_engine_score_tokens
 * takes them (n_seq + 1 entries). For causal_llm: the prompts' own ids
 * (rs_engine_tokenize's counts), without the shared prefix. */
double rs_engine_flops(const rs_engine *e, const size_t *offsets, size_t n_seq);

#endif
