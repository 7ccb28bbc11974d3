/* batcher.c — see batcher.h (DESIGN). */
#include "batcher.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

#define TPUT_N 16

typedef enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_COMPUTING } slot_state;

/* One batch being prepared or computed. */
typedef struct slot {
    slot_state state;
    uint64_t seq;      /* order of closing: the worker takes the oldest */
    size_t n, n_tok;   /* prompts, tokens packed (an embedding counts 1) */
    int emb_batch;     /* its items carry client embeddings, not ids */
    double t_oldest;   /* admission time of the oldest prompt in it */
    int32_t *ids;      /* (max_batch_tokens) packed back to back */
    float *emb;        /* (max_batch_size, emb_dim) when emb_dim > 0 */
    size_t *offsets;   /* (max_batch_size + 1) */
    rs_item **items;   /* (max_batch_size) */
    rs_score *out;     /* (max_batch_size) */
    float *wp;         /* (max_batch_size) win probabilities, for the online window */
} slot;

typedef struct worker_arg {
    rs_batcher *b;
    int replica;
} worker_arg;

struct rs_batcher {
    rs_engine *engines[RS_BATCHER_MAX_REPLICAS];
    int n_engines;
    rs_batcher_opts o;
    pthread_mutex_t mu;
    pthread_cond_t cv_former; /* queue grew, a slot freed, stop */
    pthread_cond_t cv_worker; /* a slot is ready, the former ended */
    rs_item *head, *tail;     /* FIFO of admitted prompts not yet in a slot */
    rs_item *dead;            /* cancelled prompts out of the FIFO, for the former to finish */
    long admitted_tokens;     /* admitted and not yet released (queue + slots) */
    /* Throughput of the last TPUT_N forwards (ring), for admission by time. */
    double tput_tok[TPUT_N], tput_s[TPUT_N];
    int tput_n, tput_i;
    uint64_t next_seq;
    int stopping, former_done, busy, fatal; /* busy: workers computing */
    char fatal_msg[256];
    slot *slots; /* n_engines + 1 */
    int n_slots;
    pthread_t former, workers[RS_BATCHER_MAX_REPLICAS];
    int n_workers_started;
    worker_arg args[RS_BATCHER_MAX_REPLICAS];
    _Atomic uint64_t batches;
    _Atomic uint64_t replica_batches[RS_BATCHER_MAX_REPLICAS];
};

typedef rs_item_fate fate;
#define FATE_SCORED RS_FATE_SCORED
#define FATE_CANCELLED RS_FATE_CANCELLED
#define FATE_EXPIRED RS_FATE_EXPIRED
#define FATE_FAILED RS_FATE_FAILED

/* The prompt's tokens leave the admission count (once). Lock held. */
static void release(rs_batcher *b, rs_item *it) {
    if (it->released) return;
    it->released = 1;
    b->admitted_tokens -= it->n_ids;
    if (b->o.metrics) rs_metrics_queue(b->o.metrics, b->o.router_index, -1, -(int64_t)it->n_ids);
}

/* Tokens per second over the measured forwards, all replicas; 0: none yet. Lock held. */
static double throughput(const rs_batcher *b) {
    double tok = 0, sec = 0;
    for (int i = 0; i < b->tput_n; i++) {
        tok += b->tput_tok[i];
        sec += b->tput_s[i];
    }
    return sec > 0 && tok > 0 ? tok / sec * b->n_engines : 0;
}

static int item_dead(const rs_item *it, double now) {
    return atomic_load(&it->work->cancelled) || now >= it->work->deadline;
}

/* The last step of every prompt: record its fate, and finish its work when it
 * was the last one. Called without the batcher lock. */
