/* server.c — the gRPC service: calls, their state machine, health,
 * reflection, routing decisions, start-up and drain. See server.h for the
 * lifecycle of the server and batcher.h for the queue.
 *
 * DESIGN — one call, one lifecycle
 *   Every RPC is an rs_call. Its life is the same for all methods:
 *
 *     ARMED ──new──▶ LIVE ──(status sent, or cancelled)──▶ ENDED ──refs 0──▶ freed
 *
 *   ARMED: the call is requested from the core (grpc_server_request_
 *   registered_call) and waits for a client. On arrival a replacement is
 *   armed, RECV_CLOSE_ON_SERVER is started (it reports client cancellation
 *   and deadline expiry), auth and readiness are checked and the method's
 *   handler runs.
 *   LIVE: the call reads (streams), queues work in a batcher, and writes.
 *   The facts about it are a handful of flags (reading, writing, in flight,
 *   half-closed, cancelled, want_finish); event handlers only update those
 *   facts, and ONE function, advance(), looks at them and starts the next
 *   gRPC operations: a read when the stream window allows, a write when one
 *   is queued, and the final status once nothing is left in flight.
 *   ENDED: status sent or the client went away; in-flight work is marked
 *   cancelled so that the batcher drops it before compute.
 *   refs counts what can still touch the call: each gRPC operation in
 *   flight and each rs_work in a batcher. The call is freed at zero.
 *
 *   Events come from the completion queue as rs_tag pointers (one tag per
 *   kind of operation, embedded in the call). The batcher's engine worker
 *   reports a finished rs_work by starting an empty batch on the call (a
 *   gRPC idiom: it completes at once with the wake tag), so responses are
 *   always built and sent on completion-queue threads, never on the engine
 *   thread. A call's handlers run under its mutex; several completion-queue
 *   threads serve different calls in parallel.
 *
 *   Locks: the server mutex (live-call list, counters, events) may be held
 *   while taking a call's mutex (wake_live_calls); a thread holding a call's
 *   mutex takes the server mutex only for a call not yet in the live list
 *   (arming, on_new), so the two orders never meet on one call.
 *
 *   Status codes: every failure is an (rs_srv_err, rs_status) pair, turned
 *   into a gRPC code by grpc_code() — the one place that mapping exists. */
#include "server.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <cjson/cJSON.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <time.h>

#include "batcher.h"
#include "cli_common.h"
#include "engine.h"
#include "ext_proc.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "metrics.h"
#include "quantile.h"
#include "reflection.h"
#include "routescore/v1/scorer.pb-c.h"
#include "server_ext.h"
#include "srv_log.h"

extern const unsigned char rs_proto_fds[];
extern const size_t rs_proto_fds_len;

#define MAX_CQ_THREADS 64
/* Memory. Per-call buffers are freed with the call, but glibc keeps freed
 * heap pages, so a burst of large messages would leave the resident size
 * at its peak for good. Two remedies: allocations of RS_MMAP_THRESHOLD
 * bytes or more are mmap'd (returned to the system when freed: a fixed
 * threshold also stops glibc from raising it after each large free), and
 * after a call with a large message ends the heaps are trimmed
 * (malloc_trim), at most every RS_TRIM_INTERVAL_S, the trim owed to the
 * last call of a burst paid by the next call to end (probes included). */
#define RS_BIG_MESSAGE (256 * 1024)
#define RS_MMAP_THRESHOLD (256 * 1024)
#define RS_TRIM_INTERVAL_S 0.25

/* ------------------------------------------------------------------------ */
/* Status codes: the one mapping.                                            */

typedef enum rs_srv_err {
    SRV_OK,
    SRV_ENGINE,          /* see the rs_status */
    SRV_MALFORMED,       /* the message is not the method's protobuf */
    SRV_UNKNOWN_ROUTER,
    SRV_QUEUE_FULL,
    SRV_NOT_READY,
    SRV_DRAINING,
    SRV_EXPIRED,
    SRV_CANCELLED,
    SRV_UNAUTHENTICATED,
    SRV_UNIMPLEMENTED,
    SRV_UNKNOWN_SERVICE, /* health check of a service we do not serve */
} rs_srv_err;

static grpc_status_code grpc_code(rs_srv_err e, rs_status st) {
    switch (e) {
    case SRV_OK: return GRPC_STATUS_OK;
    case SRV_MALFORMED:
    case SRV_UNKNOWN_ROUTER: return GRPC_STATUS_INVALID_ARGUMENT;
    case SRV_QUEUE_FULL: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case SRV_NOT_READY:
    case SRV_DRAINING: return GRPC_STATUS_UNAVAILABLE;
    case SRV_EXPIRED: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case SRV_CANCELLED: return GRPC_STATUS_CANCELLED;
    case SRV_UNAUTHENTICATED: return GRPC_STATUS_UNAUTHENTICATED;
    case SRV_UNIMPLEMENTED: return GRPC_STATUS_UNIMPLEMENTED;
    case SRV_UNKNOWN_SERVICE: return GRPC_STATUS_NOT_FOUND;
    case SRV_ENGINE: break;
    }
    switch (st) {
    case RS_OK: return GRPC_STATUS_OK;
    case RS_ERR_INVALID_ARG:
    case RS_ERR_UTF8:
    case RS_ERR_FORMAT:
    case RS_ERR_TOO_LARGE:
    case RS_ERR_NOT_FOUND:
    case RS_ERR_UNSUPPORTED: return GRPC_STATUS_INVALID_ARGUMENT; /* the client's input */
    case RS_ERR_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case RS_ERR_BACKEND: return GRPC_STATUS_UNAVAILABLE; /* this replica is going away: retry elsewhere */
    case RS_ERR_IO:
    case RS_ERR_INTERNAL:
    case RS_STATUS_COUNT: break;
    }
    return GRPC_STATUS_INTERNAL;
}

/* ------------------------------------------------------------------------ */
/* Types.                                                                    */

typedef enum call_kind {
    CK_SCORE,
    CK_STREAM,
    CK_LIST,
    CK_HCHECK,
    CK_HWATCH,
    CK_REFLECT,
    CK_REFLECT_V1,
    CK_UNKNOWN, /* any other method: UNIMPLEMENTED */
    CK_COUNT
} call_kind;

static const struct {
    const char *path;
    int read_initial; /* unary and server-streaming: the core reads the one request */
    rs_method metric;
    int armed;        /* calls kept requested */
} METHODS[CK_COUNT] = {
    [CK_SCORE] = {"/routescore.v1.Scorer/Score", 1, RS_METHOD_SCORE, 32},
    [CK_STREAM] = {"/routescore.v1.Scorer/ScoreStream", 0, RS_METHOD_SCORE_STREAM, 4},
    [CK_LIST] = {"/routescore.v1.Scorer/ListRouters", 1, RS_METHOD_LIST_ROUTERS, 2},
    [CK_HCHECK] = {"/grpc.health.v1.Health/Check", 1, RS_METHOD_HEALTH_CHECK, 4},
    [CK_HWATCH] = {"/grpc.health.v1.Health/Watch", 1, RS_METHOD_HEALTH_WATCH, 2},
    [CK_REFLECT] = {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", 0, RS_METHOD_REFLECTION, 2},
    [CK_REFLECT_V1] = {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", 0, RS_METHOD_REFLECTION, 2},
    [CK_UNKNOWN] = {NULL, 0, RS_METHOD_UNKNOWN, 2},
};

typedef enum op_kind { OP_NEW, OP_RECV, OP_SEND, OP_FINISH, OP_CLOSE, OP_WAKE } op_kind;

typedef struct rs_call rs_call;

typedef struct rs_tag {
    rs_call *call;
    op_kind op;
} rs_tag;

typedef struct router {
    rs_srv_router_cfg cfg;
    char name[128];
    rs_engine *engine; /* = engines[0]: tokenizing (thread-safe) and facts */
    rs_engine *engines[RS_SRV_MAX_REPLICAS];
    int n_engines;
    rs_router_info info;
    rs_batcher *batcher;
    rs_online online;
    _Atomic float threshold; /* the default, replaced by SIGHUP */
    int loaded;
} router;

/* One Score request (a unary call, or one message of a stream). */
typedef struct rs_req {
    struct rs_req *next; /* in the call's inflight or done list */
    rs_call *call;
    int router;
    Routescore__V1__ScoreRequest__DecisionCase decision;
    float dvalue;
    uint64_t request_id;
    double t_recv, tokenize_s;
    rs_work work;
    int32_t *ids;       /* (n * max_tokens) token ids; work.items point into it */
    float *emb;         /* or (n * client_embed_dim) client embeddings, likewise */
    uint8_t *truncated; /* (n) */
    /* An immediate failure (never queued). */
    rs_srv_err fail;
    rs_status fail_st;
    char fail_msg[256];
} rs_req;

typedef struct outmsg {
    struct outmsg *next;
    grpc_byte_buffer *bb;
} outmsg;

struct rs_call {
    rs_server *srv;
    call_kind kind;
    pthread_mutex_t mu;
    int refs;             /* operations + works in flight (under mu) */
    grpc_call *call;
    gpr_timespec deadline_ts;
    double deadline;      /* rs_cli_now() seconds, INFINITY for none */
    double t_start;
    grpc_metadata_array md;
    grpc_call_details details; /* CK_UNKNOWN */
    grpc_byte_buffer *recv;
    int close_cancelled;  /* filled by RECV_CLOSE_ON_SERVER */
    rs_tag t_new, t_recv, t_send, t_finish, t_close, t_wake;
    /* facts (see DESIGN) */
    int live, recv_busy, send_busy, wake_busy, half_closed, closed, cancelled;
    int md_sent, finishing, want_finish;
    grpc_status_code code;
    char msg[512];
    grpc_slice status_slice;
    int has_status_slice;
    int metric_router;    /* router index for request metrics (-1 unknown) */
    int accepted;         /* a Scorer call taken on before the drain began */
    int big;              /* it received a message of RS_BIG_MESSAGE bytes or more */
    int held;             /* a Scorer call that arrived during the drain: answered
                             UNAVAILABLE only once the GOAWAY is out (rs_server_drain) */
    int inflight;         /* reqs in a batcher */
    rs_req *inflight_head;
    rs_req *done_head, *done_tail;
    outmsg *out_head, *out_tail;
    int n_out;
    grpc_byte_buffer *sending;
    int watch_service;    /* health watch: 1 known service, 0 unknown */
    int watch_last;       /* last status sent, -1 none */
    rs_call *live_prev, *live_next;
};

struct rs_server {
    rs_srv_config cfg;
    grpc_server *grpc;
    grpc_completion_queue *cq;
    void *methods[CK_COUNT];
    pthread_t cq_threads[MAX_CQ_THREADS];
    int n_cq;
    int port, metrics_port;
    rs_metrics *metrics;
    rs_reflect *reflect;
    router routers[RS_SRV_MAX_ROUTERS];
    int n_routers;
    char (*tokens)[256];
    int n_tokens;
    _Atomic int ready, draining, shutting_down, fatal;
    _Atomic int release_held; /* the drain's GOAWAY is out: answer the held calls */
    pthread_mutex_t mu; /* live list, counters below, events */
    pthread_cond_t cv;
    rs_call *live;
    long n_calls;        /* allocated calls */
    long n_accepted;     /* live Scorer calls accepted before the drain began */
    long n_refused;      /* Scorer calls refused UNAVAILABLE while draining */
    double t_last_refused;
    int trim_owed;        /* a large message's call ended since the last malloc_trim */
    double t_last_trim;
    int shutdown_done;
    int events;
    char fatal_msg[256];
    rs_tag shutdown_tag;
    rs_ext_proc *ext; /* Envoy ext_proc beside Scorer (ext_proc.h), NULL when off */
};

/* ------------------------------------------------------------------------ */
/* Small helpers.                                                            */

static double deadline_from(gpr_timespec ts) {
    gpr_timespec d = gpr_convert_clock_type(ts, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(d, gpr_inf_future(GPR_CLOCK_MONOTONIC)) >= 0) return INFINITY;
    gpr_timespec left = gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC));
    return rs_cli_now() + (double)left.tv_sec + (double)left.tv_nsec * 1e-9;
}

