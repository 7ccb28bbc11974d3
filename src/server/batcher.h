/* batcher.h — dynamic batching of tokenized prompts in front of one engine.
 *
 * DESIGN
 *   Threads. Request threads (the gRPC completion-queue threads) tokenize a
 *   request's prompts themselves (rs_engine_tokenize is thread-safe) and
 *   submit them as one rs_work. Each batcher owns threads of its own:
 *     - the former, which moves prompts from the FIFO queue into a free
 *       batch slot (packing ids back to back) and decides when that batch is
 *       closed;
 *     - one engine worker per replica (an engine of its own: one per GPU, or
 *       CPU engines splitting the cores), the only thread that ever calls
 *       that engine: it takes the oldest closed batch, runs
 *       rs_engine_score_tokens, hands each prompt its score and finishes the
 *       requests whose last prompt that was.
 *   Replicas + 1 slots, so every replica can compute while the next batch is
 *   being prepared. With several replicas, prompts of one request may be
 *   computed on different replicas at once; the work's shared fields are
 *   written under the batcher's lock or atomically.
 *
 *   Client embeddings. A router that scores embeddings (opts.emb_dim > 0)
 *   also takes items carrying one instead of token ids. A batch holds one
 *   kind only: the former closes a batch when the next item in the queue is
 *   of the other kind, so FIFO order holds across kinds. An embedding counts
 *   as one token in every token budget (batch, queue, metrics).
 *
 *   Closing rule. A batch is closed when it is full (max_batch_size prompts,
 *   or the next prompt would pass max_batch_tokens), or when a replica is
 *   idle and its oldest prompt has waited max_queue_delay_us. While every
 *   replica is busy the prepared batch keeps filling, so under load batches
 *   grow to their limits without any timer (TEI's token budget) and at low
 *   load a lone prompt waits at most max_queue_delay_us (Triton's rule).
 *   The queue is one FIFO over all callers: prompts of one request are
 *   contiguous and may span batches, and nobody is overtaken, so nobody
 *   starves.
 *
 *   Admission. A request is admitted whole or not at all, and a refusal is
 *   immediate, never after waiting:
 *     - tokens: when the tokens admitted and not yet finished would pass
 *       max_queue_tokens (RS_ADMIT_FULL -> RESOURCE_EXHAUSTED);
 *     - time (max_queue_wait_s > 0, once a forward has been measured): the
 *       expected wait before the request starts is the admitted tokens
 *       divided by the throughput of the last forwards (tokens per second
 *       of forward, times the replicas). A request whose expected wait plus
 *       its own compute would end after its deadline is refused
 *       RS_ADMIT_LATE (-> DEADLINE_EXCEEDED); one whose expected wait alone
 *       passes max_queue_wait_s is refused RS_ADMIT_BUSY (->
 *       RESOURCE_EXHAUSTED). The tokens bound keeps memory bounded; the
 *       time bound keeps the latency of what is accepted bounded, so past
 *       capacity the excess is shed instead of queued.
 *
 *   Dropping. A work whose `cancelled` flag is set, or whose deadline has
 *   passed, loses its prompts that have not started computing: the former
 *   skips them when packing and the worker removes them from a closed batch
 *   just before the forward. They are never computed. rs_batcher_cancel
 *   does more: at once, under the lock, it unlinks the work's queued
 *   prompts (the FIFO is doubly linked) and takes all its unfinished
 *   tokens out of the admission count, so the room is free for the next
 *   caller at the moment of cancellation; the unlinked prompts go on a dead
 *   list that the former finishes before anything else.
 *
 *   Completion. work->done(work) runs exactly once, on the former or a worker
 *   thread, when every prompt of the work is scored or dropped. It must be
 *   quick and must not call back into the batcher (the server posts a
 *   completion-queue event from it).
 *
 * Ownership: the batcher borrows the engines (the caller closes them after
 * rs_batcher_free), the metrics and the online window; a submitted work and
 * its arrays belong to the submitter but must stay alive until done() runs. */
#ifndef RS_BATCHER_H
#define RS_BATCHER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "metrics.h"
#include "quantile.h"
#include "status.h"

typedef struct rs_work rs_work;

/* A call cancelled, or ended without its message, this close to its
 * deadline (seconds) counts as expired: the client's deadline timer fires
 * before the server's deadline by the time its headers took to arrive,
 * which on a loaded machine reaches tens of milliseconds. */
#define RS_EXPIRY_SLACK_S 0.25

/* Where a prompt is (under the batcher's lock). */
typedef enum rs_item_state { RS_ITEM_QUEUED, RS_ITEM_SLOT, RS_ITEM_DEAD } rs_item_state;

