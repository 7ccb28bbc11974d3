/* test_batcher.c — unit tests of src/server/batcher.c (batcher.h's
 * contract) over a real engine (the tiny XLM-R classifier in tests/data):
 *   - batch formation: max_batch_size and max_batch_tokens close a batch,
 *     a request's prompts may span batches, nothing is overtaken (FIFO);
 *   - every score equals the engine's own on that prompt alone;
 *   - admission by tokens (FULL, TOO_BIG, INVALID) and by expected wait
 *     (LATE, BUSY), each refusal immediate;
 *   - cancellation frees the room at once and drops the prompt uncomputed;
 *     a passed deadline drops it as expired;
 *   - stop drains: everything admitted finishes (done() exactly once), later
 *     submissions are refused.
 * The queue delay is long (5 s) and the tests end each scenario with stop,
 * so which prompts share a batch depends only on the limits, not on timing:
 * with one replica a batch's prompts finish before the next batch runs, and
 * rs_batcher_batches() read in done() is the prompt's batch number. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batcher.h"
#include "clock.h"
#include "test_util.h"

#define MAXP 4
#define MAXT 128
#define VOCAB 640 /* tests/data/fidelity/xlmr_tiny_text/config.json */

typedef struct req {
    rs_work w;
    rs_item items[MAXP];
    rs_score scores[MAXP];
    int32_t ids[MAXP][MAXT];
    rs_batcher *b;
    _Atomic int n_done;
    int order;          /* completion order */
    uint64_t batch;     /* rs_batcher_batches() when done() ran */
} req;

static _Atomic int g_order;

static void on_done(rs_work *w) {
    req *r = w->owner;
    r->order = atomic_fetch_add(&g_order, 1);
    r->batch = rs_batcher_batches(r->b);
    atomic_fetch_add(&r->n_done, 1);
}

/* A request of n prompts of lens[i] ids each: <s> ... </s>, the middle ids
 * distinct per (seed, prompt, position). */
static void req_init(req *r, rs_batcher *b, int seed, size_t n, const int *lens, double deadline) {
    memset(r, 0, sizeof *r);
    r->b = b;
    for (size_t i = 0; i < n; i++) {
        int32_t *ids = r->ids[i];
        ids[0] = 0;
        for (int j = 1; j < lens[i] - 1; j++) ids[j] = 3 + (seed * 131 + (int)i * 17 + j * 7) % (VOCAB - 3);
        ids[lens[i] - 1] = 2;
        r->items[i].ids = ids;
        r->items[i].n_ids = (uint32_t)lens[i];
        r->items[i].index = (uint32_t)i;
    }
    r->w.n = n;
    r->w.items = r->items;
    r->w.scores = r->scores;
    r->w.deadline = deadline;
    r->w.done = on_done;
    r->w.owner = r;
}

static int wait_done(req *r, double timeout_s) {
    const double end = rs_clock_now() + timeout_s;
    while (!atomic_load(&r->n_done) && rs_clock_now() < end) nanosleep(&(struct timespec){0, 1000000}, NULL);
    return atomic_load(&r->n_done);
}

/* The engine's score of each prompt alone (a second engine: the batcher's
 * worker is the only caller of its own). */
static void check_scores(rs_engine *ref, const req *r, const char *what) {
    for (size_t i = 0; i < r->w.n; i++) {
        if (r->items[i].fate != RS_FATE_SCORED) continue;
        const size_t off[2] = {0, r->items[i].n_ids};
        rs_score want;
        rs_err err = {{0}};
        CHECK_MSG(rs_engine_score_tokens(ref, r->ids[i], off, 1, NAN, &want, &err) == RS_OK, "%s", err.msg);
        CHECK_MSG(r->scores[i].status == RS_OK && fabsf(r->scores[i].win_prob - want.win_prob) <= 1e-5f,
                  "%s prompt %zu: win_prob %.7f, alone %.7f", what, i, r->scores[i].win_prob, want.win_prob);
    }
}

static rs_batcher_opts base_opts(void) {
    rs_batcher_opts o;
    memset(&o, 0, sizeof o);
    o.max_batch_tokens = 1000;
    o.max_batch_size = 64;
    o.max_queue_delay_us = 5000000;
    o.max_queue_tokens = 100000;
    return o;
}

