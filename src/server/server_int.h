/* server_int.h — what the server's files share: the call and request types,
 * the status mapping and the functions one file offers another. Private to
 * src/server/ (server.h is the interface).
 *
 *   server_call.c     the call state machine (DESIGN there): arming, events,
 *                     advance(), the non-Score methods
 *   server_request.c  one Score request: validation, tokenizing, queueing,
 *                     its outcome and its answer; the status mapping
 *   server.c          lifecycle: create, load, reload, drain, free */
#ifndef RS_SERVER_INT_H
#define RS_SERVER_INT_H

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
#include <stdatomic.h>

#include "batcher.h"
#include "engine.h"
#include "metrics.h"
#include "quantile.h"
#include "reflection.h"
#include "routescore/v1/scorer.pb-c.h"
#include "server.h"

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
    SRV_UNKNOWN_PATH,    /* HTTP: no such endpoint */
    SRV_BAD_METHOD,      /* HTTP: the endpoint takes another method */
} rs_srv_err;

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
    CK_EXTPROC, /* Envoy ext_proc (ext_proc.c): registered only when configured */
    CK_UNKNOWN, /* any other method: UNIMPLEMENTED */
    CK_COUNT
} call_kind;

typedef struct rs_method_desc {
    const char *path;
    int read_initial; /* unary and server-streaming: the core reads the one request */
    rs_method metric;
    int armed;        /* calls kept requested */
    int per_message;  /* request metrics per message (the method counts them), not per call */
} rs_method_desc;
extern const rs_method_desc srv_methods[CK_COUNT];

typedef enum op_kind { OP_NEW, OP_RECV, OP_SEND, OP_FINISH, OP_CLOSE, OP_WAKE } op_kind;

typedef struct rs_call rs_call;
typedef struct srv_xp srv_xp; /* an ext_proc stream's state (ext_proc.c) */

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

/* One Score request: a unary call, one message of a stream, or one HTTP
 * POST /v1/score. Its owner (the gRPC call or the HTTP exchange) learns
 * through done() that the batcher has finished with it. */
typedef struct rs_req rs_req;
struct rs_req {
    rs_req *next;          /* in its owner's lists */
    rs_server *srv;
    void *owner;
    void (*done)(rs_req *r); /* engine worker thread: scored or dropped */
    double deadline;       /* rs_clock_now() seconds, INFINITY for none */
    int router;
    Routescore__V1__ScoreRequest__DecisionCase decision;
    float dvalue;
    uint64_t request_id;
    char key[129];      /* request_key: the caller's string id ("" none) */
    char *chat_text;    /* the prompt taken from `messages` (malloc'd), or NULL */
    double t_recv, tokenize_s;
    rs_work work;
    int32_t *ids;       /* (n * max_tokens) token ids; work.items point into it */
    float *emb;         /* or (n * client_embed_dim) client embeddings, likewise */
    uint8_t *truncated; /* (n) */
    /* An immediate failure (never queued). */
    rs_srv_err fail;
    rs_status fail_st;
    char fail_msg[256];
};

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
    double deadline;      /* rs_clock_now() seconds, INFINITY for none */
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
    srv_xp *xp;           /* CK_EXTPROC: the stream's HTTP request (ext_proc.c) */
};

typedef struct srv_http srv_http;

struct rs_server {
    rs_srv_config cfg;
    srv_http *http;     /* the HTTP/JSON API (http.c), NULL when off */
    int http_port;
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
};

/* What is known about how a request ended (see srv_final_status). */
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

static inline float srv_router_threshold(router *r) { return atomic_load(&r->threshold); }
/* Readiness (gRPC health "", HTTP /readyz) and liveness (gRPC health
 * "liveness", HTTP /healthz): the one definition of each. */
static inline int srv_ready(const rs_server *s) {
    return atomic_load(&s->ready) && !atomic_load(&s->draining) && !atomic_load(&s->fatal);
}
static inline int srv_live(const rs_server *s) { return !atomic_load(&s->fatal); }
static inline uint32_t srv_us(double s) { return s <= 0 ? 0 : s > 4e3 ? UINT32_MAX : (uint32_t)(s * 1e6 + 0.5); }

/* server_request.c */
grpc_status_code srv_grpc_code(rs_srv_err e, rs_status st);
rs_srv_err srv_final_status(const outcome_facts *f, rs_status *st, const char **msg);
int srv_wire_has_nul(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int depth, uint32_t *field,
                     size_t *index);
