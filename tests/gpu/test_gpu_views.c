/* test_gpu_views.c — the CUDA backend's edges that the op tests do not reach:
 *   1. views: every op's activation arguments offset into their buffers by
 *      1 element (2-byte aligned: no 16-byte or pair access may be taken) and
 *      by 8 (16-byte aligned, not 256), against the CPU op on the same
 *      offsets, at widths divisible by 8 (the vector paths' shape);
 *   2. cuBLASLt plans: more GEMM shapes than the plan cache holds (eviction,
 *      then the first shapes again), and token counts that share a plan
 *      bucket (17, 20, 31, 32, 1, 16) one after another;
 *   3. out of device memory at each allocation of backend create, weight
 *      load, activations and an engine open on CUDA: every failure is a
 *      clean status, and (on the simulation tier, which counts them) no
 *      device allocation is left behind;
 *   4. a causal router whose shared prefix (402 tokens) is longer than its
 *      max_tokens (64): the prefix goes through in chunks, the logits agree
 *      with the CPU's as the unchunked ones do.
 * Bounds are the op tests' (gpu_pair.h's normalised error). Exits 77 without
 * CUDA in the build or without a device. Labels gpu (real GPUs) and gpusim. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "engine.h"
#include "gpu_pair.h"
#include "llama.h"
#include "model_files.h"
#include "test_util.h"

#ifndef RS_HAVE_CUDA
int main(void) {
    printf("test_gpu_views: SKIP: this build has no CUDA backend (RS_WITH_CUDA=OFF or no nvcc)\n");
    return 77;
}
#else

#ifdef RS_CUDA_SIM
#include "cudasim_control.h"
#endif

#define MAX_LEN 160
#define MAX_TOKENS 2048

/* A view of p from element off on: the CPU's fp32, the GPU's bf16 (the
 * CUDA backend's activation type). */
static pair view(const pair *p, size_t off) {
    pair v = {p->c + off, (float *)(void *)((uint16_t *)(void *)p->g + off), p->n - off};
    return v;
}

