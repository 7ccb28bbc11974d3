/* attention_kv.cuh — causal grouped-query flash attention over a shared prefix and per-slot KV cache. */
#ifndef RS_KERNELS_ATTENTION_KV_CUH
#define RS_KERNELS_ATTENTION_KV_CUH

#include "cuda_backend.cuh"

/* backend.h's attention_kv: query row t of q[T, n_heads*D] (slot[t], pos[t],
 * host arrays) sees the prefix's n_prefix rows of pk/pv [n_prefix, n_kv*D],
 * then rows 0..pos[t] of k/v from row slot[t]*slot_stride; query head h reads
 * KV head h / (n_heads / n_kv). Writes out[T, n_heads*D]. Validates on the
 * host (T <= max_tokens, slot/pos >= 0, head_dim <= 128, <= 64 heads per KV
 * head), builds the query tiles and stages the metadata. */
rs_status rs_cuda_attention_kv(rs_cuda *c, const bf16 *q, int64_t T, const int32_t *slot, const int32_t *pos,
                               const bf16 *pk, const bf16 *pv, int n_prefix, const bf16 *k, const bf16 *v,
                               int64_t slot_stride, int n_heads, int n_kv_heads, int head_dim, bf16 *out);

#endif