/* A new request of owner, to be finished by done (deadline INFINITY: none). */
rs_req *srv_req_new(rs_server *s, void *owner, void (*done)(rs_req *), double deadline);
/* The ScoreRequest in a received message, NULL (r->fail set) when it is
 * malformed or a string holds a NUL byte. */
Routescore__V1__ScoreRequest *srv_req_unpack(rs_req *r, const uint8_t *data, size_t len);
/* Validates and tokenizes m and queues r in its router's batcher: 1 when
 * queued (r->done will run, possibly before this returns), 0 with r->fail
 * set otherwise. The caller registers r with its owner first. */
int srv_req_submit(rs_req *r, const Routescore__V1__ScoreRequest *m);
rs_srv_err srv_req_outcome(const rs_req *r, rs_status *st, const char **msg);
/* The ScoreResponse of a finished request (scores, or `error` when
 * with_error) in *resp; *code its status. 0 when there is nothing to send
 * (a failure and !with_error) or no memory (*code OK); free with
 * srv_resp_free. */
typedef struct srv_resp {
    Routescore__V1__ScoreResponse msg;
    Routescore__V1__RequestError err;
    Routescore__V1__PromptScore *ps, **pp;
} srv_resp;
int srv_req_response(rs_req *r, int with_error, srv_resp *resp, rs_srv_err *e, grpc_status_code *code, const char **msg);
void srv_resp_free(srv_resp *resp);
void srv_req_free(rs_req *r);
/* Router index by name ("" or NULL: the default router); -1 when unknown. */
int srv_find_router(const rs_server *s, const char *name);
/* The threshold rule `decision` (value dvalue) of router i uses now, the
 * rule that chose it and the live scores behind a strong_share. */
float srv_decision_threshold(rs_server *s, int i, Routescore__V1__ScoreRequest__DecisionCase decision, float dvalue,
                             Routescore__V1__DecisionRule *rule, size_t *seen);

/* The HTTP status of a failure: the HTTP side of srv_grpc_code. */
int srv_http_status(rs_srv_err e, rs_status st);
/* The ListRoutersResponse, in caller storage (RS_SRV_MAX_ROUTERS each). */
void srv_list_routers(rs_server *s, Routescore__V1__ListRoutersResponse *resp, Routescore__V1__RouterInfo *info,
                      Routescore__V1__RouterInfo **pinfo);
/* One log line for a finished request: its ids (request_key, the
 * transport's x-request-id and traceparent, each NULL when absent), status
 * and stage timings. INFO when it carries an id, else DEBUG. */
void srv_log_request(const rs_req *r, const char *transport, int code, const char *x_request_id,
                     const char *traceparent);

/* server.c */
char *srv_read_text_file(const char *path, size_t max, rs_err *err);

/* http.c */
rs_status srv_http_start(rs_server *s, rs_err *err);
void srv_http_stop(rs_server *s);

/* server_call.c */
/* A message packed into a byte buffer (NULL: no memory); the one packer of
 * every answer gRPC sends. */
grpc_byte_buffer *srv_pack(const ProtobufCMessage *m);
void srv_arm(rs_server *s, call_kind k);
/* Whether call metadata carries a valid bearer token (1 when auth is off). */
int srv_authorized(const rs_server *s, const grpc_metadata_array *md);
/* Drain accounting, one for gRPC calls, HTTP requests and ext_proc bodies:
 * a piece of accepted work begins (0: the server is draining, refuse it)
 * and ends. The drain's first phase waits for every piece begun. */
int srv_work_begin(rs_server *s);
void srv_work_end(rs_server *s);
/* For a method module (ext_proc.c), on a call it serves (c->mu held):
 * queue an answer; decide the final status (the first decided stands);
 * submit request r, owned by the call from here (back through the
 * module's done hook on a completion-queue thread), returning 1, or 0 with
 * r->fail set and r still the caller's. */
void srv_call_push(rs_call *c, grpc_byte_buffer *bb);
void srv_call_status(rs_call *c, rs_srv_err e, rs_status st, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int srv_call_submit(rs_call *c, rs_req *r, const Routescore__V1__ScoreRequest *m);
void *srv_cq_main(void *arg);
void srv_wake_live_calls(rs_server *s);

#endif
