/* kind_causal_llm.c — the `causal_llm` router: RouteLLM's Llama rating
 * model (causal_router.h), also what a plain LlamaForCausalLM directory
 * opens as. The model dir is the manifest's "encoder" (default the router
 * dir); the other keys are causal_router.h's. It brings its own tokenizer
 * and prompt template; the engine packs within its slots and budget. */
#include <stdlib.h>

#include "causal_router.h"
#include "kind.h"

typedef struct causal_state {
    rs_causal *c;
    rs_causal_result *r; /* (max_slots) one forward's outcomes */
} causal_state;

static rs_status causal_open(rs_engine *e, const rs_kind_open_args *a, rs_err *err) {
    /* the backend needs no encoder attention scratch (max_len 1) */
    int mt, bt;
    rs_causal_limits(a->max_tokens, a->opts->max_batch_tokens, &mt, &bt);
    causal_state *cs = calloc(1, sizeof *cs);
    if (!cs) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    e->state = cs;
    rs_status st = rs_kind_backend(e, a, mt, (size_t)bt, 1, err);
    if (st != RS_OK ||
        (st = rs_causal_open(a->dir, a->enc_dir, a->manifest, e->backend, a->opts->device, mt, bt, &cs->c, err)) != RS_OK)
        return st;
    const rs_causal *c = cs->c;
    e->max_tokens = rs_causal_max_tokens(c);
    e->batch_tokens = rs_causal_batch_tokens(c);
    e->max_seqs = rs_causal_max_slots(c);
    e->vocab = rs_causal_vocab_size(c);
    e->arch = rs_causal_architecture(c);
    if (!(cs->r = malloc((size_t)e->max_seqs * sizeof *cs->r))) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    return RS_OK;
}

static void causal_close(rs_engine *e) {
    causal_state *cs = e->state;
    if (cs) {
        rs_causal_close(cs->c);
        free(cs->r);
    }
    free(cs);
    e->state = NULL;
}

static void causal_info(const rs_engine *e, rs_router_info *out) {
    out->embed_dim = rs_causal_hidden(((const causal_state *)e->state)->c);
    out->n_labels = RS_CAUSAL_RATINGS;
}

static rs_status causal_tokenize(const rs_engine *e, const char *prompt, size_t len, int32_t *ids, size_t cap,
                                 size_t *n_ids, int *truncated, rs_err *err) {
    *truncated = 0; /* RouteLLM does not truncate: too long is an error */
    return rs_causal_tokenize(((const causal_state *)e->state)->c, prompt, len, ids, cap, n_ids, err);
}

static rs_status causal_score_tokens(rs_engine *e, const int32_t *ids, const int32_t *offsets, int n_seq, float threshold,
                                     rs_score *out, rs_err *err) {
    causal_state *cs = e->state;
    /* the engine packed at most max_slots prompts and batch_tokens ids:
     * one group, as rs_causal_score_tokens would form it */
    rs_status st = rs_causal_score_tokens(cs->c, ids, offsets, n_seq, cs->r, err);
    if (st != RS_OK) return st;
    for (int i = 0; i < n_seq; i++) {
        const rs_causal_result *r = &cs->r[i];
        rs_score *s = &out[i];
        s->win_prob = r->win_prob;
        s->n_labels = r->rated ? RS_CAUSAL_RATINGS : 0;
        for (int k = 0; r->rated && k < RS_CAUSAL_RATINGS; k++) s->label_probs[k] = r->ratings[k];
        s->tokens = r->tokens;
        s->route_strong = s->win_prob >= threshold;
    }
    return RS_OK;
}

static double causal_flops(const rs_engine *e, const size_t *offsets, size_t n_seq) {
    return rs_causal_flops(((const causal_state *)e->state)->c, offsets, n_seq);
}

const rs_kind rs_kind_causal_llm = {
    .name = "causal_llm",
    .open = causal_open,
    .info = causal_info,
    .tokenize = causal_tokenize,
    .score_tokens = causal_score_tokens,
    .embed_tokens = NULL,
    .score_embeddings = NULL,
    .flops = causal_flops,
    .close = causal_close,
};
