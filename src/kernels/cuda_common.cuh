/* cuda_common.cuh — small device helpers shared by the op kernels: warp
 * reductions, 16-byte bf16 <-> fp32 vector moves, and the tensor-core MMA and
 * fragment packing of the two flash-attention kernels (attention_varlen.cu,
 * attention_kv.cu). */
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

/* C += A B on the tensor cores: mma.sync m16n8k16, bf16 inputs, fp32 accumulators
 * (fragment layouts in attention_varlen.cu's header). */
__device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#ifdef RS_CUDA_SIM
    rs_sim::mma_m16n8k16_bf16(c, a, b0, b1); /* the simulation tier's warp-wide emulation */
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* Two consecutive bf16 (the lower index in the low half) as one register. */
__device__ __forceinline__ uint32_t lds_pair(const uint16_t *p) { return *reinterpret_cast<const uint32_t *>(p); }

/* Two bf16 from different rows, first in the low half. */
__device__ __forceinline__ uint32_t lds_2rows(const uint16_t *lo, const uint16_t *hi) {
    return (uint32_t)*lo | ((uint32_t)*hi << 16);
}

#endif
