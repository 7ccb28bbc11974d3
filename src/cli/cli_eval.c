/* cli_eval.c — `routescore eval`: RouteLLM's routing-quality evaluation
 * (docs/QUALITY.md) on RouteLLM's benchmark labels, found through --data DIR
 * or $RS_SHARED_DATA/routellm (nothing else).
 *
 * Loads a benchmark exactly as RouteLLM's benchmarks.py does (MMLU: the 57
 * subject CSVs in sorted order; GSM8K: the responses CSV; MT-Bench: the
 * questions and GPT-4 judgements of the two routed models), drops the
 * contaminated prompts, gets one score per item (from a router through the
 * engine, or from a file), and hands items and scores to eval.c for the
 * points, APGR and CPT. Optionally draws the plot (cli_eval_plot.c: SVG,
 * PNG or PDF by the file name).
 *
 * Joining a score file (--scores, eval_scores.c): each JSON line is
 * {"prompt": TEXT, "win_prob": P} (joined by exact prompt text; for
 * MT-Bench the turn-1 prompt; every row with that text gets P) or, without
 * "prompt", {"id": I, "win_prob": P} with I the 0-based row index in the
 * order `--dump-prompts` writes. Every row must get a score; lines that
 * match no row are counted and ignored (one file may cover several
 * benchmarks). The file is read by the CLI's line reader (plain or gzip). */
#include <dirent.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_common.h"
#include "cli_engine.h"
#include "cli_eval_plot.h"
#include "csv.h"
#include "engine.h"
#include "eval.h"
#include "eval_scores.h"

#define MT_STRONG "gpt-4-1106-preview"
#define MT_WEAK "mistralai/Mixtral-8x7B-Instruct-v0.1"

typedef struct dataset {
    size_t n, cap;
    char **prompts; /* owned; NUL-terminated */
    rs_eval_item *items;
    double scale;
    char **bad; /* contaminated eval prompts */
    size_t n_bad;
} dataset;

static void usage(FILE *f) {
    fprintf(f,
            "usage: routescore eval --benchmark mmlu|gsm8k|mt-bench [--data DIR]\n"
            "                       (--model DIR | --scores FILE) [--json] [--plot FILE]\n"
            "                       [--save-scores FILE] [--dump-prompts FILE] [--threads N]\n"
            "                       [--max-tokens N] [--batch-tokens N] [--subjects X-Y]\n"
            "\n"
            "RouteLLM's evaluation: thresholds at the 11 edges of a 10-quantile split of the\n"
            "scores, strong where score >= edge (last edge: >), points (strong share %%,\n"
            "quality), APGR, CPT(50%%), CPT(80%%). Quality: accuracy %% (MMLU, GSM8K), mean\n"
            "judged score over both turns (MT-Bench, routed on the turn-1 prompt).\n"
            "--data DIR: the RouteLLM data folder (mmlu/, gsm8k/, mt_bench/); without it,\n"
            "$RS_SHARED_DATA/routellm; with neither, eval refuses (exit 2).\n"
            "--scores: JSON lines {\"prompt\": TEXT, \"win_prob\": P} joined by exact prompt\n"
            "text, or {\"id\": I, \"win_prob\": P} with I the 0-based row of --dump-prompts.\n"
            "--subjects a-m: MMLU only, the subjects whose name starts with a letter in a..m\n"
            "(for held-out-subject evaluations; RouteLLM itself uses all 57).\n"
            "--model scores the prompts with a router (batched); --save-scores keeps them.\n"
            "--plot FILE.svg|FILE.png|FILE.pdf: the plot in the format the name ends in (any\n"
            "case); any other name is refused before the run.\n");
}

/* dst = a + b; RS_ERR_TOO_LARGE when it does not fit. */
static rs_status join_path(char *dst, size_t n, const char *a, const char *b, rs_err *err) {
    int k = snprintf(dst, n, "%s%s", a, b);
    if (k < 0 || (size_t)k >= n) return rs_errf(err, RS_ERR_TOO_LARGE, "path too long: %s%s", a, b);
    return RS_OK;
}

