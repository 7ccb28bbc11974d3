/* backend_cuda.cu — the CUDA backend's table (backend.h): create/destroy,
 * device memory, weight upload, host transfers, token-metadata staging and
 * the op entry points, which validate on the host and call the launchers of
 * the op files.
 *
 * DESIGN: one instance owns one device, one stream, one cuBLASLt handle and
 * its workspace; it is used by one thread at a time (backend.h). Every op is
 * enqueued on the stream and returns without waiting; to_host is the only
 * synchronisation point of a forward. Token metadata (ids, positions, types,
 * offsets) goes through pinned staging buffers with asynchronous copies; an
 * event per buffer says when the device has read it, and the host waits on
 * it only before overwriting that buffer. The offsets of a batch are sent
 * once although attention and pooling ask for them every layer: equal data
 * is not re-sent; the decoder ops (llama.c) have their own lanes for slots,
 * positions, query tiles and row lists, whose data repeats in every layer.
 * Weights and bulk transfers move through one pinned chunk,
 * synchronously (they happen at open and at the end of a forward).
 *
 * Failure: every CUDA/cuBLAS call is checked (cuda_backend.cuh); a sticky
 * error sets `lost` and later ops return RS_ERR_BACKEND without touching
 * the device. Nothing here exits the process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "add_layernorm.cuh"
#include "add_rmsnorm.cuh"
#include "attention_kv.cuh"
#include "attention_varlen.cuh"
#include "copy_rows.cuh"
#include "cuda_backend.cuh"
#include "embed_layernorm.cuh"
#include "linear.cuh"
#include "pool.cuh"
#include "rope.cuh"
#include "swiglu.cuh"

/* ---- errors ---- */

static int error_is_sticky(cudaError_t e) {
    switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorIllegalInstruction:
    case cudaErrorHardwareStackError:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorNvlinkUncorrectable:
    case cudaErrorContextIsDestroyed:
    case cudaErrorCudartUnloading:
        return 1;
    default:
        return 0;
    }
}

rs_status rs_cuda_fail(rs_cuda *c, cudaError_t e, const char *expr, const char *func, const char *file, int line) {
    const int sticky = error_is_sticky(e);
    fprintf(stderr, "cuda backend: %s failed: %s (%s) in %s at %s:%d%s\n", expr, cudaGetErrorName(e),
            cudaGetErrorString(e), func, file, line, sticky ? "; the device context is lost" : "");
    if (sticky && c) c->lost = 1;
    if (!sticky) (void)cudaGetLastError(); /* clear a non-sticky error so it is not reported twice */
    return e == cudaErrorMemoryAllocation ? RS_ERR_NOMEM : RS_ERR_BACKEND;
}

rs_status rs_cublas_fail(rs_cuda *c, cublasStatus_t s, const char *expr, const char *func, const char *file,
                         int line) {
    fprintf(stderr, "cuda backend: %s failed: %s (%s) in %s at %s:%d\n", expr, cublasLtGetStatusName(s),
            cublasLtGetStatusString(s), func, file, line);
    /* A failed execution may hide a sticky fault of the context underneath. */
    if (c && s == CUBLAS_STATUS_EXECUTION_FAILED) {
        cudaError_t e = cudaStreamQuery(c->stream);
        if (error_is_sticky(e)) c->lost = 1;
    }
    if (s == CUBLAS_STATUS_ALLOC_FAILED) return RS_ERR_NOMEM;
    if (s == CUBLAS_STATUS_NOT_SUPPORTED) return RS_ERR_UNSUPPORTED;
    return RS_ERR_BACKEND;
}

static rs_cuda *as_cuda(rs_backend *b) { return reinterpret_cast<rs_cuda *>(b); }

/* Every op starts here: fail fast once lost; select the device (the calling
 * thread may have another one current). */
#define RS_CUDA_ENTER(c)                                   \
    do {                                                   \
        if ((c)->lost) return RS_ERR_BACKEND;              \
        RS_CUDA_CHECK((c), cudaSetDevice((c)->device));    \
    } while (0)

