/* backend.h — the compute backend interface: a table of functions.
 *
 * Model code (encoder.c, llama.c, llama_tp.c) is written once against this
 * table. The CPU backend (backend_cpu.c, backend_cpu_llama.c) is always built
 * and is the numerical reference; the CUDA backend (src/kernels/) provides
 * the same table. A backend is chosen per engine (rs_engine_opts.backend),
 * never per op; tensor-parallel ranks each have their own.
 *
 * Memory: every float* passed to an op lives in the backend's memory space
 * (host memory for the CPU, device memory for CUDA), obtained from `alloc`.
 * Activation buffers are opaque to model code: their element type is the
 * backend's choice (fp32 on the CPU, bf16 on CUDA), `alloc` is asked for
 * the fp32 size (always enough), and only `to_host` / `from_host` convert
 * to and from fp32 host arrays, counting elements.
 * Weights are handed over once with `weight_load` and referenced through an
 * opaque rs_bweight; the backend decides their storage (fp32 on the CPU,
 * bf16 on a GPU). Token metadata (ids, positions, sequence offsets) is passed
 * as host arrays: the backend copies them where it needs them.
 *
 * Threads: a backend instance is used by one thread at a time; ops may use
 * the backend's own worker threads internally. Ops return rs_status so a
 * device fault propagates as a value. A fault that leaves the device
 * unusable (CUDA's sticky errors: illegal address, launch failure) marks the
 * backend lost: `lost` then returns non-zero and every op fails fast with
 * RS_ERR_BACKEND; the process should stop serving and exit (docs/SERVING.md). */
#ifndef RS_BACKEND_H
#define RS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct rs_backend rs_backend;  /* one instance: threads, handles, scratch */
typedef struct rs_bweight rs_bweight;  /* a weight matrix or vector in backend memory */

typedef enum rs_act {
    RS_ACT_NONE = 0,
    RS_ACT_GELU, /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    RS_ACT_TANH,
} rs_act;

typedef struct rs_backend_ops {
    const char *name;
    /* The largest attention head dimension the backend's attention ops
     * take (0: any): models check it at open, not at the first forward. */
    int max_head_dim;
    void (*destroy)(rs_backend *b);

    /* Activation memory. */
    rs_status (*alloc)(rs_backend *b, size_t bytes, void **out);
    void (*release)(rs_backend *b, void *p);
    /* n elements: src/dst are activation buffers, the other side fp32 host. */
    rs_status (*to_host)(rs_backend *b, float *dst, const float *src, size_t n);
    rs_status (*from_host)(rs_backend *b, float *dst, const float *src, size_t n);
    /* Non-zero once the backend hit an unrecoverable device fault. */
    int (*lost)(rs_backend *b);

    /* data: host fp32, rows x cols row-major (cols = 1 for a vector). The
     * backend may keep a pointer to it (the CPU backend does): the caller
     * keeps it alive until weight_free. */
    rs_status (*weight_load)(rs_backend *b, const float *data, int64_t rows, int64_t cols, rs_bweight **out);
    void (*weight_free)(rs_backend *b, rs_bweight *w);

    /* out[t] = LayerNorm(word[ids[t]] + pos[pos_ids[t]] + type[type_ids[t]]). */
    rs_status (*embed)(rs_backend *b, const int32_t *ids, const int32_t *pos_ids, const int32_t *type_ids,
                       int n_tokens, const rs_bweight *word, const rs_bweight *pos, const rs_bweight *type,
                       const rs_bweight *ln_g, const rs_bweight *ln_b, float eps, int hidden, float *out);

    /* y[M, N] = act(x[M, K] . w[N, K]^T + bias[N]); x rows are ldx apart. */
    rs_status (*linear)(rs_backend *b, const float *x, int64_t ldx, int64_t M, int64_t K, const rs_bweight *w,
                        const rs_bweight *bias, rs_act act, float *y);

    /* x[M, N] = LayerNorm(x + residual) with gamma/beta. */
    rs_status (*add_layernorm)(rs_backend *b, float *x, const float *residual, const rs_bweight *g,
                               const rs_bweight *beta, float eps, int64_t M, int64_t N);

    /* Bidirectional multi-head attention over packed sequences, no padding:
     * sequence s is rows offsets[s] .. offsets[s+1] of qkv[T, 3*H*D], laid
     * out as [Q | K | V], each head-major (head h at columns h*D). Writes
     * out[T, H*D]. max_len bounds offsets[s+1] - offsets[s]. */
    rs_status (*attention)(rs_backend *b, const float *qkv, const int32_t *offsets, int n_seq, int max_len,
                           int n_heads, int head_dim, float *out);

    /* Sentence pooling: out[s, N] = mean (mean_pool != 0) of rows of sequence
     * s, else its first row; L2-normalised when normalize != 0. */
    rs_status (*pool)(rs_backend *b, const float *x, const int32_t *offsets, int n_seq, int64_t N, int mean_pool,
                      int normalize, float *out);

    /* Decoder (Llama) ops, used by llama.c; NULL in a backend that lacks
     * them (rs_llama_create then refuses the backend). */
    /* out[t] = table[ids[t]], rows of width table->cols. */
    rs_status (*embed_rows)(rs_backend *b, const rs_bweight *table, const int32_t *ids, int n, float *out);
    /* x[M, N] += delta (skipped when delta is NULL), then
     * y = x / sqrt(mean(x^2) + eps) * g (RMSNorm). */
    rs_status (*add_rmsnorm)(rs_backend *b, float *x, const float *delta, const rs_bweight *g, float eps, int64_t M,
                             int64_t N, float *y);
    /* Rotary embedding in place, HF "rotate half" layout: in each of the
     * n_heads heads (head_dim wide) of row m (rows ld apart), element i pairs
     * with i + head_dim/2 at angle pos[m] * inv_freq[i]; inv_freq is a host
     * array of head_dim/2. */
    rs_status (*rope)(rs_backend *b, float *x, int64_t ld, int64_t M, const int32_t *pos, int n_heads, int head_dim,
                      const float *inv_freq);
    /* gate[i] = silu(gate[i]) * up[i] for n elements (SwiGLU). */
    rs_status (*swiglu)(rs_backend *b, float *gate, const float *up, int64_t n);
    /* dst[dst_rows[i]] = src[src_rows[i]] for i < M, rows of N; a NULL row
     * list is the identity. */
    rs_status (*copy_rows)(rs_backend *b, float *dst, const int32_t *dst_rows, const float *src,
                           const int32_t *src_rows, int64_t M, int64_t N);
    /* Causal grouped-query attention over a KV cache. Query row t of q[T,
     * n_heads*D] belongs to cache slot slot[t] at position pos[t] of that
     * slot: it sees the shared prefix's n_prefix rows (pk, pv: [n_prefix,
     * n_kv*D]) and then rows 0..pos[t] of its slot (k, v at row
     * slot[t]*slot_stride, rows n_kv*D wide). Query head h reads KV head
     * h / (n_heads / n_kv). Writes out[T, n_heads*D]. */
    rs_status (*attention_kv)(rs_backend *b, const float *q, int64_t T, const int32_t *slot, const int32_t *pos,
                              const float *pk, const float *pv, int n_prefix, const float *k, const float *v,
                              int64_t slot_stride, int n_heads, int n_kv_heads, int head_dim, float *out);
} rs_backend_ops;

