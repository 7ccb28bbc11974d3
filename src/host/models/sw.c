/* sw.c — RouteLLM's sw_ranking router (see sw.h).
 *
 * The fits only depend on (column a, column b, label count k) per battle, so
 * battles are summed into groups of identical rows with their total weight
 * before Newton's method: a per-prompt fit costs O(battles) to weight and
 * group plus O(tiers^2 * groups) per Newton step. */
#include "sw.h"

#include <errno.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "jsonl.h"

#define SW_CHUNK 64            /* prompts per similarity GEMM */
#define SW_MAX_MODELS 1024

struct rs_sw {
    int dim, n_models, n_tiers;
    size_t n;               /* battles */
    char **names;           /* (n_models) */
    int *tier;              /* (n_models) model -> tier */
    int *ta, *tb;           /* (n) tiers of model_a, model_b */
    unsigned char *k;       /* (n) label count of the two duplicated rows: 2 a wins, 1 tie, 0 b wins */
    float *emb;             /* (n, dim) battle embeddings */
    double *inv_norm;       /* (n) 1 / ||emb_i|| */
    int strong_tier, weak_tier;
    float *sims;            /* (SW_CHUNK, n) scratch */
    double *group;          /* (n_tiers^2 * 3) scratch: summed weights per distinct row */
};

static const double LN10 = 2.302585092994045684;

/* Newton's method for RouteLLM's compute_elo_mle_with_tie on grouped rows:
 * maximise sum_g w_g [k log s(z) + (2-k) log(1-s(z))], z = x_g . beta, where
 * x_g = ln10 (e_a - e_b), or -ln10 e_a when a == b (numpy's second
 * assignment overwrites the first: RouteLLM's design matrix does this).
 * beta (p) starts at 0; a tiny damping keeps the steps in the row space, so
 * the result is the minimum-norm optimum like lbfgs's from 0. */
typedef struct grp {
    int a, b, k;
    double w;
} grp;

static double row_z(const grp *g, const double *beta) {
    return g->a != g->b ? LN10 * (beta[g->a] - beta[g->b]) : -LN10 * beta[g->a];
}

static double loglik(const grp *gs, size_t ng, const double *beta) {
    double L = 0;
    for (size_t i = 0; i < ng; i++) {
        double z = row_z(&gs[i], beta);
        /* log s(z) = -log1p(e^-z), log(1 - s(z)) = -log1p(e^z) */
        double lp = z > 0 ? -log1p(exp(-z)) : z - log1p(exp(z));
        double lq = z > 0 ? -z - log1p(exp(-z)) : -log1p(exp(z));
        L += gs[i].w * (gs[i].k * lp + (2 - gs[i].k) * lq);
    }
    return L;
}

