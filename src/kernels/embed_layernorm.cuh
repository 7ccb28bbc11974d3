/* embed_layernorm.cuh — token embedding gather + positions + token types + LayerNorm, one warp per token. */
#ifndef RS_KERNELS_EMBED_LAYERNORM_CUH
#define RS_KERNELS_EMBED_LAYERNORM_CUH

#include "cuda_backend.cuh"

/* out[t, :] = LN(word[ids[t]] + pos[pos_ids[t]] + type[type_ids[t]]) with gamma g and beta b
 * (fp32); ids and tables on the device, ids already range-checked. */
rs_status rs_cuda_embed_layernorm(rs_cuda *c, const int32_t *ids, const int32_t *pos_ids, const int32_t *type_ids,
                                  int n_tokens, const bf16 *word, const bf16 *pos, const bf16 *type, const float *g,
                                  const float *b, float eps, int hidden, bf16 *out);

#endif
