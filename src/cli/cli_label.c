/* cli_label.c — `routescore label`: score every record of a JSON-lines file.
 *
 * Built for long offline runs over large files: one output record per input
 * record, in input order, so the output can be joined back by position;
 * broken records become error records instead of stopping the run; a run
 * killed at any moment (SIGKILL mid-write included) continues with --resume
 * and ends byte-identical to an uninterrupted run; --shard splits a file
 * across processes deterministically.
 *
 * Why resume is exact: records are written strictly in input order and each
 * ends with "\n", so whatever reached the disk is a prefix of the full output,
 * possibly ending in a partial record. Resume cuts that partial record off and
 * counts the complete ones (K). Batches are fixed by position: batch j holds
 * records [j*B, (j+1)*B) of the shard, errors included. A prompt's score may
 * depend on its batch-mates in the last bits (GEMM kernels chosen by shape,
 * padding), so resume re-runs the whole batch that K falls in, with the same
 * members as before, and writes only its records from K on. Same flags, same
 * batches, same bytes.
 *
 * Which lines are records: every line except blank (whitespace-only) ones,
 * which produce no output but keep their line number. Sharding uses the
 * 0-based physical line index, so shard membership never depends on content
 * (for CSV, the index of a record's first line; the header is no record).
 *
 * Why resume is safe: a fresh run writes OUT.fingerprint.json (the input's
 * size and head CRC, the router's identity, every flag that changes what is
 * written) before the first record; --resume compares and refuses to append
 * under anything else, naming what differs (cli_label_io.h). A gzip --out is
 * one gzip member per batch, so the prefix property above holds for it too.
 *
 * Progress: a bar on a terminal; off one (a Kubernetes Job's log), one JSON
 * line every --progress-every seconds (30 by default). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_common.h"
#include "cli_engine.h"
#include "cli_label_io.h"
#include "engine.h"

#define ID_MAX 512 /* serialised ids longer than this fall back to the line number */

typedef struct label_opts {
    const char *model;
    const char *in;
    const char *out;
    const char *field; /* NULL: prompt / messages */
    const char *id_field; /* NULL: id, else question_id */
    double threshold;  /* NaN: the router's default */
    long batch;
    int resume;
    long shard_i, shard_n;
    long threads;
    long max_tokens;     /* 0: the router's own truncation */
    const char *backend; /* NULL: the engine's default (cpu) */
    const char *precision; /* NULL: the router's (manifest, else fp32) */
    long device;
    int quiet;
    rs_label_format format; /* AUTO: by name (.csv, .csv.gz) */
    const char *column;     /* CSV prompt column (NULL: "prompt") */
    double progress_every;  /* seconds between JSON progress lines; < 0: default */
    int gz_out;             /* --out ends in .gz */
} label_opts;

/* Where records go: the file, or for gzip a batch's memory buffer that
 * becomes one gzip member of it. */
typedef struct label_out {
    FILE *f;
    int gz;
} label_out;

/* One record of the current batch. Text lives in the batch arena and is
 * addressed by offset because the arena may move while it grows. */
typedef struct label_item {
    uint64_t line;
    size_t id_off;     /* serialised id, NUL-terminated */
    size_t text_off;   /* prompt bytes, or the error message (NUL-terminated) */
    size_t text_len;
    int is_error;
    size_t prompt_idx; /* index into the engine call when !is_error */
} label_item;

typedef struct label_batch {
    label_item *items;
    size_t n_items, cap_items;
    size_t n_prompts;
    size_t suppress; /* leading items already in the output (resume) */
    rs_buf arena;
    const char **prompts; /* [batch] */
    size_t *lens;         /* [batch] */
    rs_score *scores;     /* [batch] */
} label_batch;