/* ---- bf16 on the host (round to nearest even, NaN kept quiet) ---- */

static inline uint16_t f32_to_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_bits_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- synchronisation ---- */

rs_status rs_cuda_sync(rs_cuda *c) {
#ifdef RS_HAVE_NCCL
    if (c->nccl) return rs_cuda_nccl_wait(c, NULL);
#endif
    RS_CUDA_CHECK(c, cudaStreamSynchronize(c->stream));
    return RS_OK;
}

rs_status rs_cuda_wait(rs_cuda *c, cudaEvent_t ev) {
#ifdef RS_HAVE_NCCL
    if (c->nccl) return rs_cuda_nccl_wait(c, ev);
#endif
    RS_CUDA_CHECK(c, cudaEventSynchronize(ev));
    return RS_OK;
}

/* ---- staging ---- */

rs_status rs_cuda_stage_upload(rs_cuda *c, cuda_stage *s, const int32_t *src, size_t n) {
    if (n > s->cap) return RS_ERR_INVALID_ARG;
    if (n == s->n && memcmp(s->host, src, n * sizeof *src) == 0) return RS_OK; /* the device has it (in order) */
    if (s->pending) {
        rs_status st = rs_cuda_wait(c, s->done);
        if (st != RS_OK) return st;
    }
    s->pending = 0;
    s->n = 0;
    memcpy(s->host, src, n * sizeof *src);
    RS_CUDA_CHECK(c, cudaMemcpyAsync(s->dev, s->host, n * sizeof *src, cudaMemcpyHostToDevice, c->stream));
    RS_CUDA_CHECK(c, cudaEventRecord(s->done, c->stream));
    s->pending = 1;
    s->n = n;
    return RS_OK;
}

rs_status rs_cuda_check_offsets(const rs_cuda *c, const int32_t *offsets, int n_seq, int *max_len) {
    int mx = 0;
    if (n_seq < 1 || offsets[0] < 0 || (size_t)offsets[n_seq] > c->max_tokens) return RS_ERR_INVALID_ARG;
    for (int s = 0; s < n_seq; s++) {
        const int len = offsets[s + 1] - offsets[s];
        if (len < 1) return RS_ERR_INVALID_ARG;
        if (len > mx) mx = len;
    }
    *max_len = mx;
    return RS_OK;
}

static rs_status stage_init(rs_cuda *c, cuda_stage *s, size_t cap, rs_err *err) {
    const size_t bytes = cap * sizeof(int32_t);
    s->cap = cap;
    cudaError_t e = cudaMallocHost((void **)&s->host, bytes);
    if (e == cudaSuccess) e = cudaMalloc((void **)&s->dev, bytes);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&s->done, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return rs_errf(err, e == cudaErrorMemoryAllocation ? RS_ERR_NOMEM : RS_ERR_BACKEND,
                       "cuda backend: device %d: allocating %zu bytes of token staging failed: %s", c->device, bytes,
                       cudaGetErrorString(e));
    }
    return RS_OK;
}

static void stage_free(cuda_stage *s) {
    if (s->host) cudaFreeHost(s->host);
    if (s->dev) cudaFree(s->dev);
    if (s->done) cudaEventDestroy(s->done);
    memset(s, 0, sizeof *s);
}

/* ---- table: lifetime and memory ---- */

static void cuda_destroy(rs_backend *b) {
    rs_cuda *c = as_cuda(b);
    if (!c) return;
    /* Best effort on a lost context too: errors here change nothing. */
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    rs_cuda_linear_plans_free(c);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->workspace) cudaFree(c->workspace);
    stage_free(&c->ids);
    stage_free(&c->pos);
    stage_free(&c->type);
    stage_free(&c->offsets);
    stage_free(&c->slot);
    stage_free(&c->kv_pos);
    stage_free(&c->tiles);
    stage_free(&c->rows_dst);
    stage_free(&c->rows_src);
    free(c->tile_host);
    if (c->xfer_host) cudaFreeHost(c->xfer_host);
    if (c->stream) cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    free(c);
}

