/* metrics.h — the server's Prometheus metrics and the HTTP endpoint that
 * serves them (libmicrohttpd, GET /metrics).
 *
 * The endpoint runs libmicrohttpd in external-polling mode on one thread
 * of ours: MHD_run_wait, then the connections whose request has not arrived
 * within request_timeout_s are shut down (MHD then closes them), in the same
 * thread, so no descriptor is touched after MHD closed it. With the per-client
 * and total connection limits, slow or idle clients cannot hold the port.
 *
 * Everything is a fixed array of atomic counters sized at init (routers x
 * methods x codes, histogram buckets), so recording is lock-free and never
 * allocates; rendering walks the arrays. Router index n_routers stands for
 * requests that named no known router. Thread-safe after init. */
#ifndef RS_METRICS_H
#define RS_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "status.h"

typedef enum rs_method {
    RS_METHOD_SCORE,
    RS_METHOD_SCORE_STREAM,
    RS_METHOD_LIST_ROUTERS,
    RS_METHOD_HEALTH_CHECK,
    RS_METHOD_HEALTH_WATCH,
    RS_METHOD_REFLECTION,
    RS_METHOD_HTTP_SCORE,   /* POST /v1/score */
    RS_METHOD_HTTP_ROUTERS, /* GET /v1/routers */
    RS_METHOD_EXT_PROC, /* one per scored (or refused) chat request of an ext_proc stream */
    RS_METHOD_UNKNOWN,
    RS_METHOD_COUNT
} rs_method;

extern const char *const RS_METHOD_NAMES[RS_METHOD_COUNT];

typedef enum rs_hist_kind {
    RS_H_BATCH_SIZE,     /* prompts per forward */
    RS_H_BATCH_TOKENS,   /* tokens per forward */
    RS_H_QUEUE_WAIT,     /* seconds from admission to the start of its forward, per prompt */
    RS_H_TOKENIZE,       /* seconds tokenizing one request */
    RS_H_INFERENCE,      /* seconds of one forward */
    RS_H_REQUEST,        /* seconds of one Score request, server side */
    RS_H_COUNT
} rs_hist_kind;

typedef enum rs_drop_reason { RS_DROP_CANCELLED, RS_DROP_EXPIRED, RS_DROP_COUNT } rs_drop_reason;

/* Why admission refused a request at once (batcher.h, Admission). */
typedef enum rs_refused_reason { RS_REFUSED_TOKENS, RS_REFUSED_WAIT, RS_REFUSED_DEADLINE, RS_REFUSED_COUNT } rs_refused_reason;

typedef struct rs_metrics rs_metrics;

/* names: n router names, copied. */
rs_status rs_metrics_init(int n, const char *const *names, rs_metrics **out, rs_err *err);
void rs_metrics_free(rs_metrics *m);

/* router: 0..n-1, or -1 for "no such router". code: a grpc_status_code. */
void rs_metrics_request(rs_metrics *m, int router, rs_method method, int code);
void rs_metrics_prompts(rs_metrics *m, int router, uint64_t prompts, uint64_t tokens);
void rs_metrics_decision(rs_metrics *m, int router, int strong);
void rs_metrics_observe(rs_metrics *m, int router, rs_hist_kind h, double v);
void rs_metrics_drop(rs_metrics *m, int router, rs_drop_reason r, uint64_t prompts);
void rs_metrics_refused(rs_metrics *m, int router, rs_refused_reason why);
void rs_metrics_queue(rs_metrics *m, int router, int64_t d_prompts, int64_t d_tokens); /* gauge deltas */
void rs_metrics_threshold(rs_metrics *m, int router, float t);
void rs_metrics_ready(rs_metrics *m, int ready);
/* Requests of a method that ended with a code, over all routers (for logs and tests). */
uint64_t rs_metrics_requests(rs_metrics *m, rs_method method, int code);

/* Prometheus text format 0.0.4 into a malloc'd string (*out, caller frees). */
rs_status rs_metrics_render(rs_metrics *m, char **out, size_t *len, rs_err *err);

/* The /metrics endpoint's limits and access (docs/SERVING.md, Metrics).
 * Strings are borrowed for the call only (copied). */
typedef struct rs_metrics_http_opts {
    const char *addr;            /* "host:port"; port 0 picks one */
    double request_timeout_s;    /* a request must arrive whole within this, from the
                                    connection's start or the previous response: a total
                                    deadline that bytes trickling in do not reset */
    int client_connections;      /* open connections per client address */
    int max_connections;         /* open connections in all */
    const char (*tokens)[256];   /* bearer tokens required (n_tokens 0: none) */
    int n_tokens;
    const char *tls_cert_pem, *tls_key_pem; /* both set: HTTPS */
    const char *tls_client_ca_pem;          /* and set: a client certificate from this CA is required */
} rs_metrics_http_opts;

/* Serves GET /metrics (*bound_port says on which port) from a thread of its
 * own. rs_metrics_http_stop before rs_metrics_free. */
rs_status rs_metrics_http_start(rs_metrics *m, const rs_metrics_http_opts *o, int *bound_port, rs_err *err);
void rs_metrics_http_stop(rs_metrics *m);

#endif
