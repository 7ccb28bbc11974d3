/* copy_rows.cu — dst[dst_rows[i]] = src[src_rows[i]]: the decoder's row
 * moves. llama.c writes each layer's new K/V rows into their cache slots
 * with it, picks the rows that go through the LM head, and (as embed_rows,
 * backend_cuda.cu) gathers token embeddings from the table.
 *
 * One block per row, 128 threads moving 16 bytes each when the width is a
 * multiple of 8 and both rows are 16-byte aligned, else one bf16 at a time.
 * Pure data movement: no arithmetic, so the copy is exact. */
#include "copy_rows.cuh"

namespace {

constexpr int kThreads = 128;

template <bool VEC>
__global__ void __launch_bounds__(kThreads)
    copy_rows_kernel(bf16 *dst, const int32_t *__restrict__ dst_rows, const bf16 *src,
                     const int32_t *__restrict__ src_rows, int64_t N) {
    const int64_t i = blockIdx.x;
    const int64_t d = dst_rows ? dst_rows[i] : i, s = src_rows ? src_rows[i] : i;
    bf16 *o = dst + d * N;
    const bf16 *in = src + s * N;
    if (VEC) {
        uint4 *o4 = reinterpret_cast<uint4 *>(o);
        const uint4 *in4 = reinterpret_cast<const uint4 *>(in);
        for (int64_t k = threadIdx.x; k < N / 8; k += kThreads) o4[k] = in4[k];
    } else {
        for (int64_t k = threadIdx.x; k < N; k += kThreads) o[k] = in[k];
    }
}

} // namespace

rs_status rs_cuda_copy_rows(rs_cuda *c, bf16 *dst, const int32_t *dst_rows, const bf16 *src, const int32_t *src_rows,
                            int64_t M, int64_t N) {
    if (M <= 0 || N <= 0) return RS_OK;
    if (M > 0x7fffffff) return RS_ERR_INVALID_ARG;
    const bool vec = N % 8 == 0 && (((uintptr_t)dst | (uintptr_t)src) & 15) == 0;
    if (vec)
        RS_LAUNCH(copy_rows_kernel<true>, (unsigned)M, kThreads, 0, c->stream)(dst, dst_rows, src, src_rows, N);
    else
        RS_LAUNCH(copy_rows_kernel<false>, (unsigned)M, kThreads, 0, c->stream)(dst, dst_rows, src, src_rows, N);
    RS_CUDA_LAUNCHED(c);
    return RS_OK;
}
