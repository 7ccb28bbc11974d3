/* linear.cu — y[M, N] = act(x[M, K] . w[N, K]^T + bias[N]) on cuBLASLt:
 * bf16 operands, fp32 accumulation (CUBLAS_COMPUTE_32F), bf16 output, the
 * bias fused into the GEMM (CUBLASLT_EPILOGUE_BIAS, bias in the output type
 * as cuBLASLt requires for bf16). Exact GELU and tanh follow in bias_act.cu
 * (cuBLASLt's GELU epilogue is the tanh approximation; see there).
 *
 * Row-major to cuBLASLt's column-major: y^T (N x M, ld N) = w (K x N col-
 * major, ld K, used transposed) times x^T (K x M col-major, ld ldx). So
 * m = N, n = M, k = K; A = w with op T, B = x with op N, D = y.
 *
 * Plans (descriptors, layouts and the heuristic's algorithm) are cached per
 * weight shape, alignment and token-count bucket (the next power of two,
 * at least 16) in a small table: a forward has a handful of shapes, and
 * asking the heuristic every call would cost more than small GEMMs. The
 * algorithm is chosen for the bucket's largest count and serves every count
 * in it (serving changes the count with every batch); the layouts take the
 * call's count. Should cuBLASLt refuse the algorithm for a count, the plan
 * asks the heuristic again for that count and goes on. */
#include <stdio.h>
#include <string.h>

#include "bias_act.cuh"
#include "linear.cuh"

namespace {

/* Largest power of two (<= 256) dividing the address: what cuBLASLt may
 * assume about the buffer. */
uint32_t alignment_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && (a & (al - 1))) al >>= 1;
    return al;
}

void plan_release(lt_plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

/* The heuristic's algorithm for the plan's descriptor and layouts as they
 * stand (their token count). */
rs_status plan_choose(rs_cuda *c, lt_plan *p) {
    const uint32_t align_x = p->align_x, align_y = p->align_y;
    const int64_t M = p->M_cur, N = p->N, K = p->K, ldx = p->ldx;
    cublasLtMatmulPreference_t pref = NULL;
    RS_CUBLAS_CHECK(c, cublasLtMatmulPreferenceCreate(&pref));
    const size_t ws = RS_CUDA_WORKSPACE_BYTES;
    const uint32_t align_w = 256; /* weights: one cudaMalloc each */
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                             sizeof ws);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_w,
                                                  sizeof align_w);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_x,
                                                  sizeof align_x);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_y,
                                                  sizeof align_y);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_y,
                                                  sizeof align_y);
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    RS_CUBLAS_CHECK(c, st);
    if (found < 1) {
        fprintf(stderr, "cuda backend: cuBLASLt has no bf16 algorithm for M=%lld N=%lld K=%lld ldx=%lld "
                        "(alignment x %u, y %u)\n",
                (long long)M, (long long)N, (long long)K, (long long)ldx, align_x, align_y);
        return RS_ERR_UNSUPPORTED;
    }
    p->algo = result.algo;
    return RS_OK;
}

rs_status plan_build(rs_cuda *c, lt_plan *p, int64_t M, int64_t N, int64_t K, int64_t ldx, const void *bias,
                     uint32_t align_x, uint32_t align_y) {
    const int with_bias = bias != NULL;
    p->used = 1;
    p->M = M;
    p->N = N;
    p->K = K;
    p->ldx = ldx;
    p->with_bias = with_bias;
    p->align_x = align_x;
    p->align_y = align_y;
    RS_CUBLAS_CHECK(c, cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    RS_CUBLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    RS_CUBLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    const cublasLtEpilogue_t epi = with_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    RS_CUBLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (with_bias) {
        const int32_t bias_type = CUDA_R_16BF;
        RS_CUBLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                          sizeof bias_type));
        /* The heuristic reads the bias pointer's alignment (every bias is
         * its own cudaMalloc, so one plan serves them all). */
        RS_CUBLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                          sizeof bias));
    }
    RS_CUBLAS_CHECK(c, cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, (uint64_t)K, (uint64_t)N, K));
    RS_CUBLAS_CHECK(c, cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, (uint64_t)K, (uint64_t)M, ldx));
    RS_CUBLAS_CHECK(c, cublasLtMatrixLayoutCreate(&p->d, CUDA_R_16BF, (uint64_t)N, (uint64_t)M, N));
    p->M_cur = M;

    return plan_choose(c, p);
}

