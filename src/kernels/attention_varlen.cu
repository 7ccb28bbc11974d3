/* attention_varlen.cu — bidirectional multi-head attention over packed
 * sequences, flash-attention style (FlashAttention-2's forward): no score
 * matrix in memory, no padding, cost follows the real tokens.
 *
 * Grid: (query tile, head, sequence). A block of 4 warps takes 64 query rows
 * of one (sequence, head); each warp owns 16 rows. Blocks whose tile starts
 * past their sequence's end leave at once (a batch mixing lengths launches
 * ceil(max_len / 64) tiles for every sequence).
 *
 * Per block: Q tile -> shared memory -> registers (A fragments, kept for the
 * whole loop); then for each 64-key tile, K and V go to shared memory and
 * each warp computes S = Q K^T (16 x 64, fp32, tensor cores: mma.sync
 * m16n8k16 bf16), masks keys past the sequence, updates the running row max
 * and row sum (online softmax in base 2, scale folded in), rescales its
 * output accumulator and adds P V, P rounded to bf16 straight from the S
 * accumulator registers (the C layout of two n8 tiles is the A layout of one
 * k16 step). The row sums stay per lane and are reduced across the quad at
 * the end, as the rescale factors are quad-uniform.
 *
 * Head dims: compiled for DP = 16, 32, 64, 128; a head_dim D <= DP runs in
 * the next one up with zero-filled columns (zeros add nothing to Q.K, and
 * output columns >= D are not written). D % 8 == 0 with a 16-byte aligned
 * qkv takes 16-byte loads (the host checks both: a view may be offset).
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, t = lane % 4):
 *   A 16x16 row-major: a0 (g, 2t..2t+1) a1 (g+8, 2t..) a2 (g, 2t+8..) a3 (g+8, 2t+8..)
 *   B 16x8 "col":      b0 (k = 2t..2t+1, n = g)      b1 (k = 2t+8..2t+9, n = g)
 *   C 16x8 fp32:       c0,c1 (g, 2t..2t+1)          c2,c3 (g+8, 2t..2t+1)
 * Shared rows are padded by 8 bf16 (16 bytes): the 32-bit fragment loads of
 * a warp then fall in 32 distinct banks for every DP. */
#include <math.h>

#include "attention_varlen.cuh"
#include "cuda_common.cuh"
#include "flash_tile.cuh"

