/* backend_cpu.c — the CPU backend and numerical reference: fp32 by default.
 *
 * GEMMs go to oneDNN's dnnl_sgemm (measured ~2x OpenBLAS on these machines,
 * benchmarks/RESULTS.md). At the bf16 precisions linear goes through oneDNN's
 * matmul primitive instead (struct rs_cpu_gemm): bf16 weights packed once at load,
 * the input rounded to bf16 per call, fp32 accumulation and output, bias and
 * GELU/tanh fused into the GEMM. Everything else is OpenMP loops over rows, so both
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
    rs_precision precision;
    int use_matmul;   /* linear through the oneDNN matmul primitive (the bf16 precisions) */
    float *scratch;   /* n_threads x max_len x max_len attention scores */
    dnnl_engine_t eng;  /* the matmul path's engine and stream; NULL when unused */
    dnnl_stream_t strm;
    uint16_t *xbf;    /* bf16 copy of linear's input, xbf_cap elements, grown as needed */
    size_t xbf_cap;
} cpu_backend;

/* On the CPU a weight is the caller's fp32 array itself: nothing is copied
 * (struct rs_bweight in backend_cpu_llama.h), except a linear weight's GEMM
 * form on the matmul path (struct rs_cpu_gemm). */

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
    if (c->strm) dnnl_stream_destroy(c->strm);
    if (c->eng) dnnl_engine_destroy(c->eng);
    free(c->xbf);
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
    *w = (rs_bweight){data, rows, cols, NULL};
    *out = w;
    return RS_OK;
}

/* A linear weight on the matmul path: the weight in the layout
 * the primitive asked for (bf16 or fp32; the caller's array itself when that
 * is its plain layout), and one primitive per (activation, bias) pair, made
 * at first use. M, the token count, is a runtime dimension, so one primitive
 * serves every batch. */
struct rs_cpu_gemm {
    dnnl_memory_desc_t wmd; /* the packed weight's layout, [K, N] */
    dnnl_memory_t wmem;
    void *packed;           /* owned copy (NULL: wmem wraps the caller's fp32 data) */
    dnnl_primitive_t prim[3][2]; /* [rs_act][has bias] */
};

static void gemm_free(struct rs_cpu_gemm *g) {
    if (!g) return;
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < 2; i++)
            if (g->prim[a][i]) dnnl_primitive_destroy(g->prim[a][i]);
    if (g->wmem) dnnl_memory_destroy(g->wmem);
    free(g->packed);
    free(g);
}

static void cpu_weight_free(rs_backend *b, rs_bweight *w) {
    (void)b;
    if (w) gemm_free(w->gemm);
    free(w);
}

static dnnl_data_type_t gemm_type(const cpu_backend *c) {
    return c->precision == RS_PRECISION_FP32 ? dnnl_f32 : dnnl_bf16;
}

/* The matmul primitive descriptor y[M, N] = act(x[M, K] w[K, N] + bias):
 * M and x's row stride at run time, w in the layout oneDNN picks ("any"),
 * bias and the activation fused into the GEMM's epilogue. */
static rs_status gemm_pd(cpu_backend *c, int64_t N, int64_t K, rs_act act, int has_bias,
                         dnnl_primitive_desc_t *pd) {
    const dnnl_data_type_t dt = gemm_type(c);
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_dims_t sd = {DNNL_RUNTIME_DIM_VAL, K}, ss = {DNNL_RUNTIME_DIM_VAL, 1};
    dnnl_dims_t wd = {K, N}, bd = {1, N}, dd = {DNNL_RUNTIME_DIM_VAL, N}, ds = {N, 1};
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_matmul_desc_t md;
    dnnl_status_t s = dnnl_memory_desc_init_by_strides(&src, 2, sd, dt, ss);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&wei, 2, wd, dt, dnnl_format_tag_any);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&bias, 2, bd, dnnl_f32, dnnl_ab);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_strides(&dst, 2, dd, dnnl_f32, ds);
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&md, &src, &wei, has_bias ? &bias : NULL, &dst);
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success && act != RS_ACT_NONE) {
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success)
            s = dnnl_post_ops_append_eltwise(po, 1.f, act == RS_ACT_GELU ? dnnl_eltwise_gelu_erf : dnnl_eltwise_tanh,
                                             0.f, 0.f);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &md, attr, c->eng, NULL);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (s == dnnl_unimplemented) return RS_ERR_UNSUPPORTED;
    return s == dnnl_success ? RS_OK : s == dnnl_out_of_memory ? RS_ERR_NOMEM : RS_ERR_BACKEND;
}