static void finish_item(rs_batcher *b, rs_item *it, fate f, rs_status st, const char *msg) {
    rs_work *w = it->work;
    it->fate = (uint8_t)f;
    if (f != FATE_SCORED) {
        /* A dropped prompt has no score and no per-prompt error: it is not
         * the input's fault (the request's outcome reads the counts below). */
        rs_score *s = &w->scores[it->index];
        memset(s, 0, sizeof *s);
        if (f == FATE_FAILED) {
            s->status = st;
            snprintf(s->error, sizeof s->error, "%.150s", msg);
        }
        if (f == FATE_CANCELLED) atomic_fetch_add(&w->n_cancelled, 1);
        if (f == FATE_EXPIRED) atomic_fetch_add(&w->n_expired, 1);
        if (f == FATE_FAILED) {
            /* The first failure's worker is their only writer; done() reads
             * them after every prompt's pending decrement. */
            if (!atomic_fetch_add(&w->n_failed, 1)) {
                w->fail_status = st;
                snprintf(w->fail_msg, sizeof w->fail_msg, "%.250s", msg);
            }
        }
        if (b->o.metrics && f != FATE_FAILED)
            rs_metrics_drop(b->o.metrics, b->o.router_index, f == FATE_CANCELLED ? RS_DROP_CANCELLED : RS_DROP_EXPIRED, 1);
    }
    if (atomic_fetch_sub(&w->pending, 1) == 1) w->done(w);
}

static void finish_dead(rs_batcher *b, rs_item *dead) {
    const double now = rs_clock_now();
    while (dead) {
        rs_item *next = dead->next;
        /* The core cancels a call when its deadline passes, so test the
         * deadline first: that is the reason the caller will see. */
        finish_item(b, dead, now + RS_EXPIRY_SLACK_S >= dead->work->deadline ? FATE_EXPIRED : FATE_CANCELLED, RS_OK, NULL);
        dead = next;
    }
}

static slot *find_slot(rs_batcher *b, slot_state st) {
    slot *best = NULL;
    for (int i = 0; i < b->n_slots; i++)
        if (b->slots[i].state == st && (!best || b->slots[i].seq < best->seq)) best = &b->slots[i];
    return best;
}

static void abs_deadline(struct timespec *ts, double wait_s) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    double s = (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9 + (wait_s > 0 ? wait_s : 0);
    ts->tv_sec = (time_t)s;
    ts->tv_nsec = (long)((s - (double)ts->tv_sec) * 1e9);
}

/* Whether item it can join slot s: room left, and the batch's kind. */
static int fits(const rs_batcher *b, const slot *s, const rs_item *it) {
    if (s->n == 0) return 1;
    return s->n < (size_t)b->o.max_batch_size && s->n_tok + it->n_ids <= (size_t)b->o.max_batch_tokens &&
           (it->emb != NULL) == s->emb_batch;
}