static void usage(FILE *f) {
    fprintf(f,
            "usage: routescore label [--model DIR] --in FILE --out FILE [options]\n"
            "\n"
            "Scores every record of a JSON-lines or CSV file (plain or .gz) and writes one\n"
            "JSON record per input record, in input order:\n"
            "  {\"id\":..,\"win_prob\":p,\"route\":\"strong\"|\"weak\",[\"label_probs\":[..],]\"tokens\":n,\"truncated\":b}\n"
            "Bad records become {\"id\":..,\"line\":n,\"error\":\"..\"} and the run goes on.\n"
            "Blank lines are skipped. Parquet and other binary inputs are refused up front\n"
            "(Parquet: the Python package's routescore-label, docs/PYTHON.md).\n"
            "\n"
            "options:\n"
            "  --model DIR      router directory (default: $ROUTESCORE_MODEL, else models/routers/minilm-mf)\n"
            "  --in FILE        input JSON lines or CSV ('-' for stdin)\n"
            "  --out FILE       output JSON lines, gzip when it ends in .gz ('-' for stdout; refused if it\n"
            "                   exists and is non-empty)\n"
            "  --format F       jsonl or csv (default: csv for a name ending in .csv or .csv.gz, else jsonl)\n"
            "  --column NAME    CSV: the prompt column (default \"prompt\"); the header names the columns\n"
            "  --field PATH     prompt field, e.g. text, turns[0], a.b[2].c (default: \"prompt\", else the\n"
            "                   last user message of an OpenAI-style \"messages\" list)\n"
            "  --id PATH        the record id echoed in the output (default: \"id\", else \"question_id\",\n"
            "                   else the 1-based line number; CSV: a column name, default \"id\" if present)\n"
            "  --threshold T    route strong when win_prob >= T, T in [0,1] (default: the router's)\n"
            "  --batch N        prompts per engine call (default 64)\n"
            "  --resume         continue a partial --out (after a crash or kill) instead of refusing it;\n"
            "                   refused when OUT.fingerprint.json shows another input, router or flags\n"
            "  --shard i/N      only records whose 0-based line index %% N == i\n"
            "  --threads N      engine threads (default: all cores)\n"
            "  --max-tokens N   truncate prompts to N tokens, specials included (default: the router's)\n"
            RS_CLI_BACKEND_HELP
            "  --progress-every S  off a terminal, a JSON progress line on stderr every S seconds\n"
            "                   (default 30; 0: none); given on a terminal, lines instead of the bar\n"
            "  --quiet          no progress bar, progress lines or summary\n"
            "\n"
            "exit status: 0 all records scored, 1 some records are errors, 2 usage or fatal error\n");
}

/* ------------------------------------------------------------ the options */