/* Callers ask for the fp32 size (backend.h); activations here are bf16,
 * so half of it holds them: half the device memory, and an op that runs
 * past a buffer's end leaves it instead of writing into unused slack. */
static rs_status cuda_alloc(rs_backend *b, size_t bytes, void **out) {
    rs_cuda *c = as_cuda(b);
    *out = NULL;
    RS_CUDA_ENTER(c);
    bytes = (bytes + 1) / 2;
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 1); /* 256-byte aligned */
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        (void)cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        fprintf(stderr, "cuda backend: device %d: out of memory allocating %zu MiB of activations (%zu MiB free of "
                        "%zu MiB)\n", c->device, bytes >> 20, free_b >> 20, total_b >> 20);
        *out = NULL;
        return rs_cuda_fail(c, e, "cudaMalloc(activations)", __func__, __FILE__, __LINE__);
    }
    return RS_OK;
}

/* cudaFree synchronises the current device: select ours first (the
 * calling thread may have another one current). */
static void cuda_release(rs_backend *b, void *p) {
    if (!p) return;
    cudaSetDevice(as_cuda(b)->device);
    cudaFree(p);
    (void)cudaGetLastError();
}

/* to_host / from_host move bf16 device data through the pinned chunk,
 * converting on the host; the stream is drained at each chunk, so both are
 * synchronous (callers read or reuse their arrays right after). */
static rs_status cuda_to_host(rs_backend *b, float *dst, const float *src, size_t n) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    const uint16_t *s = reinterpret_cast<const uint16_t *>(src);
    uint16_t *h = static_cast<uint16_t *>(c->xfer_host);
    const size_t chunk = RS_CUDA_XFER_BYTES / sizeof *h;
    for (size_t i = 0; i < n; i += chunk) {
        const size_t k = n - i < chunk ? n - i : chunk;
        RS_CUDA_CHECK(c, cudaMemcpyAsync(h, s + i, k * sizeof *h, cudaMemcpyDeviceToHost, c->stream));
        rs_status st = rs_cuda_sync(c);
        if (st != RS_OK) return st;
        for (size_t j = 0; j < k; j++) dst[i + j] = bf16_bits_to_f32(h[j]);
    }
    /* A fault of any earlier op surfaces here even when n == 0. */
    return rs_cuda_sync(c);
}

/* Uploads n fp32 host values to dst (device), as bf16 or as they are,
 * through the pinned chunk on the backend's stream: the ops that read dst
 * run on that stream after it, so no other ordering is needed (a plain
 * cudaMemcpy would run on the legacy stream, which a non-blocking stream
 * does not wait for). */
static rs_status upload(rs_cuda *c, void *dst, const float *src, size_t n, int to_bf16) {
    const size_t esize = to_bf16 ? sizeof(uint16_t) : sizeof(float);
    const size_t chunk = RS_CUDA_XFER_BYTES / esize;
    char *d = static_cast<char *>(dst);
    for (size_t i = 0; i < n; i += chunk) {
        const size_t k = n - i < chunk ? n - i : chunk;
        if (to_bf16) {
            uint16_t *h = static_cast<uint16_t *>(c->xfer_host);
            for (size_t j = 0; j < k; j++) h[j] = f32_to_bf16_bits(src[i + j]);
        } else {
            memcpy(c->xfer_host, src + i, k * esize);
        }
        RS_CUDA_CHECK(c, cudaMemcpyAsync(d + i * esize, c->xfer_host, k * esize, cudaMemcpyHostToDevice, c->stream));
        rs_status st = rs_cuda_sync(c); /* before the chunk is refilled */
        if (st != RS_OK) return st;
    }
    return RS_OK;
}

static rs_status cuda_from_host(rs_backend *b, float *dst, const float *src, size_t n) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    return upload(c, dst, src, n, 1);
}

static int cuda_lost(rs_backend *b) { return as_cuda(b)->lost; }

