/* cli_embed.c — `routescore embed`: sentence embeddings of a JSON-lines file,
 * one record per input line: {"id", "tokens", "truncated", "embedding"}.
 * The embedding is the router's encoder pooled the router's way (mean or
 * CLS, L2-normalised when the model says so). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_common.h"
#include "cli_engine.h"

#define EMBED_BATCH 64

static void usage(FILE *f) {
    fprintf(f, "usage: routescore embed [--model DIR] --in FILE [--out FILE] [--field PATH] [--threads N]\n"
               "                        [--max-tokens N]\n"
               "\n"
               "Writes {\"id\", \"tokens\", \"truncated\", \"embedding\": [...]} per input line\n"
               "(--out - or no --out: stdout). Malformed lines give {\"id\", \"line\", \"error\"}\n"
               "records; exit 1 if any did.\n"
               "\n" RS_CLI_BACKEND_HELP);
}

typedef struct pending {
    char id[256];
    uint64_t line;
    rs_buf text;
} pending;

static int flush_batch(rs_engine *e, pending *p, int n, int dim, float *emb, FILE *out) {
    const char *prompts[EMBED_BATCH] = {0};
    size_t lens[EMBED_BATCH] = {0};
    rs_score meta[EMBED_BATCH];
    for (int i = 0; i < n; i++) {
        prompts[i] = p[i].text.data;
        lens[i] = p[i].text.len;
    }
    rs_err err = {{0}};
    rs_status st = rs_engine_embed(e, prompts, lens, (size_t)n, emb, meta, &err);
    if (st != RS_OK) {
        fprintf(stderr, "routescore embed: %s: %s\n", rs_status_str(st), err.msg);
        return -1;
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (meta[i].status != RS_OK) {
            rs_cli_write_error_json(out, p[i].id, p[i].line, meta[i].error);
            failed = 1;
            continue;
        }
        fprintf(out, "{\"id\":%s,\"tokens\":%d,\"truncated\":%s,\"embedding\":[", p[i].id, meta[i].tokens,
                meta[i].truncated ? "true" : "false");
        for (int d = 0; d < dim; d++) fprintf(out, d ? ",%.9g" : "%.9g", (double)emb[(size_t)i * dim + d]);
        fputs("]}\n", out);
    }
    return failed;
}

int rs_cli_embed(int argc, char **argv) {
    static const struct option LONG[] = {
        {"model", required_argument, 0, 'm'}, {"in", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},   {"field", required_argument, 0, 'f'},
        {"threads", required_argument, 0, 'j'}, {"help", no_argument, 0, 'h'},
        {"max-tokens", required_argument, 0, 'x'}, RS_CLI_BACKEND_OPTIONS('B', 'D'), RS_CLI_PRECISION_OPTION('P'),
        {0, 0, 0, 0}};
    rs_cli_engine_flags fl = {0};
    const char *in = NULL, *outp = "-", *field = NULL;
    rs_err err = {{0}};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "m:i:o:f:j:x:h", LONG, NULL)) != -1;) {
        rs_status st = RS_OK;
        switch (c) {
        case 'm': fl.model = optarg; break;
        case 'i': in = optarg; break;
        case 'o': outp = optarg; break;
        case 'f': field = optarg; st = rs_cli_path_check(optarg, &err); break;
        case 'j': st = rs_cli_parse_int("--threads", optarg, 1, 1024, &fl.threads, &err); break;
        case 'x': st = rs_cli_parse_int("--max-tokens", optarg, 3, 1 << 20, &fl.max_tokens, &err); break;
        case 'B': fl.backend = optarg; break;
        case 'P': fl.precision = optarg; break;
        case 'D': st = rs_cli_parse_int("--device", optarg, 0, 1024, &fl.device, &err); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (st != RS_OK) {
            fprintf(stderr, "routescore embed: %s\n", err.msg);
            return 2;
        }
    }
    if (!in || optind != argc) {
        usage(stderr);
        return 2;
    }
    rs_jsonl *r;
    if (rs_jsonl_open(in, 0, &r, &err) != RS_OK) {
        fprintf(stderr, "routescore embed: %s\n", err.msg);
        return 2;
    }
    rs_engine *e = rs_cli_open_engine("embed", &fl);
    FILE *out = !e ? NULL : strcmp(outp, "-") ? fopen(outp, "w") : stdout;
    if (e && !out) fprintf(stderr, "routescore embed: %s: cannot open for writing\n", outp);
    if (!out) {
        rs_engine_close(e);
        rs_jsonl_close(r);
        return 2;
    }
    rs_router_info info;
    rs_engine_info(e, &info);
    float *emb = malloc((size_t)EMBED_BATCH * (size_t)info.embed_dim * sizeof *emb);
    pending *p = calloc(EMBED_BATCH, sizeof *p);
    int n = 0, rc = (emb && p) ? 0 : 2;
    while (rc != 2) {
        cJSON *j;
        uint64_t no;
        int bad;
        rs_status st = rs_jsonl_next_json(r, &j, &no, &bad, &err);
        if (st != RS_OK && !bad) {
            fprintf(stderr, "routescore embed: %s\n", err.msg);
            rc = 2;
            break;
        }
        if (st == RS_OK && !j) break;
        char id[256];
        snprintf(id, sizeof id, "%llu", (unsigned long long)no);
        const char *text = NULL;
        size_t tlen = 0;
        if (j) rs_cli_record_id(j, NULL, no, id, sizeof id);
        if (st == RS_OK) st = rs_cli_extract_prompt(j, field, &p[n].text, &text, &tlen, &err);
        cJSON_Delete(j);
        if (st != RS_OK) {
            /* Records stay in input order: emit the pending batch first. */
            int f = n ? flush_batch(e, p, n, info.embed_dim, emb, out) : 0;
            n = 0;
            if (f < 0) rc = 2;
            else if (f) rc = 1;
            rs_cli_write_error_json(out, id, no, err.msg);
            if (rc == 0) rc = 1;
            continue;
        }
        snprintf(p[n].id, sizeof p[n].id, "%s", id);
        p[n].line = no;
        if (++n == EMBED_BATCH) {
            int f = flush_batch(e, p, n, info.embed_dim, emb, out);
            n = 0;
            if (f < 0) rc = 2;
            else if (f && rc == 0) rc = 1;
        }
    }
    if (n && rc != 2) {
        int f = flush_batch(e, p, n, info.embed_dim, emb, out);
        if (f < 0) rc = 2;
        else if (f && rc == 0) rc = 1;
    }
    if (fflush(out) != 0 || (out != stdout && fclose(out) != 0)) {
        fprintf(stderr, "routescore embed: writing %s failed\n", outp);
        rc = 2;
    }
    for (int i = 0; p && i < EMBED_BATCH; i++) rs_buf_free(&p[i].text);
    free(p);
    free(emb);
    rs_engine_close(e);
    rs_jsonl_close(r);
    return rc;
}
