/* engine.c — a router behind engine.h: the manifest, tokenize-and-pack and
 * dispatch to the router's kind (kind.h).
 *
 * A router directory is either a plain Hugging Face model directory (a
 * LlamaForCausalLM is the `causal_llm` router; a *ForSequenceClassification
 * checkpoint the `bert` router; a bare encoder only embeds) or a directory
 * with a manifest, routescore.json (docs/ARCHITECTURE.md, "Router
 * directories"), parsed once (manifest.h). This file applies the keys every
 * kind shares ("kind", "encoder", "name", "strong_model", "weak_model",
 * "threshold", "max_tokens", "precision") and checks the pins; each kind's
 * file takes its own fields of the rs_manifest (kind_*.c).
 *
 * DESIGN: every prompt path is one loop. score() tokenizes a group of
 * prompts in parallel (the kind's tokenizer is immutable, so OpenMP threads
 * share it), packs the ids back to back until the kind's budget for one
 * forward is full (e->batch_tokens ids, e->max_seqs sequences), hands the
 * pack to the kind's score_tokens or embed_tokens, and maps the results back
 * to prompt order. score_tokens / embed_tokens enter the same loop with the
 * caller's ids. All buffers are allocated at open. */
#include "engine.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"
#include "kind.h"
#include "manifest.h"
#include "pins.h"

#define RS_STAGE_SLOTS 64 /* prompts tokenized in parallel at a time */

static const rs_kind *const KINDS[] = {&rs_kind_bert,        &rs_kind_mf,          &rs_kind_embed,
                                       &rs_kind_causal_llm,  &rs_kind_mf_routellm, &rs_kind_sw_ranking};
#define N_KINDS (sizeof KINDS / sizeof *KINDS)

void rs_engine_opts_default(rs_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cpu";
}

/* The keys every kind shares; the kind from "kind" (default bert). */
static rs_status apply_manifest(rs_engine *e, const rs_manifest *m, rs_err *err) {
    size_t k;
    for (k = 0; k < N_KINDS && strcmp(m->kind, KINDS[k]->name); k++) {}
    if (k == N_KINDS)
        return rs_errf(err, RS_ERR_INVALID_ARG,
                       "%s: unknown kind '%.64s' (bert, mf, embed, causal_llm, mf_routellm, sw_ranking)", m->path,
                       m->kind);
    e->kind = KINDS[k];
    if (m->name) snprintf(e->name, sizeof e->name, "%s", m->name);
    if (m->strong_model) snprintf(e->strong, sizeof e->strong, "%s", m->strong_model);
    if (m->weak_model) snprintf(e->weak, sizeof e->weak, "%s", m->weak_model);
    if (m->has_threshold) e->threshold = m->threshold;
    if (m->precision && rs_precision_parse(m->precision, &e->precision))
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: precision '%s' unknown", m->path, m->precision);
    return RS_OK;
}

rs_status rs_kind_backend(rs_engine *e, const rs_kind_open_args *a, int max_tokens, size_t batch_tokens,
                          int cpu_max_len, rs_err *err) {
#ifdef RS_HAVE_CUDA
    if (a->use_cuda) return rs_backend_cuda_create(a->opts->device, max_tokens, batch_tokens, &e->backend, err);
#endif
    (void)max_tokens;
    (void)batch_tokens;
    return rs_backend_cpu_create_prec(a->opts->n_threads, cpu_max_len, e->precision, &e->backend, err);
}

/* The prompt loop's buffers, for the limits the kind's open set. A kind
 * whose open already needs the loop (sw_ranking embeds its battles) calls
 * this itself; later calls do nothing. */
rs_status rs_kind_stage(rs_engine *e, rs_err *err) {
    if (e->pack || !e->max_tokens) return RS_OK; /* done, or a router without text input */
    e->stage = malloc((size_t)RS_STAGE_SLOTS * (size_t)e->max_tokens * sizeof *e->stage);
    e->stage_n = calloc(RS_STAGE_SLOTS, sizeof *e->stage_n);
    e->stage_meta = calloc(RS_STAGE_SLOTS, sizeof *e->stage_meta);
    e->pack = malloc((size_t)e->batch_tokens * sizeof *e->pack);
    e->offsets = malloc(((size_t)e->max_seqs + 1) * sizeof *e->offsets);
    e->owner = malloc((size_t)e->max_seqs * sizeof *e->owner);
    e->seq_out = malloc((size_t)e->max_seqs * sizeof *e->seq_out);
    e->seq_emb = malloc((size_t)e->max_seqs * (size_t)(e->hidden ? e->hidden : 1) * sizeof *e->seq_emb);
    if (!e->stage || !e->stage_n || !e->stage_meta || !e->pack || !e->offsets || !e->owner || !e->seq_out ||
        !e->seq_emb)
        return rs_errf(err, RS_ERR_NOMEM, "no memory for staging buffers");
    return RS_OK;
}

