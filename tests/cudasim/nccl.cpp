/* nccl.cpp — NCCL for the simulation tier: communicators created together
 * in one process (ncclCommInitAll), the in-place bf16 sum all-reduce that
 * routescore's tensor-parallel ranks use, abort and asynchronous errors.
 *
 * An all-reduce is an operation on the rank's stream (cudasim_rt.h): when
 * it runs, the rank arrives at its round (the k-th collective of every rank
 * of the communicator); the last rank to arrive sums. A rank that waits
 * helps its peers' streams along (the hardware runs every GPU at once,
 * here a stream runs on the host thread that synchronises with it), and
 * stays waiting, as NCCL does, until every rank arrived or its own
 * communicator is aborted. A wait longer than RS_SIM_NCCL_WATCHDOG_S
 * (default 120 s) is reported as the hang it would be on real GPUs.
 *
 * The sum is rounded as the ring does: chunk c of the buffer is reduced
 * around the ring starting after rank c, rounding to bf16 at every hop.
 *
 * Faults (RS_SIM_NCCL_FAULT=KIND:RANK:AFTER): after AFTER all-reduces of
 * rank RANK succeeded, its next one fails at once (KIND "fail": the call
 * returns ncclSystemError and the communicator's asynchronous error is set)
 * or never arrives (KIND "hang": the rank's stream waits until its
 * communicator is aborted). */
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <vector>

#include "cudasim_rt.h"

using namespace rs_sim;