static void *former_main(void *arg) {
    rs_batcher *b = arg;
    const double delay = (double)b->o.max_queue_delay_us * 1e-6;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        if (b->dead) { /* cancelled prompts first: their callers are waiting on nothing else */
            rs_item *dead = b->dead;
            b->dead = NULL;
            pthread_mutex_unlock(&b->mu);
            finish_dead(b, dead);
            pthread_mutex_lock(&b->mu);
            continue;
        }
        slot *s = find_slot(b, SLOT_FILLING);
        if (!s) s = find_slot(b, SLOT_FREE);
        if (!s || (s->state == SLOT_FREE && !b->head)) {
            if (b->stopping && !b->head) break;
            pthread_cond_wait(&b->cv_former, &b->mu);
            continue;
        }
        if (s->state == SLOT_FREE) {
            s->state = SLOT_FILLING;
            s->n = s->n_tok = 0;
            s->offsets[0] = 0;
        }
        /* Pack from the head of the queue; dead prompts leave it here. */
        rs_item *dead = NULL;
        const double now = rs_clock_now();
        while (b->head) {
            rs_item *it = b->head;
            int dead_now = item_dead(it, now);
            if (!dead_now && !fits(b, s, it)) break;
            b->head = it->next;
            if (b->head)
                b->head->prev = NULL;
            else
                b->tail = NULL;
            if (dead_now) {
                release(b, it);
                it->state = RS_ITEM_DEAD;
                it->next = dead;
                dead = it;
                continue;
            }
            if (s->n == 0) {
                s->t_oldest = it->work->t_enqueue;
                s->emb_batch = it->emb != NULL;
            }
            if (it->emb)
                memcpy(s->emb + s->n * (size_t)b->o.emb_dim, it->emb, (size_t)b->o.emb_dim * sizeof(float));
            else
                memcpy(s->ids + s->n_tok, it->ids, it->n_ids * sizeof(int32_t));
            it->state = RS_ITEM_SLOT;
            s->items[s->n++] = it;
            s->n_tok += it->n_ids;
            s->offsets[s->n] = s->n_tok;
        }
        const int full = s->n == (size_t)b->o.max_batch_size || (b->head && !fits(b, s, b->head));
        int n_ready = 0;
        for (int i = 0; i < b->n_slots; i++) n_ready += b->slots[i].state == SLOT_READY;
        const int engine_idle = b->busy + n_ready < b->n_engines; /* a replica would take it now */
        int closed = 0;
        if (s->n > 0 && (full || b->stopping || (engine_idle && now >= s->t_oldest + delay))) {
            s->state = SLOT_READY;
            s->seq = b->next_seq++;
            pthread_cond_signal(&b->cv_worker);
            closed = 1;
        } else if (s->n == 0) {
            s->state = SLOT_FREE;
        }
        if (dead) {
            pthread_mutex_unlock(&b->mu);
            finish_dead(b, dead);
            pthread_mutex_lock(&b->mu);
            continue;
        }
        if (closed) continue;
        if (s->n > 0 && engine_idle) {
            struct timespec ts;
            abs_deadline(&ts, s->t_oldest + delay - now);
            pthread_cond_timedwait(&b->cv_former, &b->mu, &ts);
        } else {
            pthread_cond_wait(&b->cv_former, &b->mu);
        }
    }
    b->former_done = 1;
    pthread_cond_broadcast(&b->cv_worker);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* Computes one closed batch on replica r (its worker thread, no lock held). */
