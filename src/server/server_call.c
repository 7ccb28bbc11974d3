/* server_call.c — the gRPC side: calls and their state machine, health,
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
 *   into a gRPC code by srv_grpc_code() — the one place that mapping exists. */
#include "server_int.h"
#include "ext_proc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "srv_log.h"

const rs_method_desc srv_methods[CK_COUNT] = {
    [CK_SCORE] = {"/routescore.v1.Scorer/Score", 1, RS_METHOD_SCORE, 32, 0},
    [CK_STREAM] = {"/routescore.v1.Scorer/ScoreStream", 0, RS_METHOD_SCORE_STREAM, 4, 1},
    [CK_LIST] = {"/routescore.v1.Scorer/ListRouters", 1, RS_METHOD_LIST_ROUTERS, 2, 0},
    [CK_HCHECK] = {"/grpc.health.v1.Health/Check", 1, RS_METHOD_HEALTH_CHECK, 4, 0},
    [CK_HWATCH] = {"/grpc.health.v1.Health/Watch", 1, RS_METHOD_HEALTH_WATCH, 2, 0},
    [CK_REFLECT] = {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", 0, RS_METHOD_REFLECTION, 2, 0},
    [CK_REFLECT_V1] = {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", 0, RS_METHOD_REFLECTION, 2, 0},
    [CK_EXTPROC] = {"/envoy.service.ext_proc.v3.ExternalProcessor/Process", 0, RS_METHOD_EXT_PROC, 4, 1},
    [CK_UNKNOWN] = {NULL, 0, RS_METHOD_UNKNOWN, 2, 0},
};

/* ------------------------------------------------------------------------ */
/* Small helpers.                                                            */

static double deadline_from(gpr_timespec ts) {
    gpr_timespec d = gpr_convert_clock_type(ts, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(d, gpr_inf_future(GPR_CLOCK_MONOTONIC)) >= 0) return INFINITY;
    gpr_timespec left = gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC));
    return rs_clock_now() + (double)left.tv_sec + (double)left.tv_nsec * 1e-9;
}

/* The bytes of a received message; RS_ERR_FORMAT when unreadable. */
static rs_status read_bb(grpc_byte_buffer *bb, grpc_slice *out) {
    grpc_byte_buffer_reader rd;
    if (!bb || !grpc_byte_buffer_reader_init(&rd, bb)) return RS_ERR_FORMAT;
    *out = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    return RS_OK;
}

