/* backend_cpu_llama.c — the CPU backend's decoder ops (backend.h): RMSNorm,
 * rotary embedding, SwiGLU, row gathers/scatters and causal grouped-query
 * attention over a KV cache with a shared prefix. fp32, OpenMP over rows.
 *
 * Attention is one task per (query row, KV head): the query heads of a GQA
 * group share each key/value row they read. Softmax is the online
 * (streaming) form over blocks of keys, so no scratch grows with context.
 * Exponentials are cpu_fastmath.h's (vectorizable; relative error < 2e-7). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "backend_cpu_llama.h"
#include "cpu_fastmath.h"

rs_status rs_cpu_embed_rows(rs_backend *b, const rs_bweight *table, const int32_t *ids, int n, float *out) {
    rs_cpu_enter(b);
    const int64_t N = table->cols;
#pragma omp parallel for schedule(static) if (n * N >= RS_CPU_PAR_MIN)
    for (int t = 0; t < n; t++)
        memcpy(out + (int64_t)t * N, table->data + (int64_t)ids[t] * N, (size_t)N * sizeof *out);
    return RS_OK;
}

rs_status rs_cpu_add_rmsnorm(rs_backend *b, float *x, const float *delta, const rs_bweight *g, float eps, int64_t M,
                             int64_t N, float *y) {
    rs_cpu_enter(b);
#pragma omp parallel for schedule(static) if (M * N >= RS_CPU_PAR_MIN)
    for (int64_t m = 0; m < M; m++) {
        float *row = x + m * N, *o = y + m * N;
        if (delta)
            for (int64_t i = 0; i < N; i++) row[i] += delta[m * N + i];
        float ss = 0.f;
        for (int64_t i = 0; i < N; i++) ss += row[i] * row[i];
        const float inv = 1.f / sqrtf(ss / (float)N + eps);
        for (int64_t i = 0; i < N; i++) o[i] = g->data[i] * (row[i] * inv);
    }
    return RS_OK;
}

rs_status rs_cpu_rope(rs_backend *b, float *x, int64_t ld, int64_t M, const int32_t *pos, int n_heads, int head_dim,
                      const float *inv_freq) {
    rs_cpu_enter(b);
    const int half = head_dim / 2;
#pragma omp parallel for schedule(static) if (M * n_heads * head_dim >= RS_CPU_PAR_MIN)
    for (int64_t m = 0; m < M; m++) {
        /* Angles in fp32 as HF computes them (position x inv_freq, then
         * cos/sin), so positions in the hundreds round the same way. */
        float c[512], s[512];
        for (int i = 0; i < half; i++) {
            float a = (float)pos[m] * inv_freq[i];
            c[i] = cosf(a);
            s[i] = sinf(a);
        }
        for (int h = 0; h < n_heads; h++) {
            float *v = x + m * ld + (int64_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float x0 = v[i], x1 = v[i + half];
                v[i] = x0 * c[i] - x1 * s[i];
                v[i + half] = x1 * c[i] + x0 * s[i];
            }
        }
    }
    return RS_OK;
}

rs_status rs_cpu_swiglu(rs_backend *b, float *gate, const float *up, int64_t n) {
    rs_cpu_enter(b);
#pragma omp parallel for schedule(static) if (n >= RS_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1.f + rs_fast_expf(-gate[i])) * up[i];
    return RS_OK;
}

rs_status rs_cpu_copy_rows(rs_backend *b, float *dst, const int32_t *dst_rows, const float *src,
                           const int32_t *src_rows, int64_t M, int64_t N) {
    rs_cpu_enter(b);
#pragma omp parallel for schedule(static) if (M * N >= RS_CPU_PAR_MIN)
    for (int64_t i = 0; i < M; i++) {
        int64_t d = dst_rows ? dst_rows[i] : i, s = src_rows ? src_rows[i] : i;
        memcpy(dst + d * N, src + s * N, (size_t)N * sizeof *dst);
    }
    return RS_OK;
}

#define KV_BLOCK 64
#define MAX_GROUP 16 /* query heads per KV head */
#define MAX_HEAD_DIM 256
#define DOT_LANES 16 /* partial sums of a dot product: independent lanes vectorize */

/* Folds key/value rows [0, n) of (K, V) into the running softmax state of
 * the group's query heads: m (max), l (sum), acc (weighted values). Per
 * block of keys: every head's scores (each key row read once for the whole
 * group), then their exponentials, then the weighted values. Every inner
 * loop runs over independent lanes so that GCC vectorizes it: a scalar dot
 * product (one dependent chain) and libm's expf made this loop slower than
 * all of a prefill's GEMMs together. */