static rs_status bt_fit(int p, const grp *gs, size_t ng, double *beta, rs_err *err) {
    double *H = calloc((size_t)p * (size_t)p, sizeof *H), *g = calloc((size_t)p, sizeof *g),
           *d = calloc((size_t)p, sizeof *d), *nb = calloc((size_t)p, sizeof *nb);
    if (!H || !g || !d || !nb) {
        free(H), free(g), free(d), free(nb);
        return rs_errf(err, RS_ERR_NOMEM, "no memory");
    }
    memset(beta, 0, (size_t)p * sizeof *beta);
    double L = loglik(gs, ng, beta);
    for (int it = 0; it < 100; it++) {
        memset(H, 0, (size_t)p * (size_t)p * sizeof *H);
        memset(g, 0, (size_t)p * sizeof *g);
        for (size_t i = 0; i < ng; i++) {
            const grp *r = &gs[i];
            double s = 1.0 / (1.0 + exp(-row_z(r, beta)));
            double gr = r->w * (r->k - 2 * s) * LN10, h = 2 * r->w * s * (1 - s) * LN10 * LN10;
            if (r->a != r->b) {
                g[r->a] += gr, g[r->b] -= gr;
                H[r->a * p + r->a] += h, H[r->b * p + r->b] += h;
                H[r->a * p + r->b] -= h, H[r->b * p + r->a] -= h;
            } else {
                g[r->a] -= gr;
                H[r->a * p + r->a] += h;
            }
        }
        double tr = 0;
        for (int i = 0; i < p; i++) tr += H[i * p + i];
        const double mu = 1e-12 * (tr / p) + 1e-300;
        for (int i = 0; i < p; i++) H[i * p + i] += mu;
        /* Cholesky H = L L^T in place (lower), then solve for d. */
        for (int j = 0; j < p; j++) {
            double s = H[j * p + j];
            for (int q = 0; q < j; q++) s -= H[j * p + q] * H[j * p + q];
            H[j * p + j] = s = sqrt(s > 0 ? s : 1e-300);
            for (int i = j + 1; i < p; i++) {
                double t = H[i * p + j];
                for (int q = 0; q < j; q++) t -= H[i * p + q] * H[j * p + q];
                H[i * p + j] = t / s;
            }
        }
        for (int i = 0; i < p; i++) {
            double t = g[i];
            for (int q = 0; q < i; q++) t -= H[i * p + q] * d[q];
            d[i] = t / H[i * p + i];
        }
        for (int i = p - 1; i >= 0; i--) {
            double t = d[i];
            for (int q = i + 1; q < p; q++) t -= H[q * p + i] * d[q];
            d[i] = t / H[i * p + i];
        }
        /* Step halving keeps every step an ascent. */
        double step = 1, nL = L, dmax = 0;
        for (int h = 0; h < 40; h++, step *= 0.5) {
            for (int i = 0; i < p; i++) nb[i] = beta[i] + step * d[i];
            nL = loglik(gs, ng, nb);
            if (nL >= L - 1e-12 * fabs(L)) break;
        }
        for (int i = 0; i < p; i++) {
            dmax = fmax(dmax, fabs(nb[i] - beta[i]));
            beta[i] = nb[i];
        }
        L = nL;
        if (dmax < 1e-11) break;
    }
    free(H), free(g), free(d), free(nb);
    return RS_OK;
}

/* RouteLLM's compute_tiers: ratings sorted best first, split into m
 * contiguous tiers minimising the summed (population) variance. Returns the
 * tier of each sorted position in tier_of (n). */
static rs_status compute_tiers(const double *r, int n, int m, int *tier_of, rs_err *err) {
    double *dp = calloc((size_t)n * (size_t)n * (size_t)m, sizeof *dp);
    int *split = calloc((size_t)n * (size_t)n * (size_t)m, sizeof *split);
    int *idx = malloc((size_t)m * sizeof *idx);
    if (!dp || !split || !idx) {
        free(dp), free(split), free(idx);
        return rs_errf(err, RS_ERR_NOMEM, "no memory");
    }
#define DP(i, j, t) dp[((size_t)(i) * (size_t)n + (size_t)(j)) * (size_t)m + (size_t)(t)]
#define SPLIT(i, j, t) split[((size_t)(i) * (size_t)n + (size_t)(j)) * (size_t)m + (size_t)(t)]
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double mean = 0, v = 0;
            for (int q = i; q <= j; q++) mean += r[q];
            mean /= (j - i + 1);
            for (int q = i; q <= j; q++) v += (r[q] - mean) * (r[q] - mean);
            DP(i, j, 0) = v / (j - i + 1);
        }
    for (int t = 1; t < m; t++)
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) {
                DP(i, j, t) = 1e9;
                for (int l = i; l < j; l++)
                    if (DP(i, j, t) > DP(i, l, t - 1) + DP(l + 1, j, 0)) {
                        SPLIT(i, j, t) = l;
                        DP(i, j, t) = DP(i, l, t - 1) + DP(l + 1, j, 0);
                    }
            }
    int cur = n, c = 0;
    for (int t = m - 1; t > 0; t--) {
        int s = SPLIT(0, cur - 1, t);
        idx[m - 1 - t] = s; /* collected last tier first, reversed below */
        cur = s + 1;
        c++;
    }
    /* split_idx = reversed(collected) + [n - 1] */
    for (int a = 0, b = c - 1; a < b; a++, b--) {
        int t = idx[a];
        idx[a] = idx[b];
        idx[b] = t;
    }
    idx[c] = n - 1;
    int from = 0;
    for (int t = 0; t <= c; t++) {
        for (int j = from; j <= idx[t]; j++) tier_of[j] = t;
        if (idx[t] + 1 > from) from = idx[t] + 1;
    }
