/* http.c — the HTTP/JSON API on its own port, over libmicrohttpd.
 *
 *   POST /v1/score    a ScoreRequest as JSON; the answer is the ScoreResponse
 *   GET  /v1/routers  the ListRoutersResponse
 *   GET  /healthz     liveness: 200 while the process is healthy (gRPC health "liveness")
 *   GET  /readyz      readiness: 200 when gRPC health "" says SERVING, else 503
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
 * thread builds the answer. MHD does not watch a suspended connection's
 * socket, so our thread also polls those of queued requests: a client that
 * closed cancels its request (rs_batcher_cancel, as for a cancelled gRPC
 * call). Bearer tokens and TLS/mTLS are
 * the gRPC side's (same files). Connections are kept alive. */
#include "server_int.h"

#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "http_json.h"
#include "srv_log.h"
#include "srv_mhd.h"

struct hx;

/* One connection (under srv_http.mu: MHD's thread and our timeout thread). */
typedef struct hconn {
    struct MHD_Connection *c;
    int fd;
    double t0;  /* connection start, or the end of its last response */
    int busy;   /* its request has arrived whole: the timeout no longer applies */
    int shut;
    struct hx *waiting; /* its score request, queued in a batcher: our thread watches for the client's close */
} hconn;

struct srv_http {
    rs_server *s;
    srv_mhd l; /* the listener */
    pthread_t thread;
    _Atomic int stop;
    pthread_mutex_t mu; /* conns and every hconn */
    double timeout;
    hconn **conns;
    int n_conns, cap_conns;
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
    int accounted; /* counted in the metrics and logged */
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


/* ---- handlers ---- */

static hconn *conn_of(struct MHD_Connection *c);

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

/* The request's one count in the metrics and its log line: from send_score,
 * or from on_completed when the connection ended before an answer could be
 * sent (a client that closed while its request was queued). */
static void account(hx *x, grpc_status_code code) {
    if (x->accounted) return;
    x->accounted = 1;
    rs_server *s = x->h->s;
    if (s->metrics) rs_metrics_request(s->metrics, x->req->router, RS_METHOD_HTTP_SCORE, (int)code);
    srv_log_request(x->req, "http", (int)code,
                    MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-request-id"),
                    MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "traceparent"));
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
            res = send_json(x, MHD_HTTP_OK, srv_pb_json(&resp.msg.base), 0, 0);
            srv_resp_free(&resp);
            if (s->metrics) rs_metrics_observe(s->metrics, r->router, RS_H_REQUEST, rs_clock_now() - r->t_recv);
        }
    }
    account(x, code);
    return res;
}