static char *read_file(const char *path, size_t *len, rs_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        rs_errf(err, RS_ERR_IO, "cannot open %s", path);
        return NULL;
    }
    rs_buf b = {0};
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (rs_buf_append(&b, tmp, k) != RS_OK) {
            fclose(f);
            rs_buf_free(&b);
            rs_errf(err, RS_ERR_NOMEM, "out of memory reading %s", path);
            return NULL;
        }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        rs_buf_free(&b);
        rs_errf(err, RS_ERR_IO, "read error on %s", path);
        return NULL;
    }
    if (!b.data) b.data = calloc(1, 1);
    *len = b.len;
    return b.data;
}

static void dataset_free(dataset *ds) {
    for (size_t i = 0; i < ds->n; i++) free(ds->prompts[i]);
    for (size_t i = 0; i < ds->n_bad; i++) free(ds->bad[i]);
    free(ds->prompts);
    free(ds->items);
    free(ds->bad);
}

static int is_contaminated(const dataset *ds, const char *p) {
    for (size_t i = 0; i < ds->n_bad; i++)
        if (!strcmp(ds->bad[i], p)) return 1;
    return 0;
}

static rs_status dataset_add(dataset *ds, const char *prompt, size_t len, rs_eval_item it, rs_err *err) {
    if (ds->n == ds->cap) {
        size_t nc = ds->cap ? ds->cap * 2 : 1024;
        char **np = realloc(ds->prompts, nc * sizeof *np);
        if (np) ds->prompts = np;
        rs_eval_item *ni = np ? realloc(ds->items, nc * sizeof *ni) : NULL;
        if (!np || !ni) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
        ds->items = ni;
        ds->cap = nc;
    }
    char *p = malloc(len + 1);
    if (!p) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    memcpy(p, prompt, len);
    p[len] = '\0';
    ds->prompts[ds->n] = p;
    ds->items[ds->n++] = it;
    return RS_OK;
}

/* The next record of a data file, where any bad line is fatal (the data
 * must be whole): its error names path and line. *j NULL at the end. */
static rs_status next_record(rs_jsonl *r, const char *path, cJSON **j, uint64_t *no, rs_err *err) {
    int bad;
    rs_status st = rs_jsonl_next_json(r, j, no, &bad, err);
    if (st != RS_OK && bad) rs_errf(err, st, "%s:%llu: %s", path, (unsigned long long)*no, err->msg);
    return st;
}

/* Each line's "eval_prompt" (contamination_check.py's output). */
static rs_status load_contaminated(dataset *ds, const char *path, rs_err *err) {
    rs_jsonl *r;
    rs_status st = rs_jsonl_open(path, 0, &r, err);
    if (st != RS_OK) return st;
    for (;;) {
        cJSON *j;
        uint64_t no;
        if ((st = next_record(r, path, &j, &no, err)) != RS_OK || !j) break;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "eval_prompt");
        char **nb = cJSON_IsString(p) ? realloc(ds->bad, (ds->n_bad + 1) * sizeof *nb) : NULL;
        if (nb) {
            ds->bad = nb;
            ds->bad[ds->n_bad] = strdup(p->valuestring);
            if (ds->bad[ds->n_bad]) ds->n_bad++;
        }
        cJSON_Delete(j);
        if (!nb) {
            st = rs_errf(err, RS_ERR_FORMAT, "%s:%llu: no eval_prompt string", path, (unsigned long long)no);
            break;
        }
    }
    rs_jsonl_close(r);
    return st;
}

