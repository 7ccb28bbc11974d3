/* http.c — the HTTP/JSON API on its own port, over libmicrohttpd.
 *
 *   POST /v1/score    a ScoreRequest as JSON; the answer is the ScoreResponse
 *   GET  /v1/routers  the ListRoutersResponse
 *   GET  /healthz     liveness: 200 while the process runs
 *   GET  /readyz      readiness: 200 when gRPC health would say SERVING, else 503
 *
 * A score request goes through the same code as a gRPC Score call
 * (server_request.c: validation, limits, tokenizing, the batcher, the
 * answer); only the envelope differs. JSON field names are the proto's;
 * uint64 values are strings (the proto3 JSON mapping) and enums their names.
 * Errors are {"error": {"code": "<gRPC code name>", "message": ...}} with
 * the HTTP status of srv_http_status (server_request.c, beside the gRPC
 * mapping).
 *
 * Threads: MHD's own polling thread (epoll) runs the handlers; one thread
 * of ours enforces the request timeout (a request's headers and body must
 * arrive within http_request_timeout_s, measured from the connection's
 * start or the end of its previous response: a slow client cannot hold a
 * connection). A score request, once queued, suspends its connection; the
 * engine worker's done() resumes it (which wakes MHD's thread) and MHD's
 * thread builds the answer. Bearer tokens and TLS/mTLS are
 * the gRPC side's (same files). Connections are kept alive. */
#include "server_int.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "json_text.h"
#include "srv_log.h"

/* One connection (under srv_http.mu: MHD's thread and our timeout thread). */
typedef struct hconn {
    struct MHD_Connection *c;
    int fd;
    double t0;  /* connection start, or the end of its last response */
    int busy;   /* its request has arrived whole: the timeout no longer applies */
    int shut;
} hconn;

struct srv_http {
    rs_server *s;
    struct MHD_Daemon *d;
    pthread_t thread;
    _Atomic int stop;
    pthread_mutex_t mu; /* conns and every hconn */
    double timeout;
    hconn **conns;
    int n_conns, cap_conns;
    int mtls;
    char *pem[3];
};

typedef enum route { R_NONE, R_SCORE, R_ROUTERS, R_LIVE, R_READY } route;

/* One request on a connection. */
typedef struct hx {
    srv_http *h;
    struct MHD_Connection *conn;
    route rt;
    char *body;
    size_t len, cap;
    int replied;   /* a response is queued */
    int accepted;  /* counted in the server's accepted calls (drain) */
    rs_req *req;   /* queued in a batcher */
    pthread_mutex_t mu;
    int finished, suspended;
    double t0;
} hx;

static const char *code_name(grpc_status_code c) {
    static const char *const N[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                                    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                    "UNAUTHENTICATED"};
    return (unsigned)c < sizeof N / sizeof *N ? N[c] : "UNKNOWN";
}

static enum MHD_Result send_json(hx *x, unsigned status, cJSON *j, int retry_after, int close) {
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    struct MHD_Response *resp;
    if (text) {
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    } else {
        static const char OOM[] = "{\"error\":{\"code\":\"RESOURCE_EXHAUSTED\",\"message\":\"out of memory\"}}";
        status = MHD_HTTP_SERVICE_UNAVAILABLE;
        resp = MHD_create_response_from_buffer(sizeof OOM - 1, (void *)OOM, MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (retry_after) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, x->rt == R_SCORE ? "POST" : "GET, HEAD");
    if (close) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result r = MHD_queue_response(x->conn, status, resp);
    MHD_destroy_response(resp);
    x->replied = 1;
    return r;
}

/* The one way an HTTP request fails: the status from srv_http_status. */
static enum MHD_Result send_error(hx *x, rs_srv_err e, rs_status st, const char *msg) {
    const unsigned status = (unsigned)srv_http_status(e, st);
    cJSON *j = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(j, "error");
    if (err) {
        cJSON_AddStringToObject(err, "code", code_name(srv_grpc_code(e, st)));
        cJSON_AddStringToObject(err, "message", msg);
    }
    const int draining = e == SRV_DRAINING;
    return send_json(x, status, j, draining || e == SRV_NOT_READY || e == SRV_QUEUE_FULL, draining);
}

/* ---- protobuf-c messages as JSON (field names of the proto) ---- */

static cJSON *pb_json(const ProtobufCMessage *m);

static cJSON *pb_value(const ProtobufCFieldDescriptor *f, const void *p) {
    char buf[32];
    switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT: return cJSON_CreateNumber((double)*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return cJSON_CreateNumber(*(const double *)p);
    case PROTOBUF_C_TYPE_INT32: return cJSON_CreateNumber((double)*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32: return cJSON_CreateNumber((double)*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)*(const uint64_t *)p);
        return cJSON_CreateString(buf);
    case PROTOBUF_C_TYPE_BOOL: return cJSON_CreateBool(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
        return v ? cJSON_CreateString(v->name) : cJSON_CreateNumber((double)*(const int *)p);
    }
    case PROTOBUF_C_TYPE_STRING: return cJSON_CreateString(*(char *const *)p ? *(char *const *)p : "");
    case PROTOBUF_C_TYPE_MESSAGE: return pb_json(*(ProtobufCMessage *const *)p);
    default: return cJSON_CreateNull(); /* no other type in the answers */
    }
}

static size_t pb_elem_size(const ProtobufCFieldDescriptor *f) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    default: return 4;
    }
}

