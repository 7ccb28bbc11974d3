/* add_rmsnorm.cuh — the decoder's residual add fused into the next RMSNorm, one warp per row. */
#ifndef RS_KERNELS_ADD_RMSNORM_CUH
#define RS_KERNELS_ADD_RMSNORM_CUH

#include "cuda_backend.cuh"

/* x[M, N] += delta (skipped when delta is NULL), then y = x / sqrt(mean(x^2) + eps) * g, g fp32 (N). */
rs_status rs_cuda_add_rmsnorm(rs_cuda *c, bf16 *x, const bf16 *delta, const float *g, float eps, int64_t M, int64_t N,
                              bf16 *y);

#endif