#undef DP
#undef SPLIT
    free(dp), free(split), free(idx);
    return RS_OK;
}

static int find_model(rs_sw *s, const char *name, int add) {
    for (int i = 0; i < s->n_models; i++)
        if (!strcmp(s->names[i], name)) return i;
    if (!add || s->n_models == SW_MAX_MODELS) return -1;
    char *copy = strdup(name);
    if (!copy) return -1;
    s->names[s->n_models] = copy;
    return s->n_models++;
}

/* Sums the weights of identical rows. cols_a/cols_b give each battle's
 * column; w NULL means weight 1. */
static size_t make_groups(const rs_sw *s, const int *ca, const int *cb, int p, const double *w, double *acc,
                          grp *out) {
    memset(acc, 0, (size_t)p * (size_t)p * 3 * sizeof *acc);
    for (size_t i = 0; i < s->n; i++) acc[((size_t)ca[i] * (size_t)p + (size_t)cb[i]) * 3 + s->k[i]] += w ? w[i] : 1.0;
    size_t ng = 0;
    for (int a = 0; a < p; a++)
        for (int b = 0; b < p; b++)
            for (int k = 0; k < 3; k++) {
                double v = acc[((size_t)a * (size_t)p + (size_t)b) * 3 + (size_t)k];
                if (v > 0) out[ng++] = (grp){a, b, k, v};
            }
    return ng;
}

/* Lines of the battles file, which size the tables: a raw count of a plain
 * file, else one pass through the reader (gzip). */
static rs_status battle_lines(const char *path, size_t *n, rs_err *err) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return rs_errf(err, errno == ENOENT ? RS_ERR_NOT_FOUND : RS_ERR_IO, "%s: %s", path, strerror(errno));
    uint64_t count = 0;
    rs_err ignored = {{0}};
    if (rs_jsonl_count_lines(path, &count, &ignored) == RS_OK) {
        *n = (size_t)count;
        return RS_OK;
    }
    rs_jsonl *r = NULL;
    rs_status st = rs_jsonl_open(path, 0, &r, err);
    if (st != RS_OK) return st;
    const char *line = NULL;
    size_t len = 0;
    uint64_t no = 0;
    do st = rs_jsonl_next(r, &line, &len, &no, err);
    while (st == RS_ERR_TOO_LARGE || (st == RS_OK && line));
    rs_jsonl_close(r);
    *n = (size_t)no;
    return st;
}