static cJSON *pb_json(const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    cJSON *o = cJSON_CreateObject();
    for (unsigned i = 0; o && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *p = (const char *)m + f->offset;
        cJSON *v;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            const size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            const char *arr = *(const char *const *)p;
            v = cJSON_CreateArray();
            for (size_t k = 0; v && k < n; k++) cJSON_AddItemToArray(v, pb_value(f, arr + k * pb_elem_size(f)));
        } else {
            if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
                continue;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE && !*(void *const *)p) continue;
            v = pb_value(f, p);
        }
        if (!v || !cJSON_AddItemToObject(o, f->name, v)) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

/* ---- a ScoreRequest from JSON ---- */

/* The request being built: its arrays, freed together. */
typedef struct jreq {
    Routescore__V1__ScoreRequest m;
    void *allocs[8];
    int n_allocs;
    char id_buf[32];
} jreq;

static void *jalloc(jreq *j, size_t n, size_t size) {
    if (j->n_allocs == (int)(sizeof j->allocs / sizeof *j->allocs)) return NULL;
    void *p = calloc(n ? n : 1, size);
    if (p) j->allocs[j->n_allocs++] = p;
    return p;
}

static void jreq_free(jreq *j) {
    for (int i = 0; i < j->n_allocs; i++) free(j->allocs[i]);
}

#define JFAIL(...) return snprintf(msg, msg_n, __VA_ARGS__), RS_ERR_INVALID_ARG

static rs_status parse_messages(jreq *j, const cJSON *a, char *msg, size_t msg_n) {
    if (!cJSON_IsArray(a)) JFAIL("'messages' is not a list");
    const size_t n = (size_t)cJSON_GetArraySize(a);
    size_t n_parts = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsArray(c)) n_parts += (size_t)cJSON_GetArraySize(c);
    }
    Routescore__V1__ChatMessage *cm = jalloc(j, n, sizeof *cm), **pcm = jalloc(j, n, sizeof *pcm);
    Routescore__V1__ChatContentPart *cp = jalloc(j, n_parts, sizeof *cp), **pcp = jalloc(j, n_parts, sizeof *pcp);
    if (!cm || !pcm || !cp || !pcp) return snprintf(msg, msg_n, "out of memory"), RS_ERR_NOMEM;
    size_t i = 0, k = 0;
    cJSON_ArrayForEach(e, a) {
        routescore__v1__chat_message__init(&cm[i]);
        pcm[i] = &cm[i];
        if (!cJSON_IsObject(e)) JFAIL("messages[%zu] is not an object", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role"), *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (role && !cJSON_IsString(role)) JFAIL("messages[%zu].role is not a string", i);
        if (role) cm[i].role = role->valuestring;
        if (cJSON_IsString(c)) {
            cm[i].content = c->valuestring;
        } else if (cJSON_IsArray(c)) {
            cm[i].content_parts = &pcp[k];
            size_t q = 0;
            const cJSON *part;
            cJSON_ArrayForEach(part, c) {
                Routescore__V1__ChatContentPart *pp = &cp[k];
                routescore__v1__chat_content_part__init(pp);
                if (cJSON_IsString(part)) {
                    pp->text = part->valuestring;
                } else if (cJSON_IsObject(part)) {
                    const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                    const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
                    if (type && !cJSON_IsString(type)) JFAIL("messages[%zu].content[%zu].type is not a string", i, q);
                    if (text && !cJSON_IsString(text)) JFAIL("messages[%zu].content[%zu].text is not a string", i, q);
                    if (type) pp->type = type->valuestring;
                    if (text) pp->text = text->valuestring;
                } else {
                    JFAIL("messages[%zu].content[%zu] is neither a string nor an object", i, q);
                }
                pcp[k++] = pp;
                q++;
            }
            cm[i].n_content_parts = q;
        } else if (c && !cJSON_IsNull(c)) {
            JFAIL("messages[%zu].content is neither a string nor a list", i);
        }
        i++;
    }
    j->m.n_messages = n;
    j->m.messages = pcm;
    return RS_OK;
}