/* "cpu", "cuda" or "auto" (cuda when a GPU is visible): per engine, never
 * per op. */
static rs_status choose_backend(const rs_engine_opts *o, int *use_cuda, rs_err *err) {
    const char *bname = o->backend ? o->backend : "cpu";
    *use_cuda = 0;
    if (!strcmp(bname, "cuda"))
        *use_cuda = 1;
    else if (!strcmp(bname, "auto")) {
#ifdef RS_HAVE_CUDA
        const int n_dev = rs_cuda_device_count(err);
        /* A GPU with an unusable driver is an error, not a reason to run
         * silently (and far slower) on the CPU. */
        if (n_dev < 0)
            return rs_errf(err, RS_ERR_BACKEND, "backend 'auto': %s (choose --backend cpu to run without it)",
                           err->msg);
        *use_cuda = n_dev > 0;
#endif
    } else if (strcmp(bname, "cpu"))
        return rs_errf(err, RS_ERR_INVALID_ARG, "unknown backend '%s' (cpu, cuda, auto)", bname);
#ifndef RS_HAVE_CUDA
    if (*use_cuda) return rs_errf(err, RS_ERR_UNSUPPORTED, "backend 'cuda' is not built into this binary (cpu is)");
#endif
    if (o->device < 0) return rs_errf(err, RS_ERR_INVALID_ARG, "negative device index %d", o->device);
    if (o->max_batch_tokens < 0 || o->max_tokens < 0 || o->n_threads < 0)
        return rs_errf(err, RS_ERR_INVALID_ARG, "negative engine option");
    return RS_OK;
}

/* *is_llama: dir/config.json names a Llama causal LM; 0 without one. A
 * config that cannot be read is an error, not "no Llama". */
static rs_status is_llama_dir(const char *dir, int *is_llama, rs_err *err) {
    *is_llama = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!rs_file_exists(path)) return RS_OK;
    cJSON *j = NULL;
    rs_status st = rs_file_read_json(path, &j, err);
    if (st != RS_OK) return st;
    *is_llama = rs_kenc_is_llama(j);
    cJSON_Delete(j);
    return RS_OK;
}

rs_status rs_engine_open(const char *dir, const rs_engine_opts *opts_in, rs_engine **out, rs_err *err) {
    *out = NULL;
    rs_engine_opts opts;
    if (opts_in)
        opts = *opts_in;
    else
        rs_engine_opts_default(&opts);
    int use_cuda = 0;
    rs_status st = choose_backend(&opts, &use_cuda, err);
    if (st != RS_OK) return st;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return rs_errf(err, RS_ERR_NOT_FOUND, "%s: no such router directory", dir);

    rs_engine *e = calloc(1, sizeof *e);
    if (!e) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    const char *base = strrchr(dir, '/');
    snprintf(e->name, sizeof e->name, "%s", base && base[1] ? base + 1 : dir);
    snprintf(e->strong, sizeof e->strong, "strong");
    snprintf(e->weak, sizeof e->weak, "weak");
    e->threshold = 0.5f;

    rs_manifest m;
    int has_manifest = 0;
    /* Pinned files first: nothing of a changed or corrupt router is read. */
    if ((st = rs_manifest_open(dir, &m, &has_manifest, err)) != RS_OK) goto fail_open;
    if (has_manifest && ((st = rs_pins_check(dir, &m, err)) != RS_OK || (st = apply_manifest(e, &m, err)) != RS_OK))
        goto fail;
    if (opts.precision && rs_precision_parse(opts.precision, &e->precision)) {
        st = rs_errf(err, RS_ERR_INVALID_ARG, "unknown precision '%s' (fp32, bf16, bf16-emulated)", opts.precision);
        goto fail;
    }
    const char *enc_dir = m.encoder ? m.encoder_dir : dir;
    if (!has_manifest) {
        /* A plain Hugging Face directory: a Llama is the causal router,
         * anything else a BERT-family model (bert, or embed without a
         * classification head: the bert kind decides). */
        int llama = 0;
        if ((st = is_llama_dir(enc_dir, &llama, err)) != RS_OK) goto fail;
        e->kind = llama ? &rs_kind_causal_llm : &rs_kind_bert;
    }
    rs_kind_open_args a = {.dir = dir, .manifest = &m, .has_manifest = has_manifest, .enc_dir = enc_dir,
                           .opts = &opts, .use_cuda = use_cuda,
                           .max_tokens = opts.max_tokens ? opts.max_tokens : m.max_tokens};
    if ((st = e->kind->open(e, &a, err)) != RS_OK || (st = rs_kind_stage(e, err)) != RS_OK) goto fail;
    rs_manifest_close(&m);
    *out = e;
    return RS_OK;
fail:
    rs_manifest_close(&m);
fail_open:
    rs_engine_close(e);
    return st;
}

