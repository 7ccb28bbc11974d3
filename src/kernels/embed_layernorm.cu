/* embed_layernorm.cu — the encoder's first op: gather three embedding rows
 * per token, sum them in fp32 and LayerNorm the sum.
 *
 * One warp per token (4 per block): a row of a few hundred to a few thousand
 * features is reduced with shuffles alone, no shared memory or block barrier.
 * The three passes (mean, variance, write) re-read the rows instead of
 * holding them in registers, so any hidden size works; the re-reads hit L1.
 * With hidden % 8 == 0 and 16-byte aligned tables and output every row
 * starts 16-byte aligned and each lane moves 8 features per load. */
#include "cuda_common.cuh"
#include "embed_layernorm.cuh"

namespace {

constexpr int kWarps = 4;

template <bool VEC>
__global__ void __launch_bounds__(kWarps * 32)
    embed_ln_kernel(const int32_t *__restrict__ ids, const int32_t *__restrict__ pos_ids,
                    const int32_t *__restrict__ type_ids, int n_tokens, const bf16 *__restrict__ word,
                    const bf16 *__restrict__ pos, const bf16 *__restrict__ type, const float *__restrict__ g,
                    const float *__restrict__ beta, float eps, int hidden, bf16 *__restrict__ out) {
    const int lane = threadIdx.x & 31;
    const int64_t t = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (t >= n_tokens) return; /* whole warps leave together */
    const bf16 *we = word + (int64_t)ids[t] * hidden;
    const bf16 *pe = pos + (int64_t)pos_ids[t] * hidden;
    const bf16 *te = type + (int64_t)type_ids[t] * hidden;
    bf16 *o = out + t * hidden;

    float sum = 0.f;
    if (VEC) {
        for (int i = lane * 8; i < hidden; i += 32 * 8) {
            float a[8], b[8], d[8];
            rs_load8(we + i, a);
            rs_load8(pe + i, b);
            rs_load8(te + i, d);
#pragma unroll
            for (int k = 0; k < 8; k++) sum += (a[k] + b[k]) + d[k];
        }
    } else {
        for (int i = lane; i < hidden; i += 32)
            sum += (__bfloat162float(we[i]) + __bfloat162float(pe[i])) + __bfloat162float(te[i]);
    }
    const float mean = rs_warp_sum(sum) / (float)hidden;

    float var = 0.f;
    if (VEC) {
        for (int i = lane * 8; i < hidden; i += 32 * 8) {
            float a[8], b[8], d[8];
            rs_load8(we + i, a);
            rs_load8(pe + i, b);
            rs_load8(te + i, d);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float v = (a[k] + b[k]) + d[k] - mean;
                var += v * v;
            }
        }
    } else {
        for (int i = lane; i < hidden; i += 32) {
            float v = (__bfloat162float(we[i]) + __bfloat162float(pe[i])) + __bfloat162float(te[i]) - mean;
            var += v * v;
        }
    }
    const float inv = 1.f / sqrtf(rs_warp_sum(var) / (float)hidden + eps);

    if (VEC) {
        for (int i = lane * 8; i < hidden; i += 32 * 8) {
            float a[8], b[8], d[8], r[8];
            rs_load8(we + i, a);
            rs_load8(pe + i, b);
            rs_load8(te + i, d);
#pragma unroll
            for (int k = 0; k < 8; k++) r[k] = ((a[k] + b[k]) + d[k] - mean) * inv * g[i + k] + beta[i + k];
            rs_store8(o + i, r);
        }
    } else {
        for (int i = lane; i < hidden; i += 32) {
            float v = (__bfloat162float(we[i]) + __bfloat162float(pe[i])) + __bfloat162float(te[i]);
            o[i] = __float2bfloat16_rn((v - mean) * inv * g[i] + beta[i]);
        }
    }
}

} // namespace

rs_status rs_cuda_embed_layernorm(rs_cuda *c, const int32_t *ids, const int32_t *pos_ids, const int32_t *type_ids,
                                  int n_tokens, const bf16 *word, const bf16 *pos, const bf16 *type, const float *g,
                                  const float *b, float eps, int hidden, bf16 *out) {
    if (n_tokens <= 0) return RS_OK;
    const unsigned blocks = (unsigned)((n_tokens + kWarps - 1) / kWarps);
    const bool vec = hidden % 8 == 0 && (((uintptr_t)word | (uintptr_t)pos | (uintptr_t)type | (uintptr_t)out) & 15) == 0;
    if (vec)
        RS_LAUNCH(embed_ln_kernel<true>, blocks, kWarps * 32, 0, c->stream)(ids, pos_ids, type_ids, n_tokens, word, pos,
                                                                     type, g, b, eps, hidden, out);
    else
        RS_LAUNCH(embed_ln_kernel<false>, blocks, kWarps * 32, 0, c->stream)(ids, pos_ids, type_ids, n_tokens, word, pos,
                                                                      type, g, b, eps, hidden, out);
    RS_CUDA_LAUNCHED(c);
    return RS_OK;
}
