/* copy_rows.cuh — row gathers and scatters (KV cache writes, LM-head row picks, embedding lookups). */
#ifndef RS_KERNELS_COPY_ROWS_CUH
#define RS_KERNELS_COPY_ROWS_CUH

#include "cuda_backend.cuh"

/* dst[dst_rows[i]] = src[src_rows[i]] for i < M, rows of N bf16; a NULL row
 * list (device array otherwise) is the identity. Rows must not overlap
 * between src and dst within one call. */
rs_status rs_cuda_copy_rows(rs_cuda *c, bf16 *dst, const int32_t *dst_rows, const bf16 *src, const int32_t *src_rows,
                            int64_t M, int64_t N);

#endif
