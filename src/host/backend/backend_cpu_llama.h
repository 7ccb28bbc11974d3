/* backend_cpu_llama.h — the CPU backend's decoder (Llama) ops, internal to
 * the CPU backend: backend_cpu.c puts them in its ops table. */
#ifndef RS_BACKEND_CPU_LLAMA_H
#define RS_BACKEND_CPU_LLAMA_H

#include "backend.h"

/* The CPU backend's weight: the caller's fp32 array (backend_cpu.c), and,
 * for a weight of linear on the oneDNN matmul path, its packed copy and
 * primitives (made once, by rs_backend_linear_prepare or the first linear). */
struct rs_cpu_gemm;
struct rs_bweight {
    const float *data;
    int64_t rows, cols;
    struct rs_cpu_gemm *gemm; /* NULL until prepared */
};

/* Loops over fewer elements (or multiply-adds) than this run on the calling
 * thread: for a short prompt a parallel region's fork and barrier cost more
 * than its work, and far more on a loaded machine, where a barrier waits for
 * a descheduled thread. */
#define RS_CPU_PAR_MIN 32768

/* Sets the calling thread's OpenMP thread count to the backend's (every CPU
 * op calls it first; see backend_cpu.c). */
void rs_cpu_enter(rs_backend *b);

rs_status rs_cpu_embed_rows(rs_backend *b, const rs_bweight *table, const int32_t *ids, int n, float *out);
rs_status rs_cpu_add_rmsnorm(rs_backend *b, float *x, const float *delta, const rs_bweight *g, float eps, int64_t M,
                             int64_t N, float *y);
rs_status rs_cpu_rope(rs_backend *b, float *x, int64_t ld, int64_t M, const int32_t *pos, int n_heads, int head_dim,
                      const float *inv_freq);
rs_status rs_cpu_swiglu(rs_backend *b, float *gate, const float *up, int64_t n);
rs_status rs_cpu_copy_rows(rs_backend *b, float *dst, const int32_t *dst_rows, const float *src,
                           const int32_t *src_rows, int64_t M, int64_t N);
rs_status rs_cpu_attention_kv(rs_backend *b, const float *q, int64_t T, const int32_t *slot, const int32_t *pos,
                              const float *pk, const float *pv, int n_prefix, const float *k, const float *v,
                              int64_t slot_stride, int n_heads, int n_kv_heads, int head_dim, float *out);

#endif
