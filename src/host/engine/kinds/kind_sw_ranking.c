/* kind_sw_ranking.c — the `sw_ranking` router: RouteLLM's
 * similarity-weighted Elo over a battle file (sw.h) on a prompt embedding.
 * Manifest keys: "battles" (default battles.jsonl), "num_tiers" (default
 * 10, at most 64), optionally "encoder" (then battles that come without an
 * embedding are embedded with it at open). */
#include <stdlib.h>

#include "file.h"
#include "kind.h"
#include "sw.h"

/* Embeds battle prompts with the router's own encoder, at open. */
static rs_status sw_embed(void *ctx, const char *const *prompts, const size_t *lens, size_t n, float *emb, rs_err *err) {
    rs_engine *e = ctx;
    rs_score *meta = calloc(n ? n : 1, sizeof *meta);
    if (!meta) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    rs_status st = rs_engine_embed(e, prompts, lens, n, emb, meta, err);
    for (size_t i = 0; st == RS_OK && i < n; i++)
        if (meta[i].status != RS_OK) st = rs_errf(err, meta[i].status, "battle prompt %zu: %s", i + 1, meta[i].error);
    free(meta);
    return st;
}

static rs_status open_head(rs_engine *e, const rs_kind_open_args *a, rs_err *err) {
    const char *file = a->manifest->battles ? a->manifest->battles : "battles.jsonl";
    char path[4200];
    rs_status st = rs_path_join(path, sizeof path, a->dir, file, err);
    if (st != RS_OK) return rs_errf(err, st, "%s/routescore.json: battles: %s", a->dir, err->msg);
    rs_sw *sw = NULL;
    if ((st = rs_sw_open(path, a->manifest->num_tiers ? a->manifest->num_tiers : 10, e->strong, e->weak, e->hidden, e->hidden ? sw_embed : NULL, e,
                         &sw, err)) != RS_OK)
        return st;
    e->state = sw;
    e->emb_dim = rs_sw_input_dim(sw);
    return RS_OK;
}

static rs_status swr_open(rs_engine *e, const rs_kind_open_args *a, rs_err *err) { return rs_kemb_open(e, a, open_head, err); }

static void swr_close(rs_engine *e) {
    rs_sw_close(e->state);
    e->state = NULL;
    rs_kenc_close(e);
}

static void swr_info(const rs_engine *e, rs_router_info *out) { rs_kemb_info(e, out, "SWRanking"); }

static rs_status swr_score_embeddings(rs_engine *e, const float *emb, size_t n, float threshold, rs_score *out,
                                      rs_err *err) {
    (void)err;
    float p[64];
    for (size_t c = 0; c < n; c += 64) {
        const size_t m = n - c < 64 ? n - c : 64;
        rs_err herr = {{0}};
        rs_status st = rs_sw_win_probs(e->state, emb + c * (size_t)e->emb_dim, m, p, &herr);
        rs_kemb_finish(p, m, threshold, st, &herr, out + c);
    }
    return RS_OK;
}

const rs_kind rs_kind_sw_ranking = {
    .name = "sw_ranking",
    .open = swr_open,
    .info = swr_info,
    .tokenize = rs_kenc_tokenize,
    .score_tokens = rs_kemb_score_tokens,
    .embed_tokens = rs_kenc_embed_tokens,
    .score_embeddings = swr_score_embeddings,
    .flops = rs_kenc_flops,
    .close = swr_close,
};
