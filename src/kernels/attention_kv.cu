/* attention_kv.cu — the decoder's causal grouped-query attention over a KV
 * cache: every query row reads the shared prefix's keys (the system prompt,
 * computed once) and then its own slot's keys up to its position. Flash
 * style, as attention_varlen.cu (whose fragment layouts and online softmax
 * this follows): no score matrix in memory, tensor cores for Q K^T and P V.
 *
 * Query tiles. A block takes 64 query *items* of one KV head: an item is a
 * (query row, query head of the group) pair, items ordered row-major, so a
 * tile holds floor(64 / group) consecutive rows of one slot with all their
 * group heads. The heads of a GQA group share every key and value, so they
 * share the tile's K/V loads, and a decode step (one row per slot) still
 * fills `group` of the 16 MMA rows per warp instead of one. The host splits
 * the rows into tiles where the slot changes or a tile is full and records
 * (first row, rows, largest position) per tile: the metadata of a forward is
 * the same for every layer, so it is staged once (backend_cuda.cu's stages).
 *
 * Keys. One stream: index u < n_prefix is prefix row u (pk/pv), u >= n_prefix
 * is slot row u - n_prefix (k/v from row slot * slot_stride), up to the
 * tile's largest position. Key u is visible to an item at position p when u
 * < n_prefix or u - n_prefix <= p (causal within the slot). Key 0 is visible
 * to every item (a prefix row, or the slot's row 0 at p >= 0), so the first
 * key tile gives every row a finite maximum and later fully masked tiles
 * only rescale by 1 and add 0. Padding items (past the tile's rows) see
 * every key of the stream, read zero queries and are never written.
 *
 * Head dims: compiled for DP = 16, 32, 64, 128 (Llama: 64, 128); D <= DP runs
 * zero-padded. D % 8 == 0 with 16-byte aligned buffers takes 16-byte loads. */
#include <limits.h>
#include <math.h>

#include "attention_kv.cuh"
#include "cuda_common.cuh"
#include "flash_tile.cuh"

