/* rope.cu — rotary embedding in place on Q or K rows, HF's "rotate half"
 * layout: in each head, x[i] and x[i + D/2] rotate by pos * inv_freq[i].
 *
 * One block per row: its threads first compute the row's D/2 (cos, sin)
 * pairs into shared memory (angles in fp32 as HF computes them: position
 * times inv_freq, then cosf/sinf with full range reduction, not the fast
 * intrinsics, which lose accuracy at angles in the hundreds), then rotate
 * every head's pairs with them. inv_freq (at most 128 floats) travels as a
 * kernel argument: no upload, no device buffer to keep. */
#include <math.h>

#include "rope.cuh"

namespace {

constexpr int kThreads = 128;

struct rope_freqs {
    float f[RS_ROPE_MAX_HALF];
};

__global__ void __launch_bounds__(kThreads)
    rope_kernel(bf16 *x, int64_t ld, const int32_t *__restrict__ pos, int n_heads, int half, rope_freqs fr) {
    __shared__ float cs[RS_ROPE_MAX_HALF], sn[RS_ROPE_MAX_HALF];
    const int64_t m = blockIdx.x;
    const float p = (float)pos[m];
    for (int i = threadIdx.x; i < half; i += kThreads) {
        const float a = p * fr.f[i];
        cs[i] = cosf(a);
        sn[i] = sinf(a);
    }
    __syncthreads();
    bf16 *row = x + m * ld;
    const int64_t D = 2 * half;
    for (int k = threadIdx.x; k < n_heads * half; k += kThreads) {
        const int h = k / half, i = k % half;
        bf16 *v = row + h * D;
        const float x0 = __bfloat162float(v[i]), x1 = __bfloat162float(v[i + half]);
        v[i] = __float2bfloat16_rn(x0 * cs[i] - x1 * sn[i]);
        v[i + half] = __float2bfloat16_rn(x1 * cs[i] + x0 * sn[i]);
    }
}

} // namespace

rs_status rs_cuda_rope(rs_cuda *c, bf16 *x, int64_t ld, int64_t M, const int32_t *pos, int n_heads, int head_dim,
                       const float *inv_freq) {
    if (M <= 0 || n_heads <= 0) return RS_OK;
    const int half = head_dim / 2;
    if (head_dim < 2 || head_dim % 2 || half > RS_ROPE_MAX_HALF || ld < (int64_t)n_heads * head_dim ||
        M > 0x7fffffff)
        return RS_ERR_INVALID_ARG;
    rope_freqs fr;
    for (int i = 0; i < RS_ROPE_MAX_HALF; i++) fr.f[i] = i < half ? inv_freq[i] : 0.f;
    RS_LAUNCH(rope_kernel, (unsigned)M, kThreads, 0, c->stream)(x, ld, pos, n_heads, half, fr);
    RS_CUDA_LAUNCHED(c);
    return RS_OK;
}