static enum MHD_Result start_score(hx *x) {
    rs_server *s = x->h->s;
    char emsg[256];
    srv_jreq j;
    cJSON *root;
    rs_status st = srv_json_score_request(x->body, x->len, &j, &root, emsg, sizeof emsg);
    if (st != RS_OK) {
        srv_jreq_free(&j);
        return send_error(x, st == RS_ERR_NOMEM ? SRV_ENGINE : SRV_MALFORMED, st, emsg);
    }
    double deadline = INFINITY;
    const char *to = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "x-request-timeout-ms");
    if (to) {
        char *end;
        const double ms = strtod(to, &end);
        if (*end || !(ms > 0)) {
            srv_jreq_free(&j);
            cJSON_Delete(root);
            return send_error(x, SRV_MALFORMED, RS_ERR_INVALID_ARG, "x-request-timeout-ms is not a positive number");
        }
        deadline = x->t0 + ms * 1e-3;
    }
    rs_req *r = srv_req_new(s, x, score_done, deadline);
    if (!r) {
        srv_jreq_free(&j);
        cJSON_Delete(root);
        return send_error(x, SRV_ENGINE, RS_ERR_NOMEM, "out of memory");
    }
    x->req = r;
    const int queued = srv_req_submit(r, &j.m);
    srv_jreq_free(&j);
    cJSON_Delete(root);
    if (!queued) return send_score(x);
    /* Watched from now on (before the suspension: our thread's lock is never
     * taken under x->mu, which done() takes under the batcher's). */
    hconn *hc = conn_of(x->conn);
    pthread_mutex_lock(&x->h->mu);
    if (hc) hc->waiting = x;
    pthread_mutex_unlock(&x->h->mu);
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
    return send_json(x, MHD_HTTP_OK, srv_pb_json(&resp.base), 0, 0);
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
    hconn *hc = conn_of(conn);
    if (x->req) { /* resumed: the batcher is done with it */
        pthread_mutex_lock(&h->mu);
        if (hc) hc->waiting = NULL;
        pthread_mutex_unlock(&h->mu);
        return send_score(x);
    }
    pthread_mutex_lock(&h->mu);
    if (hc) hc->busy = 1;
    pthread_mutex_unlock(&h->mu);
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (x->rt == R_NONE) return send_error(x, SRV_UNKNOWN_PATH, RS_OK, "not found: POST /v1/score, GET /v1/routers, /healthz, /readyz");
    if (x->rt == R_SCORE ? strcmp(method, "POST") : !get)
        return send_error(x, SRV_BAD_METHOD, RS_OK, x->rt == R_SCORE ? "use POST" : "use GET");
    if (x->rt == R_LIVE) { /* = gRPC health "liveness" */
        if (!srv_live(s)) return send_error(x, SRV_DRAINING, RS_OK, "engine failure: the server is exiting");
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "status", "alive");
        return send_json(x, MHD_HTTP_OK, j, 0, 0);
    }
    if (x->rt == R_READY) { /* = gRPC health "" */
        if (!srv_ready(s)) {
            if (atomic_load(&s->draining) || atomic_load(&s->fatal))
                return send_error(x, SRV_DRAINING, RS_OK, "server is shutting down");
            return send_error(x, SRV_NOT_READY, RS_OK, "not ready: routers are loading");
        }
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "status", "SERVING");
        return send_json(x, MHD_HTTP_OK, j, 0, 0);
    }
    if (!srv_mhd_client_cert_ok(&h->l, conn)) return send_error(x, SRV_UNAUTHENTICATED, RS_OK, "a client certificate from the configured CA is required");
    if (!bearer_ok(s, conn)) return send_error(x, SRV_UNAUTHENTICATED, RS_OK, "missing or invalid bearer token");
    /* The drain, as for gRPC calls: work taken on before it is finished,
     * later requests are refused (503, Retry-After). */
    x->accepted = srv_work_begin(s);
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
        hc->waiting = NULL;
    }
    pthread_mutex_unlock(&h->mu);
    if (!x) return;
    *req_cls = NULL;
    /* A queued request whose connection ended before its answer went out
     * (the client closed it; MHD may end a resumed connection without
     * calling the handler again). Only a suspended connection has a queued
     * request, and it is resumed only after done(). */
    if (x->req && x->req->work.n && !x->accounted) {
        rs_status st;
        const char *msg;
        account(x, srv_grpc_code(srv_req_outcome(x->req, &st, &msg), st));
    }
    if (x->accepted) {
        srv_work_end(h->s);
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
        *hc = (hconn){c, ci->connect_fd, rs_clock_now(), 0, 0, NULL};
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

/* A client that closed its connection while its score request waits in a
 * batcher: MHD does not watch a suspended connection's socket (it leaves
 * its event loop), so our thread does. The request is cancelled as a
 * cancelled gRPC call is: its queued prompts leave the queue and its
 * tokens the admission count at once, and it is counted CANCELLED when
 * the resumed connection ends. (h->mu held.) */
static void cancel_closed(srv_http *h, hconn *c) {
    rs_req *r = c->waiting->req;
    c->waiting = NULL;
    rs_server *s = h->s;
    rs_batcher_cancel(s->routers[r->router].batcher, &r->work);
    char k[300], rt[300];
    rs_log(RS_LOG_INFO, "client_closed", "\"transport\":\"http\",\"router\":\"%s\",\"request_key\":\"%s\",\"prompts\":%zu",
           rs_log_esc(rt, sizeof rt, s->routers[r->router].name), rs_log_esc(k, sizeof k, r->key), r->work.n);
}

/* The request timeout (MHD's own is an idle timeout, which bytes trickling
 * in reset) and the watch on the connections of queued requests, every
 * 50 ms. */
static void *http_main(void *arg) {
    srv_http *h = arg;
    struct pollfd *pf = calloc((size_t)h->cap_conns, sizeof *pf);
    hconn **pc = calloc((size_t)h->cap_conns, sizeof *pc);
    while (!atomic_load(&h->stop)) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&h->mu);
        const double now = rs_clock_now();
        int n = 0;
        for (int i = 0; i < h->n_conns; i++) {
            hconn *c = h->conns[i];
            if (!c->busy && !c->shut && now - c->t0 > h->timeout) {
                shutdown(c->fd, SHUT_RDWR); /* MHD sees the end and closes it on its next pass */
                c->shut = 1;
            }
            if (c->waiting && pf && pc) {
                /* The peer's FIN (POLLRDHUP, even behind pipelined bytes) or a reset. */
                pf[n] = (struct pollfd){.fd = c->fd, .events = POLLRDHUP};
                pc[n++] = c;
            }
        }
        if (n > 0 && poll(pf, (nfds_t)n, 0) > 0)
            for (int i = 0; i < n; i++)
                if (pf[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) cancel_closed(h, pc[i]);
        pthread_mutex_unlock(&h->mu);
    }
    free(pf);
    free(pc);
    return NULL;
}