static int parse_opts(int argc, char **argv, label_opts *o) {
    enum { O_MODEL = 1000, O_IN, O_OUT, O_FIELD, O_THRESHOLD, O_BATCH, O_RESUME, O_SHARD, O_THREADS, O_QUIET, O_HELP, O_ID,
           O_BACKEND, O_DEVICE, O_MAX_TOKENS, O_FORMAT, O_COLUMN, O_PROGRESS, O_PRECISION };
    static const struct option longs[] = {
        {"model", required_argument, NULL, O_MODEL},   {"in", required_argument, NULL, O_IN},
        {"out", required_argument, NULL, O_OUT},       {"field", required_argument, NULL, O_FIELD},
        {"threshold", required_argument, NULL, O_THRESHOLD}, {"batch", required_argument, NULL, O_BATCH},
        {"resume", no_argument, NULL, O_RESUME},       {"shard", required_argument, NULL, O_SHARD},
        {"threads", required_argument, NULL, O_THREADS}, {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},           {"id", required_argument, NULL, O_ID},
        {"max-tokens", required_argument, NULL, O_MAX_TOKENS},
        {"format", required_argument, NULL, O_FORMAT}, {"column", required_argument, NULL, O_COLUMN},
        {"progress-every", required_argument, NULL, O_PROGRESS},
        RS_CLI_BACKEND_OPTIONS(O_BACKEND, O_DEVICE), RS_CLI_PRECISION_OPTION(O_PRECISION),   {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->threshold = NAN;
    o->batch = 64;
    o->shard_n = 1;
    o->progress_every = -1;
    rs_err err = {{0}};
    rs_status st = RS_OK;
    optind = 0; /* GNU: full re-initialisation, so the parser is reusable */
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, ":h", longs, NULL);
        if (c == -1) break;
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_IN: o->in = optarg; break;
        case O_OUT: o->out = optarg; break;
        case O_FIELD:
            o->field = optarg;
            st = rs_cli_path_check(optarg, &err);
            break;
        case O_ID:
            o->id_field = optarg;
            st = rs_cli_path_check(optarg, &err);
            break;
        case O_THRESHOLD: st = rs_cli_parse_float("--threshold", optarg, 0.0, 1.0, &o->threshold, &err); break;
        case O_BATCH: st = rs_cli_parse_int("--batch", optarg, 1, 1 << 16, &o->batch, &err); break;
        case O_RESUME: o->resume = 1; break;
        case O_SHARD: st = rs_cli_parse_shard("--shard", optarg, &o->shard_i, &o->shard_n, &err); break;
        case O_THREADS: st = rs_cli_parse_int("--threads", optarg, 0, 4096, &o->threads, &err); break;
        case O_MAX_TOKENS: st = rs_cli_parse_int("--max-tokens", optarg, 3, 1 << 20, &o->max_tokens, &err); break;
        case O_QUIET: o->quiet = 1; break;
        case O_FORMAT:
            if (!strcmp(optarg, "jsonl") || !strcmp(optarg, "json")) o->format = RS_LABEL_JSONL;
            else if (!strcmp(optarg, "csv")) o->format = RS_LABEL_CSV;
            else st = rs_errf(&err, RS_ERR_INVALID_ARG, "--format '%s': expected jsonl or csv", optarg);
            break;
        case O_COLUMN:
            o->column = optarg;
            if (!*optarg) st = rs_errf(&err, RS_ERR_INVALID_ARG, "--column needs a name");
            break;
        case O_PROGRESS:
            st = rs_cli_parse_float("--progress-every", optarg, 0.0, 86400.0, &o->progress_every, &err);
            break;
        case O_BACKEND: o->backend = optarg; break;
        case O_PRECISION: o->precision = optarg; break;
        case O_DEVICE: st = rs_cli_parse_int("--device", optarg, 0, 1024, &o->device, &err); break;
        case 'h':
        case O_HELP: usage(stdout); return 0;
        case ':':
            fprintf(stderr, "routescore label: option '%s' needs a value\n", argv[optind - 1]);
            return 2;
        default:
            if (optopt && optopt < O_MODEL) fprintf(stderr, "routescore label: unknown option '-%c'\n", optopt);
            else fprintf(stderr, "routescore label: unknown or malformed option '%s'\n", argv[optind - 1]);
            fprintf(stderr, "(routescore label --help for usage)\n");
            return 2;
        }
        if (st != RS_OK) {
            fprintf(stderr, "routescore label: %s\n", err.msg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "routescore label: unexpected argument '%s' (routescore label --help for usage)\n", argv[optind]);
        return 2;
    }
    if (!o->in || !o->out) {
        fprintf(stderr, "routescore label: --in and --out are required (routescore label --help for usage)\n");
        return 2;
    }
    if (o->resume && !strcmp(o->out, "-")) {
        fprintf(stderr, "routescore label: --resume needs a file for --out, not stdout\n");
        return 2;
    }
    size_t ol = strlen(o->out);
    o->gz_out = strcmp(o->out, "-") && ol > 3 && !strcmp(o->out + ol - 3, ".gz");
    return -1;
}

/* ------------------------------------------------------------- the output */

/* Cuts a partial trailing record off path and counts the complete ones (and
 * how many of them are error records). The last complete record must parse
 * as a JSON object with an "id": otherwise this is not a label output and
 * appending to it would be wrong. */