/* One responses CSV: header prompt,<weak>,<strong>[,...]; "True"/"False". */
static rs_status load_csv(dataset *ds, const char *path, rs_err *err) {
    size_t len;
    char *data = read_file(path, &len, err);
    if (!data) return RS_ERR_IO;
    rs_csv c;
    rs_csv_init(&c, data, len);
    rs_csv_field f[8];
    size_t nf;
    rs_status st = rs_csv_next(&c, f, 8, &nf, err);
    if (st == RS_OK && (nf < 3 || strncmp(f[1].s, "mistralai/", 10) || strncmp(f[2].s, "gpt-4", 5)))
        st = rs_errf(err, RS_ERR_FORMAT, "%s: header is not prompt,<Mixtral>,<gpt-4>", path);
    while (st == RS_OK) {
        size_t line = c.line;
        st = rs_csv_next(&c, f, 8, &nf, err);
        if (st != RS_OK || nf == 0) break;
        if (nf < 3) {
            st = rs_errf(err, RS_ERR_FORMAT, "%s:%zu: %zu fields", path, line, nf);
            break;
        }
        if (is_contaminated(ds, f[0].s)) continue;
        rs_eval_item it = {!strcmp(f[1].s, "True"), 1, !strcmp(f[2].s, "True"), 1};
        st = dataset_add(ds, f[0].s, f[0].len, it, err);
    }
    rs_csv_free(&c);
    free(data);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* subjects: NULL (all) or "x-y", first letters of the subject names. */
static rs_status load_mmlu(dataset *ds, const char *root, const char *subjects, rs_err *err) {
    char dir[4096];
    if (join_path(dir, sizeof dir, root, "/mmlu/responses", err) != RS_OK) return RS_ERR_TOO_LARGE;
    DIR *d = opendir(dir);
    if (!d) return rs_errf(err, RS_ERR_IO, "cannot open %s", dir);
    char **names = NULL;
    size_t n = 0;
    rs_status st = RS_OK;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 9 || strncmp(e->d_name, "mmlu_", 5) || strcmp(e->d_name + l - 4, ".csv")) continue;
        if (subjects && (e->d_name[5] < subjects[0] || e->d_name[5] > subjects[2])) continue;
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!nn || !(nn[n] = strdup(e->d_name))) {
            if (nn) names = nn;
            st = rs_errf(err, RS_ERR_NOMEM, "out of memory");
            break;
        }
        names = nn;
        n++;
    }
    closedir(d);
    if (st == RS_OK && n == 0) st = rs_errf(err, RS_ERR_NOT_FOUND, "no mmlu_*.csv in %s", dir);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[4400], sub[300];
        snprintf(sub, sizeof sub, "/%.280s", names[i]);
        if (st == RS_OK) st = join_path(path, sizeof path, dir, sub, err);
        if (st == RS_OK) st = load_csv(ds, path, err);
        free(names[i]);
    }
    free(names);
    return st;
}

