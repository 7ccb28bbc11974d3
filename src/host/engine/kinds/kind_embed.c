/* kind_embed.c — the `embed` router: a bare encoder (BERT family or a Llama
 * used as one) that embeds and has no scoring head; `routescore train` fits
 * an mf head on its embeddings. */
#include "kind.h"

static rs_status embed_open(rs_engine *e, const rs_kind_open_args *a, rs_err *err) { return rs_kenc_open(e, a, 0, err); }

const rs_kind rs_kind_embed = {
    .name = "embed",
    .open = embed_open,
    .info = NULL,
    .tokenize = rs_kenc_tokenize,
    .score_tokens = NULL,
    .embed_tokens = rs_kenc_embed_tokens,
    .score_embeddings = NULL,
    .flops = rs_kenc_flops,
    .close = rs_kenc_close,
};
