/* cudart.cpp — the CUDA runtime of the simulation tier: the entry points
 * src/kernels/ calls, with the semantics the CUDA Runtime API documents
 * (streams, events, the legacy default stream, pinned and pageable copies,
 * sticky errors), over deferred operations (cudasim_rt.h says how ordering
 * and the rule checks work).
 *
 * Supported on purpose: non-blocking streams (cudaStreamNonBlocking) and the
 * legacy default stream; cudaStreamCreate's blocking streams, the
 * per-thread default stream, graphs, peer access and managed memory are not
 * used by routescore and are refused loudly, so code that starts using them
 * must extend the tier first. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "cudasim_rt.h"

namespace rs_sim {

typedef std::vector<uint64_t> Clock; /* by stream id: the sequence known to have run */

/* Every allocation is followed by a guard of kGuard bytes of 0xff (NaN as
 * bf16 and fp32, so a read past the end poisons the result), checked after
 * every operation that used the allocation: a write past the end is caught
 * at the operation that did it, in every build (AddressSanitizer's own
 * redzones lie beyond the guard). */
constexpr size_t kGuard = 256;

struct Alloc {
    uint64_t id;
    char *base;
    size_t size;
    int device; /* -1: pinned host memory */
    bool live;
    /* Access history: the last write and the reads since, as (stream, seq). */
    int w_stream = -1;
    uint64_t w_seq = 0;
    std::string w_what;
    std::map<int, std::pair<uint64_t, std::string>> reads;
    int queued = 0; /* queued operations that use it */
};

