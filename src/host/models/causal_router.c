/* causal_router.c — RouteLLM's causal_llm scorer, batched (causal_router.h).
 *
 * DESIGN: the system part of the prompt is the same for every request, so
 * its KV is computed once at open (rs_llama_set_prefix). A score call takes
 * prompts in groups of up to max_slots (and batch_tokens tokens): one
 * prefill forward packs the group's own tokens, each prompt in its own KV
 * slot, and returns logits only at each prompt's last token; then up to
 * max_new_tokens - 1 decode forwards run one token per still-undecided
 * prompt. A prompt is decided at its first generated id >= orig_vocab (the
 * rating), at an end-of-sequence id, or after max_new_tokens ids. Greedy
 * decoding is per prompt, so batching changes nothing in the result. */
#include "causal_router.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "manifest.h"
#include "llama.h"
#include "llama_tp.h"
#include "model_files.h"
#include "tokenizer.h"

struct rs_causal {
    rs_model_files *files;
    rs_tokenizer *tok;
    rs_llama_tp *model;                     /* tensor_parallel ranks (1: a plain rs_llama) */
    rs_backend *ranks_b[RS_LLAMA_TP_MAX];   /* the backends of ranks 1.., created here */
    int gpus[RS_LLAMA_TP_MAX];              /* each rank's GPU (-1: CPU ranks) */
    const rs_llama_config *cfg;
    char *classifier;        /* the classifier template, unstripped */
    int orig_vocab;          /* ids >= this are rating tokens */
    int max_new_tokens;      /* RouteLLM: 6 */
    int max_tokens;          /* per prompt */
    int batch_tokens, max_slots;
    /* Staging for one group, sized at open. */
    int32_t *ids, *slot, *pos, *rows; /* (batch_tokens) */
    float *logits;                    /* (max_slots, vocab) */
};

/* Python's str.strip() for the whitespace these files can hold. */
static void strip(const char **s, size_t *n) {
    while (*n && strchr(" \t\n\r\v\f\x1c\x1d\x1e\x1f", (*s)[0]) && (*s)[0]) (*s)++, (*n)--;
    while (*n && strchr(" \t\n\r\v\f\x1c\x1d\x1e\x1f", (*s)[*n - 1]) && (*s)[*n - 1]) (*n)--;
}

static const char SYS_HEAD[] = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n";
static const char USER_HEAD[] = "<|start_header_id|>user<|end_header_id|>\n\n";
static const char EOT[] = "<|eot_id|>";

static rs_status read_prompt_file(const char *router_dir, const char *file, char **out, rs_err *err) {
    char path[4200];
    rs_status st = rs_path_join(path, sizeof path, router_dir, file, err);
    return st != RS_OK ? st : rs_file_read(path, 1 << 20, RS_FILE_TEXT, out, NULL, err);
}

/* Tokenizer: manifest "tokenizer", else tokenizer.json, else a tiktoken
 * tokenizer.model in the model dir; then the rating tokens. */
static rs_status load_tokenizer(rs_causal *c, const char *router_dir, const char *model_dir, const rs_manifest *m,
                                rs_err *err) {
    char path[4200] = "";
    if (m->tokenizer) {
        rs_status st = rs_path_join(path, sizeof path, router_dir, m->tokenizer, err);
        if (st != RS_OK) return rs_errf(err, st, "%s/routescore.json: tokenizer: %s", router_dir, err->msg);
    } else {
        snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
        if (!rs_file_exists(path)) snprintf(path, sizeof path, "%s/tokenizer.model", model_dir);
    }
    rs_status st = rs_tokenizer_load(path, &c->tok, err);
    if (st != RS_OK) return st;
    rs_tokenizer_set_parse_special(c->tok, m->parse_special);
    /* RouteLLM: orig_vocab_size = len(tokenizer) - 5, i.e. the id of [[1]]. */
    int32_t first = rs_tokenizer_token_id(c->tok, "[[1]]");
    c->orig_vocab = m->orig_vocab_size ? m->orig_vocab_size : first >= 0 ? first : (int)rs_tokenizer_vocab_size(c->tok);
    for (int i = 0; i < RS_CAUSAL_RATINGS; i++) {
        char t[8];
        snprintf(t, sizeof t, "[[%d]]", i + 1);
        int32_t id = rs_tokenizer_token_id(c->tok, t);
        if (id < 0 && (st = rs_tokenizer_add_special(c->tok, t, c->orig_vocab + i, err)) != RS_OK) return st;
        if (id >= 0 && id != c->orig_vocab + i)
            return rs_errf(err, RS_ERR_FORMAT, "%s: rating token %s has id %d, expected %d", path, t, id,
                           c->orig_vocab + i);
    }
    return RS_OK;
}

