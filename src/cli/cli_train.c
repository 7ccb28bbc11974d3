/* cli_train.c — `routescore train`: fit an mf router head on labelled prompts.
 *
 * RouteLLM's mf router collapses to p = sigmoid(v . e) over a prompt
 * embedding e (docs/ROUTERS.md), but its e is a paid remote embedder. This
 * command retrains the head for a local encoder: it embeds every prompt with
 * the engine (the encoder's own pooling and L2 normalisation, so training and
 * serving see the same e), fits L2-regularised logistic regression
 * p = sigmoid(w . e + b) by Newton's method, reports held-out quality beside
 * a constant baseline, and writes a router directory the engine opens:
 * head.safetensors ("mf.weight" [d], "mf.bias" [1]) and routescore.json.
 * With --length-term the model is p = sigmoid(w . e + lw * (ln n - c) + b),
 * n the prompt's token count as the engine counts it (specials included,
 * after truncation) and c = RS_MF_LEN_CENTER: the feature the engine adds for
 * the optional "mf.length_weight" [1] (the pooled, normalised embedding does
 * not carry the prompt's length, which predicts routing gain on its own).
 *
 * Choices, and why:
 *   - Newton, not SGD: d is a few hundred, so the (d+1)^2 Hessian is small,
 *     and Newton converges to the exact optimum in ~10 steps with no learning
 *     rate to tune; the result is deterministic for a given input.
 *   - Loss = sum of per-example log-losses, each times the record's optional
 *     "weight" (default 1), + (l2/2)(|w|^2 + lw^2), bias unpenalised. A row
 *     of weight k fits exactly as k copies of it would (the loss, gradient
 *     and Hessian are the same sums), and so do the held-out metrics and
 *     the threshold quantile, which count a row k times.
 *     Default l2 = 1.0 on the summed loss: with unit-norm embeddings and
 *     ~10^4 examples that is a light prior (about 1e-4 per example) that only
 *     keeps the problem strictly convex when the classes are nearly
 *     separable; --l2 raises it for small data sets.
 *   - Holdout = records whose 0-based line index % K == 0 (default K = 5):
 *     deterministic and independent of content, like label's shards.
 *   - Threshold = the (1 - S) quantile of the scores of the training prompts
 *     (RouteLLM's calibration rule, linear interpolation as numpy's default),
 *     so about a share S of traffic like the training prompts goes strong.
 *   - A malformed record (bad JSON, no prompt, label not 0/1, weight not a
 *     positive finite number) stops the run with exit 2 naming its line,
 *     before anything is embedded or written: a silently dropped row, or a
 *     weight read as 1, would change the fit unnoticed. Prompts the engine
 *     refuses while embedding are still skipped with a warning.
 *   - --standardize fits on features scaled to zero mean and unit variance
 *     over the training rows, so one l2 treats every dimension alike (a
 *     decoder's residual stream has dimensions hundreds of times larger than
 *     the rest), then folds the scaling into the stored head: w_k / sd_k and
 *     b - sum_k w_k mu_k / sd_k. The engine sees an ordinary mf head.
 *   - --encoder may be a router directory of kind "embed" (an encoder spec:
 *     a Llama encoder's "encoder_layers", its pooling, normalisation,
 *     max_tokens): the written manifest repeats those keys, so training and
 *     serving embed alike.
 *   - All arithmetic of the fit in double; the head is stored as F32.
 * The fit and the metrics are src/host/train/train.c; the router directory
 * is written by train_router.c. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_common.h"
#include "engine.h"
#include "train.h"
#include "train_router.h"

#define TRAIN_BATCH 64
#define WARN_LIMIT 10 /* skipped-record warnings printed before summarising */
#define WEIGHT_MAX 1e6 /* largest "weight" of a record: keeps every sum finite */

typedef struct train_opts {
    const char *encoder, *in, *out, *field, *name;
    double l2;
    long holdout_every;
    double share;
    long threads;
    int length_term; /* fit mf.length_weight too */
    int standardize; /* fit on z-scored embeddings, fold the scaling into the head */
    int json, quiet;
} train_opts;

