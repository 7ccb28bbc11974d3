/* cli_bench.c — `routescore bench`: the engine's throughput on a prompt file,
 * and (--gemm-peak) the GEMM library's own rate here, so benchmarks can state
 * the engine as a fraction of the hardware limit. One JSON object out. */
#include <getopt.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_common.h"
#include "cli_engine.h"

static void usage(FILE *f) {
    fprintf(f, "usage: routescore bench [--model DIR] --in FILE [--field PATH] [--limit N] [--repeat R] [--threads N]\n"
               "                       [--batch B] [--backend cpu|cuda|auto] [--device N] [--batch-tokens N]\n"
               "                       [--max-tokens N] [--precision fp32|bf16|bf16-emulated]\n"
               "       routescore bench [--model DIR] --synthetic LEN [--batch B] [--iters N] [--backend ...]\n"
               "       routescore bench --gemm-peak [--threads N] [--precision fp32|bf16]\n"
               "\n"
               "Scores (or, for a bare encoder, embeds) the file's prompts R times after one warm-up\n"
               "pass and prints {prompts, tokens, seconds, prompts_per_s, tokens_per_s, gflops,\n"
               "tokenize_seconds}; with --batch B, in calls of B prompts (default: all in one call),\n"
               "adding the p50/p99 latency of one call. --synthetic scores B random token sequences of LEN ids (fixed\n"
               "seed; no tokenizer needed) N times after a warm-up and prints prompts_per_s, tflops\n"
               "and the p50/p99 latency of one call. --gemm-peak prints the sgemm rate at M=2048\n"
               "N=1536 K=384 (with --precision bf16: oneDNN's bf16 matmul at that shape).\n"
               "--precision P: the CPU GEMMs' precision (fp32, bf16, bf16-emulated).\n");
}

/* --synthetic: the forward pass alone on random ids, for routers without a
 * tokenizer (benchmarks/gpu/ generates XLM-R-shaped random weights). */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_synthetic(const rs_cli_engine_flags *fl, long len, long batch, long iters) {
    rs_engine *e = rs_cli_open_engine("bench", fl);
    if (!e) return 2;
    rs_router_info info;
    rs_engine_info(e, &info);
    if (len > info.max_tokens) {
        fprintf(stderr, "routescore bench: --synthetic %ld exceeds the router's %d tokens\n", len, info.max_tokens);
        rs_engine_close(e);
        return 2;
    }
    int32_t *ids = malloc((size_t)(len * batch) * sizeof *ids);
    size_t *offsets = malloc((size_t)(batch + 1) * sizeof *offsets);
    rs_score *out = calloc((size_t)batch, sizeof *out);
    float *emb = strcmp(info.kind, "embed") ? NULL : malloc((size_t)batch * (size_t)info.embed_dim * sizeof *emb);
    double *lat = malloc((size_t)iters * sizeof *lat);
    int rc = 0;
    if (!ids || !offsets || !out || !lat || (!strcmp(info.kind, "embed") && !emb)) {
        rc = 2;
        goto done;
    }
    uint64_t x = 0x2545f4914f6cdd1dull; /* fixed seed: every run scores the same ids */
    offsets[0] = 0;
    for (long b = 0; b < batch; b++) {
        for (long t = 0; t < len; t++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* ids 0..3 are specials in XLM-R; stay clear of them. */
            ids[b * len + t] = info.vocab_size > 8 ? 4 + (int32_t)(x % (uint64_t)(info.vocab_size - 4)) : 0;
        }
        offsets[b + 1] = offsets[b] + (size_t)len;
    }
    rs_err err = {{0}};
    double total = 0;
    for (long it = -1; it < iters; it++) { /* it -1 warms up */
        double t0 = rs_clock_now();
        rs_status st = emb ? rs_engine_embed_tokens(e, ids, offsets, (size_t)batch, emb, &err)
                           : rs_engine_score_tokens(e, ids, offsets, (size_t)batch, NAN, out, &err);
        double dt = rs_clock_now() - t0;
        if (st != RS_OK) {
            fprintf(stderr, "routescore bench: %s: %s\n", rs_status_str(st), err.msg);
            rc = 2;
            goto done;
        }
        if (it >= 0) {
            lat[it] = dt;
            total += dt;
        }
    }
    qsort(lat, (size_t)iters, sizeof *lat, cmp_double);
    const double flops = rs_engine_flops(e, offsets, (size_t)batch);
    const double p50 = lat[(iters - 1) / 2], p99 = lat[(size_t)((double)(iters - 1) * 0.99 + 0.5)];
    printf("{\"router\":\"%s\",\"backend\":\"%s\",\"len\":%ld,\"batch\":%ld,\"iters\":%ld,\"seconds\":%.4f,"
           "\"prompts_per_s\":%.1f,\"tokens_per_s\":%.1f,\"tflops\":%.3f,\"gflop_per_call\":%.3f,"
           "\"p50_ms\":%.4f,\"p99_ms\":%.4f}\n",
           info.name, rs_engine_backend(e), len, batch, iters, total, (double)(batch * iters) / total,
           (double)(batch * len * iters) / total, flops * (double)iters / total / 1e12, flops / 1e9, p50 * 1e3,
           p99 * 1e3);
done:
    free(ids);
    free(offsets);
    free(out);
    free(emb);
    free(lat);
    rs_engine_close(e);
    return rc;
}