static void cuda_weight_free(rs_backend *b, rs_bweight *w) {
    if (!w) return;
    cudaSetDevice(as_cuda(b)->device);
    if (w->bf) cudaFree(w->bf);
    if (w->f32) cudaFree(w->f32);
    free(w);
}

static rs_status cuda_weight_load(rs_backend *b, const float *data, int64_t rows, int64_t cols, rs_bweight **out) {
    rs_cuda *c = as_cuda(b);
    *out = NULL;
    RS_CUDA_ENTER(c);
    if (rows < 1 || cols < 1) return RS_ERR_INVALID_ARG;
    rs_bweight *w = static_cast<rs_bweight *>(calloc(1, sizeof *w));
    if (!w) return RS_ERR_NOMEM;
    w->rows = rows;
    w->cols = cols;
    const size_t n = (size_t)rows * (size_t)cols;
    rs_status st = RS_OK;
    cudaError_t e = cudaMalloc((void **)&w->bf, n * sizeof(bf16));
    if (e == cudaSuccess && cols == 1) e = cudaMalloc((void **)&w->f32, n * sizeof(float));
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        (void)cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        fprintf(stderr, "cuda backend: device %d: out of memory for a %lld x %lld weight (%zu MiB free of %zu MiB)\n",
                c->device, (long long)rows, (long long)cols, free_b >> 20, total_b >> 20);
        st = rs_cuda_fail(c, e, "cudaMalloc(weight)", __func__, __FILE__, __LINE__);
    }
    if (st == RS_OK) st = upload(c, w->bf, data, n, 1);
    if (st == RS_OK && w->f32) st = upload(c, w->f32, data, n, 0);
    if (st != RS_OK) {
        cuda_weight_free(b, w);
        return st;
    }
    *out = w;
    return RS_OK;
}

/* ---- table: ops ---- */

static rs_status cuda_embed(rs_backend *b, const int32_t *ids, const int32_t *pos_ids, const int32_t *type_ids,
                            int n_tokens, const rs_bweight *word, const rs_bweight *pos, const rs_bweight *type,
                            const rs_bweight *ln_g, const rs_bweight *ln_b, float eps, int hidden, float *out) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    if (n_tokens < 0 || (size_t)n_tokens > c->max_tokens || hidden < 1 || word->cols != hidden ||
        pos->cols != hidden || type->cols != hidden || !ln_g->f32 || !ln_b->f32 || ln_g->rows != hidden ||
        ln_b->rows != hidden)
        return RS_ERR_INVALID_ARG;
    /* An id past a table would be an illegal address on the device, and
     * that loses the context: check here, it is one pass over T ints. */
    for (int t = 0; t < n_tokens; t++)
        if (ids[t] < 0 || ids[t] >= word->rows || pos_ids[t] < 0 || pos_ids[t] >= pos->rows || type_ids[t] < 0 ||
            type_ids[t] >= type->rows)
            return RS_ERR_INVALID_ARG;
    rs_status st;
    if ((st = rs_cuda_stage_upload(c, &c->ids, ids, (size_t)n_tokens)) != RS_OK ||
        (st = rs_cuda_stage_upload(c, &c->pos, pos_ids, (size_t)n_tokens)) != RS_OK ||
        (st = rs_cuda_stage_upload(c, &c->type, type_ids, (size_t)n_tokens)) != RS_OK)
        return st;
    return rs_cuda_embed_layernorm(c, c->ids.dev, c->pos.dev, c->type.dev, n_tokens, word->bf, pos->bf, type->bf,
                                   ln_g->f32, ln_b->f32, eps, hidden, reinterpret_cast<bf16 *>(out));
}

static rs_status cuda_linear(rs_backend *b, const float *x, int64_t ldx, int64_t M, int64_t K, const rs_bweight *w,
                             const rs_bweight *bias, rs_act act, float *y) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    return rs_cuda_linear(c, reinterpret_cast<const bf16 *>(x), ldx, M, K, w, bias, act, reinterpret_cast<bf16 *>(y));
}

