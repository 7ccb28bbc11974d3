/* nccl_allreduce.cu — the device-native all-reduce of tensor-parallel ranks
 * (llama_tp.c) on CUDA backends: one NCCL communicator per rank, created
 * together in this process (ncclCommInitAll over the ranks' GPUs), a bf16 sum
 * in place on each rank's stream. Declared in backend.h; built when NCCL is
 * found (RS_HAVE_NCCL), and against the simulation tier's NCCL in gpusim.
 *
 * Failure. An all-reduce waits on the device until every rank has joined
 * it, so a rank that fails before its own (or never gets there) would leave
 * the others waiting forever in their next synchronisation. A rank's
 * backend therefore never blocks in cudaStreamSynchronize or
 * cudaEventSynchronize: rs_cuda_nccl_wait polls the stream (or the event)
 * and gives up when another rank broke the group
 * (rs_nccl_break, called by llama_tp.c when a rank fails), when NCCL reports
 * an asynchronous error, or after timeout_ms. Giving up aborts every
 * communicator (which ends the waiting collectives) and marks the backend
 * lost: nothing on a context whose collective was cut short can be trusted,
 * and the server exits on a lost backend. */
#ifdef RS_HAVE_NCCL
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <atomic>
#include <new>
#include <mutex>

#include "cuda_backend.cuh"

#define RS_NCCL_MAX 16
#define RS_NCCL_DEFAULT_TIMEOUT_MS 30000

struct rs_nccl {
    int n;
    int timeout_ms;
    ncclComm_t comms[RS_NCCL_MAX];
    std::atomic<int> broken;  /* a rank failed: waiting ranks give up */
    std::atomic<int> aborted; /* the communicators are gone (ncclCommAbort) */
    std::mutex mu;            /* no rank uses a communicator while another aborts them */
};

static double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Aborts every communicator once (ncclCommAbort ends their pending
 * collectives, so every rank's stream can drain). */
static void abort_all(rs_nccl *g) {
    std::lock_guard<std::mutex> lk(g->mu);
    if (g->aborted.exchange(1)) return;
    for (int i = 0; i < g->n; i++)
        if (g->comms[i]) ncclCommAbort(g->comms[i]);
}

extern "C" rs_status rs_nccl_create(const int *devices, int n, int timeout_ms, rs_nccl **out, rs_err *err) {
    *out = NULL;
    if (n < 1 || n > RS_NCCL_MAX) return rs_errf(err, RS_ERR_INVALID_ARG, "nccl: %d ranks (1 to %d)", n, RS_NCCL_MAX);
    if (timeout_ms < 0) return rs_errf(err, RS_ERR_INVALID_ARG, "nccl: negative timeout");
    rs_nccl *g = new (std::nothrow) rs_nccl();
    if (!g) return rs_errf(err, RS_ERR_NOMEM, "nccl: no memory");
    g->n = n;
    g->timeout_ms = timeout_ms ? timeout_ms : RS_NCCL_DEFAULT_TIMEOUT_MS;
    g->broken = 0;
    g->aborted = 0;
    ncclResult_t r = ncclCommInitAll(g->comms, n, devices);
    if (r != ncclSuccess) {
        delete g;
        return rs_errf(err, RS_ERR_BACKEND, "nccl: ncclCommInitAll over %d GPUs: %s", n, ncclGetErrorString(r));
    }
    *out = g;
    return RS_OK;
}

extern "C" void rs_nccl_free(rs_nccl *g) {
    if (!g) return;
    if (!g->aborted)
        for (int i = 0; i < g->n; i++) ncclCommDestroy(g->comms[i]);
    delete g;
}

/* Aborting at once (not only at the next wait) also ends the collectives
 * already queued on every rank: teardown (cudaFree synchronises) must not
 * wait for them. */
extern "C" void rs_nccl_break(rs_nccl *g) {
    if (!g) return;
    g->broken = 1;
    abort_all(g);
}

extern "C" rs_status rs_nccl_allreduce(void *ctx, int rank, rs_backend *b, float *x, size_t n) {
    rs_nccl *g = static_cast<rs_nccl *>(ctx);
    rs_cuda *c = reinterpret_cast<rs_cuda *>(b);
    if (rank < 0 || rank >= g->n) return RS_ERR_INTERNAL;
    if (c->lost) return RS_ERR_BACKEND;
    c->nccl = g; /* from now on this backend waits with the group's bound */
    c->nccl_rank = rank;
    RS_CUDA_CHECK(c, cudaSetDevice(c->device));
    ncclResult_t r;
    {
        std::lock_guard<std::mutex> lk(g->mu);
        if (g->broken || g->aborted) {
            c->lost = 1;
            return RS_ERR_BACKEND;
        }
        /* CUDA activations are bf16: n elements of 2 bytes at x. */
        r = ncclAllReduce(x, x, n, ncclBfloat16, ncclSum, g->comms[rank], c->stream);
    }
    if (r != ncclSuccess) {
        fprintf(stderr, "routescore: nccl all-reduce on rank %d (GPU %d): %s\n", rank, c->device,
                ncclGetErrorString(r));
        c->lost = 1; /* a peer may be waiting in the collective: nothing on this context can be trusted */
        rs_nccl_break(g);
        return RS_ERR_BACKEND;
    }
    return RS_OK;
}

rs_status rs_cuda_nccl_wait(rs_cuda *c, cudaEvent_t ev) {
    rs_nccl *g = static_cast<rs_nccl *>(c->nccl);
    const int rank = c->nccl_rank;
    const double deadline = now_ms() + g->timeout_ms;
    long spins = 0;
    for (;;) {
        const cudaError_t e = ev ? cudaEventQuery(ev) : cudaStreamQuery(c->stream);
        if (e == cudaSuccess) {
            if (g->aborted) break; /* the stream drained because the collectives were cut short */
            return RS_OK;
        }
        if (e != cudaErrorNotReady) return rs_cuda_fail(c, e, "cuda{Stream,Event}Query", __func__, __FILE__, __LINE__);
        const char *why = NULL;
        ncclResult_t ae = ncclSuccess;
        {
            std::lock_guard<std::mutex> lk(g->mu);
            if (!g->aborted && ncclCommGetAsyncError(g->comms[rank], &ae) != ncclSuccess) ae = ncclSuccess;
        }
        if (g->broken || g->aborted)
            why = "another tensor-parallel rank failed";
        else if (ae != ncclSuccess && ae != ncclInProgress)
            why = ncclGetErrorString(ae);
        else if (now_ms() > deadline)
            why = "timed out waiting for the other ranks";
        if (why) {
            fprintf(stderr, "routescore: nccl: rank %d (GPU %d): %s after %d ms at most; aborting the all-reduce "
                            "communicators\n",
                    rank, c->device, why, g->timeout_ms);
            break;
        }
        /* Poll fast at first (a decode step's collective takes microseconds),
         * then at 1 ms. */
        if (++spins > 1000) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    g->broken = 1;
    abort_all(g);
    c->lost = 1;
    return RS_ERR_BACKEND;
}
#endif