namespace {

struct Snap { /* a pinned source of a queued copy, and what it held */
    const char *p;
    size_t n;
    uint64_t hash;
};

struct Op {
    uint64_t seq = 0;
    std::string what;
    Access_list acc;
    std::vector<Snap> snaps;
    std::function<bool(bool)> step;
    std::function<void()> release;
    const void *fault = nullptr; /* illegal address: faults when it runs */
    int wait_stream = -1;        /* event wait: run that stream to wait_seq first */
    uint64_t wait_seq = 0;
};

struct Stream {
    int id;
    int device;
    bool legacy;
    bool destroyed = false;
    std::deque<Op *> q;
    uint64_t enq = 0, done = 0;
    Clock vc;
    std::mutex exec;
};

struct Event {
    int device;
    int stream = -1;
    uint64_t seq = 0;
    Clock vc;
    bool destroyed = false;
};

struct Device {
    size_t used = 0, cap = 0;
    cudaError_t sticky = cudaSuccess;
    Stream *legacy = nullptr;
};

struct State {
    std::mutex mu;
    bool init = false;
    int n_dev = 2;
    bool driver_error = false;
    Device dev[8];
    std::vector<Stream *> streams;
    std::vector<void *> events; /* every event ever created: kept (queued waits may name a destroyed one) */
    std::map<uintptr_t, Alloc *> live;      /* by base */
    std::deque<Alloc *> graveyard;          /* freed, for use-after-free reports */
    uint64_t next_alloc = 1;
    long allocs = 0, fail_at = 0;
    Clock host;
};

State &S() {
    static State *s = new State; /* never destroyed: static destructors may still call in */
    return *s;
}

thread_local int t_device = 0;
thread_local cudaError_t t_last = cudaSuccess;

void join(Clock &a, const Clock &b) {
    if (a.size() < b.size()) a.resize(b.size(), 0);
    for (size_t i = 0; i < b.size(); i++) a[i] = std::max(a[i], b[i]);
}
uint64_t at(const Clock &c, int i) { return (size_t)i < c.size() ? c[(size_t)i] : 0; }

uint64_t fnv(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

Stream *new_stream(State &st, int device, bool legacy) {
    Stream *s = new Stream;
    s->id = (int)st.streams.size();
    s->device = device;
    s->legacy = legacy;
    st.streams.push_back(s);
    return s;
}

/* Under st.mu. */
void init_locked(State &st) {
    if (st.init) return;
    st.init = true;
    const char *v = getenv("RS_SIM_DEVICES");
    if (v) st.n_dev = std::max(0, std::min(8, atoi(v)));
    long mb = 4096;
    if ((v = getenv("RS_SIM_DEVICE_MB"))) mb = std::max(1L, atol(v));
    if ((v = getenv("RS_SIM_FAIL_ALLOC"))) st.fail_at = atol(v);
    st.driver_error = getenv("RS_SIM_DRIVER_ERROR") && *getenv("RS_SIM_DRIVER_ERROR") && *getenv("RS_SIM_DRIVER_ERROR") != '0';
    for (int d = 0; d < st.n_dev; d++) {
        st.dev[d].cap = (size_t)mb << 20;
        st.dev[d].legacy = new_stream(st, d, true);
    }
}

State &state() {
    State &st = S();
    std::lock_guard<std::mutex> g(st.mu);
    init_locked(st);
    return st;
}

cudaError_t ret(cudaError_t e) {
    if (e != cudaSuccess) t_last = e;
    return e;
}

/* Under st.mu: the live allocation holding [p, p + n), or NULL. */
Alloc *lookup(State &st, const void *p, size_t n) {
    const uintptr_t a = (uintptr_t)p;
    auto it = st.live.upper_bound(a);
    if (it == st.live.begin()) return nullptr;
    --it;
    Alloc *al = it->second;
    if (a >= (uintptr_t)al->base && a + n <= (uintptr_t)al->base + al->size && a + n >= a) return al;
    return nullptr;
}

Alloc *lookup_dead(State &st, const void *p) {
    const uintptr_t a = (uintptr_t)p;
    for (auto it = st.graveyard.rbegin(); it != st.graveyard.rend(); ++it)
        if (a >= (uintptr_t)(*it)->base && a < (uintptr_t)(*it)->base + (*it)->size) return *it;
    return nullptr;
}

Stream *stream_of(State &st, cudaStream_t s, int device) {
    if (s == nullptr || s == cudaStreamLegacy) return st.dev[device].legacy;
    if (s == cudaStreamPerThread) rule_violation("the per-thread default stream is not simulated");
    Stream *x = reinterpret_cast<Stream *>(s);
    bool known = false;
    for (Stream *y : st.streams) known |= y == x;
    if (!known) rule_violation("stream %p was never created", (void *)s);
    if (x->destroyed) rule_violation("use of stream %d after cudaStreamDestroy", x->id);
    return x;
}

std::string describe_alloc(const Alloc *a) {
    char b[160];
    snprintf(b, sizeof b, "%s allocation #%llu (%zu bytes at %p)", a->device < 0 ? "pinned host" : "device",
             (unsigned long long)a->id, a->size, (void *)a->base);
    if (a->device >= 0) {
        std::string s(b);
        snprintf(b, sizeof b, " on device %d", a->device);
        return s + b;
    }
    return b;
}

/* Under st.mu: checks op's accesses against the allocations' histories
 * (clock vc of stream s) and records them. */
void order_accesses(Stream *s, Op *op, const Clock &vc) {
    for (const Access &x : op->acc) {
        Alloc *a = x.alloc;
        if (!a) continue;
        if (a->w_stream >= 0 && a->w_stream != s->id && at(vc, a->w_stream) < a->w_seq)
            rule_violation("race: %s %s %s on stream %d, but its write by %s on stream %d is not ordered before "
                           "it (no event wait, no synchronisation between them)",
                           op->what.c_str(), x.write ? "writes" : "reads", describe_alloc(a).c_str(), s->id,
                           a->w_what.c_str(), a->w_stream);
        if (x.write)
            for (auto &r : a->reads)
                if (r.first != s->id && at(vc, r.first) < r.second.first)
                    rule_violation("race: %s writes %s on stream %d while its read by %s on stream %d is not "
                                   "ordered before it",
                                   op->what.c_str(), describe_alloc(a).c_str(), s->id, r.second.second.c_str(),
                                   r.first);
    }
    for (const Access &x : op->acc) {
        Alloc *a = x.alloc;
        if (!a) continue;
        a->queued++;
        if (x.write) {
            a->w_stream = s->id;
            a->w_seq = op->seq;
            a->w_what = op->what;
            a->reads.clear();
        } else {
            auto &r = a->reads[s->id];
            if (op->seq > r.first) r = {op->seq, op->what};
        }
    }
}

/* Enqueues op on s (under st.mu). */
void push(State &st, Stream *s, Op *op) {
    op->seq = ++s->enq;
    join(s->vc, st.host);
    /* an event wait's clock was joined into s->vc by cudaStreamWaitEvent */
    if (s->vc.size() <= (size_t)s->id) s->vc.resize((size_t)s->id + 1, 0);
    s->vc[(size_t)s->id] = op->seq;
    order_accesses(s, op, s->vc);
    s->q.push_back(op);
}

/* Under st.mu: op no longer holds its allocations. */
void finish(Op *op) {
    for (const Access &x : op->acc)
        if (x.alloc) x.alloc->queued--;
}

/* Runs s's queue up to sequence `upto`. blocking: wait for collectives;
 * else stop at the first that cannot complete (cudaErrorNotReady). */
cudaError_t exec(Stream *s, uint64_t upto, bool blocking) {
    State &st = S();
    std::unique_lock<std::mutex> ex(s->exec, std::defer_lock);
    if (blocking)
        ex.lock();
    else if (!ex.try_lock())
        return cudaErrorNotReady;
    for (;;) {
        Op *op;
        {
            std::lock_guard<std::mutex> g(st.mu);
            if (s->q.empty() || s->q.front()->seq > upto) break;
            op = s->q.front();
        }
        if (op->wait_stream >= 0) {
            Stream *src;
            {
                std::lock_guard<std::mutex> g(st.mu);
                src = st.streams[(size_t)op->wait_stream];
            }
            if (src != s) {
                cudaError_t e = exec(src, op->wait_seq, blocking);
                if (e == cudaErrorNotReady) return e;
            }
        }
        bool skip;
        {
            std::lock_guard<std::mutex> g(st.mu);
            for (const Access &x : op->acc)
                if (x.alloc && !x.alloc->live)
                    rule_violation("use after free: %s on stream %d runs after %s was freed", op->what.c_str(),
                                   s->id, describe_alloc(x.alloc).c_str());
            for (const Snap &n : op->snaps)
                if (fnv(n.p, n.n) != n.hash)
                    rule_violation("%s on stream %d: the host wrote its pinned source (%zu bytes at %p) after the "
                                   "copy was queued and before it ran: wait for the copy (an event or a "
                                   "synchronisation) before reusing a staging buffer",
                                   op->what.c_str(), s->id, n.n, (const void *)n.p);
            skip = st.dev[s->device].sticky != cudaSuccess;
        }
        if (!skip && op->fault) {
            fprintf(stderr, "cudasim: %s on device %d: illegal address %p (not device memory): the context is "
                            "lost (cudaErrorIllegalAddress)\n",
                    op->what.c_str(), s->device, op->fault);
            std::lock_guard<std::mutex> g(st.mu);
            st.dev[s->device].sticky = cudaErrorIllegalAddress;
            skip = true;
        }
        if (!skip && op->step && !op->step(blocking)) return cudaErrorNotReady;
        if (!skip)
            for (const Access &x : op->acc)
                if (x.alloc && x.alloc->device >= 0)
                    for (size_t i = 0; i < kGuard; i++)
                        if ((unsigned char)x.alloc->base[x.alloc->size + i] != 0xff)
                            rule_violation("%s on stream %d wrote past the end of %s (byte %zu after it)",
                                           op->what.c_str(), s->id, describe_alloc(x.alloc).c_str(), i);
        {
            std::lock_guard<std::mutex> g(st.mu);
            s->q.pop_front();
            s->done = op->seq;
            finish(op);
        }
        if (op->release) op->release();
        delete op;
    }
    std::lock_guard<std::mutex> g(st.mu);
    return st.dev[s->device].sticky;
}

/* The host has seen s complete through seq: later work is ordered after it. */
void host_learns(State &st, Stream *s) {
    std::lock_guard<std::mutex> g(st.mu);
    Clock c = s->vc;
    join(st.host, c);
}

cudaError_t sync_stream(Stream *s) {
    State &st = S();
    uint64_t upto;
    {
        std::lock_guard<std::mutex> g(st.mu);
        upto = s->enq;
    }
    cudaError_t e = exec(s, upto, true);
    if (e == cudaSuccess) host_learns(st, s);
    return e;
}

cudaError_t sync_device(State &st, int d) {
    std::vector<Stream *> ss;
    {
        std::lock_guard<std::mutex> g(st.mu);
        for (Stream *s : st.streams)
            if (s->device == d && !s->destroyed) ss.push_back(s);
    }
    cudaError_t first = cudaSuccess;
    for (Stream *s : ss) {
        cudaError_t e = sync_stream(s);
        if (first == cudaSuccess) first = e;
    }
    return first;
}

bool fail_injected(State &st) {
    st.allocs++;
    return st.fail_at > 0 && st.allocs == st.fail_at;
}

cudaError_t enter(State &st) {
    if (st.driver_error) return cudaErrorInsufficientDriver;
    if (t_device >= st.n_dev) return cudaErrorInvalidDevice;
    return st.dev[t_device].sticky;
}

} // namespace

/* ---- shared with the device side and the libraries ---- */

void rule_violation(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cudasim: RULE VIOLATION: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

void note_pointer(Access_list &acc, const void *p, bool write) {
    if (!p) return;
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    Alloc *a = lookup(st, p, 0);
    if (a) {
        acc.push_back({a, p, write});
        return;
    }
    if (Alloc *d = lookup_dead(st, p))
        rule_violation("a kernel argument %p points into %s, already freed", p, describe_alloc(d).c_str());
    acc.push_back({nullptr, p, write});
}

void note_struct(Access_list &acc, const void *p, size_t n) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    for (size_t o = 0; o + 8 <= n; o += 8) {
        uintptr_t w;
        memcpy(&w, (const char *)p + o, 8);
        if (!w) continue;
        if (Alloc *a = lookup(st, (const void *)w, 0)) {
            acc.push_back({a, (const void *)w, true});
        } else if (Alloc *d = lookup_dead(st, (const void *)w)) {
            rule_violation("a kernel argument (struct field at offset %zu) points into %s, already freed", o,
                           describe_alloc(d).c_str());
        }
    }
}

Alloc *find_alloc(const void *p, size_t n) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    Alloc *a = lookup(st, p, n);
    if (!a && p)
        if (Alloc *d = lookup_dead(st, p)) rule_violation("use after free: %p is in %s", p, describe_alloc(d).c_str());
    return a;
}