namespace {

struct Round {
    int arrived = 0, left = 0;
    bool done = false;
    bool abandoned = false; /* a rank left it unsummed (aborted): it never completes */
    std::vector<uint16_t *> buf;
    std::vector<const uint16_t *> send;
    std::vector<size_t> count;
    std::vector<bool> in;
};

struct Comm;

struct Group {
    int n;
    std::mutex mu;
    std::condition_variable cv;
    std::map<uint64_t, Round> rounds;
    std::vector<Comm *> comms;
};

struct Comm {
    Group *g;
    int rank, device;
    uint64_t next_round = 0, calls = 0;
    bool aborted = false, destroyed = false;
    ncclResult_t async = ncclSuccess;
    cudaStream_t last_stream = nullptr;
};

struct Fault {
    int kind = 0; /* 0 none, 1 fail, 2 hang */
    int rank = -1;
    long after = 0;
};

Fault fault_config() {
    Fault f;
    const char *v = getenv("RS_SIM_NCCL_FAULT");
    if (!v || !*v) return f;
    char kind[8] = {0};
    int rank = -1;
    long after = 0;
    if (sscanf(v, "%7[a-z]:%d:%ld", kind, &rank, &after) < 2 || (strcmp(kind, "fail") && strcmp(kind, "hang"))) {
        fprintf(stderr, "cudasim nccl: RS_SIM_NCCL_FAULT=%s: expected fail:RANK[:AFTER] or hang:RANK[:AFTER]\n", v);
        abort();
    }
    f.kind = strcmp(kind, "fail") ? 2 : 1;
    f.rank = rank;
    f.after = after;
    return f;
}

double watchdog_s() {
    const char *v = getenv("RS_SIM_NCCL_WATCHDOG_S");
    return v && atof(v) > 0 ? atof(v) : 120.0;
}

uint16_t add_bf16(uint16_t a, uint16_t b) { return f32_to_bf16(bf16_to_f32(a) + bf16_to_f32(b)); }

/* Under g->mu, every rank arrived: the ring's sum into every buffer. */
void reduce(Group *g, Round &R) {
    const int n = g->n;
    const size_t count = R.count[0];
    for (int r = 1; r < n; r++)
        if (R.count[(size_t)r] != count)
            rule_violation("nccl: mismatched all-reduce: rank 0 reduces %zu elements, rank %d %zu", count, r,
                           R.count[(size_t)r]);
    std::vector<uint16_t> out(count);
    for (size_t i = 0; i < count; i++) {
        const int c = (int)((i * (size_t)n) / count); /* the chunk, and the rank that ends its ring */
        int r = (c + 1) % n;
        uint16_t acc = R.send[(size_t)r][i];
        for (int step = 1; step < n; step++) {
            r = (r + 1) % n;
            acc = add_bf16(acc, R.send[(size_t)r][i]);
        }
        out[i] = acc;
    }
    for (int r = 0; r < n; r++) memcpy(R.buf[(size_t)r], out.data(), count * sizeof(uint16_t));
    R.done = true;
    g->cv.notify_all();
}

/* The operation's step: arrive, then wait for the round (or the abort). */
bool step(Comm *cm, uint64_t round, const uint16_t *send, uint16_t *recv, size_t count, bool hang, bool blocking) {
    Group *g = cm->g;
    std::unique_lock<std::mutex> lk(g->mu);
    Round &R = g->rounds[round];
    if (R.in.empty()) {
        R.in.assign((size_t)g->n, false);
        R.buf.assign((size_t)g->n, nullptr);
        R.send.assign((size_t)g->n, nullptr);
        R.count.assign((size_t)g->n, 0);
        R.left = g->n;
    }
    if (!R.in[(size_t)cm->rank] && !hang) {
        R.in[(size_t)cm->rank] = true;
        R.buf[(size_t)cm->rank] = recv;
        R.send[(size_t)cm->rank] = send;
        R.count[(size_t)cm->rank] = count;
        if (++R.arrived == g->n && !R.abandoned) reduce(g, R);
    }
    const auto start = std::chrono::steady_clock::now();
    const double limit = watchdog_s();
    while (!R.done && !cm->aborted && !R.abandoned) {
        /* Help the peers that have not arrived: run their queued work (the
         * hardware runs every GPU on its own; here a stream runs when a
         * host thread drives it). */
        std::vector<cudaStream_t> peers;
        for (int r = 0; r < g->n; r++)
            if (r != cm->rank && !R.in[(size_t)r] && g->comms[(size_t)r]->last_stream)
                peers.push_back(g->comms[(size_t)r]->last_stream);
        lk.unlock();
        for (cudaStream_t s : peers) drain_stream(s);
        lk.lock();
        if (R.done || cm->aborted || R.abandoned) break;
        if (!blocking) return false;
        g->cv.wait_for(lk, std::chrono::milliseconds(5));
        const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (waited > limit) {
            std::string missing;
            for (int r = 0; r < g->n; r++)
                if (!R.in[(size_t)r]) missing += " " + std::to_string(r);
            rule_violation("nccl: rank %d has waited %.0f s in all-reduce #%llu for ranks%s, which never arrived: "
                           "on real GPUs this hangs forever (abort the communicators when a rank fails)",
                           cm->rank, waited, (unsigned long long)round, missing.c_str());
        }
    }
    if (!R.done) {
        /* Aborted: the buffer holds no sum, and the round can never
         * complete (this rank's input goes with its operation). */
        cm->async = ncclRemoteError;
        R.abandoned = true;
        R.send[(size_t)cm->rank] = nullptr;
        g->cv.notify_all();
    }
    if (--R.left == 0) g->rounds.erase(round);
    return true;
}

Comm *as_comm(ncclComm_t c) {
    Comm *x = reinterpret_cast<Comm *>(c);
    if (!x || x->destroyed) rule_violation("nccl: use of a destroyed or null communicator");
    return x;
}

/* Every group ever created: kept reachable (a destroyed communicator's
 * queued work may still run, and LeakSanitizer must not call them leaks). */
std::vector<Group *> &groups() {
    static std::vector<Group *> *g = new std::vector<Group *>;
    return *g;
}
std::mutex groups_mu;


} // namespace

