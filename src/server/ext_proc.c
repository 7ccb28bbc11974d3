/* ext_proc.c — Envoy's ext_proc service (ext_proc.h).
 *
 * DESIGN — the protocol over the server's calls
 *   A Process stream is an rs_call of kind CK_EXTPROC (server_call.c): its
 *   lifecycle, reads, writes, cancellation and drain are the server's. This
 *   file answers each ProcessingRequest. Messages are answered strictly in
 *   order, one at a time: the next one is read only once the previous one's
 *   answer is queued (Envoy waits for each answer anyway). A body is scored
 *   as a one-prompt Score request through srv_call_submit, so validation,
 *   tokenizing, admission and status mapping are Score's; while it is
 *   scored it is a piece of accepted work for the drain
 *   (srv_work_begin), which finishes it. A stream idle between
 *   messages is not: at the drain's second phase it ends OK.
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
#include "server_int.h"
#include "srv_log.h"

#define XP_MAX_SET 8

typedef Envoy__Service__ExtProc__V3__ProcessingRequest PReq;
typedef Envoy__Service__ExtProc__V3__ProcessingResponse PResp;
typedef Envoy__Service__ExtProc__V3__HeaderMutation HMut;
typedef Envoy__Config__Core__V3__HeaderValueOption HOpt;
typedef Envoy__Config__Core__V3__HeaderValue HVal;

#define REQ(x) ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_REQUEST__REQUEST_##x
#define RESP(x) ENVOY__SERVICE__EXT_PROC__V3__PROCESSING_RESPONSE__RESPONSE_##x

/* Why a chat request could not be scored: its own fault (400) or the
 * server's (429 queue full, 503 not ready or draining, 504 deadline, 500). */
typedef struct xfail {
    int http;           /* 0: no failure */
    grpc_status_code code; /* for the metrics */
    char msg[256];
} xfail;

/* One stream's HTTP request (rs_call.xp). */
struct srv_xp {
    rs_server *srv;
    rs_call *call;             /* the call being served (set at each message) */
    int chat;                  /* POST /v1/chat/completions */
    int router;
    Routescore__V1__ScoreRequest__DecisionCase decision; /* from x-routescore-threshold / -strong-share */
    float dvalue;
    xfail hfail;               /* a bad x-routescore-* header or router: found at the headers */
    int begun;                 /* a body is being scored: drain accounting held */
    cJSON *body;
    double t_msg;              /* the current message's arrival */
};

/* ------------------------------------------------------------------------ */
/* Small helpers.                                                            */