int alloc_device(const Alloc *a) { return a->device; }
int current_device() { return t_device; }

int stream_device(cudaStream_t s) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    return stream_of(st, s, t_device)->device;
}

void drain_stream(cudaStream_t s) {
    State &st = state();
    Stream *x;
    {
        std::lock_guard<std::mutex> g(st.mu);
        x = stream_of(st, s, t_device);
    }
    (void)exec(x, UINT64_MAX, false);
}

static cudaError_t enqueue_common(const char *what, cudaStream_t stream, Access_list &acc, bool check_device,
                                  Op *op) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    cudaError_t e = enter(st);
    if (e != cudaSuccess) {
        delete op;
        return ret(e);
    }
    Stream *s = stream_of(st, stream, t_device);
    if (check_device && s->device != t_device)
        rule_violation("%s on stream %d of device %d while device %d is current (a launch into another device's "
                       "stream fails with cudaErrorInvalidResourceHandle)",
                       what, s->id, s->device, t_device);
    for (const Access &x : acc) {
        if (!x.alloc) {
            if (!op->fault) op->fault = x.ptr;
            continue;
        }
        if (x.alloc->device >= 0 && x.alloc->device != s->device)
            rule_violation("%s on device %d is given %s (no peer access is enabled)", what, s->device,
                           describe_alloc(x.alloc).c_str());
    }
    op->what = what;
    op->acc = acc;
    push(st, s, op);
    return cudaSuccess;
}