static rs_status cuda_add_layernorm(rs_backend *b, float *x, const float *residual, const rs_bweight *g,
                                    const rs_bweight *beta, float eps, int64_t M, int64_t N) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    if (!g->f32 || !beta->f32 || g->rows != N || beta->rows != N) return RS_ERR_INVALID_ARG;
    return rs_cuda_add_layernorm(c, reinterpret_cast<bf16 *>(x), reinterpret_cast<const bf16 *>(residual), g->f32,
                                 beta->f32, eps, M, N);
}

static rs_status cuda_attention(rs_backend *b, const float *qkv, const int32_t *offsets, int n_seq, int max_len,
                                int n_heads, int head_dim, float *out) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    int longest = 0;
    rs_status st = rs_cuda_check_offsets(c, offsets, n_seq, &longest);
    if (st != RS_OK) return st;
    if (longest > max_len) return RS_ERR_INVALID_ARG; /* the caller's bound is wrong */
    if ((st = rs_cuda_stage_upload(c, &c->offsets, offsets, (size_t)n_seq + 1)) != RS_OK) return st;
    /* The grid follows the real longest sequence, not the bound. */
    return rs_cuda_attention_varlen(c, reinterpret_cast<const bf16 *>(qkv), c->offsets.dev, n_seq, longest, n_heads,
                                    head_dim, reinterpret_cast<bf16 *>(out));
}

static rs_status cuda_pool(rs_backend *b, const float *x, const int32_t *offsets, int n_seq, int64_t N, int mean_pool,
                           int normalize, float *out) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    int longest = 0;
    rs_status st = rs_cuda_check_offsets(c, offsets, n_seq, &longest);
    if (st != RS_OK) return st;
    if ((st = rs_cuda_stage_upload(c, &c->offsets, offsets, (size_t)n_seq + 1)) != RS_OK) return st;
    return rs_cuda_pool(c, reinterpret_cast<const bf16 *>(x), c->offsets.dev, n_seq, N, mean_pool, normalize,
                        reinterpret_cast<bf16 *>(out));
}

/* ---- table: decoder (Llama) ops ---- */

/* A gather from the table: copy_rows with the ids as source rows. */
static rs_status cuda_embed_rows(rs_backend *b, const rs_bweight *table, const int32_t *ids, int n, float *out) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    if (n < 0 || (size_t)n > c->max_tokens) return RS_ERR_INVALID_ARG;
    /* An id past the table would be an illegal address (a lost context). */
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= table->rows) return RS_ERR_INVALID_ARG;
    if (n == 0) return RS_OK;
    rs_status st = rs_cuda_stage_upload(c, &c->ids, ids, (size_t)n);
    if (st != RS_OK) return st;
    return rs_cuda_copy_rows(c, reinterpret_cast<bf16 *>(out), NULL, table->bf, c->ids.dev, n, table->cols);
}

static rs_status cuda_add_rmsnorm(rs_backend *b, float *x, const float *delta, const rs_bweight *g, float eps,
                                  int64_t M, int64_t N, float *y) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    if (M < 0 || N < 1 || !g->f32 || g->rows != N) return RS_ERR_INVALID_ARG;
    return rs_cuda_add_rmsnorm(c, reinterpret_cast<bf16 *>(x), reinterpret_cast<const bf16 *>(delta), g->f32, eps, M,
                               N, reinterpret_cast<bf16 *>(y));
}

static rs_status cuda_rope(rs_backend *b, float *x, int64_t ld, int64_t M, const int32_t *pos, int n_heads,
                           int head_dim, const float *inv_freq) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    if (M < 0 || (size_t)M > c->max_tokens) return RS_ERR_INVALID_ARG;
    if (M == 0) return RS_OK;
    rs_status st = rs_cuda_stage_upload(c, &c->pos, pos, (size_t)M);
    if (st != RS_OK) return st;
    return rs_cuda_rope(c, reinterpret_cast<bf16 *>(x), ld, M, c->pos.dev, n_heads, head_dim, inv_freq);
}