namespace {

constexpr int kWarps = 4;
constexpr int kBlockQ = 16 * kWarps; /* query items per block */
constexpr int kBlockK = flash::kBlockK; /* keys per tile */

struct kv_args {
    const uint16_t *q, *pk, *pv, *k, *v;
    const int32_t *tiles, *slot, *pos;
    uint16_t *out;
    int64_t slot_stride;
    int n_prefix, n_heads, group, D;
    float scale_log2;
    bool vec;
};

/* Loads key rows [k0, k0 + 64) of the stream into tile[64][DP + 8]: prefix
 * rows from P, slot rows from S (both already at the KV head's column);
 * rows past n_keys and columns >= D are zero. */
template <int DP>
__device__ __forceinline__ void load_keys(uint16_t (*tile)[DP + 8], const uint16_t *P, const uint16_t *S, int64_t ld,
                                          int k0, int n_prefix, int n_keys, int D, bool vec) {
    if (vec) {
        constexpr int kChunks = DP / 8;
        for (int i = threadIdx.x; i < kBlockK * kChunks; i += kWarps * 32) {
            const int r = i / kChunks, col = (i % kChunks) * 8, u = k0 + r;
            uint4 x = make_uint4(0u, 0u, 0u, 0u);
            if (u < n_keys && col < D) {
                const uint16_t *src = u < n_prefix ? P + (int64_t)u * ld : S + (int64_t)(u - n_prefix) * ld;
                x = *reinterpret_cast<const uint4 *>(src + col);
            }
            *reinterpret_cast<uint4 *>(&tile[r][col]) = x;
        }
    } else {
        for (int i = threadIdx.x; i < kBlockK * DP; i += kWarps * 32) {
            const int r = i / DP, col = i % DP, u = k0 + r;
            uint16_t x = 0;
            if (u < n_keys && col < D) x = (u < n_prefix ? P + (int64_t)u * ld : S + (int64_t)(u - n_prefix) * ld)[col];
            tile[r][col] = x;
        }
    }
}

template <int DP>
__global__ void __launch_bounds__(kWarps * 32) attention_kv_kernel(kv_args a) {
    static_assert(DP % 16 == 0 && DP <= 128, "head dim tile");
    __shared__ __align__(16) uint16_t sK[kBlockK][DP + 8];
    __shared__ __align__(16) uint16_t sV[kBlockK][DP + 8];

    const int kh = blockIdx.y, group = a.group, D = a.D;
    const int r0 = a.tiles[3 * blockIdx.x], n_rows = a.tiles[3 * blockIdx.x + 1], kmax = a.tiles[3 * blockIdx.x + 2];
    const int n_items = n_rows * group, n_keys = a.n_prefix + kmax + 1;
    const int64_t ldq = (int64_t)a.n_heads * D, ldkv = (int64_t)(a.n_heads / group) * D;
    const uint16_t *Pk = a.pk + (int64_t)kh * D, *Pv = a.pv + (int64_t)kh * D;
    const int64_t base = (int64_t)a.slot[r0] * a.slot_stride * ldkv + (int64_t)kh * D;
    const uint16_t *Sk = a.k + base, *Sv = a.v + base;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;

    /* Q items through sK (free until the first key tile) into A fragments. */
    if (a.vec) {
        constexpr int kChunks = DP / 8;
        for (int i = threadIdx.x; i < kBlockQ * kChunks; i += kWarps * 32) {
            const int r = i / kChunks, col = (i % kChunks) * 8;
            uint4 x = make_uint4(0u, 0u, 0u, 0u);
            if (r < n_items && col < D) {
                const int64_t row = r0 + r / group, h = (int64_t)kh * group + r % group;
                x = *reinterpret_cast<const uint4 *>(a.q + row * ldq + h * D + col);
            }
            *reinterpret_cast<uint4 *>(&sK[r][col]) = x;
        }
    } else {
        for (int i = threadIdx.x; i < kBlockQ * DP; i += kWarps * 32) {
            const int r = i / DP, col = i % DP;
            uint16_t x = 0;
            if (r < n_items && col < D) {
                const int64_t row = r0 + r / group, h = (int64_t)kh * group + r % group;
                x = a.q[row * ldq + h * D + col];
            }
            sK[r][col] = x;
        }
    }
    __syncthreads();
    uint32_t qf[DP / 16][4];
    flash::load_q_frags<DP>(sK, warp, g, t, qf);
    __syncthreads();

    /* Positions of this lane's two items (rows g and g + 8 of the warp). */
    const int it0 = warp * 16 + g, it1 = it0 + 8;
    const int p0 = it0 < n_items ? a.pos[r0 + it0 / group] : INT_MAX;
    const int p1 = it1 < n_items ? a.pos[r0 + it1 / group] : INT_MAX;

    flash::acc<DP> run;
    run.init();
    /* Causal over the key stream; key 0 is visible to every item, so the
     * maxima are finite from the first tile on. */
    const int n_prefix = a.n_prefix;
    const auto visible = [=](int u, int half) {
        return u < n_keys && (u < n_prefix || u - n_prefix <= (half ? p1 : p0));
    };
    for (int k0 = 0; k0 < n_keys; k0 += kBlockK) {
        load_keys<DP>(sK, Pk, Sk, ldkv, k0, a.n_prefix, n_keys, D, a.vec);
        load_keys<DP>(sV, Pv, Sv, ldkv, k0, a.n_prefix, n_keys, D, a.vec);
        __syncthreads();
        flash::step<DP>(qf, sK, sV, k0, a.scale_log2, visible, g, t, run);
        __syncthreads(); /* before the next tile overwrites sK / sV */
    }

    /* Item -> (row, head) of out; padding items write nothing. */
    uint16_t *O0 = nullptr, *O1 = nullptr;
    if (it0 < n_items) O0 = a.out + (int64_t)(r0 + it0 / group) * ldq + ((int64_t)kh * group + it0 % group) * D;
    if (it1 < n_items) O1 = a.out + (int64_t)(r0 + it1 / group) * ldq + ((int64_t)kh * group + it1 % group) * D;
    flash::store_rows<DP>(run, O0, O1, D, t);
}

template <int DP>
cudaError_t launch(cudaStream_t st, unsigned n_tiles, unsigned n_kv, const kv_args &a) {
    RS_LAUNCH(attention_kv_kernel<DP>, dim3(n_tiles, n_kv), kWarps * 32, 0, st)(a);
    return cudaGetLastError();
}

} // namespace

