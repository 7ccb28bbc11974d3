/* cli_calibrate.c — `routescore calibrate`: RouteLLM's threshold calibration.
 *
 * A threshold only means something for one router on one kind of traffic.
 * RouteLLM sets it to the (1 - f) quantile (linear interpolation, numpy's
 * default) of the router's scores on a sample of real prompts, so that a
 * share f of that traffic goes to the strong model. This command scores the
 * sample with the router and writes that quantile into the router's manifest
 * (routescore.json, "threshold"; the other keys are kept), atomically (a
 * temporary file renamed over the old one). A running `routescore serve`
 * picks it up on SIGHUP. For traffic that drifts, see the server's online
 * mode (docs/SERVING.md). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_common.h"
#include "pins.h"
#include "cli_engine.h"
#include "engine.h"
#include "eval.h"
#include "manifest.h"

static void usage(FILE *f) {
    fprintf(f, "usage: routescore calibrate [--model DIR] --in FILE --strong-share F[,F2...] [--field PATH]\n"
               "                            [--holdout-every K] [--limit N] [--threads N] [--dry-run]\n"
               "\n"
               "Scores the prompts of FILE (JSON lines, plain or gzip) with the router and sets its\n"
               "threshold to the (1 - F) quantile of the scores (RouteLLM's rule: a share F of such\n"
               "traffic is routed strong). Writes the first share's threshold into\n"
               "DIR/routescore.json (created if absent; other keys kept) unless --dry-run.\n"
               "--holdout-every K keeps every K-th prompt (0-based index %% K == 0) out of the\n"
               "quantile and reports the strong share each threshold gives on them. Prints one\n"
               "JSON line per share.\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Share of scores routed strong by threshold t, compared in float as the
 * engine decides. */
static double strong_share(const double *v, size_t n, double t) {
    size_t strong = 0;
    for (size_t i = 0; i < n; i++) strong += (float)v[i] >= (float)t;
    return n ? (double)strong / (double)n : NAN;
}

static int write_manifest(const char *dir, double threshold, char *path, size_t pn) {
    snprintf(path, pn, "%s/routescore.json", dir);
    /* the manifest as open reads it: one that would not open is left alone */
    rs_manifest man;
    int found = 0;
    rs_err merr;
    if (rs_manifest_open(dir, &man, &found, &merr) != RS_OK) {
        fprintf(stderr, "routescore calibrate: %s; not touching it\n", merr.msg);
        return 2;
    }
    cJSON *m = found ? man.json : cJSON_CreateObject();
    man.json = NULL; /* m is ours now */
    rs_manifest_close(&man);
    if (!m) return 2;
    cJSON_DeleteItemFromObjectCaseSensitive(m, "threshold");
    cJSON_AddNumberToObject(m, "threshold", threshold);
    char *text = cJSON_Print(m);
    cJSON_Delete(m);
    /* a pinned manifest's own pin follows the new threshold (computed over
     * the form open parses back) */
    m = text ? cJSON_Parse(text) : NULL;
    rs_err err;
    if (m && cJSON_GetObjectItemCaseSensitive(m, "sha256")) {
        free(text);
        text = rs_pins_update_manifest(m, &err) == RS_OK ? cJSON_Print(m) : NULL;
    }
    cJSON_Delete(m);
    if (!text) return 2;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = (fflush(f) == 0) & (fsync(fileno(f)) == 0) & (fclose(f) == 0) & ok;
    free(text);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        fprintf(stderr, "routescore calibrate: cannot write %s\n", path);
        return 2;
    }
    return 0;
}