static rs_status cuda_swiglu(rs_backend *b, float *gate, const float *up, int64_t n) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    return rs_cuda_swiglu(c, reinterpret_cast<bf16 *>(gate), reinterpret_cast<const bf16 *>(up), n);
}

static rs_status cuda_copy_rows(rs_backend *b, float *dst, const int32_t *dst_rows, const float *src,
                                const int32_t *src_rows, int64_t M, int64_t N) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    if (M < 0 || N < 0 || ((dst_rows || src_rows) && (size_t)M > c->max_tokens)) return RS_ERR_INVALID_ARG;
    if (M == 0 || N == 0) return RS_OK;
    /* Negative rows would address before the buffers; the upper bounds are
     * the caller's (the backend does not know the buffers' sizes). */
    for (int64_t i = 0; i < M; i++)
        if ((dst_rows && dst_rows[i] < 0) || (src_rows && src_rows[i] < 0)) return RS_ERR_INVALID_ARG;
    rs_status st;
    if (dst_rows && (st = rs_cuda_stage_upload(c, &c->rows_dst, dst_rows, (size_t)M)) != RS_OK) return st;
    if (src_rows && (st = rs_cuda_stage_upload(c, &c->rows_src, src_rows, (size_t)M)) != RS_OK) return st;
    return rs_cuda_copy_rows(c, reinterpret_cast<bf16 *>(dst), dst_rows ? c->rows_dst.dev : NULL,
                             reinterpret_cast<const bf16 *>(src), src_rows ? c->rows_src.dev : NULL, M, N);
}

static rs_status cuda_attention_kv(rs_backend *b, const float *q, int64_t T, const int32_t *slot, const int32_t *pos,
                                   const float *pk, const float *pv, int n_prefix, const float *k, const float *v,
                                   int64_t slot_stride, int n_heads, int n_kv_heads, int head_dim, float *out) {
    rs_cuda *c = as_cuda(b);
    RS_CUDA_ENTER(c);
    return rs_cuda_attention_kv(c, reinterpret_cast<const bf16 *>(q), T, slot, pos, reinterpret_cast<const bf16 *>(pk),
                                reinterpret_cast<const bf16 *>(pv), n_prefix, reinterpret_cast<const bf16 *>(k),
                                reinterpret_cast<const bf16 *>(v), slot_stride, n_heads, n_kv_heads, head_dim,
                                reinterpret_cast<bf16 *>(out));
}

static const rs_backend_ops CUDA_OPS = {
    /* .name = */ "cuda",
    /* .max_head_dim = */ 128, /* attention_varlen.cu and attention_kv.cu tile up to 128 */
    /* .destroy = */ cuda_destroy,
    /* .alloc = */ cuda_alloc,
    /* .release = */ cuda_release,
    /* .to_host = */ cuda_to_host,
    /* .from_host = */ cuda_from_host,
    /* .lost = */ cuda_lost,
    /* .weight_load = */ cuda_weight_load,
    /* .weight_free = */ cuda_weight_free,
    /* .embed = */ cuda_embed,
    /* .linear = */ cuda_linear,
    /* .add_layernorm = */ cuda_add_layernorm,
    /* .attention = */ cuda_attention,
    /* .pool = */ cuda_pool,
    /* .embed_rows = */ cuda_embed_rows,
    /* .add_rmsnorm = */ cuda_add_rmsnorm,
    /* .rope = */ cuda_rope,
    /* .swiglu = */ cuda_swiglu,
    /* .copy_rows = */ cuda_copy_rows,
    /* .attention_kv = */ cuda_attention_kv,
};

/* ---- entry points ---- */

extern "C" int rs_cuda_device_count(rs_err *err) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    (void)cudaGetLastError(); /* not an error to keep in the thread's state */
    if (e == cudaSuccess) return n;
    if (e == cudaErrorNoDevice) return 0;
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv); /* 0 when no driver is installed */
    cudaRuntimeGetVersion(&rt);
    (void)cudaGetLastError();
    if (e == cudaErrorInsufficientDriver && drv == 0) return 0; /* no NVIDIA driver: a machine without a GPU */
    rs_errf(err, RS_ERR_BACKEND,
                    "cuda: cudaGetDeviceCount failed: %s (%s); driver API %d.%d, runtime %d.%d%s", cudaGetErrorName(e),
                    cudaGetErrorString(e), drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10,
                    e == cudaErrorInsufficientDriver ? ": the driver is older than this build's CUDA runtime" : "");
    return -1;
}

