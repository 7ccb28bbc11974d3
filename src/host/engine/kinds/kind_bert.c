/* kind_bert.c — the `bert` router: a *ForSequenceClassification encoder
 * (BERT, RoBERTa, XLM-R); win_prob is the sum of the manifest's
 * "strong_labels" probabilities (default label 0, RouteLLM's "strong wins")
 * under the head's softmax (sigmoid for one label). */
#include <math.h>
#include <string.h>

#include "kind.h"

static rs_status bert_open(rs_engine *e, const rs_kind_open_args *a, rs_err *err) { return rs_kenc_open(e, a, 1, err); }

static void bert_info(const rs_engine *e, rs_router_info *out) { out->n_labels = e->cfg->n_labels; }

static float sigmoidf(float x) { return 1.f / (1.f + expf(-x)); }

static rs_status bert_score_tokens(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, float threshold,
                                   rs_score *out, rs_err *err) {
    rs_status st = rs_kenc_forward(e, ids, offsets, n_seq, 1, err);
    if (st != RS_OK) return st;
    const int L = e->cfg->n_labels;
    for (int q = 0; q < n_seq; q++) {
        const float *o = e->out + (size_t)q * (size_t)L;
        rs_score *s = &out[q];
        s->n_labels = L;
        if (L == 1) {
            s->label_probs[0] = s->win_prob = sigmoidf(o[0]);
        } else {
            float mx = o[0], sum = 0.f;
            for (int l = 1; l < L; l++) mx = o[l] > mx ? o[l] : mx;
            for (int l = 0; l < L; l++) sum += (s->label_probs[l] = expf(o[l] - mx));
            for (int l = 0; l < L; l++) s->label_probs[l] /= sum;
            float p = 0.f;
            for (int k = 0; k < e->n_strong_labels; k++) p += s->label_probs[e->strong_labels[k]];
            s->win_prob = p > 1.f ? 1.f : p;
        }
        s->route_strong = s->win_prob >= threshold;
    }
    return RS_OK;
}

const rs_kind rs_kind_bert = {
    .name = "bert",
    .open = bert_open,
    .info = bert_info,
    .tokenize = rs_kenc_tokenize,
    .score_tokens = bert_score_tokens,
    .embed_tokens = rs_kenc_embed_tokens,
    .score_embeddings = NULL,
    .flops = rs_kenc_flops,
    .close = rs_kenc_close,
};
