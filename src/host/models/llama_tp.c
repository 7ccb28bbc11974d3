/* llama_tp.c — see llama_tp.h. */
#include "llama_tp.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A barrier that a failing rank can break: waiters then return non-zero. */
typedef struct barrier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n, waiting, generation, broken;
} barrier;

static int barrier_wait(barrier *b) {
    pthread_mutex_lock(&b->mu);
    int gen = b->generation;
    if (!b->broken && ++b->waiting == b->n) {
        b->waiting = 0;
        b->generation++;
        pthread_cond_broadcast(&b->cv);
    } else {
        while (!b->broken && gen == b->generation) pthread_cond_wait(&b->cv, &b->mu);
    }
    int broken = b->broken;
    pthread_mutex_unlock(&b->mu);
    return broken;
}

static void barrier_break(barrier *b) {
    pthread_mutex_lock(&b->mu);
    b->broken = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

typedef enum call_kind { CALL_PREFIX, CALL_FORWARD } call_kind;

/* One call's arguments, the same for every rank. */
typedef struct call {
    call_kind kind;
    const int32_t *ids, *slot, *pos, *rows;
    int n, n_rows;
    float *logits; /* rank 0's output */
} call;

typedef struct rank_run {
    rs_llama_tp *t;
    int rank;
    rs_status st;
    rs_err err;
} rank_run;

struct rs_llama_tp {
    int n;
    rs_llama *ranks[RS_LLAMA_TP_MAX];
    rs_backend *backends[RS_LLAMA_TP_MAX];
    float *stage;   /* (n, max_floats) each rank's partial sums, host */
    float *sum;     /* (max_floats) the reduced block output, host */
    size_t max_floats;
    barrier bar;
    void *nccl; /* rs_nccl when the ranks all-reduce with NCCL */
    call cur;
    rank_run runs[RS_LLAMA_TP_MAX];
};

/* The hook: every rank copies its partial sums out, each sums one slice of
 * them across the ranks, then every rank copies the whole sum back. */
static rs_status host_allreduce(void *ctx, int rank, rs_backend *b, float *x, size_t n) {
    rs_llama_tp *t = ctx;
    if (n > t->max_floats) return RS_ERR_INTERNAL;
    float *mine = t->stage + (size_t)rank * t->max_floats;
    rs_status st = b->ops->to_host(b, mine, x, n);
    if (st != RS_OK) return st;
    if (barrier_wait(&t->bar)) return RS_ERR_BACKEND; /* another rank failed */
    const size_t lo = n * (size_t)rank / (size_t)t->n, hi = n * (size_t)(rank + 1) / (size_t)t->n;
    for (size_t i = lo; i < hi; i++) {
        float s = 0.f;
        for (int r = 0; r < t->n; r++) s += t->stage[(size_t)r * t->max_floats + i];
        t->sum[i] = s;
    }
    if (barrier_wait(&t->bar)) return RS_ERR_BACKEND;
    return b->ops->from_host(b, x, t->sum, n);
}

static void run_rank(rank_run *r) {
    rs_llama_tp *t = r->t;
    const call *c = &t->cur;
    rs_llama *m = t->ranks[r->rank];
    if (c->kind == CALL_PREFIX)
        r->st = rs_llama_set_prefix(m, c->ids, c->n, &r->err);
    else /* only rank 0 needs the logits: the others skip the LM head */
        r->st = rs_llama_forward(m, c->ids, c->slot, c->pos, c->n, c->rows, r->rank == 0 ? c->n_rows : 0,
                                 r->rank == 0 ? c->logits : NULL, &r->err);
#ifdef RS_HAVE_NCCL
    /* With NCCL the ranks after 0 read nothing back, so nothing would show
     * their faults: they wait for their stream too (bounded, see
     * nccl_allreduce.cu), and a failed rank breaks the group so no rank
     * waits for it. */
    rs_backend *b = t->backends[r->rank];
    if (t->nccl && r->st == RS_OK && r->rank > 0 && (r->st = b->ops->to_host(b, NULL, NULL, 0)) != RS_OK)
        rs_errf(&r->err, r->st, "%s backend failed while its all-reduce waited for the other ranks", b->ops->name);
    if (t->nccl && r->st != RS_OK) rs_nccl_break(t->nccl);
#endif
    if (r->st != RS_OK) barrier_break(&t->bar); /* release the ranks waiting for this one */
}

static void *rank_main(void *arg) {
    run_rank(arg);
    return NULL;
}

/* Runs t->cur on every rank; the first failure (by rank) is the result. */
static rs_status run_all(rs_llama_tp *t, rs_err *err) {
    pthread_t th[RS_LLAMA_TP_MAX];
    int started[RS_LLAMA_TP_MAX] = {0};
    t->bar.broken = 0;
    t->bar.waiting = 0;
    for (int r = 0; r < t->n; r++) t->runs[r] = (rank_run){t, r, RS_OK, {{0}}};
    for (int r = 1; r < t->n; r++) {
        started[r] = pthread_create(&th[r], NULL, rank_main, &t->runs[r]) == 0;
        if (!started[r]) {
            t->runs[r].st = rs_errf(&t->runs[r].err, RS_ERR_INTERNAL, "cannot start the thread of rank %d", r);
            barrier_break(&t->bar);
        }
    }
    run_rank(&t->runs[0]);
    for (int r = 1; r < t->n; r++)
        if (started[r]) pthread_join(th[r], NULL);
    /* A rank released by a broken barrier reports RS_ERR_BACKEND; the rank
     * that broke it has the real error: prefer any other failure. */
    int first = -1;
    for (int r = 0; r < t->n; r++)
        if (t->runs[r].st != RS_OK && (first < 0 || t->runs[first].st == RS_ERR_BACKEND)) first = r;
    if (first < 0) return RS_OK;
    return rs_errf(err, t->runs[first].st, "tensor-parallel rank %d: %s", first, t->runs[first].err.msg);
}

rs_status rs_llama_tp_create(rs_model_files *files, rs_backend *const *backends, const int *gpus, int n,
                             const rs_llama_limits *lim, rs_llama_tp **out, rs_err *err) {
    *out = NULL;
    if (n < 1 || n > RS_LLAMA_TP_MAX)
        return rs_errf(err, RS_ERR_INVALID_ARG, "tensor parallelism %d (1 to %d)", n, RS_LLAMA_TP_MAX);
    rs_llama_tp *t = calloc(1, sizeof *t);
    if (!t) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    t->n = n;
    pthread_mutex_init(&t->bar.mu, NULL);
    pthread_cond_init(&t->bar.cv, NULL);
    t->bar.n = n;
    rs_status st = RS_OK;
    rs_llama_allreduce_fn hook = host_allreduce;
    void *hook_ctx = t;
#ifdef RS_HAVE_NCCL
    if (gpus && n > 1) {
        st = rs_nccl_create(gpus, n, lim->allreduce_timeout_ms, (rs_nccl **)&t->nccl, err);
        hook = rs_nccl_allreduce;
        hook_ctx = t->nccl;
    }
#else
    (void)gpus;
#endif
    for (int r = 0; r < n && st == RS_OK; r++) {
        rs_llama_limits l = *lim;
        l.tp_rank = r;
        l.tp_size = n;
        t->backends[r] = backends[r];
        st = rs_llama_create(files, backends[r], &l, &t->ranks[r], err);
        if (st == RS_OK && n > 1) rs_llama_set_allreduce(t->ranks[r], hook, hook_ctx);
    }
    if (st == RS_OK && n > 1 && !t->nccl) {
        /* The largest block output: a forward's max_tokens rows (the prefix
         * goes through in chunks of the same size) of hidden floats. */
        t->max_floats = (size_t)lim->max_tokens * (size_t)rs_llama_get_config(t->ranks[0])->hidden;
        t->stage = malloc((size_t)n * t->max_floats * sizeof *t->stage);
        t->sum = malloc(t->max_floats * sizeof *t->sum);
        if (!t->stage || !t->sum) st = rs_errf(err, RS_ERR_NOMEM, "no memory for the all-reduce buffers");
    }
    if (st != RS_OK) {
        rs_llama_tp_free(t);
        return st;
    }
    *out = t;
    return RS_OK;
}

void rs_llama_tp_free(rs_llama_tp *t) {
    if (!t) return;
    for (int r = 0; r < t->n; r++) rs_llama_free(t->ranks[r]);
#ifdef RS_HAVE_NCCL
    rs_nccl_free(t->nccl);
#endif
    free(t->stage);
    free(t->sum);
    pthread_mutex_destroy(&t->bar.mu);
    pthread_cond_destroy(&t->bar.cv);
    free(t);
}

const char *rs_llama_tp_allreduce_kind(const rs_llama_tp *t) { return t->n == 1 ? "none" : t->nccl ? "nccl" : "host"; }
const rs_llama_config *rs_llama_tp_config(const rs_llama_tp *t) { return rs_llama_get_config(t->ranks[0]); }
int rs_llama_tp_prefix_len(const rs_llama_tp *t) { return rs_llama_prefix_len(t->ranks[0]); }

rs_status rs_llama_tp_set_prefix(rs_llama_tp *t, const int32_t *ids, int n, rs_err *err) {
    if (t->n == 1) return rs_llama_set_prefix(t->ranks[0], ids, n, err);
    t->cur = (call){.kind = CALL_PREFIX, .ids = ids, .n = n};
    return run_all(t, err);
}

rs_status rs_llama_tp_forward(rs_llama_tp *t, const int32_t *ids, const int32_t *slot, const int32_t *pos, int n,
                              const int32_t *rows, int n_rows, float *logits, rs_err *err) {
    if (t->n == 1) return rs_llama_forward(t->ranks[0], ids, slot, pos, n, rows, n_rows, logits, err);
    t->cur = (call){CALL_FORWARD, ids, slot, pos, rows, n, n_rows, logits};
    return run_all(t, err);
}