static rs_status parse_battles(rs_sw *s, const char *path, int embed_dim, rs_sw_embed_fn embed, void *ctx, int **ma,
                               int **mb, rs_err *err) {
    size_t cap = 0;
    rs_status st = battle_lines(path, &cap, err);
    if (st != RS_OK) return st;
    cap += 1;
    rs_jsonl *reader = NULL;
    s->names = calloc(SW_MAX_MODELS, sizeof *s->names);
    *ma = malloc(cap * sizeof **ma);
    *mb = malloc(cap * sizeof **mb);
    s->k = malloc(cap);
    const char **prompts = calloc(cap, sizeof *prompts);
    size_t *plens = calloc(cap, sizeof *plens), *pidx = calloc(cap, sizeof *pidx), n_pending = 0;
    cJSON **keep = calloc(cap, sizeof *keep); /* parsed lines whose prompt text is still needed */
    if (!s->names || !*ma || !*mb || !s->k || !prompts || !plens || !pidx || !keep) {
        st = rs_errf(err, RS_ERR_NOMEM, "no memory for %zu battles", cap);
        goto done;
    }
    s->dim = embed_dim;
    size_t line_no = 0, ecap = 0;
    if ((st = rs_jsonl_open(path, 0, &reader, err)) != RS_OK) goto done;
    for (;;) {
        cJSON *j = NULL;
        uint64_t no = 0;
        int bad = 0;
        rs_err lerr = {{0}};
        st = rs_jsonl_next_json(reader, &j, &no, &bad, &lerr);
        line_no = (size_t)no;
        if (st != RS_OK) {
            st = bad ? rs_errf(err, RS_ERR_FORMAT, "%s:%zu: %s", path, line_no, lerr.msg) : rs_errf(err, st, "%s", lerr.msg);
            goto done;
        }
        if (!j) break; /* end of input */
        if (s->n == cap) {
            cJSON_Delete(j);
            st = rs_errf(err, RS_ERR_IO, "%s: changed while read", path);
            goto done;
        }
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "model_a"), *b = cJSON_GetObjectItemCaseSensitive(j, "model_b"),
                    *w = cJSON_GetObjectItemCaseSensitive(j, "winner"), *e = cJSON_GetObjectItemCaseSensitive(j, "embedding"),
                    *pr = cJSON_GetObjectItemCaseSensitive(j, "prompt");
        if (!cJSON_IsString(a) || !cJSON_IsString(b) || !cJSON_IsString(w) || (!cJSON_IsArray(e) && !cJSON_IsString(pr))) {
            cJSON_Delete(j);
            st = rs_errf(err, RS_ERR_FORMAT, "%s:%zu: needs string model_a, model_b, winner and an embedding array or a "
                         "prompt", path, line_no);
            goto done;
        }
        const char *wn = w->valuestring;
        int k = !strcmp(wn, "model_a") ? 2 : !strcmp(wn, "model_b") ? 0
                : (!strcmp(wn, "tie") || !strcmp(wn, "tie (bothbad)")) ? 1 : -1;
        const size_t i = s->n;
        int ia = find_model(s, a->valuestring, 1), ib = find_model(s, b->valuestring, 1);
        if (k < 0 || ia < 0 || ib < 0) {
            cJSON_Delete(j);
            st = rs_errf(err, RS_ERR_FORMAT, "%s:%zu: %s", path, line_no,
                         k < 0 ? "winner must be model_a, model_b, tie or tie (bothbad)" : "too many models");
            goto done;
        }
        (*ma)[i] = ia, (*mb)[i] = ib, s->k[i] = (unsigned char)k;
        if (cJSON_IsArray(e)) {
            int d = cJSON_GetArraySize(e);
            if (!s->dim) s->dim = d;
            if (d != s->dim || d < 1) {
                cJSON_Delete(j);
                st = rs_errf(err, RS_ERR_FORMAT, "%s:%zu: embedding has %d values, expected %d", path, line_no, d, s->dim);
                goto done;
            }
        }
        if (!s->emb || ecap < cap) {
            /* Size the embedding table once the width is known. */
            if (s->dim) {
                float *ne = calloc(cap * (size_t)s->dim, sizeof *ne);
                if (!ne) {
                    cJSON_Delete(j);
                    st = rs_errf(err, RS_ERR_NOMEM, "no memory for %zu x %d embeddings", cap, s->dim);
                    goto done;
                }
                s->emb = ne;
                ecap = cap;
            }
        }
        if (cJSON_IsArray(e)) {
            int d = 0;
            for (const cJSON *it = e->child; it; it = it->next, d++) {
                if (!cJSON_IsNumber(it)) {
                    cJSON_Delete(j);
                    st = rs_errf(err, RS_ERR_FORMAT, "%s:%zu: embedding value %d is not a number", path, line_no, d);
                    goto done;
                }
                s->emb[i * (size_t)s->dim + (size_t)d] = (float)it->valuedouble;
            }
            cJSON_Delete(j);
        } else {
            if (!embed) {
                cJSON_Delete(j);
                st = rs_errf(err, RS_ERR_INVALID_ARG, "%s:%zu: battle has a prompt but no embedding, and the router has "
                             "no encoder", path, line_no);
                goto done;
            }
            prompts[n_pending] = pr->valuestring;
            plens[n_pending] = strlen(pr->valuestring);
            pidx[n_pending] = i;
            keep[n_pending++] = j;
        }
        s->n++;
    }
    if (!s->n) {
        st = rs_errf(err, RS_ERR_FORMAT, "%s: no battles", path);
        goto done;
    }
    if (n_pending) {
        float *tmp = malloc(n_pending * (size_t)s->dim * sizeof *tmp);
        if (!tmp) {
            st = rs_errf(err, RS_ERR_NOMEM, "no memory");
            goto done;
        }
        st = embed(ctx, prompts, plens, n_pending, tmp, err);
        for (size_t q = 0; st == RS_OK && q < n_pending; q++)
            memcpy(s->emb + pidx[q] * (size_t)s->dim, tmp + q * (size_t)s->dim, (size_t)s->dim * sizeof *tmp);
        free(tmp);
    }