/* The token counts one plan serves: up to the next power of two (>= 16). */
int64_t bucket_of(int64_t M) {
    int64_t b = 16;
    while (b < M) b <<= 1;
    return b;
}

/* Re-chooses the plan's algorithm for M tokens (its layouts already are). */
rs_status plan_rechoose(rs_cuda *c, lt_plan *p, int64_t M) {
    fprintf(stderr, "cuda backend: cuBLASLt refused the cached algorithm for M=%lld N=%lld K=%lld; choosing again\n",
            (long long)M, (long long)p->N, (long long)p->K);
    return plan_choose(c, p);
}

/* Points the plan's x and y layouts at M tokens. */
rs_status plan_set_tokens(rs_cuda *c, lt_plan *p, int64_t M) {
    if (p->M_cur == M) return RS_OK;
    const uint64_t cols = (uint64_t)M;
    RS_CUBLAS_CHECK(c, cublasLtMatrixLayoutSetAttribute(p->b, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof cols));
    RS_CUBLAS_CHECK(c, cublasLtMatrixLayoutSetAttribute(p->d, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof cols));
    p->M_cur = M;
    return RS_OK;
}

} // namespace

void rs_cuda_linear_plans_free(rs_cuda *c) {
    for (int i = 0; i < RS_CUDA_PLANS; i++)
        if (c->plans[i].used) plan_release(&c->plans[i]);
}

rs_status rs_cuda_linear(rs_cuda *c, const bf16 *x, int64_t ldx, int64_t M, int64_t K, const rs_bweight *w,
                         const rs_bweight *bias, rs_act act, bf16 *y) {
    const int64_t N = w->rows;
    if (M == 0) return RS_OK;
    if (M < 0 || K < 1 || w->cols != K || ldx < K || (bias && (bias->rows != N || bias->cols != 1)))
        return RS_ERR_INVALID_ARG;
    const int with_bias = bias != NULL;
    const uint32_t ax = alignment_of(x), ay = alignment_of(y);
    lt_plan *p = NULL;
    for (int i = 0; i < RS_CUDA_PLANS && !p; i++) {
        lt_plan *q = &c->plans[i];
        if (q->used && q->M == bucket_of(M) && q->N == N && q->K == K && q->ldx == ldx && q->with_bias == with_bias &&
            q->align_x == ax && q->align_y == ay)
            p = q;
    }
    if (!p) {
        p = &c->plans[c->next_plan];
        c->next_plan = (c->next_plan + 1) % RS_CUDA_PLANS;
        if (p->used) plan_release(p);
        rs_status st = plan_build(c, p, bucket_of(M), N, K, ldx, with_bias ? (const void *)bias->bf : NULL, ax, ay);
        if (st != RS_OK) {
            plan_release(p);
            return st;
        }
        p->M_cur = p->M;
    }
    rs_status st = plan_set_tokens(c, p, M);
    if (st != RS_OK) return st;
    if (with_bias) {
        const void *bp = bias->bf;
        RS_CUBLAS_CHECK(c, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp));
    }
    const float alpha = 1.f, beta = 0.f;
    cublasStatus_t s = cublasLtMatmul(c->lt, p->desc, &alpha, w->bf, p->a, x, p->b, &beta, y, p->d, y, p->d, &p->algo,
                                      c->workspace, RS_CUDA_WORKSPACE_BYTES, c->stream);
    if ((s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE) && M != p->M) {
        /* The bucket's algorithm does not take this count: ask for one that
         * does (the plan keeps it) and run again. */
        if ((st = plan_rechoose(c, p, M)) != RS_OK) return st;
        s = cublasLtMatmul(c->lt, p->desc, &alpha, w->bf, p->a, x, p->b, &beta, y, p->d, y, p->d, &p->algo,
                           c->workspace, RS_CUDA_WORKSPACE_BYTES, c->stream);
    }
    RS_CUBLAS_CHECK(c, s);
    return rs_cuda_activation(c, y, M * N, act);
}