/* The backends of tensor-parallel ranks 1..n-1, like rank 0's b. */
static rs_status rank_backends(rs_causal *c, rs_backend *b, int device, int n, int max_tokens, int batch_tokens,
                               rs_err *err) {
    const int cuda = !strcmp(b->ops->name, "cuda");
    for (int r = 0; r < n; r++) c->gpus[r] = cuda ? device + r : -1;
    for (int r = 1; r < n; r++) {
        rs_status st;
#ifdef RS_HAVE_CUDA
        if (cuda)
            st = rs_backend_cuda_create(device + r, max_tokens, (size_t)batch_tokens, &c->ranks_b[r], err);
        else
#endif
            st = rs_backend_cpu_create(1, 1, &c->ranks_b[r], err);
        (void)b, (void)device, (void)max_tokens, (void)batch_tokens; /* cuda only */
        if (st != RS_OK) return rs_errf(err, st, "tensor-parallel rank %d: %s", r, err->msg);
    }
    return RS_OK;
}

void rs_causal_limits(int max_tokens, int batch_tokens, int *mt, int *bt) {
    *mt = max_tokens > 0 ? max_tokens : 512;
    *bt = batch_tokens > 0 ? batch_tokens : 2048;
    if (*bt < *mt) *bt = *mt;
}