static grpc_byte_buffer *bytes_bb(uint8_t *buf, size_t len) { /* takes buf */
    grpc_slice sl = grpc_slice_new(buf, len, free);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

grpc_byte_buffer *srv_pack(const ProtobufCMessage *m) {
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return NULL;
    protobuf_c_message_pack(m, buf);
    return bytes_bb(buf, len);
}

/* Health services (docs/SERVING.md, Health): "" and "routescore.v1.Scorer"
 * are readiness (SERVING once loaded, until the drain or a fatal engine
 * error), "liveness" is liveness (SERVING while the process is healthy:
 * loading and draining included, not after a fatal engine error); the HTTP
 * API's /readyz and /healthz answer the same (srv_ready, srv_live). */
enum { HEALTH_UNKNOWN, HEALTH_READY, HEALTH_LIVE };

static int health_status(rs_server *s, int svc) {
    const int up = svc == HEALTH_LIVE ? srv_live(s) : srv_ready(s);
    return svc == HEALTH_UNKNOWN ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
           : up                  ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                                 : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static int health_known_service(const char *svc) {
    return !*svc || !strcmp(svc, "routescore.v1.Scorer") ? HEALTH_READY : !strcmp(svc, "liveness") ? HEALTH_LIVE : HEALTH_UNKNOWN;
}

/* ------------------------------------------------------------------------ */
/* Call bookkeeping.                                                         */

static void advance(rs_call *c);
static void call_destroy(rs_call *c);

static void set_status_v(rs_call *c, rs_srv_err e, rs_status st, const char *fmt, va_list ap) {
    if (c->want_finish) return; /* the first decided status stands */
    c->want_finish = 1;
    c->code = srv_grpc_code(e, st);
    vsnprintf(c->msg, sizeof c->msg, fmt ? fmt : "", ap);
}

static void set_status(rs_call *c, rs_srv_err e, rs_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_status(rs_call *c, rs_srv_err e, rs_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_status_v(c, e, st, fmt, ap);
    va_end(ap);
}

void srv_call_status(rs_call *c, rs_srv_err e, rs_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_status_v(c, e, st, fmt, ap);
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
        srv_req_free(r);
    }
    srv_xp_free(s, c->xp);
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
    const double now = rs_clock_now();
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

/* Engine-worker side of a finished request (see batcher.h): hand it back to
 * its call. */
static void req_done(rs_req *r) {
    rs_call *c = r->owner;
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
    rs_req *r = srv_req_new(c->srv, c, req_done, c->deadline);
    if (!r) return NULL;
    Routescore__V1__ScoreRequest *m = srv_req_unpack(r, data, len);
    if (!m) return r;
    const int queued = srv_call_submit(c, r, m);
    routescore__v1__score_request__free_unpacked(m, NULL);
    return queued ? NULL : r;
}

int srv_call_submit(rs_call *c, rs_req *r, const Routescore__V1__ScoreRequest *m) {
    /* Register before submitting: done() may run before submit returns
     * (it waits for c->mu, held here). */
    r->owner = c;
    r->done = req_done;
    r->next = c->inflight_head;
    c->inflight_head = r;
    c->inflight++;
    c->refs++;
    if (srv_req_submit(r, m)) return 1;
    c->inflight_head = r->next;
    c->inflight--;
    c->refs--;
    r->next = NULL;
    return 0;
}

void srv_call_push(rs_call *c, grpc_byte_buffer *bb) { push_out(c, bb); }

/* The ScoreResponse of a finished request, packed. */
static grpc_byte_buffer *req_response(rs_req *r, int with_error, grpc_status_code *code, const char **msg) {
    srv_resp resp;
    rs_srv_err e;
    if (!srv_req_response(r, with_error, &resp, &e, code, msg)) return NULL;
    grpc_byte_buffer *bb = srv_pack(&resp.msg.base);
    srv_resp_free(&resp);
    return bb;
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
    f.expired = rs_clock_now() >= c->deadline;
    f.cancelled = c->cancelled && !f.expired;
    f.input = e;
    f.input_st = st;
    f.input_msg = buf;
    rs_status fst;
    const char *msg;
    const rs_srv_err fe = srv_final_status(&f, &fst, &msg);
    set_status(c, fe, fst, "%s", msg);
}

/* ------------------------------------------------------------------------ */
/* Method handlers (c->mu held).                                            */

static int authorized(rs_call *c) {
    if (c->kind == CK_HCHECK || c->kind == CK_HWATCH) return 1;
    return srv_authorized(c->srv, &c->md);
}

/* The value of metadata key (lower case) as a C string in buf, or NULL. */
static const char *md_value(const rs_call *c, const char *key, char *buf, size_t n) {
    for (size_t i = 0; i < c->md.count; i++) {
        if (grpc_slice_str_cmp(c->md.metadata[i].key, key)) continue;
        const size_t l = GRPC_SLICE_LENGTH(c->md.metadata[i].value);
        snprintf(buf, n, "%.*s", (int)(l < n ? l : n - 1), (const char *)GRPC_SLICE_START_PTR(c->md.metadata[i].value));
        return buf;
    }
    return NULL;
}

static void log_req(rs_call *c, rs_req *r, grpc_status_code code) {
    char xr[256], tp[128];
    srv_log_request(r, c->kind == CK_SCORE ? "grpc" : "grpc-stream", (int)code, md_value(c, "x-request-id", xr, sizeof xr),
                    md_value(c, "traceparent", tp, sizeof tp));
}

static void finish_score_unary(rs_call *c, rs_req *r) {
    rs_server *s = c->srv;
    grpc_status_code code;
    const char *msg;
    grpc_byte_buffer *bb = req_response(r, 0, &code, &msg);
    c->metric_router = r->router;
    if (code == GRPC_STATUS_OK && !bb) {
        set_status(c, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
    } else if (code == GRPC_STATUS_OK) {
        push_out(c, bb);
        set_status(c, SRV_OK, RS_OK, NULL);
        if (s->metrics) rs_metrics_observe(s->metrics, r->router, RS_H_REQUEST, rs_clock_now() - r->t_recv);
    } else {
        c->want_finish = 1;
        c->code = code;
        snprintf(c->msg, sizeof c->msg, "%s", msg);
    }
    log_req(c, r, code);
    srv_req_free(r);
}

static void on_stream_req_done(rs_call *c, rs_req *r) {
    rs_server *s = c->srv;
    grpc_status_code code;
    const char *msg;
    grpc_byte_buffer *bb = req_response(r, 1, &code, &msg);
    if (s->metrics) rs_metrics_request(s->metrics, r->router, RS_METHOD_SCORE_STREAM, (int)code);
    if (bb)
        push_out(c, bb);
    else
        set_status(c, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
    log_req(c, r, code);
    srv_req_free(r);
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
    Routescore__V1__ListRoutersResponse resp;
    srv_list_routers(s, &resp, info, pinfo);
    push_out(c, srv_pack(&resp.base));
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
    const int nul = srv_wire_has_nul(&grpc__health__v1__health_check_request__descriptor, data, len, 0, &nf, &ni);
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
    resp.status = health_status(c->srv, c->watch_service);
    push_out(c, srv_pack(&resp.base));
    set_status(c, SRV_OK, RS_OK, NULL);
}

static void handle_reflect(rs_call *c, const uint8_t *data, size_t len) {
    uint8_t *out;
    size_t out_len;
    rs_err err;
    uint32_t nf;
    size_t ni;
    if (srv_wire_has_nul(&grpc__reflection__v1alpha__server_reflection_request__descriptor, data, len, 0, &nf, &ni)) {
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
    case CK_EXTPROC:
        if (!c->want_finish) srv_xp_on_message(c, data, len); /* (a message racing the final status is dropped) */
        break;
    default: set_status(c, SRV_UNIMPLEMENTED, RS_OK, "unknown method"); break;
    }
    grpc_slice_unref(sl);
}

/* The call arrived (OP_NEW succeeded). */
static void on_new(rs_call *c) {
    rs_server *s = c->srv;
    c->t_start = rs_clock_now();
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
        c->accepted = srv_work_begin(s);
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
    if (c->kind == CK_EXTPROC) {
        /* A stream idle between requests is not accepted work: the drain
         * refuses new ones and ends idle ones; a body being scored is
         * (ext_proc.c). */
        if (atomic_load(&s->draining)) {
            set_status(c, SRV_DRAINING, RS_OK, "server is shutting down: retry on another replica");
            return;
        }
        if (!(c->xp = srv_xp_new(s))) set_status(c, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
        return;
    }
    if (srv_methods[c->kind].read_initial) {
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
            } else if (rs_clock_now() + RS_EXPIRY_SLACK_S >= c->deadline) {
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
    case CK_EXTPROC: return c->n_out == 0 && !c->send_busy && c->inflight == 0; /* one at a time, in order */
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
        else if (c->kind == CK_EXTPROC)
            srv_xp_on_scored(c, r);
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
    if (c->kind == CK_EXTPROC && !c->want_finish && c->inflight == 0 && c->n_out == 0 && !c->send_busy &&
        (c->half_closed || atomic_load(&s->shutting_down)))
        set_status(c, SRV_OK, RS_OK, NULL); /* done; or idle (a read pending) at the drain's end: Envoy goes on without us */
    if ((c->kind == CK_REFLECT || c->kind == CK_REFLECT_V1) && c->half_closed && !c->want_finish)
        set_status(c, SRV_OK, RS_OK, NULL);
    if (c->kind == CK_HWATCH && !c->want_finish && !c->send_busy && c->n_out == 0) {
        int now = health_status(s, c->watch_service);
        if (now != c->watch_last) {
            Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
            resp.status = now;
            push_out(c, srv_pack(&resp.base));
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
            if (!srv_methods[c->kind].per_message && s->metrics)
                rs_metrics_request(s->metrics, c->metric_router, srv_methods[c->kind].metric, (int)c->code);
            if (!srv_methods[c->kind].per_message && c->code != GRPC_STATUS_OK && rs_log_enabled(RS_LOG_DEBUG)) {
                char esc[600];
                rs_log(RS_LOG_DEBUG, "rpc_error", "\"method\":\"%s\",\"code\":%d,\"message\":\"%s\"",
                       RS_METHOD_NAMES[srv_methods[c->kind].metric], (int)c->code, rs_log_esc(esc, sizeof esc, c->msg));
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
        if (!atomic_load(&s->shutting_down)) srv_arm(s, c->kind);
        on_new(c);
        break;
    case OP_RECV: {
        c->recv_busy = 0;
        grpc_byte_buffer *bb = c->recv;
        c->recv = NULL;
        if (srv_methods[c->kind].read_initial) { /* on_new's second look at a call that came without its message */
            if (!ok || grpc_call_failed_before_recv_message(c->call))
                c->cancelled = 1; /* the client ended it: nobody to answer (OP_CLOSE counts it) */
            else if (rs_clock_now() + RS_EXPIRY_SLACK_S >= c->deadline) /* the deadline came first: that, not the input */
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
            if (!c->finishing && !srv_methods[c->kind].per_message && s->metrics) {
                outcome_facts f = {0};
                f.expired = rs_clock_now() + RS_EXPIRY_SLACK_S >= c->deadline;
                f.cancelled = !f.expired;
                rs_status st;
                const char *msg;
                const rs_srv_err e = srv_final_status(&f, &st, &msg);
                const grpc_status_code code = srv_grpc_code(e, st);
                rs_metrics_request(s->metrics, c->metric_router, srv_methods[c->kind].metric, (int)code);
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

void *srv_cq_main(void *arg) {
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

void srv_arm(rs_server *s, call_kind k) {
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
                                                srv_methods[k].read_initial ? &c->recv : NULL, s->cq, s->cq, &c->t_new);
    }
    if (e != GRPC_CALL_OK) {
        c->refs = 0;
        call_destroy(c);
    }
}

void srv_wake_live_calls(rs_server *s) {
    pthread_mutex_lock(&s->mu);
    for (rs_call *c = s->live; c; c = c->live_next) {
        pthread_mutex_lock(&c->mu);
        if (c->refs > 0) wake(c);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&s->mu);
}
