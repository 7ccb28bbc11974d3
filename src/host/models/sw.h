/* sw.h — RouteLLM's similarity-weighted ranking router (sw_ranking).
 *
 * A battle file (JSON lines: "model_a", "model_b", "winner" in model_a |
 * model_b | tie | tie (bothbad), and "embedding" [floats] or "prompt" text)
 * is read at open. As RouteLLM's SWRankingRouter does:
 *  1. an unweighted Bradley–Terry fit over the real models
 *     (compute_elo_mle_with_tie) gives ratings, and compute_tiers' dynamic
 *     programme (minimum summed variance) groups them into num_tiers tiers;
 *  2. per prompt: cosine similarity S_i to every battle (one GEMM), weights
 *     10 * 10^(S_i / max S), a weighted fit over tiers, and
 *     win_prob = 1 − 1/(1 + 10^((E_strong − E_weak)/400)).
 * The fits are logistic regressions without intercept or penalty on
 * RouteLLM's duplicated design matrix (a tie is one win each way), solved
 * here by Newton's method.
 *
 * Ownership: an rs_sw owns its battles, embeddings and scratch; scoring
 * writes the scratch, so one thread at a time per rs_sw. */
#ifndef RS_SW_H
#define RS_SW_H

#include <stddef.h>

#include "status.h"

typedef struct rs_sw rs_sw;

/* Embeds battle prompts that come without an "embedding" (the engine's
 * encoder); emb is (n, dim). */
typedef rs_status (*rs_sw_embed_fn)(void *ctx, const char *const *prompts, const size_t *lens, size_t n, float *emb,
                                    rs_err *err);

/* embed_dim: the encoder's width, or 0 when there is no encoder (then every
 * battle needs an "embedding"). */
rs_status rs_sw_open(const char *path, int num_tiers, const char *strong, const char *weak, int embed_dim,
                     rs_sw_embed_fn embed, void *ctx, rs_sw **out, rs_err *err);
void rs_sw_close(rs_sw *s);

int rs_sw_input_dim(const rs_sw *s);
size_t rs_sw_num_battles(const rs_sw *s);

/* win_prob[i] for n embeddings emb (n, input_dim). A zero or non-finite
 * embedding gives NaN for that prompt. */
rs_status rs_sw_win_probs(rs_sw *s, const float *emb, size_t n, float *win_prob, rs_err *err);

#endif