rs_status rs_causal_open(const char *router_dir, const char *model_dir, const rs_manifest *manifest, rs_backend *b,
                         int device, int max_tokens, int batch_tokens, rs_causal **out, rs_err *err) {
    *out = NULL;
    rs_causal *c = calloc(1, sizeof *c);
    if (!c) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    char *sys = NULL, *prefix_text = NULL;
    int32_t *prefix = NULL;
    rs_status st;
    if ((st = rs_model_files_open(model_dir, &c->files, err)) != RS_OK) goto fail;
    rs_llama_config cfg;
    if ((st = rs_llama_config_parse(rs_model_files_config(c->files), model_dir, &cfg, err)) != RS_OK) goto fail;
    if ((st = load_tokenizer(c, router_dir, model_dir, manifest, err)) != RS_OK) goto fail;
    if (c->orig_vocab <= 0 || c->orig_vocab + RS_CAUSAL_RATINGS > cfg.vocab_size) {
        st = rs_errf(err, RS_ERR_FORMAT, "%s: rating tokens at %d..%d but the model's vocabulary is %d", model_dir,
                     c->orig_vocab, c->orig_vocab + RS_CAUSAL_RATINGS - 1, cfg.vocab_size);
        goto fail;
    }
    const char *sys_file = manifest->system_file ? manifest->system_file : "system_ft_v5.txt";
    const char *cls_file = manifest->classifier_file ? manifest->classifier_file : "classifier_ft_v5.txt";
    if ((st = read_prompt_file(router_dir, sys_file, &sys, err)) != RS_OK ||
        (st = read_prompt_file(router_dir, cls_file, &c->classifier, err)) != RS_OK)
        goto fail;
    /* ranges the manifest checked; the defaults are RouteLLM's */
    c->max_new_tokens = manifest->max_new_tokens ? manifest->max_new_tokens : 6;
    const int tp = manifest->tensor_parallel ? manifest->tensor_parallel : 1;
    if (tp > RS_LLAMA_TP_MAX) {
        st = rs_errf(err, RS_ERR_INVALID_ARG, "%s: tensor_parallel must be 1 to %d", router_dir, RS_LLAMA_TP_MAX);
        goto fail;
    }
    c->max_slots = manifest->max_slots ? manifest->max_slots : 32;
    const int ar_timeout = manifest->allreduce_timeout_ms; /* 0: the default, 30 s */
    rs_causal_limits(max_tokens, batch_tokens, &c->max_tokens, &c->batch_tokens);

    /* The shared prefix: BOS, system header, stripped system text, eot. */
    const char *s = sys;
    size_t sn = strlen(sys);
    strip(&s, &sn);
    size_t plen = strlen(SYS_HEAD) + sn + strlen(EOT);
    prefix_text = malloc(plen + 1);
    size_t cap = plen + 8;
    prefix = malloc(cap * sizeof *prefix);
    if (!prefix_text || !prefix) {
        st = rs_errf(err, RS_ERR_NOMEM, "no memory");
        goto fail;
    }
    snprintf(prefix_text, plen + 1, "%s%.*s%s", SYS_HEAD, (int)sn, s, EOT);
    size_t n_prefix = 0;
    int trunc = 0;
    /* all of it the router's own text: its special tokens are parsed */
    if ((st = rs_tokenizer_encode_spans(c->tok, prefix_text, plen, NULL, 0, 0, 0, prefix, cap, &n_prefix, &trunc,
                                        err)) != RS_OK)
        goto fail;

    rs_llama_limits lim = {.max_tokens = c->batch_tokens,
                           .max_slots = c->max_slots,
                           .slot_len = c->max_tokens + c->max_new_tokens,
                           .max_prefix = (int)n_prefix,
                           .max_logit_rows = c->max_slots,
                           .allreduce_timeout_ms = ar_timeout};
    c->ranks_b[0] = b;
    if ((st = rank_backends(c, b, device, tp, c->max_tokens, c->batch_tokens, err)) != RS_OK ||
        (st = rs_llama_tp_create(c->files, c->ranks_b, c->gpus[0] >= 0 ? c->gpus : NULL, tp, &lim, &c->model, err)) !=
            RS_OK)
        goto fail;
    c->cfg = rs_llama_tp_config(c->model);
    if ((st = rs_llama_tp_set_prefix(c->model, prefix, (int)n_prefix, err)) != RS_OK) goto fail;

    const size_t T = (size_t)c->batch_tokens;
    c->ids = malloc(T * sizeof *c->ids);
    c->slot = malloc(T * sizeof *c->slot);
    c->pos = malloc(T * sizeof *c->pos);
    c->rows = malloc(T * sizeof *c->rows);
    c->logits = malloc((size_t)c->max_slots * (size_t)c->cfg->vocab_size * sizeof *c->logits);
    if (!c->ids || !c->slot || !c->pos || !c->rows || !c->logits) {
        st = rs_errf(err, RS_ERR_NOMEM, "no memory for causal staging");
        goto fail;
    }
    free(sys);
    free(prefix_text);
    free(prefix);
    *out = c;
    return RS_OK;
fail:
    free(sys);
    free(prefix_text);
    free(prefix);
    rs_causal_close(c);
    return st;
}

void rs_causal_close(rs_causal *c) {
    if (!c) return;
    rs_llama_tp_free(c->model);
    for (int r = 1; r < RS_LLAMA_TP_MAX; r++)
        if (c->ranks_b[r]) c->ranks_b[r]->ops->destroy(c->ranks_b[r]);
    rs_tokenizer_free(c->tok);
    rs_model_files_close(c->files);
    free(c->classifier);
    free(c->ids);
    free(c->slot);
    free(c->pos);
    free(c->rows);
    free(c->logits);
    free(c);
}

const char *rs_causal_architecture(const rs_causal *c) {
    (void)c;
    return "LlamaForCausalLM";
}
int rs_causal_max_tokens(const rs_causal *c) { return c->max_tokens; }
int rs_causal_vocab_size(const rs_causal *c) { return c->cfg->vocab_size; }
int rs_causal_hidden(const rs_causal *c) { return c->cfg->hidden; }
int rs_causal_max_slots(const rs_causal *c) { return c->max_slots; }
int rs_causal_batch_tokens(const rs_causal *c) { return c->batch_tokens; }