static void http_free(srv_http *h) {
    if (!h) return;
    free(h->conns);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

rs_status srv_http_start(rs_server *s, rs_err *err) {
    const rs_srv_config *cfg = &s->cfg;
    srv_http *h = calloc(1, sizeof *h);
    if (!h) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    h->s = s;
    pthread_mutex_init(&h->mu, NULL);
    h->timeout = cfg->http_request_timeout_s;
    h->cap_conns = cfg->http_max_connections + 16;
    h->conns = calloc((size_t)h->cap_conns, sizeof *h->conns);
    if (!h->conns) {
        http_free(h);
        return rs_errf(err, RS_ERR_NOMEM, "no memory");
    }
    char *pem[3] = {NULL, NULL, NULL};
    if (cfg->tls_cert[0]) {
        rs_err rerr = {{0}};
        pem[0] = srv_read_text_file(cfg->tls_cert, 1 << 20, &rerr);
        pem[1] = pem[0] ? srv_read_text_file(cfg->tls_key, 1 << 20, &rerr) : NULL;
        pem[2] = pem[1] && cfg->tls_client_ca[0] ? srv_read_text_file(cfg->tls_client_ca, 1 << 20, &rerr) : NULL;
        if (!pem[0] || !pem[1] || (cfg->tls_client_ca[0] && !pem[2])) {
            for (int i = 0; i < 3; i++) free(pem[i]);
            http_free(h);
            return rs_errf(err, RS_ERR_IO, "http: TLS certificate, key or client CA: %s", rerr.msg);
        }
    }
    const unsigned idle = (unsigned)ceil(cfg->http_request_timeout_s * 12); /* keep-alive idle limit */
    const srv_mhd_opts lo = {
        .what = "http",
        .addr_key = "http_listen",
        .addr = cfg->http_listen,
        .mode = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME,
        .max_connections = cfg->http_max_connections,
        .idle_timeout_s = idle,
        .memory_limit = 64 * 1024, /* bounds request headers */
        .tls_cert_pem = pem[0],
        .tls_key_pem = pem[1],
        .tls_client_ca_pem = pem[2],
        .handler = handle,
        .handler_cls = h,
        .on_connection = on_connection,
        .on_completed = on_completed,
        .notify_cls = h,
    };
    rs_status st = srv_mhd_listen(&lo, &h->l, err);
    for (int i = 0; i < 3; i++) free(pem[i]); /* copied */
    if (st != RS_OK) {
        http_free(h);
        return st;
    }
    s->http_port = h->l.port;
    if (pthread_create(&h->thread, NULL, http_main, h) != 0) {
        srv_mhd_stop(&h->l);
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
    srv_mhd_stop(&h->l); /* joins MHD's thread */
    http_free(h);
    s->http = NULL;
}