struct rs_backend {
    const rs_backend_ops *ops;
};

/* The CPU backend's GEMM precision (linear only; attention, norms and
 * activations stay fp32). */
typedef enum rs_precision {
    RS_PRECISION_FP32 = 0, /* the reference */
    RS_PRECISION_BF16,     /* bf16 weights and inputs, fp32 accumulation and output; needs AVX-512 BF16 */
    RS_PRECISION_BF16_EMULATED, /* the same numbers where the CPU lacks AVX-512 BF16 (oneDNN emulates it,
                                   slower than fp32): for accuracy checks */
} rs_precision;

/* w will be the weight of linear: the backend may make its GEMM form now,
 * at load, instead of at the first linear. Only the CPU backend's bf16
 * precisions have one (bf16, packed into oneDNN's layout); for any other
 * backend or precision this returns RS_OK and does nothing. A function, not
 * a table entry, so the other backends' tables stay as they are. */
rs_status rs_backend_linear_prepare(rs_backend *b, rs_bweight *w);

/* "fp32", "bf16", "bf16-emulated"; NULL for anything else. */
const char *rs_precision_name(rs_precision p);
/* Parses a name of rs_precision_name; non-zero when it is none. */
int rs_precision_parse(const char *name, rs_precision *out);

/* The CPU backend: oneDNN GEMMs plus OpenMP loops on n_threads cores
 * (0 = all). max_len sizes per-thread attention scratch. RS_PRECISION_BF16
 * on a CPU without AVX-512 BF16 is refused (RS_ERR_UNSUPPORTED, saying so);
 * rs_backend_cpu_create is rs_backend_cpu_create_prec at fp32. */
rs_status rs_backend_cpu_create_prec(int n_threads, int max_len, rs_precision precision, rs_backend **out,
                                     rs_err *err);
rs_status rs_backend_cpu_create(int n_threads, int max_len, rs_backend **out, rs_err *err);

#ifdef RS_HAVE_CUDA
/* The CUDA backend (src/kernels/): bf16 weights and activations, fp32
 * accumulation, cuBLASLt GEMMs, one stream, on GPU `device`. max_len bounds
 * a sequence; max_tokens bounds the rows of one forward (token metadata
 * staging). Out of device memory is RS_ERR_NOMEM with the sizes in err. */
rs_status rs_backend_cuda_create(int device, int max_len, size_t max_tokens, rs_backend **out, rs_err *err);
/* GPUs the CUDA runtime sees: 0 when there is no GPU or no NVIDIA driver at
 * all; -1, with the CUDA error named in err, when a driver is there but the
 * runtime cannot use it (older than this runtime, a broken install), so a
 * caller can tell "no GPU" from "a GPU it must not silently ignore". */
int rs_cuda_device_count(rs_err *err);
#endif

#ifdef RS_HAVE_NCCL
/* The device-native all-reduce of tensor-parallel ranks on CUDA backends
 * (src/kernels/nccl_allreduce.cu, used by llama_tp.c): one communicator per
 * rank, created together in this process over GPUs devices[0..n-1]. */
typedef struct rs_nccl rs_nccl;
/* timeout_ms bounds every wait of a rank's backend for its peers (0: 30 s):
 * past it, or once rs_nccl_break was called, the waiting rank aborts every
 * communicator and its backend reports RS_ERR_BACKEND (lost), so a rank
 * that fails or never arrives ends the call instead of hanging rank 0. */
rs_status rs_nccl_create(const int *devices, int n, int timeout_ms, rs_nccl **out, rs_err *err);
void rs_nccl_free(rs_nccl *g);
/* An rs_llama_allreduce_fn: sums x (n bf16 activations of CUDA backend b)
 * over the ranks in place, enqueued on b's stream. */
rs_status rs_nccl_allreduce(void *ctx, int rank, rs_backend *b, float *x, size_t n);
/* A rank failed: every rank waiting for the others gives up at once.
 * Thread-safe. */
void rs_nccl_break(rs_nccl *g);
#endif

#endif
