/* test_llama_tp.c — tensor parallelism's split logic on the CPU: the model
 * cut into n simulated ranks (llama.h shards on CPU backends of their own,
 * run together by llama_tp.c with its host all-reduce) gives the unsplit
 * model's logits. The tiny causal test model (4 heads, 2 KV heads, MLP 128)
 * at n = 2; SmolLM2-135M (9 / 3 heads, MLP 1536), when fetched, at n = 3.
 * Each: a shared prefix, a prefill of several slots, then decode steps. The
 * bound is fp32 reordering noise (the partial sums add in another order):
 * 1e-4 relative to the position's largest |logit|. Also: a split that does
 * not divide the heads is refused.
 *
 * `test_llama_tp cuda` runs the same on CUDA backends, one GPU a rank, with
 * NCCL's all-reduce, against the unsplit model on GPU 0 (the gpusim tier
 * runs it on simulated GPUs). The bound is then bf16's: the ranks round
 * their partial sums to bf16 before the all-reduce adds them, where the
 * unsplit model rounds once (CUDA_BOUND). `test_llama_tp cuda-fault` expects
 * the forward to fail, with the failing rank named, in bounded time: the
 * tier's NCCL is told (RS_SIM_NCCL_FAULT) to fail rank 1 or to keep it from
 * ever arriving, and the manifest-level timeout is 1.5 s here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "llama.h"
#include "llama_tp.h"
#include "model_files.h"
#include "test_util.h"

#define SLOTS 3
#define PREFIX 11
#define PROMPT 9
#define STEPS 3
#define CUDA_BOUND 5e-2

static int use_cuda, expect_fault;

static rs_status make_backend(int device, rs_backend **out, rs_err *err) {
#ifdef RS_HAVE_CUDA
    if (use_cuda) return rs_backend_cuda_create(device, PROMPT + STEPS, SLOTS * PROMPT + PREFIX, out, err);
#endif
    (void)device;
    return rs_backend_cpu_create(device < 0 ? 0 : 1, 64, out, err);
}

/* The prefix, then SLOTS prompts of PROMPT tokens, then STEPS decode steps
 * (one token per slot), on one model (tp) or the other (one); returns the
 * logits of every prompt's last token and every decode token, in order. */
static float *run(rs_llama_tp *tp, rs_llama *one, int V, rs_err *err) {
    const int n_rows = SLOTS * (1 + STEPS);
    float *all = malloc((size_t)n_rows * (size_t)V * sizeof *all);
    int32_t prefix[PREFIX], ids[SLOTS * PROMPT], slot[SLOTS * PROMPT], pos[SLOTS * PROMPT], rows[SLOTS];
    for (int i = 0; i < PREFIX; i++) prefix[i] = (i * 37 + 5) % V;
    rs_status st = tp ? rs_llama_tp_set_prefix(tp, prefix, PREFIX, err) : rs_llama_set_prefix(one, prefix, PREFIX, err);
    int k = 0;
    for (int s = 0; s < SLOTS; s++)
        for (int p = 0; p < PROMPT; p++, k++) {
            ids[k] = (s * 101 + p * 13 + 7) % V;
            slot[k] = s;
            pos[k] = p;
        }
    for (int s = 0; s < SLOTS; s++) rows[s] = s * PROMPT + PROMPT - 1;
    if (st == RS_OK)
        st = tp ? rs_llama_tp_forward(tp, ids, slot, pos, k, rows, SLOTS, all, err)
                : rs_llama_forward(one, ids, slot, pos, k, rows, SLOTS, all, err);
    for (int step = 0; st == RS_OK && step < STEPS; step++) {
        for (int s = 0; s < SLOTS; s++) {
            ids[s] = (step * 31 + s * 17 + 3) % V;
            slot[s] = s;
            pos[s] = PROMPT + step;
            rows[s] = s;
        }
        float *out = all + (size_t)(SLOTS * (1 + step)) * (size_t)V;
        st = tp ? rs_llama_tp_forward(tp, ids, slot, pos, SLOTS, rows, SLOTS, out, err)
                : rs_llama_forward(one, ids, slot, pos, SLOTS, rows, SLOTS, out, err);
    }
    if (st != RS_OK) {
        free(all);
        return NULL;
    }
    return all;
}