static void xfail_set(xfail *f, int http, grpc_status_code code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void xfail_set(xfail *f, int http, grpc_status_code code, const char *fmt, ...) {
    f->http = http;
    f->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
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
    return srv_pack(&r.base);
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
    grpc_byte_buffer *bb = srv_pack(&r.base);
    free(text);
    return bb;
}

/* A chat request that cannot be scored, answered at phase resp_case. */
static grpc_byte_buffer *answer_failure(srv_xp *c, int resp_case, const xfail *f) {
    rs_server *s = c->srv;
    const rs_srv_config *cfg = (&s->cfg);
    if (s->metrics)
        rs_metrics_request(s->metrics, c->router >= 0 ? c->router : -1, RS_METHOD_EXT_PROC, (int)f->code);
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

static grpc_byte_buffer *on_request_headers(srv_xp *c, const Envoy__Service__ExtProc__V3__HttpHeaders *h) {
    rs_server *s = c->srv;
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
            c->decision = thr ? ROUTESCORE__V1__SCORE_REQUEST__DECISION_THRESHOLD : ROUTESCORE__V1__SCORE_REQUEST__DECISION_STRONG_SHARE;
            c->dvalue = f;
        } else if (!strcasecmp(hv->key, "x-routescore-router")) {
            char name[160];
            if (n >= sizeof name || memchr(v, 0, n)) {
                xfail_set(&c->hfail, 400, GRPC_STATUS_INVALID_ARGUMENT, "x-routescore-router: no such router");
                continue;
            }
            memcpy(name, v, n);
            name[n] = 0;
            c->router = srv_find_router(s, name);
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

/* Why request r failed, in the one mapping of server_request.c. */
static void req_fail(const rs_req *r, xfail *f) {
    rs_status st;
    const char *msg;
    const rs_srv_err e = srv_req_outcome(r, &st, &msg);
    xfail_set(f, srv_http_status(e, st), srv_grpc_code(e, st), "%.200s", msg);
}

/* Starts scoring the body, or fills *f with why not (f->http != 0). */
static void start_scoring(srv_xp *c, const Envoy__Service__ExtProc__V3__HttpBody *b, xfail *f) {
    rs_server *s = c->srv;
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
    if (!srv_ready(s)) {
        free(text);
        xfail_set(f, 503, GRPC_STATUS_UNAVAILABLE,
                  atomic_load(&s->draining) ? "routescore is shutting down" : "routescore is not ready: routers are loading");
        return;
    }
    /* The rest is a Score request with one prompt: the same validation,
     * tokenizing, admission and status mapping as gRPC's and HTTP's. */
    Routescore__V1__ScoreRequest m;
    routescore__v1__score_request__init(&m);
    m.router = (char *)s->routers[c->router].name;
    char *prompts[1] = {text};
    m.n_prompts = 1;
    m.prompts = prompts;
    m.decision_case = c->decision;
    if (c->decision == ROUTESCORE__V1__SCORE_REQUEST__DECISION_THRESHOLD) m.threshold = c->dvalue;
    if (c->decision == ROUTESCORE__V1__SCORE_REQUEST__DECISION_STRONG_SHARE) m.strong_share = c->dvalue;
    rs_req *r = srv_req_new(s, c->call, NULL, c->call->deadline); /* owner and done: srv_call_submit */
    if (!r) {
        free(text);
        xfail_set(f, 503, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (!srv_work_begin(s)) {
        srv_req_free(r);
        free(text);
        xfail_set(f, 503, GRPC_STATUS_UNAVAILABLE, "routescore is shutting down");
        return;
    }
    c->begun = 1;
    const int queued = srv_call_submit(c->call, r, &m);
    free(text);
    if (queued) return;
    req_fail(r, f);
    srv_req_free(r);
    c->begun = 0;
    srv_work_end(s);
}

/* The scored body's answer (c->mu held, on a completion-queue thread). */
static grpc_byte_buffer *answer_scored(srv_xp *c, const rs_req *r) {
    rs_server *s = c->srv;
    const rs_srv_config *cfg = (&s->cfg);
    xfail f = {0};
    rs_status st;
    const char *emsg;
    if (srv_req_outcome(r, &st, &emsg) != SRV_OK) {
        req_fail(r, &f);
        return answer_failure(c, RESP(REQUEST_BODY), &f);
    }
    const rs_score *sc = &r->work.scores[0];
    const int ri = c->router;
    const rs_router_info *info = (&s->routers[ri].info);
    Routescore__V1__DecisionRule rule;
    size_t seen;
    const float thr = srv_decision_threshold(s, ri, r->decision, r->dvalue, &rule, &seen);
    const int strong = sc->win_prob >= thr;
    const char *model = strong ? (cfg->ext_proc_strong_model[0] ? cfg->ext_proc_strong_model : info->strong_model)
                               : (cfg->ext_proc_weak_model[0] ? cfg->ext_proc_weak_model : info->weak_model);
    hmut hm;
    hmut_init(&hm);
    hmut_set(&hm, "x-routescore-route", "%s", strong ? "strong" : "weak");
    hmut_set(&hm, "x-routescore-model", "%s", model);
    hmut_set(&hm, "x-routescore-win-prob", "%.9g", (double)sc->win_prob);
    hmut_set(&hm, "x-routescore-threshold", "%.9g", (double)thr);
    hmut_set(&hm, "x-routescore-router", "%s", s->routers[ri].name);
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
    rs_metrics *mx = s->metrics;
    if (mx) {
        rs_metrics_decision(mx, ri, strong);
        rs_metrics_request(mx, ri, RS_METHOD_EXT_PROC, GRPC_STATUS_OK);
        rs_metrics_observe(mx, ri, RS_H_REQUEST, rs_clock_now() - c->t_msg);
    }
    grpc_byte_buffer *bb = answer_continue(RESP(REQUEST_BODY), &hm, body, body ? strlen(body) : 0, 1);
    free(body);
    return bb;
}

static void body_release(srv_xp *c) {
    cJSON_Delete(c->body);
    c->body = NULL;

}

/* ------------------------------------------------------------------------ */
/* Messages and the call's state machine (c->mu held).                       */

static void push(srv_xp *c, grpc_byte_buffer *bb) {
    srv_call_push(c->call, bb); /* (NULL: out of memory, which ends the stream) */
}

void srv_xp_on_message(rs_call *call, const uint8_t *data, size_t len) {
    srv_xp *c = call->xp;
    c->call = call;
    PReq *m = envoy__service__ext_proc__v3__processing_request__unpack(NULL, len, data);
    if (!m) {
        srv_call_status(call, SRV_MALFORMED, RS_ERR_FORMAT, "malformed ProcessingRequest");
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
    default: srv_call_status(call, SRV_MALFORMED, RS_ERR_FORMAT, "ProcessingRequest without a phase"); break;
    }
    envoy__service__ext_proc__v3__processing_request__free_unpacked(m, NULL);
}

void srv_xp_on_scored(rs_call *call, rs_req *r) {
    srv_xp *c = call->xp;
    c->call = call;
    push(c, answer_scored(c, r));
    srv_req_free(r);
    body_release(c);
    if (c->begun) {
        c->begun = 0;
        srv_work_end(c->srv);
    }
}

/* ------------------------------------------------------------------------ */
/* Lifecycle.                                                                */

rs_status srv_xp_check(const rs_server *s, rs_err *err) {
    const rs_srv_config *cfg = (&s->cfg);
    if (srv_find_router(s, cfg->ext_proc_router) < 0)
        return rs_errf(err, RS_ERR_INVALID_ARG, "ext_proc.router '%s' is not a configured router", cfg->ext_proc_router);
    return RS_OK;
}

srv_xp *srv_xp_new(const rs_server *s) {
    srv_xp *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->srv = (rs_server *)s;
    c->router = srv_find_router(s, (&s->cfg)->ext_proc_router);
    return c;
}

void srv_xp_free(rs_server *s, srv_xp *c) {
    if (!c) return;
    if (c->begun) srv_work_end(s);
    body_release(c);
    free(c);
}
