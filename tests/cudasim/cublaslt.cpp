/* cublaslt.cpp — cuBLASLt for the simulation tier: exactly the matmul
 * configurations routescore uses, with the semantics cuBLASLt's
 * documentation gives, and everything else refused with
 * CUBLAS_STATUS_NOT_SUPPORTED and a message on stderr.
 *
 * Semantics (cuBLASLt reference, cublasLtMatmul):
 *   D = alpha * op(A) op(B) + beta * C, then the epilogue;
 *   matrices are column-major: element (r, c) of a layout with leading
 *   dimension ld is at base[r + c * ld], and ld >= rows;
 *   op(A) is m x k, op(B) is k x n, C and D are m x n, where op is the
 *   descriptor's TRANSA / TRANSB (A stored k x m when transposed);
 *   CUBLASLT_EPILOGUE_BIAS adds bias[r] to every column of row r (a packed
 *   vector of length rows-of-D, in the bias data type, default D's type);
 *   scalars alpha and beta are host pointers read at the call (pointer
 *   mode host, the default).
 * Supported: compute type CUBLAS_COMPUTE_32F with scale type CUDA_R_32F;
 * A, B, C, D in CUDA_R_16BF with column order and batch count 1; TRANSA and
 * TRANSB N or T; epilogue DEFAULT or BIAS with a CUDA_R_16BF bias. The
 * product is formed in fp32 (oneDNN's sgemm over the bf16 values widened)
 * and rounded once to bf16 (nearest even) at D.
 *
 * An algorithm from cublasLtMatmulAlgoGetHeuristic remembers the minimum
 * alignments of its preference and its problem size; cublasLtMatmul refuses
 * pointers less aligned than that, a handle or stream of another device
 * than the current one, and a problem of another m or k, or a larger n,
 * than the one it was chosen for. */
#include <cublasLt.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "cudasim_rt.h"

using namespace rs_sim;

namespace {

constexpr uint64_t kMagicDesc = 0x72734c7464657363ull, kMagicLayout = 0x72734c746c61796full,
                   kMagicPref = 0x72734c7470726566ull, kMagicAlgo = 0x72734c74616c676full;

struct Handle {
    int device;
};

struct Desc {
    uint64_t magic = kMagicDesc;
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    int32_t bias_type = -1;
    const void *bias = nullptr;
};

struct Layout {
    uint64_t magic = kMagicLayout;
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};

struct Pref {
    uint64_t magic = kMagicPref;
    uint64_t workspace = 0;
    uint32_t align[4] = {256, 256, 256, 256}; /* A B C D: the documented defaults */
};

/* What an algorithm remembers (inside cublasLtMatmulAlgo_t's data). */
struct Algo {
    uint64_t magic;
    uint64_t workspace;
    uint32_t align[4];
    uint64_t m, n, k;
};
static_assert(sizeof(Algo) <= sizeof(cublasLtMatmulAlgo_t), "algo fits");

cublasStatus_t refuse(const char *fmt, const char *what, long long v) {
    fprintf(stderr, "cudasim cuBLASLt: NOT SUPPORTED: ");
    fprintf(stderr, fmt, what, v);
    fputc('\n', stderr);
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

template <class T>
bool get(const void *buf, size_t n, T *out) {
    if (!buf || n != sizeof(T)) return false;
    memcpy(out, buf, sizeof(T));
    return true;
}

uint32_t alignment_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && (a & (al - 1))) al >>= 1;
    return al;
}

Desc *as_desc(cublasLtMatmulDesc_t d) {
    Desc *x = reinterpret_cast<Desc *>(d);
    if (!x || x->magic != kMagicDesc) rule_violation("cuBLASLt: not a matmul descriptor (%p)", (void *)d);
    return x;
}
Layout *as_layout(cublasLtMatrixLayout_t l) {
    Layout *x = reinterpret_cast<Layout *>(l);
    if (!x || x->magic != kMagicLayout) rule_violation("cuBLASLt: not a matrix layout (%p)", (void *)l);
    return x;
}
Pref *as_pref(cublasLtMatmulPreference_t p) {
    Pref *x = reinterpret_cast<Pref *>(p);
    if (!x || x->magic != kMagicPref) rule_violation("cuBLASLt: not a preference (%p)", (void *)p);
    return x;
}

