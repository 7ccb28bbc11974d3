/* fiber.cpp — runs a grid on the calling host thread: blocks one after
 * another, the threads of a block as fibers switched cooperatively at
 * barriers (block and warp). The context switch is a few instructions of
 * x86-64 assembly (callee-saved registers, MXCSR and the x87 control word),
 * not swapcontext, which would make a system call per switch. Stacks are
 * kept per host thread and reused by every block. Under AddressSanitizer the
 * switches are announced (__sanitizer_start/finish_switch_fiber). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cudasim.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define RS_SIM_ASAN 1
#else
#define RS_SIM_ASAN 0
#endif

#if !defined(__x86_64__)
#error "the CUDA simulation tier's fibers are written for x86-64"
#endif

extern "C" void rs_sim_switch(void **save_sp, void *load_sp);
__asm__(R"(
    .text
    .globl rs_sim_switch
    .type rs_sim_switch,@function
rs_sim_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size rs_sim_switch, .-rs_sim_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");

namespace rs_sim {

namespace {

constexpr size_t kStack = 256 << 10; /* per CUDA thread; kernels keep arrays in "registers" */
constexpr int kMaxThreads = 1024;

struct Warp {
    int live = 32;            /* lanes not exited */
    int arrived = 0;
    unsigned gen = 0;         /* completed barriers */
    uint64_t slots[2][32];
    /* mma operands and results of a round, per lane */
    uint32_t a[2][32][4], b[2][32][2];
    float c[2][32][4];
};

struct FiberCtx {
    void *sp = nullptr;
    uint3 tid;
    int linear = 0;
    bool done = false;
    unsigned waiting_gen = 0;
    int waiting = 0; /* 0 running, 1 block barrier, 2 warp barrier */
};

} // namespace

struct Block {
    FiberCtx fibers[kMaxThreads];
    Warp warps[kMaxThreads / 32];
    int n = 0, live = 0, arrived = 0;
    unsigned gen = 0;
    uint3 bid;
    dim3 bdim, gdim;
    int cur = -1;
    void *sched_sp = nullptr;
    const std::function<void()> *body = nullptr;
    const char *kernel = nullptr;
    unsigned long progress = 0;
#if RS_SIM_ASAN
    void *fake_stack = nullptr;
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
#endif
};

thread_local Block *t_block = nullptr;

namespace {

/* Stacks of this host thread, reused by every block it runs. */
struct Stacks {
    char *base = nullptr;
    size_t n = 0;
    ~Stacks() {
        if (!base) return;
#if RS_SIM_ASAN
        /* Fibers leave without unwinding: their frames' redzones stay
         * poisoned, and memory mapped here later must not inherit them. */
        ASAN_UNPOISON_MEMORY_REGION(base, n * kStack);
#endif
        munmap(base, n * kStack);
    }
    char *get(int i) {
        if (!base) {
            n = kMaxThreads;
            void *p = mmap(nullptr, n * kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                           -1, 0);
            if (p == MAP_FAILED) {
                fprintf(stderr, "cudasim: no memory for fiber stacks\n");
                abort();
            }
            base = static_cast<char *>(p);
        }
        return base + (size_t)i * kStack;
    }
};
thread_local Stacks t_stacks;

void switch_to_fiber(Block *B, int i) {
    B->cur = i;
#if RS_SIM_ASAN
    __sanitizer_start_switch_fiber(&B->fake_stack, t_stacks.get(i), kStack);
#endif
    rs_sim_switch(&B->sched_sp, B->fibers[i].sp);
#if RS_SIM_ASAN
    __sanitizer_finish_switch_fiber(B->fake_stack, nullptr, nullptr);
#endif
}

/* From a fiber back to the scheduler; `exiting`: never resumed. */
void switch_to_sched(Block *B, bool exiting) {
#if RS_SIM_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fake, B->sched_bottom, B->sched_size);
#endif
    rs_sim_switch(&B->fibers[B->cur].sp, B->sched_sp);
#if RS_SIM_ASAN
    __sanitizer_finish_switch_fiber(fake, &B->sched_bottom, &B->sched_size);
#endif
    (void)exiting;
}

FiberCtx &self() { return t_block->fibers[t_block->cur]; }

[[noreturn]] void device_fail(const char *fmt, ...) {
    Block *B = t_block;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cudasim: kernel %s, block (%u,%u,%u), thread %d: ", B->kernel, B->bid.x, B->bid.y, B->bid.z,
            B->cur >= 0 ? B->fibers[B->cur].linear : -1);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void fiber_entry() {
    Block *B = t_block;
#if RS_SIM_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &B->sched_bottom, &B->sched_size);
#endif
    (*B->body)();
    FiberCtx &f = B->fibers[B->cur];
    f.done = true;
    B->live--;
    B->warps[f.linear / 32].live--;
    B->progress++;
    /* An exited thread no longer counts at the block barrier (as on the
     * hardware); if it was the last one missing, the barrier completes. */
    if (B->arrived > 0 && B->arrived == B->live) {
        B->arrived = 0;
        B->gen++;
    }
    switch_to_sched(B, true);
    abort(); /* never resumed */
}

void *fiber_init(char *stack) {
    uint64_t *sp = reinterpret_cast<uint64_t *>(stack + kStack);
    *--sp = 0;                                          /* alignment: rsp % 16 == 8 at entry */
    *--sp = reinterpret_cast<uint64_t>(&fiber_entry);   /* ret target */
    for (int i = 0; i < 6; i++) *--sp = 0;              /* rbp rbx r12 r13 r14 r15 */
    *--sp = 0x1F80ull | (0x037Full << 32);              /* MXCSR, x87 control word: the defaults */
    return sp;
}

void yield_fiber() { switch_to_sched(t_block, false); }

} // namespace