/* The bytes of a received message; RS_ERR_FORMAT when unreadable. */
static rs_status read_bb(grpc_byte_buffer *bb, grpc_slice *out) {
    grpc_byte_buffer_reader rd;
    if (!bb || !grpc_byte_buffer_reader_init(&rd, bb)) return RS_ERR_FORMAT;
    *out = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    return RS_OK;
}

static grpc_byte_buffer *pack_msg(const ProtobufCMessage *m) {
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return NULL;
    protobuf_c_message_pack(m, buf);
    grpc_slice sl = grpc_slice_new(buf, len, free);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

static grpc_byte_buffer *bytes_bb(uint8_t *buf, size_t len) { /* takes buf */
    grpc_slice sl = grpc_slice_new(buf, len, free);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

static int wire_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*i >= n) return 0;
        const uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/* Whether a message of type d, as received, has a string field (at any
 * depth) holding a NUL byte. protobuf-c hands strings over as C strings, so
 * such a string would arrive silently cut at the NUL ("minilm-mf\0evil"
 * would name minilm-mf): it must be refused before unpacking hides it.
 * *field and *index name the top-level field and its repetition. Bytes
 * that are not well-formed say 0: the unpacker refuses them itself. */
static int wire_has_nul(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int depth, uint32_t *field,
                        size_t *index) {
    size_t i = 0, seen[16] = {0};
    while (i < n) {
        uint64_t key, len;
        if (!wire_varint(p, n, &i, &key)) return 0;
        const uint32_t num = (uint32_t)(key >> 3);
        switch (key & 7) {
        case 0:
            if (!wire_varint(p, n, &i, &len)) return 0;
            break;
        case 1: i += 8; break;
        case 5: i += 4; break;
        case 2: {
            if (!wire_varint(p, n, &i, &len) || len > n - i) return 0;
            const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, num);
            const size_t rep = num < 16 ? seen[num]++ : 0;
            uint32_t f2;
            size_t i2;
            if (fd && ((fd->type == PROTOBUF_C_TYPE_STRING && memchr(p + i, 0, len)) ||
                       (fd->type == PROTOBUF_C_TYPE_MESSAGE && depth < 32 &&
                        wire_has_nul(fd->descriptor, p + i, len, depth + 1, &f2, &i2)))) {
                *field = num;
                *index = rep;
                return 1;
            }
            i += len;
            break;
        }
        default: return 0; /* groups and reserved wire types: malformed for protobuf-c */
        }
    }
    return 0;
}

static int find_router(rs_server *s, const char *name) {
    if (!name || !*name) return 0; /* the default router */
    for (int i = 0; i < s->n_routers; i++)
        if (!strcmp(s->routers[i].name, name)) return i;
    return -1;
}

static float router_threshold(router *r) { return atomic_load(&r->threshold); }

static int health_status(rs_server *s) {
    return atomic_load(&s->ready) && !atomic_load(&s->draining) && !atomic_load(&s->fatal)
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static int health_known_service(const char *svc) { return !*svc || !strcmp(svc, "routescore.v1.Scorer"); }

/* ------------------------------------------------------------------------ */
/* Call bookkeeping.                                                         */

static void arm(rs_server *s, call_kind k);
static void advance(rs_call *c);
static void call_destroy(rs_call *c);

static void set_status(rs_call *c, rs_srv_err e, rs_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_status(rs_call *c, rs_srv_err e, rs_status st, const char *fmt, ...) {
    if (c->want_finish) return; /* the first decided status stands */
    c->want_finish = 1;
    c->code = grpc_code(e, st);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt ? fmt : "", ap);
    va_end(ap);
}

static void push_out(rs_call *c, grpc_byte_buffer *bb) {
    outmsg *o = malloc(sizeof *o);
    if (!o || !bb) {
        free(o);
        if (bb) grpc_byte_buffer_destroy(bb);
        set_status(c, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
        return;
    }
    o->bb = bb;
    o->next = NULL;
    if (c->out_tail)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    c->n_out++;
}

static void req_free(rs_req *r) {
    if (!r) return;
    free(r->work.items);
    free(r->work.scores);
    free(r->ids);
    free(r->emb);
    free(r->truncated);
    free(r);
}

static void call_destroy(rs_call *c) {
    rs_server *s = c->srv;
    if (c->call) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->kind == CK_UNKNOWN) grpc_call_details_destroy(&c->details);
    if (c->recv) grpc_byte_buffer_destroy(c->recv);
    if (c->sending) grpc_byte_buffer_destroy(c->sending);
    if (c->has_status_slice) grpc_slice_unref(c->status_slice);
    for (outmsg *o = c->out_head, *n; o; o = n) {
        n = o->next;
        grpc_byte_buffer_destroy(o->bb);
        free(o);
    }
    for (rs_req *r = c->done_head, *n; r; r = n) {
        n = r->next;
        req_free(r);
    }
    /* Unlink before destroying the mutex: wake_live_calls() may still lock
     * it (it then sees refs == 0 and leaves the call alone). */
    pthread_mutex_lock(&s->mu);
    if (c->live) {
        if (c->live_prev)
            c->live_prev->live_next = c->live_next;
        else
            s->live = c->live_next;
        if (c->live_next) c->live_next->live_prev = c->live_prev;
    }
    s->n_calls--;
    if (c->accepted) s->n_accepted--;
    if (c->big) s->trim_owed = 1;
    const double now = rs_cli_now();
    const int trim = s->trim_owed && now - s->t_last_trim >= RS_TRIM_INTERVAL_S;
    if (trim) {
        s->trim_owed = 0;
        s->t_last_trim = now;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_destroy(&c->mu);
    free(c);
    if (trim) malloc_trim(0); /* see RS_BIG_MESSAGE */
}

/* Starts an empty batch: it completes at once with t_wake, so advance() runs
 * on a completion-queue thread. Call with c->mu held and c->refs > 0. */
static void wake(rs_call *c) {
    if (c->wake_busy) return;
    if (grpc_call_start_batch(c->call, NULL, 0, &c->t_wake, NULL) == GRPC_CALL_OK) {
        c->wake_busy = 1;
        c->refs++;
    }
}

/* ------------------------------------------------------------------------ */
/* Score requests.                                                           */

/* Engine-worker side of a finished rs_work (see batcher.h): hand the request
 * back to its call. */
static void req_done(rs_work *w) {
    rs_req *r = w->owner;
    rs_call *c = r->call;
    pthread_mutex_lock(&c->mu);
    /* Move from inflight to done. */
    for (rs_req **pp = &c->inflight_head; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->next = NULL;
    if (c->done_tail)
        c->done_tail->next = r;
    else
        c->done_head = r;
    c->done_tail = r;
    c->inflight--;
    c->refs--; /* the work's reference; wake takes its own */
    wake(c);
    if (!c->wake_busy) advance(c); /* could not post: advance here (gRPC calls are thread-safe) */
    int dead = c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (dead) call_destroy(c);
}

/* Parses, validates and tokenizes one ScoreRequest; queues it or records why
 * not (r->fail). Runs on a completion-queue thread with c->mu held. */
static rs_req *req_start(rs_call *c, const uint8_t *data, size_t len) {
    rs_server *s = c->srv;
    rs_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->call = c;
    r->router = -1;
    r->t_recv = rs_cli_now();
    Routescore__V1__ScoreRequest *m = routescore__v1__score_request__unpack(NULL, len, data);
#define FAIL(e, st, ...)                                                 \
    do {                                                                 \
        r->fail = (e);                                                   \
        r->fail_st = (st);                                               \
        snprintf(r->fail_msg, sizeof r->fail_msg, __VA_ARGS__);          \
        goto out;                                                        \
    } while (0)
    if (!m) FAIL(SRV_MALFORMED, RS_ERR_FORMAT, "malformed ScoreRequest");
    r->request_id = m->request_id;
    uint32_t nul_field;
    size_t nul_index;
    if (wire_has_nul(&routescore__v1__score_request__descriptor, data, len, 0, &nul_field, &nul_index)) {
        if (nul_field == 1) FAIL(SRV_MALFORMED, RS_ERR_INVALID_ARG, "the router name contains a NUL byte");
        if (nul_field == 2) FAIL(SRV_MALFORMED, RS_ERR_INVALID_ARG, "prompts[%zu] contains a NUL byte", nul_index);
        FAIL(SRV_MALFORMED, RS_ERR_INVALID_ARG, "field %u contains a NUL byte", (unsigned)nul_field);
    }
    r->router = find_router(s, m->router);
    if (r->router < 0) {
        char esc[160];
        FAIL(SRV_UNKNOWN_ROUTER, RS_ERR_NOT_FOUND, "unknown router '%s' (ListRouters names them)",
             rs_log_esc(esc, sizeof esc, m->router));
    }
    router *rt = &s->routers[r->router];
    r->decision = m->decision_case;
    if (m->decision_case == ROUTESCORE__V1__SCORE_REQUEST__DECISION_THRESHOLD) {
        r->dvalue = m->threshold;
        if (!(m->threshold >= 0.f && m->threshold <= 1.f))
            FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "threshold %g outside [0, 1]", (double)m->threshold);
    } else if (m->decision_case == ROUTESCORE__V1__SCORE_REQUEST__DECISION_STRONG_SHARE) {
        r->dvalue = m->strong_share;
        if (!(m->strong_share > 0.f && m->strong_share <= 1.f))
            FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "strong_share %g outside (0, 1]", (double)m->strong_share);
    }
    const int by_emb = m->n_embeddings > 0;
    const size_t n = by_emb ? m->n_embeddings : m->n_prompts;
    if (by_emb && m->n_prompts > 0) FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "set prompts or embeddings, not both");
    if (n == 0) FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "no prompts");
    if (n > (size_t)s->cfg.max_prompts)
        FAIL(SRV_ENGINE, RS_ERR_TOO_LARGE, "%zu prompts in one request (at most %d)", n, s->cfg.max_prompts);
    if (by_emb && rt->info.client_embed_dim <= 0)
        FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "router '%s' (%s) scores prompt text, not embeddings", rt->name, rt->info.kind);
    if (!by_emb && rt->info.max_tokens <= 0)
        FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "router '%s' (%s) has no encoder: send embeddings (%d values each), not text",
             rt->name, rt->info.kind, rt->info.client_embed_dim);
    /* (No draining check: on_new decided whether this call is accepted work,
     * and accepted work is finished.) */
    if (!atomic_load(&s->ready)) FAIL(SRV_NOT_READY, RS_OK, "not ready: routers are loading");
    if (rs_cli_now() >= c->deadline) FAIL(SRV_EXPIRED, RS_OK, "deadline exceeded before scoring");
    rs_work *w = &r->work;
    w->n = n;
    w->items = calloc(n, sizeof *w->items);
    w->scores = calloc(n, sizeof *w->scores);
    r->truncated = calloc(n, 1);
    if (!w->items || !w->scores || !r->truncated) FAIL(SRV_ENGINE, RS_ERR_NOMEM, "out of memory for %zu prompts", n);
    const double t0 = rs_cli_now();
    if (by_emb) {
        const size_t dim = (size_t)rt->info.client_embed_dim;
        float *emb = r->emb = malloc(n * dim * sizeof *emb);
        if (!emb) FAIL(SRV_ENGINE, RS_ERR_NOMEM, "out of memory for %zu embeddings", n);
        for (size_t i = 0; i < n; i++) {
            const Routescore__V1__Embedding *e = m->embeddings[i];
            if (e->n_values != dim)
                FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "embeddings[%zu]: %zu values; router '%s' takes %zu", i, e->n_values,
                     rt->name, dim);
            for (size_t d = 0; d < dim; d++)
                if (!isfinite(e->values[d]))
                    FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "embeddings[%zu]: value %zu is not finite", i, d);
            memcpy(emb + i * dim, e->values, dim * sizeof *emb);
            w->items[i].emb = emb + i * dim;
            w->items[i].n_ids = 1; /* an embedding counts as one token in the budgets */
            w->items[i].index = (uint32_t)i;
        }
    } else {
        const size_t maxt = (size_t)rt->info.max_tokens;
        int32_t *ids = r->ids = malloc(n * maxt * sizeof *ids);
        if (!ids) FAIL(SRV_ENGINE, RS_ERR_NOMEM, "out of memory for %zu prompts", n);
        for (size_t i = 0; i < n; i++) {
            size_t plen = strlen(m->prompts[i]), nid = 0;
            int trunc = 0;
            rs_err terr = {{0}};
            if ((long)plen > s->cfg.max_prompt_bytes)
                FAIL(SRV_ENGINE, RS_ERR_TOO_LARGE, "prompts[%zu]: %zu bytes (at most %ld)", i, plen, s->cfg.max_prompt_bytes);
            rs_status st = rs_engine_tokenize(rt->engine, m->prompts[i], plen, ids + i * maxt, maxt, &nid, &trunc, &terr);
            if (st != RS_OK) FAIL(SRV_ENGINE, st, "prompts[%zu]: %.200s", i, terr.msg);
            w->items[i].ids = ids + i * maxt;
            w->items[i].n_ids = (uint32_t)nid;
            w->items[i].index = (uint32_t)i;
            r->truncated[i] = (uint8_t)trunc;
        }
    }
    r->tokenize_s = rs_cli_now() - t0;
    if (s->metrics && !by_emb) rs_metrics_observe(s->metrics, r->router, RS_H_TOKENIZE, r->tokenize_s);
    w->deadline = c->deadline;
    w->done = req_done;
    w->owner = r;
    /* Register before submitting: done() may run before submit returns. */
    r->next = c->inflight_head;
    c->inflight_head = r;
    c->inflight++;
    c->refs++;
    rs_admit a = rs_batcher_submit(rt->batcher, w);
    if (a != RS_ADMIT_OK) {
        c->inflight_head = r->next;
        c->inflight--;
        c->refs--;
        r->next = NULL;
        if (a == RS_ADMIT_FULL) FAIL(SRV_QUEUE_FULL, RS_OK, "queue full: retry later");
        if (a == RS_ADMIT_BUSY)
            FAIL(SRV_QUEUE_FULL, RS_OK, "queue's expected wait exceeds max_queue_wait (%ld ms): retry later or elsewhere",
                 rt->cfg.max_queue_wait_ms);
        if (a == RS_ADMIT_LATE) FAIL(SRV_EXPIRED, RS_OK, "deadline exceeded: the queue's expected wait is past it");
        if (a == RS_ADMIT_TOO_BIG)
            FAIL(SRV_ENGINE, RS_ERR_TOO_LARGE, "request has more tokens than the whole queue holds (max_queue_tokens %ld)",
                 rt->cfg.max_queue_tokens);
        if (a == RS_ADMIT_INVALID) FAIL(SRV_ENGINE, RS_ERR_INTERNAL, "request items the batcher cannot hold");
        FAIL(SRV_DRAINING, RS_OK, "server is shutting down");
    }
    r = NULL; /* queued: it now belongs to the batcher until req_done */