static void run_batch(rs_batcher *b, slot *s, int r) {
    const double now = rs_clock_now();
    rs_item *dead = NULL;
    /* Drop prompts that died since packing; slide the rest left. */
    size_t k = 0, tok = 0;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < s->n; i++) {
        rs_item *it = s->items[i];
        if (item_dead(it, now)) {
            release(b, it);
            it->state = RS_ITEM_DEAD;
            it->next = dead;
            dead = it;
            continue;
        }
        size_t len = s->offsets[i + 1] - s->offsets[i];
        if (s->emb_batch) {
            const size_t d = (size_t)b->o.emb_dim;
            if (k != i) memmove(s->emb + k * d, s->emb + i * d, d * sizeof(float));
        } else if (tok != s->offsets[i]) {
            memmove(s->ids + tok, s->ids + s->offsets[i], len * sizeof(int32_t));
        }
        s->items[k] = it;
        s->offsets[k] = tok;
        tok += len;
        k++;
    }
    s->offsets[k] = tok;
    pthread_mutex_unlock(&b->mu);
    rs_status st = RS_OK;
    rs_err err = {{0}};
    if (b->fatal) {
        st = rs_errf(&err, RS_ERR_BACKEND, "engine unusable after an earlier failure: %s", b->fatal_msg);
    } else if (k > 0) {
        rs_engine *e = b->engines[r];
        const double t0 = rs_clock_now();
        if (s->emb_batch)
            st = rs_engine_score_embeddings(e, s->emb, k, (size_t)b->o.emb_dim, NAN, s->out, &err);
        else
            st = rs_engine_score_tokens(e, s->ids, s->offsets, k, NAN, s->out, &err);
        const double t1 = rs_clock_now();
        atomic_fetch_add(&b->batches, 1);
        atomic_fetch_add(&b->replica_batches[r], 1);
        if (st == RS_OK) {
            pthread_mutex_lock(&b->mu); /* another replica may hold prompts of the same works */
            b->tput_tok[b->tput_i] = (double)tok;
            b->tput_s[b->tput_i] = t1 - t0;
            b->tput_i = (b->tput_i + 1) % TPUT_N;
            if (b->tput_n < TPUT_N) b->tput_n++;
            for (size_t i = 0; i < k; i++) {
                rs_work *w = s->items[i]->work;
                w->scores[s->items[i]->index] = s->out[i];
                if (w->t_first_start == 0 || t0 < w->t_first_start) w->t_first_start = t0;
                if (t1 > w->t_last_end) w->t_last_end = t1;
                s->wp[i] = s->out[i].win_prob;
            }
            pthread_mutex_unlock(&b->mu);
            if (b->o.online) rs_online_observe(b->o.online, s->wp, k);
            if (b->o.metrics) {
                rs_metrics *m = b->o.metrics;
                const int r = b->o.router_index;
                rs_metrics_observe(m, r, RS_H_BATCH_SIZE, (double)k);
                rs_metrics_observe(m, r, RS_H_BATCH_TOKENS, (double)tok);
                rs_metrics_observe(m, r, RS_H_INFERENCE, t1 - t0);
                rs_metrics_prompts(m, r, k, tok);
                for (size_t i = 0; i < k; i++) rs_metrics_observe(m, r, RS_H_QUEUE_WAIT, t0 - s->items[i]->work->t_enqueue);
            }
        } else if (st == RS_ERR_BACKEND) {
            pthread_mutex_lock(&b->mu);
            const int first = !b->fatal;
            b->fatal = 1;
            if (first) snprintf(b->fatal_msg, sizeof b->fatal_msg, "%.250s", err.msg);
            pthread_mutex_unlock(&b->mu);
            if (first && b->o.on_fatal) b->o.on_fatal(b->o.fatal_arg, err.msg);
        }
    }
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < k; i++) release(b, s->items[i]);
    pthread_mutex_unlock(&b->mu);
    for (size_t i = 0; i < k; i++)
        finish_item(b, s->items[i], st == RS_OK ? FATE_SCORED : FATE_FAILED, st, err.msg);
    finish_dead(b, dead);
}

static void *worker_main(void *arg) {
    const worker_arg *wa = arg;
    rs_batcher *b = wa->b;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        slot *s = find_slot(b, SLOT_READY);
        if (!s) {
            if (b->former_done) break;
            pthread_cond_wait(&b->cv_worker, &b->mu);
            continue;
        }
        s->state = SLOT_COMPUTING;
        b->busy++;
        pthread_mutex_unlock(&b->mu);
        run_batch(b, s, wa->replica);
        pthread_mutex_lock(&b->mu);
        s->state = SLOT_FREE;
        s->n = s->n_tok = 0;
        b->busy--;
        pthread_cond_signal(&b->cv_former);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static void free_slots(rs_batcher *b) {
    for (int i = 0; b->slots && i < b->n_slots; i++) {
        slot *s = &b->slots[i];
        free(s->ids);
        free(s->emb);
        free(s->offsets);
        free(s->items);
        free(s->out);
        free(s->wp);
    }
    free(b->slots);
}

/* Stops the threads started so far (start's failure path). */
static void stop_started(rs_batcher *b, int former_started) {
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    if (!former_started) b->former_done = 1;
    pthread_cond_broadcast(&b->cv_former);
    pthread_cond_broadcast(&b->cv_worker);
    pthread_mutex_unlock(&b->mu);
    if (former_started) pthread_join(b->former, NULL);
    for (int i = 0; i < b->n_workers_started; i++) pthread_join(b->workers[i], NULL);
}

static void destroy(rs_batcher *b) {
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv_former);
    pthread_cond_destroy(&b->cv_worker);
    free_slots(b);
    free(b);
}