extern "C" rs_status rs_backend_cuda_create(int device, int max_len, size_t max_tokens, rs_backend **out,
                                            rs_err *err) {
    *out = NULL;
    if (max_len <= 0 || max_tokens < (size_t)max_len || max_tokens > ((size_t)1 << 30))
        return rs_errf(err, RS_ERR_INVALID_ARG, "cuda backend: max_len %d, max_tokens %zu", max_len, max_tokens);
    const int n_dev = rs_cuda_device_count(err);
    if (n_dev < 0) return RS_ERR_BACKEND;
    if (device < 0 || device >= n_dev)
        return rs_errf(err, RS_ERR_NOT_FOUND, "cuda backend: device %d requested, %d visible", device, n_dev);
    rs_cuda *c = static_cast<rs_cuda *>(calloc(1, sizeof *c));
    if (!c) return rs_errf(err, RS_ERR_NOMEM, "cuda backend: no host memory");
    c->base.ops = &CUDA_OPS;
    c->device = device;
    c->max_tokens = max_tokens;
    rs_status st = RS_OK;
    cudaError_t e = cudaSetDevice(device);
    const char *what = "selecting the device";
    size_t need = 0;
    if (e == cudaSuccess) {
        what = "creating the stream";
        e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    }
    if (e == cudaSuccess) {
        what = "the cuBLASLt workspace";
        need = RS_CUDA_WORKSPACE_BYTES;
        e = cudaMalloc(&c->workspace, need);
    }
    if (e == cudaSuccess) {
        what = "the pinned transfer buffer";
        need = RS_CUDA_XFER_BYTES;
        e = cudaMallocHost(&c->xfer_host, need);
    }
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        (void)cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        st = rs_errf(err, e == cudaErrorMemoryAllocation ? RS_ERR_NOMEM : RS_ERR_BACKEND,
                     "cuda backend: device %d: %s failed (%zu MiB needed, %zu MiB free of %zu MiB): %s", device, what,
                     need >> 20, free_b >> 20, total_b >> 20, cudaGetErrorString(e));
        goto fail;
    }
    {
        cublasStatus_t s = cublasLtCreate(&c->lt);
        if (s != CUBLAS_STATUS_SUCCESS) {
            st = rs_errf(err, RS_ERR_BACKEND, "cuda backend: device %d: cublasLtCreate failed: %s", device,
                         cublasLtGetStatusString(s));
            goto fail;
        }
    }
    if ((st = stage_init(c, &c->ids, max_tokens, err)) != RS_OK ||
        (st = stage_init(c, &c->pos, max_tokens, err)) != RS_OK ||
        (st = stage_init(c, &c->type, max_tokens, err)) != RS_OK ||
        (st = stage_init(c, &c->offsets, max_tokens + 1, err)) != RS_OK ||
        (st = stage_init(c, &c->slot, max_tokens, err)) != RS_OK ||
        (st = stage_init(c, &c->kv_pos, max_tokens, err)) != RS_OK ||
        (st = stage_init(c, &c->tiles, 3 * max_tokens, err)) != RS_OK ||
        (st = stage_init(c, &c->rows_dst, max_tokens, err)) != RS_OK ||
        (st = stage_init(c, &c->rows_src, max_tokens, err)) != RS_OK)
        goto fail;
    if (!(c->tile_host = static_cast<int32_t *>(malloc(3 * max_tokens * sizeof(int32_t))))) {
        st = rs_errf(err, RS_ERR_NOMEM, "cuda backend: no host memory for the attention tile list");
        goto fail;
    }
    *out = &c->base;
    return RS_OK;
fail:
    cuda_destroy(&c->base);
    return st;
}