rs_status rs_causal_tokenize(const rs_causal *c, const char *prompt, size_t len, int32_t *ids, size_t cap,
                             size_t *n_ids, rs_err *err) {
    *n_ids = 0;
    if (len == 0) return rs_errf(err, RS_ERR_INVALID_ARG, "empty prompt");
    /* user = classifier.replace("{question}", prompt).strip() */
    const char *tpl = c->classifier;
    size_t n_q = 0, tl = strlen(tpl);
    for (const char *p = tpl; (p = strstr(p, "{question}")); p += 10) n_q++;
    size_t ul = tl + n_q * len - n_q * 10;
    size_t total = strlen(USER_HEAD) + ul + strlen(EOT);
    char *text = malloc(total + 1), *user = malloc(ul + 1);
    /* the prompt's copies are the caller's text: special tokens there stay
     * plain text unless the manifest parses them (rs_tokenizer_encode_spans) */
    rs_tok_span *spans = malloc((n_q ? n_q : 1) * sizeof *spans);
    if (!text || !user || !spans) {
        free(text);
        free(user);
        free(spans);
        return rs_errf(err, RS_ERR_NOMEM, "no memory");
    }
    char *w = user;
    size_t n_spans = 0;
    for (const char *p = tpl;;) {
        const char *q = strstr(p, "{question}");
        size_t seg = q ? (size_t)(q - p) : strlen(p);
        memcpy(w, p, seg);
        w += seg;
        if (!q) break;
        spans[n_spans++] = (rs_tok_span){(size_t)(w - user), len};
        memcpy(w, prompt, len);
        w += len;
        p = q + 10;
    }
    const char *u = user;
    size_t un = (size_t)(w - user);
    strip(&u, &un);
    size_t hl = strlen(USER_HEAD), el = strlen(EOT);
    memcpy(text, USER_HEAD, hl);
    memcpy(text + hl, u, un);
    memcpy(text + hl + un, EOT, el);
    /* user offsets -> text offsets, clipped to the stripped message */
    const size_t cut = (size_t)(u - user);
    for (size_t i = 0; i < n_spans; i++) {
        size_t a = spans[i].off < cut ? cut : spans[i].off, b = spans[i].off + spans[i].len;
        if (b > cut + un) b = cut + un;
        spans[i] = b > a ? (rs_tok_span){hl + a - cut, b - a} : (rs_tok_span){0, 0};
    }
    int trunc = 0;
    size_t lim = cap < (size_t)c->max_tokens ? cap : (size_t)c->max_tokens;
    rs_status st = rs_tokenizer_encode_spans(c->tok, text, hl + un + el, spans, n_spans, 0, 0, ids, lim, n_ids, &trunc,
                                             err);
    free(text);
    free(user);
    free(spans);
    if (st == RS_ERR_TOO_LARGE)
        return rs_errf(err, RS_ERR_TOO_LARGE, "prompt needs more than %zu tokens (the router's max_tokens; RouteLLM "
                       "does not truncate)", lim);
    return st;
}

/* One prompt's decision from the logits of one generated position; returns
 * non-zero when the prompt is decided. */
static int decide(const rs_causal *c, const float *lg, int step, int32_t *next, rs_causal_result *s) {
    const int V = c->cfg->vocab_size;
    int best = 0;
    for (int i = 1; i < V; i++)
        if (lg[i] > lg[best]) best = i; /* first maximum, as torch.argmax */
    *next = best;
    if (best >= c->orig_vocab) {
        const float *r = lg + c->orig_vocab;
        double mx = r[0], e[RS_CAUSAL_RATINGS], sum = 0;
        for (int i = 1; i < RS_CAUSAL_RATINGS; i++) mx = r[i] > mx ? r[i] : mx;
        for (int i = 0; i < RS_CAUSAL_RATINGS; i++) sum += (e[i] = exp(r[i] - mx));
        s->rated = 1;
        for (int i = 0; i < RS_CAUSAL_RATINGS; i++) s->ratings[i] = (float)(e[i] / sum);
        s->win_prob = (float)(1.0 - (e[3] + e[4]) / sum);
        return 1;
    }
    for (int k = 0; k < c->cfg->n_eos; k++)
        if (best == c->cfg->eos_ids[k]) return 1; /* generation ended: no rating */
    return step + 1 >= c->max_new_tokens;
}

