/* ext_proc.c — Envoy's ext_proc service (ext_proc.h).
 *
 * DESIGN — the same call lifecycle as server.c's calls
 *   ARMED ──new──▶ LIVE ──(status sent, or cancelled)──▶ ENDED ──refs 0──▶ freed
 *   Event handlers only record facts (reading, sending, scoring, half
 *   closed, cancelled, want_finish); advance() alone starts the next gRPC
 *   operation. refs counts the operations in flight and the rs_work in a
 *   batcher; the call is freed at zero. A finished work comes back through
 *   an empty batch (the wake tag), so answers are built on this module's
 *   completion-queue threads, never on the engine's.
 *
 *   Messages are answered strictly in order, one at a time: the next one is
 *   read only once the previous one's answer is queued (Envoy waits for each
 *   answer anyway). A request body being scored is a piece of accepted work
 *   for the drain (rs_server_work_begin): the drain finishes it. A stream
 *   idle between messages is not: at the drain's second phase it ends OK.
 *
 * Errors: a stream that is not ext_proc (malformed message) ends
 * INVALID_ARGUMENT; everything about the HTTP request itself is answered
 * inside the protocol (fail-open or fail-closed, ext_proc.h). */
#include "ext_proc.h"

#include <cjson/cJSON.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batcher.h"
#include "clock.h"
#include "envoy/service/ext_proc/v3/external_processor.pb-c.h"
#include "json_text.h"
#include "messages.h"
#include "server_ext.h"
#include "server_int.h"
#include "srv_log.h"

#define XP_ARMED 4
#define XP_MAX_THREADS 16
#define XP_MAX_SET 8

typedef Envoy__Service__ExtProc__V3__ProcessingRequest PReq;
typedef Envoy__Service__ExtProc__V3__ProcessingResponse PResp;
typedef Envoy__Service__ExtProc__V3__HeaderMutation HMut;
typedef Envoy__Config__Core__V3__HeaderValueOption HOpt;
typedef Envoy__Config__Core__V3__HeaderValue HVal;

#define REQ(x) ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_##x
#define RESP(x) ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_##x

typedef enum xop { X_NEW, X_RECV, X_SEND, X_FINISH, X_CLOSE, X_WAKE } xop;

typedef struct xcall xcall;
typedef struct xtag {
    xcall *c;
    xop op;
} xtag;

struct rs_ext_proc {
    rs_server *srv;
    grpc_server *g;
    void *method;
    grpc_completion_queue *cq;
    pthread_t th[XP_MAX_THREADS];
    int n_th;
    int router; /* the configured router */
    pthread_mutex_t mu; /* live list, n_calls */
    pthread_cond_t cv;
    xcall *live;
    long n_calls;
};

/* Why a chat request could not be scored: its own fault (400) or the
 * server's (429 queue full, 503 not ready or draining, 504 deadline, 500). */
typedef struct xfail {
    int http;           /* 0: no failure */
    grpc_status_code code; /* for the metrics */
    char msg[256];
} xfail;

struct xcall {
    rs_ext_proc *x;
    pthread_mutex_t mu;
    int refs;
    grpc_call *call;
    gpr_timespec deadline_ts;
    double deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *recv;
    int close_cancelled;
    xtag t_new, t_recv, t_send, t_finish, t_close, t_wake;
    /* facts (see DESIGN) */
    int live, recv_busy, send_busy, wake_busy, half_closed, cancelled, md_sent, finishing, want_finish;
    grpc_status_code code;
    char msg[256];
    grpc_slice status_slice;
    int has_status_slice;
    grpc_byte_buffer *out;     /* the next answer, not yet sent */
    grpc_byte_buffer *sending;
    xcall *live_prev, *live_next;
    /* the HTTP request */
    int chat;                  /* POST /v1/chat/completions */
    int router;
    rs_srv_decision decision;
    float dvalue;
    xfail hfail;               /* a bad x-routescore-* header or router: found at the headers */
    /* scoring one body */
    int scoring, scored, begun;
    rs_req *req;               /* the body's Score request (server_request.c); NULL when none */
    cJSON *body;
    double t_msg;              /* the current message's arrival */               /* the failure of the body being scored, set at done */
};

static void xadvance(xcall *c);
static void xarm(rs_ext_proc *x);
static void xdestroy(xcall *c);

/* ------------------------------------------------------------------------ */
/* Small helpers.                                                            */