static rs_status load_mtbench(dataset *ds, const char *root, rs_err *err) {
    char path[4096];
    if (join_path(path, sizeof path, root, "/mt_bench/judgements.jsonl", err) != RS_OK) return RS_ERR_TOO_LARGE;
    size_t jlen;
    char *jtext = read_file(path, &jlen, err);
    if (!jtext) return RS_ERR_IO;
    rs_jsonl *r;
    rs_status st = join_path(path, sizeof path, root, "/mt_bench/question.jsonl", err);
    if (st == RS_OK) st = rs_jsonl_open(path, 0, &r, err);
    if (st != RS_OK) {
        free(jtext);
        return st;
    }
    /* Question ids kept, in file order, then the judgement rows per id. */
    double *qid = NULL;
    size_t nq = 0;
    for (;;) {
        cJSON *j;
        uint64_t no;
        if ((st = next_record(r, path, &j, &no, err)) != RS_OK || !j) break;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "question_id");
        const cJSON *turns = cJSON_GetObjectItemCaseSensitive(j, "turns");
        const cJSON *t1 = cJSON_GetArrayItem(turns, 0), *t2 = cJSON_GetArrayItem(turns, 1);
        if (!cJSON_IsNumber(id) || !cJSON_IsString(t1) || !cJSON_IsString(t2)) {
            cJSON_Delete(j);
            st = rs_errf(err, RS_ERR_FORMAT, "%s:%llu: no question_id/turns", path, (unsigned long long)no);
            break;
        }
        if (!is_contaminated(ds, t1->valuestring) && !is_contaminated(ds, t2->valuestring)) {
            double *nqid = realloc(qid, (nq + 1) * sizeof *nqid);
            rs_eval_item it = {0, 0, 0, 0};
            st = nqid ? dataset_add(ds, t1->valuestring, strlen(t1->valuestring), it, err)
                      : rs_errf(err, RS_ERR_NOMEM, "out of memory");
            if (nqid) {
                qid = nqid;
                qid[nq++] = id->valuedouble;
            }
        }
        cJSON_Delete(j);
        if (st != RS_OK) break;
    }
    rs_jsonl_close(r);
    /* judgements: merge on (question_id, model), as RouteLLM does. */
    for (char *p = jtext, *end = jtext + jlen; st == RS_OK && p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        cJSON *j = rs_jsonl_line_is_blank(p, len) ? NULL : cJSON_ParseWithLength(p, len);
        p += len + 1;
        if (!j) continue;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "question_id");
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
        const cJSON *score = cJSON_GetObjectItemCaseSensitive(j, "score");
        if (cJSON_IsNumber(id) && cJSON_IsString(model) && cJSON_IsNumber(score)) {
            for (size_t i = 0; i < nq; i++) {
                if (qid[i] != id->valuedouble) continue;
                rs_eval_item *it = &ds->items[i];
                if (!strcmp(model->valuestring, MT_STRONG)) {
                    it->sum_strong += score->valuedouble;
                    it->rows_strong += 1;
                } else if (!strcmp(model->valuestring, MT_WEAK)) {
                    it->sum_weak += score->valuedouble;
                    it->rows_weak += 1;
                }
            }
        }
        cJSON_Delete(j);
    }
    for (size_t i = 0; st == RS_OK && i < ds->n; i++)
        if (ds->items[i].rows_weak == 0 || ds->items[i].rows_strong == 0)
            st = rs_errf(err, RS_ERR_FORMAT, "MT-Bench question %.0f lacks judgements of both models", qid[i]);
    free(qid);
    free(jtext);
    return st;
}

static rs_status load_benchmark(dataset *ds, const char *bench, const char *root, const char *subjects,
                                rs_err *err) {
    char path[4096];
    const char *sub = !strcmp(bench, "mt-bench") ? "/mt_bench/contaminated_prompts.jsonl"
                      : !strcmp(bench, "mmlu")   ? "/mmlu/contaminated_prompts.jsonl"
                                                 : "/gsm8k/contaminated_prompts.jsonl";
    rs_status st = join_path(path, sizeof path, root, sub, err);
    if (st == RS_OK) st = load_contaminated(ds, path, err);
    if (st != RS_OK) return st;
    if (!strcmp(bench, "mmlu")) {
        ds->scale = 100;
        return load_mmlu(ds, root, subjects, err);
    }
    if (!strcmp(bench, "gsm8k")) {
        ds->scale = 100;
        st = join_path(path, sizeof path, root, "/gsm8k/gsm8k_responses.csv", err);
        return st == RS_OK ? load_csv(ds, path, err) : st;
    }
    ds->scale = 1;
    return load_mtbench(ds, root, err);
}

/* ---- joining a score file (eval_scores.c) ---- */