void enqueue_kernel(const char *name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Access_list &acc,
                    std::function<void()> body, std::function<void()> release) {
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 || smem > (48u << 10)) {
        release();
        t_last = cudaErrorInvalidConfiguration;
        return;
    }
    Op *op = new Op;
    std::string what = std::string("kernel ") + name;
    op->step = [name, grid, block, body](bool) {
        run_grid(name, grid, block, body);
        return true;
    };
    op->release = release;
    if (enqueue_common(what.c_str(), stream, acc, true, op) != cudaSuccess) release();
}

cudaError_t enqueue_op(const char *what, cudaStream_t stream, Access_list &acc, Op_hooks hooks) {
    Op *op = new Op;
    op->step = hooks.step;
    op->release = hooks.release;
    cudaError_t e = enqueue_common(what, stream, acc, true, op);
    if (e != cudaSuccess && hooks.release) hooks.release();
    return e;
}

} // namespace rs_sim

using namespace rs_sim;

/* ---- the runtime API ---- */

namespace {

cudaError_t do_malloc(void **p, size_t bytes, int device) {
    State &st = state();
    *p = nullptr;
    std::lock_guard<std::mutex> g(st.mu);
    cudaError_t e = enter(st);
    if (e != cudaSuccess) return ret(e);
    if (fail_injected(st)) return ret(cudaErrorMemoryAllocation);
    if (device >= 0 && st.dev[device].used + bytes > st.dev[device].cap) return ret(cudaErrorMemoryAllocation);
    void *m = nullptr;
    const size_t guard = device >= 0 ? kGuard : 0;
    if (posix_memalign(&m, 256, bytes + guard ? bytes + guard : 1) != 0) return ret(cudaErrorMemoryAllocation);
    /* Fresh device memory is not zero on the hardware: make reads of
     * unwritten memory show (NaN in bf16 and fp32 alike); the guard too. */
    memset(m, 0xff, bytes + guard);
    Alloc *a = new Alloc;
    a->id = st.next_alloc++;
    a->base = static_cast<char *>(m);
    a->size = bytes;
    a->device = device;
    a->live = true;
    st.live[(uintptr_t)m] = a;
    if (device >= 0) st.dev[device].used += bytes;
    *p = m;
    return cudaSuccess;
}

cudaError_t do_free(void *p, bool pinned) {
    if (!p) return cudaSuccess;
    State &st = state();
    {
        std::lock_guard<std::mutex> g(st.mu);
        cudaError_t e = enter(st);
        if (e != cudaSuccess && e != cudaErrorIllegalAddress) return ret(e);
        Alloc *a = lookup(st, p, 0);
        if (!a || a->base != p) {
            if (lookup_dead(st, p)) rule_violation("%s of %p twice", pinned ? "cudaFreeHost" : "cudaFree", p);
            return ret(cudaErrorInvalidValue);
        }
        if ((a->device < 0) != pinned)
            rule_violation("%s of %s", pinned ? "cudaFreeHost" : "cudaFree", describe_alloc(a).c_str());
        if (!pinned && a->device != t_device)
            rule_violation("cudaFree of %s while device %d is current: select the allocation's device first "
                           "(cudaFree synchronises the current device, not the allocation's)",
                           describe_alloc(a).c_str(), t_device);
    }
    /* cudaFree synchronises the current device (the allocation's); after a
     * sticky error that drops the queued work (the runner skips it). */
    const cudaError_t sticky = sync_device(st, t_device);
    std::lock_guard<std::mutex> g(st.mu);
    Alloc *a = lookup(st, p, 0);
    if (a->queued > 0)
        rule_violation("%s of %s while %d queued operations on other devices' streams still use it",
                       pinned ? "cudaFreeHost" : "cudaFree", describe_alloc(a).c_str(), a->queued);
    a->live = false;
    st.live.erase((uintptr_t)p);
    if (a->device >= 0) st.dev[a->device].used -= a->size;
    free(p);
    st.graveyard.push_back(a);
    while (st.graveyard.size() > 4096) {
        delete st.graveyard.front();
        st.graveyard.pop_front();
    }
    return sticky == cudaErrorIllegalAddress ? ret(sticky) : cudaSuccess;
}

enum Kind { H2D, D2H, D2D };

cudaError_t do_copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t stream, bool sync) {
    State &st = state();
    Kind k;
    if (kind == cudaMemcpyHostToDevice)
        k = H2D;
    else if (kind == cudaMemcpyDeviceToHost)
        k = D2H;
    else if (kind == cudaMemcpyDeviceToDevice)
        k = D2D;
    else
        rule_violation("cudaMemcpy kind %d is not simulated (routescore names the direction)", (int)kind);
    Alloc *ad = nullptr, *as = nullptr;
    bool host_pinned = false;
    {
        std::lock_guard<std::mutex> g(st.mu);
        cudaError_t e = enter(st);
        if (e != cudaSuccess) return ret(e);
        if (n == 0) return cudaSuccess;
        ad = lookup(st, dst, n);
        as = lookup(st, src, n);
        const void *dev_ptr = k == D2H ? src : dst;
        Alloc *dev_a = k == D2H ? as : ad;
        if (!dev_a || dev_a->device < 0) {
            if (lookup_dead(st, dev_ptr)) rule_violation("cudaMemcpy: use after free of %p", dev_ptr);
            return ret(cudaErrorInvalidValue);
        }
        if (k == D2D && (!as || as->device < 0)) return ret(cudaErrorInvalidValue);
        Alloc *host_a = k == H2D ? as : k == D2H ? ad : nullptr;
        if (host_a && host_a->device >= 0) return ret(cudaErrorInvalidValue); /* device memory named as host */
        host_pinned = host_a != nullptr;
    }
    Op *op = new Op;
    Access_list acc;
    if (ad && ad->device >= 0) acc.push_back({ad, dst, true});
    if (as && as->device >= 0) acc.push_back({as, src, false});
    char what[96];
    snprintf(what, sizeof what, "%s %s %zu bytes", sync ? "cudaMemcpy" : "cudaMemcpyAsync",
             k == H2D ? "host->device" : k == D2H ? "device->host" : "device->device", n);
    if (k == H2D && !host_pinned) {
        /* Pageable: the driver stages the source before returning. */
        auto *copy = new std::vector<char>((const char *)src, (const char *)src + n);
        op->step = [dst, copy](bool) {
            memcpy(dst, copy->data(), copy->size());
            return true;
        };
        op->release = [copy]() { delete copy; };
    } else {
        if (k == H2D) op->snaps.push_back({(const char *)src, n, fnv((const char *)src, n)});
        op->step = [dst, src, n](bool) {
            memcpy(dst, src, n);
            return true;
        };
    }
    Stream *s;
    {
        std::lock_guard<std::mutex> g(st.mu);
        s = stream_of(st, sync ? nullptr : stream, t_device);
    }
    /* Synchronous copies: a stream sync of the legacy stream first. */
    if (sync && k == H2D) {
        cudaError_t e = sync_stream(s);
        if (e != cudaSuccess) {
            delete op;
            return ret(e);
        }
    }
    cudaError_t e = enqueue_common(what, sync ? nullptr : stream, acc, false, op);
    if (e != cudaSuccess) return e;
    /* Returns after the copy: device->host always to pageable memory and
     * for cudaMemcpy; host->device from pinned memory for cudaMemcpy. */
    const bool wait = (k == D2H && (sync || !host_pinned)) || (sync && k == H2D && host_pinned);
    if (wait) {
        uint64_t upto;
        {
            std::lock_guard<std::mutex> g(st.mu);
            upto = s->enq;
        }
        e = exec(s, upto, true);
        if (e == cudaSuccess) host_learns(st, s);
        return ret(e);
    }
    return cudaSuccess;
}

} // namespace