out:
    if (m) routescore__v1__score_request__free_unpacked(m, NULL);
    return r; /* NULL when queued; the failed request otherwise */
#undef FAIL
}

/* The threshold a finished request's decisions use. */
static float req_threshold(rs_server *s, const rs_req *r) {
    return rs_server_decision_threshold(s, r->router,
                                        r->decision == ROUTESCORE__V1__SCORE_REQUEST__DECISION_THRESHOLD      ? RS_DECIDE_THRESHOLD
                                        : r->decision == ROUTESCORE__V1__SCORE_REQUEST__DECISION_STRONG_SHARE ? RS_DECIDE_STRONG_SHARE
                                                                                                              : RS_DECIDE_DEFAULT,
                                        r->dvalue);
}

static uint32_t us(double s) { return s <= 0 ? 0 : s > 4e3 ? UINT32_MAX : (uint32_t)(s * 1e6 + 0.5); }

/* What is known about how a request ended, gathered by req_facts (a
 * request) or at the call's close (no request). */
typedef struct outcome_facts {
    int scored;              /* every prompt has its score */
    int cancelled;           /* the client cancelled before its deadline */
    int expired;             /* its deadline passed first */
    rs_srv_err unavailable;  /* the server could not take it (SRV_OK: no) */
    rs_status unavailable_st;
    const char *unavailable_msg;
    rs_srv_err input;        /* the request's own fault (SRV_OK: none) */
    rs_status input_st;
    const char *input_msg;
} outcome_facts;

/* The final status of a request: the one place that orders the reasons it
 * can fail. A request with every score is OK; otherwise, first match wins:
 *   1. cancelled by the client;
 *   2. deadline exceeded (also when an input error was found after it
 *      passed: the caller's clock decided first);
 *   3. the server could not take it: draining, not ready, queue full, an
 *      engine that failed;
 *   4. the request's own input (malformed, unknown router, a bad prompt).
 * A prompt dropped because its call was cancelled or expired is never an
 * input error: the batcher leaves no per-prompt error on it. */
static rs_srv_err final_status(const outcome_facts *f, rs_status *st, const char **msg) {
    *st = RS_OK;
    *msg = "";
    if (f->scored && f->unavailable == SRV_OK && f->input == SRV_OK) return SRV_OK;
    if (f->cancelled) {
        *msg = "cancelled";
        return SRV_CANCELLED;
    }
    if (f->expired) {
        *msg = "deadline exceeded before scoring";
        return SRV_EXPIRED;
    }
    if (f->unavailable != SRV_OK) {
        *st = f->unavailable_st;
        *msg = f->unavailable_msg;
        return f->unavailable;
    }
    if (f->input != SRV_OK) {
        *st = f->input_st;
        *msg = f->input_msg;
        return f->input;
    }
    *st = RS_ERR_INTERNAL; /* unscored and no reason: a bug */
    *msg = "internal error: prompts neither scored nor dropped";
    return SRV_ENGINE;
}

/* An immediate failure's class: the server's state (retryable) or the input. */
static int srv_err_is_unavailable(rs_srv_err e, rs_status st) {
    return e == SRV_NOT_READY || e == SRV_DRAINING || e == SRV_QUEUE_FULL ||
           (e == SRV_ENGINE && (st == RS_ERR_NOMEM || st == RS_ERR_BACKEND || st == RS_ERR_INTERNAL || st == RS_ERR_IO));
}

static rs_srv_err req_outcome(const rs_req *r, double deadline, rs_status *st, const char **msg) {
    outcome_facts f = {0};
    const double now = rs_cli_now();
    if (r->fail != SRV_OK) {
        f.expired = r->fail == SRV_EXPIRED || now >= deadline;
        if (srv_err_is_unavailable(r->fail, r->fail_st)) {
            f.unavailable = r->fail;
            f.unavailable_st = r->fail_st;
            f.unavailable_msg = r->fail_msg;
        } else if (r->fail != SRV_EXPIRED) {
            f.input = r->fail;
            f.input_st = r->fail_st;
            f.input_msg = r->fail_msg;
        }
        return final_status(&f, st, msg);
    }
    const rs_work *w = &r->work;
    f.cancelled = atomic_load(&w->n_cancelled) > 0;
    f.expired = atomic_load(&w->n_expired) > 0;
    f.scored = !f.cancelled && !f.expired && !atomic_load(&w->n_failed);
    if (atomic_load(&w->n_failed)) {
        f.unavailable = SRV_ENGINE; /* the engine's failure, not the input's (RS_ERR_BACKEND -> UNAVAILABLE) */
        f.unavailable_st = w->fail_status;
        f.unavailable_msg = w->fail_msg;
    }
    for (size_t i = 0; i < w->n && f.input == SRV_OK; i++)
        if (w->items[i].fate == RS_FATE_SCORED && w->scores[i].status != RS_OK) { /* a per-prompt refusal by the engine */
            f.input = SRV_ENGINE;
            f.input_st = w->scores[i].status;
            f.input_msg = w->scores[i].error;
        }
    if (!f.scored || f.input != SRV_OK) f.expired = f.expired || now >= deadline;
    return final_status(&f, st, msg);
}

