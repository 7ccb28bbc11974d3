/* rope.cuh — rotary position embedding in place (HF "rotate half" layout). */
#ifndef RS_KERNELS_ROPE_CUH
#define RS_KERNELS_ROPE_CUH

#include "cuda_backend.cuh"

#define RS_ROPE_MAX_HALF 128 /* head_dim <= 256 */

/* In each of the n_heads heads (head_dim wide) of row m (rows ld apart) of x,
 * element i pairs with i + head_dim/2 at angle pos[m] * inv_freq[i]. pos is a
 * device array (M); inv_freq a host array of head_dim/2 (passed by value). */
rs_status rs_cuda_rope(rs_cuda *c, bf16 *x, int64_t ld, int64_t M, const int32_t *pos, int n_heads, int head_dim,
                       const float *inv_freq);

#endif
