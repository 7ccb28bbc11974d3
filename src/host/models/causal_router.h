/* causal_router.h — RouteLLM's causal_llm router (docs/ROUTERS.md) on rs_llama:
 * the fine-tuned Llama rates a prompt with a token [[1]]..[[5]], and
 * p_strong_win = 1 - (p4 + p5) from the softmax of the 5 rating logits at
 * the first generated id >= the original vocabulary size (greedy, at most 6
 * new tokens; 1.0 when no rating token comes).
 *
 * Used by the engine's causal_llm kind (src/host/engine/kind_causal_llm.c),
 * which runs the prompt loop (tokenize, pack within max_slots sequences and
 * batch_tokens ids, score) as for every kind. Ownership: an rs_causal owns
 * its model files, tokenizer and rs_llama; it borrows the backend. One
 * thread at a time, except rs_causal_tokenize, which any number of threads
 * may call. */
#ifndef RS_CAUSAL_ROUTER_H
#define RS_CAUSAL_ROUTER_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "manifest.h"
#include "status.h"

typedef struct rs_causal rs_causal;

#define RS_CAUSAL_RATINGS 5

/* One prompt's outcome. */
typedef struct rs_causal_result {
    float win_prob;                  /* P(strong wins); 1 when no rating came */
    int rated;                       /* a rating token came: ratings holds its softmax */
    float ratings[RS_CAUSAL_RATINGS]; /* P([[1]]) .. P([[5]]) */
    int tokens;                      /* ids the model saw: the shared prefix and the prompt's own */
} rs_causal_result;

/* The limits a causal router runs with, from the options (0: defaults):
 * max_tokens a prompt (default 512) and batch_tokens a forward (default
 * 2048, raised to max_tokens). The engine sizes the backend with the same
 * values rs_causal_open uses. */
void rs_causal_limits(int max_tokens, int batch_tokens, int *mt, int *bt);

/* router_dir holds the prompt files (manifest "system_file", default
 * system_ft_v5.txt; "classifier_file", default classifier_ft_v5.txt);
 * model_dir the HF checkpoint and its tokenizer. manifest (zeroed for a
 * plain directory) gives, when present: "orig_vocab_size", "max_new_tokens", "max_slots",
 * "tokenizer", "tensor_parallel" (N ranks, llama_tp.h: rank 0 on b, which is
 * GPU `device` for cuda, rank r on GPU device + r; on the CPU, simulated
 * ranks of one thread each). max_tokens bounds one prompt's own tokens
 * (0: 512); batch_tokens the tokens of one forward (0: 2048). */
rs_status rs_causal_open(const char *router_dir, const char *model_dir, const rs_manifest *manifest, rs_backend *b,
                         int device, int max_tokens, int batch_tokens, rs_causal **out, rs_err *err);
void rs_causal_close(rs_causal *c);

const char *rs_causal_architecture(const rs_causal *c);
int rs_causal_max_tokens(const rs_causal *c);
int rs_causal_vocab_size(const rs_causal *c);
int rs_causal_hidden(const rs_causal *c);
/* Prompts one forward takes at most (manifest "max_slots"), and their ids. */
int rs_causal_max_slots(const rs_causal *c);
int rs_causal_batch_tokens(const rs_causal *c);

/* The prompt's own part of the model input (user header, classifier text
 * with the prompt, <|eot_id|>): what follows the shared system prefix. */
rs_status rs_causal_tokenize(const rs_causal *c, const char *prompt, size_t len, int32_t *ids, size_t cap,
                             size_t *n_ids, rs_err *err);

/* Scores prompts already tokenized by rs_causal_tokenize, packed: prompt i
 * is ids[offsets[i] .. offsets[i+1]), each 1 to max_tokens ids in the
 * vocabulary; any number of prompts (groups of max_slots and batch_tokens
 * run one after the other). */
rs_status rs_causal_score_tokens(rs_causal *c, const int32_t *ids, const int32_t *offsets, int n,
                                 rs_causal_result *out, rs_err *err);

/* FLOPs of the prefill of prompts of these own lengths (offsets over
 * rs_causal_tokenize's counts, without the shared prefix, whose KV is
 * computed once at open): one logit row each, no decode steps. */
double rs_causal_flops(const rs_causal *c, const size_t *offsets, size_t n_seq);

#endif