done:
    for (size_t q = 0; keep && q < n_pending; q++) cJSON_Delete(keep[q]);
    free(keep), free(prompts), free(plens), free(pidx);
    rs_jsonl_close(reader);
    return st;
}

rs_status rs_sw_open(const char *path, int num_tiers, const char *strong, const char *weak, int embed_dim,
                     rs_sw_embed_fn embed, void *ctx, rs_sw **out, rs_err *err) {
    *out = NULL;
    if (num_tiers < 1 || num_tiers > 64) return rs_errf(err, RS_ERR_INVALID_ARG, "num_tiers must be in [1, 64]");
    rs_sw *s = calloc(1, sizeof *s);
    if (!s) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    int *ma = NULL, *mb = NULL, *ord = NULL, *tier_sorted = NULL;
    double *beta = NULL, *acc = NULL;
    grp *gs = NULL;
    rs_status st = parse_battles(s, path, embed_dim, embed, ctx, &ma, &mb, err);
    if (st != RS_OK) goto done;
    const int M = s->n_models;
    int is = find_model(s, strong, 0), iw = find_model(s, weak, 0);
    if (is < 0 || iw < 0) {
        st = rs_errf(err, RS_ERR_INVALID_ARG, "%s: model '%s' fights no battle", path, is < 0 ? strong : weak);
        goto done;
    }
    s->inv_norm = malloc(s->n * sizeof *s->inv_norm);
    if (!s->inv_norm) {
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
        goto done;
    }
    for (size_t i = 0; i < s->n; i++) {
        double nn = 0;
        for (int d = 0; d < s->dim; d++) nn += (double)s->emb[i * (size_t)s->dim + (size_t)d] * s->emb[i * (size_t)s->dim + (size_t)d];
        if (!(nn > 0) || !isfinite(nn)) {
            st = rs_errf(err, RS_ERR_FORMAT, "%s: battle %zu has a zero or non-finite embedding", path, i + 1);
            goto done;
        }
        s->inv_norm[i] = 1.0 / sqrt(nn);
    }
    /* 1. Unweighted fit over the real models, then tiers. */
    const int P = M > num_tiers ? M : num_tiers;
    beta = calloc((size_t)P, sizeof *beta);
    acc = calloc((size_t)P * (size_t)P * 3, sizeof *acc);
    gs = malloc((size_t)P * (size_t)P * 3 * sizeof *gs);
    ord = malloc((size_t)M * sizeof *ord);
    tier_sorted = malloc((size_t)M * sizeof *tier_sorted);
    s->tier = malloc((size_t)M * sizeof *s->tier);
    s->ta = malloc(s->n * sizeof *s->ta);
    s->tb = malloc(s->n * sizeof *s->tb);
    s->sims = malloc((size_t)SW_CHUNK * s->n * sizeof *s->sims);
    s->group = malloc((size_t)num_tiers * (size_t)num_tiers * 3 * (sizeof(double) + sizeof(grp)));
    if (!beta || !acc || !gs || !ord || !tier_sorted || !s->tier || !s->ta || !s->tb || !s->sims || !s->group) {
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
        goto done;
    }
    size_t ng = make_groups(s, ma, mb, M, NULL, acc, gs);
    if ((st = bt_fit(M, gs, ng, beta, err)) != RS_OK) goto done;
    /* sort_values(ascending=False): best first (insertion sort, stable). */
    for (int i = 0; i < M; i++) {
        int j = i;
        for (; j > 0 && beta[ord[j - 1]] < beta[i]; j--) ord[j] = ord[j - 1];
        ord[j] = i;
    }
    double *sorted = acc; /* reuse: M <= P*P*3 */
    for (int i = 0; i < M; i++) sorted[i] = 400 * beta[ord[i]] + 1000;
    if ((st = compute_tiers(sorted, M, num_tiers, tier_sorted, err)) != RS_OK) goto done;
    for (int i = 0; i < M; i++) s->tier[ord[i]] = tier_sorted[i];
    for (size_t i = 0; i < s->n; i++) s->ta[i] = s->tier[ma[i]], s->tb[i] = s->tier[mb[i]];
    s->n_tiers = num_tiers;
    s->strong_tier = s->tier[is];
    s->weak_tier = s->tier[iw];
done:
    free(ma), free(mb), free(ord), free(tier_sorted), free(beta), free(acc), free(gs);
    if (st != RS_OK) {
        rs_sw_close(s);
        return st;
    }
    *out = s;
    return RS_OK;
}