static void views(size_t off) {
    char what[128];
    const int64_t M = 37, K = 64, N = 72, H = 4, D = 16;
    /* linear: x offset with ldx > K, y offset; bias and GELU. */
    {
        wpair w = wpair_new(N, K, 0.5f, 0.f), bias = wpair_new(N, 1, 0.5f, 0.f);
        float *xh = rand_vec((size_t)(M * (K + 8) + off), 1.f);
        pair xb = pair_new(xh, (size_t)(M * (K + 8)) + off), yb = pair_new(NULL, (size_t)(M * N) + off);
        pair x = view(&xb, off), y = view(&yb, off);
        CHECK(cpu->ops->linear(cpu, x.c, K + 8, M, K, w.c, bias.c, RS_ACT_GELU, y.c) == RS_OK);
        CHECK(gpu->ops->linear(gpu, x.g, K + 8, M, K, w.g, bias.g, RS_ACT_GELU, y.g) == RS_OK);
        snprintf(what, sizeof what, "view +%zu: linear M=%lld K=%lld ldx=%lld N=%lld gelu", off, (long long)M,
                 (long long)K, (long long)(K + 8), (long long)N);
        compare(what, &y, (size_t)(M * N), 1e-2);
        pair_free(&xb);
        pair_free(&yb);
        free(xh);
        wpair_free(&w);
        wpair_free(&bias);
    }
    /* add_layernorm and add_rmsnorm, in place on an offset x. */
    {
        wpair g = wpair_new(N, 1, 0.5f, 1.f), beta = wpair_new(N, 1, 0.2f, 0.f);
        float *xh = rand_vec((size_t)(M * N) + off, 1.f), *rh = rand_vec((size_t)(M * N) + off, 1.f);
        pair xb = pair_new(xh, (size_t)(M * N) + off), rb = pair_new(rh, (size_t)(M * N) + off),
             yb = pair_new(NULL, (size_t)(M * N) + off);
        pair x = view(&xb, off), r = view(&rb, off), y = view(&yb, off);
        CHECK(cpu->ops->add_layernorm(cpu, x.c, r.c, g.c, beta.c, 1e-5f, M, N) == RS_OK);
        CHECK(gpu->ops->add_layernorm(gpu, x.g, r.g, g.g, beta.g, 1e-5f, M, N) == RS_OK);
        snprintf(what, sizeof what, "view +%zu: add_layernorm M=%lld N=%lld", off, (long long)M, (long long)N);
        compare(what, &x, (size_t)(M * N), 1e-2);
        CHECK(cpu->ops->add_rmsnorm(cpu, x.c, r.c, g.c, 1e-6f, M, N, y.c) == RS_OK);
        CHECK(gpu->ops->add_rmsnorm(gpu, x.g, r.g, g.g, 1e-6f, M, N, y.g) == RS_OK);
        snprintf(what, sizeof what, "view +%zu: add_rmsnorm M=%lld N=%lld", off, (long long)M, (long long)N);
        compare(what, &y, (size_t)(M * N), 1e-2);
        /* swiglu over the same views */
        CHECK(cpu->ops->swiglu(cpu, x.c, r.c, M * N) == RS_OK);
        CHECK(gpu->ops->swiglu(gpu, x.g, r.g, M * N) == RS_OK);
        snprintf(what, sizeof what, "view +%zu: swiglu n=%lld", off, (long long)(M * N));
        compare(what, &x, (size_t)(M * N), 1e-2);
        pair_free(&xb);
        pair_free(&rb);
        pair_free(&yb);
        free(xh);
        free(rh);
        wpair_free(&g);
        wpair_free(&beta);
    }
    /* embed (BERT), embed_rows, copy_rows, rope: offset outputs / inputs. */
    {
        const int T = 41, V = 50;
        wpair word = wpair_new(V, N, 1.f, 0.f), pos = wpair_new(MAX_LEN, N, 0.5f, 0.f),
              type = wpair_new(2, N, 0.2f, 0.f), g = wpair_new(N, 1, 0.5f, 1.f), beta = wpair_new(N, 1, 0.2f, 0.f);
        int32_t ids[41], pids[41], tids[41], rows[41];
        for (int t = 0; t < T; t++) ids[t] = irand(V), pids[t] = t, tids[t] = t & 1, rows[t] = (t * 7) % T;
        pair ob = pair_new(NULL, (size_t)(T * N) + off), o = view(&ob, off);
        CHECK(cpu->ops->embed(cpu, ids, pids, tids, T, word.c, pos.c, type.c, g.c, beta.c, 1e-5f, (int)N, o.c) == RS_OK);
        CHECK(gpu->ops->embed(gpu, ids, pids, tids, T, word.g, pos.g, type.g, g.g, beta.g, 1e-5f, (int)N, o.g) == RS_OK);
        snprintf(what, sizeof what, "view +%zu: embed T=%d hidden=%lld", off, T, (long long)N);
        compare(what, &o, (size_t)(T * N), 1e-2);
        CHECK(cpu->ops->embed_rows(cpu, word.c, ids, T, o.c) == RS_OK);
        CHECK(gpu->ops->embed_rows(gpu, word.g, ids, T, o.g) == RS_OK);
        snprintf(what, sizeof what, "view +%zu: embed_rows n=%d", off, T);
        compare(what, &o, (size_t)(T * N), 0);
        pair db = pair_new(NULL, (size_t)(T * N) + off), d = view(&db, off);
        CHECK(cpu->ops->copy_rows(cpu, d.c, rows, o.c, NULL, T, N) == RS_OK);
        CHECK(gpu->ops->copy_rows(gpu, d.g, rows, o.g, NULL, T, N) == RS_OK);
        snprintf(what, sizeof what, "view +%zu: copy_rows M=%d N=%lld", off, T, (long long)N);
        compare(what, &d, (size_t)(T * N), 0);
        float inv_freq[36];
        for (int i = 0; i < (int)(N / 4 / 2); i++) inv_freq[i] = powf(10000.f, -2.f * (float)i / (float)(N / 4));
        CHECK(cpu->ops->rope(cpu, d.c, N, T, pids, 4, (int)(N / 4), inv_freq) == RS_OK);
        CHECK(gpu->ops->rope(gpu, d.g, N, T, pids, 4, (int)(N / 4), inv_freq) == RS_OK);
        snprintf(what, sizeof what, "view +%zu: rope M=%d heads=4 D=%lld", off, T, (long long)(N / 4));
        compare(what, &d, (size_t)(T * N), 1e-2);
        pair_free(&ob);
        pair_free(&db);
        wpair_free(&word);
        wpair_free(&pos);
        wpair_free(&type);
        wpair_free(&g);
        wpair_free(&beta);
    }
    /* attention (packed, bidirectional) and pool, offset qkv / out. */
    {
        int32_t offsets[4] = {0, 17, 18, 53};
        const int T = 53;
        float *qh = rand_vec((size_t)(T * 3 * H * D) + off, 1.f);
        pair qb = pair_new(qh, (size_t)(T * 3 * H * D) + off), ob = pair_new(NULL, (size_t)(T * H * D) + off),
             pb = pair_new(NULL, (size_t)(3 * H * D) + off);
        pair q = view(&qb, off), o = view(&ob, off), p = view(&pb, off);
        CHECK(cpu->ops->attention(cpu, q.c, offsets, 3, 35, (int)H, (int)D, o.c) == RS_OK);
        CHECK(gpu->ops->attention(gpu, q.g, offsets, 3, 35, (int)H, (int)D, o.g) == RS_OK);
        snprintf(what, sizeof what, "view +%zu: attention H=%lld D=%lld seqs=3", off, (long long)H, (long long)D);
        compare(what, &o, (size_t)(T * H * D), 2e-2);
        CHECK(cpu->ops->pool(cpu, o.c, offsets, 3, H * D, 1, 1, p.c) == RS_OK);
        CHECK(gpu->ops->pool(gpu, o.g, offsets, 3, H * D, 1, 1, p.g) == RS_OK);
        snprintf(what, sizeof what, "view +%zu: pool mean normalize", off);
        compare(what, &p, (size_t)(3 * H * D), 1e-2);
        /* attention_kv: 2 slots, a prefix of 5, GQA 4/2. */
        const int KV = 2, SL = 24, NP = 5, TQ = 9;
        int32_t slot[9], qpos[9];
        for (int t = 0; t < TQ; t++) slot[t] = t < 5 ? 0 : 1, qpos[t] = t < 5 ? t : t - 5;
        float *kh = rand_vec((size_t)(2 * SL * KV * D) + off, 1.f), *vh = rand_vec((size_t)(2 * SL * KV * D) + off, 1.f),
              *pkh = rand_vec((size_t)(NP * KV * D) + off, 1.f), *pvh = rand_vec((size_t)(NP * KV * D) + off, 1.f);
        pair kb = pair_new(kh, (size_t)(2 * SL * KV * D) + off), vb = pair_new(vh, (size_t)(2 * SL * KV * D) + off),
             pkb = pair_new(pkh, (size_t)(NP * KV * D) + off), pvb = pair_new(pvh, (size_t)(NP * KV * D) + off);
        pair k = view(&kb, off), v = view(&vb, off), pk = view(&pkb, off), pv = view(&pvb, off);
        CHECK(cpu->ops->attention_kv(cpu, q.c, TQ, slot, qpos, pk.c, pv.c, NP, k.c, v.c, SL, (int)H, KV, (int)D, o.c) ==
              RS_OK);
        CHECK(gpu->ops->attention_kv(gpu, q.g, TQ, slot, qpos, pk.g, pv.g, NP, k.g, v.g, SL, (int)H, KV, (int)D, o.g) ==
              RS_OK);
        snprintf(what, sizeof what, "view +%zu: attention_kv heads=%lld/%d D=%lld prefix=%d", off, (long long)H, KV,
                 (long long)D, NP);
        compare(what, &o, (size_t)(TQ * H * D), 2e-2);
        pair_free(&qb);
        pair_free(&ob);
        pair_free(&pb);
        pair_free(&kb);
        pair_free(&vb);
        pair_free(&pkb);
        pair_free(&pvb);
        free(qh);
        free(kh);
        free(vh);
        free(pkh);
        free(pvh);
    }
}