static void set_status(xcall *c, grpc_status_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_status(xcall *c, grpc_status_code code, const char *fmt, ...) {
    if (c->want_finish) return;
    c->want_finish = 1;
    c->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
}

static void xfail_set(xfail *f, int http, grpc_status_code code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void xfail_set(xfail *f, int http, grpc_status_code code, const char *fmt, ...) {
    f->http = http;
    f->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
}

static grpc_byte_buffer *pack(const ProtobufCMessage *m) {
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return NULL;
    protobuf_c_message_pack(m, buf);
    grpc_slice sl = grpc_slice_new(buf, len, free);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* A header's value (Envoy sends raw_value; value is the older form). */
static const char *hval(const HVal *h, size_t *len) {
    if (h->raw_value.len || !h->value || !*h->value) {
        *len = h->raw_value.len;
        return (const char *)h->raw_value.data;
    }
    *len = strlen(h->value);
    return h->value;
}

static int hval_is(const HVal *h, const char *want) {
    size_t n;
    const char *v = hval(h, &n);
    return n == strlen(want) && (!n || !memcmp(v, want, n));
}

/* Header mutations under construction: values live in the struct. */
typedef struct hmut {
    HMut m;
    HOpt opt[XP_MAX_SET], *popt[XP_MAX_SET];
    HVal hv[XP_MAX_SET];
    char val[XP_MAX_SET][320];
    char *remove[4];
} hmut;

static void hmut_init(hmut *h) {
    memset(h, 0, sizeof *h);
    envoy__service__ext_proc__v3__header_mutation__init(&h->m);
    h->m.set_headers = h->popt;
}

static void hmut_set(hmut *h, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void hmut_set(hmut *h, const char *key, const char *fmt, ...) {
    const size_t i = h->m.n_set_headers;
    if (i >= XP_MAX_SET) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->val[i], sizeof h->val[i], fmt, ap);
    va_end(ap);
    /* Header values carry no control characters: a message quoting input is cleaned. */
    for (char *p = h->val[i]; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    envoy__config__core__v3__header_value__init(&h->hv[i]);
    h->hv[i].key = (char *)key;
    h->hv[i].raw_value.data = (uint8_t *)h->val[i];
    h->hv[i].raw_value.len = strlen(h->val[i]);
    envoy__config__core__v3__header_value_option__init(&h->opt[i]);
    h->opt[i].header = &h->hv[i];
    h->opt[i].append_action = ENVOY__CONFIG__CORE__V3__HEADER_VALUE_OPTION__HEADER_APPEND_ACTION__OVERWRITE_IF_EXISTS_OR_ADD;
    h->popt[i] = &h->opt[i];
    h->m.n_set_headers = i + 1;
}

/* The decision headers a client may not set itself. */
static void hmut_remove_decision(hmut *h) {
    static const char *const R[] = {"x-routescore-route", "x-routescore-model", "x-routescore-win-prob"};
    for (size_t i = 0; i < 3; i++) h->remove[i] = (char *)R[i];
    h->m.remove_headers = h->remove;
    h->m.n_remove_headers = 3;
}

/* ------------------------------------------------------------------------ */
/* Answers.                                                                  */

/* CONTINUE for the phase `resp_case`, with mutations hm (may be NULL), a
 * new body (may be NULL) and clear_route_cache. */
static grpc_byte_buffer *answer_continue(int resp_case, hmut *hm, const char *body, size_t body_len, int clear_cache) {
    PResp r = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__INIT;
    Envoy__Service__ExtProc__V3__CommonResponse cr = ENVOY__SERVICE__EXT_PROC__V3__COMMON_RESPONSE__INIT;
    Envoy__Service__ExtProc__V3__HeadersResponse hr = ENVOY__SERVICE__EXT_PROC__V3__HEADERS_RESPONSE__INIT;
    Envoy__Service__ExtProc__V3__BodyResponse br = ENVOY__SERVICE__EXT_PROC__V3__BODY_RESPONSE__INIT;
    Envoy__Service__ExtProc__V3__TrailersResponse tr = ENVOY__SERVICE__EXT_PROC__V3__TRAILERS_RESPONSE__INIT;
    Envoy__Service__ExtProc__V3__BodyMutation bm;
    envoy__service__ext_proc__v3__body_mutation__init(&bm);
    if (hm && (hm->m.n_set_headers || hm->m.n_remove_headers)) cr.header_mutation = &hm->m;
    if (body) {
        bm.mutation_case = ENVOY__SERVICE__EXT_PROC__V3__BODY_MUTATION__MUTATION_BODY;
        bm.body.data = (uint8_t *)body;
        bm.body.len = body_len;
        cr.body_mutation = &bm;
    }
    cr.clear_route_cache = clear_cache;
    hr.response = br.response = &cr;
    r.response_case = resp_case;
    switch (resp_case) {
    case RESP(REQUEST_HEADERS): r.request_headers = &hr; break;
    case RESP(RESPONSE_HEADERS): r.response_headers = &hr; break;
    case RESP(REQUEST_BODY): r.request_body = &br; break;
    case RESP(RESPONSE_BODY): r.response_body = &br; break;
    case RESP(REQUEST_TRAILERS): r.request_trailers = &tr; break;
    default: r.response_trailers = &tr; break;
    }
    return pack(&r.base);
}

/* Fail-closed: Envoy answers the HTTP request itself. */
static grpc_byte_buffer *answer_immediate(const xfail *f) {
    PResp r = ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__INIT;
    Envoy__Service__ExtProc__V3__ImmediateResponse ir = ENVOY__SERVICE__EXT_PROC__V3__IMMEDIATE_RESPONSE__INIT;
    Envoy__Type__V3__HttpStatus hs = ENVOY__TYPE__V3__HTTP_STATUS__INIT;
    hmut hm;
    hmut_init(&hm);
    hmut_set(&hm, "content-type", "application/json");
    hmut_set(&hm, "x-routescore-error", "%s", f->msg);
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", f->msg);
    cJSON_AddStringToObject(e, "type", f->http == 400 ? "invalid_request_error" : "routescore_unavailable");
    cJSON_AddNumberToObject(e, "code", f->http);
    char *text = o && e ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return NULL;
    hs.code = (Envoy__Type__V3__StatusCode)f->http;
    ir.status = &hs;
    ir.headers = &hm.m;
    ir.body.data = (uint8_t *)text;
    ir.body.len = strlen(text);
    char details[300];
    snprintf(details, sizeof details, "routescore_%d", f->http);
    ir.details = details;
    r.response_case = RESP(IMMEDIATE_RESPONSE);
    r.immediate_response = &ir;
    grpc_byte_buffer *bb = pack(&r.base);
    free(text);
    return bb;
}

/* A chat request that cannot be scored, answered at phase resp_case. */
static grpc_byte_buffer *answer_failure(xcall *c, int resp_case, const xfail *f) {
    rs_server *s = c->x->srv;
    const rs_srv_config *cfg = rs_server_config(s);
    if (rs_server_metrics(s))
        rs_metrics_request(rs_server_metrics(s), c->router >= 0 ? c->router : -1, RS_METHOD_EXT_PROC, (int)f->code);
    if (rs_log_enabled(RS_LOG_DEBUG)) {
        char esc[600];
        rs_log(RS_LOG_DEBUG, "ext_proc_unscored", "\"http\":%d,\"fail_open\":%s,\"message\":\"%s\"", f->http,
               cfg->ext_proc_fail_open ? "true" : "false", rs_log_esc(esc, sizeof esc, f->msg));
    }
    if (!cfg->ext_proc_fail_open) return answer_immediate(f);
    hmut hm;
    hmut_init(&hm);
    hmut_set(&hm, "x-routescore-error", "%s", f->msg);
    return answer_continue(resp_case, &hm, NULL, 0, 0);
}

/* ------------------------------------------------------------------------ */
/* The request headers.                                                      */

static int parse_unit(const char *v, size_t n, float *out) {
    char buf[64];
    if (!n || n >= sizeof buf) return 0;
    memcpy(buf, v, n);
    buf[n] = 0;
    char *end;
    const double d = strtod(buf, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == buf || *end || !isfinite(d)) return 0;
    *out = (float)d;
    return 1;
}

static grpc_byte_buffer *on_request_headers(xcall *c, const Envoy__Service__ExtProc__V3__HttpHeaders *h) {
    rs_server *s = c->x->srv;
    int post = 0, path_ok = 0, n_dec = 0;
    const Envoy__Config__Core__V3__HeaderMap *map = h ? h->headers : NULL;
    for (size_t i = 0; map && i < map->n_headers; i++) {
        const HVal *hv = map->headers[i];
        if (!hv->key) continue;
        size_t n;
        const char *v = hval(hv, &n);
        if (!strcmp(hv->key, ":method")) {
            post = hval_is(hv, "POST");
        } else if (!strcmp(hv->key, ":path")) {
            static const char P[] = "/v1/chat/completions";
            const size_t pl = sizeof P - 1;
            path_ok = n >= pl && !memcmp(v, P, pl) && (n == pl || v[pl] == '?');
        } else if (!strcasecmp(hv->key, "x-routescore-threshold") || !strcasecmp(hv->key, "x-routescore-strong-share")) {
            const int thr = !strcasecmp(hv->key, "x-routescore-threshold");
            float f = 0.f;
            n_dec++;
            if (!parse_unit(v, n, &f) || (thr ? !(f >= 0.f && f <= 1.f) : !(f > 0.f && f <= 1.f)))
                xfail_set(&c->hfail, 400, GRPC_STATUS_INVALID_ARGUMENT, "%s must be a number in %s", hv->key,
                          thr ? "[0, 1]" : "(0, 1]");
            c->decision = thr ? RS_DECIDE_THRESHOLD : RS_DECIDE_STRONG_SHARE;
            c->dvalue = f;
        } else if (!strcasecmp(hv->key, "x-routescore-router")) {
            char name[160];
            if (n >= sizeof name || memchr(v, 0, n)) {
                xfail_set(&c->hfail, 400, GRPC_STATUS_INVALID_ARGUMENT, "x-routescore-router: no such router");
                continue;
            }
            memcpy(name, v, n);
            name[n] = 0;
            c->router = rs_server_find_router(s, name);
            if (c->router < 0) {
                char esc[200];
                xfail_set(&c->hfail, 400, GRPC_STATUS_INVALID_ARGUMENT, "x-routescore-router: unknown router '%s'",
                          rs_log_esc(esc, sizeof esc, name));
            }
        }
    }
    if (n_dec > 1)
        xfail_set(&c->hfail, 400, GRPC_STATUS_INVALID_ARGUMENT,
                  "set one of x-routescore-threshold and x-routescore-strong-share, once");
    c->chat = post && path_ok;
    hmut hm;
    hmut_init(&hm);
    hmut_remove_decision(&hm);
    if (c->chat && h && h->end_of_stream) {
        xfail f;
        xfail_set(&f, 400, GRPC_STATUS_INVALID_ARGUMENT, "chat request without a body");
        return answer_failure(c, RESP(REQUEST_HEADERS), &f);
    }
    return answer_continue(RESP(REQUEST_HEADERS), &hm, NULL, 0, 0);
}

/* ------------------------------------------------------------------------ */
/* The request body: parse, extract, tokenize, submit.                       */

static void req_done(rs_req *r) {
    xcall *c = r->owner;
    pthread_mutex_lock(&c->mu);
    c->scored = 1;
    c->refs--; /* the work's */
    if (!c->wake_busy && grpc_call_start_batch(c->call, NULL, 0, &c->t_wake, NULL) == GRPC_CALL_OK) {
        c->wake_busy = 1;
        c->refs++;
    } else if (!c->wake_busy) {
        xadvance(c); /* could not post: advance here */
    }
    const int dead = c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (dead) xdestroy(c);
}

/* Why request r failed, in the one mapping of server_request.c. */
static void req_fail(const rs_req *r, xfail *f) {
    rs_status st;
    const char *msg;
    const rs_srv_err e = srv_req_outcome(r, &st, &msg);
    xfail_set(f, srv_http_status(e, st), srv_grpc_code(e, st), "%.200s", msg);
}

/* Starts scoring the body, or fills *f with why not (f->http != 0). */
static void start_scoring(xcall *c, const Envoy__Service__ExtProc__V3__HttpBody *b, xfail *f) {
    rs_server *s = c->x->srv;
    if (c->hfail.http) {
        *f = c->hfail;
        return;
    }
    if (!b->end_of_stream) {
        xfail_set(f, 400, GRPC_STATUS_INVALID_ARGUMENT,
                  "the body is not buffered (Envoy: processing_mode.request_body_mode BUFFERED)");
        return;
    }
    const char *data = (const char *)b->body.data;
    const size_t len = b->body.len;
    rs_err err = {{0}};
    if (!len) {
        xfail_set(f, 400, GRPC_STATUS_INVALID_ARGUMENT, "empty body");
        return;
    }
    if (rs_json_check_text(data, len, &err) != RS_OK) {
        xfail_set(f, 400, GRPC_STATUS_INVALID_ARGUMENT, "body: %.200s", err.msg);
        return;
    }
    const char *end = NULL;
    c->body = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (c->body && end) {
        while (end < data + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) end++;
        if (end != data + len) {
            cJSON_Delete(c->body);
            c->body = NULL;
        }
    }
    if (!c->body || !cJSON_IsObject(c->body)) {
        xfail_set(f, 400, GRPC_STATUS_INVALID_ARGUMENT, "body is not a JSON object");
        return;
    }
    if (!cJSON_GetObjectItemCaseSensitive(c->body, "messages")) {
        xfail_set(f, 400, GRPC_STATUS_INVALID_ARGUMENT, "body has no \"messages\"");
        return;
    }
    char *text = NULL;
    size_t tlen;
    rs_status st = rs_messages_last_user_json(cJSON_GetObjectItemCaseSensitive(c->body, "messages"), &text, &tlen, &err);
    if (st != RS_OK) {
        xfail_set(f, st == RS_ERR_NOMEM ? 503 : 400, st == RS_ERR_NOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT,
                  "%.200s", err.msg);
        return;
    }
    if (!rs_server_serving(s)) {
        free(text);
        xfail_set(f, 503, GRPC_STATUS_UNAVAILABLE,
                  rs_server_draining(s) ? "routescore is shutting down" : "routescore is not ready: routers are loading");
        return;
    }
    /* The rest is a Score request with one prompt: the same validation,
     * tokenizing, admission and status mapping as gRPC's and HTTP's. */
    Routescore__V1__ScoreRequest m;
    routescore__v1__score_request__init(&m);
    m.router = (char *)rs_server_router_name(s, c->router);
    char *prompts[1] = {text};
    m.n_prompts = 1;
    m.prompts = prompts;
    if (c->decision == RS_DECIDE_THRESHOLD) {
        m.decision_case = ROUTESCORE__V1__SCORE_REQUEST__DECISION_THRESHOLD;
        m.threshold = c->dvalue;
    } else if (c->decision == RS_DECIDE_STRONG_SHARE) {
        m.decision_case = ROUTESCORE__V1__SCORE_REQUEST__DECISION_STRONG_SHARE;
        m.strong_share = c->dvalue;
    }
    rs_req *r = srv_req_new(s, c, req_done, c->deadline);
    if (!r) {
        free(text);
        xfail_set(f, 503, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (!rs_server_work_begin(s)) {
        srv_req_free(r);
        free(text);
        xfail_set(f, 503, GRPC_STATUS_UNAVAILABLE, "routescore is shutting down");
        return;
    }
    c->begun = 1;
    c->scoring = 1;
    c->refs++; /* the request's, until req_done */
    c->req = r;
    const int queued = srv_req_submit(r, &m);
    free(text);
    if (queued) return;
    c->scoring = 0;
    c->refs--;
    req_fail(r, f);
    c->req = NULL;
    srv_req_free(r);
    c->begun = 0;
    rs_server_work_end(s);
}

/* The scored body's answer (c->mu held, on a completion-queue thread). */
static grpc_byte_buffer *answer_scored(xcall *c) {
    rs_server *s = c->x->srv;
    const rs_srv_config *cfg = rs_server_config(s);
    xfail f = {0};
    rs_status st;
    const char *emsg;
    if (srv_req_outcome(c->req, &st, &emsg) != SRV_OK) {
        req_fail(c->req, &f);
        return answer_failure(c, RESP(REQUEST_BODY), &f);
    }
    const rs_score *sc = &c->req->work.scores[0];
    const int ri = c->router;
    const rs_router_info *info = rs_server_router_info(s, ri);
    const float thr = rs_server_decision_threshold(s, ri, c->decision, c->dvalue);
    const int strong = sc->win_prob >= thr;
    const char *model = strong ? (cfg->ext_proc_strong_model[0] ? cfg->ext_proc_strong_model : info->strong_model)
                               : (cfg->ext_proc_weak_model[0] ? cfg->ext_proc_weak_model : info->weak_model);
    hmut hm;
    hmut_init(&hm);
    hmut_set(&hm, "x-routescore-route", "%s", strong ? "strong" : "weak");
    hmut_set(&hm, "x-routescore-model", "%s", model);
    hmut_set(&hm, "x-routescore-win-prob", "%.9g", (double)sc->win_prob);
    hmut_set(&hm, "x-routescore-threshold", "%.9g", (double)thr);
    hmut_set(&hm, "x-routescore-router", "%s", rs_server_router_name(s, ri));
    char *body = NULL;
    if (cfg->ext_proc_rewrite_model) {
        cJSON *m = cJSON_CreateString(model);
        if (!m || (cJSON_GetObjectItemCaseSensitive(c->body, "model")
                       ? !cJSON_ReplaceItemInObjectCaseSensitive(c->body, "model", m)
                       : !cJSON_AddItemToObject(c->body, "model", m))) {
            cJSON_Delete(m);
            xfail_set(&f, 503, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return answer_failure(c, RESP(REQUEST_BODY), &f);
        }
        body = cJSON_PrintUnformatted(c->body);
        if (!body) {
            xfail_set(&f, 503, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return answer_failure(c, RESP(REQUEST_BODY), &f);
        }
    }
    rs_metrics *mx = rs_server_metrics(s);
    if (mx) {
        rs_metrics_decision(mx, ri, strong);
        rs_metrics_request(mx, ri, RS_METHOD_EXT_PROC, GRPC_STATUS_OK);
        rs_metrics_observe(mx, ri, RS_H_REQUEST, rs_clock_now() - c->t_msg);
    }
    grpc_byte_buffer *bb = answer_continue(RESP(REQUEST_BODY), &hm, body, body ? strlen(body) : 0, 1);
    free(body);
    return bb;
}

static void body_release(xcall *c) {
    cJSON_Delete(c->body);
    c->body = NULL;
    srv_req_free(c->req); /* not in a batcher: never queued, or done */
    c->req = NULL;
}

/* ------------------------------------------------------------------------ */
/* Messages and the call's state machine (c->mu held).                       */

static void push(xcall *c, grpc_byte_buffer *bb) {
    if (!bb) {
        set_status(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    c->out = bb;
}

static void on_message(xcall *c, grpc_byte_buffer *bb) {
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb)) {
        set_status(c, GRPC_STATUS_INVALID_ARGUMENT, "unreadable message");
        return;
    }
    grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    PReq *m = envoy__service__ext_proc__v3__processing_request__unpack(NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    if (!m) {
        set_status(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed ProcessingRequest");
        return;
    }
    c->t_msg = rs_clock_now();
    switch (m->request_case) {
    case REQ(REQUEST_HEADERS): push(c, on_request_headers(c, m->request_headers)); break;
    case REQ(REQUEST_BODY):
        if (!c->chat) {
            push(c, answer_continue(RESP(REQUEST_BODY), NULL, NULL, 0, 0));
        } else {
            xfail f = {0};
            start_scoring(c, m->request_body, &f);
            if (f.http) {
                body_release(c);
                push(c, answer_failure(c, RESP(REQUEST_BODY), &f));
            }
        }
        break;
    case REQ(RESPONSE_HEADERS): push(c, answer_continue(RESP(RESPONSE_HEADERS), NULL, NULL, 0, 0)); break;
    case REQ(RESPONSE_BODY): push(c, answer_continue(RESP(RESPONSE_BODY), NULL, NULL, 0, 0)); break;
    case REQ(REQUEST_TRAILERS): push(c, answer_continue(RESP(REQUEST_TRAILERS), NULL, NULL, 0, 0)); break;
    case REQ(RESPONSE_TRAILERS): push(c, answer_continue(RESP(RESPONSE_TRAILERS), NULL, NULL, 0, 0)); break;
    default: set_status(c, GRPC_STATUS_INVALID_ARGUMENT, "ProcessingRequest without a phase"); break;
    }
    envoy__service__ext_proc__v3__processing_request__free_unpacked(m, NULL);
}

static void xadvance(xcall *c) {
    rs_ext_proc *x = c->x;
    if (!c->live || c->cancelled || c->finishing) return;
    if (c->scoring && c->scored) {
        c->scoring = c->scored = 0;
        push(c, answer_scored(c));
        body_release(c);
        if (c->begun) {
            c->begun = 0;
            rs_server_work_end(x->srv);
        }
    }
    const int idle = !c->scoring && !c->out && !c->send_busy;
    if (!c->want_finish && idle && c->half_closed) set_status(c, GRPC_STATUS_OK, "%s", "");
    if (!c->want_finish && idle && rs_server_shutting_down(x->srv))
        set_status(c, GRPC_STATUS_OK, "%s", ""); /* idle (a read pending) at the drain's end: Envoy goes on without us */
    if (c->want_finish && !c->send_busy && !c->scoring) {
        grpc_op ops[3];
        size_t n = 0;
        memset(ops, 0, sizeof ops);
        if (!c->md_sent) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        if (c->out) {
            c->sending = c->out;
            c->out = NULL;
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
        }
        return;
    }
    if (!c->send_busy && c->out) {
        grpc_op ops[2];
        size_t n = 0;
        memset(ops, 0, sizeof ops);
        if (!c->md_sent) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->sending = c->out;
        c->out = NULL;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->sending;
        if (grpc_call_start_batch(c->call, ops, n, &c->t_send, NULL) == GRPC_CALL_OK) {
            c->send_busy = 1;
            c->md_sent = 1;
            c->refs++;
        }
    }
    if (!c->recv_busy && !c->half_closed && !c->want_finish && !c->scoring && !c->out) {
        grpc_op op = {0};
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &c->recv;
        if (grpc_call_start_batch(c->call, &op, 1, &c->t_recv, NULL) == GRPC_CALL_OK) {
            c->recv_busy = 1;
            c->refs++;
        }
    }
}

static void xdestroy(xcall *c) {
    rs_ext_proc *x = c->x;
    if (c->call) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->recv) grpc_byte_buffer_destroy(c->recv);
    if (c->sending) grpc_byte_buffer_destroy(c->sending);
    if (c->out) grpc_byte_buffer_destroy(c->out);
    if (c->has_status_slice) grpc_slice_unref(c->status_slice);
    if (c->begun) rs_server_work_end(x->srv);
    body_release(c);
    pthread_mutex_lock(&x->mu);
    if (c->live) {
        if (c->live_prev)
            c->live_prev->live_next = c->live_next;
        else
            x->live = c->live_next;
        if (c->live_next) c->live_next->live_prev = c->live_prev;
    }
    x->n_calls--;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void on_new(xcall *c) {
    rs_ext_proc *x = c->x;
    rs_server *s = x->srv;
    c->deadline = INFINITY;
    gpr_timespec d = gpr_convert_clock_type(c->deadline_ts, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(d, gpr_inf_future(GPR_CLOCK_MONOTONIC)) < 0) {
        gpr_timespec left = gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC));
        c->deadline = rs_clock_now() + (double)left.tv_sec + (double)left.tv_nsec * 1e-9;
    }
    pthread_mutex_lock(&x->mu);
    c->live = 1;
    c->live_next = x->live;
    if (x->live) x->live->live_prev = c;
    x->live = c;
    pthread_mutex_unlock(&x->mu);
    grpc_op op = {0};
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) == GRPC_CALL_OK) c->refs++;
    if (!rs_server_authorized(s, &c->md)) {
        set_status(c, GRPC_STATUS_UNAUTHENTICATED, "missing or invalid bearer token");
        return;
    }
    if (rs_server_draining(s)) {
        set_status(c, GRPC_STATUS_UNAVAILABLE, "server is shutting down: retry on another replica");
        return;
    }
}

static void dispatch(xtag *t, int ok) {
    xcall *c = t->c;
    rs_ext_proc *x = c->x;
    pthread_mutex_lock(&c->mu);
    c->refs--;
    switch (t->op) {
    case X_NEW:
        if (!ok) break;
        if (!rs_server_shutting_down(x->srv)) xarm(x);
        on_new(c);
        break;
    case X_RECV: {
        c->recv_busy = 0;
        grpc_byte_buffer *bb = c->recv;
        c->recv = NULL;
        if (!ok || !bb)
            c->half_closed = 1;
        else if (!c->want_finish && !c->finishing) /* (a message racing the final status is dropped) */
            on_message(c, bb);
        if (bb) grpc_byte_buffer_destroy(bb);
        break;
    }
    case X_SEND:
        c->send_busy = 0;
        if (c->sending) grpc_byte_buffer_destroy(c->sending);
        c->sending = NULL;
        if (!ok) c->cancelled = 1;
        break;
    case X_FINISH:
        if (c->sending) grpc_byte_buffer_destroy(c->sending);
        c->sending = NULL;
        break;
    case X_CLOSE:
        if (c->close_cancelled) {
            c->cancelled = 1;
            if (c->scoring) rs_batcher_cancel(rs_server_router_batcher(x->srv, c->router), &c->req->work);
        }
        break;
    case X_WAKE: c->wake_busy = 0; break;
    }
    if (t->op != X_NEW || ok) xadvance(c);
    const int dead = c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (dead) xdestroy(c);
}

static void *cq_main(void *arg) {
    rs_ext_proc *x = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(x->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_OP_COMPLETE) dispatch(ev.tag, ev.success);
    }
    return NULL;
}

static void xarm(rs_ext_proc *x) {
    xcall *c = calloc(1, sizeof *c);
    if (!c) {
        rs_log(RS_LOG_ERROR, "oom", "\"what\":\"arming an ext_proc call\"");
        return;
    }
    c->x = x;
    c->router = x->router;
    pthread_mutex_init(&c->mu, NULL);
    grpc_metadata_array_init(&c->md);
    c->t_new = (xtag){c, X_NEW};
    c->t_recv = (xtag){c, X_RECV};
    c->t_send = (xtag){c, X_SEND};
    c->t_finish = (xtag){c, X_FINISH};
    c->t_close = (xtag){c, X_CLOSE};
    c->t_wake = (xtag){c, X_WAKE};
    c->refs = 1;
    pthread_mutex_lock(&x->mu);
    x->n_calls++;
    pthread_mutex_unlock(&x->mu);
    if (grpc_server_request_registered_call(x->g, x->method, &c->call, &c->deadline_ts, &c->md, NULL, x->cq, x->cq,
                                            &c->t_new) != GRPC_CALL_OK) {
        c->refs = 0;
        xdestroy(c);
    }
}

/* ------------------------------------------------------------------------ */
/* Lifecycle.                                                                */

rs_status rs_ext_proc_create(rs_server *s, grpc_server *g, rs_ext_proc **out, rs_err *err) {
    *out = NULL;
    const rs_srv_config *cfg = rs_server_config(s);
    const int router = rs_server_find_router(s, cfg->ext_proc_router);
    if (router < 0) return rs_errf(err, RS_ERR_INVALID_ARG, "ext_proc.router '%s' is not a configured router", cfg->ext_proc_router);
    rs_ext_proc *x = calloc(1, sizeof *x);
    if (!x) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    x->srv = s;
    x->g = g;
    x->router = router;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    x->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(g, x->cq, NULL);
    x->method = grpc_server_register_method(g, "/envoy.service.ext_proc.v3.ExternalProcessor/Process", NULL,
                                            GRPC_SRM_PAYLOAD_NONE, 0);
    *out = x;
    return RS_OK;
}

void rs_ext_proc_start(rs_ext_proc *x) {
    if (!x) return;
    for (int i = 0; i < XP_ARMED; i++) xarm(x);
    const int want = rs_server_config(x->srv)->cq_threads;
    const int n = want < 1 ? 1 : want > XP_MAX_THREADS ? XP_MAX_THREADS : want;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&x->th[i], NULL, cq_main, x) != 0) break;
        x->n_th = i + 1;
    }
    if (!x->n_th) rs_log(RS_LOG_ERROR, "ext_proc_threads", "\"message\":\"cannot start threads: ext_proc calls wait\"");
}

void rs_ext_proc_wake(rs_ext_proc *x) {
    if (!x) return;
    pthread_mutex_lock(&x->mu);
    for (xcall *c = x->live; c; c = c->live_next) {
        pthread_mutex_lock(&c->mu);
        if (c->refs > 0 && !c->wake_busy && grpc_call_start_batch(c->call, NULL, 0, &c->t_wake, NULL) == GRPC_CALL_OK) {
            c->wake_busy = 1;
            c->refs++;
        }
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&x->mu);
}

void rs_ext_proc_free(rs_ext_proc *x) {
    if (!x) return;
    grpc_completion_queue_shutdown(x->cq);
    if (x->n_th) {
        for (int i = 0; i < x->n_th; i++) pthread_join(x->th[i], NULL);
    } else { /* never started: drain the queue here */
        while (grpc_completion_queue_next(x->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {}
    }
    grpc_completion_queue_destroy(x->cq);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    free(x);
}
