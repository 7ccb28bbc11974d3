/* flash_tile.cuh — the warp-level steps both flash-attention kernels share
 * (attention_varlen.cu: encoder, bidirectional over packed sequences;
 * attention_kv.cu: decoder, causal over prefix + KV cache). Only how they
 * load tiles and which keys a row may see differ.
 *
 * Layout (mma.m16n8k16, bf16 in, fp32 accumulate): a warp owns 16 query
 * rows; lane (g = lane / 4, t = lane % 4) holds rows g and g + 8. Q lives in
 * A fragments qf; the running state in an acc. */
#ifndef RS_FLASH_TILE_CUH
#define RS_FLASH_TILE_CUH

#include <math.h>
#include <stdint.h>

#include "cuda_common.cuh"

namespace flash {

constexpr int kBlockK = 64; /* keys per tile */

/* A lane's running state: output o[DP / 8][4] (o[j][0..1]: row g, dims
 * j*8 + 2t and +1; o[j][2..3]: row g + 8), maxima m0, m1 of rows g and g + 8
 * in log2 units, and this lane's part of their row sums l0, l1. */
template <int DP>
struct acc {
    float o[DP / 8][4];
    float m0, m1, l0, l1;
    __device__ __forceinline__ void init() {
#pragma unroll
        for (int j = 0; j < DP / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
        m0 = m1 = -INFINITY;
        l0 = l1 = 0.f;
    }
};

/* The warp's 16 query rows, staged in shared memory sQ (rows warp*16 ..),
 * into A fragments. */
template <int DP>
__device__ __forceinline__ void load_q_frags(const uint16_t (*sQ)[DP + 8], int warp, int g, int t,
                                             uint32_t (&qf)[DP / 16][4]) {
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++) {
        const int r = warp * 16 + g, col = kk * 16 + 2 * t;
        qf[kk][0] = lds_pair(&sQ[r][col]);
        qf[kk][1] = lds_pair(&sQ[r + 8][col]);
        qf[kk][2] = lds_pair(&sQ[r][col + 8]);
        qf[kk][3] = lds_pair(&sQ[r + 8][col + 8]);
    }
}

/* One key tile (keys k0 .. k0 + kBlockK of sK / sV): S = Q K^T, scaled to
 * log2 units, keys the row may not see masked (visible(key, row_half):
 * row_half 0 is row g, 1 is row g + 8), then the online softmax update and
 * O += P V. The caller's first tile must leave every row a visible key (so
 * the maxima are finite from then on). */
template <int DP, typename Visible>
__device__ __forceinline__ void step(const uint32_t (&qf)[DP / 16][4], const uint16_t (*sK)[DP + 8],
                                     const uint16_t (*sV)[DP + 8], int k0, float scale_log2, Visible visible, int g,
                                     int t, acc<DP> &a) {
    float sc[kBlockK / 8][4];
#pragma unroll
    for (int j = 0; j < kBlockK / 8; j++) {
        sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++) {
            const uint16_t *kr = &sK[j * 8 + g][kk * 16 + 2 * t];
            mma_bf16_16816(sc[j], qf[kk], lds_pair(kr), lds_pair(kr + 8));
        }
    }
    /* Scale, mask, row maxima (the four lanes of a quad hold one row's keys). */
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < kBlockK / 8; j++) {
        const int key = k0 + j * 8 + 2 * t;
#pragma unroll
        for (int e = 0; e < 4; e++) sc[j][e] = visible(key + (e & 1), e >> 1) ? sc[j][e] * scale_log2 : -INFINITY;
        mx0 = fmaxf(mx0, fmaxf(sc[j][0], sc[j][1]));
        mx1 = fmaxf(mx1, fmaxf(sc[j][2], sc[j][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(a.m0, mx0), mn1 = fmaxf(a.m1, mx1);
    const float alpha0 = exp2f(a.m0 - mn0), alpha1 = exp2f(a.m1 - mn1); /* 0 on the first tile */
    a.m0 = mn0;
    a.m1 = mn1;
    a.l0 *= alpha0;
    a.l1 *= alpha1;
#pragma unroll
    for (int j = 0; j < DP / 8; j++) {
        a.o[j][0] *= alpha0;
        a.o[j][1] *= alpha0;
        a.o[j][2] *= alpha1;
        a.o[j][3] *= alpha1;
    }
#pragma unroll
    for (int j = 0; j < kBlockK / 8; j++) {
        sc[j][0] = exp2f(sc[j][0] - mn0);
        sc[j][1] = exp2f(sc[j][1] - mn0);
        sc[j][2] = exp2f(sc[j][2] - mn1);
        sc[j][3] = exp2f(sc[j][3] - mn1);
        a.l0 += sc[j][0] + sc[j][1];
        a.l1 += sc[j][2] + sc[j][3];
    }
    /* O += P V: kBlockK / 16 k-steps of 16 keys, DP / 8 n-tiles of 8 dims. */
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; kk++) {
        uint32_t pa[4];
        pa[0] = pack_bf16x2(sc[2 * kk][0], sc[2 * kk][1]);
        pa[1] = pack_bf16x2(sc[2 * kk][2], sc[2 * kk][3]);
        pa[2] = pack_bf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
        pa[3] = pack_bf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
        const int key = kk * 16 + 2 * t;
#pragma unroll
        for (int j = 0; j < DP / 8; j++) {
            const int d = j * 8 + g;
            const uint32_t b0 = lds_2rows(&sV[key][d], &sV[key + 1][d]);
            const uint32_t b1 = lds_2rows(&sV[key + 8][d], &sV[key + 9][d]);
            mma_bf16_16816(a.o[j], pa, b0, b1);
        }
    }
}

/* After the last tile: o / row sum, as bf16, into rows O0 (row g) and O1
 * (row g + 8) of D dims; a NULL row is not written. */
template <int DP>
__device__ __forceinline__ void store_rows(const acc<DP> &a, uint16_t *O0, uint16_t *O1, int D, int t) {
    const float(&o)[DP / 8][4] = a.o;
    float l0 = a.l0, l1 = a.l1;
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = 1.f / l0, inv1 = 1.f / l1; /* l >= 1: the max term contributes exp2(0) */
    /* Pairs need D even and 4-byte aligned rows (an offset view may not be). */
    const bool pairs = (D & 1) == 0 && (((uintptr_t)O0 | (uintptr_t)O1) & 3) == 0;
#pragma unroll
    for (int j = 0; j < DP / 8; j++) {
        const int d = j * 8 + 2 * t;
        if (d >= D) continue;
        const __nv_bfloat162 v0 = __floats2bfloat162_rn(o[j][0] * inv0, o[j][1] * inv0);
        const __nv_bfloat162 v1 = __floats2bfloat162_rn(o[j][2] * inv1, o[j][3] * inv1);
        if (pairs) { /* d even, D even: 4-byte aligned pairs, d + 1 < D */
            if (O0) *reinterpret_cast<__nv_bfloat162 *>(O0 + d) = v0;
            if (O1) *reinterpret_cast<__nv_bfloat162 *>(O1 + d) = v1;
        } else {
            const __nv_bfloat16 *e0 = reinterpret_cast<const __nv_bfloat16 *>(&v0);
            const __nv_bfloat16 *e1 = reinterpret_cast<const __nv_bfloat16 *>(&v1);
            if (O0) {
                reinterpret_cast<__nv_bfloat16 *>(O0)[d] = e0[0];
                if (d + 1 < D) reinterpret_cast<__nv_bfloat16 *>(O0)[d + 1] = e0[1];
            }
            if (O1) {
                reinterpret_cast<__nv_bfloat16 *>(O1)[d] = e1[0];
                if (d + 1 < D) reinterpret_cast<__nv_bfloat16 *>(O1)[d + 1] = e1[1];
            }
        }
    }
}

} // namespace flash

#endif