/* Fills j->m from a parsed body; RS_ERR_INVALID_ARG with msg when the body
 * does not have the ScoreRequest's shape. Strings point into root. */
static rs_status parse_score(jreq *j, const cJSON *root, char *msg, size_t msg_n) {
    Routescore__V1__ScoreRequest *m = &j->m;
    routescore__v1__score_request__init(m);
    if (!cJSON_IsObject(root)) JFAIL("the body is not a JSON object");
    const cJSON *f;
    cJSON_ArrayForEach(f, root) {
        const char *k = f->string;
        if (!strcmp(k, "router")) {
            if (!cJSON_IsString(f)) JFAIL("'router' is not a string");
            m->router = f->valuestring;
        } else if (!strcmp(k, "prompt") || !strcmp(k, "prompts")) {
            const int one = !strcmp(k, "prompt");
            if (m->n_prompts) JFAIL("set 'prompt' or 'prompts', not both");
            const size_t n = one ? 1 : (size_t)cJSON_GetArraySize(f);
            if (!one && !cJSON_IsArray(f)) JFAIL("'prompts' is not a list");
            char **p = jalloc(j, n, sizeof *p);
            if (!p) return snprintf(msg, msg_n, "out of memory"), RS_ERR_NOMEM;
            size_t i = 0;
            const cJSON *e;
            if (one) {
                if (!cJSON_IsString(f)) JFAIL("'prompt' is not a string");
                p[i++] = f->valuestring;
            } else {
                cJSON_ArrayForEach(e, f) {
                    if (!cJSON_IsString(e)) JFAIL("prompts[%zu] is not a string", i);
                    p[i++] = e->valuestring;
                }
            }
            m->prompts = p;
            m->n_prompts = n;
        } else if (!strcmp(k, "embeddings")) {
            if (!cJSON_IsArray(f)) JFAIL("'embeddings' is not a list");
            const size_t n = (size_t)cJSON_GetArraySize(f);
            size_t total = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, f) {
                const cJSON *vals = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "values") : e;
                if (!cJSON_IsArray(vals)) JFAIL("each embedding is a list of numbers (or {\"values\": [...]})");
                total += (size_t)cJSON_GetArraySize(vals);
            }
            Routescore__V1__Embedding *em = jalloc(j, n, sizeof *em), **pem = jalloc(j, n, sizeof *pem);
            float *v = jalloc(j, total, sizeof *v);
            if (!em || !pem || !v) return snprintf(msg, msg_n, "out of memory"), RS_ERR_NOMEM;
            size_t i = 0;
            cJSON_ArrayForEach(e, f) {
                const cJSON *vals = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "values") : e;
                routescore__v1__embedding__init(&em[i]);
                em[i].values = v;
                const cJSON *x;
                cJSON_ArrayForEach(x, vals) {
                    if (!cJSON_IsNumber(x)) JFAIL("embeddings[%zu]: a value is not a number", i);
                    *v++ = (float)x->valuedouble;
                    em[i].n_values++;
                }
                pem[i] = &em[i];
                i++;
            }
            m->embeddings = pem;
            m->n_embeddings = n;
        } else if (!strcmp(k, "messages")) {
            rs_status st = parse_messages(j, f, msg, msg_n);
            if (st != RS_OK) return st;
        } else if (!strcmp(k, "threshold") || !strcmp(k, "strong_share")) {
            if (!cJSON_IsNumber(f)) JFAIL("'%s' is not a number", k);
            if (m->decision_case != ROUTESCORE__V1__SCORE_REQUEST__DECISION__NOT_SET)
                JFAIL("set 'threshold' or 'strong_share', not both");
            if (!strcmp(k, "threshold")) {
                m->decision_case = ROUTESCORE__V1__SCORE_REQUEST__DECISION_THRESHOLD;
                m->threshold = (float)f->valuedouble;
            } else {
                m->decision_case = ROUTESCORE__V1__SCORE_REQUEST__DECISION_STRONG_SHARE;
                m->strong_share = (float)f->valuedouble;
            }
        } else if (!strcmp(k, "request_id")) {
            /* A uint64: a string of digits (proto3 JSON) or an exact number. */
            char *end = NULL;
            errno = 0;
            if (cJSON_IsString(f) && f->valuestring[0] >= '0' && f->valuestring[0] <= '9') {
                m->request_id = strtoull(f->valuestring, &end, 10);
                if (*end || errno) JFAIL("'request_id' is not a uint64");
            } else if (cJSON_IsNumber(f) && f->valuedouble >= 0 && f->valuedouble <= 9007199254740992.0 &&
                       f->valuedouble == (double)(uint64_t)f->valuedouble) {
                m->request_id = (uint64_t)f->valuedouble;
            } else {
                JFAIL("'request_id' is not a uint64 (send large ids as strings)");
            }
        } else if (!strcmp(k, "request_key")) {
            if (!cJSON_IsString(f)) JFAIL("'request_key' is not a string");
            m->request_key = f->valuestring;
        } else {
            char esc[80];
            JFAIL("unknown field '%s'", rs_log_esc(esc, sizeof esc, k));
        }
    }
    return RS_OK;
}
#undef JFAIL