extern "C" {

void rs_sim_set_fail_alloc(long n) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    st.fail_at = n > 0 ? st.allocs + n : 0;
}

long rs_sim_alloc_count(void) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    return st.allocs;
}

int rs_sim_live_allocs(void) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    return (int)st.live.size();
}

cudaError_t cudaGetDeviceCount(int *count) {
    State &st = state();
    if (st.driver_error) {
        *count = 0;
        return ret(cudaErrorInsufficientDriver);
    }
    *count = st.n_dev;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    State &st = state();
    if (st.driver_error) return ret(cudaErrorInsufficientDriver);
    if (device < 0 || device >= st.n_dev) return ret(cudaErrorInvalidDevice);
    t_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    *device = t_device;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    State &st = state();
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    std::lock_guard<std::mutex> g(st.mu);
    if (e == cudaSuccess && t_device < st.n_dev) e = st.dev[t_device].sticky;
    return e;
}

cudaError_t cudaPeekAtLastError(void) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    if (t_last == cudaSuccess && t_device < st.n_dev) return st.dev[t_device].sticky;
    return t_last;
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    default: return "unknown error";
    }
}

cudaError_t cudaMalloc(void **p, size_t bytes) { return do_malloc(p, bytes, t_device); }
cudaError_t cudaMallocHost(void **p, size_t bytes) { return do_malloc(p, bytes, -1); }
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags) {
    if (flags != cudaHostAllocDefault) rule_violation("cudaHostAlloc flags 0x%x are not simulated", flags);
    return do_malloc(p, bytes, -1);
}
cudaError_t cudaFree(void *p) { return do_free(p, false); }
cudaError_t cudaFreeHost(void *p) { return do_free(p, true); }

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    cudaError_t e = enter(st);
    if (e != cudaSuccess) return ret(e);
    *total_b = st.dev[t_device].cap;
    *free_b = st.dev[t_device].cap - st.dev[t_device].used;
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    return do_copy(dst, src, n, kind, nullptr, true);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t stream) {
    return do_copy(dst, src, n, kind, stream, false);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    cudaError_t e = enter(st);
    if (e != cudaSuccess) return ret(e);
    if (!(flags & cudaStreamNonBlocking))
        rule_violation("blocking streams (implicitly synchronised with the legacy stream) are not simulated: "
                       "create streams with cudaStreamNonBlocking");
    *s = reinterpret_cast<cudaStream_t>(new_stream(st, t_device, false));
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *) {
    rule_violation("blocking streams (cudaStreamCreate) are not simulated: use cudaStreamNonBlocking");
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    State &st = state();
    Stream *x;
    {
        std::lock_guard<std::mutex> g(st.mu);
        if (!s) return ret(cudaErrorInvalidResourceHandle);
        x = stream_of(st, s, t_device);
    }
    /* Work still queued completes, then the stream's resources go. */
    (void)exec(x, UINT64_MAX, true);
    std::lock_guard<std::mutex> g(st.mu);
    x->destroyed = true;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    State &st = state();
    Stream *x;
    {
        std::lock_guard<std::mutex> g(st.mu);
        if (st.driver_error) return ret(cudaErrorInsufficientDriver);
        x = stream_of(st, s, t_device);
    }
    return ret(sync_stream(x));
}

