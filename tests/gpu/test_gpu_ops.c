/* test_gpu_ops.c — every CUDA backend op against the CPU reference op, in
 * the style of ggml's test-backend-ops: the same fresh random inputs through
 * both tables, outputs compared by a normalised error.
 *
 * Inputs and weights are rounded to bf16 on the host before both backends
 * see them, so the comparison measures the CUDA backend's own error (bf16
 * outputs, fp32 accumulation in another order), not the input quantisation.
 * Error: max |gpu - cpu| / max |cpu| over an op's output; bound 1e-2 for
 * bf16 outputs (half an ulp is 2^-9 ~ 2e-3 relative; attention adds bf16
 * probabilities, 2e-2). NaN fails. Every output is first poisoned (NaN) so an
 * unwritten element fails too.
 *
 * Sizes are the awkward ones: sequence lengths 1, 7, 63, 64, 65, 511, 512
 * and batches mixing them; head dims 16, 20 (no 16-byte loads), 48 (padded
 * to 64), 64, 128; widths divisible by 8 and not.
 *
 * Without CUDA in the build, or without a device, it prints why and exits 77
 * (CTest: skipped). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "gpu_pair.h"
#include "test_util.h"

#ifndef RS_HAVE_CUDA
int main(void) {
    printf("test_gpu_ops: SKIP: this build has no CUDA backend (RS_WITH_CUDA=OFF or no nvcc)\n");
    return 77;
}
#else

#define MAX_TOKENS 8192
#define MAX_LEN 512

static const int LENS[] = {1, 7, 63, 64, 65, 511, 512};
#define N_LENS (int)(sizeof LENS / sizeof LENS[0])

/* Batches: each length alone, all mixed, and a shuffled mix with repeats. */
static int make_batch(int which, int32_t *offsets) {
    int n = 0;
    offsets[0] = 0;
    if (which < N_LENS) {
        offsets[++n] = LENS[which];
    } else if (which == N_LENS) {
        for (int i = 0; i < N_LENS; i++, n++) offsets[n + 1] = offsets[n] + LENS[i];
    } else {
        static const int MIX[] = {65, 1, 512, 7, 1, 64, 63, 511, 7, 1};
        for (int i = 0; i < 10; i++, n++) offsets[n + 1] = offsets[n] + MIX[i];
    }
    return n;
}
#define N_BATCHES (N_LENS + 2)

static void test_embed(int hidden) {
    const int V = 1000, P = 514, TV = 2, T = 1223;
    wpair word = wpair_new(V, hidden, 1.f, 0.f), pos = wpair_new(P, hidden, 0.5f, 0.f),
          type = wpair_new(TV, hidden, 0.2f, 0.f), g = wpair_new(hidden, 1, 0.5f, 1.f),
          b = wpair_new(hidden, 1, 0.1f, 0.f);
    int32_t *ids = malloc(T * sizeof *ids), *pids = malloc(T * sizeof *pids), *tids = malloc(T * sizeof *tids);
    for (int t = 0; t < T; t++) {
        ids[t] = (int32_t)irand(V);
        pids[t] = 2 + t % 512;
        tids[t] = t % 3 == 0;
    }
    pair out = pair_new(NULL, (size_t)T * hidden);
    CHECK(cpu->ops->embed(cpu, ids, pids, tids, T, word.c, pos.c, type.c, g.c, b.c, 1e-5f, hidden, out.c) == RS_OK);
    CHECK(gpu->ops->embed(gpu, ids, pids, tids, T, word.g, pos.g, type.g, g.g, b.g, 1e-5f, hidden, out.g) == RS_OK);
    char what[96];
    snprintf(what, sizeof what, "embed+layernorm T=%d H=%d", T, hidden);
    compare(what, &out, out.n, 1e-2);
    /* An id past the table is refused on the host, not a device fault. */
    ids[5] = V;
    CHECK(gpu->ops->embed(gpu, ids, pids, tids, T, word.g, pos.g, type.g, g.g, b.g, 1e-5f, hidden, out.g) ==
          RS_ERR_INVALID_ARG);
    CHECK(!gpu->ops->lost(gpu));
    pair_free(&out);
    free(ids);
    free(pids);
    free(tids);
    wpair_free(&word);
    wpair_free(&pos);
    wpair_free(&type);
    wpair_free(&g);
    wpair_free(&b);
}

