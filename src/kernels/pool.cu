/* pool.cu — sentence pooling over packed sequences: the mean of a
 * sequence's rows or its first row, then optionally x / max(||x||, 1e-12)
 * (sentence-transformers' Normalize), as the CPU backend does.
 *
 * One block per sequence; thread i owns columns i, i + blockDim, ... and sums
 * them down the rows (coalesced across the block). With normalisation the
 * squared norm needs every column first, so the columns are summed twice
 * (once for the norm, once for the write) rather than parked in shared memory
 * of unbounded size: pooling is a sliver of a forward pass. */
#include "cuda_common.cuh"
#include "pool.cuh"

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float column_mean(const bf16 *__restrict__ x, int64_t N, int64_t t0, int64_t t1,
                                             int64_t n) {
    float s = 0.f;
    for (int64_t t = t0; t < t1; t++) s += __bfloat162float(x[t * N + n]);
    return s / (float)(t1 - t0);
}

__global__ void __launch_bounds__(kThreads)
    pool_kernel(const bf16 *__restrict__ x, const int32_t *__restrict__ offsets, int64_t N, int mean_pool,
                int normalize, bf16 *__restrict__ out) {
    __shared__ float partial[kThreads / 32];
    const int s = blockIdx.x;
    const int64_t t0 = offsets[s], t1 = mean_pool ? offsets[s + 1] : t0 + 1;
    bf16 *o = out + (int64_t)s * N;
    float scale = 1.f;
    if (normalize) {
        float ss = 0.f;
        for (int64_t n = threadIdx.x; n < N; n += kThreads) {
            float v = column_mean(x, N, t0, t1, n);
            ss += v * v;
        }
        ss = rs_warp_sum(ss);
        if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
        __syncthreads();
        float total = 0.f;
#pragma unroll
        for (int w = 0; w < kThreads / 32; w++) total += partial[w];
        const float nrm = sqrtf(total);
        scale = 1.f / (nrm > 1e-12f ? nrm : 1e-12f);
    }
    for (int64_t n = threadIdx.x; n < N; n += kThreads)
        o[n] = __float2bfloat16_rn(column_mean(x, N, t0, t1, n) * scale);
}

} // namespace

rs_status rs_cuda_pool(rs_cuda *c, const bf16 *x, const int32_t *offsets, int n_seq, int64_t N, int mean_pool,
                       int normalize, bf16 *out) {
    if (n_seq <= 0 || N <= 0) return RS_OK;
    RS_LAUNCH(pool_kernel, (unsigned)n_seq, kThreads, 0, c->stream)(x, offsets, N, mean_pool, normalize, out);
    RS_CUDA_LAUNCHED(c);
    return RS_OK;
}