static void attend_rows(const float *Q, int group, int D, float scale, const float *K, const float *V, int64_t ld,
                        int64_t n, float *m, float *l, float *acc) {
    float sc[MAX_GROUP][KV_BLOCK];
    for (int64_t j0 = 0; j0 < n; j0 += KV_BLOCK) {
        const int nb = (int)(n - j0 < KV_BLOCK ? n - j0 : KV_BLOCK);
        for (int j = 0; j < nb; j++) {
            const float *kr = K + (j0 + j) * ld;
            for (int g = 0; g < group; g++) {
                const float *q = Q + (int64_t)g * D;
                float part[DOT_LANES] = {0.f}, d = 0.f;
                int i = 0;
                for (; i + DOT_LANES <= D; i += DOT_LANES)
                    for (int u = 0; u < DOT_LANES; u++) part[u] += q[i + u] * kr[i + u];
                for (; i < D; i++) d += q[i] * kr[i];
                for (int u = 0; u < DOT_LANES; u++) d += part[u];
                sc[g][j] = d * scale;
            }
        }
        for (int g = 0; g < group; g++) {
            float *p = sc[g], bmax = -INFINITY, sum = 0.f;
            for (int j = 0; j < nb; j++) bmax = p[j] > bmax ? p[j] : bmax;
            const float mn = m[g] > bmax ? m[g] : bmax;
            const float corr = rs_fast_expf(m[g] - mn); /* ~0 on the first block (m = -inf): l, acc are 0 */
            for (int j = 0; j < nb; j++) p[j] = rs_fast_expf(p[j] - mn);
            for (int j = 0; j < nb; j++) sum += p[j];
            float *a = acc + (int64_t)g * D;
            l[g] = l[g] * corr + sum;
            /* DOT_LANES columns at a time, held in registers over the block's
             * keys; the columns past a multiple of DOT_LANES run scalar. */
            int i0 = 0;
            for (; i0 + DOT_LANES <= D; i0 += DOT_LANES) {
                float r[DOT_LANES];
                for (int u = 0; u < DOT_LANES; u++) r[u] = a[i0 + u] * corr;
                for (int j = 0; j < nb; j++) {
                    const float *vr = V + (j0 + j) * ld + i0, pj = p[j];
                    for (int u = 0; u < DOT_LANES; u++) r[u] += pj * vr[u];
                }
                for (int u = 0; u < DOT_LANES; u++) a[i0 + u] = r[u];
            }
            for (int i = i0; i < D; i++) {
                float r = a[i] * corr;
                for (int j = 0; j < nb; j++) r += p[j] * V[(j0 + j) * ld + i];
                a[i] = r;
            }
            m[g] = mn;
        }
    }
}

rs_status rs_cpu_attention_kv(rs_backend *b, const float *q, int64_t T, const int32_t *slot, const int32_t *pos,
                              const float *pk, const float *pv, int n_prefix, const float *k, const float *v,
                              int64_t slot_stride, int n_heads, int n_kv_heads, int head_dim, float *out) {
    rs_cpu_enter(b);
    const int group = n_heads / n_kv_heads, D = head_dim;
    if (group * n_kv_heads != n_heads || group > MAX_GROUP || D > MAX_HEAD_DIM) return RS_ERR_INTERNAL;
    const int64_t ldq = (int64_t)n_heads * D, ldkv = (int64_t)n_kv_heads * D;
    const float scale = 1.f / sqrtf((float)D);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < T * n_kv_heads; task++) {
        const int64_t t = task / n_kv_heads;
        const int kh = (int)(task % n_kv_heads);
        float m[MAX_GROUP], l[MAX_GROUP], acc[MAX_GROUP * MAX_HEAD_DIM];
        for (int g = 0; g < group; g++) {
            m[g] = -INFINITY;
            l[g] = 0.f;
        }
        memset(acc, 0, (size_t)group * (size_t)D * sizeof *acc);
        const float *Q = q + t * ldq + (int64_t)kh * group * D;
        if (n_prefix > 0)
            attend_rows(Q, group, D, scale, pk + (int64_t)kh * D, pv + (int64_t)kh * D, ldkv, n_prefix, m, l, acc);
        const int64_t base = (int64_t)slot[t] * slot_stride * ldkv + (int64_t)kh * D;
        attend_rows(Q, group, D, scale, k + base, v + base, ldkv, (int64_t)pos[t] + 1, m, l, acc);
        for (int g = 0; g < group; g++) {
            float *o = out + t * ldq + ((int64_t)kh * group + g) * D;
            const float inv = 1.f / l[g];
            for (int i = 0; i < D; i++) o[i] = acc[(int64_t)g * D + i] * inv;
        }
    }
    return RS_OK;
}
