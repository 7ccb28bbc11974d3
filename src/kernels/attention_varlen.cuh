/* attention_varlen.cuh — flash attention over packed variable-length sequences (no padding). */
#ifndef RS_KERNELS_ATTENTION_VARLEN_CUH
#define RS_KERNELS_ATTENTION_VARLEN_CUH

#include "cuda_backend.cuh"

/* Bidirectional attention: sequence s is rows offsets[s] .. offsets[s+1] (device array, n_seq + 1
 * entries) of qkv[T, 3*H*D] laid out [Q | K | V], head h at columns h*D of each; writes
 * out[T, H*D]. max_len must be >= every sequence's length; head_dim 1..128. */
rs_status rs_cuda_attention_varlen(rs_cuda *c, const bf16 *qkv, const int32_t *offsets, int n_seq, int max_len,
                                   int n_heads, int head_dim, bf16 *out);

#endif