/* A call-level input error (malformed or missing message), through
 * final_status: a call whose deadline has passed, or that the client
 * cancelled, ends for that reason instead (a call that expired before its
 * message was read arrives with none). */
static void set_input_error(rs_call *c, rs_srv_err e, rs_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_input_error(rs_call *c, rs_srv_err e, rs_status st, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    outcome_facts f = {0};
    f.expired = rs_cli_now() >= c->deadline;
    f.cancelled = c->cancelled && !f.expired;
    f.input = e;
    f.input_st = st;
    f.input_msg = buf;
    rs_status fst;
    const char *msg;
    const rs_srv_err fe = final_status(&f, &fst, &msg);
    set_status(c, fe, fst, "%s", msg);
}

/* Builds the ScoreResponse of a request (scores, or `error` for streams). */
static grpc_byte_buffer *req_response(rs_server *s, rs_req *r, int with_error, grpc_status_code *code, const char **msg) {
    rs_status st;
    rs_srv_err e = req_outcome(r, r->call->deadline, &st, msg);
    *code = grpc_code(e, st);
    Routescore__V1__ScoreResponse resp = ROUTESCORE__V1__SCORE_RESPONSE__INIT;
    Routescore__V1__RequestError rerr = ROUTESCORE__V1__REQUEST_ERROR__INIT;
    resp.request_id = r->request_id;
    const double now = rs_cli_now();
    if (e != SRV_OK) {
        if (!with_error) return NULL;
        rerr.code = (int32_t)*code;
        rerr.message = (char *)*msg;
        resp.error = &rerr;
        if (r->router >= 0) resp.router = s->routers[r->router].name;
        resp.total_us = us(now - r->t_recv);
        return pack_msg(&resp.base);
    }
    router *rt = &s->routers[r->router];
    const rs_work *w = &r->work;
    const float thr = req_threshold(s, r);
    Routescore__V1__PromptScore *ps = calloc(w->n, sizeof *ps);
    Routescore__V1__PromptScore **pp = calloc(w->n, sizeof *pp);
    if (!ps || !pp) {
        free(ps);
        free(pp);
        return NULL;
    }
    for (size_t i = 0; i < w->n; i++) {
        const rs_score *sc = &w->scores[i];
        routescore__v1__prompt_score__init(&ps[i]);
        const int strong = sc->win_prob >= thr;
        ps[i].win_prob = sc->win_prob;
        ps[i].route = strong ? ROUTESCORE__V1__ROUTE__ROUTE_STRONG : ROUTESCORE__V1__ROUTE__ROUTE_WEAK;
        ps[i].model = (char *)(strong ? rt->info.strong_model : rt->info.weak_model);
        ps[i].n_label_probs = (size_t)sc->n_labels;
        ps[i].label_probs = (float *)sc->label_probs;
        ps[i].tokens = (uint32_t)sc->tokens;
        ps[i].truncated = r->truncated[i];
        pp[i] = &ps[i];
        if (s->metrics) rs_metrics_decision(s->metrics, r->router, strong);
    }
    resp.router = rt->name;
    resp.threshold = thr;
    resp.n_scores = w->n;
    resp.scores = pp;
    resp.tokenize_us = us(r->tokenize_s);
    resp.queue_us = us(w->t_first_start - w->t_enqueue);
    resp.inference_us = us(w->t_last_end - w->t_first_start);
    resp.total_us = us(now - r->t_recv);
    grpc_byte_buffer *bb = pack_msg(&resp.base);
    free(ps);
    free(pp);
    return bb;
}

/* ------------------------------------------------------------------------ */
/* Method handlers (c->mu held).                                            */

static int authorized(rs_call *c) {
    if (c->kind == CK_HCHECK || c->kind == CK_HWATCH) return 1;
    return rs_server_authorized(c->srv, &c->md);
}

static void finish_score_unary(rs_call *c, rs_req *r) {
    rs_server *s = c->srv;
    grpc_status_code code;
    const char *msg;
    grpc_byte_buffer *bb = req_response(s, r, 0, &code, &msg);
    c->metric_router = r->router;
    if (code == GRPC_STATUS_OK && !bb) {
        set_status(c, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
    } else if (code == GRPC_STATUS_OK) {
        push_out(c, bb);
        set_status(c, SRV_OK, RS_OK, NULL);
        if (s->metrics) rs_metrics_observe(s->metrics, r->router, RS_H_REQUEST, rs_cli_now() - r->t_recv);
    } else {
        c->want_finish = 1;
        c->code = code;
        snprintf(c->msg, sizeof c->msg, "%s", msg);
    }
    req_free(r);
}

static void on_stream_req_done(rs_call *c, rs_req *r) {
    rs_server *s = c->srv;
    grpc_status_code code;
    const char *msg;
    grpc_byte_buffer *bb = req_response(s, r, 1, &code, &msg);
    if (s->metrics) rs_metrics_request(s->metrics, r->router, RS_METHOD_SCORE_STREAM, (int)code);
    if (bb)
        push_out(c, bb);
    else
        set_status(c, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
    req_free(r);
}

static void handle_list(rs_call *c, const uint8_t *data, size_t len) {
    rs_server *s = c->srv;
    Routescore__V1__ListRoutersRequest *m = routescore__v1__list_routers_request__unpack(NULL, len, data);
    if (!m) {
        set_input_error(c, SRV_MALFORMED, RS_ERR_FORMAT, "malformed ListRoutersRequest");
        return;
    }
    routescore__v1__list_routers_request__free_unpacked(m, NULL);
    if (!atomic_load(&s->ready)) {
        set_status(c, SRV_NOT_READY, RS_OK, "not ready: routers are loading");
        return;
    }
    Routescore__V1__RouterInfo info[RS_SRV_MAX_ROUTERS], *pinfo[RS_SRV_MAX_ROUTERS];
    for (int i = 0; i < s->n_routers; i++) {
        router *r = &s->routers[i];
        routescore__v1__router_info__init(&info[i]);
        info[i].name = r->name;
        info[i].kind = (char *)r->info.kind;
        info[i].threshold = router_threshold(r);
        info[i].strong_model = (char *)r->info.strong_model;
        info[i].weak_model = (char *)r->info.weak_model;
        info[i].max_tokens = (uint32_t)r->info.max_tokens;
        info[i].architecture = (char *)(r->info.architecture ? r->info.architecture : "");
        info[i].embed_dim = (uint32_t)r->info.embed_dim;
        info[i].n_labels = (uint32_t)r->info.n_labels;
        info[i].online = r->cfg.online;
        info[i].online_strong_share = r->cfg.online ? r->cfg.online_share : 0.f;
        info[i].is_default = i == 0;
        info[i].client_embedding_dim = (uint32_t)(r->info.client_embed_dim > 0 ? r->info.client_embed_dim : 0);
        info[i].takes_text = r->info.max_tokens > 0;
        pinfo[i] = &info[i];
    }
    Routescore__V1__ListRoutersResponse resp = ROUTESCORE__V1__LIST_ROUTERS_RESPONSE__INIT;
    resp.n_routers = (size_t)s->n_routers;
    resp.routers = pinfo;
    push_out(c, pack_msg(&resp.base));
    set_status(c, SRV_OK, RS_OK, NULL);
}

static void handle_health(rs_call *c, const uint8_t *data, size_t len) {
    Grpc__Health__V1__HealthCheckRequest *m = grpc__health__v1__health_check_request__unpack(NULL, len, data);
    if (!m) {
        set_input_error(c, SRV_MALFORMED, RS_ERR_FORMAT, "malformed HealthCheckRequest");
        return;
    }
    uint32_t nf;
    size_t ni;
    const int nul = wire_has_nul(&grpc__health__v1__health_check_request__descriptor, data, len, 0, &nf, &ni);
    c->watch_service = health_known_service(m->service);
    grpc__health__v1__health_check_request__free_unpacked(m, NULL);
    if (nul) {
        set_input_error(c, SRV_MALFORMED, RS_ERR_INVALID_ARG, "the service name contains a NUL byte");
        return;
    }
    if (c->kind == CK_HWATCH) return; /* advance() sends the status and every change */
    if (!c->watch_service) {
        set_status(c, SRV_UNKNOWN_SERVICE, RS_OK, "unknown service");
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = health_status(c->srv);
    push_out(c, pack_msg(&resp.base));
    set_status(c, SRV_OK, RS_OK, NULL);
}

static void handle_reflect(rs_call *c, const uint8_t *data, size_t len) {
    uint8_t *out;
    size_t out_len;
    rs_err err;
    uint32_t nf;
    size_t ni;
    if (wire_has_nul(&grpc__reflection__v1alpha__server_reflection_request__descriptor, data, len, 0, &nf, &ni)) {
        set_input_error(c, SRV_MALFORMED, RS_ERR_INVALID_ARG, "field %u of the reflection request contains a NUL byte", (unsigned)nf);
        return;
    }
    if (rs_reflect_answer(c->srv->reflect, data, len, &out, &out_len, &err) != RS_OK) {
        set_input_error(c, SRV_MALFORMED, RS_ERR_FORMAT, "%s", err.msg);
        return;
    }
    push_out(c, bytes_bb(out, out_len));
}

/* A message arrived (the unary request at OP_NEW, or a stream message). */
static void on_message(rs_call *c, grpc_byte_buffer *bb) {
    grpc_slice sl;
    if (read_bb(bb, &sl) != RS_OK) {
        set_input_error(c, SRV_MALFORMED, RS_ERR_FORMAT, "unreadable message");
        return;
    }
    const uint8_t *data = GRPC_SLICE_START_PTR(sl);
    const size_t len = GRPC_SLICE_LENGTH(sl);
    if (len >= RS_BIG_MESSAGE) c->big = 1;
    switch (c->kind) {
    case CK_SCORE:
    case CK_STREAM: {
        rs_req *r = req_start(c, data, len);
        if (!r && !c->inflight_head && !c->done_head && c->kind == CK_SCORE)
            set_status(c, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
        else if (r && c->kind == CK_SCORE) /* failed before queuing: answer now */
            finish_score_unary(c, r);
        else if (r)
            on_stream_req_done(c, r);
        break;
    }
    case CK_LIST: handle_list(c, data, len); break;
    case CK_HCHECK:
    case CK_HWATCH: handle_health(c, data, len); break;
    case CK_REFLECT:
    case CK_REFLECT_V1: handle_reflect(c, data, len); break;
    default: set_status(c, SRV_UNIMPLEMENTED, RS_OK, "unknown method"); break;
    }
    grpc_slice_unref(sl);
}

/* The call arrived (OP_NEW succeeded). */
static void on_new(rs_call *c) {
    rs_server *s = c->srv;
    c->t_start = rs_cli_now();
    c->deadline = deadline_from(c->deadline_ts);
    pthread_mutex_lock(&s->mu);
    c->live = 1;
    c->live_next = s->live;
    if (s->live) s->live->live_prev = c;
    s->live = c;
    pthread_mutex_unlock(&s->mu);
    /* Learn about cancellation and deadline expiry as soon as they happen. */
    grpc_op op = {0};
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) == GRPC_CALL_OK) c->refs++;
    if (c->kind == CK_UNKNOWN) {
        set_status(c, SRV_UNIMPLEMENTED, RS_OK, "unknown method");
        return;
    }
    if (!authorized(c)) {
        set_status(c, SRV_UNAUTHENTICATED, RS_OK, "missing or invalid bearer token");
        return;
    }
    if (c->kind == CK_SCORE || c->kind == CK_STREAM || c->kind == CK_LIST) {
        /* The drain's first phase: calls taken on before it are finished;
         * later ones are refused, retryably, while the listener stays open
         * (closing it at once would make the core drop calls in transit
         * with CANCELLED instead). */
        pthread_mutex_lock(&s->mu);
        if (atomic_load(&s->draining)) {
            s->n_refused++;
            s->t_last_refused = rs_cli_now();
        } else {
            c->accepted = 1;
            s->n_accepted++;
        }
        pthread_mutex_unlock(&s->mu);
        if (!c->accepted) {
            /* Held, not answered yet: a caller that got UNAVAILABLE now
             * would send again at once on this connection and be caught
             * in transit by the listener's close (CANCELLED). advance()
             * answers once the GOAWAY has gone out. */
            c->held = 1;
            if (atomic_load(&s->release_held)) set_status(c, SRV_DRAINING, RS_OK, "server is shutting down: retry on another replica");
            return;
        }
    }
    if (METHODS[c->kind].read_initial) {
        if (!c->recv) {
            /* No message: the client ended the stream before it (a cancel,
             * or its own deadline timer), or sent none at all (its bug).
             * One more read tells which (OP_RECV). */
            grpc_op op = {0};
            op.op = GRPC_OP_RECV_MESSAGE;
            op.data.recv_message.recv_message = &c->recv;
            if (grpc_call_start_batch(c->call, &op, 1, &c->t_recv, NULL) == GRPC_CALL_OK) {
                c->recv_busy = 1;
                c->refs++;
            } else if (rs_cli_now() >= c->deadline) {
                /* The deadline came before the message: that, not the input. */
                set_status(c, SRV_EXPIRED, RS_OK, "deadline exceeded before the request message arrived");
            } else {
                set_input_error(c, SRV_MALFORMED, RS_ERR_FORMAT, "no request message");
            }
            return;
        }
        grpc_byte_buffer *bb = c->recv;
        c->recv = NULL;
        on_message(c, bb);
        grpc_byte_buffer_destroy(bb);
    } else if ((c->kind == CK_STREAM) && !atomic_load(&s->ready)) {
        set_status(c, SRV_NOT_READY, RS_OK, "not ready: routers are loading");
    }
}

/* ------------------------------------------------------------------------ */
/* advance(): the one place that decides a call's next operations.          */

static int can_read(rs_call *c) {
    rs_server *s = c->srv;
    if (c->recv_busy || c->half_closed || c->want_finish || c->finishing) return 0;
    switch (c->kind) {
    case CK_STREAM:
        return !atomic_load(&s->draining) && c->inflight + c->n_out < s->cfg.stream_window;
    case CK_REFLECT:
    case CK_REFLECT_V1: return c->n_out == 0 && !c->send_busy; /* strictly one question, one answer */
    default: return 0;
    }
}

static void advance(rs_call *c) {
    rs_server *s = c->srv;
    if (!c->live || c->cancelled || c->finishing) return;
    /* Finished requests become responses. */
    while (c->done_head) {
        rs_req *r = c->done_head;
        c->done_head = r->next;
        if (!c->done_head) c->done_tail = NULL;
        r->next = NULL;
        if (c->kind == CK_SCORE)
            finish_score_unary(c, r);
        else
            on_stream_req_done(c, r);
    }
    if (c->held && !c->want_finish && atomic_load(&s->release_held))
        set_status(c, SRV_DRAINING, RS_OK, "server is shutting down: retry on another replica");
    /* Method-specific reasons to end. */
    if (c->kind == CK_STREAM && !c->want_finish && c->inflight == 0) {
        if (c->half_closed)
            set_status(c, SRV_OK, RS_OK, NULL);
        else if (atomic_load(&s->draining)) /* (a pending read simply ends with the status) */
            set_status(c, SRV_DRAINING, RS_OK, "server is shutting down: resend unanswered requests elsewhere");
    }
    if ((c->kind == CK_REFLECT || c->kind == CK_REFLECT_V1) && c->half_closed && !c->want_finish)
        set_status(c, SRV_OK, RS_OK, NULL);
    if (c->kind == CK_HWATCH && !c->want_finish && !c->send_busy && c->n_out == 0) {
        int now = c->watch_service ? health_status(s) : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
        if (now != c->watch_last) {
            Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
            resp.status = now;
            push_out(c, pack_msg(&resp.base));
            c->watch_last = now;
        } else if (atomic_load(&s->draining) || atomic_load(&s->shutting_down)) {
            set_status(c, SRV_DRAINING, RS_OK, "server is shutting down");
        }
    }
    /* Writes: the final batch carries the last message when there is one. */
    if (!c->send_busy && c->want_finish && c->n_out <= 1 && c->inflight == 0) {
        grpc_op ops[3];
        size_t n = 0;
        memset(ops, 0, sizeof ops);
        if (!c->md_sent) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        if (c->n_out == 1) {
            outmsg *o = c->out_head;
            c->out_head = c->out_tail = NULL;
            c->n_out = 0;
            c->sending = o->bb;
            free(o);
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n++].data.send_message.send_message = c->sending;
        }
        c->status_slice = grpc_slice_from_copied_string(c->msg);
        c->has_status_slice = 1;
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = c->code;
        ops[n].data.send_status_from_server.status_details = c->code == GRPC_STATUS_OK ? NULL : &c->status_slice;
        n++;
        if (grpc_call_start_batch(c->call, ops, n, &c->t_finish, NULL) == GRPC_CALL_OK) {
            c->finishing = 1;
            c->md_sent = 1;
            c->refs++;
            if (c->kind != CK_STREAM && s->metrics)
                rs_metrics_request(s->metrics, c->metric_router, METHODS[c->kind].metric, (int)c->code);
            if (c->kind != CK_STREAM && c->code != GRPC_STATUS_OK && rs_log_enabled(RS_LOG_DEBUG)) {
                char esc[600];
                rs_log(RS_LOG_DEBUG, "rpc_error", "\"method\":\"%s\",\"code\":%d,\"message\":\"%s\"",
                       RS_METHOD_NAMES[METHODS[c->kind].metric], (int)c->code, rs_log_esc(esc, sizeof esc, c->msg));
            }
        }
        return;
    }
    if (!c->send_busy && c->out_head) {
        grpc_op ops[2];
        size_t n = 0;
        memset(ops, 0, sizeof ops);
        if (!c->md_sent) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        outmsg *o = c->out_head;
        c->out_head = o->next;
        if (!c->out_head) c->out_tail = NULL;
        c->n_out--;
        c->sending = o->bb;
        free(o);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->sending;
        if (grpc_call_start_batch(c->call, ops, n, &c->t_send, NULL) == GRPC_CALL_OK) {
            c->send_busy = 1;
            c->md_sent = 1;
            c->refs++;
        }
    }
    if (can_read(c)) {
        grpc_op op = {0};
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &c->recv;
        if (grpc_call_start_batch(c->call, &op, 1, &c->t_recv, NULL) == GRPC_CALL_OK) {
            c->recv_busy = 1;
            c->refs++;
        }
    }
}

/* One completion-queue event. */
static void dispatch(rs_tag *t, int ok) {
    rs_call *c = t->call;
    rs_server *s = c->srv;
    pthread_mutex_lock(&c->mu);
    c->refs--;
    switch (t->op) {
    case OP_NEW:
        if (!ok) break; /* the server is shutting down: the armed call never came */
        if (!atomic_load(&s->shutting_down)) arm(s, c->kind);
        on_new(c);
        break;
    case OP_RECV: {
        c->recv_busy = 0;
        grpc_byte_buffer *bb = c->recv;
        c->recv = NULL;
        if (METHODS[c->kind].read_initial) { /* on_new's second look at a call that came without its message */
            if (!ok || grpc_call_failed_before_recv_message(c->call))
                c->cancelled = 1; /* the client ended it: nobody to answer (OP_CLOSE counts it) */
            else if (rs_cli_now() >= c->deadline) /* the deadline came first: that, not the input */
                set_status(c, SRV_EXPIRED, RS_OK, "deadline exceeded before the request message arrived");
            else
                set_input_error(c, SRV_MALFORMED, RS_ERR_FORMAT, "no request message");
        } else if (!ok || !bb) {
            c->half_closed = 1;
        } else {
            on_message(c, bb);
        }
        if (bb) grpc_byte_buffer_destroy(bb);
        break;
    }
    case OP_SEND:
        c->send_busy = 0;
        if (c->sending) grpc_byte_buffer_destroy(c->sending);
        c->sending = NULL;
        if (!ok) c->cancelled = 1; /* the stream is gone */
        break;
    case OP_FINISH:
        if (c->sending) grpc_byte_buffer_destroy(c->sending);
        c->sending = NULL;
        break;
    case OP_CLOSE:
        c->closed = 1;
        if (c->close_cancelled) {
            c->cancelled = 1;
            /* Its queued prompts and their room in the queue go now, not
             * when a batch would reach them (the batcher finishes them on
             * its own thread: req_done needs c->mu, held here). */
            for (rs_req *r = c->inflight_head; r; r = r->next) rs_batcher_cancel(s->routers[r->router].batcher, &r->work);
            if (!c->finishing && c->kind != CK_STREAM && s->metrics) {
                outcome_facts f = {0};
                f.expired = rs_cli_now() + RS_EXPIRY_SLACK_S >= c->deadline;
                f.cancelled = !f.expired;
                rs_status st;
                const char *msg;
                const rs_srv_err e = final_status(&f, &st, &msg);
                const grpc_status_code code = grpc_code(e, st);
                rs_metrics_request(s->metrics, c->metric_router, METHODS[c->kind].metric, (int)code);
            }
        }
        break;
    case OP_WAKE: c->wake_busy = 0; break;
    }
    if (t->op != OP_NEW || ok) advance(c);
    int dead = c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (dead) call_destroy(c);
}

static void *cq_main(void *arg) {
    rs_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        rs_tag *t = ev.tag;
        if (t == &s->shutdown_tag) {
            pthread_mutex_lock(&s->mu);
            s->shutdown_done = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        dispatch(t, ev.success);
    }
    return NULL;
}

static void arm(rs_server *s, call_kind k) {
    rs_call *c = calloc(1, sizeof *c);
    if (!c) {
        rs_log(RS_LOG_ERROR, "oom", "\"what\":\"arming a call\"");
        return;
    }
    c->srv = s;
    c->kind = k;
    c->metric_router = -1;
    c->watch_last = -1;
    c->deadline = INFINITY;
    pthread_mutex_init(&c->mu, NULL);
    grpc_metadata_array_init(&c->md);
    c->t_new = (rs_tag){c, OP_NEW};
    c->t_recv = (rs_tag){c, OP_RECV};
    c->t_send = (rs_tag){c, OP_SEND};
    c->t_finish = (rs_tag){c, OP_FINISH};
    c->t_close = (rs_tag){c, OP_CLOSE};
    c->t_wake = (rs_tag){c, OP_WAKE};
    c->refs = 1; /* the NEW operation */
    pthread_mutex_lock(&s->mu);
    s->n_calls++;
    pthread_mutex_unlock(&s->mu);
    grpc_call_error e;
    if (k == CK_UNKNOWN) {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(s->grpc, &c->call, &c->details, &c->md, s->cq, s->cq, &c->t_new);
    } else {
        e = grpc_server_request_registered_call(s->grpc, s->methods[k], &c->call, &c->deadline_ts, &c->md,
                                                METHODS[k].read_initial ? &c->recv : NULL, s->cq, s->cq, &c->t_new);
    }
    if (e != GRPC_CALL_OK) {
        c->refs = 0;
        call_destroy(c);
    }
}

/* ------------------------------------------------------------------------ */
/* Server lifecycle.                                                         */

static void on_fatal(void *arg, const char *msg) {
    rs_server *s = arg;
    atomic_store(&s->fatal, 1);
    pthread_mutex_lock(&s->mu);
    snprintf(s->fatal_msg, sizeof s->fatal_msg, "%s", msg);
    pthread_mutex_unlock(&s->mu);
    char esc[600];
    rs_log(RS_LOG_ERROR, "engine_fatal", "\"message\":\"%s\"", rs_log_esc(esc, sizeof esc, msg));
    rs_server_notify(s, RS_EV_FATAL);
}

static void wake_live_calls(rs_server *s) {
    pthread_mutex_lock(&s->mu);
    for (rs_call *c = s->live; c; c = c->live_next) {
        pthread_mutex_lock(&c->mu);
        if (c->refs > 0) wake(c);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&s->mu);
}

static char *read_text_file(const char *path, size_t max) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max, f) : 0;
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

static rs_status load_tokens(rs_server *s, rs_err *err) {
    char *text = read_text_file(s->cfg.auth_tokens_file, 1 << 20);
    if (!text) return rs_errf(err, RS_ERR_IO, "cannot read %s", s->cfg.auth_tokens_file);
    int n = 0;
    for (char *p = text; *p; p++) n += *p == '\n';
    s->tokens = calloc((size_t)n + 1, sizeof *s->tokens);
    if (!s->tokens) {
        free(text);
        return rs_errf(err, RS_ERR_NOMEM, "no memory");
    }
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) line[--l] = 0;
        while (*line == ' ' || *line == '\t') line++, l--;
        if (!l || line[0] == '#') continue;
        if (l >= sizeof s->tokens[0]) {
            free(text);
            return rs_errf(err, RS_ERR_INVALID_ARG, "%s: a token is longer than 255 bytes", s->cfg.auth_tokens_file);
        }
        snprintf(s->tokens[s->n_tokens++], sizeof s->tokens[0], "%s", line);
    }
    free(text);
    if (!s->n_tokens) return rs_errf(err, RS_ERR_INVALID_ARG, "%s holds no token", s->cfg.auth_tokens_file);
    return RS_OK;
}