uint3 &thread_idx() { return self().tid; }
const uint3 &block_idx() { return t_block->bid; }
const dim3 &block_dim() { return t_block->bdim; }
const dim3 &grid_dim() { return t_block->gdim; }
int lane_id() { return self().linear & 31; }

void syncthreads() {
    Block *B = t_block;
    if (!B) {
        fprintf(stderr, "cudasim: __syncthreads outside a kernel\n");
        abort();
    }
    const unsigned g = B->gen;
    B->progress++;
    if (++B->arrived == B->live) {
        B->arrived = 0;
        B->gen++;
        return;
    }
    self().waiting = 1;
    while (B->gen == g) yield_fiber();
    self().waiting = 0;
}

int warp_round() { return (int)(t_block->warps[self().linear / 32].gen & 1u); }
uint64_t *warp_slots(int buf) { return t_block->warps[self().linear / 32].slots[buf]; }

void warp_barrier(unsigned mask, void (*done)(int buf), int buf) {
    Block *B = t_block;
    Warp &W = B->warps[self().linear / 32];
    if (mask != 0xffffffffu) device_fail("warp op with partial mask 0x%08x (not emulated)", mask);
    if (W.live != 32) device_fail("full-mask warp op while %d lanes of the warp have exited", 32 - W.live);
    const unsigned g = W.gen;
    B->progress++;
    if (++W.arrived == 32) {
        if (done) done(buf);
        W.arrived = 0;
        W.gen++;
        return;
    }
    self().waiting = 2;
    while (W.gen == g) yield_fiber();
    self().waiting = 0;
}

