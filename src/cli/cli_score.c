/* cli_score.c — `routescore score`: score prompts given on the command line
 * (or sequences of token ids, for checkpoints without a tokenizer) and print
 * one JSON record per prompt, in the format `label` writes. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_common.h"
#include "cli_engine.h"
#include "engine.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: routescore score [--model DIR] [--threshold T] [--threads N] [--max-tokens N]\n"
            "                        [--backend cpu|cuda|auto] [--device N] [--precision P] TEXT...\n"
            "       routescore score [--model DIR] --ids-in FILE   (lines: JSON arrays of token ids)\n"
            "       routescore score --model DIR --embeddings-in FILE   (lines: JSON arrays of floats;\n"
            "                        mf_routellm and sw_ranking routers, e.g. 1536-d OpenAI embeddings)\n"
            "\n"
            "Prints one JSON object per prompt: id (1-based position), win_prob, route,\n"
            "label_probs (classifiers), tokens, truncated. --model defaults to the bundled\n"
            "router (models/routers/minilm-mf). Exit 1 if any prompt failed.\n"
            "\n" RS_CLI_BACKEND_HELP);
}

/* Parses one --ids-in line ("[0, 17, 2]") into ids; returns the count or -1. */
static long parse_ids(const char *line, size_t len, int32_t *ids, size_t cap, rs_err *err) {
    cJSON *j = cJSON_ParseWithLength(line, len);
    long n = -1;
    if (!cJSON_IsArray(j)) {
        rs_errf(err, RS_ERR_FORMAT, "not a JSON array of token ids");
    } else if ((size_t)cJSON_GetArraySize(j) > cap) {
        rs_errf(err, RS_ERR_TOO_LARGE, "%d ids (at most %zu)", cJSON_GetArraySize(j), cap);
    } else {
        n = 0;
        for (const cJSON *it = j->child; it; it = it->next) {
            if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int32_t)it->valuedouble) {
                rs_errf(err, RS_ERR_FORMAT, "id %ld is not an integer", n);
                n = -1;
                break;
            }
            ids[n++] = (int32_t)it->valuedouble;
        }
    }
    cJSON_Delete(j);
    return n;
}

/* Scores one input line of a --ids-in / --embeddings-in file into *s. */
typedef rs_status (*score_line_fn)(rs_engine *e, const char *line, size_t len, void *buf, size_t cap,
                                   float threshold, rs_score *s, rs_err *err);

static rs_status score_ids_line(rs_engine *e, const char *line, size_t len, void *buf, size_t cap, float threshold,
                                rs_score *s, rs_err *err) {
    int32_t *ids = buf;
    long n = parse_ids(line, len, ids, cap, err);
    if (n < 0) return RS_ERR_FORMAT;
    size_t off[2] = {0, (size_t)n};
    return rs_engine_score_tokens(e, ids, off, 1, threshold, s, err);
}

static rs_status score_embedding_line(rs_engine *e, const char *line, size_t len, void *buf, size_t dim,
                                      float threshold, rs_score *s, rs_err *err) {
    float *emb = buf;
    cJSON *j = cJSON_ParseWithLength(line, len);
    size_t n = 0;
    rs_status st = cJSON_IsArray(j) ? RS_OK : rs_errf(err, RS_ERR_FORMAT, "not a JSON array of floats");
    for (const cJSON *it = st == RS_OK ? j->child : NULL; it; it = it->next, n++)
        if (!cJSON_IsNumber(it) || n >= dim) {
            st = rs_errf(err, RS_ERR_FORMAT, n >= dim ? "more than %zu values" : "value %zu is not a number",
                         n >= dim ? dim : n);
            break;
        } else {
            emb[n] = (float)it->valuedouble;
        }
    cJSON_Delete(j);
    if (st == RS_OK) st = rs_engine_score_embeddings(e, emb, 1, n, threshold, s, err);
    if (st == RS_OK && s->status != RS_OK) st = rs_errf(err, s->status, "%s", s->error);
    return st;
}

/* --ids-in / --embeddings-in: one JSON array per line, scored as it is read;
 * a bad line is an error record and the run goes on. cap: elements per line. */