static void check_model(const char *dir, int n_ranks) {
    rs_err err = {{0}};
    rs_model_files *files = NULL;
    if (rs_model_files_open(dir, &files, &err) != RS_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    rs_llama_limits lim = {.max_tokens = SLOTS * PROMPT, .max_slots = SLOTS, .slot_len = PROMPT + STEPS,
                           .max_prefix = PREFIX, .max_logit_rows = SLOTS,
                           .allreduce_timeout_ms = expect_fault ? 1500 : 0};
    rs_backend *b[RS_LLAMA_TP_MAX] = {0}, *b1 = NULL;
    rs_llama *one = NULL;
    rs_llama_tp *tp = NULL;
    int gpus[RS_LLAMA_TP_MAX];
    for (int r = 0; r < n_ranks; r++) {
        gpus[r] = r;
        CHECK_MSG(make_backend(r, &b[r], &err) == RS_OK, "%s", err.msg);
    }
    CHECK_MSG(make_backend(use_cuda ? 0 : -1, &b1, &err) == RS_OK, "%s", err.msg);
    CHECK_MSG(rs_llama_create(files, b1, &lim, &one, &err) == RS_OK, "%s", err.msg);
    CHECK_MSG(rs_llama_tp_create(files, b, use_cuda ? gpus : NULL, n_ranks, &lim, &tp, &err) == RS_OK, "%s", err.msg);
    if (one && tp && expect_fault) {
        const int V = rs_llama_get_config(one)->vocab_size;
        const double t0 = test_now();
        float *got = run(tp, NULL, V, &err);
        const double dt = test_now() - t0;
        printf("%s: %d ranks, injected fault: %s after %.2f s: %s\n", dir, n_ranks, got ? "no error" : "error", dt,
               err.msg);
        CHECK_MSG(!got, "the forward succeeded although rank 1 failed");
        CHECK_MSG(strstr(err.msg, "rank 1") != NULL, "the error does not name rank 1: %s", err.msg);
        CHECK_MSG(dt < 10.0, "the failure took %.1f s (bound: the 1.5 s all-reduce timeout plus the forward)", dt);
        free(got);
    } else if (one && tp) {
        const int V = rs_llama_get_config(one)->vocab_size;
        float *want = run(NULL, one, V, &err), *got = run(tp, NULL, V, &err);
        CHECK_MSG(want && got, "%s", err.msg);
        double worst = 0;
        const int n_rows = SLOTS * (1 + STEPS);
        for (int i = 0; want && got && i < n_rows; i++) {
            double scale = 0, e = 0;
            for (int v = 0; v < V; v++) scale = fmax(scale, fabs(want[(size_t)i * V + v]));
            for (int v = 0; v < V; v++) e = fmax(e, fabs(got[(size_t)i * V + v] - want[(size_t)i * V + v]));
            worst = fmax(worst, e / fmax(scale, 1e-6));
        }
        const double bound = use_cuda ? CUDA_BOUND : 1e-4;
        printf("%s: %d ranks vs unsplit (%s), %d logit rows (prefill and decode): worst relative error %.2e (bound "
               "%.0e)\n",
               dir, n_ranks, use_cuda ? "cuda, nccl" : "cpu", n_rows, worst, bound);
        CHECK_MSG(want && got && worst <= bound, "worst relative error %.3e", worst);
        CHECK(!strcmp(rs_llama_tp_allreduce_kind(tp), use_cuda ? "nccl" : "host"));
        free(want);
        free(got);
        /* A split that leaves a rank a fraction of a head is refused. */
        const rs_llama_config *c = rs_llama_get_config(one);
        int bad = c->n_kv_heads + 1;
        while (c->n_heads % bad == 0 && c->n_kv_heads % bad == 0 && c->intermediate % bad == 0) bad++;
        rs_llama_tp *no = NULL;
        rs_backend *bb[RS_LLAMA_TP_MAX];
        for (int r = 0; r < bad; r++) bb[r] = b[0];
        CHECK(bad > RS_LLAMA_TP_MAX || (rs_llama_tp_create(files, bb, NULL, bad, &lim, &no, &err) == RS_ERR_INVALID_ARG &&
                                        !no && strstr(err.msg, "must divide")));
    }
    rs_llama_tp_free(tp);
    rs_llama_free(one);
    for (int r = 0; r < n_ranks; r++)
        if (b[r]) b[r]->ops->destroy(b[r]);
    if (b1) b1->ops->destroy(b1);
    rs_model_files_close(files);
}

int main(int argc, char **argv) {
    const char *data = getenv("RS_TEST_DATA"), *cache = getenv("RS_MODEL_CACHE");
    char dir[4096], path[4200];
    use_cuda = argc > 1 && !strncmp(argv[1], "cuda", 4);
    expect_fault = argc > 1 && !strcmp(argv[1], "cuda-fault");
    int n_dev = 3;
    if (use_cuda) {
        n_dev = test_cuda_devices("test_llama_tp");
        if (n_dev < 0) return 1;
        if (n_dev < 2) {
            printf("test_llama_tp: SKIP: %d CUDA devices visible, 2 needed\n", n_dev);
            return 77;
        }
    }
    snprintf(dir, sizeof dir, "%s/causal_tiny/router", data ? data : "tests/data");
    check_model(dir, 2);
    if (expect_fault) return test_done("test_llama_tp");
    snprintf(dir, sizeof dir, "%s/smollm2-135m", cache ? cache : "models/cache");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    if (n_dev < 3)
        printf("SmolLM2 at 3 ranks needs 3 GPUs, %d visible: the tiny model only\n", n_dev);
    else if (stat(path, &sb) == 0)
        check_model(dir, 3);
    else
        printf("SmolLM2 not fetched (%s): the tiny model only\n", path);
    return test_done("test_llama_tp");
}