/* The examples, in input order. */
typedef struct train_data {
    size_t n, cap;
    char **prompts;
    size_t *lens;
    int *label;
    double *weight; /* (n) the record's "weight", default 1 */
    int *heldout;
    uint64_t *line;
    float *emb;    /* (n, d) */
    double *lenf;  /* (n) ln(token count) - RS_MF_LEN_CENTER */
    int d;
    int nf;        /* features: d, or d + 1 with the length term; theta is [w (d), lw?, b] */
} train_data;

static void usage(FILE *f) {
    fprintf(f,
            "usage: routescore train --encoder DIR --in FILE.jsonl --out ROUTER_DIR [options]\n"
            "\n"
            "Fits an mf router head p = sigmoid(w . e + b) on the encoder's sentence embeddings e.\n"
            "Input lines: {\"prompt\": \"...\", \"label\": 0|1, \"weight\": W}   (label 1 = route to the\n"
            "strong model; weight optional, a positive number, default 1: the row counts W times;\n"
            "models/make_train_labels.py builds such a file). A malformed line is an error (exit 2).\n"
            "Writes ROUTER_DIR/head.safetensors and ROUTER_DIR/routescore.json, and prints held-out\n"
            "log-loss, AUC and Brier score beside a constant baseline (the training positive rate).\n"
            "\n"
            "options:\n"
            "  --encoder DIR          sentence encoder: a Hugging Face model directory, or a router\n"
            "                         directory of kind \"embed\" (e.g. a Llama encoder spec)\n"
            "  --in FILE              labelled JSON lines (plain or .gz)\n"
            "  --out DIR              router directory to write (created if needed)\n"
            "  --l2 L                 L2 penalty on w (and lw), on the summed log-loss (default 1.0)\n"
            "  --length-term          also fit lw in sigmoid(w . e + lw * (ln tokens - 3.5) + b), written\n"
            "                         as mf.length_weight (tokens: the engine's count, specials included)\n"
            "  --standardize          fit on embeddings scaled to zero mean, unit variance (training\n"
            "                         rows); the scaling is folded into the written head\n"
            "  --holdout-every K      hold out records whose 0-based line index %% K == 0 (default 5;\n"
            "                         0: no holdout)\n"
            "  --threshold-share S    threshold = (1-S) quantile of training scores (default 0.5)\n"
            "  --field PATH           prompt field (default \"prompt\", else the last user message)\n"
            "  --name NAME            router name (default: the directory name)\n"
            "  --threads N            engine threads (default: all cores)\n"
            "  --json                 print the metrics as one JSON line on stdout (table to stderr)\n"
            "  --quiet                no progress or warnings\n");
}