static rs_batcher *start(rs_engine *e, const rs_batcher_opts *o) {
    rs_batcher *b = NULL;
    rs_err err = {{0}};
    CHECK_MSG(rs_batcher_start(&e, 1, o, &b, &err) == RS_OK, "%s", err.msg);
    return b;
}

static void test_limits(rs_engine *e) {
    rs_batcher_opts o = base_opts();
    rs_batcher *b = NULL;
    rs_err err = {{0}};
    o.max_queue_tokens = o.max_batch_tokens - 1;
    CHECK(rs_batcher_start(&e, 1, &o, &b, &err) == RS_ERR_INVALID_ARG && !b);
    o = base_opts();
    o.max_batch_size = 0;
    CHECK(rs_batcher_start(&e, 1, &o, &b, &err) == RS_ERR_INVALID_ARG && !b);
    CHECK(rs_batcher_start(&e, 0, &o, &b, &err) == RS_ERR_INVALID_ARG && !b);
}

/* max_batch_size 2: five one-prompt requests form batches {0,1} {2,3} {4}. */
static void test_batch_size(rs_engine *e, rs_engine *ref) {
    rs_batcher_opts o = base_opts();
    o.max_batch_size = 2;
    rs_batcher *b = start(e, &o);
    if (!b) return;
    static req r[5];
    const int len[1] = {6};
    for (int i = 0; i < 5; i++) {
        req_init(&r[i], b, i, 1, len, INFINITY);
        CHECK(rs_batcher_submit(b, &r[i].w) == RS_ADMIT_OK);
    }
    CHECK(wait_done(&r[3], 30));
    CHECK(!atomic_load(&r[4].n_done)); /* a lone prompt waits for the delay (or stop) */
    rs_batcher_stop(b);                /* drains: the last batch closes now */
    static const uint64_t want_batch[5] = {1, 1, 2, 2, 3};
    for (int i = 0; i < 5; i++) {
        CHECK_MSG(atomic_load(&r[i].n_done) == 1, "request %d done %d times", i, atomic_load(&r[i].n_done));
        CHECK_MSG(r[i].batch == want_batch[i], "request %d in batch %llu, want %llu", i, (unsigned long long)r[i].batch,
                  (unsigned long long)want_batch[i]);
        if (i) CHECK_MSG(r[i].order > r[i - 1].order, "request %d finished before %d", i, i - 1);
        CHECK(r[i].items[0].fate == RS_FATE_SCORED && atomic_load(&r[i].w.pending) == 0);
        check_scores(ref, &r[i], "batch_size");
    }
    CHECK(rs_batcher_batches(b) == 3 && rs_batcher_replica_batches(b, 0) == 3 && rs_batcher_replica_batches(b, 1) == 0);
    req late;
    req_init(&late, b, 9, 1, len, INFINITY);
    CHECK(rs_batcher_submit(b, &late.w) == RS_ADMIT_STOPPED && !atomic_load(&late.n_done));
    rs_batcher_free(b);
}

/* max_batch_tokens 12: {5,5} | {5,7} | a two-prompt request {6,6} that
 * starts a batch of its own, then a three-prompt one {7 | 7,5} across two. */
static void test_batch_tokens(rs_engine *e, rs_engine *ref) {
    rs_batcher_opts o = base_opts();
    o.max_batch_tokens = 12;
    o.max_queue_tokens = 1000;
    rs_batcher *b = start(e, &o);
    if (!b) return;
    static req r[6];
    const int l5[1] = {5}, l7[1] = {7}, l66[2] = {6, 6}, l775[3] = {7, 7, 5};
    const int *lens[6] = {l5, l5, l5, l7, l66, l775};
    const size_t n[6] = {1, 1, 1, 1, 2, 3};
    for (int i = 0; i < 6; i++) {
        req_init(&r[i], b, 10 + i, n[i], lens[i], INFINITY);
        CHECK(rs_batcher_submit(b, &r[i].w) == RS_ADMIT_OK);
    }
    CHECK(wait_done(&r[4], 30));
    rs_batcher_stop(b);
    static const uint64_t want_batch[6] = {1, 1, 2, 2, 3, 5};
    for (int i = 0; i < 6; i++) {
        CHECK_MSG(atomic_load(&r[i].n_done) == 1, "request %d done %d times", i, atomic_load(&r[i].n_done));
        CHECK_MSG(r[i].batch == want_batch[i], "request %d in batch %llu, want %llu", i, (unsigned long long)r[i].batch,
                  (unsigned long long)want_batch[i]);
        if (i) CHECK(r[i].order > r[i - 1].order);
        check_scores(ref, &r[i], "batch_tokens");
    }
    CHECK(rs_batcher_batches(b) == 5);
    rs_batcher_free(b);
}

