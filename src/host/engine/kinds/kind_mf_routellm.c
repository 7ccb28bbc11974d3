/* kind_mf_routellm.c — the `mf_routellm` router: RouteLLM's matrix
 * factorisation checkpoint (mf.h) on a prompt embedding. Manifest keys:
 * "checkpoint" (default model.safetensors), "models" (names in id order;
 * default RouteLLM's MODEL_IDS table), optionally "encoder". */
#include "file.h"
#include "kind.h"
#include "mf.h"

static rs_status open_head(rs_engine *e, const rs_kind_open_args *a, rs_err *err) {
    const char *file = a->manifest->checkpoint ? a->manifest->checkpoint : "model.safetensors";
    char path[4200];
    rs_status st = rs_path_join(path, sizeof path, a->dir, file, err);
    if (st != RS_OK) return rs_errf(err, st, "%s/routescore.json: checkpoint: %s", a->dir, err->msg);
    rs_mf *mf = NULL;
    if ((st = rs_mf_open(path, a->manifest->models, e->strong, e->weak, &mf,
                         err)) != RS_OK)
        return st;
    e->state = mf;
    e->emb_dim = rs_mf_input_dim(mf);
    return RS_OK;
}

static rs_status mfr_open(rs_engine *e, const rs_kind_open_args *a, rs_err *err) { return rs_kemb_open(e, a, open_head, err); }

static void mfr_close(rs_engine *e) {
    rs_mf_close(e->state);
    e->state = NULL;
    rs_kenc_close(e);
}

static void mfr_info(const rs_engine *e, rs_router_info *out) { rs_kemb_info(e, out, "MFModel"); }

static rs_status mfr_score_embeddings(rs_engine *e, const float *emb, size_t n, float threshold, rs_score *out,
                                      rs_err *err) {
    (void)err;
    float p[64];
    for (size_t c = 0; c < n; c += 64) {
        const size_t m = n - c < 64 ? n - c : 64;
        for (size_t i = 0; i < m; i++) p[i] = rs_mf_win_prob(e->state, emb + (c + i) * (size_t)e->emb_dim);
        rs_kemb_finish(p, m, threshold, RS_OK, NULL, out + c);
    }
    return RS_OK;
}

const rs_kind rs_kind_mf_routellm = {
    .name = "mf_routellm",
    .open = mfr_open,
    .info = mfr_info,
    .tokenize = rs_kenc_tokenize,
    .score_tokens = rs_kemb_score_tokens,
    .embed_tokens = rs_kenc_embed_tokens,
    .score_embeddings = mfr_score_embeddings,
    .flops = rs_kenc_flops,
    .close = mfr_close,
};