/* Fate of a prompt, set when it finishes. */
typedef enum rs_item_fate { RS_FATE_PENDING, RS_FATE_SCORED, RS_FATE_CANCELLED, RS_FATE_EXPIRED, RS_FATE_FAILED } rs_item_fate;

/* One prompt in the queue. */
typedef struct rs_item {
    struct rs_item *next, *prev; /* FIFO links, owned by the batcher while queued */
    rs_work *work;
    const int32_t *ids;   /* (n_ids) token ids, specials included */
    const float *emb;     /* or (emb_dim) a client embedding (then ids NULL, n_ids 1) */
    uint32_t n_ids;
    uint32_t index;       /* the prompt's position in its request */
    /* The batcher's (under its lock; fate is written before done() runs). */
    uint8_t state;        /* rs_item_state */
    uint8_t released;     /* its tokens have left the admission count */
    uint8_t fate;         /* rs_item_fate */
} rs_item;

struct rs_work {
    /* Set by the submitter before rs_batcher_submit; read-only afterwards. */
    size_t n;
    rs_item *items;           /* (n) items[i].ids / n_ids / index filled in */
    rs_score *scores;         /* (n) written by the engine worker; a dropped
                                 prompt's entry is zero (items[i].fate says why) */
    double deadline;          /* rs_clock_now() seconds; INFINITY for none */
    void (*done)(rs_work *w); /* see DESIGN */
    void *owner;              /* for done() */
    /* Set by anyone at any time: prompts not yet computed are dropped. */
    _Atomic int cancelled;
    /* Written by the batcher threads, read by done() and after it. */
    _Atomic size_t pending;   /* prompts neither scored nor dropped */
    _Atomic size_t n_cancelled, n_expired, n_failed;
    double t_enqueue;         /* admission */
    /* Written under the batcher's lock by the workers; read by done(). */
    double t_first_start;     /* start of the first forward holding one of its prompts (0: none) */
    double t_last_end;        /* end of the last one */
    rs_status fail_status;    /* n_failed > 0: the engine's error (its first) */
    char fail_msg[256];
};

typedef struct rs_batcher_opts {
    int max_batch_tokens;
    int max_batch_size;
    long max_queue_delay_us;
    long max_queue_tokens;
    double max_queue_wait_s;  /* admission by time (see DESIGN); 0: off */
    int emb_dim;              /* width of client embeddings the engine scores; 0: none */
    int router_index;         /* for metrics */
    rs_metrics *metrics;      /* may be NULL */
    rs_online *online;        /* every score is observed into it; may be NULL */
    /* A backend error (RS_ERR_BACKEND) leaves an engine unusable: called once,
     * from the worker that hit it; every later batch then fails without
     * computing (on every replica: the process is expected to exit). */
    void (*on_fatal)(void *arg, const char *msg);
    void *fatal_arg;
} rs_batcher_opts;

typedef struct rs_batcher rs_batcher;

typedef enum rs_admit {
    RS_ADMIT_OK,
    RS_ADMIT_FULL,      /* the queue is full now (tokens): try later */
    RS_ADMIT_BUSY,      /* the queue's expected wait passes max_queue_wait: try later */
    RS_ADMIT_LATE,      /* the request could not finish before its own deadline */
    RS_ADMIT_TOO_BIG,   /* the request alone exceeds max_queue_tokens */
    RS_ADMIT_STOPPED,   /* rs_batcher_stop was called */
    RS_ADMIT_INVALID,   /* an item no batch can hold: more ids than max_batch_tokens,
                           or an embedding when emb_dim is 0 (a caller's bug) */
} rs_admit;

#define RS_BATCHER_MAX_REPLICAS 16

/* engines: n_engines (1..RS_BATCHER_MAX_REPLICAS) replicas of one router,
 * same model and limits, one worker each. */
rs_status rs_batcher_start(rs_engine *const *engines, int n_engines, const rs_batcher_opts *o, rs_batcher **out,
                           rs_err *err);
rs_admit rs_batcher_submit(rs_batcher *b, rs_work *w);
/* Marks w cancelled; its prompts still queued leave the queue now, and every
 * prompt of it not yet finished leaves the admission count now. The dropped
 * prompts are finished (done() may run) on the former's thread soon after,
 * never on the caller's, so the caller may hold a lock done() takes. Safe
 * on a work that has already finished, until done() has returned and the
 * submitter freed it. */
void rs_batcher_cancel(rs_batcher *b, rs_work *w);
/* Stops admitting, lets everything admitted finish, joins both threads. */
void rs_batcher_stop(rs_batcher *b);
void rs_batcher_free(rs_batcher *b);
/* Forwards run so far (for tests and logs), in all and by replica i. */
uint64_t rs_batcher_batches(rs_batcher *b);
uint64_t rs_batcher_replica_batches(rs_batcher *b, int i);

#endif
