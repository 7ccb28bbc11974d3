/* test_gpu_llama_ops.c — the CUDA backend's decoder (Llama) ops against the
 * CPU reference ops (backend_cpu_llama.c), like test_gpu_ops.c does for the
 * encoder ops: the same fresh random inputs through both tables, outputs
 * compared by a normalised error.
 *
 * Inputs and weights are rounded to bf16 on the host first, so the
 * comparison measures the CUDA op's own error. Error: max |gpu - cpu| / max
 * |cpu| over an op's output. Bounds, per op:
 *   - embed_rows, copy_rows: 0 (pure copies of bf16 values: exact);
 *   - add_rmsnorm, rope, swiglu, linear: 1e-2 (bf16 outputs: half an ulp is
 *     2^-9 ~ 2e-3 relative; add_rmsnorm rounds the residual sum to bf16
 *     before the norm, as HF does);
 *   - attention_kv: 2e-2 (bf16 probabilities into P V, as attention_varlen).
 * NaN fails; every output is first poisoned (NaN) so an unwritten element
 * fails too.
 *
 * Sizes are the awkward ones: head_dim 16, 64, 128; n_heads / n_kv 32/8,
 * 9/3, 4/2, 8/8; slot lengths 1, 7, 63, 64, 65, 511 in one batch; prefix 0
 * and 190; prefill batches (rows of a slot together), decode batches (one
 * row per slot, slots shuffled) and a continued prefill (a chunk of rows in
 * the middle of a slot). Widths divisible by 8 and not.
 *
 * Without CUDA in the build, or without a device, it prints why and exits 77
 * (CTest: skipped). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "llama.h"
#include "gpu_pair.h"
#include "test_util.h"

#ifndef RS_HAVE_CUDA
int main(void) {
    printf("test_gpu_llama_ops: SKIP: this build has no CUDA backend (RS_WITH_CUDA=OFF or no nvcc)\n");
    return 77;
}
#else

#define MAX_TOKENS 8192

static void test_embed_rows(int64_t V, int64_t H, int n) {
    wpair table = wpair_new(V, H, 1.f, 0.f);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int t = 0; t < n; t++) ids[t] = t == 0 ? (int32_t)(V - 1) : irand((int)V);
    pair out = pair_new(NULL, (size_t)n * (size_t)H);
    CHECK(cpu->ops->embed_rows(cpu, table.c, ids, n, out.c) == RS_OK);
    CHECK(gpu->ops->embed_rows(gpu, table.g, ids, n, out.g) == RS_OK);
    char what[128];
    snprintf(what, sizeof what, "embed_rows V=%lld H=%lld n=%d", (long long)V, (long long)H, n);
    compare(what, &out, out.n, 0);
    /* An id past the table is refused on the host, not a device fault. */
    ids[n - 1] = (int32_t)V;
    CHECK(gpu->ops->embed_rows(gpu, table.g, ids, n, out.g) == RS_ERR_INVALID_ARG);
    CHECK(!gpu->ops->lost(gpu));
    pair_free(&out);
    wpair_free(&table);
    free(ids);
}

static void test_add_rmsnorm(int64_t M, int64_t N, int with_delta) {
    float *xh = rand_vec((size_t)(M * N), 2.f), *dh = rand_vec((size_t)(M * N), 2.f);
    wpair g = wpair_new(N, 1, 0.5f, 1.f);
    pair x = pair_new(xh, (size_t)(M * N)), d = pair_new(dh, (size_t)(M * N)), y = pair_new(NULL, (size_t)(M * N));
    CHECK(cpu->ops->add_rmsnorm(cpu, x.c, with_delta ? d.c : NULL, g.c, 1e-5f, M, N, y.c) == RS_OK);
    CHECK(gpu->ops->add_rmsnorm(gpu, x.g, with_delta ? d.g : NULL, g.g, 1e-5f, M, N, y.g) == RS_OK);
    char what[128];
    snprintf(what, sizeof what, "add_rmsnorm M=%lld N=%lld delta=%d: y", (long long)M, (long long)N, with_delta);
    compare(what, &y, y.n, 1e-2);
    snprintf(what, sizeof what, "add_rmsnorm M=%lld N=%lld delta=%d: x (+= delta)", (long long)M, (long long)N,
             with_delta);
    compare(what, &x, x.n, with_delta ? 1e-2 : 0);
    pair_free(&x);
    pair_free(&d);
    pair_free(&y);
    wpair_free(&g);
    free(xh);
    free(dh);
}