static grpc_server_credentials *make_creds(rs_server *s, rs_err *err) {
    if (!s->cfg.tls_cert[0]) return grpc_insecure_server_credentials_create();
    char *cert = read_text_file(s->cfg.tls_cert, 1 << 20), *key = read_text_file(s->cfg.tls_key, 1 << 20);
    char *ca = s->cfg.tls_client_ca[0] ? read_text_file(s->cfg.tls_client_ca, 1 << 20) : NULL;
    grpc_server_credentials *cr = NULL;
    if (!cert || !key || (s->cfg.tls_client_ca[0] && !ca)) {
        rs_errf(err, RS_ERR_IO, "cannot read the TLS certificate, key or client CA");
    } else {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        cr = grpc_ssl_server_credentials_create_ex(
            ca, &pair, 1, ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            NULL);
        if (!cr) rs_errf(err, RS_ERR_FORMAT, "TLS credentials rejected by gRPC");
    }
    free(cert);
    free(key);
    free(ca);
    return cr;
}

/* /metrics with the gRPC side's access rules: its bearer tokens (unless
 * metrics_open) and its TLS / mTLS files. */
static rs_status start_metrics_http(rs_server *s, rs_err *err) {
    const rs_srv_config *cfg = &s->cfg;
    rs_metrics_http_opts o = {
        .addr = cfg->metrics_listen,
        .request_timeout_s = cfg->metrics_request_timeout_s,
        .client_connections = cfg->metrics_client_connections,
        .max_connections = cfg->metrics_max_connections,
        .tokens = cfg->metrics_open ? NULL : (const char (*)[256])s->tokens,
        .n_tokens = cfg->metrics_open ? 0 : s->n_tokens,
    };
    char *cert = NULL, *key = NULL, *ca = NULL;
    if (cfg->tls_cert[0]) {
        cert = read_text_file(cfg->tls_cert, 1 << 20);
        key = read_text_file(cfg->tls_key, 1 << 20);
        ca = cfg->tls_client_ca[0] ? read_text_file(cfg->tls_client_ca, 1 << 20) : NULL;
        if (!cert || !key || (cfg->tls_client_ca[0] && !ca)) {
            free(cert);
            free(key);
            free(ca);
            return rs_errf(err, RS_ERR_IO, "metrics: cannot read the TLS certificate, key or client CA");
        }
        o.tls_cert_pem = cert;
        o.tls_key_pem = key;
        o.tls_client_ca_pem = ca;
    }
    rs_status st = rs_metrics_http_start(s->metrics, &o, &s->metrics_port, err);
    free(cert);
    free(key);
    free(ca);
    return st;
}