extern "C" {

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

ncclResult_t ncclCommInitAll(ncclComm_t *comms, int ndev, const int *devlist) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess) return ncclUnhandledCudaError;
    if (ndev < 1 || !comms) return ncclInvalidArgument;
    for (int i = 0; i < ndev; i++) {
        const int d = devlist ? devlist[i] : i;
        if (d < 0 || d >= n_dev) return ncclInvalidArgument;
        for (int j = 0; j < i; j++)
            if ((devlist ? devlist[j] : j) == d) return ncclInvalidUsage; /* two ranks on one GPU */
    }
    Group *g = new Group;
    g->n = ndev;
    {
        std::lock_guard<std::mutex> lk(groups_mu);
        groups().push_back(g);
    }
    for (int i = 0; i < ndev; i++) {
        Comm *c = new Comm;
        c->g = g;
        c->rank = i;
        c->device = devlist ? devlist[i] : i;
        g->comms.push_back(c);
        comms[i] = reinterpret_cast<ncclComm_t>(c);
    }
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    Comm *c = as_comm(comm);
    Group *g = c->g;
    {
        std::lock_guard<std::mutex> lk(g->mu);
        c->aborted = true;
        g->cv.notify_all();
    }
    /* Its queued work ends (unsummed) before the communicator goes. */
    if (c->last_stream) drain_stream(c->last_stream);
    std::lock_guard<std::mutex> lk(g->mu);
    c->destroyed = true;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    Comm *c = as_comm(comm);
    Group *g = c->g;
    std::lock_guard<std::mutex> lk(g->mu);
    for (auto &kv : g->rounds)
        if (kv.second.in[(size_t)c->rank] && !kv.second.done)
            rule_violation("nccl: ncclCommDestroy of rank %d with all-reduce #%llu unfinished: the real "
                           "ncclCommDestroy waits for it forever (ncclCommAbort ends it)",
                           c->rank, (unsigned long long)kv.first);
    c->destroyed = true;
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *err) {
    Comm *c = reinterpret_cast<Comm *>(comm);
    if (!c || !err) return ncclInvalidArgument;
    std::lock_guard<std::mutex> lk(c->g->mu);
    *err = c->async;
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
    Comm *c = as_comm(comm);
    if (type != ncclBfloat16 || op != ncclSum) {
        fprintf(stderr, "cudasim nccl: only the bf16 sum all-reduce is simulated (type %d, op %d)\n", (int)type,
                (int)op);
        return ncclInvalidArgument;
    }
    if (count == 0) return ncclSuccess;
    const int dev = stream_device(stream);
    if (dev != c->device) {
        fprintf(stderr, "cudasim nccl: rank %d's all-reduce on a stream of device %d (its GPU is %d)\n", c->rank, dev,
                c->device);
        return ncclInvalidUsage;
    }
    Access_list acc;
    for (const void *p : {send, (const void *)recv}) {
        Alloc *a = find_alloc(p, count * 2);
        if (!a || alloc_device(a) != c->device) {
            fprintf(stderr, "cudasim nccl: rank %d: %p (%zu bf16) is not memory of device %d\n", c->rank, p, count,
                    c->device);
            return ncclInvalidArgument;
        }
        acc.push_back({a, p, p == recv});
    }
    static const Fault f = fault_config();
    bool hang = false;
    {
        std::lock_guard<std::mutex> lk(c->g->mu);
        if (f.kind && f.rank == c->rank && (long)c->calls >= f.after) {
            if (f.kind == 1) {
                c->async = ncclSystemError;
                fprintf(stderr, "cudasim nccl: injected fault: rank %d's all-reduce #%llu fails\n", c->rank,
                        (unsigned long long)c->calls);
                return ncclSystemError;
            }
            hang = true;
        }
        c->calls++;
        c->last_stream = stream;
    }
    const uint64_t round = c->next_round++;
    Op_hooks hooks;
    const uint16_t *s = static_cast<const uint16_t *>(send);
    uint16_t *r = static_cast<uint16_t *>(recv);
    /* In place (send == recv) the sum must not read a buffer a faster rank
     * already overwrote: each rank's input is copied when it arrives. */
    auto *in = new std::vector<uint16_t>;
    hooks.step = [c, round, s, r, count, hang, in](bool blocking) {
        if (in->empty()) in->assign(s, s + count);
        return step(c, round, in->data(), r, count, hang, blocking);
    };
    hooks.release = [in]() { delete in; };
    return enqueue_op("ncclAllReduce", stream, acc, hooks) == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}

} // extern "C"