/* m, n, k of a problem, or a status. */
cublasStatus_t problem(const Desc *d, const Layout *a, const Layout *b, const Layout *c, const Layout *dd,
                       uint64_t *m, uint64_t *n, uint64_t *k) {
    if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F)
        return refuse("%s %lld (only CUBLAS_COMPUTE_32F with CUDA_R_32F scale)", "compute type", d->compute);
    for (const Layout *l : {a, b, c, dd})
        if (l->type != CUDA_R_16BF) return refuse("%s %lld (only CUDA_R_16BF)", "matrix type", l->type);
    const uint64_t am = d->ta == CUBLAS_OP_N ? a->rows : a->cols, ak = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
    const uint64_t bk = d->tb == CUBLAS_OP_N ? b->rows : b->cols, bn = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
    if (ak != bk || c->rows != am || c->cols != bn || dd->rows != am || dd->cols != bn) {
        fprintf(stderr, "cudasim cuBLASLt: INVALID VALUE: op(A) %llu x %llu, op(B) %llu x %llu, C %llu x %llu, "
                        "D %llu x %llu do not make a product\n",
                (unsigned long long)am, (unsigned long long)ak, (unsigned long long)bk, (unsigned long long)bn,
                (unsigned long long)c->rows, (unsigned long long)c->cols, (unsigned long long)dd->rows,
                (unsigned long long)dd->cols);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (d->epi != CUBLASLT_EPILOGUE_DEFAULT && d->epi != CUBLASLT_EPILOGUE_BIAS)
        return refuse("%s %lld (only DEFAULT and BIAS)", "epilogue", d->epi);
    if (d->epi == CUBLASLT_EPILOGUE_BIAS && d->bias_type != CUDA_R_16BF && d->bias_type != -1)
        return refuse("%s %lld (only CUDA_R_16BF)", "bias data type", d->bias_type);
    *m = am;
    *n = bn;
    *k = ak;
    return CUBLAS_STATUS_SUCCESS;
}

} // namespace

extern "C" {

const char *cublasLtGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_INTERNAL_ERROR";
    }
}