/* A router's name before it is opened: config, else manifest, else dir. */
static void resolve_name(const rs_srv_router_cfg *rc, char *out, size_t n) {
    if (rc->name[0]) {
        snprintf(out, n, "%s", rc->name);
        return;
    }
    char path[RS_SRV_PATH + 32];
    snprintf(path, sizeof path, "%s/routescore.json", rc->model);
    char *text = read_text_file(path, 1 << 20);
    cJSON *m = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "name");
    if (cJSON_IsString(v) && v->valuestring[0]) {
        snprintf(out, n, "%s", v->valuestring);
    } else {
        char dir[RS_SRV_PATH];
        snprintf(dir, sizeof dir, "%s", rc->model);
        size_t l = strlen(dir);
        while (l > 1 && dir[l - 1] == '/') dir[--l] = 0;
        const char *b = strrchr(dir, '/');
        snprintf(out, n, "%s", b && b[1] ? b + 1 : dir);
    }
    cJSON_Delete(m);
}

/* libgrpc's own log lines, as JSON lines like ours (its INFO is our debug). */
static void grpc_log_json(gpr_log_func_args *a) {
    rs_log_level l = a->severity == GPR_LOG_SEVERITY_ERROR ? RS_LOG_WARN : RS_LOG_DEBUG;
    if (!rs_log_enabled(l)) return;
    char f[256], m[1024];
    rs_log(l, "grpc", "\"file\":\"%s\",\"line\":%d,\"message\":\"%s\"", rs_log_esc(f, sizeof f, a->file), a->line,
           rs_log_esc(m, sizeof m, a->message));
}