static int load_scores(const dataset *ds, const char *path, double *scores) {
    rs_eval_join *j;
    rs_err err = {{0}};
    if (rs_eval_join_open((const char *const *)ds->prompts, ds->n, &j, &err) != RS_OK) {
        fprintf(stderr, "routescore eval: %s\n", err.msg);
        return 2;
    }
    rs_jsonl *r;
    if (rs_jsonl_open(path, 0, &r, &err) != RS_OK) {
        fprintf(stderr, "routescore eval: %s\n", err.msg);
        rs_eval_join_free(j);
        return 2;
    }
    int rc = 0;
    for (;;) {
        const char *line;
        size_t len;
        uint64_t no = 0;
        rs_status st = rs_jsonl_next(r, &line, &len, &no, &err);
        if (st == RS_OK && !line) break;
        if (st == RS_OK) st = rs_eval_join_line(j, line, len, &err);
        if (st != RS_OK) {
            fprintf(stderr, "routescore eval: %s:%llu: %s\n", path, (unsigned long long)no, err.msg);
            rc = 2;
            break;
        }
    }
    rs_jsonl_close(r);
    if (rc == 0) {
        size_t unmatched = rs_eval_join_unmatched(j);
        if (unmatched) fprintf(stderr, "routescore eval: %zu score lines match no row (ignored)\n", unmatched);
        if (rs_eval_join_scores(j, scores, ds->n, NULL, NULL, &err) != RS_OK) {
            fprintf(stderr, "routescore eval: %s\n", err.msg);
            rc = 2;
        }
    }
    rs_eval_join_free(j);
    return rc;
}

static int score_with_model(const dataset *ds, const rs_cli_engine_flags *fl, double *scores) {
    rs_engine *e = rs_cli_open_engine("eval", fl);
    if (!e) return 2;
    enum { BATCH = 64 };
    size_t lens[BATCH];
    rs_score out[BATCH];
    rs_err err = {{0}};
    rs_cli_progress prog;
    rs_cli_progress_init(&prog, isatty(2), ds->n);
    int rc = 0;
    for (size_t i = 0; i < ds->n && !rc; i += BATCH) {
        size_t m = ds->n - i < BATCH ? ds->n - i : BATCH;
        for (size_t k = 0; k < m; k++) lens[k] = strlen(ds->prompts[i + k]);
        rs_status st = rs_engine_score(e, (const char *const *)ds->prompts + i, lens, m, NAN, out, &err);
        if (st != RS_OK) {
            fprintf(stderr, "routescore eval: %s: %s\n", rs_status_str(st), err.msg);
            rc = 2;
            break;
        }
        for (size_t k = 0; k < m; k++) {
            if (out[k].status != RS_OK) {
                fprintf(stderr, "routescore eval: row %zu: %s\n", i + k, out[k].error);
                rc = 2;
            }
            scores[i + k] = out[k].win_prob;
        }
        rs_cli_progress_update(&prog, i + m);
    }
    rs_cli_progress_finish(&prog);
    rs_engine_close(e);
    return rc;
}

/* ---- output ---- */

static int write_prompts(const dataset *ds, const double *scores, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "routescore eval: cannot write %s\n", path);
        return 2;
    }
    for (size_t i = 0; i < ds->n; i++) {
        fprintf(f, "{\"id\":%zu,\"prompt\":", i);
        rs_cli_write_json_string(f, ds->prompts[i], strlen(ds->prompts[i]));
        if (scores) fprintf(f, ",\"win_prob\":%.17g", scores[i]);
        fputs("}\n", f);
    }
    int bad = ferror(f);
    if (fclose(f) || bad) {
        fprintf(stderr, "routescore eval: write error on %s\n", path);
        return 2;
    }
    return 0;
}