/* 2. More shapes than the plan cache (64) holds, then the first again;
 * token counts sharing a bucket. */
static void plans(void) {
    const int64_t N = 24;
    int worst_fail = 0;
    double worst = 0;
    for (int round = 0; round < 2; round++)
        for (int64_t K = 8; K < 8 + 8 * 70; K += 8) {
            if (round == 1 && K > 8 + 8 * 8) break;
            const int64_t M = 5;
            wpair w = wpair_new(N, K, 0.5f, 0.f);
            float *xh = rand_vec((size_t)(M * K), 1.f);
            pair x = pair_new(xh, (size_t)(M * K)), y = pair_new(NULL, (size_t)(M * N));
            CHECK(cpu->ops->linear(cpu, x.c, K, M, K, w.c, NULL, RS_ACT_NONE, y.c) == RS_OK);
            if (gpu->ops->linear(gpu, x.g, K, M, K, w.g, NULL, RS_ACT_NONE, y.g) != RS_OK) worst_fail++;
            char what[96];
            snprintf(what, sizeof what, "plans round %d: linear M=%lld K=%lld N=%lld", round, (long long)M, (long long)K,
                     (long long)N);
            /* compare prints; keep the log short: only every 16th shape */
            if (K % 128 == 8) {
                worst = fmax(worst, compare(what, &y, (size_t)(M * N), 1e-2));
            } else {
                float *g = malloc((size_t)(M * N) * sizeof *g);
                CHECK(gpu->ops->to_host(gpu, g, y.g, (size_t)(M * N)) == RS_OK);
                double d = 0, ref = 1e-6;
                for (int64_t i = 0; i < M * N; i++) {
                    d = fmax(d, fabs((double)g[i] - (double)y.c[i]));
                    ref = fmax(ref, fabs((double)y.c[i]));
                }
                CHECK_MSG(d / ref <= 1e-2, "%s: %.3e", what, d / ref);
                worst = fmax(worst, d / ref);
                free(g);
            }
            pair_free(&x);
            pair_free(&y);
            free(xh);
            wpair_free(&w);
        }
    CHECK(worst_fail == 0);
    printf("  plans: 69 shapes then 8 again through a 64-plan cache: worst nerr %.2e\n", worst);
    /* One bucket (17..32) and the smallest (1..16), alternating. */
    const int64_t K = 64, counts[] = {17, 20, 31, 32, 1, 16, 20};
    wpair w = wpair_new(N, K, 0.5f, 0.f), bias = wpair_new(N, 1, 0.5f, 0.f);
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        const int64_t M = counts[i];
        float *xh = rand_vec((size_t)(M * K), 1.f);
        pair x = pair_new(xh, (size_t)(M * K)), y = pair_new(NULL, (size_t)(M * N));
        CHECK(cpu->ops->linear(cpu, x.c, K, M, K, w.c, bias.c, RS_ACT_TANH, y.c) == RS_OK);
        CHECK(gpu->ops->linear(gpu, x.g, K, M, K, w.g, bias.g, RS_ACT_TANH, y.g) == RS_OK);
        char what[96];
        snprintf(what, sizeof what, "plans: bucketed token count M=%lld", (long long)M);
        compare(what, &y, (size_t)(M * N), 1e-2);
        pair_free(&x);
        pair_free(&y);
        free(xh);
    }
    wpair_free(&w);
    wpair_free(&bias);
}