int rs_cli_calibrate(int argc, char **argv) {
    static const struct option LONG[] = {
        {"model", required_argument, 0, 'm'},        {"in", required_argument, 0, 'i'},
        {"field", required_argument, 0, 'f'},        {"strong-share", required_argument, 0, 's'},
        {"limit", required_argument, 0, 'n'},        {"threads", required_argument, 0, 'j'},
        {"dry-run", no_argument, 0, 'd'},            {"holdout-every", required_argument, 0, 'k'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    rs_cli_engine_flags fl = {0};
    const char *in = NULL, *field = NULL;
    double shares[16];
    int n_shares = 0;
    long limit = 1L << 30, holdout = 0;
    int dry = 0;
    rs_err err = {{0}};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "m:i:f:s:n:j:k:dh", LONG, NULL)) != -1;) {
        rs_status st = RS_OK;
        switch (c) {
        case 'm': fl.model = optarg; break;
        case 'i': in = optarg; break;
        case 'f': field = optarg; st = rs_cli_path_check(optarg, &err); break;
        case 's': {
            /* A comma-separated list; each must be in (0, 1]; no empty item. */
            char buf[512];
            snprintf(buf, sizeof buf, "%s", optarg);
            n_shares = 0;
            for (char *tok = buf; st == RS_OK && tok;) {
                char *comma = strchr(tok, ',');
                if (comma) *comma = 0;
                if (n_shares == 16) st = rs_errf(&err, RS_ERR_INVALID_ARG, "--strong-share: at most 16 shares");
                else st = rs_cli_parse_float("--strong-share", tok, 0, 1, &shares[n_shares++], &err);
                tok = comma ? comma + 1 : NULL;
            }
            if (st == RS_OK && n_shares == 0) st = rs_errf(&err, RS_ERR_INVALID_ARG, "--strong-share: no value");
            break;
        }
        case 'k': st = rs_cli_parse_int("--holdout-every", optarg, 0, 1L << 30, &holdout, &err); break;
        case 'n': st = rs_cli_parse_int("--limit", optarg, 1, 1L << 30, &limit, &err); break;
        case 'j': st = rs_cli_parse_int("--threads", optarg, 1, 1024, &fl.threads, &err); break;
        case 'd': dry = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (st != RS_OK) {
            fprintf(stderr, "routescore calibrate: %s\n", err.msg);
            return 2;
        }
    }
    if (!in || n_shares == 0 || optind < argc) {
        usage(stderr);
        return 2;
    }
    for (int k = 0; k < n_shares; k++)
        if (!(shares[k] > 0)) {
            fprintf(stderr, "routescore calibrate: --strong-share must be in (0, 1]\n");
            return 2;
        }
    if (holdout == 1) {
        fprintf(stderr, "routescore calibrate: --holdout-every 1 would hold out everything (0: no holdout)\n");
        return 2;
    }
    /* The sample first: every usable prompt, in file order. */
    rs_cli_prompts pr;
    if (rs_cli_load_prompts(in, field, (size_t)limit, &pr, &err) != RS_OK) {
        fprintf(stderr, "routescore calibrate: %s\n", err.msg);
        return 2;
    }
    char **texts = pr.text;
    size_t *lens = pr.len, n = pr.n, skipped = pr.skipped;
    int rc = 2;
    if (n == 0) {
        fprintf(stderr, "routescore calibrate: no usable prompt in %s\n", in);
        goto out;
    }
    rs_engine *e = rs_cli_open_engine("calibrate", &fl);
    if (!e) goto out;
    rs_router_info info;
    rs_engine_info(e, &info);
    char name[256]; /* info's strings belong to the engine, closed below */
    snprintf(name, sizeof name, "%s", info.name);
    const double prev = info.threshold;
    /* scores: the calibration part; held: every holdout-th prompt. */
    double *scores = malloc(n * sizeof *scores), *held = malloc(n * sizeof *held);
    rs_score *out = malloc(256 * sizeof *out);
    size_t m = 0, mh = 0;
    for (size_t g = 0; scores && held && out && g < n; g += 256) {
        size_t k = n - g < 256 ? n - g : 256;
        if (rs_engine_score(e, (const char *const *)texts + g, lens + g, k, NAN, out, &err) != RS_OK) {
            fprintf(stderr, "routescore calibrate: %s\n", err.msg);
            m = 0;
            break;
        }
        for (size_t i = 0; i < k; i++) {
            if (out[i].status != RS_OK)
                skipped++;
            else if (holdout && (g + i) % (size_t)holdout == 0)
                held[mh++] = out[i].win_prob;
            else
                scores[m++] = out[i].win_prob;
        }
    }
    char model_dir[4096];
    snprintf(model_dir, sizeof model_dir, "%s", fl.model ? fl.model : "");
    if (!fl.model && rs_cli_default_model(model_dir, sizeof model_dir) != RS_OK) m = 0;
    rs_engine_close(e);
    free(out);
    if (m > 0) {
        qsort(scores, m, sizeof *scores, cmp_double);
        double thr[16];
        for (int k = 0; k < n_shares; k++) thr[k] = rs_eval_quantile_sorted(scores, m, 1.0 - shares[k]);
        char path[4200] = "";
        rc = dry ? 0 : write_manifest(model_dir, thr[0], path, sizeof path);
        for (int k = 0; rc == 0 && k < n_shares; k++) {
            printf("{\"router\":");
            rs_cli_write_json_string(stdout, name, strlen(name));
            printf(",\"prompts\":%zu,\"heldout\":%zu,\"skipped\":%zu,\"strong_share\":%.9g,\"threshold\":%.9g,"
                   "\"previous_threshold\":%.9g,\"sample_strong_share\":%.6f,\"heldout_strong_share\":",
                   m, mh, skipped, shares[k], thr[k], prev, strong_share(scores, m, thr[k]));
            if (mh)
                printf("%.6f", strong_share(held, mh, thr[k]));
            else
                printf("null");
            printf(",\"written\":");
            if (dry || k > 0)
                printf("null}\n");
            else {
                rs_cli_write_json_string(stdout, path, strlen(path));
                printf("}\n");
            }
        }
    }
    free(held);
    free(scores);
out:
    rs_cli_prompts_free(&pr);
    return rc;
}
