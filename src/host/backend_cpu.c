/* backend_cpu.c — the CPU backend and numerical reference: fp32 throughout.
 *
 * GEMMs go to oneDNN's dnnl_sgemm (measured ~2x OpenBLAS on these machines,
 * benchmarks/RESULTS.md). Everything else is OpenMP loops over rows, so both
 * cores stay busy between GEMMs. Attention runs one (sequence, head) pair per
 * task over packed sequences: cost follows real tokens, never padding. Its
 * score matrix lives in per-thread scratch sized at create for max_len. */
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu_llama.h"
#include "cpu_fastmath.h"

typedef struct cpu_backend {
    rs_backend base;
    int n_threads;
    int max_len;
    float *scratch; /* n_threads x max_len x max_len attention scores */
} cpu_backend;

/* On the CPU a weight is the caller's fp32 array itself: nothing is copied
 * (struct rs_bweight in backend_cpu_llama.h). */

static rs_status sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return dnnl_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == dnnl_success ? RS_OK
                                                                                            : RS_ERR_BACKEND;
}

/* OpenMP's thread count belongs to the calling thread (its ICV), and the
 * thread that created a backend is seldom the one that runs it (the server's
 * engine workers, one per replica): every op that goes parallel sets it for
 * its caller first, so a backend keeps to its n_threads (and its per-thread
 * attention scratch) whoever calls it. */
void rs_cpu_enter(rs_backend *b) {
    const cpu_backend *c = (const cpu_backend *)b;
    if (omp_get_max_threads() != c->n_threads) omp_set_num_threads(c->n_threads);
}

static void cpu_destroy(rs_backend *b) {
    cpu_backend *c = (cpu_backend *)b;
    free(c->scratch);
    free(c);
}

static rs_status cpu_alloc(rs_backend *b, size_t bytes, void **out) {
    (void)b;
    /* 64-byte alignment for AVX-512 loads in the GEMM. */
    *out = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    return *out ? RS_OK : RS_ERR_NOMEM;
}

static void cpu_release(rs_backend *b, void *p) {
    (void)b;
    free(p);
}

static rs_status cpu_to_host(rs_backend *b, float *dst, const float *src, size_t n) {
    (void)b;
    if (dst != src) memcpy(dst, src, n * sizeof *dst);
    return RS_OK;
}

static rs_status cpu_from_host(rs_backend *b, float *dst, const float *src, size_t n) {
    return cpu_to_host(b, dst, src, n); /* both sides are fp32 host memory */
}

static int cpu_lost(rs_backend *b) {
    (void)b;
    return 0; /* nothing on the CPU poisons later calls */
}

static rs_status cpu_weight_load(rs_backend *b, const float *data, int64_t rows, int64_t cols, rs_bweight **out) {
    (void)b;
    rs_bweight *w = malloc(sizeof *w);
    if (!w) return RS_ERR_NOMEM;
    *w = (rs_bweight){data, rows, cols};
    *out = w;
    return RS_OK;
}

static void cpu_weight_free(rs_backend *b, rs_bweight *w) {
    (void)b;
    free(w);
}

/* erf(x) by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), with the
 * vectorizable exponential of cpu_fastmath.h (libm's erff, like expf, is a
 * scalar call): GELU then matches erff-based GELU to ~1e-7 relative, below
 * fp32 noise after a LayerNorm. */
static inline float fast_erff(float x) {
    float a = fabsf(x);
    float t = 1.0f / fmaf(0.3275911f, a, 1.0f);
    float y = 1.061405429f;
    y = fmaf(y, t, -1.453152027f);
    y = fmaf(y, t, 1.421413741f);
    y = fmaf(y, t, -0.284496736f);
    y = fmaf(y, t, 0.254829592f);
    y = 1.0f - y * t * rs_fast_expf(-a * a);
    return copysignf(y, x);
}