/* ---- handlers ---- */

static void score_done(rs_req *r) { /* engine worker thread */
    hx *x = r->owner;
    pthread_mutex_lock(&x->mu);
    x->finished = 1;
    if (x->suspended) {
        x->suspended = 0;
        MHD_resume_connection(x->conn);
    }
    pthread_mutex_unlock(&x->mu);
}

static enum MHD_Result send_score(hx *x) {
    rs_req *r = x->req;
    rs_status st;
    const char *msg;
    rs_srv_err e = srv_req_outcome(r, &st, &msg);
    rs_server *s = x->h->s;
    enum MHD_Result res;
    grpc_status_code code = srv_grpc_code(e, st);
    if (e != SRV_OK) {
        res = send_error(x, e, st, msg);
    } else {
        srv_resp resp;
        rs_srv_err e2;
        if (!srv_req_response(r, 0, &resp, &e2, &code, &msg)) {
            res = send_error(x, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
            code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        } else {
            res = send_json(x, MHD_HTTP_OK, pb_json(&resp.msg.base), 0, 0);
            srv_resp_free(&resp);
            if (s->metrics) rs_metrics_observe(s->metrics, r->router, RS_H_REQUEST, rs_clock_now() - r->t_recv);
        }
    }
    if (s->metrics) rs_metrics_request(s->metrics, r->router, RS_METHOD_HTTP_SCORE, (int)code);
    srv_log_request(r, "http", (int)code,
                    MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-request-id"),
                    MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "traceparent"));
    return res;
}