/* The weight's GEMM form: w (N rows of K, the caller's fp32) reordered once
 * into the layout and type the matmul primitive wants. */
static rs_status cpu_linear_prepare(rs_backend *b, rs_bweight *w) {
    cpu_backend *c = (cpu_backend *)b;
    if (!c->use_matmul || w->gemm) return RS_OK;
    rs_cpu_enter(b);
    const int64_t N = w->rows, K = w->cols;
    struct rs_cpu_gemm *g = calloc(1, sizeof *g);
    if (!g) return RS_ERR_NOMEM;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_t user = NULL;
    dnnl_memory_desc_t umd;
    dnnl_dims_t wd = {K, N}, ws = {1, K}; /* [K, N] view of the [N, K] rows */
    rs_status st = gemm_pd(c, N, K, RS_ACT_NONE, 0, &pd);
    dnnl_status_t s = dnnl_success;
    if (st != RS_OK) goto done;
    g->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    s = dnnl_memory_desc_init_by_strides(&umd, 2, wd, dnnl_f32, ws);
    if (s == dnnl_success && dnnl_memory_desc_equal(&umd, &g->wmd)) {
        /* fp32 in the plain layout: use the caller's array as it is. */
        s = dnnl_memory_create(&g->wmem, &g->wmd, c->eng, (void *)w->data);
        goto done;
    }
    size_t bytes = dnnl_memory_desc_get_size(&g->wmd);
    if (s == dnnl_success && !(g->packed = aligned_alloc(64, (bytes + 63) & ~(size_t)63))) {
        st = RS_ERR_NOMEM;
        goto done;
    }
    if (s == dnnl_success) s = dnnl_memory_create(&g->wmem, &g->wmd, c->eng, g->packed);
    if (s == dnnl_success) s = dnnl_memory_create(&user, &umd, c->eng, (void *)w->data);
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&rpd, &umd, c->eng, &g->wmd, c->eng, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&reorder, rpd);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, g->wmem}};
        s = dnnl_primitive_execute(reorder, c->strm, 2, args);
    }
    if (s == dnnl_success) s = dnnl_stream_wait(c->strm);
done:
    if (st == RS_OK && s != dnnl_success) st = s == dnnl_out_of_memory ? RS_ERR_NOMEM : RS_ERR_BACKEND;
    if (reorder) dnnl_primitive_destroy(reorder);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (user) dnnl_memory_destroy(user);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (st != RS_OK) gemm_free(g);
    else w->gemm = g;
    return st;
}

/* The primitive for (act, bias) over w's packed layout. */
static rs_status gemm_prim(cpu_backend *c, const rs_bweight *w, rs_act act, int has_bias, dnnl_primitive_t *out) {
    struct rs_cpu_gemm *g = w->gemm;
    if (g->prim[act][has_bias]) {
        *out = g->prim[act][has_bias];
        return RS_OK;
    }
    dnnl_primitive_desc_t pd;
    rs_status st = gemm_pd(c, w->rows, w->cols, act, has_bias, &pd);
    if (st != RS_OK) return st;
    /* Every epilogue must read the one packed copy. */
    if (!dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &g->wmd)) st = RS_ERR_INTERNAL;
    else if (dnnl_primitive_create(&g->prim[act][has_bias], pd) != dnnl_success) st = RS_ERR_BACKEND;
    dnnl_primitive_desc_destroy(pd);
    *out = g->prim[act][has_bias];
    return st;
}

