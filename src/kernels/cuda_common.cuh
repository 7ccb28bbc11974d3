/* cuda_common.cuh — small device helpers shared by the op kernels: warp
 * reductions and 16-byte bf16 <-> fp32 vector moves. */
#ifndef RS_KERNELS_CUDA_COMMON_CUH
#define RS_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ float rs_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float rs_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Eight bf16 at a 16-byte aligned address to fp32. */
__device__ __forceinline__ void rs_load8(const __nv_bfloat16 *p, float f[8]) {
    uint4 u = *reinterpret_cast<const uint4 *>(p);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

/* Eight fp32 to bf16 (round to nearest even) at a 16-byte aligned address. */
__device__ __forceinline__ void rs_store8(__nv_bfloat16 *p, const float f[8]) {
    uint4 u;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = u;
}

#endif
