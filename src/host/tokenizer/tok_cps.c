/* tok_cps.c — the code-point buffer (rs_tok_cps) every tokenizer stage
 * grows: normalizers, the SentencePiece precompiled map, pre-tokenizers and
 * the pipeline. In a file of its own so the stages depend on it, not on each
 * other. */
#include <stdlib.h>

#include "tok_internal.h"

rs_status rs_tok_cps_reserve(rs_tok_cps *b, size_t need) {
    if (need <= b->cap) return RS_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    int32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v) return RS_ERR_NOMEM;
    b->v = v;
    b->cap = cap;
    return RS_OK;
}