/* Round to nearest even; NaN stays a (quiet) NaN. Branch-free: vectorizes. */
static inline uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint16_t r = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u) : r;
}

/* y = act(x w^T + bias) by the matmul primitive; x is first rounded to
 * bf16 (rows packed, ld K) for the bf16 precisions. */
static rs_status matmul_linear(cpu_backend *c, const float *x, int64_t ldx, int64_t M, int64_t K,
                               const rs_bweight *w, const rs_bweight *bias, rs_act act, float *y) {
    const int64_t N = w->rows;
    rs_status st = w->gemm ? RS_OK : cpu_linear_prepare(&c->base, (rs_bweight *)w);
    dnnl_primitive_t prim = NULL;
    if (st == RS_OK) st = gemm_prim(c, w, act, bias != NULL, &prim);
    if (st != RS_OK) return st;
    const dnnl_data_type_t dt = gemm_type(c);
    const void *src = x;
    int64_t lds = ldx;
    if (dt == dnnl_bf16) {
        size_t need = (size_t)(M * K);
        if (need > c->xbf_cap) {
            /* Grows to the largest forward's input, then stays. */
            uint16_t *p = aligned_alloc(64, (need * sizeof *p + 63) & ~(size_t)63);
            if (!p) return RS_ERR_NOMEM;
            free(c->xbf);
            c->xbf = p;
            c->xbf_cap = need;
        }
        uint16_t *xb = c->xbf;
#pragma omp parallel for schedule(static) if (M * K >= RS_CPU_PAR_MIN)
        for (int64_t m = 0; m < M; m++)
            for (int64_t k = 0; k < K; k++) xb[m * K + k] = bf16_round(x[m * ldx + k]);
        src = xb;
        lds = K;
    }
    dnnl_memory_desc_t smd, dmd, bmd;
    dnnl_dims_t sd = {M, K}, ss = {lds, 1}, dd = {M, N}, ds = {N, 1}, bd = {1, N};
    dnnl_memory_t ms = NULL, md = NULL, mb = NULL;
    dnnl_status_t s = dnnl_memory_desc_init_by_strides(&smd, 2, sd, dt, ss);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_strides(&dmd, 2, dd, dnnl_f32, ds);
    if (s == dnnl_success) s = dnnl_memory_create(&ms, &smd, c->eng, (void *)src);
    if (s == dnnl_success) s = dnnl_memory_create(&md, &dmd, c->eng, y);
    if (s == dnnl_success && bias) {
        s = dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab);
        if (s == dnnl_success) s = dnnl_memory_create(&mb, &bmd, c->eng, (void *)bias->data);
    }
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, w->gemm->wmem}, {DNNL_ARG_DST, md},
                                   {DNNL_ARG_BIAS, mb}};
        s = dnnl_primitive_execute(prim, c->strm, bias ? 4 : 3, args);
    }
    if (s == dnnl_success) s = dnnl_stream_wait(c->strm);
    if (ms) dnnl_memory_destroy(ms);
    if (md) dnnl_memory_destroy(md);
    if (mb) dnnl_memory_destroy(mb);
    return s == dnnl_success ? RS_OK : s == dnnl_out_of_memory ? RS_ERR_NOMEM : RS_ERR_BACKEND;
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
#pragma omp parallel for schedule(static) if ((int64_t)n_tokens * hidden >= RS_CPU_PAR_MIN)
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
    cpu_backend *c = (cpu_backend *)b;
    if (M <= 0) return RS_OK;
    if (c->use_matmul) return matmul_linear(c, x, ldx, M, K, w, bias, act, y);
    int64_t N = w->rows;
    rs_status st = sgemm('N', 'T', M, N, K, 1.f, x, ldx, w->data, K, 0.f, y, N);
    if (st != RS_OK) return st;
    const float *bv = bias ? bias->data : NULL;
