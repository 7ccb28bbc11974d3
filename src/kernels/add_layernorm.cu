/* add_layernorm.cu — post-LN residual: x = LayerNorm(x + residual), in place.
 *
 * One warp per row (4 per block), shuffles only. Three passes re-read the two
 * rows (mean, variance, write) so any width works; the sum x + residual stays
 * fp32 and is rounded to bf16 once, at the write. In place is safe: in the
 * last pass each lane reads and then writes the same features, and the
 * earlier passes end in warp-wide reductions. N % 8 == 0 with 16-byte
 * aligned buffers takes 16-byte loads (rows then start 16-byte aligned). */
#include "add_layernorm.cuh"
#include "cuda_common.cuh"

namespace {

constexpr int kWarps = 4;

template <bool VEC>
__global__ void __launch_bounds__(kWarps * 32)
    add_ln_kernel(bf16 *x, const bf16 *__restrict__ residual, const float *__restrict__ g,
                  const float *__restrict__ beta, float eps, int64_t M, int64_t N) {
    const int lane = threadIdx.x & 31;
    const int64_t m = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (m >= M) return; /* whole warps leave together */
    bf16 *xr = x + m * N;
    const bf16 *rr = residual + m * N;

    float sum = 0.f;
    if (VEC) {
        for (int64_t i = lane * 8; i < N; i += 32 * 8) {
            float a[8], b[8];
            rs_load8(xr + i, a);
            rs_load8(rr + i, b);
#pragma unroll
            for (int k = 0; k < 8; k++) sum += a[k] + b[k];
        }
    } else {
        for (int64_t i = lane; i < N; i += 32) sum += __bfloat162float(xr[i]) + __bfloat162float(rr[i]);
    }
    const float mean = rs_warp_sum(sum) / (float)N;

    float var = 0.f;
    if (VEC) {
        for (int64_t i = lane * 8; i < N; i += 32 * 8) {
            float a[8], b[8];
            rs_load8(xr + i, a);
            rs_load8(rr + i, b);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float v = a[k] + b[k] - mean;
                var += v * v;
            }
        }
    } else {
        for (int64_t i = lane; i < N; i += 32) {
            float v = __bfloat162float(xr[i]) + __bfloat162float(rr[i]) - mean;
            var += v * v;
        }
    }
    const float inv = 1.f / sqrtf(rs_warp_sum(var) / (float)N + eps);

    if (VEC) {
        for (int64_t i = lane * 8; i < N; i += 32 * 8) {
            float a[8], b[8], r[8];
            rs_load8(xr + i, a);
            rs_load8(rr + i, b);
#pragma unroll
            for (int k = 0; k < 8; k++) r[k] = (a[k] + b[k] - mean) * inv * g[i + k] + beta[i + k];
            rs_store8(xr + i, r);
        }
    } else {
        for (int64_t i = lane; i < N; i += 32) {
            float v = __bfloat162float(xr[i]) + __bfloat162float(rr[i]);
            xr[i] = __float2bfloat16_rn((v - mean) * inv * g[i] + beta[i]);
        }
    }
}

} // namespace

rs_status rs_cuda_add_layernorm(rs_cuda *c, bf16 *x, const bf16 *residual, const float *g, const float *b, float eps,
                                int64_t M, int64_t N) {
    if (M <= 0 || N <= 0) return RS_OK;
    const int64_t blocks = (M + kWarps - 1) / kWarps;
    if (blocks > 0x7fffffff) return RS_ERR_INVALID_ARG;
    const bool vec = N % 8 == 0 && (((uintptr_t)x | (uintptr_t)residual) & 15) == 0;
    if (vec)
        RS_LAUNCH(add_ln_kernel<true>, (unsigned)blocks, kWarps * 32, 0, c->stream)(x, residual, g, b, eps, M, N);
    else
        RS_LAUNCH(add_ln_kernel<false>, (unsigned)blocks, kWarps * 32, 0, c->stream)(x, residual, g, b, eps, M, N);
    RS_CUDA_LAUNCHED(c);
    return RS_OK;
}