static void layernorm_row(float *x, const float *g, const float *beta, float eps, int64_t n) {
    float mean = 0.f;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= (float)n;
    float var = 0.f;
    for (int64_t i = 0; i < n; i++) {
        float d = x[i] - mean;
        var += d * d;
    }
    float inv = 1.f / sqrtf(var / (float)n + eps);
    for (int64_t i = 0; i < n; i++) x[i] = (x[i] - mean) * inv * g[i] + beta[i];
}

static rs_status cpu_embed(rs_backend *b, const int32_t *ids, const int32_t *pos_ids, const int32_t *type_ids,
                           int n_tokens, const rs_bweight *word, const rs_bweight *pos, const rs_bweight *type,
                           const rs_bweight *ln_g, const rs_bweight *ln_b, float eps, int hidden, float *out) {
    rs_cpu_enter(b);
    /* Ids were range-checked by the engine against these tables. */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n_tokens; t++) {
        const float *we = word->data + (int64_t)ids[t] * hidden;
        const float *pe = pos->data + (int64_t)pos_ids[t] * hidden;
        const float *te = type->data + (int64_t)type_ids[t] * hidden;
        float *o = out + (int64_t)t * hidden;
        for (int i = 0; i < hidden; i++) o[i] = we[i] + pe[i] + te[i];
        layernorm_row(o, ln_g->data, ln_b->data, eps, hidden);
    }
    return RS_OK;
}

static rs_status cpu_linear(rs_backend *b, const float *x, int64_t ldx, int64_t M, int64_t K, const rs_bweight *w,
                            const rs_bweight *bias, rs_act act, float *y) {
    rs_cpu_enter(b);
    int64_t N = w->rows;
    rs_status st = sgemm('N', 'T', M, N, K, 1.f, x, ldx, w->data, K, 0.f, y, N);
    if (st != RS_OK) return st;
    const float *bv = bias ? bias->data : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        float *row = y + m * N;
        if (bv)
            for (int64_t n = 0; n < N; n++) row[n] += bv[n];
        if (act == RS_ACT_GELU)
            for (int64_t n = 0; n < N; n++) row[n] = 0.5f * row[n] * (1.f + fast_erff(row[n] * (float)M_SQRT1_2));
        else if (act == RS_ACT_TANH)
            for (int64_t n = 0; n < N; n++) row[n] = tanhf(row[n]);
    }
    return RS_OK;
}

static rs_status cpu_add_layernorm(rs_backend *b, float *x, const float *residual, const rs_bweight *g,
                                   const rs_bweight *beta, float eps, int64_t M, int64_t N) {
    rs_cpu_enter(b);
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        float *row = x + m * N;
        const float *r = residual + m * N;
        for (int64_t n = 0; n < N; n++) row[n] += r[n];
        layernorm_row(row, g->data, beta->data, eps, N);
    }
    return RS_OK;
}

static rs_status cpu_attention(rs_backend *b, const float *qkv, const int32_t *offsets, int n_seq, int max_len,
                               int n_heads, int head_dim, float *out) {
    rs_cpu_enter(b);
    cpu_backend *c = (cpu_backend *)b;
    if (max_len > c->max_len) return RS_ERR_INTERNAL;
    const int64_t hd = (int64_t)n_heads * head_dim, ld = 3 * hd;
    const float scale = 1.f / sqrtf((float)head_dim);
    int failed = 0;
    /* Longest sequences first would balance better; dynamic scheduling over
     * (sequence, head) pairs is enough at two cores. */
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed) num_threads(c->n_threads)
    for (int64_t task = 0; task < (int64_t)n_seq * n_heads; task++) {
        int s = (int)(task / n_heads), h = (int)(task % n_heads);
        int64_t t0 = offsets[s], L = offsets[s + 1] - offsets[s];
        float *S = c->scratch + (int64_t)omp_get_thread_num() * c->max_len * c->max_len;
        const float *Q = qkv + t0 * ld + (int64_t)h * head_dim;
        const float *K = Q + hd, *V = Q + 2 * hd;
        /* S[L, L] = scale * Q K^T */
        if (sgemm('N', 'T', L, L, head_dim, scale, Q, ld, K, ld, 0.f, S, L) != RS_OK) {
            failed |= 1;
            continue;
        }
        for (int64_t i = 0; i < L; i++) {
            float *row = S + i * L, mx = row[0], sum = 0.f;
            for (int64_t j = 1; j < L; j++) mx = row[j] > mx ? row[j] : mx;
            for (int64_t j = 0; j < L; j++) row[j] = rs_fast_expf(row[j] - mx); /* vectorized */
            for (int64_t j = 0; j < L; j++) sum += row[j];
            float inv = 1.f / sum;
            for (int64_t j = 0; j < L; j++) row[j] *= inv;
        }
        /* out[t0.., h] = S V */
        if (sgemm('N', 'N', L, head_dim, L, 1.f, S, L, V, ld, 0.f, out + t0 * hd + (int64_t)h * head_dim, hd) !=
            RS_OK)
            failed |= 1;
    }
    return failed ? RS_ERR_BACKEND : RS_OK;
}