#ifdef RS_CUDA_SIM
/* 3. The n-th device allocation fails, for every n until everything fits. */
static void out_of_memory(const char *router) {
    const int base = rs_sim_live_allocs();
    int n, failures = 0;
    for (n = 1; n < 2000; n++) {
        rs_sim_set_fail_alloc(n);
        rs_backend *b = NULL;
        rs_err err = {{0}};
        rs_status st = rs_backend_cuda_create(0, 128, 512, &b, &err);
        rs_bweight *w = NULL;
        float *x = NULL;
        float host[64] = {0};
        if (st == RS_OK) st = b->ops->weight_load(b, host, 8, 8, &w);
        if (st == RS_OK) st = b->ops->alloc(b, 4096, (void **)&x);
        const int done = st == RS_OK;
        if (!done) {
            failures++;
            CHECK_MSG(st == RS_ERR_NOMEM, "allocation %d failing gave status %d (%s), not RS_ERR_NOMEM", n, (int)st,
                      err.msg);
        }
        if (b) {
            b->ops->release(b, x);
            b->ops->weight_free(b, w);
            b->ops->destroy(b);
        }
        CHECK_MSG(rs_sim_live_allocs() == base, "allocation %d failing leaves %d device allocations behind", n,
                  rs_sim_live_allocs() - base);
        if (done) break;
    }
    rs_sim_set_fail_alloc(0);
    printf("  out of memory: backend create + weight + activations: %d failing allocations, each RS_ERR_NOMEM, none "
           "leaked\n",
           failures);
    /* The engine on CUDA: open fails cleanly at each allocation. */
    failures = 0;
    for (n = 1; n < 5000; n++) {
        rs_sim_set_fail_alloc(n);
        rs_engine_opts o;
        rs_engine_opts_default(&o);
        o.backend = "cuda";
        rs_engine *e = NULL;
        rs_err err = {{0}};
        rs_status st = rs_engine_open(router, &o, &e, &err);
        if (st == RS_OK) {
            rs_engine_close(e);
            break;
        }
        failures++;
        CHECK_MSG(st == RS_ERR_NOMEM || st == RS_ERR_BACKEND, "engine open, allocation %d failing: status %d (%s)", n,
                  (int)st, err.msg);
        CHECK_MSG(err.msg[0] != 0, "engine open, allocation %d failing: no message", n);
        CHECK_MSG(rs_sim_live_allocs() == base, "engine open, allocation %d failing leaves %d allocations", n,
                  rs_sim_live_allocs() - base);
    }
    rs_sim_set_fail_alloc(0);
    printf("  out of memory: rs_engine_open(%s, cuda): %d failing allocations, each a clean error, none leaked\n",
           router, failures);
    CHECK(failures > 5);
}
#endif

