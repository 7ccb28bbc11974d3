/* llama_tp.h — tensor parallelism for rs_llama: the model split across
 * n ranks (llama.h's shards), each on a backend of its own (one GPU each, or
 * CPU backends as simulated ranks), run together with an all-reduce after
 * each attention and each MLP block.
 *
 * The API mirrors llama.h, so a caller swaps rs_llama for rs_llama_tp; n = 1
 * is a plain rs_llama (no threads, no all-reduce). A call runs rank 0 on the
 * calling thread and ranks 1..n-1 on threads started for the call; every
 * rank computes the replicated LM head's logits, rank 0's are returned.
 *
 * The all-reduce: on CUDA ranks with NCCL built in (RS_HAVE_NCCL) and their
 * GPUs given, NCCL's bf16 sum on each rank's stream (src/kernels/
 * nccl_allreduce.cu); otherwise staged through host memory (to_host, a sum
 * over the ranks split by rank, from_host) with an abortable barrier, so any
 * backend works, and a rank that fails releases the others: the call then
 * fails with the first rank's error. (With NCCL a rank failing mid-forward
 * leaves its peers waiting in the collective: that only happens on a device
 * fault, which marks the backend lost and ends the process anyway.)
 *
 * Ownership: borrows files and the backends (they outlive it); owns its
 * shards and staging buffers. One calling thread at a time. */
#ifndef RS_LLAMA_TP_H
#define RS_LLAMA_TP_H

#include "llama.h"

#define RS_LLAMA_TP_MAX 16

typedef struct rs_llama_tp rs_llama_tp;

/* n (1..RS_LLAMA_TP_MAX) ranks on backends[0..n-1]; lim's tp fields are set
 * here. n must divide the heads, KV heads and intermediate size. gpus: the
 * CUDA device of each rank's backend (for NCCL), NULL for other backends. */
rs_status rs_llama_tp_create(rs_model_files *files, rs_backend *const *backends, const int *gpus, int n,
                             const rs_llama_limits *lim, rs_llama_tp **out, rs_err *err);
/* "nccl", "host" or "none" (one rank): how the ranks all-reduce. */
const char *rs_llama_tp_allreduce_kind(const rs_llama_tp *t);
void rs_llama_tp_free(rs_llama_tp *t);
const rs_llama_config *rs_llama_tp_config(const rs_llama_tp *t);
rs_status rs_llama_tp_set_prefix(rs_llama_tp *t, const int32_t *ids, int n, rs_err *err);
int rs_llama_tp_prefix_len(const rs_llama_tp *t);
rs_status rs_llama_tp_forward(rs_llama_tp *t, const int32_t *ids, const int32_t *slot, const int32_t *pos, int n,
                              const int32_t *rows, int n_rows, float *logits, rs_err *err);

#endif