static rs_status cpu_pool(rs_backend *b, const float *x, const int32_t *offsets, int n_seq, int64_t N, int mean_pool,
                          int normalize, float *out) {
    rs_cpu_enter(b);
#pragma omp parallel for schedule(static)
    for (int s = 0; s < n_seq; s++) {
        float *o = out + (int64_t)s * N;
        int64_t t0 = offsets[s], t1 = mean_pool ? offsets[s + 1] : offsets[s] + 1;
        memset(o, 0, (size_t)N * sizeof *o);
        for (int64_t t = t0; t < t1; t++)
            for (int64_t n = 0; n < N; n++) o[n] += x[t * N + n];
        float inv = 1.f / (float)(t1 - t0);
        for (int64_t n = 0; n < N; n++) o[n] *= inv;
        if (normalize) {
            /* sentence-transformers' Normalize: x / max(||x||, 1e-12). */
            double ss = 0;
            for (int64_t n = 0; n < N; n++) ss += (double)o[n] * o[n];
            float nrm = (float)sqrt(ss);
            float d = 1.f / (nrm > 1e-12f ? nrm : 1e-12f);
            for (int64_t n = 0; n < N; n++) o[n] *= d;
        }
    }
    return RS_OK;
}

static const rs_backend_ops CPU_OPS = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .to_host = cpu_to_host,
    .from_host = cpu_from_host,
    .lost = cpu_lost,
    .weight_load = cpu_weight_load,
    .weight_free = cpu_weight_free,
    .embed = cpu_embed,
    .linear = cpu_linear,
    .add_layernorm = cpu_add_layernorm,
    .attention = cpu_attention,
    .pool = cpu_pool,
    .embed_rows = rs_cpu_embed_rows,
    .add_rmsnorm = rs_cpu_add_rmsnorm,
    .rope = rs_cpu_rope,
    .swiglu = rs_cpu_swiglu,
    .copy_rows = rs_cpu_copy_rows,
    .attention_kv = rs_cpu_attention_kv,
};

rs_status rs_backend_cpu_create(int n_threads, int max_len, rs_backend **out, rs_err *err) {
    *out = NULL;
    if (n_threads <= 0) n_threads = omp_get_num_procs();
    if (max_len <= 0) return rs_errf(err, RS_ERR_INVALID_ARG, "cpu backend: max_len %d", max_len);
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c) return rs_errf(err, RS_ERR_NOMEM, "cpu backend: no memory");
    c->base.ops = &CPU_OPS;
    c->n_threads = n_threads;
    c->max_len = max_len;
    /* OpenMP's pool is per process; oneDNN shares it, so the two never
     * oversubscribe the cores. */
    omp_set_num_threads(n_threads);
    omp_set_max_active_levels(1);
    size_t scratch = (size_t)n_threads * (size_t)max_len * (size_t)max_len * sizeof(float);
    c->scratch = aligned_alloc(64, (scratch + 63) & ~(size_t)63);
    if (!c->scratch) {
        free(c);
        return rs_errf(err, RS_ERR_NOMEM, "cpu backend: no memory for %zu bytes of attention scratch", scratch);
    }
    *out = &c->base;
    return RS_OK;
}