/* Scores prompts [i0, i1) of the packed ids: they fit the slots and budget. */
static rs_status score_group(rs_causal *c, const int32_t *ids, const int32_t *offsets, int i0, int i1,
                             rs_causal_result *out, rs_err *err) {
    const int V = c->cfg->vocab_size;
    int n = 0, live[4096], n_live = 0;
    int32_t next[4096];
    for (int i = i0; i < i1; i++) {
        const int sl = i - i0, L = offsets[i + 1] - offsets[i];
        for (int t = 0; t < L; t++, n++) {
            c->ids[n] = ids[offsets[i] + t];
            c->slot[n] = sl;
            c->pos[n] = t;
        }
        c->rows[sl] = n - 1;
        live[n_live++] = sl;
        rs_causal_result *s = &out[i];
        memset(s, 0, sizeof *s);
        s->win_prob = 1.f; /* no rating token: send to strong */
        s->tokens = rs_llama_tp_prefix_len(c->model) + L;
    }
    rs_status st = rs_llama_tp_forward(c->model, c->ids, c->slot, c->pos, n, c->rows, n_live, c->logits, err);
    for (int step = 0; st == RS_OK && n_live > 0; step++) {
        int still = 0;
        for (int r = 0; r < n_live; r++) {
            const int sl = live[r];
            if (decide(c, c->logits + (size_t)r * (size_t)V, step, &next[sl], &out[i0 + sl])) continue;
            live[still++] = sl;
        }
        n_live = still;
        if (!n_live) break;
        for (int r = 0; r < n_live; r++) {
            const int sl = live[r];
            c->ids[r] = next[sl];
            c->slot[r] = sl;
            c->pos[r] = offsets[i0 + sl + 1] - offsets[i0 + sl] + step;
            c->rows[r] = r;
        }
        st = rs_llama_tp_forward(c->model, c->ids, c->slot, c->pos, n_live, c->rows, n_live, c->logits, err);
    }
    return st;
}

rs_status rs_causal_score_tokens(rs_causal *c, const int32_t *ids, const int32_t *offsets, int n,
                                 rs_causal_result *out, rs_err *err) {
    for (int i = 0; i < n; i++) {
        const int L = offsets[i + 1] - offsets[i];
        if (L < 1 || L > c->max_tokens)
            return rs_errf(err, RS_ERR_INVALID_ARG, "sequence %d has %d tokens (1 to %d allowed)", i, L > 0 ? L : 0,
                           c->max_tokens);
        for (int32_t t = offsets[i]; t < offsets[i + 1]; t++)
            if (ids[t] < 0 || ids[t] >= c->cfg->vocab_size)
                return rs_errf(err, RS_ERR_INVALID_ARG, "sequence %d: token id %d outside the vocabulary (%d)", i,
                               ids[t], c->cfg->vocab_size);
    }
    for (int i0 = 0; i0 < n;) {
        int i1 = i0;
        size_t budget = 0;
        while (i1 < n && i1 - i0 < c->max_slots &&
               budget + (size_t)(offsets[i1 + 1] - offsets[i1]) <= (size_t)c->batch_tokens)
            budget += (size_t)(offsets[i1 + 1] - offsets[i1]), i1++;
        rs_status st = score_group(c, ids, offsets, i0, i1, out, err);
        if (st != RS_OK) return st;
        i0 = i1;
    }
    return RS_OK;
}

double rs_causal_flops(const rs_causal *c, const size_t *offsets, size_t n_seq) {
    double f = 0;
    const double P = rs_llama_tp_prefix_len(c->model);
    for (size_t s = 0; s < n_seq; s++) {
        const int L = (int)(offsets[s + 1] - offsets[s]);
        /* Token t (0-based) of the prompt attends to P + t + 1 positions. */
        f += rs_llama_flops(c->cfg, L, P + (L + 1) / 2.0, 1);
    }
    return f;
}