void rs_engine_close(rs_engine *e) {
    if (!e) return;
    if (e->kind && e->kind->close) e->kind->close(e);
    if (e->backend) e->backend->ops->destroy(e->backend);
    free(e->stage);
    free(e->stage_n);
    free(e->stage_meta);
    free(e->pack);
    free(e->offsets);
    free(e->owner);
    free(e->seq_out);
    free(e->seq_emb);
    free(e);
}

void rs_engine_info(const rs_engine *e, rs_router_info *out) {
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->kind = e->kind->name;
    out->architecture = e->arch;
    out->strong_model = e->strong;
    out->weak_model = e->weak;
    out->threshold = e->threshold;
    out->max_tokens = e->max_tokens;
    out->embed_dim = e->hidden;
    out->vocab_size = e->vocab;
    out->client_embed_dim = e->kind->score_embeddings ? e->emb_dim : 0;
    if (e->kind->info) e->kind->info(e, out);
}

rs_status rs_engine_tokenize(const rs_engine *e, const char *prompt, size_t len, int32_t *ids, size_t cap,
                             size_t *n_ids, int *truncated, rs_err *err) {
    *n_ids = 0;
    *truncated = 0;
    if (!e->kind->tokenize)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "router '%s' (%s) takes no text", e->name, e->kind->name);
    return e->kind->tokenize(e, prompt, len, ids, cap, n_ids, truncated, err);
}

/* What the loop's packed batches are for. */
typedef struct sink {
    int embed;        /* 0: score into scores; 1: embed into emb */
    float threshold;
    rs_score *scores; /* score: per prompt (tokens, truncated, status preset) */
    float *emb;       /* embed: (n, hidden) */
} sink;

/* Runs the packed batch through the kind and hands each sequence's result
 * to its prompt. */
static rs_status flush(rs_engine *e, const sink *k, rs_err *err) {
    const int n = e->n_seq;
    e->n_seq = 0;
    if (!n) return RS_OK;
    if (k->embed) {
        const size_t H = (size_t)e->hidden;
        rs_status st = e->kind->embed_tokens(e, e->pack, e->offsets, n, e->seq_emb, err);
        if (st != RS_OK) return st;
        for (int s = 0; s < n; s++) memcpy(k->emb + e->owner[s] * H, e->seq_emb + (size_t)s * H, H * sizeof *k->emb);
        return RS_OK;
    }
    for (int s = 0; s < n; s++) {
        memset(&e->seq_out[s], 0, sizeof e->seq_out[s]);
        e->seq_out[s].tokens = e->offsets[s + 1] - e->offsets[s];
    }
    rs_status st = e->kind->score_tokens(e, e->pack, e->offsets, n, k->threshold, e->seq_out, err);
    if (st != RS_OK) return st;
    for (int s = 0; s < n; s++) {
        rs_score *dst = &k->scores[e->owner[s]];
        const int truncated = dst->truncated;
        *dst = e->seq_out[s];
        dst->truncated = truncated;
    }
    return RS_OK;
}

/* Appends one tokenized sequence to the pack, running the batch first if it
 * would overflow the kind's budget. */
