/* cuda_backend.cuh — the CUDA backend's state, error checks and the launchers
 * each op file provides. Internal to src/kernels/ (C++/CUDA only; the C side
 * sees rs_backend_cuda_create in backend.h and nothing else).
 *
 * Element types: weight matrices are bf16; weight vectors (biases, LayerNorm
 * gamma/beta) are kept both as fp32 (LayerNorm, epilogues) and bf16 (the
 * cuBLASLt bias epilogue, whose bias type is the output type). Activation
 * buffers are bf16 although the table types them float* (backend.h lets the
 * backend choose): every reduction and GEMM accumulates in fp32.
 *
 * Errors: RS_CUDA_CHECK / RS_CUBLAS_CHECK log expression, function, file and
 * line to stderr and return an rs_status from the calling function; a sticky
 * CUDA error (illegal address, launch failure, ...) also sets `lost`, after
 * which every op returns RS_ERR_BACKEND without touching the device. */
#ifndef RS_KERNELS_CUDA_BACKEND_CUH
#define RS_KERNELS_CUDA_BACKEND_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "backend.h"
}

typedef __nv_bfloat16 bf16;

/* A weight in device memory. Matrices (cols > 1): bf16 only. Vectors
 * (cols == 1): both copies. */
struct rs_bweight {
    bf16 *bf;       /* (rows, cols) row-major */
    float *f32;     /* (rows) for vectors, else NULL */
    int64_t rows, cols;
};

/* One host->device staging lane for token metadata: the host copy is pinned
 * so the copy is asynchronous; `done` marks when the device has consumed it,
 * so the host waits before overwriting a buffer a copy may still read. */
typedef struct cuda_stage {
    int32_t *host; /* (cap) pinned */
    int32_t *dev;  /* (cap) */
    size_t cap;
    size_t n;      /* entries of the last upload: equal data is not re-sent */
    cudaEvent_t done;
    int pending;
} cuda_stage;

/* A cached cuBLASLt plan for one GEMM shape: descriptors, layouts and the
 * heuristic's algorithm, so a forward pays for the heuristic once per shape. */
typedef struct lt_plan {
    int used;
    int64_t M, N, K, ldx; /* M: the token-count bucket the algorithm was chosen for */
    int64_t M_cur;        /* the token count the layouts hold now */
    int with_bias;
    uint32_t align_x, align_y;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d; /* w, x, y */
    cublasLtMatmulAlgo_t algo;
} lt_plan;

#define RS_CUDA_PLANS 64
#define RS_CUDA_WORKSPACE_BYTES ((size_t)32 << 20) /* cuBLASLt's advice for Hopper */
#define RS_CUDA_XFER_BYTES ((size_t)8 << 20)       /* pinned chunk for weights and to_host */

typedef struct rs_cuda {
    rs_backend base;
    int device;
    int lost;             /* a sticky error happened: the context is unusable */
    size_t max_tokens;    /* rows the metadata stages hold */
    cudaStream_t stream;  /* every op runs on it, in order */
    cublasLtHandle_t lt;
    void *workspace;      /* (RS_CUDA_WORKSPACE_BYTES) cuBLASLt */
    lt_plan plans[RS_CUDA_PLANS];
    int next_plan;        /* round-robin victim when the cache is full */
    cuda_stage ids, pos, type, offsets; /* offsets holds max_tokens + 1 */
    /* Decoder ops (llama.c): attention_kv's slots, positions and query
     * tiles (3 ints a tile, at most one tile a row), copy_rows' row lists.
     * Each role has its own lane, so data repeated every layer is sent once
     * per forward. */
    cuda_stage slot, kv_pos, tiles, rows_dst, rows_src;
    int32_t *tile_host;   /* (3 * max_tokens) host scratch for the tile list */
    void *xfer_host;      /* (RS_CUDA_XFER_BYTES) pinned, synchronous transfers */
    void *nccl;           /* rs_nccl of a tensor-parallel rank (set by its first all-reduce), else NULL */
    int nccl_rank;
} rs_cuda;

/* Logs a failed CUDA call, marks the backend lost when the error is sticky
 * and maps it to a status (out of memory -> RS_ERR_NOMEM, else BACKEND). */
rs_status rs_cuda_fail(rs_cuda *c, cudaError_t e, const char *expr, const char *func, const char *file, int line);
rs_status rs_cublas_fail(rs_cuda *c, cublasStatus_t s, const char *expr, const char *func, const char *file,
                         int line);

#define RS_CUDA_CHECK(c, call)                                                                \
    do {                                                                                      \
        cudaError_t rs_e_ = (call);                                                           \
        if (rs_e_ != cudaSuccess) return rs_cuda_fail((c), rs_e_, #call, __func__, __FILE__, __LINE__); \
    } while (0)

#define RS_CUBLAS_CHECK(c, call)                                                              \
    do {                                                                                      \
        cublasStatus_t rs_s_ = (call);                                                        \
        if (rs_s_ != CUBLAS_STATUS_SUCCESS)                                                   \
            return rs_cublas_fail((c), rs_s_, #call, __func__, __FILE__, __LINE__);           \
    } while (0)

/* Every kernel launch: RS_LAUNCH(kernel, grid, block, smem, stream)(args...)
 * is kernel<<<grid, block, smem, stream>>>(args...) under nvcc; the CUDA
 * simulation tier (-DRS_CUDA_SIM=ON, tests/cudasim/) makes it a deferred
 * grid on its simulated stream, from the same source. */
#ifdef RS_CUDA_SIM
#define RS_LAUNCH(kernel, grid, block, smem, stream) \
    ::rs_sim::make_launcher(&kernel, #kernel, (grid), (block), (smem), (stream))
#else
#define RS_LAUNCH(kernel, grid, block, smem, stream) kernel<<<(grid), (block), (smem), (stream)>>>
#endif

/* After every kernel launch: configuration errors show up here at once. */
#define RS_CUDA_LAUNCHED(c) RS_CUDA_CHECK((c), cudaGetLastError())

/* Waits for everything enqueued on the backend's stream, or (rs_cuda_wait)
 * for an event recorded on it. A tensor-parallel rank never blocks in the
 * runtime: it waits with NCCL's bound (rs_cuda_nccl_wait), since a peer that
 * failed leaves its all-reduces, and all work behind them, unfinished. */
rs_status rs_cuda_sync(rs_cuda *c);
rs_status rs_cuda_wait(rs_cuda *c, cudaEvent_t ev);
#ifdef RS_HAVE_NCCL
rs_status rs_cuda_nccl_wait(rs_cuda *c, cudaEvent_t ev); /* ev NULL: the whole stream */
#endif

/* Uploads n host int32 to stage s (skipped when equal to the last upload). */
rs_status rs_cuda_stage_upload(rs_cuda *c, cuda_stage *s, const int32_t *src, size_t n);

/* Checks packed-sequence offsets on the host (offsets[0] >= 0, non-empty,
 * increasing, within max_tokens rows) and returns the longest length. */
rs_status rs_cuda_check_offsets(const rs_cuda *c, const int32_t *offsets, int n_seq, int *max_len);

#endif