static rs_status resume_scan(const char *path, uint64_t *n_records, uint64_t *n_errors, rs_err *err) {
    *n_records = *n_errors = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return RS_OK;
        return rs_errf(err, RS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t k;
    long long complete_end = 0, off = 0;
    char *last = NULL;
    size_t last_cap = 0;
    while ((k = getline(&line, &cap, f)) > 0) {
        off += k;
        if (line[k - 1] != '\n') break; /* a partial record: it goes */
        complete_end = off;
        (*n_records)++;
        /* A '"' inside a JSON string is always escaped, so an unescaped
         * `"error":` can only be the key of an error record. */
        if (strstr(line, "\"error\":")) (*n_errors)++;
        if ((size_t)k + 1 > last_cap) {
            char *nl = realloc(last, (size_t)k + 1);
            if (!nl) {
                free(line);
                free(last);
                fclose(f);
                return rs_errf(err, RS_ERR_NOMEM, "out of memory");
            }
            last = nl;
            last_cap = (size_t)k + 1;
        }
        memcpy(last, line, (size_t)k + 1);
    }
    int read_err = ferror(f);
    free(line);
    fclose(f);
    if (read_err) {
        free(last);
        return rs_errf(err, RS_ERR_IO, "%s: read failed", path);
    }
    if (last) {
        cJSON *j = cJSON_Parse(last);
        int ok = cJSON_IsObject(j) && cJSON_GetObjectItemCaseSensitive(j, "id");
        cJSON_Delete(j);
        free(last);
        if (!ok)
            return rs_errf(err, RS_ERR_FORMAT,
                           "%s: the last complete line is not a label record; refusing to append to it", path);
    }
    if (off != complete_end && truncate(path, complete_end) != 0)
        return rs_errf(err, RS_ERR_IO, "%s: cannot cut the partial last record: %s", path, strerror(errno));
    return RS_OK;
}

/* What can be said about --out before anything is read or loaded: not a
 * directory, not the input, empty unless resuming. *resuming: --resume over
 * a non-empty output. */
static rs_status check_output(const label_opts *o, int *resuming, rs_err *err) {
    *resuming = 0;
    if (!strcmp(o->out, "-")) return RS_OK;
    struct stat so, si;
    if (stat(o->out, &so) == 0) {
        if (S_ISDIR(so.st_mode)) return rs_errf(err, RS_ERR_IO, "--out %s is a directory", o->out);
        if (strcmp(o->in, "-") && stat(o->in, &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
            return rs_errf(err, RS_ERR_INVALID_ARG, "--out %s is the input file", o->out);
        if (so.st_size > 0 && !o->resume)
            return rs_errf(err, RS_ERR_INVALID_ARG,
                           "--out %s exists and is not empty: use --resume to continue it, or remove it", o->out);
        *resuming = so.st_size > 0;
    }
    return RS_OK;
}

/* Everything that decides the bytes of the output, for --resume to check. */
static rs_status build_fingerprint(const label_opts *o, rs_engine *eng, cJSON **out, rs_err *err) {
    cJSON *fp = cJSON_CreateObject();
    if (!fp) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    rs_router_info info;
    rs_engine_info(eng, &info);
    char v[64];
    cJSON_AddStringToObject(fp, "fingerprint", "routescore label 1");
    rs_status st = rs_label_fp_input(fp, o->in, err);
    if (st == RS_OK) st = rs_label_fp_router(fp, o->model, &info, err);
    if (st != RS_OK) {
        cJSON_Delete(fp);
        return st;
    }
    cJSON_AddStringToObject(fp, "format", o->format == RS_LABEL_CSV ? "csv" : "jsonl");
    if (o->format == RS_LABEL_CSV) cJSON_AddStringToObject(fp, "column", o->column ? o->column : "prompt");
    else cJSON_AddStringToObject(fp, "field", o->field ? o->field : "(prompt, else messages)");
    cJSON_AddStringToObject(fp, "id", o->id_field ? o->id_field : "(default)");
    snprintf(v, sizeof v, "%ld/%ld", o->shard_i, o->shard_n);
    cJSON_AddStringToObject(fp, "shard", v);
    snprintf(v, sizeof v, "%ld", o->batch);
    cJSON_AddStringToObject(fp, "batch", v);
    snprintf(v, sizeof v, "%ld", o->max_tokens ? o->max_tokens : (long)info.max_tokens);
    cJSON_AddStringToObject(fp, "max_tokens", v);
    if (isnan(o->threshold)) snprintf(v, sizeof v, "router's (%.9g)", info.threshold);
    else snprintf(v, sizeof v, "%.9g", o->threshold);
    cJSON_AddStringToObject(fp, "threshold", v);
    cJSON_AddStringToObject(fp, "output", o->gz_out ? "jsonl.gz" : "jsonl");
    *out = fp;
    return RS_OK;
}

/* Checks (resuming) or records (fresh) the fingerprint, then cuts a torn
 * last record or gzip member off and opens --out for appending. */
static rs_status open_output(const label_opts *o, int resuming, rs_engine *eng, label_out *out, uint64_t *skip,
                             uint64_t *prior_errors, rs_err *err) {
    *skip = *prior_errors = 0;
    out->f = NULL;
    out->gz = o->gz_out;
    if (!strcmp(o->out, "-")) {
        out->f = stdout;
        return RS_OK;
    }
    cJSON *fp = NULL;
    rs_status st = build_fingerprint(o, eng, &fp, err);
    if (st != RS_OK) return st;
    if (resuming) {
        st = rs_label_fp_check(o->out, fp, err);
        if (st == RS_ERR_NOT_FOUND)
            st = rs_errf(err, RS_ERR_INVALID_ARG,
                         "--resume: %s has no fingerprint beside it (%s), so what it was made from cannot be "
                         "checked; refusing to append (remove it to start over)",
                         o->out, err->msg);
        else if (st == RS_ERR_INVALID_ARG)
            st = rs_errf(err, RS_ERR_INVALID_ARG,
                         "--resume: %s was made by another run: %s. Refusing to mix them: rerun with the same "
                         "input and flags, or label into a new --out",
                         o->out, err->msg);
    } else {
        st = rs_label_fp_write(o->out, fp, err);
    }
    cJSON_Delete(fp);
    if (st != RS_OK) return st;
    if (resuming) {
        st = o->gz_out ? rs_label_gz_resume_scan(o->out, skip, prior_errors, err)
                       : resume_scan(o->out, skip, prior_errors, err);
        if (st != RS_OK) return st;
    }
    FILE *f = fopen(o->out, resuming ? "ab" : "wb");
    if (!f) return rs_errf(err, RS_ERR_IO, "--out %s: cannot open for writing: %s", o->out, strerror(errno));
    out->f = f;
    return RS_OK;
}

/* -------------------------------------------------------------- the batch */

static rs_status batch_init(label_batch *b, size_t batch) {
    memset(b, 0, sizeof *b);
    b->prompts = calloc(batch, sizeof *b->prompts);
    b->lens = calloc(batch, sizeof *b->lens);
    b->scores = calloc(batch, sizeof *b->scores);
    return b->prompts && b->lens && b->scores ? RS_OK : RS_ERR_NOMEM;
}

static void batch_free(label_batch *b) {
    free(b->items);
    free(b->prompts);
    free(b->lens);
    free(b->scores);
    rs_buf_free(&b->arena);
}

static rs_status batch_push(label_batch *b, uint64_t line, const char *id, int is_error, const char *text,
                            size_t len) {
    if (b->n_items == b->cap_items) {
        size_t cap = b->cap_items ? 2 * b->cap_items : 128;
        label_item *it = realloc(b->items, cap * sizeof *it);
        if (!it) return RS_ERR_NOMEM;
        b->items = it;
        b->cap_items = cap;
    }
    label_item *it = &b->items[b->n_items];
    it->line = line;
    it->is_error = is_error;
    it->id_off = b->arena.len;
    if (rs_buf_append(&b->arena, id, strlen(id) + 1) != RS_OK) return RS_ERR_NOMEM;
    it->text_off = b->arena.len;
    it->text_len = len;
    if (rs_buf_append(&b->arena, text, len) != RS_OK || rs_buf_append(&b->arena, "", 1) != RS_OK)
        return RS_ERR_NOMEM;
    it->prompt_idx = is_error ? 0 : b->n_prompts++;
    b->n_items++;
    return RS_OK;
}

/* Scores the batch's prompts and writes every item in input order. */
static rs_status batch_flush(label_batch *b, rs_engine *e, const label_opts *o, const label_out *lo,
                             uint64_t *n_errors, rs_err *err) {
    if (b->n_items == 0) return RS_OK;
    for (size_t i = 0; i < b->n_items; i++) {
        const label_item *it = &b->items[i];
        if (it->is_error) continue;
        b->prompts[it->prompt_idx] = b->arena.data + it->text_off;
        b->lens[it->prompt_idx] = it->text_len;
    }
    if (b->n_prompts) {
        memset(b->scores, 0, b->n_prompts * sizeof *b->scores);
        rs_status st = rs_engine_score(e, b->prompts, b->lens, b->n_prompts, (float)o->threshold, b->scores, err);
        if (st != RS_OK) return st;
    }
    FILE *out = lo->f;
    char *mbuf = NULL;
    size_t mlen = 0;
    if (lo->gz && !(out = open_memstream(&mbuf, &mlen))) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < b->n_items; i++) {
        const label_item *it = &b->items[i];
        const char *id = b->arena.data + it->id_off;
        if (i < b->suppress) continue;
        if (it->is_error) {
            rs_cli_write_error_json(out, id, it->line, b->arena.data + it->text_off);
            (*n_errors)++;
            continue;
        }
        const rs_score *s = &b->scores[it->prompt_idx];
        if (s->status != RS_OK) {
            rs_cli_write_error_json(out, id, it->line, s->error[0] ? s->error : rs_status_str(s->status));
            (*n_errors)++;
        } else {
            rs_cli_write_score_json(out, id, s);
        }
    }
    b->n_items = b->n_prompts = b->suppress = 0;
    b->arena.len = 0;
    if (lo->gz) {
        int bad = fclose(out) != 0;
        rs_status st = bad ? rs_errf(err, RS_ERR_NOMEM, "out of memory")
                           : mlen ? rs_label_gz_member(lo->f, mbuf, mlen, err) : RS_OK;
        free(mbuf);
        if (st != RS_OK) return rs_errf(err, st, "--out %s: %s", o->out, err->msg);
        out = lo->f;
    }
    /* Every batch reaches the kernel before the next is read: a kill loses
     * at most the batch in flight, and --resume picks up from there. */
    if (fflush(out) != 0 || ferror(out))
        return rs_errf(err, RS_ERR_IO, "--out %s: write failed: %s", o->out, strerror(errno));
    return RS_OK;
}

/* Turns one input line into a batch item (a prompt or an error record). */
static rs_status take_line(label_batch *b, const label_opts *o, const char *line, size_t len, uint64_t line_no,
                           rs_buf *scratch) {
    char id[ID_MAX];
    snprintf(id, sizeof id, "%llu", (unsigned long long)line_no);
    rs_err e = {{0}};
    if (rs_json_check_text(line, len, &e) != RS_OK) return batch_push(b, line_no, id, 1, e.msg, strlen(e.msg));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (!root) {
        size_t at = end && end >= line && end <= line + len ? (size_t)(end - line) : 0;
        snprintf(e.msg, sizeof e.msg, "invalid JSON near byte offset %zu", at);
        return batch_push(b, line_no, id, 1, e.msg, strlen(e.msg));
    }
    rs_status st;
    if (!rs_jsonl_line_is_blank(end, (size_t)(line + len - end))) {
        snprintf(e.msg, sizeof e.msg, "invalid JSON: trailing data at byte offset %zu", (size_t)(end - line));
        st = batch_push(b, line_no, id, 1, e.msg, strlen(e.msg));
    } else {
        rs_cli_record_id(root, o->id_field, line_no, id, sizeof id);
        const char *text;
        size_t tlen;
        if (rs_cli_extract_prompt(root, o->field, scratch, &text, &tlen, &e) != RS_OK)
            st = batch_push(b, line_no, id, 1, e.msg, strlen(e.msg));
        else
            st = batch_push(b, line_no, id, 0, text, tlen);
    }
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------- the run */

int rs_cli_label(int argc, char **argv) {
    label_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0) return rc;

    char model_buf[4096];
    char safe[2048]; /* error messages can quote corrupt files: escaped */
    if (!o.model) {
        rs_status st = rs_cli_default_model(model_buf, sizeof model_buf);
        if (st != RS_OK) {
            fprintf(stderr, "routescore label: no --model given and no default router found (tried %s)\n",
                    st == RS_ERR_NOT_FOUND ? model_buf : "$ROUTESCORE_MODEL");
            return 2;
        }
        o.model = model_buf;
    }

    rs_err err = {{0}};
    rs_jsonl *in = NULL;
    label_out out = {NULL, 0};
    rs_engine *eng = NULL;
    label_batch batch;
    rs_buf scratch = {0};
    rs_label_csv csv;
    int have_csv = 0, resuming = 0;
    uint64_t skip = 0, n_errors = 0, n_done = 0;
    rc = 2;
    if (batch_init(&batch, (size_t)o.batch) != RS_OK) {
        fprintf(stderr, "routescore label: out of memory\n");
        goto done;
    }
    /* Input and output first: their mistakes are cheaper to hear about than
     * a model load. The head of the input decides its format and refuses
     * what label cannot read, before a single record. */
    const char *head;
    size_t head_len;
    if (rs_jsonl_open(o.in, 0, &in, &err) != RS_OK || rs_jsonl_peek(in, &head, &head_len, &err) != RS_OK ||
        rs_label_sniff(o.in, head, head_len, &o.format, &err) != RS_OK) {
        fprintf(stderr, "routescore label: --in %s\n", rs_cli_safe_msg(err.msg, safe, sizeof safe));
        goto done;
    }
    if (o.column && o.format != RS_LABEL_CSV) {
        fprintf(stderr, "routescore label: --column names a CSV column; for JSON lines use --field\n");
        goto done;
    }
    if (o.format == RS_LABEL_CSV && o.field) {
        fprintf(stderr, "routescore label: --field is a JSON path; for CSV name the column with --column\n");
        goto done;
    }
    if (check_output(&o, &resuming, &err) != RS_OK) {
        fprintf(stderr, "routescore label: %s\n", rs_cli_safe_msg(err.msg, safe, sizeof safe));
        goto done;
    }
    if (o.format == RS_LABEL_CSV) {
        have_csv = 1;
        if (rs_label_csv_open(&csv, in, o.column, o.id_field, &err) != RS_OK) {
            fprintf(stderr, "routescore label: --in %s: %s\n", o.in, rs_cli_safe_msg(err.msg, safe, sizeof safe));
            goto done;
        }
    }

    rs_engine_opts eo;
    rs_engine_opts_default(&eo);
    eo.n_threads = (int)o.threads;
    eo.max_tokens = (int)o.max_tokens;
    if (o.backend) eo.backend = o.backend;
    eo.device = (int)o.device;
    eo.precision = o.precision;
    if (rs_engine_open(o.model, &eo, &eng, &err) != RS_OK) {
        fprintf(stderr, "routescore label: --model %s: %s\n", o.model, rs_cli_safe_msg(err.msg, safe, sizeof safe));
        goto done;
    }
    if (open_output(&o, resuming, eng, &out, &skip, &n_errors, &err) != RS_OK) {
        fprintf(stderr, "routescore label: %s\n", rs_cli_safe_msg(err.msg, safe, sizeof safe));
        goto done;
    }
    setvbuf(out.f, NULL, _IOFBF, 1u << 20);

    rs_cli_progress prog;
    int tty = isatty(STDERR_FILENO);
    double every = o.progress_every >= 0 ? o.progress_every : 30.0;
    int lines = !o.quiet && every > 0 && (!tty || o.progress_every >= 0);
    int show = !o.quiet && tty && !lines;
    uint64_t total = 0;
    if ((show || lines) && o.format == RS_LABEL_JSONL && !rs_jsonl_is_gzip(in)) {
        uint64_t nlines;
        rs_err ignore;
        if (rs_jsonl_count_lines(o.in, &nlines, &ignore) == RS_OK && nlines > (uint64_t)o.shard_i)
            total = (nlines - (uint64_t)o.shard_i + (uint64_t)o.shard_n - 1) / (uint64_t)o.shard_n;
    }
    rs_cli_progress_init(&prog, show, total);
    if (lines) rs_cli_progress_lines(&prog, every, "label");
    n_done = skip;
    prog.base = skip;
    rs_cli_progress_update(&prog, n_done);

    /* Skip whole batches already written; re-run the batch K falls in. */
    uint64_t to_skip = skip - skip % (uint64_t)o.batch;
    batch.suppress = (size_t)(skip - to_skip);
    rs_label_csv_rec rec;
    for (;;) {
        const char *line = NULL;
        size_t len = 0;
        uint64_t line_no = 0;
        int eof = 0, blank = 0;
        rs_status st;
        if (have_csv) {
            st = rs_label_csv_next(&csv, &rec, &eof, &err);
            line_no = rec.line;
            blank = rec.blank;
        } else {
            st = rs_jsonl_next(in, &line, &len, &line_no, &err);
            eof = st == RS_OK && !line;
            blank = st == RS_OK && line && rs_jsonl_line_is_blank(line, len);
        }
        if (st != RS_OK && st != RS_ERR_TOO_LARGE) {
            /* The partial batch is dropped, not scored: the output stays a
             * whole number of batches, which --resume relies on. */
            fprintf(stderr, "routescore label: --in %s (after line %llu; rerun with --resume once fixed)\n",
                    err.msg, (unsigned long long)line_no);
            goto done;
        }
        if (eof) break;
        if ((line_no - 1) % (uint64_t)o.shard_n != (uint64_t)o.shard_i) continue;
        if (blank) continue;
        if (to_skip) {
            to_skip--;
            continue;
        }
        rs_status pst;
        if (have_csv) {
            pst = rec.bad ? batch_push(&batch, line_no, rec.id, 1, rec.msg, strlen(rec.msg))
                          : batch_push(&batch, line_no, rec.id, 0, rec.prompt, rec.prompt_len);
        } else if (st == RS_ERR_TOO_LARGE) {
            char id[32];
            snprintf(id, sizeof id, "%llu", (unsigned long long)line_no);
            pst = batch_push(&batch, line_no, id, 1, err.msg, strlen(err.msg));
        } else {
            pst = take_line(&batch, &o, line, len, line_no, &scratch);
        }
        if (pst != RS_OK) {
            fprintf(stderr, "routescore label: out of memory at line %llu\n", (unsigned long long)line_no);
            goto done;
        }
        if (batch.n_items == (size_t)o.batch) {
            size_t k = batch.n_items - batch.suppress;
            if (batch_flush(&batch, eng, &o, &out, &n_errors, &err) != RS_OK) {
                fprintf(stderr, "routescore label: %s (the output so far is complete; fix and rerun with --resume)\n",
                        rs_cli_safe_msg(err.msg, safe, sizeof safe));
                goto done;
            }
            n_done += k;
            rs_cli_progress_update(&prog, n_done);
        }
    }
    size_t k = batch.n_items > batch.suppress ? batch.n_items - batch.suppress : 0;
    if (batch_flush(&batch, eng, &o, &out, &n_errors, &err) != RS_OK) {
        fprintf(stderr, "routescore label: %s (the output so far is complete; fix and rerun with --resume)\n",
                rs_cli_safe_msg(err.msg, safe, sizeof safe));
        goto done;
    }
    n_done += k;
    rs_cli_progress_update(&prog, n_done);
    rs_cli_progress_finish(&prog);
    if (!o.quiet)
        fprintf(stderr, "routescore label: %llu records (%llu resumed), %llu errors -> %s\n",
                (unsigned long long)n_done, (unsigned long long)skip, (unsigned long long)n_errors, o.out);
    rc = n_errors ? 1 : 0;

done:
    if (out.f && out.f != stdout) {
        if (fclose(out.f) != 0 && rc != 2) {
            fprintf(stderr, "routescore label: --out %s: close failed: %s\n", o.out, strerror(errno));
            rc = 2;
        }
    } else if (out.f == stdout && fflush(stdout) != 0) {
        rc = 2;
    }
    rs_engine_close(eng);
    if (have_csv) rs_label_csv_free(&csv);
    rs_jsonl_close(in);
    batch_free(&batch);
    rs_buf_free(&scratch);
    return rc;
}