/* 4. A prefix longer than max_tokens goes through in chunks. */
static void long_prefix(const char *dir) {
    rs_err err = {{0}};
    rs_model_files *files = NULL;
    CHECK_MSG(rs_model_files_open(dir, &files, &err) == RS_OK, "%s", err.msg);
    if (!files) return;
    const int NP = 402, T = 12;
    rs_llama_limits small = {.max_tokens = 64, .max_slots = 2, .slot_len = 16, .max_prefix = NP, .max_logit_rows = 2};
    rs_llama_limits big = small;
    big.max_tokens = 512;
    rs_backend *bc = NULL, *bg = NULL, *bg2 = NULL;
    CHECK(rs_backend_cpu_create(0, 1, &bc, &err) == RS_OK);
    CHECK_MSG(rs_backend_cuda_create(0, 16, 64, &bg, &err) == RS_OK, "%s", err.msg);
    CHECK_MSG(rs_backend_cuda_create(0, 16, 512, &bg2, &err) == RS_OK, "%s", err.msg);
    rs_llama *mc = NULL, *mg = NULL, *mg2 = NULL;
    CHECK_MSG(rs_llama_create(files, bc, &big, &mc, &err) == RS_OK, "%s", err.msg);
    CHECK_MSG(rs_llama_create(files, bg, &small, &mg, &err) == RS_OK, "%s", err.msg);
    CHECK_MSG(rs_llama_create(files, bg2, &big, &mg2, &err) == RS_OK, "%s", err.msg);
    if (mc && mg && mg2) {
        const int V = rs_llama_get_config(mc)->vocab_size;
        int32_t prefix[402], ids[12], slot[12], pos[12], rows[2] = {5, 11};
        for (int i = 0; i < NP; i++) prefix[i] = (i * 53 + 11) % V;
        for (int t = 0; t < T; t++) ids[t] = (t * 31 + 3) % V, slot[t] = t / 6, pos[t] = t % 6;
        float *lc = malloc(2 * (size_t)V * sizeof *lc), *lg = malloc(2 * (size_t)V * sizeof *lg),
              *lg2 = malloc(2 * (size_t)V * sizeof *lg2);
        CHECK_MSG(rs_llama_set_prefix(mc, prefix, NP, &err) == RS_OK, "%s", err.msg);
        CHECK_MSG(rs_llama_set_prefix(mg, prefix, NP, &err) == RS_OK, "cuda, max_tokens 64: %s", err.msg);
        CHECK_MSG(rs_llama_set_prefix(mg2, prefix, NP, &err) == RS_OK, "cuda, max_tokens 512: %s", err.msg);
        CHECK(rs_llama_forward(mc, ids, slot, pos, T, rows, 2, lc, &err) == RS_OK);
        CHECK(rs_llama_forward(mg, ids, slot, pos, T, rows, 2, lg, &err) == RS_OK);
        CHECK(rs_llama_forward(mg2, ids, slot, pos, T, rows, 2, lg2, &err) == RS_OK);
        double d = 0, d2 = 0, ref = 1e-6;
        for (int i = 0; i < 2 * V; i++) {
            d = fmax(d, fabs((double)lg[i] - (double)lc[i]));
            d2 = fmax(d2, fabs((double)lg2[i] - (double)lc[i]));
            ref = fmax(ref, fabs((double)lc[i]));
        }
        printf("  prefix %d tokens, max_tokens 64 (chunked) vs cpu: nerr %.2e; max_tokens 512 (one chunk): %.2e "
               "(bound 1e-1, test_gpu_causal's)\n",
               NP, d / ref, d2 / ref);
        CHECK_MSG(d / ref <= 1e-1, "chunked prefix: %.3e", d / ref);
        CHECK_MSG(d2 / ref <= 1e-1, "one-chunk prefix: %.3e", d2 / ref);
        free(lc);
        free(lg);
        free(lg2);
    }
    rs_llama_free(mc);
    rs_llama_free(mg);
    rs_llama_free(mg2);
    if (bc) bc->ops->destroy(bc);
    if (bg) bg->ops->destroy(bg);
    if (bg2) bg2->ops->destroy(bg2);
    rs_model_files_close(files);
}

