/* pool.cuh — sentence pooling (mean or first token) with optional L2 normalisation. */
#ifndef RS_KERNELS_POOL_CUH
#define RS_KERNELS_POOL_CUH

#include "cuda_backend.cuh"

/* out[s, N] = mean (mean_pool != 0) or first row of sequence s of x[T, N]; divided by
 * max(||.||, 1e-12) when normalize != 0. offsets on the device (n_seq + 1 entries). */
rs_status rs_cuda_pool(rs_cuda *c, const bf16 *x, const int32_t *offsets, int n_seq, int64_t N, int mean_pool,
                       int normalize, bf16 *out);

#endif
