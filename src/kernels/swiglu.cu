/* swiglu.cu — gate = silu(gate) * up (SwiGLU), between the MLP's gate/up
 * GEMMs and its down projection. cuBLASLt has no epilogue that multiplies
 * two GEMM outputs, so this is one pass over both: elementwise, 8 elements
 * per thread with 16-byte accesses when both buffers are 16-byte aligned, a
 * scalar tail; silu(g) = g / (1 + e^-g) in fp32 (expf, not __expf: the CPU
 * reference is expf too), rounded to bf16 once. */
#include <math.h>

#include "cuda_common.cuh"
#include "swiglu.cuh"

namespace {

__device__ __forceinline__ float swiglu1(float g, float u) { return g / (1.f + expf(-g)) * u; }

__global__ void __launch_bounds__(256) swiglu_kernel(bf16 *gate, const bf16 *__restrict__ up, int64_t n, int64_t n8) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t i = tid; i < n8; i += stride) {
        float a[8], b[8];
        rs_load8(gate + i * 8, a);
        rs_load8(up + i * 8, b);
#pragma unroll
        for (int k = 0; k < 8; k++) a[k] = swiglu1(a[k], b[k]);
        rs_store8(gate + i * 8, a);
    }
    for (int64_t j = n8 * 8 + tid; j < n; j += stride)
        gate[j] = __float2bfloat16_rn(swiglu1(__bfloat162float(gate[j]), __bfloat162float(up[j])));
}

} // namespace

rs_status rs_cuda_swiglu(rs_cuda *c, bf16 *gate, const bf16 *up, int64_t n) {
    if (n <= 0) return RS_OK;
    const int64_t n8 = (((uintptr_t)gate | (uintptr_t)up) & 15) == 0 ? n / 8 : 0;
    int64_t blocks = ((n8 ? n8 : n) + 255) / 256;
    if (blocks > 65536) blocks = 65536; /* grid-stride beyond that */
    RS_LAUNCH(swiglu_kernel, (unsigned)blocks, 256, 0, c->stream)(gate, up, n, n8);
    RS_CUDA_LAUNCHED(c);
    return RS_OK;
}