/* The bf16 GEMM peak: oneDNN's matmul at the same fixed shape, bf16 inputs
 * (weights in its packed layout, reordered before timing), fp32
 * accumulation and output: the best case of the bf16 precision's linear. */
static double bf16_peak(long M, long N, long K, long reps, const char **impl) {
    dnnl_engine_t eng = NULL;
    dnnl_stream_t strm = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, mw = NULL, md = NULL;
    dnnl_memory_desc_t src, wei, dst;
    dnnl_dims_t sd = {M, K}, wd = {K, N}, dd = {M, N};
    dnnl_matmul_desc_t desc;
    double rate = -1;
    *impl = "none";
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&strm, eng, dnnl_stream_default_flags) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&src, 2, sd, dnnl_bf16, dnnl_ab) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&wei, 2, wd, dnnl_bf16, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab) != dnnl_success ||
        dnnl_matmul_desc_init(&desc, &src, &wei, NULL, &dst) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL) != dnnl_success ||
        dnnl_primitive_create(&prim, pd) != dnnl_success)
        goto done;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, impl);
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (dnnl_memory_create(&ms, &src, eng, DNNL_MEMORY_ALLOCATE) != dnnl_success ||
        dnnl_memory_create(&mw, wq, eng, DNNL_MEMORY_ALLOCATE) != dnnl_success ||
        dnnl_memory_create(&md, &dst, eng, DNNL_MEMORY_ALLOCATE) != dnnl_success)
        goto done;
    void *p;
    /* Small bf16 values (0x3c00.. ~ 0.0078): no overflow, no denormals. */
    dnnl_memory_get_data_handle(ms, &p);
    for (long i = 0; i < M * K; i++) ((uint16_t *)p)[i] = (uint16_t)(0x3c00 + i % 13);
    dnnl_memory_get_data_handle(mw, &p);
    memset(p, 0x3c, dnnl_memory_desc_get_size(wq));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}};
    if (dnnl_primitive_execute(prim, strm, 3, args) != dnnl_success || dnnl_stream_wait(strm) != dnnl_success)
        goto done; /* the warm-up */
    double t0 = rs_clock_now();
    for (long r = 0; r < reps; r++) dnnl_primitive_execute(prim, strm, 3, args);
    dnnl_stream_wait(strm);
    rate = 2.0 * M * N * K * reps / (rs_clock_now() - t0) / 1e9;
done:
    if (ms) dnnl_memory_destroy(ms);
    if (mw) dnnl_memory_destroy(mw);
    if (md) dnnl_memory_destroy(md);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (strm) dnnl_stream_destroy(strm);
    if (eng) dnnl_engine_destroy(eng);
    return rate;
}

static int gemm_peak(long threads, const char *precision) {
    const long M = 2048, N = 1536, K = 384, reps = 20;
    if (threads) omp_set_num_threads((int)threads);
    if (precision && strcmp(precision, "fp32")) {
        if (strcmp(precision, "bf16") && strcmp(precision, "bf16-emulated")) {
            fprintf(stderr, "routescore bench: unknown precision '%s' (fp32, bf16, bf16-emulated)\n", precision);
            return 2;
        }
        const char *impl;
        double rate = bf16_peak(M, N, K, reps, &impl);
        if (rate < 0) {
            fprintf(stderr, "routescore bench: oneDNN has no bf16 matmul on this CPU\n");
            return 1;
        }
        dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
        printf("{\"gemm\":\"dnnl_matmul_bf16\",\"impl\":\"%s\",\"native_bf16\":%s,\"m\":%ld,\"n\":%ld,\"k\":%ld,"
               "\"threads\":%d,\"gemm_gflops\":%.1f}\n", impl,
               (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16 ? "true" : "false", M, N, K,
               omp_get_max_threads(), rate);
        return 0;
    }
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * N * K), *C = malloc(sizeof(float) * M * N);
    if (!A || !B || !C) return 2;
    for (long i = 0; i < M * K; i++) A[i] = (float)(i % 13) * 0.01f;
    for (long i = 0; i < N * K; i++) B[i] = (float)(i % 7) * 0.01f;
    dnnl_sgemm('N', 'T', M, N, K, 1.f, A, K, B, K, 0.f, C, N); /* warm-up */
    double t0 = rs_clock_now();
    for (long r = 0; r < reps; r++) dnnl_sgemm('N', 'T', M, N, K, 1.f, A, K, B, K, 0.f, C, N);
    double dt = rs_clock_now() - t0;
    printf("{\"gemm\":\"dnnl_sgemm\",\"m\":%ld,\"n\":%ld,\"k\":%ld,\"threads\":%d,\"gemm_gflops\":%.1f}\n", M, N, K,
           omp_get_max_threads(), 2.0 * M * N * K * reps / dt / 1e9);
    free(A);
    free(B);
    free(C);
    return 0;
}