static int score_array_file(rs_engine *e, const char *path, float threshold, score_line_fn fn, size_t elem_size,
                            size_t cap) {
    rs_jsonl *r;
    rs_err err = {{0}};
    if (rs_jsonl_open(path, 0, &r, &err) != RS_OK) {
        fprintf(stderr, "routescore score: %s\n", err.msg);
        return 2;
    }
    void *buf = malloc(cap * elem_size);
    int failed = buf ? 0 : 2;
    while (buf) {
        const char *line;
        size_t len;
        uint64_t no;
        rs_status st = rs_jsonl_next(r, &line, &len, &no, &err);
        if (st == RS_OK && !line) break;
        char id[32];
        snprintf(id, sizeof id, "%llu", (unsigned long long)no);
        if (st == RS_ERR_IO || st == RS_ERR_FORMAT) {
            fprintf(stderr, "routescore score: %s\n", err.msg);
            failed = 2;
            break;
        }
        rs_score s;
        if (st == RS_OK) st = fn(e, line, len, buf, cap, threshold, &s, &err);
        if (st != RS_OK) {
            rs_cli_write_error_json(stdout, id, no, err.msg);
            failed = failed ? failed : 1;
        } else {
            rs_cli_write_score_json(stdout, id, &s);
        }
    }
    free(buf);
    rs_jsonl_close(r);
    return failed;
}

int rs_cli_score(int argc, char **argv) {
    static const struct option LONG[] = {
        {"model", required_argument, 0, 'm'},    {"threshold", required_argument, 0, 't'},
        {"threads", required_argument, 0, 'j'},  {"max-tokens", required_argument, 0, 'x'},
        {"ids-in", required_argument, 0, 'i'},   {"help", no_argument, 0, 'h'},
        {"embeddings-in", required_argument, 0, 'E'},
        RS_CLI_BACKEND_OPTIONS('B', 'D'), RS_CLI_PRECISION_OPTION('P'),
        {0, 0, 0, 0}};
    rs_cli_engine_flags fl = {0};
    double threshold = NAN;
    const char *ids_in = NULL, *emb_in = NULL;
    rs_err err = {{0}};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "m:t:j:x:i:E:h", LONG, NULL)) != -1;) {
        rs_status st = RS_OK;
        switch (c) {
        case 'm': fl.model = optarg; break;
        case 't': st = rs_cli_parse_float("--threshold", optarg, 0, 1, &threshold, &err); break;
        case 'j': st = rs_cli_parse_int("--threads", optarg, 1, 1024, &fl.threads, &err); break;
        case 'x': st = rs_cli_parse_int("--max-tokens", optarg, 3, 1 << 20, &fl.max_tokens, &err); break;
        case 'i': ids_in = optarg; break;
        case 'E': emb_in = optarg; break;
        case 'B': fl.backend = optarg; break;
        case 'P': fl.precision = optarg; break;
        case 'D': st = rs_cli_parse_int("--device", optarg, 0, 1024, &fl.device, &err); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (st != RS_OK) {
            fprintf(stderr, "routescore score: %s\n", err.msg);
            return 2;
        }
    }
    if ((optind < argc) + !!ids_in + !!emb_in != 1) {
        fprintf(stderr, "routescore score: give prompts as arguments, --ids-in FILE or --embeddings-in FILE (one)\n");
        usage(stderr);
        return 2;
    }
    rs_engine *e = rs_cli_open_engine("score", &fl);
    if (!e) return 2;
    int rc = 0;
    rs_router_info info;
    rs_engine_info(e, &info);
    if (emb_in) {
        size_t dim = info.embed_dim > 0 ? (size_t)info.embed_dim : 1;
        rc = score_array_file(e, emb_in, (float)threshold, score_embedding_line, sizeof(float), dim);
    } else if (ids_in) {
        size_t cap = info.max_tokens > 0 ? (size_t)info.max_tokens : 1;
        rc = score_array_file(e, ids_in, (float)threshold, score_ids_line, sizeof(int32_t), cap);
    } else {
        size_t n = (size_t)(argc - optind);
        const char **prompts = calloc(n, sizeof *prompts);
        size_t *lens = calloc(n, sizeof *lens);
        rs_score *out = calloc(n, sizeof *out);
        if (!prompts || !lens || !out) {
            fprintf(stderr, "routescore score: out of memory\n");
            rc = 2;
        } else {
            for (size_t i = 0; i < n; i++) {
                prompts[i] = argv[optind + (int)i];
                lens[i] = strlen(prompts[i]);
            }
            rs_status st = rs_engine_score(e, prompts, lens, n, (float)threshold, out, &err);
            if (st != RS_OK) {
                fprintf(stderr, "routescore score: %s: %s\n", rs_status_str(st), err.msg);
                rc = 2;
            }
            for (size_t i = 0; st == RS_OK && i < n; i++) {
                char id[32];
                snprintf(id, sizeof id, "%zu", i + 1);
                if (out[i].status == RS_OK) {
                    rs_cli_write_score_json(stdout, id, &out[i]);
                } else {
                    rs_cli_write_error_json(stdout, id, i + 1, out[i].error);
                    rc = 1;
                }
            }
        }
        free(prompts);
        free(lens);
        free(out);
    }
    rs_engine_close(e);
    return rc;
}
