/* kind_embedding.c — what the two kinds that score a prompt embedding
 * (mf_routellm, sw_ranking) share: the client's embedding
 * (rs_engine_score_embeddings) or, when the manifest names an "encoder",
 * the encoder's pooled one of the prompt. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kind.h"

rs_status rs_kemb_open(rs_engine *e, const rs_kind_open_args *a,
                       rs_status (*open_head)(rs_engine *e, const rs_kind_open_args *a, rs_err *err), rs_err *err) {
    /* RouteLLM's default pair when the manifest names none. */
    if (!a->manifest->strong_model) snprintf(e->strong, sizeof e->strong, "gpt-4-1106-preview");
    if (!a->manifest->weak_model) snprintf(e->weak, sizeof e->weak, "mixtral-8x7b-instruct-v0.1");
    rs_status st;
    if (a->manifest->encoder) {
        /* the head may embed through the engine at open (sw_ranking's
         * battles without embeddings): the loop's buffers first */
        if ((st = rs_kenc_open(e, a, 0, err)) != RS_OK || (st = rs_kind_stage(e, err)) != RS_OK) return st;
    }
    const int enc_dim = e->hidden;
    if ((st = open_head(e, a, err)) != RS_OK) return st;
    if (enc_dim && enc_dim != e->emb_dim)
        return rs_errf(err, RS_ERR_FORMAT, "%s: the %s head takes %d-d embeddings but the encoder gives %d", a->dir,
                       e->kind->name, e->emb_dim, enc_dim);
    return RS_OK;
}

void rs_kemb_info(const rs_engine *e, rs_router_info *out, const char *arch) {
    if (e->hidden) return; /* the encoder's info stands */
    out->architecture = arch;
    out->max_tokens = 0;
    out->embed_dim = e->emb_dim;
    out->n_labels = 0;
    out->vocab_size = 0;
}

rs_status rs_kemb_score_tokens(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, float threshold,
                               rs_score *out, rs_err *err) {
    rs_status st = rs_kenc_forward(e, ids, offsets, n_seq, 0, err);
    /* one embedding at a time, as the client's are scored one row each */
    for (int q = 0; st == RS_OK && q < n_seq; q++)
        st = e->kind->score_embeddings(e, e->out + (size_t)q * (size_t)e->hidden, 1, threshold, &out[q], err);
    return st;
}

void rs_kemb_finish(const float *p, size_t n, float threshold, rs_status st, const rs_err *herr, rs_score *out) {
    for (size_t i = 0; i < n; i++) {
        rs_score *s = &out[i];
        s->n_labels = 0;
        if (st == RS_OK && isnan(p[i])) {
            s->status = RS_ERR_INVALID_ARG;
            snprintf(s->error, sizeof s->error, "zero or non-finite embedding");
        } else if (st != RS_OK) {
            s->status = st;
            snprintf(s->error, sizeof s->error, "%.*s", (int)sizeof s->error - 1, herr->msg);
        } else {
            s->win_prob = p[i];
            s->route_strong = p[i] >= threshold;
        }
    }
}
