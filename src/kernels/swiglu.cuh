/* swiglu.cuh — the Llama MLP's gate: gate = silu(gate) * up, elementwise. */
#ifndef RS_KERNELS_SWIGLU_CUH
#define RS_KERNELS_SWIGLU_CUH

#include "cuda_backend.cuh"

/* gate[i] = silu(gate[i]) * up[i] for n elements, in place, fp32 arithmetic. */
rs_status rs_cuda_swiglu(rs_cuda *c, bf16 *gate, const bf16 *up, int64_t n);

#endif