static void test_add_layernorm(int64_t M, int64_t N) {
    float *xh = rand_vec((size_t)(M * N), 2.f), *rh = rand_vec((size_t)(M * N), 2.f);
    wpair g = wpair_new(N, 1, 0.5f, 1.f), b = wpair_new(N, 1, 0.1f, 0.f);
    pair x = pair_new(xh, (size_t)(M * N)), r = pair_new(rh, (size_t)(M * N));
    CHECK(cpu->ops->add_layernorm(cpu, x.c, r.c, g.c, b.c, 1e-12f, M, N) == RS_OK);
    CHECK(gpu->ops->add_layernorm(gpu, x.g, r.g, g.g, b.g, 1e-12f, M, N) == RS_OK);
    char what[96];
    snprintf(what, sizeof what, "add_layernorm M=%lld N=%lld", (long long)M, (long long)N);
    compare(what, &x, x.n, 1e-2);
    pair_free(&x);
    pair_free(&r);
    wpair_free(&g);
    wpair_free(&b);
    free(xh);
    free(rh);
}

static void test_linear(int64_t M, int64_t N, int64_t K, int64_t ldx, int bias, rs_act act) {
    float *xh = rand_vec((size_t)(M * ldx), 1.f);
    wpair w = wpair_new(N, K, 1.f / sqrtf((float)K) * 1.7f, 0.f);
    wpair bv = wpair_new(N, 1, 0.5f, 0.f);
    pair x = pair_new(xh, (size_t)(M * ldx)), y = pair_new(NULL, (size_t)(M * N));
    CHECK(cpu->ops->linear(cpu, x.c, ldx, M, K, w.c, bias ? bv.c : NULL, act, y.c) == RS_OK);
    CHECK(gpu->ops->linear(gpu, x.g, ldx, M, K, w.g, bias ? bv.g : NULL, act, y.g) == RS_OK);
    char what[96];
    snprintf(what, sizeof what, "linear M=%lld N=%lld K=%lld ldx=%lld bias=%d act=%d", (long long)M, (long long)N,
             (long long)K, (long long)ldx, bias, (int)act);
    compare(what, &y, y.n, 1e-2);
    pair_free(&x);
    pair_free(&y);
    wpair_free(&w);
    wpair_free(&bv);
    free(xh);
}

static void test_attention(int n_heads, int head_dim) {
    int32_t offsets[16];
    for (int which = 0; which < N_BATCHES; which++) {
        const int n_seq = make_batch(which, offsets), T = offsets[n_seq];
        int max_len = 0;
        for (int s = 0; s < n_seq; s++)
            if (offsets[s + 1] - offsets[s] > max_len) max_len = offsets[s + 1] - offsets[s];
        const size_t hd = (size_t)n_heads * head_dim;
        /* Scores of a few units: softmax neither uniform nor one-hot. */
        float *qkv_h = rand_vec((size_t)T * 3 * hd, 1.5f);
        pair qkv = pair_new(qkv_h, (size_t)T * 3 * hd), out = pair_new(NULL, (size_t)T * hd);
        CHECK(cpu->ops->attention(cpu, qkv.c, offsets, n_seq, max_len, n_heads, head_dim, out.c) == RS_OK);
        CHECK(gpu->ops->attention(gpu, qkv.g, offsets, n_seq, max_len, n_heads, head_dim, out.g) == RS_OK);
        char what[96];
        snprintf(what, sizeof what, "attention H=%d D=%d seqs=%d T=%d max_len=%d", n_heads, head_dim, n_seq, T,
                 max_len);
        compare(what, &out, out.n, 2e-2);
        pair_free(&qkv);
        pair_free(&out);
        free(qkv_h);
    }
}