rs_status rs_batcher_start(rs_engine *const *engines, int n_engines, const rs_batcher_opts *o, rs_batcher **out,
                           rs_err *err) {
    *out = NULL;
    if (n_engines < 1 || n_engines > RS_BATCHER_MAX_REPLICAS)
        return rs_errf(err, RS_ERR_INVALID_ARG, "batcher: %d replicas (1 to %d)", n_engines, RS_BATCHER_MAX_REPLICAS);
    if (o->max_batch_tokens < 1 || o->max_batch_size < 1 || o->max_queue_delay_us < 0 ||
        o->max_queue_tokens < o->max_batch_tokens || o->emb_dim < 0)
        return rs_errf(err, RS_ERR_INVALID_ARG, "batcher: bad limits");
    rs_batcher *b = calloc(1, sizeof *b);
    if (!b) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    b->n_engines = n_engines;
    for (int i = 0; i < n_engines; i++) b->engines[i] = engines[i];
    b->o = *o;
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv_former, &ca);
    pthread_cond_init(&b->cv_worker, &ca);
    pthread_condattr_destroy(&ca);
    b->n_slots = n_engines + 1;
    b->slots = calloc((size_t)b->n_slots, sizeof *b->slots);
    int ok = b->slots != NULL;
    for (int i = 0; ok && i < b->n_slots; i++) {
        slot *s = &b->slots[i];
        s->ids = malloc((size_t)o->max_batch_tokens * sizeof *s->ids);
        s->offsets = malloc(((size_t)o->max_batch_size + 1) * sizeof *s->offsets);
        s->items = malloc((size_t)o->max_batch_size * sizeof *s->items);
        s->out = malloc((size_t)o->max_batch_size * sizeof *s->out);
        s->wp = malloc((size_t)o->max_batch_size * sizeof *s->wp);
        if (o->emb_dim > 0) s->emb = malloc((size_t)o->max_batch_size * (size_t)o->emb_dim * sizeof *s->emb);
        ok = s->ids && s->offsets && s->items && s->out && s->wp && (o->emb_dim == 0 || s->emb);
    }
    if (!ok) {
        destroy(b);
        return rs_errf(err, RS_ERR_NOMEM, "no memory for batch slots");
    }
    for (int i = 0; i < n_engines; i++) {
        b->args[i] = (worker_arg){b, i};
        if (pthread_create(&b->workers[i], NULL, worker_main, &b->args[i]) != 0) {
            stop_started(b, 0);
            destroy(b);
            return rs_errf(err, RS_ERR_INTERNAL, "batcher: cannot start engine worker thread %d", i);
        }
        b->n_workers_started++;
    }
    if (pthread_create(&b->former, NULL, former_main, b) != 0) {
        stop_started(b, 0);
        destroy(b);
        return rs_errf(err, RS_ERR_INTERNAL, "batcher: cannot start the former thread");
    }
    *out = b;
    return RS_OK;
}