#pragma omp parallel for schedule(static) if (M * N >= RS_CPU_PAR_MIN)
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
#pragma omp parallel for schedule(static) if (M * N >= RS_CPU_PAR_MIN)
    for (int64_t m = 0; m < M; m++) {
        float *row = x + m * N;
        const float *r = residual + m * N;
        for (int64_t n = 0; n < N; n++) row[n] += r[n];
        layernorm_row(row, g->data, beta->data, eps, N);
    }
    return RS_OK;
}

/* row = softmax(row) in place. Max and sum run in SOFTMAX_LANES partial
 * results, so the loops vectorize without -ffast-math (a single float
 * accumulator is a serial chain GCC must keep in order); exp and sum share
 * one pass. */
#define SOFTMAX_LANES 16
static void softmax_row(float *row, int64_t L) {
    float mv[SOFTMAX_LANES], sv[SOFTMAX_LANES];
    const int64_t Lv = L - L % SOFTMAX_LANES;
    for (int k = 0; k < SOFTMAX_LANES; k++) {
        mv[k] = row[0];
        sv[k] = 0.f;
    }
    for (int64_t j = 0; j < Lv; j += SOFTMAX_LANES)
        for (int k = 0; k < SOFTMAX_LANES; k++) mv[k] = row[j + k] > mv[k] ? row[j + k] : mv[k];
    float mx = row[0], sum = 0.f;
    for (int k = 0; k < SOFTMAX_LANES; k++) mx = mv[k] > mx ? mv[k] : mx;
    for (int64_t j = Lv; j < L; j++) mx = row[j] > mx ? row[j] : mx;
    for (int64_t j = 0; j < Lv; j += SOFTMAX_LANES)
        for (int k = 0; k < SOFTMAX_LANES; k++) {
            float e = rs_fast_expf(row[j + k] - mx);
            row[j + k] = e;
            sv[k] += e;
        }
    for (int64_t j = Lv; j < L; j++) sum += row[j] = rs_fast_expf(row[j] - mx);
    for (int k = 0; k < SOFTMAX_LANES; k++) sum += sv[k];
    const float inv = 1.f / sum;
    for (int64_t j = 0; j < L; j++) row[j] *= inv;
}

static rs_status cpu_attention(rs_backend *b, const float *qkv, const int32_t *offsets, int n_seq, int max_len,
                               int n_heads, int head_dim, float *out) {
    rs_cpu_enter(b);
    cpu_backend *c = (cpu_backend *)b;
    if (max_len > c->max_len) return RS_ERR_INTERNAL;
    const int64_t hd = (int64_t)n_heads * head_dim, ld = 3 * hd;
    const float scale = 1.f / sqrtf((float)head_dim);
    int failed = 0;
    /* Multiply-adds of QK^T and SV, bounded by the longest sequence. */
    const int64_t work = 2 * (int64_t)n_seq * n_heads * max_len * max_len * head_dim;
    /* Longest sequences first would balance better; dynamic scheduling over
     * (sequence, head) pairs is enough at two cores. */
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed) num_threads(c->n_threads) \
    if (work >= 16 * RS_CPU_PAR_MIN)
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
        for (int64_t i = 0; i < L; i++) softmax_row(S + i * L, L);
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
#pragma omp parallel for schedule(static) if ((int64_t)offsets[n_seq] * N >= RS_CPU_PAR_MIN)
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

rs_status rs_backend_linear_prepare(rs_backend *b, rs_bweight *w) {
    return b->ops == &CPU_OPS ? cpu_linear_prepare(b, w) : RS_OK;
}