static int parse_opts(int argc, char **argv, train_opts *o) {
    enum { O_ENC = 1000, O_IN, O_OUT, O_L2, O_LEN, O_STD, O_HOLD, O_SHARE, O_FIELD, O_NAME, O_THREADS, O_JSON, O_QUIET, O_HELP };
    static const struct option longs[] = {
        {"encoder", required_argument, NULL, O_ENC},
        {"in", required_argument, NULL, O_IN},
        {"out", required_argument, NULL, O_OUT},
        {"l2", required_argument, NULL, O_L2},
        {"length-term", no_argument, NULL, O_LEN},
        {"standardize", no_argument, NULL, O_STD},
        {"holdout-every", required_argument, NULL, O_HOLD},
        {"threshold-share", required_argument, NULL, O_SHARE},
        {"field", required_argument, NULL, O_FIELD},
        {"name", required_argument, NULL, O_NAME},
        {"threads", required_argument, NULL, O_THREADS},
        {"json", no_argument, NULL, O_JSON},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->l2 = 1.0;
    o->holdout_every = 5;
    o->share = 0.5;
    rs_err err = {{0}};
    optind = 0;
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, ":h", longs, NULL);
        if (c == -1) break;
        rs_status st = RS_OK;
        switch (c) {
        case O_ENC: o->encoder = optarg; break;
        case O_IN: o->in = optarg; break;
        case O_OUT: o->out = optarg; break;
        case O_L2: st = rs_cli_parse_float("--l2", optarg, 0.0, 1e12, &o->l2, &err); break;
        case O_LEN: o->length_term = 1; break;
        case O_STD: o->standardize = 1; break;
        case O_HOLD:
            st = rs_cli_parse_int("--holdout-every", optarg, 0, 1L << 30, &o->holdout_every, &err);
            if (st == RS_OK && o->holdout_every == 1)
                st = rs_errf(&err, RS_ERR_INVALID_ARG, "--holdout-every 1 would hold out everything (use 0 for none)");
            break;
        case O_SHARE: st = rs_cli_parse_float("--threshold-share", optarg, 0.0, 1.0, &o->share, &err); break;
        case O_FIELD:
            o->field = optarg;
            st = rs_cli_path_check(optarg, &err);
            break;
        case O_NAME:
            o->name = optarg;
            if (!*optarg) st = rs_errf(&err, RS_ERR_INVALID_ARG, "--name must not be empty");
            break;
        case O_THREADS: st = rs_cli_parse_int("--threads", optarg, 0, 4096, &o->threads, &err); break;
        case O_JSON: o->json = 1; break;
        case O_QUIET: o->quiet = 1; break;
        case 'h':
        case O_HELP: usage(stdout); return 0;
        case ':': fprintf(stderr, "routescore train: option '%s' needs a value\n", argv[optind - 1]); return 2;
        default:
            fprintf(stderr, "routescore train: unknown or malformed option '%s' (routescore train --help for usage)\n",
                    argv[optind - 1]);
            return 2;
        }
        if (st != RS_OK) {
            fprintf(stderr, "routescore train: %s\n", err.msg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "routescore train: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->encoder || !o->in || !o->out) {
        fprintf(stderr, "routescore train: --encoder, --in and --out are required (routescore train --help)\n");
        return 2;
    }
    return -1;
}

/* ------------------------------------------------------------- the input */

static void data_free(train_data *t) {
    for (size_t i = 0; i < t->n; i++) free(t->prompts[i]);
    free(t->prompts);
    free(t->lens);
    free(t->label);
    free(t->weight);
    free(t->heldout);
    free(t->line);
    free(t->emb);
    free(t->lenf);
    memset(t, 0, sizeof *t);
}

static rs_status data_push(train_data *t, const char *text, size_t len, int label, double weight, int heldout,
                           uint64_t line) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1024;
        char **p = realloc(t->prompts, cap * sizeof *p);
        if (p) t->prompts = p;
        size_t *l = realloc(t->lens, cap * sizeof *l);
        if (l) t->lens = l;
        int *y = realloc(t->label, cap * sizeof *y);
        if (y) t->label = y;
        double *w = realloc(t->weight, cap * sizeof *w);
        if (w) t->weight = w;
        int *h = realloc(t->heldout, cap * sizeof *h);
        if (h) t->heldout = h;
        uint64_t *ln = realloc(t->line, cap * sizeof *ln);
        if (ln) t->line = ln;
        if (!p || !l || !y || !w || !h || !ln) return RS_ERR_NOMEM;
        t->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return RS_ERR_NOMEM;
    memcpy(copy, text, len);
    copy[len] = '\0';
    t->prompts[t->n] = copy;
    t->lens[t->n] = len;
    t->label[t->n] = label;
    t->weight[t->n] = weight;
    t->heldout[t->n] = heldout;
    t->line[t->n] = line;
    t->n++;
    return RS_OK;
}

static void warn_skip(const train_opts *o, uint64_t *n_skipped, uint64_t line, const char *why) {
    if (!o->quiet && *n_skipped < WARN_LIMIT)
        fprintf(stderr, "routescore train: line %llu skipped: %s\n", (unsigned long long)line, why);
    (*n_skipped)++;
}