int main(void) {
    const int n_dev = test_cuda_devices("test_gpu_views");
    if (n_dev < 1) return n_dev < 0 ? 1 : 77;
    const char *data = test_env("RS_TEST_DATA");
    if (!data) {
        printf("test_gpu_views: SKIP: RS_TEST_DATA not set\n");
        return 77;
    }
    seed_rng(0x452821e638d01377ull);
    rs_err err = {{0}};
    CHECK_MSG(rs_backend_cpu_create(0, MAX_LEN, &cpu, &err) == RS_OK, "%s", err.msg);
    CHECK_MSG(rs_backend_cuda_create(0, MAX_LEN, MAX_TOKENS, &gpu, &err) == RS_OK, "%s", err.msg);
    if (!cpu || !gpu) return test_done("test_gpu_views");
    views(1);
    views(8);
    plans();
    CHECK(!gpu->ops->lost(gpu));
    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    char dir[4096];
#ifdef RS_CUDA_SIM
    snprintf(dir, sizeof dir, "%s/fidelity/xlmr_tiny", data);
    out_of_memory(dir);
#else
    printf("  out of memory: counted on the simulation tier only\n");
#endif
    snprintf(dir, sizeof dir, "%s/causal_tiny/router", data);
    long_prefix(dir);
    return test_done("test_gpu_views");
}
#endif