rs_status rs_server_create(const rs_srv_config *cfg, rs_server **out, rs_err *err) {
    *out = NULL;
    rs_server *s = calloc(1, sizeof *s);
    if (!s) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    s->cfg = *cfg;
    s->n_routers = cfg->n_routers;
    mallopt(M_MMAP_THRESHOLD, RS_MMAP_THRESHOLD); /* see RS_BIG_MESSAGE */
    s->shutdown_tag = (rs_tag){NULL, OP_NEW};
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    const char *names[RS_SRV_MAX_ROUTERS];
    for (int i = 0; i < s->n_routers; i++) {
        s->routers[i].cfg = cfg->routers[i];
        resolve_name(&cfg->routers[i], s->routers[i].name, sizeof s->routers[i].name);
        names[i] = s->routers[i].name;
        for (int j = 0; j < i; j++)
            if (!strcmp(s->routers[j].name, names[i])) {
                free(s);
                return rs_errf(err, RS_ERR_INVALID_ARG, "two routers are named '%s': set \"name\" in the config", names[i]);
            }
    }
    rs_status st = rs_metrics_init(s->n_routers, names, &s->metrics, err);
    if (st != RS_OK) {
        free(s);
        return st;
    }
    if ((st = rs_reflect_init(rs_proto_fds, rs_proto_fds_len, &s->reflect, err)) != RS_OK) goto fail;
    if (cfg->auth_tokens_file[0] && (st = load_tokens(s, err)) != RS_OK) goto fail;
    if (cfg->metrics_listen[0] && (st = start_metrics_http(s, err)) != RS_OK) goto fail;

    gpr_set_log_function(grpc_log_json);
    gpr_set_log_verbosity(rs_log_enabled(RS_LOG_DEBUG) ? GPR_LOG_SEVERITY_INFO : GPR_LOG_SEVERITY_ERROR);
    grpc_init();
    grpc_arg args[3];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)cfg->max_request_bytes;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = -1;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;
    grpc_channel_args cargs = {3, args};
    s->grpc = grpc_server_create(&cargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->grpc, s->cq, NULL);
    for (int k = 0; k < CK_COUNT; k++)
        if (METHODS[k].path)
            s->methods[k] = grpc_server_register_method(
                s->grpc, METHODS[k].path, NULL,
                METHODS[k].read_initial ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
    if (cfg->ext_proc && (st = rs_ext_proc_create(s, s->grpc, &s->ext, err)) != RS_OK) goto fail_grpc;
    grpc_server_credentials *creds = make_creds(s, err);
    if (!creds) {
        st = RS_ERR_INVALID_ARG;
        goto fail_grpc;
    }
    s->port = grpc_server_add_http2_port(s->grpc, cfg->listen, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        st = rs_errf(err, RS_ERR_IO, "cannot listen on %s", cfg->listen);
        goto fail_grpc;
    }
    grpc_server_start(s->grpc);
    for (int k = 0; k < CK_COUNT; k++)
        for (int i = 0; i < METHODS[k].armed; i++) arm(s, (call_kind)k);
    rs_ext_proc_start(s->ext);
    s->n_cq = cfg->cq_threads < 1 ? 1 : cfg->cq_threads > MAX_CQ_THREADS ? MAX_CQ_THREADS : cfg->cq_threads;
    for (int i = 0; i < s->n_cq; i++)
        if (pthread_create(&s->cq_threads[i], NULL, cq_main, s) != 0) {
            s->n_cq = i;
            st = rs_errf(err, RS_ERR_INTERNAL, "cannot start completion-queue threads");
            rs_server_free(s);
            return st;
        }
    rs_log(RS_LOG_INFO, "listening", "\"port\":%d,\"metrics_port\":%d,\"tls\":%s,\"mtls\":%s,\"auth\":%s,\"cq_threads\":%d",
           s->port, s->metrics_port, cfg->tls_cert[0] ? "true" : "false", cfg->tls_client_ca[0] ? "true" : "false",
           s->n_tokens ? "true" : "false", s->n_cq);
    *out = s;
    return RS_OK;
fail_grpc: /* not started yet: no calls, nothing to shut down */
    grpc_server_destroy(s->grpc);
    rs_ext_proc_free(s->ext);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {}
    grpc_completion_queue_destroy(s->cq);
    grpc_shutdown();
fail:
    rs_metrics_free(s->metrics);
    rs_reflect_free(s->reflect);
    free(s->tokens);
    free(s);
    return st;
}

/* A few prompts of different lengths through engine e directly, before the
 * batcher exists: first-touch of the arena and the BLAS code paths. */
static rs_status warm_up(router *r, rs_engine *e, rs_err *err) {
    static const char *const P[] = {"hi", "What is the capital of France?",
                                    "Write a Python function that merges two sorted lists and explain its complexity.",
                                    "Prove that there are infinitely many primes. Then explain the proof to a child, "
                                    "step by step, with an example using the first ten primes."};
    size_t lens[4];
    rs_score out[4];
    if (r->info.max_tokens > 0) {
        for (int i = 0; i < 4; i++) lens[i] = strlen(P[i]);
        return rs_engine_score(e, P, lens, 4, NAN, out, err);
    }
    /* Embeddings only: four fixed unit-norm-ish vectors. */
    const size_t dim = (size_t)r->info.client_embed_dim;
    float *emb = malloc(4 * dim * sizeof *emb);
    if (!emb) return rs_errf(err, RS_ERR_NOMEM, "no memory for warm-up embeddings");
    for (size_t i = 0; i < 4 * dim; i++) emb[i] = (float)((i * 2654435761u) % 1000) / 1000.f - 0.5f;
    rs_status st = rs_engine_score_embeddings(e, emb, 4, dim, NAN, out, err);
    free(emb);
    return st;
}

/* CPU engines that share the machine's cores by default: the replicas of
 * every router whose backend may be the CPU ("cpu" or "auto") and that sets
 * no "threads". Each of them gets cores / that many threads (at least 1). */
static int cpu_engines_of(const rs_srv_config *cfg) {
    int n = 0;
    for (int i = 0; i < cfg->n_routers; i++) {
        const rs_srv_router_cfg *r = &cfg->routers[i];
        if (r->threads == 0 && strcmp(r->backend, "cuda")) n += rs_srv_replicas(r);
    }
    return n;
}

/* Threads of one engine of rc: its "threads", else the online cores shared
 * among cpu_engines (cpu_engines_of). */
static int engine_threads(const rs_srv_router_cfg *rc, int cpu_engines) {
    if (rc->threads > 0) return rc->threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    return cpu_engines > 1 ? (cores > cpu_engines ? (int)(cores / cpu_engines) : 1) : (int)cores;
}

/* n_threads > 0 forces the engine's thread count. */
static rs_status open_router(const rs_srv_router_cfg *rc, const char *label, int replica, int n_threads,
                             int cpu_engines, rs_engine **out, rs_router_info *info, rs_err *err) {
    const int n_rep = rs_srv_replicas(rc);
    rs_engine_opts eo;
    rs_engine_opts_default(&eo);
    eo.n_threads = n_threads > 0 ? n_threads : engine_threads(rc, cpu_engines);
    eo.max_batch_tokens = rc->max_batch_tokens;
    eo.max_tokens = rc->max_tokens;
    eo.backend = rc->backend;
    eo.device = rc->n_devices > 0 ? rc->devices[replica % rc->n_devices] : rc->device;
    rs_status st = rs_engine_open(rc->model, &eo, out, err);
    if (st != RS_OK) {
        if (n_rep > 1) return rs_errf(err, st, "router '%s' replica %d (device %d): %s", label, replica, eo.device, err->msg);
        return rs_errf(err, st, "router '%s': %s", label, err->msg);
    }
    rs_engine_info(*out, info);
    if (!strcmp(info->kind, "embed"))
        st = rs_errf(err, RS_ERR_INVALID_ARG, "router '%s' (%s) is a bare encoder: it has no scoring head", label, rc->model);
    else if (info->max_tokens > rc->max_batch_tokens)
        st = rs_errf(err, RS_ERR_INVALID_ARG, "router '%s': max_batch_tokens %d is below its max_tokens %d", label,
                     rc->max_batch_tokens, info->max_tokens);
    if (st != RS_OK) {
        rs_engine_close(*out);
        *out = NULL;
    }
    return st;
}

rs_status rs_server_open_router(const rs_srv_router_cfg *rc, const char *label, int replica, int n_threads,
                                rs_engine **out, rs_router_info *info, rs_err *err) {
    return open_router(rc, label, replica, n_threads, rs_srv_replicas(rc), out, info, err);
}

rs_status rs_server_load(rs_server *s, rs_err *err) {
    const int cpu_engines = cpu_engines_of(&s->cfg);
    for (int i = 0; i < s->n_routers; i++) {
        router *r = &s->routers[i];
        const double t0 = rs_cli_now();
        rs_status st = RS_OK;
        const int n_rep = rs_srv_replicas(&r->cfg);
        for (int k = 0; k < n_rep && st == RS_OK; k++) {
            rs_router_info info;
            st = open_router(&r->cfg, r->name, k, 0, cpu_engines, &r->engines[k], &info, err);
            if (st != RS_OK) break;
            r->n_engines = k + 1;
            if (k == 0) r->info = info;
            if ((st = warm_up(r, r->engines[k], err)) != RS_OK)
                return rs_errf(err, st, "router '%s': warm-up failed: %s", r->name, err->msg);
        }
        if (st != RS_OK) return st;
        r->engine = r->engines[0];
        float t = r->cfg.has_threshold ? r->cfg.threshold : r->info.threshold;
        atomic_store(&r->threshold, t);
        rs_metrics_threshold(s->metrics, i, t);
        if ((st = rs_online_init(&r->online, (size_t)r->cfg.online_window, (size_t)r->cfg.online_min_samples, err)) != RS_OK)
            return st;
        rs_batcher_opts bo = {
            .max_batch_tokens = r->cfg.max_batch_tokens,
            .max_batch_size = r->cfg.max_batch_size,
            .max_queue_delay_us = r->cfg.max_queue_delay_us,
            .max_queue_tokens = r->cfg.max_queue_tokens,
            .max_queue_wait_s = (double)r->cfg.max_queue_wait_ms * 1e-3,
            .emb_dim = r->info.client_embed_dim > 0 ? r->info.client_embed_dim : 0,
            .router_index = i,
            .metrics = s->metrics,
            .online = &r->online,
            .on_fatal = on_fatal,
            .fatal_arg = s,
        };
        /* (Backend faults for tests are injected by the test binary
         * tests/serve_faults.c, which wraps the engine's forward: nothing
         * here reads the environment.) */
        if ((st = rs_batcher_start(r->engines, r->n_engines, &bo, &r->batcher, err)) != RS_OK) return st;
        r->loaded = 1;
        char e1[300], e2[300], e3[300];
        rs_log(RS_LOG_INFO, "router_ready",
               "\"router\":\"%s\",\"model\":\"%s\",\"kind\":\"%s\",\"threshold\":%.6g,\"max_tokens\":%d,\"online\":%s,"
               "\"strong_model\":\"%s\",\"backend\":\"%s\",\"replicas\":%d,\"threads\":%d,\"load_s\":%.3f",
               rs_log_esc(e1, sizeof e1, r->name), rs_log_esc(e2, sizeof e2, r->cfg.model), r->info.kind, (double)t,
               r->info.max_tokens, r->cfg.online ? "true" : "false", rs_log_esc(e3, sizeof e3, r->info.strong_model),
               rs_engine_backend(r->engine), r->n_engines, engine_threads(&r->cfg, cpu_engines), rs_cli_now() - t0);
    }
    atomic_store(&s->ready, 1);
    rs_metrics_ready(s->metrics, 1);
    wake_live_calls(s); /* health watchers */
    rs_log(RS_LOG_INFO, "serving", "\"routers\":%d", s->n_routers);
    return RS_OK;
}

int rs_server_port(const rs_server *s) { return s->port; }
int rs_server_metrics_port(const rs_server *s) { return s->metrics_port; }