static enum MHD_Result start_score(hx *x) {
    rs_server *s = x->h->s;
    char emsg[256];
    rs_err verr;
    if (rs_json_check_text(x->body ? x->body : "", x->len, &verr) != RS_OK)
        return send_error(x, SRV_MALFORMED, RS_ERR_FORMAT, verr.msg);
    cJSON *root = x->len ? cJSON_ParseWithLength(x->body, x->len) : NULL;
    if (!root) return send_error(x, SRV_MALFORMED, RS_ERR_FORMAT, x->len ? "the body is not valid JSON" : "empty body");
    jreq j;
    memset(&j, 0, sizeof j);
    rs_status st = parse_score(&j, root, emsg, sizeof emsg);
    if (st != RS_OK) {
        jreq_free(&j);
        cJSON_Delete(root);
        return send_error(x, st == RS_ERR_NOMEM ? SRV_ENGINE : SRV_MALFORMED, st, emsg);
    }
    double deadline = INFINITY;
    const char *to = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-request-timeout-ms");
    if (to) {
        char *end;
        const double ms = strtod(to, &end);
        if (*end || !(ms > 0)) {
            jreq_free(&j);
            cJSON_Delete(root);
            return send_error(x, SRV_MALFORMED, RS_ERR_INVALID_ARG, "x-request-timeout-ms is not a positive number");
        }
        deadline = x->t0 + ms * 1e-3;
    }
    rs_req *r = srv_req_new(s, x, score_done, deadline);
    if (!r) {
        jreq_free(&j);
        cJSON_Delete(root);
        return send_error(x, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
    }
    x->req = r;
    const int queued = srv_req_submit(r, &j.m);
    jreq_free(&j);
    cJSON_Delete(root);
    if (!queued) return send_score(x);
    pthread_mutex_lock(&x->mu);
    const int now = x->finished;
    if (!now) {
        x->suspended = 1;
        MHD_suspend_connection(x->conn);
    }
    pthread_mutex_unlock(&x->mu);
    return now ? send_score(x) : MHD_YES;
}

static enum MHD_Result send_routers(hx *x) {
    rs_server *s = x->h->s;
    if (!atomic_load(&s->ready)) return send_error(x, SRV_NOT_READY, RS_OK, "not ready: routers are loading");
    Routescore__V1__RouterInfo info[RS_SRV_MAX_ROUTERS], *pinfo[RS_SRV_MAX_ROUTERS];
    Routescore__V1__ListRoutersResponse resp;
    srv_list_routers(s, &resp, info, pinfo);
    if (s->metrics) rs_metrics_request(s->metrics, -1, RS_METHOD_HTTP_ROUTERS, GRPC_STATUS_OK);
    return send_json(x, MHD_HTTP_OK, pb_json(&resp.base), 0, 0);
}

static int client_cert_ok(const srv_http *h, struct MHD_Connection *conn) {
    if (!h->mtls) return 1;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session) return 0;
    gnutls_session_t ses = (gnutls_session_t)ci->tls_session;
    unsigned n = 0, status = 1;
    if (!gnutls_certificate_get_peers(ses, &n) || n == 0) return 0;
    return gnutls_certificate_verify_peers2(ses, &status) == GNUTLS_E_SUCCESS && status == 0;
}

static int bearer_ok(rs_server *s, struct MHD_Connection *conn) {
    if (!s->n_tokens) return 1;
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return v && rs_srv_bearer_ok((const char (*)[256])s->tokens, s->n_tokens, v, strlen(v));
}

