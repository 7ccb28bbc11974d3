/* add_rmsnorm.cu — x += delta; y = RMSNorm(x) * g: the Llama block's
 * residual add folded into the norm that follows it (llama.c keeps the
 * residual stream in x and the last block's output in delta).
 *
 * One warp per row (4 per block), shuffles only, like add_layernorm.cu. The
 * residual stream is bf16, so the sum x + delta is rounded to bf16 when it
 * is stored, and the sum of squares is taken over the rounded values, as HF
 * does in bf16 (the norm then sees exactly the x it leaves behind). Squares
 * and the scale are fp32; y is rounded once. Two passes: the second re-reads
 * the row it (the same lane) just wrote. N % 8 == 0 with 16-byte aligned
 * buffers takes 16-byte loads. */
#include "add_rmsnorm.cuh"
#include "cuda_common.cuh"

namespace {

constexpr int kWarps = 4;

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

template <bool VEC>
__global__ void __launch_bounds__(kWarps * 32)
    add_rmsnorm_kernel(bf16 *x, const bf16 *__restrict__ delta, const float *__restrict__ g, float eps, int64_t M,
                       int64_t N, bf16 *__restrict__ y) {
    const int lane = threadIdx.x & 31;
    const int64_t m = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (m >= M) return; /* whole warps leave together */
    bf16 *xr = x + m * N;
    const bf16 *dr = delta ? delta + m * N : nullptr;
    bf16 *yr = y + m * N;

    float ss = 0.f;
    if (VEC) {
        for (int64_t i = lane * 8; i < N; i += 32 * 8) {
            float a[8];
            rs_load8(xr + i, a);
            if (dr) {
                float b[8];
                rs_load8(dr + i, b);
#pragma unroll
                for (int k = 0; k < 8; k++) a[k] = round_bf16(a[k] + b[k]);
                rs_store8(xr + i, a); /* exact: already bf16 values */
            }
#pragma unroll
            for (int k = 0; k < 8; k++) ss += a[k] * a[k];
        }
    } else {
        for (int64_t i = lane; i < N; i += 32) {
            float a = __bfloat162float(xr[i]);
            if (dr) {
                a = round_bf16(a + __bfloat162float(dr[i]));
                xr[i] = __float2bfloat16_rn(a);
            }
            ss += a * a;
        }
    }
    const float inv = 1.f / sqrtf(rs_warp_sum(ss) / (float)N + eps);

    if (VEC) {
        for (int64_t i = lane * 8; i < N; i += 32 * 8) {
            float a[8];
            rs_load8(xr + i, a);
#pragma unroll
            for (int k = 0; k < 8; k++) a[k] = g[i + k] * (a[k] * inv);
            rs_store8(yr + i, a);
        }
    } else {
        for (int64_t i = lane; i < N; i += 32) yr[i] = __float2bfloat16_rn(g[i] * (__bfloat162float(xr[i]) * inv));
    }
}

} // namespace

rs_status rs_cuda_add_rmsnorm(rs_cuda *c, bf16 *x, const bf16 *delta, const float *g, float eps, int64_t M, int64_t N,
                              bf16 *y) {
    if (M <= 0 || N <= 0) return RS_OK;
    const int64_t blocks = (M + kWarps - 1) / kWarps;
    if (blocks > 0x7fffffff) return RS_ERR_INVALID_ARG;
    const bool vec = N % 8 == 0 && (((uintptr_t)x | (uintptr_t)delta | (uintptr_t)y) & 15) == 0;
    if (vec)
        RS_LAUNCH(add_rmsnorm_kernel<true>, (unsigned)blocks, kWarps * 32, 0, c->stream)(x, delta, g, eps, M, N, y);
    else
        RS_LAUNCH(add_rmsnorm_kernel<false>, (unsigned)blocks, kWarps * 32, 0, c->stream)(x, delta, g, eps, M, N, y);
    RS_CUDA_LAUNCHED(c);
    return RS_OK;
}