/* The prompt, label and weight of one parsed record; err says what is wrong
 * (without the line number, which the caller adds). */
static rs_status parse_record(const cJSON *root, const char *field, rs_buf *scratch, const char **text,
                              size_t *tlen, int *label, double *weight, rs_err *err) {
    if (!cJSON_IsObject(root)) return rs_errf(err, RS_ERR_INVALID_ARG, "not a JSON object");
    rs_status st = rs_cli_extract_prompt(root, field, scratch, text, tlen, err);
    if (st != RS_OK) return st;
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(root, "label");
    if (!lab) return rs_errf(err, RS_ERR_INVALID_ARG, "missing \"label\" (0 or 1)");
    if (cJSON_IsBool(lab)) *label = cJSON_IsTrue(lab);
    else if (cJSON_IsNumber(lab) && (lab->valuedouble == 0.0 || lab->valuedouble == 1.0)) *label = (int)lab->valuedouble;
    else return rs_errf(err, RS_ERR_INVALID_ARG, "\"label\" must be 0 or 1");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(root, "weight");
    *weight = 1.0;
    if (w) {
        if (!cJSON_IsNumber(w) || !isfinite(w->valuedouble) || !(w->valuedouble > 0) || w->valuedouble > WEIGHT_MAX)
            return rs_errf(err, RS_ERR_INVALID_ARG, "\"weight\" must be a finite number in (0, %g]", WEIGHT_MAX);
        *weight = w->valuedouble;
    }
    return RS_OK;
}

/* Reads every record. A malformed one ends the read: RS_ERR_INVALID_ARG with
 * a message naming its line (see the header comment for why not a skip). */
static rs_status read_input(const train_opts *o, train_data *t, rs_err *err) {
    rs_jsonl *r = NULL;
    rs_status st = rs_jsonl_open(o->in, 0, &r, err);
    if (st != RS_OK) return st;
    rs_buf scratch = {0};
    for (;;) {
        cJSON *root = NULL;
        uint64_t no = 0;
        int bad = 0;
        rs_err e = {{0}};
        st = rs_jsonl_next_json(r, &root, &no, &bad, &e);
        if (st != RS_OK && !bad) {
            rs_errf(err, st, "%s", e.msg);
            break;
        }
        if (st == RS_OK && !root) break;
        const char *text = NULL;
        size_t tlen = 0;
        int y = 0;
        double w = 1.0;
        if (st == RS_OK) st = parse_record(root, o->field, &scratch, &text, &tlen, &y, &w, &e);
        if (st != RS_OK) {
            rs_errf(err, RS_ERR_INVALID_ARG, "line %llu: %s", (unsigned long long)no, e.msg);
            st = RS_ERR_INVALID_ARG;
        } else {
            int held = o->holdout_every > 0 && (no - 1) % (uint64_t)o->holdout_every == 0;
            st = data_push(t, text, tlen, y, w, held, no);
            if (st != RS_OK) rs_errf(err, st, "out of memory reading the input");
        }
        cJSON_Delete(root);
        if (st != RS_OK) break;
    }
    rs_buf_free(&scratch);
    rs_jsonl_close(r);
    return st;
}

/* Embeds every prompt and records its length feature; prompts the engine
 * refuses are dropped (compacted out of t, with a warning). */
