/* nccl_allreduce.cu — the device-native all-reduce of tensor-parallel ranks
 * (llama_tp.c) on CUDA backends: one NCCL communicator per rank, created
 * together in this process (ncclCommInitAll over the ranks' GPUs), a bf16 sum
 * in place on each rank's stream. Declared in backend.h; built when NCCL is
 * found (RS_HAVE_NCCL). Never run so far (no GPU in any session). */
#ifdef RS_HAVE_NCCL
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_backend.cuh"

#define RS_NCCL_MAX 16

struct rs_nccl {
    int n;
    ncclComm_t comms[RS_NCCL_MAX];
};

extern "C" rs_status rs_nccl_create(const int *devices, int n, rs_nccl **out, rs_err *err) {
    *out = NULL;
    if (n < 1 || n > RS_NCCL_MAX) return rs_cuda_set_err(err, RS_ERR_INVALID_ARG, "nccl: %d ranks (1 to %d)", n, RS_NCCL_MAX);
    rs_nccl *g = static_cast<rs_nccl *>(calloc(1, sizeof *g));
    if (!g) return rs_cuda_set_err(err, RS_ERR_NOMEM, "nccl: no memory");
    g->n = n;
    ncclResult_t r = ncclCommInitAll(g->comms, n, devices);
    if (r != ncclSuccess) {
        free(g);
        return rs_cuda_set_err(err, RS_ERR_BACKEND, "nccl: ncclCommInitAll over %d GPUs: %s", n, ncclGetErrorString(r));
    }
    *out = g;
    return RS_OK;
}

extern "C" void rs_nccl_free(rs_nccl *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) ncclCommDestroy(g->comms[i]);
    free(g);
}

extern "C" rs_status rs_nccl_allreduce(void *ctx, int rank, rs_backend *b, float *x, size_t n) {
    rs_nccl *g = static_cast<rs_nccl *>(ctx);
    rs_cuda *c = reinterpret_cast<rs_cuda *>(b);
    if (rank < 0 || rank >= g->n) return RS_ERR_INTERNAL;
    if (c->lost) return RS_ERR_BACKEND;
    RS_CUDA_CHECK(c, cudaSetDevice(c->device));
    /* CUDA activations are bf16: n elements of 2 bytes at x. */
    ncclResult_t r = ncclAllReduce(x, x, n, ncclBfloat16, ncclSum, g->comms[rank], c->stream);
    if (r != ncclSuccess) {
        fprintf(stderr, "routescore: nccl all-reduce on rank %d (GPU %d): %s\n", rank, c->device,
                ncclGetErrorString(r));
        c->lost = 1; /* a peer may be waiting in the collective: nothing on this context can be trusted */
        return RS_ERR_BACKEND;
    }
    return RS_OK;
}
#endif