static hconn *conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **req_cls) {
    (void)version;
    srv_http *h = cls;
    rs_server *s = h->s;
    hx *x = *req_cls;
    if (!x) { /* the headers are in */
        if (!(x = calloc(1, sizeof *x))) return MHD_NO;
        x->h = h;
        x->conn = conn;
        x->t0 = rs_clock_now();
        pthread_mutex_init(&x->mu, NULL);
        *req_cls = x;
        x->rt = !strcmp(url, "/v1/score") ? R_SCORE : !strcmp(url, "/v1/routers") ? R_ROUTERS
              : !strcmp(url, "/healthz") ? R_LIVE : !strcmp(url, "/readyz") ? R_READY : R_NONE;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->cfg.max_request_bytes) {
            char m[128];
            snprintf(m, sizeof m, "the body has %s bytes (at most %ld)", cl, s->cfg.max_request_bytes);
            return send_error(x, SRV_ENGINE, RS_ERR_TOO_LARGE, m);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        const size_t n = *upload_size;
        *upload_size = 0;
        if (x->replied) return MHD_YES;
        if (x->len + n > (size_t)s->cfg.max_request_bytes) {
            char m[128];
            snprintf(m, sizeof m, "the body exceeds %ld bytes", s->cfg.max_request_bytes);
            return send_error(x, SRV_ENGINE, RS_ERR_TOO_LARGE, m);
        }
        if (x->len + n + 1 > x->cap) {
            size_t cap = (x->len + n + 1) * 2;
            if (cap > (size_t)s->cfg.max_request_bytes + 1) cap = (size_t)s->cfg.max_request_bytes + 1;
            char *b = realloc(x->body, cap);
            if (!b) return send_error(x, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
            x->body = b;
            x->cap = cap;
        }
        memcpy(x->body + x->len, upload_data, n);
        x->len += n;
        x->body[x->len] = 0;
        return MHD_YES;
    }
    if (x->replied) return MHD_YES;
    if (x->req) return send_score(x); /* resumed: the batcher is done with it */
    hconn *hc = conn_of(conn);
    pthread_mutex_lock(&h->mu);
    if (hc) hc->busy = 1;
    pthread_mutex_unlock(&h->mu);
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (x->rt == R_NONE) return send_error(x, SRV_UNKNOWN_PATH, RS_OK, "not found: POST /v1/score, GET /v1/routers, /healthz, /readyz");
    if (x->rt == R_SCORE ? strcmp(method, "POST") : !get)
        return send_error(x, SRV_BAD_METHOD, RS_OK, x->rt == R_SCORE ? "use POST" : "use GET");
    if (x->rt == R_LIVE) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "status", "alive");
        return send_json(x, MHD_HTTP_OK, j, 0, 0);
    }
    if (x->rt == R_READY) {
        if (atomic_load(&s->draining) || atomic_load(&s->fatal))
            return send_error(x, SRV_DRAINING, RS_OK, "server is shutting down");
        if (!atomic_load(&s->ready)) return send_error(x, SRV_NOT_READY, RS_OK, "not ready: routers are loading");
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "status", "SERVING");
        return send_json(x, MHD_HTTP_OK, j, 0, 0);
    }
    if (!client_cert_ok(h, conn)) return send_error(x, SRV_UNAUTHENTICATED, RS_OK, "a client certificate from the configured CA is required");
    if (!bearer_ok(s, conn)) return send_error(x, SRV_UNAUTHENTICATED, RS_OK, "missing or invalid bearer token");
    /* The drain, as for gRPC calls: work taken on before it is finished,
     * later requests are refused (503, Retry-After). */
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->draining)) {
        s->n_refused++;
        s->t_last_refused = rs_clock_now();
    } else {
        x->accepted = 1;
        s->n_accepted++;
    }
    pthread_mutex_unlock(&s->mu);
    if (!x->accepted) return send_error(x, SRV_DRAINING, RS_OK, "server is shutting down: retry on another replica");
    return x->rt == R_SCORE ? start_score(x) : send_routers(x);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe) {
    (void)toe;
    srv_http *h = cls;
    hx *x = *req_cls;
    hconn *hc = conn_of(c);
    pthread_mutex_lock(&h->mu);
    if (hc) {
        hc->t0 = rs_clock_now();
        hc->busy = 0;
    }
    pthread_mutex_unlock(&h->mu);
    if (!x) return;
    *req_cls = NULL;
    if (x->accepted) {
        rs_server *s = h->s;
        pthread_mutex_lock(&s->mu);
        s->n_accepted--;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    srv_req_free(x->req);
    free(x->body);
    pthread_mutex_destroy(&x->mu);
    free(x);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode code) {
    srv_http *h = cls;
    pthread_mutex_lock(&h->mu);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        hconn *hc = calloc(1, sizeof *hc);
        if (!hc || !ci || h->n_conns == h->cap_conns) {
            free(hc);
            pthread_mutex_unlock(&h->mu);
            return;
        }
        *hc = (hconn){c, ci->connect_fd, rs_clock_now(), 0, 0};
        h->conns[h->n_conns++] = hc;
        *socket_context = hc;
    } else if (*socket_context) {
        for (int i = 0; i < h->n_conns; i++)
            if (h->conns[i] == *socket_context) {
                h->conns[i] = h->conns[--h->n_conns];
                break;
            }
        free(*socket_context);
        *socket_context = NULL;
    }
    pthread_mutex_unlock(&h->mu);
}