/* Admission by tokens, cancellation and expiry. max_queue_tokens 100. */
static void test_admission_tokens(rs_engine *e, rs_engine *ref) {
    rs_batcher_opts o = base_opts();
    o.max_batch_tokens = 100;
    o.max_queue_tokens = 100;
    rs_batcher *b = start(e, &o);
    if (!b) return;
    static req big, huge, emb, w0, w1, w2, w3;
    const int l60[2] = {60, 60}, l101[1] = {101}, l40[1] = {40}, l30[1] = {30}, l10[1] = {10};
    req_init(&big, b, 1, 2, l60, INFINITY);
    CHECK(rs_batcher_submit(b, &big.w) == RS_ADMIT_TOO_BIG);
    req_init(&huge, b, 2, 1, l101, INFINITY);
    CHECK(rs_batcher_submit(b, &huge.w) == RS_ADMIT_INVALID);
    static const float vec[4] = {1, 0, 0, 0};
    req_init(&emb, b, 3, 1, l10, INFINITY);
    emb.items[0].ids = NULL;
    emb.items[0].emb = vec;
    emb.items[0].n_ids = 1;
    CHECK(rs_batcher_submit(b, &emb.w) == RS_ADMIT_INVALID); /* emb_dim 0 */
    CHECK(!atomic_load(&big.n_done) && !atomic_load(&huge.n_done) && !atomic_load(&emb.n_done));

    req_init(&w0, b, 4, 1, l40, INFINITY);
    req_init(&w1, b, 5, 1, l40, INFINITY);
    req_init(&w2, b, 6, 1, l30, INFINITY);
    CHECK(rs_batcher_submit(b, &w0.w) == RS_ADMIT_OK);
    CHECK(rs_batcher_submit(b, &w1.w) == RS_ADMIT_OK);
    CHECK(rs_batcher_submit(b, &w2.w) == RS_ADMIT_FULL); /* 40 + 40 + 30 > 100 */
    CHECK(!atomic_load(&w2.n_done));
    rs_batcher_cancel(b, &w1.w);                        /* its 40 tokens are free at once */
    CHECK(rs_batcher_submit(b, &w2.w) == RS_ADMIT_OK);  /* 40 + 30 */
    /* w1 was queued or already packed beside w0 (the former's timing): it is
     * dropped either way, before any forward holds it. */
    CHECK(wait_done(&w1, 30));
    CHECK(w1.items[0].fate == RS_FATE_CANCELLED && atomic_load(&w1.w.n_cancelled) == 1);
    CHECK(w1.scores[0].win_prob == 0 && w1.scores[0].status == RS_OK);
    rs_batcher_cancel(b, &w1.w); /* again, after done(): harmless */

    req_init(&w3, b, 7, 1, l10, rs_clock_now() - 1); /* deadline passed */
    CHECK(rs_batcher_submit(b, &w3.w) == RS_ADMIT_OK);
    CHECK(wait_done(&w3, 30));
    CHECK(w3.items[0].fate == RS_FATE_EXPIRED && atomic_load(&w3.w.n_expired) == 1 &&
          atomic_load(&w3.w.n_cancelled) == 0);
    rs_batcher_stop(b);
    CHECK(atomic_load(&w0.n_done) == 1 && w0.items[0].fate == RS_FATE_SCORED);
    CHECK(atomic_load(&w2.n_done) == 1 && w2.items[0].fate == RS_FATE_SCORED && w2.order > w0.order);
    CHECK(atomic_load(&w1.n_done) == 1 && atomic_load(&w3.n_done) == 1);
    check_scores(ref, &w0, "admission");
    check_scores(ref, &w2, "admission");
    /* w1 and w3 never computed: w0 and w2 in one batch or two */
    CHECK_MSG(rs_batcher_batches(b) == w2.batch && (w2.batch == 1 || (w2.batch == 2 && w0.batch == 1)),
              "%llu batches, w0 in %llu, w2 in %llu", (unsigned long long)rs_batcher_batches(b),
              (unsigned long long)w0.batch, (unsigned long long)w2.batch);
    rs_batcher_free(b);
}

/* Admission by expected wait: once a forward is measured, a request that
 * cannot finish by its deadline is LATE; one whose wait alone passes
 * max_queue_wait_s is BUSY. */