/* inv_freq as llama.c computes it: Llama 3 (theta 500000, llama3 scaling)
 * or plain (theta 10000). */
static void test_rope(int64_t M, int n_heads, int D, int64_t extra_ld, int llama3) {
    rs_llama_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.head_dim = D;
    cfg.rope_theta = llama3 ? 500000.f : 10000.f;
    if (llama3) {
        cfg.rope_factor = 8.f;
        cfg.rope_low_freq = 1.f;
        cfg.rope_high_freq = 4.f;
        cfg.rope_orig_max_pos = 8192;
    }
    float inv[128];
    rs_llama_inv_freq(&cfg, inv);
    const int64_t ld = (int64_t)n_heads * D + extra_ld;
    float *xh = rand_vec((size_t)(M * ld), 2.f);
    int32_t *pos = malloc((size_t)M * sizeof *pos);
    for (int64_t m = 0; m < M; m++) pos[m] = m == 0 ? 0 : m == 1 ? 8191 : irand(4096); /* prefix + slot positions */
    pair x = pair_new(xh, (size_t)(M * ld));
    CHECK(cpu->ops->rope(cpu, x.c, ld, M, pos, n_heads, D, inv) == RS_OK);
    CHECK(gpu->ops->rope(gpu, x.g, ld, M, pos, n_heads, D, inv) == RS_OK);
    char what[128];
    snprintf(what, sizeof what, "rope M=%lld heads=%d D=%d ld=%lld %s", (long long)M, n_heads, D, (long long)ld,
             llama3 ? "llama3 theta 5e5" : "theta 1e4");
    compare(what, &x, x.n, 1e-2);
    pair_free(&x);
    free(xh);
    free(pos);
}

static void test_swiglu(int64_t n) {
    float *gh = rand_vec((size_t)n, 6.f), *uh = rand_vec((size_t)n, 2.f);
    pair gt = pair_new(gh, (size_t)n), up = pair_new(uh, (size_t)n);
    CHECK(cpu->ops->swiglu(cpu, gt.c, up.c, n) == RS_OK);
    CHECK(gpu->ops->swiglu(gpu, gt.g, up.g, n) == RS_OK);
    char what[128];
    snprintf(what, sizeof what, "swiglu n=%lld", (long long)n);
    compare(what, &gt, gt.n, 1e-2);
    pair_free(&gt);
    pair_free(&up);
    free(gh);
    free(uh);
}

