/* llama.h — LlamaForCausalLM (Llama 2/3, SmolLM2) written once against the
 * backend interface (backend.h): RMSNorm, RoPE with rope_theta and Llama 3
 * rope_scaling, grouped-query attention, SwiGLU MLP, tied or untied
 * embeddings; weights from a safetensors directory (model_files.h: sharded,
 * F32/F16/BF16).
 *
 * The KV cache has max_slots slots of slot_len positions each, plus one
 * shared prefix of up to max_prefix positions that every slot sees before
 * its own tokens (rs_llama_set_prefix: computed once, reused by every call).
 * A forward takes any mix of tokens: token t goes to slot slot[t] at
 * position pos[t] of that slot (its absolute position is n_prefix + pos[t])
 * and attends to the prefix and to its slot's positions 0..pos[t]; tokens of
 * one slot may be many (prefill) or one (decode), and their positions
 * before pos[t] must have been written by this or an earlier forward.
 *
 * Tensor parallelism (Megatron-style): with tp_size > 1 an rs_llama is one
 * rank's shard: its n_heads / tp_size query heads and n_kv_heads / tp_size
 * KV heads (rows of q/k/v_proj, columns of o_proj), its intermediate /
 * tp_size MLP columns (rows of gate/up_proj, columns of down_proj); norms,
 * embeddings and the LM head whole. After o_proj and after down_proj each
 * rank holds a partial sum of the block's output: the all-reduce hook
 * (rs_llama_set_allreduce) must sum it over the ranks in place before the
 * forward goes on. rs_llama_tp (llama_tp.h) runs the ranks together.
 *
 * Ownership: an rs_llama owns its backend weights, KV cache and activation
 * arena (all sized at create); it borrows files and backend, which must
 * outlive it. One thread at a time. */
#ifndef RS_LLAMA_H
#define RS_LLAMA_H

#include <stdint.h>

#include "backend.h"
#include "model_files.h"
#include "status.h"

typedef struct rs_llama_config {
    int vocab_size, hidden, n_layers, n_heads, n_kv_heads, head_dim, intermediate;
    int max_positions;
    float rms_eps, rope_theta;
    int tie_embeddings;
    /* Llama 3 rope_scaling ("rope_type": "llama3"); factor 0 = none. */
    float rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max_pos;
    int eos_ids[4], n_eos; /* config.json eos_token_id (int or list) */
} rs_llama_config;

/* Reads and validates a LlamaForCausalLM config.json. */
rs_status rs_llama_config_parse(const cJSON *config, const char *dir, rs_llama_config *out, rs_err *err);

/* inv_freq[head_dim/2] of the config's rotary embedding, rope_scaling
 * applied (HF _compute_llama3_parameters). */
void rs_llama_inv_freq(const rs_llama_config *c, float *inv_freq);

typedef struct rs_llama_limits {
    int max_tokens;     /* tokens in one forward */
    int max_slots;      /* KV cache slots */
    int slot_len;       /* positions per slot */
    int max_prefix;     /* positions of the shared prefix (0: none) */
    int max_logit_rows; /* rows of logits one forward may return; 0: an encoder
                           (no LM head loaded; rs_llama_embed only) */
    int tp_rank, tp_size; /* tensor-parallel shard (0, 0 or 1: the whole model) */
    int n_layers;       /* run only the first n layers (0: all) */
    int allreduce_timeout_ms; /* tensor parallel on GPUs: how long a rank waits for its peers (0: 30000) */
} rs_llama_limits;

typedef struct rs_llama rs_llama;

rs_status rs_llama_create(rs_model_files *files, rs_backend *b, const rs_llama_limits *lim, rs_llama **out,
                          rs_err *err);
void rs_llama_free(rs_llama *m);
const rs_llama_config *rs_llama_get_config(const rs_llama *m);

/* The all-reduce of a tensor-parallel shard: sum x[0..n) (backend memory of
 * b) over every rank, in place, on every rank. Called twice per layer. */
typedef rs_status (*rs_llama_allreduce_fn)(void *ctx, int rank, rs_backend *b, float *x, size_t n);
void rs_llama_set_allreduce(rs_llama *m, rs_llama_allreduce_fn fn, void *ctx);

/* Computes the shared prefix's KV (positions 0..n-1); n = 0 clears it. */
rs_status rs_llama_set_prefix(rs_llama *m, const int32_t *ids, int n, rs_err *err);
int rs_llama_prefix_len(const rs_llama *m);

/* One forward over n tokens (see the header comment), writing each slot's
 * K/V. logits (host, [n_rows, vocab_size]) gets the LM head's output for the
 * tokens listed in rows (indices into 0..n-1); n_rows may be 0. */
rs_status rs_llama_forward(rs_llama *m, const int32_t *ids, const int32_t *slot, const int32_t *pos, int n,
                           const int32_t *rows, int n_rows, float *logits, rs_err *err);

/* The decoder as a sentence encoder. Embeds n_seq sequences packed back to
 * back in ids (sequence s = ids[offsets[s]..offsets[s+1]), at most max_slots
 * of them, max_tokens in all, each at most slot_len long; sequence s uses
 * slot s at positions 0..len-1, no prefix): the hidden state after the
 * loaded layers — HF's hidden_states[n_layers], i.e. the residual stream,
 * or the final-normed last_hidden_state when every layer is loaded — pooled
 * per sequence by mean over its tokens (pool_last 0) or its last token
 * (pool_last 1), optionally L2-normalised, into out (host, [n_seq, hidden]).
 * Needs limits with max_logit_rows 0. */
rs_status rs_llama_embed(rs_llama *m, const int32_t *ids, const int32_t *offsets, int n_seq, int pool_last,
                         int normalize, float *out, rs_err *err);

/* Floating-point operations of a forward of n tokens attending to ctx
 * positions on average, with n_rows logit rows (for benchmarks). */
double rs_llama_flops(const rs_llama_config *c, int n, double ctx, int n_rows);
/* The same for this rs_llama's loaded layers. */
double rs_llama_model_flops(const rs_llama *m, int n, double ctx, int n_rows);

#endif