void rs_sw_close(rs_sw *s) {
    if (!s) return;
    for (int i = 0; s->names && i < s->n_models; i++) free(s->names[i]);
    free(s->names), free(s->tier), free(s->ta), free(s->tb), free(s->k), free(s->emb), free(s->inv_norm);
    free(s->sims), free(s->group);
    free(s);
}

int rs_sw_input_dim(const rs_sw *s) { return s->dim; }
size_t rs_sw_num_battles(const rs_sw *s) { return s->n; }

rs_status rs_sw_win_probs(rs_sw *s, const float *emb, size_t n, float *win_prob, rs_err *err) {
    const int T = s->n_tiers;
    double *acc = s->group;
    grp *gs = (grp *)(acc + (size_t)T * (size_t)T * 3);
    double beta[64];
    for (size_t c = 0; c < n; c += SW_CHUNK) {
        const size_t m = n - c < SW_CHUNK ? n - c : SW_CHUNK;
        /* sims (m, battles) = Q (m, dim) . E^T */
        if (dnnl_sgemm('N', 'T', (dnnl_dim_t)m, (dnnl_dim_t)s->n, s->dim, 1.f, emb + c * (size_t)s->dim, s->dim, s->emb,
                       s->dim, 0.f, s->sims, (dnnl_dim_t)s->n) != dnnl_success)
            return rs_errf(err, RS_ERR_BACKEND, "dnnl_sgemm failed (similarities)");
        for (size_t q = 0; q < m; q++) {
            const float *e = emb + (c + q) * (size_t)s->dim;
            double nq = 0;
            for (int d = 0; d < s->dim; d++) nq += (double)e[d] * e[d];
            if (!(nq > 0) || !isfinite(nq)) {
                win_prob[c + q] = NAN;
                continue;
            }
            nq = 1.0 / sqrt(nq);
            float *S = s->sims + q * s->n;
            double mx = -INFINITY;
            for (size_t i = 0; i < s->n; i++) mx = fmax(mx, (double)S[i] * s->inv_norm[i] * nq);
            /* weights 10 * 10^(S_i / max S), summed per distinct design row */
            memset(acc, 0, (size_t)T * (size_t)T * 3 * sizeof *acc);
            for (size_t i = 0; i < s->n; i++)
                acc[((size_t)s->ta[i] * (size_t)T + (size_t)s->tb[i]) * 3 + s->k[i]] +=
                    10.0 * pow(10.0, (double)S[i] * s->inv_norm[i] * nq / mx);
            size_t ng = 0;
            for (size_t g = 0; g < (size_t)T * (size_t)T * 3; g++)
                if (acc[g] > 0) gs[ng++] = (grp){(int)(g / 3 / (size_t)T), (int)(g / 3 % (size_t)T), (int)(g % 3), acc[g]};
            rs_status st = bt_fit(T, gs, ng, beta, err);
            if (st != RS_OK) return st;
            /* 1 - 1/(1 + 10^((E_s - E_w)/400)) with E = 400 beta + const */
            double diff = beta[s->strong_tier] - beta[s->weak_tier];
            win_prob[c + q] = (float)(1.0 - 1.0 / (1.0 + pow(10.0, diff)));
        }
    }
    return RS_OK;
}