int rs_cli_bench(int argc, char **argv) {
    static const struct option LONG[] = {
        {"model", required_argument, 0, 'm'},   {"in", required_argument, 0, 'i'},
        {"field", required_argument, 0, 'f'},   {"limit", required_argument, 0, 'n'},
        {"repeat", required_argument, 0, 'r'},  {"threads", required_argument, 0, 'j'},
        {"gemm-peak", no_argument, 0, 'g'},     {"help", no_argument, 0, 'h'},
        RS_CLI_BACKEND_OPTIONS('B', 'D'), RS_CLI_PRECISION_OPTION('P'),
        {"batch-tokens", required_argument, 0, 'T'}, {"synthetic", required_argument, 0, 'S'},
        {"max-tokens", required_argument, 0, 'x'},
        {"batch", required_argument, 0, 'b'},   {"iters", required_argument, 0, 'I'},
        {0, 0, 0, 0}};
    rs_cli_engine_flags fl = {0};
    const char *in = NULL, *field = NULL;
    long limit = 1L << 30, repeat = 1, synthetic = 0, batch = 0, iters = 20; /* batch 0: 1 (synthetic), all (file) */
    int peak = 0;
    rs_err err = {{0}};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "m:i:f:n:r:j:gh", LONG, NULL)) != -1;) {
        rs_status st = RS_OK;
        switch (c) {
        case 'm': fl.model = optarg; break;
        case 'i': in = optarg; break;
        case 'f': field = optarg; st = rs_cli_path_check(optarg, &err); break;
        case 'n': st = rs_cli_parse_int("--limit", optarg, 1, 1L << 30, &limit, &err); break;
        case 'r': st = rs_cli_parse_int("--repeat", optarg, 1, 1000, &repeat, &err); break;
        case 'j': st = rs_cli_parse_int("--threads", optarg, 1, 1024, &fl.threads, &err); break;
        case 'g': peak = 1; break;
        case 'B': fl.backend = optarg; break;
        case 'P': fl.precision = optarg; break;
        case 'D': st = rs_cli_parse_int("--device", optarg, 0, 1024, &fl.device, &err); break;
        case 'x': st = rs_cli_parse_int("--max-tokens", optarg, 3, 1L << 20, &fl.max_tokens, &err); break;
        case 'T': st = rs_cli_parse_int("--batch-tokens", optarg, 1, 1L << 24, &fl.batch_tokens, &err); break;
        case 'S': st = rs_cli_parse_int("--synthetic", optarg, 1, 1L << 20, &synthetic, &err); break;
        case 'b': st = rs_cli_parse_int("--batch", optarg, 1, 1L << 20, &batch, &err); break;
        case 'I': st = rs_cli_parse_int("--iters", optarg, 1, 1000000, &iters, &err); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (st != RS_OK) {
            fprintf(stderr, "routescore bench: %s\n", err.msg);
            return 2;
        }
    }
    if (peak) return gemm_peak(fl.threads, fl.precision);
    if (synthetic) return bench_synthetic(&fl, synthetic, batch ? batch : 1, iters);
    if (!in) {
        usage(stderr);
        return 2;
    }
    /* Load the prompts first: the timed part is the engine alone. */
    rs_cli_prompts pr;
    if (rs_cli_load_prompts(in, field, (size_t)limit, &pr, &err) != RS_OK) {
        fprintf(stderr, "routescore bench: %s\n", err.msg);
        return 2;
    }
    const size_t n = pr.n;
    size_t *n_own = NULL; /* per prompt: the tokens its own forward computes */
    int rc = 0;
    rs_engine *e = rc ? NULL : rs_cli_open_engine("bench", &fl);
    const char **prompts = calloc(n ? n : 1, sizeof *prompts);
    size_t *lens = calloc(n ? n : 1, sizeof *lens);
    rs_score *out = calloc(n ? n : 1, sizeof *out);
    int32_t *offsets = calloc(n + 1, sizeof *offsets);
    size_t *own = calloc(n + 1, sizeof *own); /* tokens each prompt's own forward computes */
    const size_t per_call = batch > 0 && (size_t)batch < n ? (size_t)batch : n;
    const size_t n_calls = per_call ? (n + per_call - 1) / per_call : 0;
    double *lat = calloc((size_t)repeat * n_calls + 1, sizeof *lat);
    size_t n_lat = 0;
    if (!e || !prompts || !lens || !out || !offsets || !own || !lat || !n) {
        if (e && !n) fprintf(stderr, "routescore bench: no prompts in %s\n", in);
        rc = 2;
        goto done;
    }
    rs_router_info info;
    rs_engine_info(e, &info);
    float *emb = strcmp(info.kind, "embed") ? NULL : malloc(n * (size_t)info.embed_dim * sizeof *emb);
    for (size_t i = 0; i < n; i++) {
        prompts[i] = pr.text[i];
        lens[i] = pr.len[i];
    }
    /* Tokenization alone, one thread, for the split of the time. A causal
     * router's FLOPs count these (the prompt's own tokens): rs_score.tokens
     * also counts the shared prefix, computed once at open. */
    int32_t *ids = malloc((size_t)info.max_tokens * sizeof *ids);
    n_own = calloc(n, sizeof *n_own);
    double t0 = rs_clock_now();
    for (size_t i = 0; ids && n_own && i < n; i++) {
        int trunc;
        rs_engine_tokenize(e, prompts[i], lens[i], ids, (size_t)info.max_tokens, &n_own[i], &trunc, NULL);
    }
    double tok_s = rs_clock_now() - t0;
    free(ids);
    double best = 0;
    for (long rep = 0; rep <= repeat && rc == 0; rep++) { /* rep 0 warms up */
        double dt = 0;
        for (size_t i0 = 0; i0 < n; i0 += per_call) {
            const size_t cnt = n - i0 < per_call ? n - i0 : per_call;
            t0 = rs_clock_now();
            rs_status st = emb ? rs_engine_embed(e, prompts + i0, lens + i0, cnt, emb + i0 * (size_t)info.embed_dim,
                                                 out + i0, &err)
                               : rs_engine_score(e, prompts + i0, lens + i0, cnt, NAN, out + i0, &err);
            const double call = rs_clock_now() - t0;
            if (st != RS_OK) {
                fprintf(stderr, "routescore bench: %s: %s\n", rs_status_str(st), err.msg);
                rc = 2;
                break;
            }
            dt += call;
            if (rep) lat[n_lat++] = call;
        }
        if (rc == 0 && rep && (best == 0 || dt < best)) best = dt;
    }
    free(emb);
    if (rc == 0) {
        size_t ok = 0;
        for (size_t i = 0; i < n; i++)
            if (out[i].status == RS_OK) {
                offsets[ok + 1] = offsets[ok] + out[i].tokens;
                own[ok + 1] = own[ok] + (n_own && !strcmp(info.kind, "causal_llm") ? n_own[i] : (size_t)out[i].tokens);
                ok++;
            }
        double flops = rs_engine_flops(e, own, ok);
        qsort(lat, n_lat, sizeof *lat, cmp_double);
        const double p50 = n_lat ? lat[(n_lat - 1) / 2] : 0,
                     p99 = n_lat ? lat[(size_t)((double)(n_lat - 1) * 0.99 + 0.5)] : 0;
        printf("{\"router\":\"%s\",\"kind\":\"%s\",\"backend\":\"%s\",\"precision\":\"%s\",\"threads\":%d,\"prompts\":%zu,\"tokens\":%d,\"seconds\":%.4f,"
               "\"prompts_per_s\":%.1f,\"tokens_per_s\":%.1f,\"gflops\":%.1f,\"tokenize_seconds\":%.4f,"
               "\"batch\":%zu,\"calls\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
               info.name, info.kind, rs_engine_backend(e), rs_engine_precision(e), omp_get_max_threads(), ok, offsets[ok], best, ok / best, offsets[ok] / best,
               flops / best / 1e9, tok_s, per_call, n_calls, p50 * 1e3, p99 * 1e3);
    }
done:
    rs_cli_prompts_free(&pr);
    free(prompts);
    free(lens);
    free(out);
    free(offsets);
    free(own);
    free(n_own);
    free(lat);
    rs_engine_close(e);
    return rc;
}