static int write_plot(const dataset *ds, const rs_eval_result *res, const char *bench, const char *path,
                      rs_plot_format fmt) {
    double *scratch = malloc(ds->n * sizeof *scratch);
    if (!scratch) {
        fprintf(stderr, "routescore eval: out of memory\n");
        return 2;
    }
    rs_plot_data d = {bench, ds->scale == 100 ? "accuracy (%)" : "mean judged score", res, {0}};
    for (int s = 0; s <= RS_PLOT_ORACLE_STEPS; s++)
        d.oracle[s] = rs_eval_oracle_quality(ds->items, ds->n, ds->scale, (double)s / RS_PLOT_ORACLE_STEPS, scratch);
    free(scratch);
    rs_err err = {{0}};
    if (rs_plot_write(path, fmt, &d, &err) != RS_OK) {
        fprintf(stderr, "routescore eval: --plot: %s\n", err.msg);
        return 2;
    }
    return 0;
}

static void print_result(const rs_eval_result *res, const char *bench, int json) {
    if (json) {
        printf("{\"benchmark\":\"%s\",\"items\":%zu,\"weak_quality\":%.17g,\"strong_quality\":%.17g,"
               "\"points\":[",
               bench, res->n_items, res->weak_quality, res->strong_quality);
        for (int k = 0; k < RS_EVAL_EDGES; k++)
            printf("%s{\"threshold\":%.17g,\"strong_share\":%.17g,\"quality\":%.17g}", k ? "," : "",
                   res->points[k].edge, res->points[k].strong_share, res->points[k].quality);
        printf("],\"auc\":%.17g,\"apgr\":%.17g,\"cpt50\":%.17g,\"cpt80\":%.17g}\n", res->auc, res->apgr,
               res->cpt50, res->cpt80);
        return;
    }
    const double W = res->weak_quality, S = res->strong_quality;
    printf("benchmark %s: %zu items, weak %.4f, strong %.4f\n", bench, res->n_items, W, S);
    printf("%12s %14s %12s %10s\n", "threshold", "strong_share%", "quality", "PGR");
    for (int k = 0; k < RS_EVAL_EDGES; k++)
        printf("%12.6f %14.6f %12.6f %10.6f\n", res->points[k].edge, res->points[k].strong_share,
               res->points[k].quality, (res->points[k].quality - W) / (S - W));
    printf("APGR %.6f\nCPT(50%%) %.6f%%\nCPT(80%%) %.6f%%\n", res->apgr, res->cpt50, res->cpt80);
}

