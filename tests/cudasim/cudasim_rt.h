/* cudasim_rt.h — what the simulated device side (cudasim.h, fiber.cpp) and
 * the mock libraries (cudart.cpp, cublaslt.cpp, nccl.cpp) share: device
 * memory lookups, the accesses of an operation, and deferred operations on
 * streams. Internal to tests/cudasim/.
 *
 * DESIGN. Every stream holds a queue of operations (kernels, copies, event
 * records and waits, collectives). Nothing runs when it is enqueued: a
 * stream's queue runs, in order, on the host thread that synchronises with
 * it (stream, event or device synchronisation, a synchronous copy, a query).
 * So a host that overwrites a pinned buffer before the copy from it ran, or
 * frees memory a queued kernel still uses, is caught at the operation that
 * runs late, as on the hardware, but every time instead of sometimes.
 *
 * Ordering. Each stream and the host carry a vector clock (how far they
 * know every stream has run). An operation takes its stream's clock, joined
 * with the host's (work enqueued after the host synchronised comes after
 * what it synchronised with) and with the events it waits for. Every device
 * allocation remembers its last write and the reads since, as (stream,
 * sequence) pairs; an access from another stream that its clock does not
 * order after them is a race, reported at the enqueue that makes it.
 *
 * Rule violations (races, use after free, reuse of a pinned buffer a copy
 * still reads, calls with the wrong device current) abort the process with a
 * message saying which rule and which operations: a real GPU would corrupt
 * data silently, so the tier must not go on. */
#ifndef RS_CUDASIM_RT_H
#define RS_CUDASIM_RT_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include <functional>
#include <vector>

namespace rs_sim {

/* One device allocation (cudaMalloc) or pinned host allocation. */
struct Alloc;

struct Access {
    Alloc *alloc;      /* NULL: the pointer is not device memory (illegal address when used) */
    const void *ptr;
    bool write;
};
typedef std::vector<Access> Access_list;

/* A pointer argument of a kernel: device memory, pinned memory, NULL, or an
 * illegal address (recorded, faults when the kernel runs). */
void note_pointer(Access_list &acc, const void *p, bool write);
/* The 8-byte words of a struct argument that point into device memory. */
void note_struct(Access_list &acc, const void *p, size_t n);

/* Enqueues a kernel grid on `stream` (launch configuration checked now, as
 * cudaLaunchKernel does: an invalid one sets the thread's last error). */
void enqueue_kernel(const char *name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Access_list &acc,
                    std::function<void()> body, std::function<void()> release);

/* Runs a grid now on the calling thread (fiber.cpp). */
void run_grid(const char *name, dim3 grid, dim3 block, const std::function<void()> &body);

/* Library operations (cuBLASLt, NCCL). `step` returns true when the
 * operation completed, false when it cannot complete yet (a collective
 * whose peers have not arrived: the executor retries or waits). */
struct Op_hooks {
    std::function<bool(bool blocking)> step;
    std::function<void()> release;
};
/* Enqueues a library operation on `stream` with its accesses; the current
 * device must be the stream's. Returns cudaSuccess or the sticky error. */
cudaError_t enqueue_op(const char *what, cudaStream_t stream, Access_list &acc, Op_hooks hooks);

/* Validation for library calls: the live allocation holding [p, p + n)
 * (device or pinned), or NULL. */
Alloc *find_alloc(const void *p, size_t n);
int alloc_device(const Alloc *a); /* -1 for pinned host memory */
/* The calling thread's current device; the device of a stream. */
int current_device();
int stream_device(cudaStream_t s);
/* Runs every operation queued on `s` (the executor of cudaStreamSynchronize)
 * without returning its error. */
void drain_stream(cudaStream_t s);

[[noreturn]] void rule_violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* bf16 <-> fp32 as the hardware converts: widening is exact, narrowing
 * rounds to nearest even and keeps NaN quiet (the mocks' one copy). */
inline float bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}
inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

} // namespace rs_sim

#include "cudasim_control.h"

#endif