static rs_status embed_all(const train_opts *o, rs_engine *eng, train_data *t, uint64_t *n_skipped, rs_err *err) {
    rs_router_info info;
    rs_engine_info(eng, &info);
    t->d = info.embed_dim;
    if (t->d <= 0) return rs_errf(err, RS_ERR_UNSUPPORTED, "%s: the encoder reports no embedding size", o->encoder);
    t->nf = t->d + (o->length_term ? 1 : 0);
    t->emb = malloc(t->n * (size_t)t->d * sizeof *t->emb + 1);
    t->lenf = malloc(t->n * sizeof *t->lenf + 1);
    rs_score *meta = calloc(TRAIN_BATCH, sizeof *meta);
    if (!t->emb || !t->lenf || !meta) {
        free(meta);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory for %zu embeddings", t->n);
    }
    rs_cli_progress prog;
    rs_cli_progress_init(&prog, !o->quiet && isatty(STDERR_FILENO), t->n);
    size_t kept = 0, i;
    rs_status st = RS_OK;
    for (i = 0; i < t->n; i += TRAIN_BATCH) {
        size_t b = t->n - i < TRAIN_BATCH ? t->n - i : TRAIN_BATCH;
        float *dst = t->emb + i * (size_t)t->d;
        st = rs_engine_embed(eng, (const char *const *)t->prompts + i, t->lens + i, b, dst, meta, err);
        if (st != RS_OK) break;
        for (size_t k = 0; k < b; k++) {
            size_t j = i + k;
            if (meta[k].status == RS_OK && meta[k].tokens <= 0) {
                meta[k].status = RS_ERR_INVALID_ARG;
                snprintf(meta[k].error, sizeof meta[k].error, "no tokens");
            }
            if (meta[k].status != RS_OK) {
                warn_skip(o, n_skipped, t->line[j], meta[k].error[0] ? meta[k].error : rs_status_str(meta[k].status));
                free(t->prompts[j]);
                continue;
            }
            /* The engine's feature for mf.length_weight, bit for bit. */
            t->lenf[kept] = log((double)meta[k].tokens) - RS_MF_LEN_CENTER;
            /* Compact in place: kept <= j, so nothing unread is overwritten. */
            if (kept != j) {
                memmove(t->emb + kept * (size_t)t->d, t->emb + j * (size_t)t->d, (size_t)t->d * sizeof *t->emb);
                t->prompts[kept] = t->prompts[j];
                t->lens[kept] = t->lens[j];
                t->label[kept] = t->label[j];
                t->weight[kept] = t->weight[j];
                t->heldout[kept] = t->heldout[j];
                t->line[kept] = t->line[j];
            }
            kept++;
        }
        rs_cli_progress_update(&prog, i + b);
    }
    rs_cli_progress_finish(&prog);
    /* Entries in [kept, i) were freed or moved down; on failure [i, n) were
     * never reached and are freed here. */
    for (size_t j = i; j < t->n; j++) free(t->prompts[j]);
    t->n = kept;
    free(meta);
    return st;
}

/* ------------------------------------------------------------- the output */

/* The fit's view of the examples. */
static rs_train_rows rows_of(const train_data *t) {
    return (rs_train_rows){.n = t->n, .d = t->d, .nf = t->nf, .emb = t->emb, .lenf = t->lenf, .label = t->label,
                           .weight = t->weight, .heldout = t->heldout};
}

static void json_num(cJSON *obj, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(obj, key, v);
    else cJSON_AddNullToObject(obj, key);
}


static void print_table(FILE *f, const rs_train_split *sp, const rs_train_metrics *mh, const rs_train_metrics *mb, double threshold,
                        int length_term, double length_weight, int iters, double gnorm) {
    fprintf(f, "examples   train %zu (positive %.2f%%)   held-out %zu", sp->n_train, 100.0 * sp->pos_train, sp->n_held);
    if (sp->n_held) fprintf(f, " (positive %.2f%%)", 100.0 * sp->pos_held);
    fputc('\n', f);
    if (sp->weighted)
        fprintf(f, "weights    train %.6g   held-out %.6g   (rates and metrics weighted)\n", sp->w_train, sp->w_held);
    fprintf(f, "fit        %d Newton steps, |grad| %.3g   threshold %.6g\n", iters, gnorm, threshold);
    if (length_term) fprintf(f, "length     weight %.6g on ln(tokens) - %g\n", length_weight, RS_MF_LEN_CENTER);
    if (!sp->n_held) {
        fprintf(f, "held-out   none (--holdout-every 0)\n");
        return;
    }
    fprintf(f, "%-10s %12s %12s\n", "held-out", "mf head", "constant");
    fprintf(f, "%-10s %12.5f %12.5f\n", "log-loss", mh->logloss, mb->logloss);
    fprintf(f, "%-10s %12.5f %12.5f\n", "AUC", mh->auc, mb->auc);
    fprintf(f, "%-10s %12.5f %12.5f\n", "Brier", mh->brier, mb->brier);
}