static rs_status append(rs_engine *e, const int32_t *ids, size_t n, size_t owner, const sink *k, rs_err *err) {
    if (e->n_seq == e->max_seqs || (size_t)e->offsets[e->n_seq] + n > (size_t)e->batch_tokens) {
        rs_status st = flush(e, k, err);
        if (st != RS_OK) return st;
        e->offsets[0] = 0;
    }
    memcpy(e->pack + e->offsets[e->n_seq], ids, n * sizeof *ids);
    e->owner[e->n_seq] = owner;
    e->offsets[e->n_seq + 1] = e->offsets[e->n_seq] + (int32_t)n;
    e->n_seq++;
    return RS_OK;
}

static rs_status run_prompts(rs_engine *e, const char *const *prompts, const size_t *lens, size_t n, const sink *k,
                             rs_score *meta, rs_err *err) {
    e->n_seq = 0;
    e->offsets[0] = 0;
    for (size_t g = 0; g < n; g += RS_STAGE_SLOTS) {
        const int m = (int)(n - g < RS_STAGE_SLOTS ? n - g : RS_STAGE_SLOTS);
        /* Tokenize the group in parallel; the tokenizer is shared read-only. */
#pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < m; i++) {
            rs_score *s = &e->stage_meta[i];
            memset(s, 0, sizeof *s);
            rs_err terr = {{0}};
            int trunc = 0;
            s->status = prompts[g + i] ? rs_engine_tokenize(e, prompts[g + i], lens[g + i],
                                                             e->stage + (size_t)i * (size_t)e->max_tokens,
                                                             (size_t)e->max_tokens, &e->stage_n[i], &trunc, &terr)
                                       : rs_errf(&terr, RS_ERR_INVALID_ARG, "missing prompt");
            s->truncated = trunc;
            s->tokens = (int)e->stage_n[i];
            if (s->status != RS_OK) snprintf(s->error, sizeof s->error, "%.*s", (int)sizeof s->error - 1, terr.msg);
        }
        for (int i = 0; i < m; i++) {
            if (meta) meta[g + i] = e->stage_meta[i];
            if (e->stage_meta[i].status != RS_OK) continue;
            rs_status st = append(e, e->stage + (size_t)i * (size_t)e->max_tokens, e->stage_n[i], g + i, k, err);
            if (st != RS_OK) return st;
        }
    }
    return flush(e, k, err);
}

static rs_status check_threshold(const rs_engine *e, float *threshold, rs_err *err) {
    if (isnan(*threshold)) *threshold = e->threshold;
    if (!(*threshold >= 0.f && *threshold <= 1.f))
        return rs_errf(err, RS_ERR_INVALID_ARG, "threshold %g outside [0, 1]", (double)*threshold);
    if (!e->kind->score_tokens)
        return rs_errf(err, RS_ERR_INVALID_ARG, "router '%s' is a bare encoder (kind %s): it embeds but has no "
                       "scoring head; train one with `routescore train`", e->name, e->kind->name);
    return RS_OK;
}

/* Text and token ids need a model that reads them. */
static rs_status need_text(const rs_engine *e, int embed, rs_err *err) {
    if (embed && !e->kind->embed_tokens)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "router '%s' (%s) does not embed", e->name, e->kind->name);
    if (!e->max_tokens)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "router '%s' (%s) has no encoder: it scores client embeddings only",
                       e->name, e->kind->name);
    return RS_OK;
}

rs_status rs_engine_score(rs_engine *e, const char *const *prompts, const size_t *lens, size_t n, float threshold,
                          rs_score *out, rs_err *err) {
    rs_status st = check_threshold(e, &threshold, err);
    if (st != RS_OK || (st = need_text(e, 0, err)) != RS_OK) return st;
    sink k = {0, threshold, out, NULL};
    return run_prompts(e, prompts, lens, n, &k, out, err);
}

rs_status rs_engine_embed(rs_engine *e, const char *const *prompts, const size_t *lens, size_t n, float *emb,
                          rs_score *meta, rs_err *err) {
    rs_status st = need_text(e, 1, err);
    if (st != RS_OK) return st;
    memset(emb, 0, n * (size_t)e->hidden * sizeof *emb);
    sink k = {1, 0.f, NULL, emb};
    return run_prompts(e, prompts, lens, n, &k, meta, err);
}