const char *rs_precision_name(rs_precision p) {
    switch (p) {
    case RS_PRECISION_FP32: return "fp32";
    case RS_PRECISION_BF16: return "bf16";
    case RS_PRECISION_BF16_EMULATED: return "bf16-emulated";
    }
    return NULL;
}

int rs_precision_parse(const char *name, rs_precision *out) {
    for (int p = RS_PRECISION_FP32; p <= RS_PRECISION_BF16_EMULATED; p++)
        if (name && !strcmp(name, rs_precision_name((rs_precision)p))) {
            *out = (rs_precision)p;
            return 0;
        }
    return -1;
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    if ((isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx) return "avx512_core_amx";
    if ((isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16) return "avx512_core_bf16";
    if ((isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core) return "avx512_core";
    if ((isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2) return "avx2";
    return "below avx2";
}

rs_status rs_backend_cpu_create(int n_threads, int max_len, rs_backend **out, rs_err *err) {
    return rs_backend_cpu_create_prec(n_threads, max_len, RS_PRECISION_FP32, out, err);
}

rs_status rs_backend_cpu_create_prec(int n_threads, int max_len, rs_precision precision, rs_backend **out,
                                     rs_err *err) {
    *out = NULL;
    if (!rs_precision_name(precision)) return rs_errf(err, RS_ERR_INVALID_ARG, "cpu backend: precision %d", (int)precision);
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (precision == RS_PRECISION_BF16 && (isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16)
        return rs_errf(err, RS_ERR_UNSUPPORTED,
                       "precision bf16: this CPU has no AVX-512 BF16 (oneDNN ISA %s), so oneDNN would emulate bf16, "
                       "slower than fp32; use precision fp32 (the default), or bf16-emulated to get bf16's numbers "
                       "anyway (accuracy checks)", isa_name(isa));
    if (n_threads <= 0) n_threads = omp_get_num_procs();
    if (max_len <= 0) return rs_errf(err, RS_ERR_INVALID_ARG, "cpu backend: max_len %d", max_len);
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c) return rs_errf(err, RS_ERR_NOMEM, "cpu backend: no memory");
    c->base.ops = &CPU_OPS;
    c->n_threads = n_threads;
    c->max_len = max_len;
    c->precision = precision;
    /* fp32 stays on dnnl_sgemm + one loop for bias and activation: the fp32
     * matmul primitive with fused post-ops ran no faster (runtime M gives
     * the same gemm:jit kernel; benchmarks/RESULTS.md). */
    c->use_matmul = precision != RS_PRECISION_FP32;
    if (c->use_matmul) {
        dnnl_primitive_desc_t pd = NULL;
        rs_status st = RS_ERR_BACKEND;
        if (dnnl_engine_create(&c->eng, dnnl_cpu, 0) == dnnl_success &&
            dnnl_stream_create(&c->strm, c->eng, dnnl_stream_default_flags) == dnnl_success)
            st = gemm_pd(c, 64, 64, RS_ACT_GELU, 1, &pd); /* can oneDNN do this precision here at all? */
        if (pd) dnnl_primitive_desc_destroy(pd);
        if (st != RS_OK) {
            cpu_destroy(&c->base);
            return rs_errf(err, st, "cpu backend: oneDNN has no %s matmul with a GELU epilogue on this CPU (ISA %s)",
                           rs_precision_name(precision), isa_name(isa));
        }
    }
    /* OpenMP's pool is per process; oneDNN shares it, so the two never
     * oversubscribe the cores. */
    omp_set_num_threads(n_threads);
    omp_set_max_active_levels(1);
    size_t scratch = (size_t)n_threads * (size_t)max_len * (size_t)max_len * sizeof(float);
    c->scratch = aligned_alloc(64, (scratch + 63) & ~(size_t)63);
    if (!c->scratch) {
        cpu_destroy(&c->base);
        return rs_errf(err, RS_ERR_NOMEM, "cpu backend: no memory for %zu bytes of attention scratch", scratch);
    }
    *out = &c->base;
    return RS_OK;
}
