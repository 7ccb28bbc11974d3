/* cudasim.h — the device side of the CUDA simulation tier. Force-included
 * (g++ -include) before every src/kernels/ *.cu when the project is
 * configured with -DRS_CUDA_SIM=ON; the kernels compile unchanged as host
 * C++ and run on the CPU.
 *
 * DESIGN. A launch (RS_LAUNCH in src/kernels/launch.cuh) becomes a deferred
 * operation on its stream (cudasim_rt.h): the grid runs when the host
 * synchronises, one block at a time on the synchronising thread. Inside a
 * block every CUDA thread is a fiber with its own stack (fiber.cpp);
 * __syncthreads is a block barrier, the warp intrinsics are warp barriers
 * with a slot per lane, and a deadlock (a barrier some threads never reach)
 * is reported, not hung on. The tensor-core mma is computed once per warp,
 * by the lane that completes the warp barrier, from fragment layouts written
 * from the PTX ISA's tables for mma.m16n8k16 (not from the kernels).
 * __shared__ variables are thread_local statics: blocks of one thread run one
 * after another, and threads of two host threads never share them.
 *
 * What this cannot see: the hardware's accumulation order inside an mma,
 * the memory model (blocks never run concurrently here), timing and
 * occupancy, nvcc's code generation. */
#ifndef RS_CUDASIM_H
#define RS_CUDASIM_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#include "cudasim_rt.h"

#undef __shared__
#define __shared__ static thread_local
#undef __launch_bounds__
#define __launch_bounds__(...)
/* The hardware's fast exponential is an approximation; the tier uses the
 * exact one (a difference the GPU tests' bounds already allow for). */
#define __expf(x) expf(x)

namespace rs_sim {

struct Fiber;
struct Block;

/* The block a host thread is running (NULL outside a kernel). */
extern thread_local Block *t_block;

uint3 &thread_idx();
const uint3 &block_idx();
const dim3 &block_dim();
const dim3 &grid_dim();
int lane_id();

void syncthreads();
/* Warp rounds: a warp op publishes its lanes' values in the slot buffer of
 * the current round (warp_round, alternating 0/1), then waits at the warp
 * barrier; the lane that completes the barrier runs `done` before any lane
 * continues. Two buffers are enough: no lane can start round r + 2 before
 * every lane has left round r + 1, hence finished reading round r. */
int warp_round();
uint64_t *warp_slots(int buf);
void warp_barrier(unsigned mask, void (*done)(int buf), int buf);
/* mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, once per warp. */
void mma_m16n8k16_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);

template <class T>
T shfl_xor(unsigned mask, T v, int lane_mask) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shfl of a wide type");
    const int lane = lane_id(), buf = warp_round();
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    warp_slots(buf)[lane] = u;
    warp_barrier(mask, nullptr, buf);
    const uint64_t w = warp_slots(buf)[(lane ^ lane_mask) & 31];
    T r;
    memcpy(&r, &w, sizeof r);
    return r;
}

/* ---- launches ---- */

/* Words of a kernel argument that point into live device memory become
 * the launch's accesses: exact pointers with their constness (read or
 * write); pointers inside a struct argument count as read and write. */
template <class P>
void note_arg(Access_list &acc, const P &p) {
    if constexpr (std::is_pointer<P>::value) {
        using T = typename std::remove_pointer<P>::type;
        note_pointer(acc, (const void *)p, !std::is_const<T>::value);
    } else if constexpr (std::is_class<P>::value) {
        static_assert(std::is_trivially_copyable<P>::value, "kernel arguments are copied bytes");
        note_struct(acc, &p, sizeof p);
    }
}

template <class K>
struct Launcher;

template <class... P>
struct Launcher<void (*)(P...)> {
    void (*k)(P...);
    const char *name;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    Launcher(void (*k_)(P...), const char *name_, dim3 g, dim3 b, size_t s, cudaStream_t st)
        : k(k_), name(name_), grid(g), block(b), smem(s), stream(st) {}
    template <class... A>
    void operator()(A &&...a) const {
        /* Arguments are converted to the parameters' types and copied now,
         * as a launch does. */
        auto *args = new std::tuple<typename std::decay<P>::type...>(std::forward<A>(a)...);
        Access_list acc;
        std::apply([&](const auto &...x) { (note_arg(acc, x), ...); }, *args);
        void (*kern)(P...) = k;
        enqueue_kernel(
            name, grid, block, smem, stream, acc,
            [kern, args]() { std::apply(kern, *args); }, [args]() { delete args; });
    }
};

template <class K>
Launcher<K> make_launcher(K k, const char *name, dim3 g, dim3 b, size_t s, cudaStream_t st) {
    return Launcher<K>(k, name, g, b, s, st);
}

} // namespace rs_sim

#define threadIdx (rs_sim::thread_idx())
#define blockIdx (rs_sim::block_idx())
#define blockDim (rs_sim::block_dim())
#define gridDim (rs_sim::grid_dim())
#define __syncthreads() rs_sim::syncthreads()
#define __shfl_xor_sync(m, v, o) rs_sim::shfl_xor((m), (v), (o))

#endif