const char *cublasLtGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    default: return "an internal operation failed";
    }
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) return CUBLAS_STATUS_NOT_INITIALIZED;
    Handle *x = new Handle;
    x->device = current_device();
    *h = reinterpret_cast<cublasLtHandle_t>(x);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete reinterpret_cast<Handle *>(h);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    Desc *x = new Desc;
    x->compute = compute;
    x->scale = scale;
    *d = reinterpret_cast<cublasLtMatmulDesc_t>(x);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    Desc *x = as_desc(d);
    x->magic = 0;
    delete x;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t n) {
    Desc *x = as_desc(d);
    bool ok = false;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        int32_t v;
        if ((ok = get(buf, n, &v))) {
            if (v != CUBLAS_OP_N && v != CUBLAS_OP_T) return refuse("%s %lld (only N and T)", "transpose", v);
            (attr == CUBLASLT_MATMUL_DESC_TRANSA ? x->ta : x->tb) = (cublasOperation_t)v;
        }
        break;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
        uint32_t v;
        if ((ok = get(buf, n, &v))) x->epi = (cublasLtEpilogue_t)v;
        break;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: {
        int32_t v;
        if ((ok = get(buf, n, &v))) x->bias_type = v;
        break;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: {
        const void *v;
        if ((ok = get(buf, n, &v))) x->bias = v;
        break;
    }
    default:
        return refuse("%s %lld", "matmul descriptor attribute", attr);
    }
    if (!ok) {
        fprintf(stderr, "cudasim cuBLASLt: INVALID VALUE: attribute %d given %zu bytes\n", (int)attr, n);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
    /* The documented check: the leading dimension holds a column. */
    if (ld < 1 || (uint64_t)ld < rows) {
        fprintf(stderr, "cudasim cuBLASLt: INVALID VALUE: layout %llu x %llu with ld %lld (ld >= rows, column-major)\n",
                (unsigned long long)rows, (unsigned long long)cols, (long long)ld);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    Layout *x = new Layout;
    x->type = type;
    x->rows = rows;
    x->cols = cols;
    x->ld = ld;
    *l = reinterpret_cast<cublasLtMatrixLayout_t>(x);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    Layout *x = as_layout(l);
    x->magic = 0;
    delete x;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                               const void *buf, size_t n) {
    Layout *x = as_layout(l);
    uint64_t v;
    if (attr != CUBLASLT_MATRIX_LAYOUT_ROWS && attr != CUBLASLT_MATRIX_LAYOUT_COLS)
        return refuse("%s %lld (only ROWS and COLS)", "layout attribute", attr);
    if (!get(buf, n, &v)) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr == CUBLASLT_MATRIX_LAYOUT_ROWS && (int64_t)v > x->ld) {
        fprintf(stderr, "cudasim cuBLASLt: INVALID VALUE: %llu rows with ld %lld\n", (unsigned long long)v,
                (long long)x->ld);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    (attr == CUBLASLT_MATRIX_LAYOUT_ROWS ? x->rows : x->cols) = v;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = reinterpret_cast<cublasLtMatmulPreference_t>(new Pref);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    Pref *x = as_pref(p);
    x->magic = 0;
    delete x;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t n) {
    Pref *x = as_pref(p);
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        if (!get(buf, n, &x->workspace)) return CUBLAS_STATUS_INVALID_VALUE;
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: {
        uint32_t v;
        if (!get(buf, n, &v) || v == 0 || (v & (v - 1))) return CUBLAS_STATUS_INVALID_VALUE;
        x->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
        return CUBLAS_STATUS_SUCCESS;
    }
    default:
        return refuse("%s %lld", "preference attribute", attr);
    }
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t p,
                                              int requested, cublasLtMatmulHeuristicResult_t *results, int *found) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (requested < 1 || !results || !found) return CUBLAS_STATUS_INVALID_VALUE;
    *found = 0;
    uint64_t m, n, k;
    Desc *x = as_desc(d);
    cublasStatus_t s = problem(x, as_layout(a), as_layout(b), as_layout(c), as_layout(dd), &m, &n, &k);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    const Pref *pr = as_pref(p);
    /* bf16 needs element alignment at least. */
    for (uint32_t al : pr->align)
        if (al < 2) return CUBLAS_STATUS_SUCCESS; /* nothing found */
    memset(results, 0, sizeof *results);
    Algo al = {kMagicAlgo, pr->workspace, {pr->align[0], pr->align[1], pr->align[2], pr->align[3]}, m, n, k};
    memcpy(&results[0].algo, &al, sizeof al);
    results[0].workspaceSize = 0;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.f;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t al, const void *B, cublasLtMatrixLayout_t bl, const void *beta,
                              const void *C, cublasLtMatrixLayout_t cl, void *D, cublasLtMatrixLayout_t dl,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t ws, cudaStream_t stream) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    const Handle *hd = reinterpret_cast<const Handle *>(h);
    Desc *x = as_desc(d);
    const Layout *la = as_layout(al), *lb = as_layout(bl), *lc = as_layout(cl), *ld = as_layout(dl);
    uint64_t m, n, k;
    cublasStatus_t s = problem(x, la, lb, lc, ld, &m, &n, &k);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    if (!algo) return refuse("%s%lld: routescore always passes the heuristic's algorithm", "no algorithm", 0);
    Algo ag;
    memcpy(&ag, algo, sizeof ag);
    if (ag.magic != kMagicAlgo) rule_violation("cuBLASLt: the algorithm was not returned by the heuristic");
    /* The tier's model of applicability: the same m and k, at most the n it
     * was chosen for (a real cuBLASLt may refuse more; the caller handles a
     * refusal by asking the heuristic again). */
    if (ag.m != m || n > ag.n || ag.k != k) {
        fprintf(stderr, "cudasim cuBLASLt: NOT SUPPORTED: algorithm chosen for m=%llu n=%llu k=%llu used for "
                        "m=%llu n=%llu k=%llu\n",
                (unsigned long long)ag.m, (unsigned long long)ag.n, (unsigned long long)ag.k, (unsigned long long)m,
                (unsigned long long)n, (unsigned long long)k);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    const void *ptrs[4] = {A, B, C, D};
    for (int i = 0; i < 4; i++)
        if (alignment_of(ptrs[i]) < ag.align[i]) {
            fprintf(stderr, "cudasim cuBLASLt: INVALID VALUE: matrix %c at %p is %u-byte aligned, the algorithm "
                            "was chosen for %u-byte alignment\n",
                    "ABCD"[i], ptrs[i], alignment_of(ptrs[i]), ag.align[i]);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
    const int dev = stream_device(stream);
    if (current_device() != dev || hd->device != dev)
        rule_violation("cublasLtMatmul on a stream of device %d with device %d current and a handle of device %d",
                       dev, current_device(), hd->device);
    if (C != D && (lc->ld != ld->ld)) return refuse("%s%lld: C and D of different layouts", "", 0);
    if (C == D && lc->ld != ld->ld) return CUBLAS_STATUS_INVALID_VALUE;
    /* Every operand must be device memory of this device, spanning its layout. */
    auto span = [](const Layout *l) { return ((l->cols - 1) * (uint64_t)l->ld + l->rows) * 2; };
    const void *bias = x->epi == CUBLASLT_EPILOGUE_BIAS ? x->bias : nullptr;
    if (x->epi == CUBLASLT_EPILOGUE_BIAS && !bias) {
        fprintf(stderr, "cudasim cuBLASLt: INVALID VALUE: BIAS epilogue without CUBLASLT_MATMUL_DESC_BIAS_POINTER\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    struct Operand {
        const void *p;
        uint64_t bytes;
        bool write;
        const char *name;
    } ops[6] = {{A, span(la), false, "A"},    {B, span(lb), false, "B"}, {C, span(lc), false, "C"},
                {D, span(ld), true, "D"},     {bias, m * 2, false, "bias"},
                {workspace, (uint64_t)ws, true, "workspace"}};
    Access_list acc;
    for (const Operand &o : ops) {
        if (!o.p || o.bytes == 0) continue;
        Alloc *a = find_alloc(o.p, o.bytes);
        if (!a || alloc_device(a) != dev) {
            fprintf(stderr, "cudasim cuBLASLt: INVALID VALUE: %s (%p, %llu bytes) is not memory of device %d\n",
                    o.name, o.p, (unsigned long long)o.bytes, dev);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
        acc.push_back({a, o.p, o.write});
    }
    float fa, fb;
    memcpy(&fa, alpha, 4); /* host pointer mode: read at the call */
    memcpy(&fb, beta, 4);
    const cublasOperation_t ta = x->ta, tb = x->tb;
    const int64_t lda = la->ld, ldb = lb->ld, ldc = lc->ld, ldd = ld->ld;
    Op_hooks hooks;
    hooks.step = [=](bool) {
        const uint16_t *a = static_cast<const uint16_t *>(A), *b = static_cast<const uint16_t *>(B),
                       *c = static_cast<const uint16_t *>(C), *bs = static_cast<const uint16_t *>(bias);
        uint16_t *dd = static_cast<uint16_t *>(D);
        /* op(A) m x k and op(B) k x n, widened, row-major. */
        std::vector<float> Af(m * k), Bf(k * n), Cf(m * n, 0.f);
        for (uint64_t i = 0; i < m; i++)
            for (uint64_t p = 0; p < k; p++)
                Af[i * k + p] = bf16_to_f32(ta == CUBLAS_OP_N ? a[i + p * lda] : a[p + i * lda]);
        for (uint64_t p = 0; p < k; p++)
            for (uint64_t j = 0; j < n; j++)
                Bf[p * n + j] = bf16_to_f32(tb == CUBLAS_OP_N ? b[p + j * ldb] : b[j + p * ldb]);
        if (dnnl_sgemm('N', 'N', (dnnl_dim_t)m, (dnnl_dim_t)n, (dnnl_dim_t)k, fa, Af.data(), (dnnl_dim_t)k, Bf.data(),
                       (dnnl_dim_t)n, 0.f, Cf.data(), (dnnl_dim_t)n) != dnnl_success)
            rule_violation("cudasim cuBLASLt: the reference sgemm failed");
        for (uint64_t j = 0; j < n; j++)
            for (uint64_t i = 0; i < m; i++) {
                float v = Cf[i * n + j];
                if (fb != 0.f) v += fb * bf16_to_f32(c[i + j * ldc]);
                if (bs) v += bf16_to_f32(bs[i]);
                dd[i + j * ldd] = f32_to_bf16(v);
            }
        return true;
    };
    return enqueue_op("cublasLtMatmul", stream, acc, hooks) == cudaSuccess ? CUBLAS_STATUS_SUCCESS
                                                                             : CUBLAS_STATUS_EXECUTION_FAILED;
}

} // extern "C"
