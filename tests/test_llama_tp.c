/* test_llama_tp.c — tensor parallelism's split logic on the CPU: the model
 * cut into n simulated ranks (llama.h shards on CPU backends of their own,
 * run together by llama_tp.c with its host all-reduce) gives the unsplit
 * model's logits. The tiny causal test model (4 heads, 2 KV heads, MLP 128)
 * at n = 2; SmolLM2-135M (9 / 3 heads, MLP 1536), when fetched, at n = 3.
 * Each: a shared prefix, a prefill of several slots, then decode steps. The
 * bound is fp32 reordering noise (the partial sums add in another order):
 * 1e-4 relative to the position's largest |logit|. Also: a split that does
 * not divide the heads is refused. */
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
                           .max_prefix = PREFIX, .max_logit_rows = SLOTS};
    rs_backend *b[RS_LLAMA_TP_MAX] = {0}, *b1 = NULL;
    rs_llama *one = NULL;
    rs_llama_tp *tp = NULL;
    for (int r = 0; r < n_ranks; r++) CHECK(rs_backend_cpu_create(1, 64, &b[r], &err) == RS_OK);
    CHECK(rs_backend_cpu_create(0, 64, &b1, &err) == RS_OK);
    CHECK_MSG(rs_llama_create(files, b1, &lim, &one, &err) == RS_OK, "%s", err.msg);
    CHECK_MSG(rs_llama_tp_create(files, b, NULL, n_ranks, &lim, &tp, &err) == RS_OK, "%s", err.msg);
    if (one && tp) {
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
        printf("%s: %d ranks vs unsplit, %d logit rows (prefill and decode): worst relative error %.2e (bound 1e-4)\n",
               dir, n_ranks, n_rows, worst);
        CHECK_MSG(want && got && worst <= 1e-4, "worst relative error %.3e", worst);
        CHECK(!strcmp(rs_llama_tp_allreduce_kind(tp), "host"));
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

int main(void) {
    const char *data = getenv("RS_TEST_DATA"), *cache = getenv("RS_MODEL_CACHE");
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/causal_tiny/router", data ? data : "tests/data");
    check_model(dir, 2);
    snprintf(dir, sizeof dir, "%s/smollm2-135m", cache ? cache : "models/cache");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    if (stat(path, &sb) == 0)
        check_model(dir, 3);
    else
        printf("SmolLM2 not fetched (%s): the tiny model only\n", path);
    return test_done("test_llama_tp");
}