namespace {

inline float bf16_lo(uint32_t r) { return bf16_to_f32((uint16_t)(r & 0xffffu)); }
inline float bf16_hi(uint32_t r) { return bf16_to_f32((uint16_t)(r >> 16)); }

/* The whole warp's D = A B + C, run by the lane that completes the barrier.
 * Fragment ownership from the PTX ISA (mma.m16n8k16, .bf16; groupID =
 * lane >> 2, threadID_in_group = lane % 4):
 *   A (a0..a7, two per register, the lower index in the low half):
 *     row = groupID for a0,a1,a4,a5, groupID + 8 for a2,a3,a6,a7;
 *     col = 2 * tig + (i & 1), plus 8 for a4..a7.
 *   B (b0..b3): row (k) = 2 * tig + (i & 1), plus 8 for b2,b3; col (n) = groupID.
 *   C/D (c0..c3): row = groupID for c0,c1, groupID + 8 for c2,c3; col = 2 * tig + (i & 1).
 * Products are summed in fp32 in k order (the hardware's order inside the
 * tensor core is not specified; the tests' bounds allow for it). */
void mma_done(int buf) {
    Warp &W = t_block->warps[self().linear / 32];
    float A[16][16], B[16][8], C[16][8];
    for (int lane = 0; lane < 32; lane++) {
        const int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 8; i++) {
            const uint32_t r = W.a[buf][lane][i / 2];
            const int row = (i == 0 || i == 1 || i == 4 || i == 5) ? g : g + 8;
            const int col = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
            A[row][col] = (i & 1) ? bf16_hi(r) : bf16_lo(r);
        }
        for (int i = 0; i < 4; i++) {
            const uint32_t r = W.b[buf][lane][i / 2];
            B[2 * t + (i & 1) + (i >= 2 ? 8 : 0)][g] = (i & 1) ? bf16_hi(r) : bf16_lo(r);
        }
        for (int i = 0; i < 4; i++) C[i < 2 ? g : g + 8][2 * t + (i & 1)] = W.c[buf][lane][i];
    }
    for (int lane = 0; lane < 32; lane++) {
        const int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 4; i++) {
            const int row = i < 2 ? g : g + 8, col = 2 * t + (i & 1);
            float s = C[row][col];
            for (int k = 0; k < 16; k++) s += A[row][k] * B[k][col];
            W.c[buf][lane][i] = s;
        }
    }
}

} // namespace

void mma_m16n8k16_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    Warp &W = t_block->warps[self().linear / 32];
    const int lane = self().linear & 31, buf = (int)(W.gen & 1u);
    for (int i = 0; i < 4; i++) W.a[buf][lane][i] = a[i], W.c[buf][lane][i] = c[i];
    W.b[buf][lane][0] = b0;
    W.b[buf][lane][1] = b1;
    warp_barrier(0xffffffffu, mma_done, buf);
    for (int i = 0; i < 4; i++) c[i] = W.c[buf][lane][i];
}

void run_grid(const char *name, dim3 grid, dim3 block, const std::function<void()> &body) {
    const int n = (int)(block.x * block.y * block.z);
    if (t_block) {
        fprintf(stderr, "cudasim: kernel %s launched from inside a kernel\n", name);
        abort();
    }
    /* One Block for the grid's life: it is large (fiber table and warp
     * slots), and blocks run one after another. */
    Block *B = new Block;
    B->bdim = block;
    B->gdim = grid;
    B->body = &body;
    B->kernel = name;
    t_block = B;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                B->bid = make_uint3(x, y, z);
                B->n = B->live = n;
                B->arrived = 0;
                B->gen = 0;
                B->progress = 0;
                for (int w = 0; w < (n + 31) / 32; w++) {
                    Warp &W = B->warps[w];
                    W.live = (w + 1) * 32 <= n ? 32 : n - w * 32;
                    W.arrived = 0;
                    W.gen = 0;
                }
                for (int i = 0; i < n; i++) {
                    FiberCtx &f = B->fibers[i];
                    f = FiberCtx();
                    f.linear = i;
                    f.tid = make_uint3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
                    char *stack = t_stacks.get(i);
#if RS_SIM_ASAN
                    ASAN_UNPOISON_MEMORY_REGION(stack, kStack);
#endif
                    f.sp = fiber_init(stack);
                }
                int left = n;
                while (left > 0) {
                    const unsigned long before = B->progress;
                    left = 0;
                    for (int i = 0; i < n; i++) {
                        if (B->fibers[i].done) continue;
                        switch_to_fiber(B, i);
                        if (!B->fibers[i].done) left++;
                    }
                    if (left > 0 && B->progress == before) {
                        int at_block = 0, at_warp = 0;
                        for (int i = 0; i < n; i++)
                            if (!B->fibers[i].done) (B->fibers[i].waiting == 1 ? at_block : at_warp)++;
                        fprintf(stderr,
                                "cudasim: kernel %s, block (%u,%u,%u): deadlock: %d threads wait at __syncthreads "
                                "and %d at a warp op while the others have exited or wait elsewhere (divergent "
                                "barrier)\n",
                                name, x, y, z, at_block, at_warp);
                        abort();
                    }
                }
                B->cur = -1;
            }
    t_block = nullptr;
    delete B;
}

} // namespace rs_sim
