/* kind_mf.c — the `mf` router: an encoder's pooled embedding e and a linear
 * head from "head" (safetensors: mf.weight [H], mf.bias [1], optionally
 * mf.length_weight [1]); win_prob = sigmoid(w · e + b), plus
 * mf.length_weight · (ln tokens − RS_MF_LEN_CENTER) in the logit when the
 * head has that tensor (what `routescore train --length-term` fits). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "file.h"
#include "kind.h"
#include "safetensors.h"

typedef struct mf_head {
    float *w;    /* (H) */
    float b;     /* the bias */
    float len_w; /* optional mf.length_weight */
    int has_len;
} mf_head;

static rs_status load_head(rs_engine *e, mf_head *h, const char *path, rs_err *err) {
    rs_st_file *f;
    rs_status st = rs_st_open(path, &f, err);
    if (st != RS_OK) return st;
    const rs_st_tensor *w = rs_st_find(f, "mf.weight"), *b = rs_st_find(f, "mf.bias");
    const int64_t H = e->hidden;
    if (!w || !b)
        st = rs_errf(err, RS_ERR_NOT_FOUND, "%s: needs tensors 'mf.weight' [%lld] and 'mf.bias' [1]", path, (long long)H);
    else if (w->n_elems != H || b->n_elems != 1 || w->dtype != RS_DTYPE_F32 || b->dtype != RS_DTYPE_F32)
        st = rs_errf(err, RS_ERR_FORMAT, "%s: 'mf.weight' must be F32 [%lld] (the encoder's hidden size) and 'mf.bias' F32 [1]",
                     path, (long long)H);
    else if (!(h->w = malloc((size_t)H * sizeof(float))))
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
    else {
        rs_convert_f32(h->w, w->data, w->dtype, (size_t)H);
        rs_convert_f32(&h->b, b->data, b->dtype, 1);
        /* Optional: a weight on the prompt's length (log of its token count,
         * specials included, after truncation), which the pooled normalised
         * embedding does not carry. */
        const rs_st_tensor *lw = rs_st_find(f, "mf.length_weight");
        if (lw && (lw->n_elems != 1 || lw->dtype != RS_DTYPE_F32))
            st = rs_errf(err, RS_ERR_FORMAT, "%s: 'mf.length_weight' must be F32 [1]", path);
        else if (lw) {
            rs_convert_f32(&h->len_w, lw->data, lw->dtype, 1);
            h->has_len = 1;
        }
    }
    rs_st_close(f);
    return st;
}

static rs_status mf_open(rs_engine *e, const rs_kind_open_args *a, rs_err *err) {
    if (!a->manifest->head)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s/routescore.json: kind 'mf' needs a \"head\" file", a->dir);
    char path[4096];
    rs_status st = rs_path_join(path, sizeof path, a->dir, a->manifest->head, err);
    if (st != RS_OK) return rs_errf(err, st, "%s/routescore.json: head: %s", a->dir, err->msg);
    mf_head *h = calloc(1, sizeof *h);
    if (!h) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    e->state = h;
    if ((st = rs_kenc_open(e, a, 0, err)) != RS_OK) return st;
    return load_head(e, h, path, err);
}

static void mf_close(rs_engine *e) {
    mf_head *h = e->state;
    if (h) free(h->w);
    free(h);
    e->state = NULL;
    rs_kenc_close(e);
}

static rs_status mf_score_tokens(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, float threshold,
                                 rs_score *out, rs_err *err) {
    rs_status st = rs_kenc_forward(e, ids, offsets, n_seq, 0, err);
    if (st != RS_OK) return st;
    const mf_head *h = e->state;
    const int H = e->hidden;
    for (int q = 0; q < n_seq; q++) {
        const float *o = e->out + (size_t)q * (size_t)H;
        double z = h->b;
        for (int i = 0; i < H; i++) z += (double)h->w[i] * o[i];
        if (h->has_len) z += (double)h->len_w * (log((double)(offsets[q + 1] - offsets[q])) - RS_MF_LEN_CENTER);
        out[q].win_prob = 1.f / (1.f + expf(-(float)z));
        out[q].n_labels = 0;
        out[q].route_strong = out[q].win_prob >= threshold;
    }
    return RS_OK;
}

const rs_kind rs_kind_mf = {
    .name = "mf",
    .open = mf_open,
    .info = NULL,
    .tokenize = rs_kenc_tokenize,
    .score_tokens = mf_score_tokens,
    .embed_tokens = rs_kenc_embed_tokens,
    .score_embeddings = NULL,
    .flops = rs_kenc_flops,
    .close = mf_close,
};
