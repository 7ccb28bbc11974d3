/* bias_act.cuh — the activation epilogue cuBLASLt cannot fuse exactly (erf GELU, tanh). */
#ifndef RS_KERNELS_BIAS_ACT_CUH
#define RS_KERNELS_BIAS_ACT_CUH

#include "cuda_backend.cuh"

/* y[i] = act(y[i]) for i < n, contiguous, in place: exact erf GELU or tanh, in fp32. */
rs_status rs_cuda_activation(rs_cuda *c, bf16 *y, int64_t n, rs_act act);

#endif