/* The request timeout (MHD's own is an idle timeout, which bytes trickling
 * in reset). */
static void *http_main(void *arg) {
    srv_http *h = arg;
    while (!atomic_load(&h->stop)) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&h->mu);
        const double now = rs_clock_now();
        for (int i = 0; i < h->n_conns; i++) {
            hconn *c = h->conns[i];
            if (!c->busy && !c->shut && now - c->t0 > h->timeout) {
                shutdown(c->fd, SHUT_RDWR); /* MHD sees the end and closes it on its next pass */
                c->shut = 1;
            }
        }
        pthread_mutex_unlock(&h->mu);
    }
    return NULL;
}

static void http_free(srv_http *h) {
    if (!h) return;
    free(h->conns);
    for (int i = 0; i < 3; i++) free(h->pem[i]);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

rs_status srv_http_start(rs_server *s, rs_err *err) {
    const rs_srv_config *cfg = &s->cfg;
    char host[256];
    int port;
    rs_status st = rs_srv_split_hostport(cfg->http_listen, host, sizeof host, &port, err);
    if (st != RS_OK) return st;
    srv_http *h = calloc(1, sizeof *h);
    if (!h) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    h->s = s;
    pthread_mutex_init(&h->mu, NULL);
    h->timeout = cfg->http_request_timeout_s;
    h->cap_conns = cfg->http_max_connections + 16;
    h->conns = calloc((size_t)h->cap_conns, sizeof *h->conns);
    const int tls = cfg->tls_cert[0] != 0;
    if (tls) {
        h->pem[0] = srv_read_text_file(cfg->tls_cert, 1 << 20, err);
        h->pem[1] = srv_read_text_file(cfg->tls_key, 1 << 20, err);
        h->pem[2] = cfg->tls_client_ca[0] ? srv_read_text_file(cfg->tls_client_ca, 1 << 20, err) : NULL;
        if (!h->pem[0] || !h->pem[1] || (cfg->tls_client_ca[0] && !h->pem[2])) {
            http_free(h);
            return rs_errf(err, RS_ERR_IO, "http: TLS certificate, key or client CA: %s", err->msg);
        }
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            http_free(h);
            return rs_errf(err, RS_ERR_UNSUPPORTED, "http: this libmicrohttpd has no TLS");
        }
    }
    h->mtls = tls && h->pem[2];
    if (!h->conns) {
        http_free(h);
        return rs_errf(err, RS_ERR_NOMEM, "no memory");
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int gai = getaddrinfo(host, ps, &hints, &ai);
    if (gai != 0) {
        http_free(h);
        return rs_errf(err, RS_ERR_INVALID_ARG, "http_listen %s: %s", cfg->http_listen, gai_strerror(gai));
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    if (tls) flags |= MHD_USE_TLS;
    const unsigned idle = (unsigned)ceil(cfg->http_request_timeout_s * 12); /* keep-alive idle limit */
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)cfg->http_max_connections, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)(idle ? idle : 1), NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)(64 * 1024), NULL}, /* bounds request headers */
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, h},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h},
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, h->pem[0]},
        {tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, h->pem[1]},
        {h->mtls ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, h->pem[2]},
        {MHD_OPTION_END, 0, NULL},
    };
    h->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, h, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        http_free(h);
        return rs_errf(err, RS_ERR_IO, "http: cannot listen on %s", cfg->http_listen);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    s->http_port = info ? info->port : port;
    if (pthread_create(&h->thread, NULL, http_main, h) != 0) {
        MHD_stop_daemon(h->d);
        http_free(h);
        return rs_errf(err, RS_ERR_INTERNAL, "http: cannot start its thread");
    }
    s->http = h;
    return RS_OK;
}

void srv_http_stop(rs_server *s) {
    srv_http *h = s->http;
    if (!h) return;
    atomic_store(&h->stop, 1);
    pthread_join(h->thread, NULL);
    MHD_stop_daemon(h->d); /* joins MHD's thread */
    http_free(h);
    s->http = NULL;
}