static void test_pool(int64_t N) {
    int32_t offsets[16];
    const int which = N_LENS + 1;
    const int n_seq = make_batch(which, offsets), T = offsets[n_seq];
    float *xh = rand_vec((size_t)T * N, 1.f);
    /* A common offset per column, so mean pooling does not average to ~0. */
    for (int t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) xh[t * N + n] = bf16_round(xh[t * N + n] + 0.3f * (float)((n % 7) - 3));
    pair x = pair_new(xh, (size_t)T * N);
    for (int mean = 0; mean <= 1; mean++)
        for (int norm = 0; norm <= 1; norm++) {
            pair out = pair_new(NULL, (size_t)n_seq * N);
            CHECK(cpu->ops->pool(cpu, x.c, offsets, n_seq, N, mean, norm, out.c) == RS_OK);
            CHECK(gpu->ops->pool(gpu, x.g, offsets, n_seq, N, mean, norm, out.g) == RS_OK);
            char what[96];
            snprintf(what, sizeof what, "pool N=%lld seqs=%d mean=%d normalize=%d", (long long)N, n_seq, mean, norm);
            compare(what, &out, out.n, 1e-2);
            pair_free(&out);
        }
    pair_free(&x);
    free(xh);
}

/* from_host then to_host returns the bf16-rounded values exactly. */
static void test_round_trip(void) {
    const size_t n = (size_t)5 << 20; /* more than one pinned chunk */
    float *h = rand_vec(n, 100.f), *back = malloc(n * sizeof *back);
    float *d = NULL;
    CHECK(gpu->ops->alloc(gpu, n * sizeof(float), (void **)&d) == RS_OK);
    CHECK(gpu->ops->from_host(gpu, d, h, n) == RS_OK);
    CHECK(gpu->ops->to_host(gpu, back, d, n) == RS_OK);
    CHECK(memcmp(h, back, n * sizeof *h) == 0);
    gpu->ops->release(gpu, d);
    free(h);
    free(back);
}

int main(void) {
    const int n_dev = test_cuda_devices("test_gpu_ops");
    if (n_dev < 1) return n_dev < 0 ? 1 : 77;
    rs_err err = {{0}};
    CHECK_MSG(rs_backend_cpu_create(0, MAX_LEN, &cpu, &err) == RS_OK, "%s", err.msg);
    CHECK_MSG(rs_backend_cuda_create(0, MAX_LEN, MAX_TOKENS, &gpu, &err) == RS_OK, "%s", err.msg);
    if (!cpu || !gpu) return test_done("test_gpu_ops");

    test_round_trip();
    test_embed(768);
    test_embed(100);
    test_add_layernorm(1223, 768);
    test_add_layernorm(1223, 100);
    test_add_layernorm(7, 64);
    test_add_layernorm(65, 4104);
    test_linear(1223, 2304, 768, 768, 1, RS_ACT_NONE);
    test_linear(511, 3072, 768, 768, 1, RS_ACT_GELU);
    test_linear(65, 768, 3072, 3072, 1, RS_ACT_NONE);
    test_linear(7, 768, 768, 768, 1, RS_ACT_TANH);
    test_linear(7, 3, 768, 768, 1, RS_ACT_NONE);
    test_linear(1, 1, 64, 64, 1, RS_ACT_NONE);
    test_linear(63, 100, 36, 44, 0, RS_ACT_GELU);
    test_linear(64, 101, 37, 37, 1, RS_ACT_TANH);
    test_attention(12, 64);
    test_attention(4, 16);
    test_attention(2, 20);
    test_attention(3, 48);
    test_attention(2, 128);
    test_pool(768);
    test_pool(100);

    CHECK(!gpu->ops->lost(gpu));
    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    return test_done("test_gpu_ops");
}
#endif