int rs_cli_eval(int argc, char **argv) {
    static const struct option LONG[] = {
        {"benchmark", required_argument, 0, 'b'},   {"data", required_argument, 0, 'd'},
        {"model", required_argument, 0, 'm'},       {"scores", required_argument, 0, 's'},
        {"json", no_argument, 0, 'J'},              {"plot", required_argument, 0, 'p'},
        {"save-scores", required_argument, 0, 'S'}, {"dump-prompts", required_argument, 0, 'D'},
        {"threads", required_argument, 0, 'j'},     {"max-tokens", required_argument, 0, 'x'},
        {"batch-tokens", required_argument, 0, 'B'}, {"subjects", required_argument, 0, 'U'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    rs_cli_engine_flags fl = {0};
    const char *subjects = NULL, *bench = NULL, *data = NULL, *scores_path = NULL, *plot = NULL, *save = NULL, *dump = NULL;
    int json = 0, have_model = 0;
    rs_err err = {{0}};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "b:d:m:s:Jp:S:D:j:x:B:U:h", LONG, NULL)) != -1;) {
        rs_status st = RS_OK;
        switch (c) {
        case 'b': bench = optarg; break;
        case 'd': data = optarg; break;
        case 'm': fl.model = optarg; have_model = 1; break;
        case 's': scores_path = optarg; break;
        case 'J': json = 1; break;
        case 'p': plot = optarg; break;
        case 'S': save = optarg; break;
        case 'D': dump = optarg; break;
        case 'U':
            subjects = optarg;
            if (strlen(optarg) != 3 || optarg[1] != '-' || optarg[0] < 'a' || optarg[2] > 'z' || optarg[0] > optarg[2])
                st = rs_errf(&err, RS_ERR_INVALID_ARG, "--subjects wants a lowercase letter range like a-m");
            break;
        case 'j': st = rs_cli_parse_int("--threads", optarg, 1, 1024, &fl.threads, &err); break;
        case 'x': st = rs_cli_parse_int("--max-tokens", optarg, 3, 1 << 20, &fl.max_tokens, &err); break;
        case 'B': st = rs_cli_parse_int("--batch-tokens", optarg, 16, 1 << 24, &fl.batch_tokens, &err); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (st != RS_OK) {
            fprintf(stderr, "routescore eval: %s\n", err.msg);
            return 2;
        }
    }
    rs_plot_format plot_fmt = plot ? rs_plot_format_of(plot) : RS_PLOT_NONE;
    if (plot && plot_fmt == RS_PLOT_NONE) { /* refused before any work */
        fprintf(stderr,
                "routescore eval: --plot %s: cannot write that format; the file name must end in .svg, .png or .pdf\n",
                plot);
        return 2;
    }
    if (!bench || (strcmp(bench, "mmlu") && strcmp(bench, "gsm8k") && strcmp(bench, "mt-bench"))) {
        fprintf(stderr, "routescore eval: --benchmark mmlu|gsm8k|mt-bench is required\n");
        usage(stderr);
        return 2;
    }
    if (optind < argc || (have_model && scores_path) || (!dump && !have_model && !scores_path)) {
        fprintf(stderr, "routescore eval: give exactly one of --model DIR or --scores FILE\n");
        usage(stderr);
        return 2;
    }
    /* The data only where the caller says: --data, else $RS_SHARED_DATA;
     * never a folder guessed from the working directory. */
    char root[3072];
    const char *env = getenv("RS_SHARED_DATA");
    if (!data && !(env && *env)) {
        fprintf(stderr, "routescore eval: no benchmark data: give --data DIR (the RouteLLM data folder, holding "
                        "mmlu/, gsm8k/, mt_bench/) or set RS_SHARED_DATA (the folder holding routellm/)\n");
        return 2;
    }
    int k = data ? snprintf(root, sizeof root, "%s", data) : snprintf(root, sizeof root, "%s/routellm", env);
    if (k < 0 || (size_t)k >= sizeof root) {
        fprintf(stderr, "routescore eval: data path too long\n");
        return 2;
    }

    dataset ds = {0};
    double *scores = NULL;
    int rc = 0;
    if (subjects && strcmp(bench, "mmlu")) {
        fprintf(stderr, "routescore eval: --subjects is for --benchmark mmlu\n");
        return 2;
    }
    rs_status st = load_benchmark(&ds, bench, root, subjects, &err);
    if (st != RS_OK) {
        fprintf(stderr, "routescore eval: %s: %s\n", rs_status_str(st), err.msg);
        rc = 2;
        goto done;
    }
    if (ds.n == 0) {
        fprintf(stderr, "routescore eval: no rows in %s\n", root);
        rc = 2;
        goto done;
    }
    if (dump && (rc = write_prompts(&ds, NULL, dump)) != 0) goto done;
    if (!have_model && !scores_path) goto done;
    scores = calloc(ds.n, sizeof *scores);
    if (!scores) {
        rc = 2;
        goto done;
    }
    rc = scores_path ? load_scores(&ds, scores_path, scores) : score_with_model(&ds, &fl, scores);
    if (rc) goto done;
    if (save && (rc = write_prompts(&ds, scores, save)) != 0) goto done;
    rs_eval_result res;
    st = rs_eval_run(ds.items, scores, ds.n, ds.scale, &res, &err);
    if (st != RS_OK) {
        fprintf(stderr, "routescore eval: %s\n", err.msg);
        rc = 2;
        goto done;
    }
    print_result(&res, bench, json);
    if (plot) rc = write_plot(&ds, &res, bench, plot, plot_fmt);
done:
    free(scores);
    dataset_free(&ds);
    return rc;
}