int rs_cli_train(int argc, char **argv) {
    train_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0) return rc;
    rc = 2;

    rs_err err = {{0}};
    train_data t = {0};
    rs_engine *eng = NULL;
    double *theta = NULL;
    rs_train_scored *train_scores = NULL, *held = NULL, *base = NULL;
    float *wf = NULL, *raw_emb = NULL;
    double *mu = NULL, *sd = NULL;
    cJSON *report = NULL;
    uint64_t n_skipped = 0;

    /* The input first (cheap, and a malformed line ends the run before
     * anything is created), then the output dir: a typo there should not
     * cost an embedding run. */
    if (read_input(&o, &t, &err) != RS_OK) {
        fprintf(stderr, "routescore train: --in %s: %s\n", o.in, err.msg);
        goto done;
    }
    if (rs_train_mkdir_p(o.out, &err) != RS_OK) {
        fprintf(stderr, "routescore train: --out %s\n", err.msg);
        goto done;
    }
    rs_engine_opts eo;
    rs_engine_opts_default(&eo);
    eo.n_threads = (int)o.threads;
    if (rs_engine_open(o.encoder, &eo, &eng, &err) != RS_OK) {
        fprintf(stderr, "routescore train: --encoder %s: %s\n", o.encoder, err.msg);
        goto done;
    }
    double t0 = rs_clock_now();
    if (embed_all(&o, eng, &t, &n_skipped, &err) != RS_OK) {
        fprintf(stderr, "routescore train: embedding failed: %s\n", err.msg);
        goto done;
    }
    double t_embed = rs_clock_now() - t0;
    if (n_skipped && !o.quiet)
        fprintf(stderr, "routescore train: %llu records skipped in all\n", (unsigned long long)n_skipped);

    rs_train_rows rows = rows_of(&t);
    rs_train_split sp = rs_train_split_of(&rows);
    if (sp.n_train == 0 || sp.n_pos_train == 0 || sp.n_pos_train == sp.n_train) {
        fprintf(stderr, "routescore train: the training part needs both labels (%zu examples, %zu positive)\n",
                sp.n_train, sp.n_pos_train);
        goto done;
    }
    const int d = t.d, nf = t.nf;
    const double rate = sp.pos_train;
    theta = calloc((size_t)nf + 1, sizeof *theta);
    train_scores = malloc(sp.n_train * sizeof *train_scores);
    held = malloc((sp.n_held + 1) * sizeof *held);
    base = malloc((sp.n_held + 1) * sizeof *base);
    wf = malloc(((size_t)nf + 1) * sizeof *wf);
    if (!theta || !train_scores || !held || !base || !wf) {
        fprintf(stderr, "routescore train: out of memory\n");
        goto done;
    }
    theta[nf] = log(rate / (1.0 - rate)); /* the constant model: a good start */
    int iters = 0;
    double gnorm = NAN;
    t0 = rs_clock_now();
    if (o.standardize) {
        float *z = NULL;
        if (rs_train_standardize(&rows, &z, &mu, &sd, &err) != RS_OK) {
            fprintf(stderr, "routescore train: %s\n", err.msg);
            goto done;
        }
        raw_emb = t.emb;
        t.emb = z;
        rows.emb = z;
    }
    if (rs_train_fit(&rows, o.l2, theta, &iters, &gnorm, &err) != RS_OK) {
        fprintf(stderr, "routescore train: %s\n", err.msg);
        goto done;
    }
    double t_fit = rs_clock_now() - t0;
    if (mu) { /* back to the raw embeddings, with the scaling folded in */
        rs_train_fold_standardization(d, nf, theta, mu, sd);
        free(t.emb);
        t.emb = raw_emb;
        rows.emb = raw_emb;
        raw_emb = NULL;
    }
    if (!(gnorm < RS_TRAIN_GRAD_TOL) && !o.quiet)
        fprintf(stderr, "routescore train: note: stopped at |grad| = %.3g after %d steps (target %g)\n", gnorm, iters,
                RS_TRAIN_GRAD_TOL);

    /* The head is stored as F32: score with the rounded weights, as the
     * engine will. */
    for (int k = 0; k <= nf; k++) {
        wf[k] = (float)theta[k];
        theta[k] = wf[k];
    }
    size_t it = 0, ih = 0;
    for (size_t i = 0; i < t.n; i++) {
        double p = rs_train_sigmoid(rs_train_row_logit(&rows, i, theta));
        if (t.heldout[i]) {
            held[ih] = (rs_train_scored){p, t.weight[i], t.label[i]};
            base[ih++] = (rs_train_scored){rate, t.weight[i], t.label[i]};
        } else {
            train_scores[it++] = (rs_train_scored){p, t.weight[i], t.label[i]};
        }
    }
    rs_train_metrics mh = rs_train_evaluate(held, sp.n_held), mb = rs_train_evaluate(base, sp.n_held);
    double threshold = rs_train_quantile(train_scores, sp.n_train, 1.0 - o.share);
    const double length_weight = nf > d ? theta[d] : 0.0;

    const rs_train_router out = {.out = o.out, .encoder = o.encoder, .source = o.in, .name = o.name, .head = wf,
                                 .d = d, .nf = nf, .threshold = threshold, .l2 = o.l2,
                                 .standardized = o.standardize, .split = &sp, .heldout = &mh};
    if (rs_train_router_write(&out, &err) != RS_OK) {
        fprintf(stderr, "routescore train: %s\n", err.msg);
        goto done;
    }

    print_table(o.json ? stderr : stdout, &sp, &mh, &mb, threshold, nf > d, length_weight, iters, gnorm);
    if (!o.quiet)
        fprintf(stderr, "routescore train: embedded %zu prompts in %.1fs, fit in %.1fs -> %s\n", t.n, t_embed, t_fit,
                o.out);
    if (o.json) {
        report = cJSON_CreateObject();
        cJSON_AddStringToObject(report, "router", o.out);
        cJSON_AddNumberToObject(report, "train", (double)sp.n_train);
        cJSON_AddNumberToObject(report, "heldout", (double)sp.n_held);
        json_num(report, "train_weight", sp.w_train);
        json_num(report, "heldout_weight", sp.w_held);
        json_num(report, "train_positive_rate", rate);
        json_num(report, "heldout_positive_rate", sp.pos_held);
        cJSON_AddNumberToObject(report, "skipped", (double)n_skipped);
        cJSON_AddNumberToObject(report, "l2", o.l2);
        if (nf > d) json_num(report, "length_weight", length_weight);
        else cJSON_AddNullToObject(report, "length_weight");
        json_num(report, "bias", theta[nf]);
        cJSON_AddNumberToObject(report, "newton_steps", iters);
        json_num(report, "grad_norm", gnorm);
        json_num(report, "threshold", (double)(float)threshold);
        json_num(report, "logloss", mh.logloss);
        json_num(report, "auc", mh.auc);
        json_num(report, "brier", mh.brier);
        json_num(report, "baseline_logloss", mb.logloss);
        json_num(report, "baseline_auc", mb.auc);
        json_num(report, "baseline_brier", mb.brier);
        char *line = cJSON_PrintUnformatted(report);
        if (line) printf("%s\n", line);
        cJSON_free(line);
    }
    rc = fflush(stdout) == 0 ? 0 : 2;

done:
    if (raw_emb) { /* failed while standardized */
        free(t.emb);
        t.emb = raw_emb;
    }
    free(mu);
    free(sd);
    cJSON_Delete(report);
    free(theta);
    free(train_scores);
    free(held);
    free(base);
    free(wf);
    rs_engine_close(eng);
    data_free(&t);
    return rc;
}
