/* add_layernorm.cuh — residual add + LayerNorm in place, one warp per row. */
#ifndef RS_KERNELS_ADD_LAYERNORM_CUH
#define RS_KERNELS_ADD_LAYERNORM_CUH

#include "cuda_backend.cuh"

/* x[M, N] = LN(x + residual) with gamma g and beta b (fp32); sums and statistics in fp32. */
rs_status rs_cuda_add_layernorm(rs_cuda *c, bf16 *x, const bf16 *residual, const float *g, const float *b, float eps,
                                int64_t M, int64_t N);

#endif
