/* linear.cuh — y = act(x . w^T + bias) through cuBLASLt with a fused bias epilogue. */
#ifndef RS_KERNELS_LINEAR_CUH
#define RS_KERNELS_LINEAR_CUH

#include "cuda_backend.cuh"

/* y[M, N] = act(x[M, K] . w[N, K]^T + bias[N]); x rows ldx apart, y dense (ld N). */
rs_status rs_cuda_linear(rs_cuda *c, const bf16 *x, int64_t ldx, int64_t M, int64_t K, const rs_bweight *w,
                         const rs_bweight *bias, rs_act act, bf16 *y);
/* Frees the cached cuBLASLt plans (backend destroy). */
void rs_cuda_linear_plans_free(rs_cuda *c);

#endif