void rs_server_notify(rs_server *s, rs_server_event ev) {
    pthread_mutex_lock(&s->mu);
    s->events |= (int)ev;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int rs_server_wait_event(rs_server *s) {
    pthread_mutex_lock(&s->mu);
    while (!s->events) pthread_cond_wait(&s->cv, &s->mu);
    int ev = s->events;
    s->events = 0;
    pthread_mutex_unlock(&s->mu);
    return ev;
}

void rs_server_reload(rs_server *s) {
    float t[RS_SRV_MAX_ROUTERS];
    rs_err err = {{0}};
    if (rs_srv_config_thresholds(&s->cfg, t, &err) != RS_OK) {
        char esc[600];
        rs_log(RS_LOG_ERROR, "reload_failed", "\"message\":\"%s\"", rs_log_esc(esc, sizeof esc, err.msg));
        return;
    }
    for (int i = 0; i < s->n_routers; i++) {
        router *r = &s->routers[i];
        if (isnan(t[i]) || !r->loaded) continue;
        float old = atomic_exchange(&r->threshold, t[i]);
        rs_metrics_threshold(s->metrics, i, t[i]);
        char esc[300];
        rs_log(RS_LOG_INFO, "threshold_reloaded", "\"router\":\"%s\",\"old\":%.6g,\"new\":%.6g",
               rs_log_esc(esc, sizeof esc, r->name), (double)old, (double)t[i]);
    }
}

static int wait_until(rs_server *s, int *flag_or_null, long *count_zero, double until) {
    /* Waits (s->mu held) for *flag != 0 or *count == 0; 0 on time-out. */
    while (!(flag_or_null ? *flag_or_null : *count_zero == 0)) {
        double left = until - rs_cli_now();
        if (left <= 0) return 0;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double a = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + (left > 0.25 ? 0.25 : left);
        ts.tv_sec = (time_t)a;
        ts.tv_nsec = (long)((a - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    return 1;
}

/* Every call is over at the transport: stop the batchers (they finish what
 * they hold) and wait, at most 30 s, for our side of every call to end. */
static void finish_calls(rs_server *s) {
    for (int i = 0; i < s->n_routers; i++) rs_batcher_stop(s->routers[i].batcher);
    pthread_mutex_lock(&s->mu);
    wait_until(s, NULL, &s->n_calls, rs_cli_now() + 30);
    pthread_mutex_unlock(&s->mu);
}

/* After shutdown_and_notify: cancel every call still open, wait (at most
 * 30 s) for the core to report the shutdown, then finish our side. */
static void cancel_and_finish(rs_server *s) {
    grpc_server_cancel_all_calls(s->grpc);
    pthread_mutex_lock(&s->mu);
    wait_until(s, &s->shutdown_done, NULL, rs_cli_now() + 30);
    pthread_mutex_unlock(&s->mu);
    finish_calls(s);
}

int rs_server_drain(rs_server *s) {
    const double t0 = rs_cli_now(), until = t0 + s->cfg.grace_s;
    int fatal = atomic_load(&s->fatal);
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->draining, 1);
    long live = 0, accepted = s->n_accepted;
    for (rs_call *c = s->live; c; c = c->live_next) live++;
    pthread_mutex_unlock(&s->mu);
    rs_metrics_ready(s->metrics, 0);
    rs_log(RS_LOG_INFO, "draining", "\"grace_s\":%.3g,\"live_calls\":%ld,\"accepted_calls\":%ld,\"fatal\":%s",
           s->cfg.grace_s, live, accepted, fatal ? "true" : "false");
    /* Phase 1: health says NOT_SERVING (watchers are told), streams stop
     * reading, new Scorer calls get UNAVAILABLE; accepted calls finish. It
     * ends when none is left and callers have gone quiet: 500 ms with no
     * refusal *and* none since the last accepted call ended (a caller that
     * just got its answer sends again at once; ending phase 1 then would
     * leave that call to the core, which cancels it), or 2 s of refusals
     * after the last accepted call ended. */
    wake_live_calls(s);
    pthread_mutex_lock(&s->mu);
    double t_idle = 0;
    for (;;) {
        const double now = rs_cli_now();
        if (now >= until) break;
        if (s->n_accepted == 0) {
            if (t_idle == 0) t_idle = now;
            const double last = s->t_last_refused > t_idle ? s->t_last_refused : t_idle;
            if (now - last >= 0.5 || now - t_idle >= 2.0) break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    /* Phase 2: close the listener (GOAWAY) and wait for the core. Calls
     * refused meanwhile are held until the GOAWAY has reached their
     * callers (a round trip on loopback or a LAN: 200 ms is ample), so that
     * their next call goes to a new connection, which the closed listener
     * refuses (UNAVAILABLE), instead of into a stream the core cancels. */
    atomic_store(&s->shutting_down, 1);
    grpc_server_shutdown_and_notify(s->grpc, s->cq, &s->shutdown_tag);
    wake_live_calls(s);
    rs_ext_proc_wake(s->ext);
    struct timespec goaway = {0, 200 * 1000000L};
    nanosleep(&goaway, NULL);
    atomic_store(&s->release_held, 1);
    wake_live_calls(s);
    pthread_mutex_lock(&s->mu);
    int in_time = wait_until(s, &s->shutdown_done, NULL, until);
    long lost = in_time ? 0 : s->n_accepted;
    pthread_mutex_unlock(&s->mu);
    if (!in_time) {
        rs_log(RS_LOG_WARN, "grace_expired", "\"accepted_calls_cancelled\":%ld", lost);
        cancel_and_finish(s);
    } else {
        finish_calls(s);
    }
    pthread_mutex_lock(&s->mu);
    long refused = s->n_refused;
    pthread_mutex_unlock(&s->mu);
    uint64_t batches = 0;
    for (int i = 0; i < s->n_routers; i++)
        if (s->routers[i].batcher) batches += rs_batcher_batches(s->routers[i].batcher);
    /* Forwards per replica, {"router": [n0, n1, ...]}: how the load spread. */
    char per[2048];
    size_t pn = (size_t)snprintf(per, sizeof per, "{");
    for (int i = 0; i < s->n_routers && pn < sizeof per; i++) {
        router *r = &s->routers[i];
        char esc[300];
        pn += (size_t)snprintf(per + pn, sizeof per - pn, "%s\"%s\":[", i ? "," : "", rs_log_esc(esc, sizeof esc, r->name));
        for (int k = 0; k < r->n_engines && pn < sizeof per; k++)
            pn += (size_t)snprintf(per + pn, sizeof per - pn, "%s%llu", k ? "," : "",
                                   (unsigned long long)(r->batcher ? rs_batcher_replica_batches(r->batcher, k) : 0));
        if (pn < sizeof per) pn += (size_t)snprintf(per + pn, sizeof per - pn, "]");
    }
    if (pn < sizeof per) snprintf(per + pn, sizeof per - pn, "}");
    else snprintf(per, sizeof per, "{}");
    rs_metrics *m = s->metrics;
    rs_log(RS_LOG_INFO, "drained",
           "\"seconds\":%.3f,\"in_time\":%s,\"batches\":%llu,\"replica_batches\":%s,\"score_ok\":%llu,"
           "\"score_unavailable\":%llu,\"refused_while_draining\":%ld,\"stream_messages_ok\":%llu,"
           "\"accepted_calls_cancelled\":%ld",
           rs_cli_now() - t0, in_time ? "true" : "false", (unsigned long long)batches, per,
           (unsigned long long)rs_metrics_requests(m, RS_METHOD_SCORE, GRPC_STATUS_OK),
           (unsigned long long)rs_metrics_requests(m, RS_METHOD_SCORE, GRPC_STATUS_UNAVAILABLE), refused,
           (unsigned long long)rs_metrics_requests(m, RS_METHOD_SCORE_STREAM, GRPC_STATUS_OK), lost);
    return atomic_load(&s->fatal) ? 3 : lost ? 1 : 0;
}

void rs_server_free(rs_server *s) {
    if (!s) return;
    if (!atomic_load(&s->shutting_down)) {
        atomic_store(&s->shutting_down, 1);
        atomic_store(&s->draining, 1);
        grpc_server_shutdown_and_notify(s->grpc, s->cq, &s->shutdown_tag);
        cancel_and_finish(s);
    }
    grpc_server_destroy(s->grpc);
    rs_ext_proc_free(s->ext);
    grpc_completion_queue_shutdown(s->cq);
    for (int i = 0; i < s->n_cq; i++) pthread_join(s->cq_threads[i], NULL);
    grpc_completion_queue_destroy(s->cq);
    grpc_shutdown();
    for (int i = 0; i < s->n_routers; i++) {
        router *r = &s->routers[i];
        rs_batcher_free(r->batcher);
        rs_online_free(&r->online);
        for (int k = 0; k < r->n_engines; k++) rs_engine_close(r->engines[k]);
    }
    rs_metrics_free(s->metrics);
    rs_reflect_free(s->reflect);
    free(s->tokens);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Services beside Scorer (server_ext.h).                                   */

const rs_srv_config *rs_server_config(const rs_server *s) { return &s->cfg; }
int rs_server_find_router(const rs_server *s, const char *name) { return find_router((rs_server *)s, name); }
const char *rs_server_router_name(const rs_server *s, int i) { return s->routers[i].name; }
rs_engine *rs_server_router_engine(const rs_server *s, int i) { return s->routers[i].engine; }
const rs_router_info *rs_server_router_info(const rs_server *s, int i) { return &s->routers[i].info; }
rs_batcher *rs_server_router_batcher(const rs_server *s, int i) { return s->routers[i].batcher; }
rs_metrics *rs_server_metrics(const rs_server *s) { return s->metrics; }

float rs_server_decision_threshold(rs_server *s, int i, rs_srv_decision d, float v) {
    router *rt = &s->routers[i];
    const float base = router_threshold(rt);
    if (d == RS_DECIDE_THRESHOLD) return v;
    if (d == RS_DECIDE_STRONG_SHARE) return rs_online_threshold(&rt->online, v, base);
    if (rt->cfg.online) return rs_online_threshold(&rt->online, rt->cfg.online_share, base);
    return base;
}

int rs_server_serving(const rs_server *s) {
    return atomic_load(&s->ready) && !atomic_load(&s->draining) && !atomic_load(&s->fatal);
}
int rs_server_draining(const rs_server *s) { return atomic_load(&s->draining); }
int rs_server_shutting_down(const rs_server *s) { return atomic_load(&s->shutting_down); }

int rs_server_authorized(const rs_server *s, const grpc_metadata_array *md) {
    if (!s->n_tokens) return 1;
    for (size_t i = 0; i < md->count; i++) {
        if (grpc_slice_str_cmp(md->metadata[i].key, "authorization")) continue;
        const char *v = (const char *)GRPC_SLICE_START_PTR(md->metadata[i].value);
        if (rs_srv_bearer_ok((const char (*)[256])s->tokens, s->n_tokens, v, GRPC_SLICE_LENGTH(md->metadata[i].value)))
            return 1;
    }
    return 0;
}

int rs_server_work_begin(rs_server *s) {
    pthread_mutex_lock(&s->mu);
    const int ok = !atomic_load(&s->draining);
    if (ok)
        s->n_accepted++;
    else {
        s->n_refused++;
        s->t_last_refused = rs_cli_now();
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void rs_server_work_end(rs_server *s) {
    pthread_mutex_lock(&s->mu);
    s->n_accepted--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}