namespace {

constexpr int kWarps = 4;
constexpr int kBlockQ = 16 * kWarps; /* query rows per block */
constexpr int kBlockK = flash::kBlockK; /* keys per tile */

/* Loads rows [r0, r0 + 64) of one head's D columns (src row r at src + r*ld)
 * into tile[64][DP + 8]; rows >= L and columns >= D are zero. */
template <int DP>
__device__ __forceinline__ void load_tile(uint16_t (*tile)[DP + 8], const uint16_t *__restrict__ src, int64_t ld,
                                          int r0, int L, int D, bool vec) {
    if (vec) {
        constexpr int kChunks = DP / 8; /* 16-byte chunks per row */
        for (int i = threadIdx.x; i < kBlockK * kChunks; i += kWarps * 32) {
            const int r = i / kChunks, ch = i % kChunks, col = ch * 8;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (r0 + r < L && col < D) v = *reinterpret_cast<const uint4 *>(src + (int64_t)(r0 + r) * ld + col);
            *reinterpret_cast<uint4 *>(&tile[r][col]) = v;
        }
    } else {
        for (int i = threadIdx.x; i < kBlockK * DP; i += kWarps * 32) {
            const int r = i / DP, col = i % DP;
            uint16_t v = 0;
            if (r0 + r < L && col < D) v = src[(int64_t)(r0 + r) * ld + col];
            tile[r][col] = v;
        }
    }
}

template <int DP>
__global__ void __launch_bounds__(kWarps * 32)
    attention_varlen_kernel(const uint16_t *__restrict__ qkv, const int32_t *__restrict__ offsets, int n_heads,
                            int D, float scale_log2, bool vec, uint16_t *__restrict__ out) {
    static_assert(DP % 16 == 0 && DP <= 128, "head dim tile");
    __shared__ __align__(16) uint16_t sK[kBlockK][DP + 8];
    __shared__ __align__(16) uint16_t sV[kBlockK][DP + 8];

    const int s = blockIdx.z, h = blockIdx.y;
    const int64_t t0 = offsets[s];
    const int L = offsets[s + 1] - (int)t0;
    const int q0 = blockIdx.x * kBlockQ;
    if (q0 >= L) return; /* uniform over the block: before any barrier */

    const int64_t hd = (int64_t)n_heads * D, ld = 3 * hd;
    const uint16_t *Qg = qkv + t0 * ld + (int64_t)h * D;
    const uint16_t *Kg = Qg + hd, *Vg = Qg + 2 * hd;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;

    /* Q tile through sK (free until the first K tile) into A fragments. */
    load_tile<DP>(sK, Qg, ld, q0, L, D, vec);
    __syncthreads();
    uint32_t qf[DP / 16][4];
    flash::load_q_frags<DP>(sK, warp, g, t, qf);
    __syncthreads();

    flash::acc<DP> run;
    run.init();

    /* Bidirectional: every key of the sequence is visible; key k0 < L is in
     * every tile, so the maxima are finite from the first tile on. */
    const auto visible = [L](int key, int) { return key < L; };
    for (int k0 = 0; k0 < L; k0 += kBlockK) {
        load_tile<DP>(sK, Kg, ld, k0, L, D, vec);
        load_tile<DP>(sV, Vg, ld, k0, L, D, vec);
        __syncthreads();
        flash::step<DP>(qf, sK, sV, k0, scale_log2, visible, g, t, run);
        __syncthreads(); /* before the next tile overwrites sK / sV */
    }

    const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;
    flash::store_rows<DP>(run, r0 < L ? out + (t0 + r0) * hd + (int64_t)h * D : nullptr,
                          r1 < L ? out + (t0 + r1) * hd + (int64_t)h * D : nullptr, D, t);
}

template <int DP>
cudaError_t launch(cudaStream_t st, const bf16 *qkv, const int32_t *offsets, int n_seq, int max_len, int n_heads,
                   int D, bf16 *out) {
    const dim3 grid((unsigned)((max_len + kBlockQ - 1) / kBlockQ), (unsigned)n_heads, (unsigned)n_seq);
    const float scale_log2 = 1.4426950408889634f / sqrtf((float)D);
    const bool vec = D % 8 == 0 && ((uintptr_t)qkv & 15) == 0;
    RS_LAUNCH(attention_varlen_kernel<DP>, grid, kWarps * 32, 0, st)(reinterpret_cast<const uint16_t *>(qkv), offsets,
                                                              n_heads, D, scale_log2, vec,
                                                              reinterpret_cast<uint16_t *>(out));
    return cudaGetLastError();
}

} // namespace

rs_status rs_cuda_attention_varlen(rs_cuda *c, const bf16 *qkv, const int32_t *offsets, int n_seq, int max_len,
                                   int n_heads, int head_dim, bf16 *out) {
    if (n_seq <= 0) return RS_OK;
    if (head_dim < 1 || head_dim > 128 || n_heads < 1 || n_heads > 65535 || n_seq > 65535 || max_len < 1)
        return RS_ERR_UNSUPPORTED;
    cudaError_t e;
    if (head_dim <= 16)
        e = launch<16>(c->stream, qkv, offsets, n_seq, max_len, n_heads, head_dim, out);
    else if (head_dim <= 32)
        e = launch<32>(c->stream, qkv, offsets, n_seq, max_len, n_heads, head_dim, out);
    else if (head_dim <= 64)
        e = launch<64>(c->stream, qkv, offsets, n_seq, max_len, n_heads, head_dim, out);
    else
        e = launch<128>(c->stream, qkv, offsets, n_seq, max_len, n_heads, head_dim, out);
    RS_CUDA_CHECK(c, e);
    return RS_OK;
}