rs_status rs_cuda_attention_kv(rs_cuda *c, const bf16 *q, int64_t T, const int32_t *slot, const int32_t *pos,
                               const bf16 *pk, const bf16 *pv, int n_prefix, const bf16 *k, const bf16 *v,
                               int64_t slot_stride, int n_heads, int n_kv_heads, int head_dim, bf16 *out) {
    if (T == 0) return RS_OK;
    if (T < 0 || (size_t)T > c->max_tokens || n_heads < 1 || n_kv_heads < 1 || n_heads % n_kv_heads ||
        head_dim < 1 || n_prefix < 0 || slot_stride < 1)
        return RS_ERR_INVALID_ARG;
    const int group = n_heads / n_kv_heads;
    if (head_dim > 128 || group > kBlockQ || n_kv_heads > 65535) return RS_ERR_UNSUPPORTED;
    /* Tiles: runs of rows of one slot, at most kBlockQ / group rows each. A
     * row's slot and position index device memory: refuse negatives here
     * (upper bounds are the caller's, as for the CPU op). */
    const int per_tile = kBlockQ / group;
    int32_t *tl = c->tile_host;
    int n_tiles = 0;
    for (int64_t r = 0; r < T; r++) {
        if (slot[r] < 0 || pos[r] < 0) return RS_ERR_INVALID_ARG;
        int32_t *cur = n_tiles ? tl + 3 * (n_tiles - 1) : NULL;
        if (!cur || slot[r] != slot[cur[0]] || cur[1] == per_tile) {
            cur = tl + 3 * n_tiles++;
            cur[0] = (int32_t)r;
            cur[1] = 0;
            cur[2] = 0;
        }
        cur[1]++;
        if (pos[r] > cur[2]) cur[2] = pos[r];
    }
    rs_status st;
    if ((st = rs_cuda_stage_upload(c, &c->slot, slot, (size_t)T)) != RS_OK ||
        (st = rs_cuda_stage_upload(c, &c->kv_pos, pos, (size_t)T)) != RS_OK ||
        (st = rs_cuda_stage_upload(c, &c->tiles, tl, 3 * (size_t)n_tiles)) != RS_OK)
        return st;
    kv_args a;
    a.q = reinterpret_cast<const uint16_t *>(q);
    a.pk = reinterpret_cast<const uint16_t *>(pk);
    a.pv = reinterpret_cast<const uint16_t *>(pv);
    a.k = reinterpret_cast<const uint16_t *>(k);
    a.v = reinterpret_cast<const uint16_t *>(v);
    a.tiles = c->tiles.dev;
    a.slot = c->slot.dev;
    a.pos = c->kv_pos.dev;
    a.out = reinterpret_cast<uint16_t *>(out);
    a.slot_stride = slot_stride;
    a.n_prefix = n_prefix;
    a.n_heads = n_heads;
    a.group = group;
    a.D = head_dim;
    a.scale_log2 = 1.4426950408889634f / sqrtf((float)head_dim);
    /* pk/pv are not read when n_prefix == 0 (they may be NULL then). */
    const uintptr_t al = (uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (n_prefix ? (uintptr_t)pk | (uintptr_t)pv : 0);
    a.vec = head_dim % 8 == 0 && (al & 15) == 0;
    cudaError_t e;
    if (head_dim <= 16)
        e = launch<16>(c->stream, (unsigned)n_tiles, (unsigned)n_kv_heads, a);
    else if (head_dim <= 32)
        e = launch<32>(c->stream, (unsigned)n_tiles, (unsigned)n_kv_heads, a);
    else if (head_dim <= 64)
        e = launch<64>(c->stream, (unsigned)n_tiles, (unsigned)n_kv_heads, a);
    else
        e = launch<128>(c->stream, (unsigned)n_tiles, (unsigned)n_kv_heads, a);
    RS_CUDA_CHECK(c, e);
    return RS_OK;
}