cudaError_t cudaStreamQuery(cudaStream_t s) {
    State &st = state();
    Stream *x;
    uint64_t upto;
    {
        std::lock_guard<std::mutex> g(st.mu);
        x = stream_of(st, s, t_device);
        upto = x->enq;
    }
    cudaError_t e = exec(x, upto, false);
    if (e == cudaSuccess) {
        std::lock_guard<std::mutex> g(st.mu);
        if (x->done < upto) return cudaErrorNotReady;
    }
    if (e == cudaSuccess) host_learns(st, x);
    return e == cudaErrorNotReady ? e : ret(e);
}

cudaError_t cudaDeviceSynchronize(void) {
    State &st = state();
    {
        std::lock_guard<std::mutex> g(st.mu);
        cudaError_t e = enter(st);
        if (e != cudaSuccess) return ret(e);
    }
    return ret(sync_device(st, t_device));
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
    State &st = state();
    std::lock_guard<std::mutex> g(st.mu);
    cudaError_t r = enter(st);
    if (r != cudaSuccess) return ret(r);
    if (flags & ~(unsigned)(cudaEventDisableTiming | cudaEventBlockingSync))
        rule_violation("event flags 0x%x are not simulated", flags);
    Event *ev = new Event;
    ev->device = t_device;
    st.events.push_back(ev);
    *e = reinterpret_cast<cudaEvent_t>(ev);
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
    if (!e) return ret(cudaErrorInvalidResourceHandle);
    Event *ev = reinterpret_cast<Event *>(e);
    if (ev->destroyed) rule_violation("cudaEventDestroy of an event destroyed before");
    ev->destroyed = true; /* kept: queued waits may still name it */
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream) {
    State &st = state();
    Event *ev = reinterpret_cast<Event *>(e);
    if (!ev || ev->destroyed) rule_violation("cudaEventRecord of a destroyed or null event");
    std::lock_guard<std::mutex> g(st.mu);
    cudaError_t r = enter(st);
    if (r != cudaSuccess) return ret(r);
    Stream *s = stream_of(st, stream, t_device);
    if (s->device != ev->device) return ret(cudaErrorInvalidResourceHandle);
    Op *op = new Op;
    op->what = "cudaEventRecord";
    push(st, s, op);
    ev->stream = s->id;
    ev->seq = op->seq;
    ev->vc = s->vc;
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t e, unsigned int flags) {
    State &st = state();
    Event *ev = reinterpret_cast<Event *>(e);
    if (!ev || ev->destroyed) rule_violation("cudaStreamWaitEvent on a destroyed or null event");
    if (flags) rule_violation("cudaStreamWaitEvent flags 0x%x are not simulated", flags);
    std::lock_guard<std::mutex> g(st.mu);
    cudaError_t r = enter(st);
    if (r != cudaSuccess) return ret(r);
    Stream *s = stream_of(st, stream, t_device);
    if (ev->stream < 0) return cudaSuccess; /* never recorded: nothing to wait for */
    Op *op = new Op;
    op->what = "cudaStreamWaitEvent";
    op->wait_stream = ev->stream;
    op->wait_seq = ev->seq;
    join(s->vc, ev->vc);
    push(st, s, op);
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    State &st = state();
    Event *ev = reinterpret_cast<Event *>(e);
    if (!ev || ev->destroyed) rule_violation("cudaEventSynchronize of a destroyed or null event");
    Stream *s;
    uint64_t seq;
    Clock vc;
    {
        std::lock_guard<std::mutex> g(st.mu);
        if (ev->stream < 0) return cudaSuccess;
        s = st.streams[(size_t)ev->stream];
        seq = ev->seq;
        vc = ev->vc;
    }
    cudaError_t r = exec(s, seq, true);
    if (r == cudaSuccess) {
        std::lock_guard<std::mutex> g(st.mu);
        join(st.host, vc);
    }
    return ret(r);
}

cudaError_t cudaEventQuery(cudaEvent_t e) {
    State &st = state();
    Event *ev = reinterpret_cast<Event *>(e);
    Stream *s;
    uint64_t seq;
    {
        std::lock_guard<std::mutex> g(st.mu);
        if (ev->stream < 0) return cudaSuccess;
        s = st.streams[(size_t)ev->stream];
        seq = ev->seq;
    }
    cudaError_t r = exec(s, seq, false);
    if (r != cudaSuccess) return r;
    std::lock_guard<std::mutex> g(st.mu);
    if (s->done < seq) return cudaErrorNotReady;
    join(st.host, ev->vc);
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v) {
    State &st = state();
    *v = st.driver_error ? 11040 : CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *v) {
    *v = CUDART_VERSION;
    return cudaSuccess;
}

} // extern "C"