/* Scatter (a KV cache write), gather (LM-head rows), both, identity. */
static void test_copy_rows(int64_t M, int64_t N) {
    const int64_t R = 3 * M + 5; /* rows of the bigger buffer */
    float *src_h = rand_vec((size_t)(R * N), 3.f), *dst_h = rand_vec((size_t)(R * N), 3.f);
    int32_t *perm = malloc((size_t)R * sizeof *perm), *rows_a = malloc((size_t)M * sizeof *rows_a),
            *rows_b = malloc((size_t)M * sizeof *rows_b);
    for (int64_t i = 0; i < R; i++) perm[i] = (int32_t)i;
    for (int64_t i = R - 1; i > 0; i--) { /* distinct destinations */
        int j = irand((int)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < M; i++) {
        rows_a[i] = perm[i];
        rows_b[i] = irand((int)R);
    }
    for (int mode = 0; mode < 4; mode++) {
        const int32_t *d_rows = mode == 0 || mode == 2 ? rows_a : NULL, *s_rows = mode == 1 || mode == 2 ? rows_b : NULL;
        pair src = pair_new(src_h, (size_t)(R * N)), dst = pair_new(dst_h, (size_t)(R * N));
        CHECK(cpu->ops->copy_rows(cpu, dst.c, d_rows, src.c, s_rows, M, N) == RS_OK);
        CHECK(gpu->ops->copy_rows(gpu, dst.g, d_rows, src.g, s_rows, M, N) == RS_OK);
        static const char *const NAMES[] = {"scatter", "gather", "gather+scatter", "identity"};
        char what[128];
        snprintf(what, sizeof what, "copy_rows %s M=%lld N=%lld", NAMES[mode], (long long)M, (long long)N);
        compare(what, &dst, dst.n, 0);
        pair_free(&src);
        pair_free(&dst);
    }
    rows_a[0] = -1;
    float *d = NULL;
    CHECK(gpu->ops->alloc(gpu, 64, (void **)&d) == RS_OK);
    CHECK(gpu->ops->copy_rows(gpu, d, rows_a, d, NULL, M, N) == RS_ERR_INVALID_ARG);
    CHECK(!gpu->ops->lost(gpu));
    gpu->ops->release(gpu, d);
    free(src_h);
    free(dst_h);
    free(perm);
    free(rows_a);
    free(rows_b);
}

/* y = x w^T without bias, the shapes llama.c uses: the LM head over a
 * Llama 3 sized vocabulary (odd N) on a few picked rows, and a GQA K/V
 * projection. */
static void test_linear_nobias(int64_t M, int64_t N, int64_t K) {
    float *xh = rand_vec((size_t)(M * K), 1.f);
    wpair w = wpair_new(N, K, 1.7f / sqrtf((float)K), 0.f);
    pair x = pair_new(xh, (size_t)(M * K)), y = pair_new(NULL, (size_t)(M * N));
    CHECK(cpu->ops->linear(cpu, x.c, K, M, K, w.c, NULL, RS_ACT_NONE, y.c) == RS_OK);
    CHECK(gpu->ops->linear(gpu, x.g, K, M, K, w.g, NULL, RS_ACT_NONE, y.g) == RS_OK);
    char what[128];
    snprintf(what, sizeof what, "linear (no bias) M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
    compare(what, &y, y.n, 1e-2);
    pair_free(&x);
    pair_free(&y);
    wpair_free(&w);
    free(xh);
}

static const int SLOT_LENS[] = {1, 7, 63, 64, 65, 511};
#define N_SLOTS (int)(sizeof SLOT_LENS / sizeof SLOT_LENS[0])
#define SLOT_STRIDE 520

/* One attention_kv configuration over the batch kinds. */
static void test_attention_kv(int n_heads, int n_kv, int D, int n_prefix) {
    const int64_t QW = (int64_t)n_heads * D, KW = (int64_t)n_kv * D;
    /* Cache contents: random for every slot row; only rows 0..pos are read. */
    const size_t cache_n = (size_t)N_SLOTS * SLOT_STRIDE * (size_t)KW, pre_n = (size_t)(n_prefix ? n_prefix : 1) * KW;
    float *kh = rand_vec(cache_n, 1.5f), *vh = rand_vec(cache_n, 1.5f);
    float *pkh = rand_vec(pre_n, 1.5f), *pvh = rand_vec(pre_n, 1.5f);
    pair k = pair_new(kh, cache_n), v = pair_new(vh, cache_n), pk = pair_new(pkh, pre_n), pv = pair_new(pvh, pre_n);
    int32_t *slot = malloc(MAX_TOKENS * sizeof *slot), *pos = malloc(MAX_TOKENS * sizeof *pos);
    for (int kind = 0; kind < 3; kind++) {
        int T = 0;
        if (kind == 0) { /* prefill: each slot's rows 0..L-1 together; slots in a mixed order */
            static const int ORDER[] = {3, 0, 5, 1, 4, 2};
            for (int i = 0; i < N_SLOTS; i++)
                for (int p = 0; p < SLOT_LENS[ORDER[i]]; p++, T++) {
                    slot[T] = ORDER[i];
                    pos[T] = p;
                }
        } else if (kind == 1) { /* decode: one row per slot at its next position, shuffled */
            static const int ORDER[] = {4, 1, 5, 0, 2, 3};
            for (int i = 0; i < N_SLOTS; i++, T++) {
                slot[T] = ORDER[i];
                pos[T] = SLOT_LENS[ORDER[i]];
            }
        } else { /* a continued prefill: rows 100..170 of slot 5, then slot 2's row 40, then slot 5's 171 */
            for (int p = 100; p <= 170; p++, T++) {
                slot[T] = 5;
                pos[T] = p;
            }
            slot[T] = 2;
            pos[T++] = 40;
            slot[T] = 5;
            pos[T++] = 171;
        }
        float *qh = rand_vec((size_t)T * QW, 1.5f);
        pair q = pair_new(qh, (size_t)T * QW), out = pair_new(NULL, (size_t)T * QW);
        CHECK(cpu->ops->attention_kv(cpu, q.c, T, slot, pos, pk.c, pv.c, n_prefix, k.c, v.c, SLOT_STRIDE, n_heads,
                                     n_kv, D, out.c) == RS_OK);
        CHECK(gpu->ops->attention_kv(gpu, q.g, T, slot, pos, pk.g, pv.g, n_prefix, k.g, v.g, SLOT_STRIDE, n_heads,
                                     n_kv, D, out.g) == RS_OK);
        static const char *const KINDS[] = {"prefill", "decode", "continued"};
        char what[128];
        snprintf(what, sizeof what, "attention_kv heads=%d/%d D=%d prefix=%d %s T=%d", n_heads, n_kv, D, n_prefix,
                 KINDS[kind], T);
        compare(what, &out, out.n, 2e-2);
        if (kind == 1) { /* a negative position is refused on the host */
            pos[0] = -1;
            CHECK(gpu->ops->attention_kv(gpu, q.g, T, slot, pos, pk.g, pv.g, n_prefix, k.g, v.g, SLOT_STRIDE,
                                         n_heads, n_kv, D, out.g) == RS_ERR_INVALID_ARG);
            CHECK(!gpu->ops->lost(gpu));
        }
        pair_free(&q);
        pair_free(&out);
        free(qh);
    }
    pair_free(&k);
    pair_free(&v);
    pair_free(&pk);
    pair_free(&pv);
    free(kh);
    free(vh);
    free(pkh);
    free(pvh);
    free(slot);
    free(pos);
}

int main(void) {
    const int n_dev = test_cuda_devices("test_gpu_llama_ops");
    if (n_dev < 1) return n_dev < 0 ? 1 : 77;
    seed_rng(0x243f6a8885a308d3ull);
    rs_err err = {{0}};
    CHECK_MSG(rs_backend_cpu_create(0, 1, &cpu, &err) == RS_OK, "%s", err.msg);
    CHECK_MSG(rs_backend_cuda_create(0, 512, MAX_TOKENS, &gpu, &err) == RS_OK, "%s", err.msg);
    if (!cpu || !gpu) return test_done("test_gpu_llama_ops");
    CHECK(gpu->ops->embed_rows && gpu->ops->add_rmsnorm && gpu->ops->rope && gpu->ops->swiglu &&
          gpu->ops->copy_rows && gpu->ops->attention_kv);

    test_embed_rows(1000, 4096, 1223);
    test_embed_rows(409, 64, 7);
    test_embed_rows(300, 100, 65);
    test_add_rmsnorm(1223, 4096, 1);
    test_add_rmsnorm(65, 4096, 0);
    test_add_rmsnorm(7, 100, 1);
    test_add_rmsnorm(1, 64, 1);
    test_rope(511, 32, 128, 0, 1);
    test_rope(65, 8, 128, 0, 1);
    test_rope(63, 9, 64, 0, 0);
    test_rope(7, 4, 16, 8, 0);
    test_swiglu(65 * 14336);
    test_swiglu(7 * 100 + 3);
    test_swiglu(1);
    test_copy_rows(65, 1024);
    test_copy_rows(7, 100);
    test_copy_rows(1, 4096);
    test_linear_nobias(32, 128261, 256);
    test_linear_nobias(1, 128261, 256);
    test_linear_nobias(7, 409, 64);
    test_linear_nobias(65, 1024, 4096);
    for (int p = 0; p <= 190; p += 190) {
        test_attention_kv(32, 8, 128, p);
        test_attention_kv(32, 8, 64, p);
        test_attention_kv(9, 3, 64, p);
        test_attention_kv(9, 3, 128, p);
        test_attention_kv(4, 2, 16, p);
        test_attention_kv(8, 8, 64, p);
    }

    CHECK(!gpu->ops->lost(gpu));
    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    return test_done("test_gpu_llama_ops");
}
#endif
