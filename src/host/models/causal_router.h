/* causal_router.h — RouteLLM's causal_llm router (REFERENCE §1) on rs_llama:
 * the fine-tuned Llama rates a prompt with a token [[1]]..[[5]], and
 * p_strong_win = 1 - (p4 + p5) from the softmax of the 5 rating logits at
 * the first generated id >= the original vocabulary size (greedy, at most 6
 * new tokens; 1.0 when no rating token comes).
 *
 * Used by engine.c only (router kind "causal_llm"); the engine's public
 * boundary stays engine.h. Ownership: an rs_causal owns its model files,
 * tokenizer and rs_llama; it borrows the backend. One thread at a time,
 * except rs_causal_tokenize, which any number of threads may call. */
#ifndef RS_CAUSAL_ROUTER_H
#define RS_CAUSAL_ROUTER_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "engine.h"
#include "status.h"

typedef struct rs_causal rs_causal;

/* *is_llama: dir/config.json names a Llama causal LM (model_type llama); 0
 * without a config.json. A config that cannot be read is an error. */
rs_status rs_causal_is_llama_dir(const char *dir, int *is_llama, rs_err *err);
/* The same test on a parsed config.json. */
int rs_causal_is_llama_config(const cJSON *config);

/* The limits a causal router runs with, from the options (0: defaults):
 * max_tokens a prompt (default 512) and batch_tokens a forward (default
 * 2048, raised to max_tokens). The engine sizes the backend with the same
 * values rs_causal_open uses. */
void rs_causal_limits(int max_tokens, int batch_tokens, int *mt, int *bt);

/* router_dir holds the prompt files (manifest "system_file", default
 * system_ft_v5.txt; "classifier_file", default classifier_ft_v5.txt);
 * model_dir the HF checkpoint and its tokenizer. manifest may be NULL; its
 * optional keys: "orig_vocab_size", "max_new_tokens", "max_slots",
 * "tokenizer", "tensor_parallel" (N ranks, llama_tp.h: rank 0 on b, which is
 * GPU `device` for cuda, rank r on GPU device + r; on the CPU, simulated
 * ranks of one thread each). max_tokens bounds one prompt's own tokens
 * (0: 512); batch_tokens the tokens of one forward (0: 2048). */
rs_status rs_causal_open(const char *router_dir, const char *model_dir, const cJSON *manifest, rs_backend *b,
                         int device, int max_tokens, int batch_tokens, rs_causal **out, rs_err *err);
void rs_causal_free(rs_causal *c);

const char *rs_causal_architecture(const rs_causal *c);
int rs_causal_max_tokens(const rs_causal *c);
int rs_causal_vocab_size(const rs_causal *c);
int rs_causal_hidden(const rs_causal *c);

/* The prompt's own part of the model input (user header, classifier text
 * with the prompt, <|eot_id|>): what follows the shared system prefix. */
rs_status rs_causal_tokenize(const rs_causal *c, const char *prompt, size_t len, int32_t *ids, size_t cap,
                             size_t *n_ids, rs_err *err);

/* Scores prompts already tokenized by rs_causal_tokenize, packed:
 * prompt i is ids[offsets[i] .. offsets[i+1]). */
rs_status rs_causal_score_tokens(rs_causal *c, const int32_t *ids, const size_t *offsets, size_t n, float threshold,
                                 rs_score *out, rs_err *err);
rs_status rs_causal_score(rs_causal *c, const char *const *prompts, const size_t *lens, size_t n, float threshold,
                          rs_score *out, rs_err *err);

/* FLOPs of the prefill of prompts of these own lengths (offsets over
 * rs_causal_tokenize's counts, without the shared prefix, whose KV is
 * computed once at open): one logit row each, no decode steps. */
double rs_causal_flops(const rs_causal *c, const int32_t *offsets, int n_seq);

#endif