static rs_status run_tokens(rs_engine *e, const int32_t *ids, const size_t *offsets, size_t n, const sink *k,
                            rs_err *err) {
    e->n_seq = 0;
    e->offsets[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (offsets[i + 1] <= offsets[i] || offsets[i + 1] - offsets[i] > (size_t)e->max_tokens)
            return rs_errf(err, RS_ERR_INVALID_ARG, "sequence %zu has %zu tokens (1 to %d allowed)", i,
                           offsets[i + 1] > offsets[i] ? offsets[i + 1] - offsets[i] : 0, e->max_tokens);
        for (size_t t = offsets[i]; t < offsets[i + 1]; t++)
            if (ids[t] < 0 || ids[t] >= e->vocab)
                return rs_errf(err, RS_ERR_INVALID_ARG, "sequence %zu: token id %d outside the vocabulary (%d)", i,
                               ids[t], e->vocab);
        if (k->scores) memset(&k->scores[i], 0, sizeof k->scores[i]);
        rs_status st = append(e, ids + offsets[i], offsets[i + 1] - offsets[i], i, k, err);
        if (st != RS_OK) return st;
    }
    return flush(e, k, err);
}

rs_status rs_engine_score_tokens(rs_engine *e, const int32_t *ids, const size_t *offsets, size_t n, float threshold,
                                 rs_score *out, rs_err *err) {
    rs_status st = check_threshold(e, &threshold, err);
    if (st != RS_OK || (st = need_text(e, 0, err)) != RS_OK) return st;
    sink k = {0, threshold, out, NULL};
    return run_tokens(e, ids, offsets, n, &k, err);
}

rs_status rs_engine_embed_tokens(rs_engine *e, const int32_t *ids, const size_t *offsets, size_t n, float *emb,
                                 rs_err *err) {
    rs_status st = need_text(e, 1, err);
    if (st != RS_OK) return st;
    sink k = {1, 0.f, NULL, emb};
    return run_tokens(e, ids, offsets, n, &k, err);
}

int rs_engine_lost(const rs_engine *e) { return e->backend ? e->backend->ops->lost(e->backend) : 0; }

const char *rs_engine_backend(const rs_engine *e) { return e->backend ? e->backend->ops->name : "cpu"; }

const char *rs_engine_precision(const rs_engine *e) {
    return e->backend && strcmp(e->backend->ops->name, "cpu") ? "bf16" : rs_precision_name(e->precision);
}

double rs_engine_flops(const rs_engine *e, const size_t *offsets, size_t n_seq) {
    return e->kind->flops ? e->kind->flops(e, offsets, n_seq) : 0;
}

rs_status rs_engine_score_embeddings(rs_engine *e, const float *emb, size_t n, size_t dim, float threshold, rs_score *out,
                                     rs_err *err) {
    if (isnan(threshold)) threshold = e->threshold;
    if (!(threshold >= 0.f && threshold <= 1.f))
        return rs_errf(err, RS_ERR_INVALID_ARG, "threshold %g outside [0, 1]", (double)threshold);
    if (!e->kind->score_embeddings)
        return rs_errf(err, RS_ERR_UNSUPPORTED, "router '%s' (%s) does not score embeddings (mf_routellm and "
                       "sw_ranking do)", e->name, e->kind->name);
    if (dim != (size_t)e->emb_dim)
        return rs_errf(err, RS_ERR_INVALID_ARG, "embeddings have %zu values; router '%s' takes %d", dim, e->name, e->emb_dim);
    memset(out, 0, n * sizeof *out);
    for (size_t i = 0; i < n; i++)
        for (size_t d = 0; d < dim; d++)
            if (!isfinite(emb[i * dim + d])) {
                out[i].status = RS_ERR_INVALID_ARG;
                snprintf(out[i].error, sizeof out[i].error, "embedding value %zu is not finite", d);
                break;
            }
    /* Score all (non-finite rows give NaN or garbage), then keep the
     * per-prompt errors found above. */
    rs_score *tmp = calloc(n ? n : 1, sizeof *tmp);
    if (!tmp) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    rs_status st = e->kind->score_embeddings(e, emb, n, threshold, tmp, err);
    for (size_t i = 0; st == RS_OK && i < n; i++)
        if (out[i].status == RS_OK) out[i] = tmp[i];
    free(tmp);
    return st;
}