static void test_admission_time(rs_engine *e, rs_engine *ref) {
    rs_batcher_opts o = base_opts();
    o.max_batch_size = 4;
    o.max_queue_wait_s = 1e-7;
    rs_batcher *b = start(e, &o);
    if (!b) return;
    static req warm, late, hold, busy, fits;
    const int l4[4] = {10, 10, 10, 10}, l10[1] = {10};
    /* Before any forward there is no estimate: a passed deadline is still
     * admitted (and expires in the queue). */
    req_init(&warm, b, 1, 4, l4, INFINITY);
    CHECK(rs_batcher_submit(b, &warm.w) == RS_ADMIT_OK); /* 4 prompts: full, runs at once */
    CHECK(wait_done(&warm, 30));
    check_scores(ref, &warm, "warm");
    req_init(&late, b, 2, 1, l10, rs_clock_now());
    CHECK(rs_batcher_submit(b, &late.w) == RS_ADMIT_LATE);
    req_init(&hold, b, 3, 1, l10, INFINITY);
    CHECK(rs_batcher_submit(b, &hold.w) == RS_ADMIT_OK); /* empty queue: no wait */
    req_init(&busy, b, 4, 1, l10, INFINITY);
    CHECK(rs_batcher_submit(b, &busy.w) == RS_ADMIT_BUSY); /* behind hold's 10 tokens */
    /* cancelling hold empties the queue: admitted again */
    rs_batcher_cancel(b, &hold.w);
    req_init(&fits, b, 5, 1, l10, INFINITY);
    CHECK(rs_batcher_submit(b, &fits.w) == RS_ADMIT_OK);
    rs_batcher_stop(b);
    CHECK(atomic_load(&hold.n_done) == 1 && hold.items[0].fate == RS_FATE_CANCELLED);
    CHECK(atomic_load(&fits.n_done) == 1 && fits.items[0].fate == RS_FATE_SCORED);
    CHECK(!atomic_load(&late.n_done) && !atomic_load(&busy.n_done));
    check_scores(ref, &fits, "time");
    rs_batcher_free(b);
}

/* A request of no prompts finishes at once; cancelling right after submit
 * finishes every prompt once, whatever it had reached. */
static void test_empty_and_cancel_race(rs_engine *e) {
    rs_batcher_opts o = base_opts();
    o.max_batch_size = 2;
    rs_batcher *b = start(e, &o);
    if (!b) return;
    static req none, r[8];
    req_init(&none, b, 0, 0, NULL, INFINITY);
    CHECK(rs_batcher_submit(b, &none.w) == RS_ADMIT_OK && atomic_load(&none.n_done) == 1);
    const int l3[3] = {8, 9, 10};
    for (int i = 0; i < 8; i++) {
        req_init(&r[i], b, 20 + i, 3, l3, INFINITY);
        CHECK(rs_batcher_submit(b, &r[i].w) == RS_ADMIT_OK);
        if (i % 2) rs_batcher_cancel(b, &r[i].w);
    }
    rs_batcher_stop(b);
    for (int i = 0; i < 8; i++) {
        CHECK(atomic_load(&r[i].n_done) == 1 && atomic_load(&r[i].w.pending) == 0);
        size_t scored = 0, cancelled = 0;
        for (int k = 0; k < 3; k++) {
            scored += r[i].items[k].fate == RS_FATE_SCORED;
            cancelled += r[i].items[k].fate == RS_FATE_CANCELLED;
        }
        CHECK(scored + cancelled == 3 && cancelled == atomic_load(&r[i].w.n_cancelled));
        if (!(i % 2)) CHECK(scored == 3);
    }
    rs_batcher_free(b);
}

int main(void) {
    const char *data = test_env("RS_TEST_DATA");
    if (!data) {
        fprintf(stderr, "RS_TEST_DATA not set\n");
        return 1;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fidelity/xlmr_tiny_text", data);
    rs_engine *e = test_open_engine(dir, NULL, 0), *ref = test_open_engine(dir, NULL, 0);
    if (e && ref) {
        test_limits(e);
        test_batch_size(e, ref);
        test_batch_tokens(e, ref);
        test_admission_tokens(e, ref);
        test_admission_time(e, ref);
        test_empty_and_cancel_race(e);
    }
    rs_engine_close(e);
    rs_engine_close(ref);
    return test_done("test_batcher");
}