rs_admit rs_batcher_submit(rs_batcher *b, rs_work *w) {
    long tokens = 0;
    for (size_t i = 0; i < w->n; i++) {
        w->items[i].work = w;
        w->items[i].next = i + 1 < w->n ? &w->items[i + 1] : NULL;
        w->items[i].prev = i > 0 ? &w->items[i - 1] : NULL;
        w->items[i].state = RS_ITEM_QUEUED;
        w->items[i].released = 0;
        w->items[i].fate = RS_FATE_PENDING;
        tokens += w->items[i].n_ids;
        if (w->items[i].emb ? b->o.emb_dim == 0 || w->items[i].n_ids != 1
                            : w->items[i].n_ids > (uint32_t)b->o.max_batch_tokens)
            return RS_ADMIT_INVALID;
    }
    if (tokens > b->o.max_queue_tokens) return RS_ADMIT_TOO_BIG;
    atomic_store(&w->pending, w->n);
    atomic_store(&w->n_cancelled, 0);
    atomic_store(&w->n_expired, 0);
    atomic_store(&w->n_failed, 0);
    w->t_first_start = w->t_last_end = 0;
    pthread_mutex_lock(&b->mu);
    if (b->stopping) {
        pthread_mutex_unlock(&b->mu);
        return RS_ADMIT_STOPPED;
    }
    if (b->admitted_tokens + tokens > b->o.max_queue_tokens) {
        pthread_mutex_unlock(&b->mu);
        if (b->o.metrics) rs_metrics_refused(b->o.metrics, b->o.router_index, RS_REFUSED_TOKENS);
        return RS_ADMIT_FULL;
    }
    const double tput = b->o.max_queue_wait_s > 0 ? throughput(b) : 0;
    if (tput > 0) {
        const double wait = (double)b->admitted_tokens / tput, own = (double)tokens / tput;
        rs_admit a = rs_clock_now() + wait + own > w->deadline ? RS_ADMIT_LATE
                     : wait > b->o.max_queue_wait_s         ? RS_ADMIT_BUSY
                                                            : RS_ADMIT_OK;
        if (a != RS_ADMIT_OK) {
            pthread_mutex_unlock(&b->mu);
            if (b->o.metrics)
                rs_metrics_refused(b->o.metrics, b->o.router_index, a == RS_ADMIT_LATE ? RS_REFUSED_DEADLINE : RS_REFUSED_WAIT);
            return a;
        }
    }
    if (w->n == 0) { /* nothing to do: finish at once, outside the lock */
        pthread_mutex_unlock(&b->mu);
        w->done(w);
        return RS_ADMIT_OK;
    }
    b->admitted_tokens += tokens;
    w->t_enqueue = rs_clock_now();
    if (b->tail) {
        b->tail->next = &w->items[0];
        w->items[0].prev = b->tail;
    } else {
        b->head = &w->items[0];
    }
    b->tail = &w->items[w->n - 1];
    if (b->o.metrics) rs_metrics_queue(b->o.metrics, b->o.router_index, (int64_t)w->n, tokens);
    pthread_cond_signal(&b->cv_former);
    pthread_mutex_unlock(&b->mu);
    return RS_ADMIT_OK;
}

void rs_batcher_cancel(rs_batcher *b, rs_work *w) {
    atomic_store(&w->cancelled, 1);
    pthread_mutex_lock(&b->mu);
    int any = 0;
    for (size_t i = 0; i < w->n; i++) {
        rs_item *it = &w->items[i];
        if (it->state == RS_ITEM_QUEUED) {
            if (it->prev)
                it->prev->next = it->next;
            else
                b->head = it->next;
            if (it->next)
                it->next->prev = it->prev;
            else
                b->tail = it->prev;
            it->prev = NULL;
            it->state = RS_ITEM_DEAD;
            it->next = b->dead;
            b->dead = it;
            any = 1;
        }
        /* In a slot it stays there (the worker drops it before the forward,
         * or it is computing now), but its room is free from now on. */
        release(b, it); /* (a no-op for a finished prompt: each is released before it finishes) */
    }
    if (any) pthread_cond_signal(&b->cv_former);
    pthread_mutex_unlock(&b->mu);
}

void rs_batcher_stop(rs_batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    int was = b->stopping;
    b->stopping = 1;
    pthread_cond_broadcast(&b->cv_former);
    pthread_mutex_unlock(&b->mu);
    if (was) return;
    pthread_join(b->former, NULL);
    for (int i = 0; i < b->n_workers_started; i++) pthread_join(b->workers[i], NULL);
}

void rs_batcher_free(rs_batcher *b) {
    if (!b) return;
    rs_batcher_stop(b);
    destroy(b);
}

uint64_t rs_batcher_batches(rs_batcher *b) { return atomic_load(&b->batches); }

uint64_t rs_batcher_replica_batches(rs_batcher *b, int i) {
    return i >= 0 && i < b->n_engines ? atomic_load(&b->replica_batches[i]) : 0;
}
