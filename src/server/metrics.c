/* metrics.c — see metrics.h. */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include "srv_config.h"
#include "srv_mhd.h"

#define N_CODES 17 /* grpc_status_code 0..16 */

const char *const RS_METHOD_NAMES[RS_METHOD_COUNT] = {
    "Score", "ScoreStream", "ListRouters", "Health.Check", "Health.Watch", "ServerReflectionInfo",
    "http.Score", "http.ListRouters", "ExternalProcessor.Process", "unknown"};

static const char *const CODE_NAMES[N_CODES] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};

/* Bucket upper bounds, per histogram. Sums are kept in integer micro-units
 * (seconds) or units (sizes) so that recording is one atomic add. */
#define MAX_BUCKETS 16
static const struct {
    const char *name, *help;
    int nb;
    double bounds[MAX_BUCKETS];
    double scale; /* value * scale is what the sum accumulates */
} HISTS[RS_H_COUNT] = {
    {"routescore_batch_size", "Prompts per forward pass.", 10, {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}, 1},
    {"routescore_batch_tokens", "Tokens per forward pass.", 11,
     {64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536}, 1},
    {"routescore_queue_wait_seconds", "Per prompt: admission to the start of its forward pass.", 14,
     {.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, 1e6},
    {"routescore_tokenize_seconds", "Tokenizing one request's prompts.", 12,
     {.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05}, 1e6},
    {"routescore_inference_seconds", "One forward pass (engine time).", 14,
     {.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, 1e6},
    {"routescore_request_duration_seconds", "Score requests, receipt to response, server side.", 14,
     {.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, 1e6},
};

typedef struct hist {
    _Atomic uint64_t counts[MAX_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t sum;
} hist;

typedef struct router_m {
    char name[128];
    _Atomic uint64_t requests[RS_METHOD_COUNT][N_CODES];
    _Atomic uint64_t prompts, tokens, strong, weak;
    _Atomic uint64_t refused[RS_REFUSED_COUNT];
    _Atomic uint64_t dropped[RS_DROP_COUNT];
    _Atomic int64_t q_prompts, q_tokens;
    _Atomic uint32_t threshold_bits;
    hist h[RS_H_COUNT];
} router_m;

/* An open /metrics connection (the HTTP thread's only). */
typedef struct http_conn {
    struct MHD_Connection *c;
    int fd;
    double t0;    /* connection start, or the end of its last response */
    int shut;     /* shut down for passing the deadline */
} http_conn;

struct rs_metrics {
    int n;           /* routers; r[n] is "unknown" */
    router_m *r;
    _Atomic int ready;
    srv_mhd http;     /* the listener (http.d NULL: not started) */
    pthread_t http_thread;
    _Atomic int http_stop;
    double http_timeout;
    http_conn *conns; /* (max_connections + 16) */
    int n_conns, cap_conns;
    char (*tokens)[256];
    int n_tokens;
};

rs_status rs_metrics_init(int n, const char *const *names, rs_metrics **out, rs_err *err) {
    rs_metrics *m = calloc(1, sizeof *m);
    if (!m || !(m->r = calloc((size_t)n + 1, sizeof *m->r))) {
        free(m);
        return rs_errf(err, RS_ERR_NOMEM, "no memory for metrics");
    }
    m->n = n;
    for (int i = 0; i < n; i++) snprintf(m->r[i].name, sizeof m->r[i].name, "%s", names[i]);
    snprintf(m->r[n].name, sizeof m->r[n].name, "%s", "");
    *out = m;
    return RS_OK;
}

void rs_metrics_free(rs_metrics *m) {
    if (!m) return;
    rs_metrics_http_stop(m);
    free(m->r);
    free(m);
}

static router_m *R(rs_metrics *m, int router) { return &m->r[router >= 0 && router < m->n ? router : m->n]; }

void rs_metrics_request(rs_metrics *m, int router, rs_method method, int code) {
    if (code < 0 || code >= N_CODES) code = 2;
    atomic_fetch_add(&R(m, router)->requests[method][code], 1);
}

void rs_metrics_prompts(rs_metrics *m, int router, uint64_t prompts, uint64_t tokens) {
    atomic_fetch_add(&R(m, router)->prompts, prompts);
    atomic_fetch_add(&R(m, router)->tokens, tokens);
}

void rs_metrics_decision(rs_metrics *m, int router, int strong) {
    atomic_fetch_add(strong ? &R(m, router)->strong : &R(m, router)->weak, 1);
}

void rs_metrics_observe(rs_metrics *m, int router, rs_hist_kind k, double v) {
    hist *h = &R(m, router)->h[k];
    int b = 0;
    while (b < HISTS[k].nb && v > HISTS[k].bounds[b]) b++;
    atomic_fetch_add(&h->counts[b], 1);
    double s = v * HISTS[k].scale;
    atomic_fetch_add(&h->sum, s > 0 ? (uint64_t)llround(s) : 0);
}

void rs_metrics_drop(rs_metrics *m, int router, rs_drop_reason r, uint64_t prompts) {
    atomic_fetch_add(&R(m, router)->dropped[r], prompts);
}

void rs_metrics_refused(rs_metrics *m, int router, rs_refused_reason why) {
    if (why >= 0 && why < RS_REFUSED_COUNT) atomic_fetch_add(&R(m, router)->refused[why], 1);
}

void rs_metrics_queue(rs_metrics *m, int router, int64_t dp, int64_t dt) {
    atomic_fetch_add(&R(m, router)->q_prompts, dp);
    atomic_fetch_add(&R(m, router)->q_tokens, dt);
}

void rs_metrics_threshold(rs_metrics *m, int router, float t) {
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    atomic_store(&R(m, router)->threshold_bits, bits);
}

void rs_metrics_ready(rs_metrics *m, int ready) { atomic_store(&m->ready, ready); }

uint64_t rs_metrics_requests(rs_metrics *m, rs_method method, int code) {
    uint64_t n = 0;
    if (code < 0 || code >= N_CODES) return 0;
    for (int r = 0; r <= m->n; r++) n += atomic_load(&m->r[r].requests[method][code]);
    return n;
}

/* ---- rendering ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)k < b->cap - b->len) {
            b->len += (size_t)k;
            return;
        }
        size_t nc = (b->cap + (size_t)k + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

/* Router names come from manifests or config: escape for a label value. */
static const char *label_esc(const char *s, char *buf, size_t n) {
    size_t o = 0;
    for (; *s && o + 3 < n; s++) {
        if (*s == '"' || *s == '\\') buf[o++] = '\\';
        if (*s == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
            continue;
        }
        buf[o++] = *s;
    }
    buf[o] = 0;
    return buf;
}

/* The process_* metrics of the Prometheus client conventions, from /proc. */
static void process_metrics(sbuf *b) {
    const long page = sysconf(_SC_PAGESIZE), tick = sysconf(_SC_CLK_TCK);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        sb_printf(b, "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
                     "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.6f\n",
                  (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
                      (double)ru.ru_stime.tv_usec * 1e-6);
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long vm = 0, rss = 0;
    if (f && fscanf(f, "%llu %llu", &vm, &rss) == 2)
        sb_printf(b, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                     "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n"
                     "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                     "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n",
                  rss * (unsigned long long)page, vm * (unsigned long long)page);
    if (f) fclose(f);
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long n = 0;
        for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
        closedir(d);
        sb_printf(b, "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n"
                     "process_open_fds %ld\n", n - 1 /* the directory's own */);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        sb_printf(b, "# HELP process_max_fds Maximum number of open file descriptors.\n# TYPE process_max_fds gauge\n"
                     "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    /* Start time: field 22 of /proc/self/stat (ticks after boot) plus btime. */
    char buf[1024];
    unsigned long long start = 0, btime = 0;
    f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    int field = 2;
    for (; p && *p && field < 22; p++)
        if (*p == ' ') field++;
    if (p && field == 22) start = strtoull(p, NULL, 10);
    f = fopen("/proc/stat", "r");
    while (f && fgets(buf, sizeof buf, f))
        if (!strncmp(buf, "btime ", 6)) btime = strtoull(buf + 6, NULL, 10);
    if (f) fclose(f);
    if (btime && tick > 0)
        sb_printf(b, "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
                     "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
                  (double)btime + (double)start / (double)tick);
}

rs_status rs_metrics_render(rs_metrics *m, char **out, size_t *len, rs_err *err) {
    sbuf b = {malloc(16384), 0, 16384, 0};
    if (!b.p) return rs_errf(err, RS_ERR_NOMEM, "no memory");
    char esc[300];
    sb_printf(&b, "# HELP routescore_build_info Build information.\n# TYPE routescore_build_info gauge\n"
                  "routescore_build_info{version=\"%s\"} 1\n",
              RS_VERSION);
    process_metrics(&b);
    sb_printf(&b, "# HELP routescore_ready 1 when every router is loaded and warmed up and the server is not draining.\n"
                  "# TYPE routescore_ready gauge\nroutescore_ready %d\n",
              atomic_load(&m->ready));
    sb_printf(&b, "# HELP routescore_requests_total RPCs (and ScoreStream messages) by router, method and status code.\n"
                  "# TYPE routescore_requests_total counter\n");
    for (int r = 0; r <= m->n; r++)
        for (int k = 0; k < RS_METHOD_COUNT; k++)
            for (int c = 0; c < N_CODES; c++) {
                uint64_t v = atomic_load(&m->r[r].requests[k][c]);
                if (v)
                    sb_printf(&b, "routescore_requests_total{router=\"%s\",method=\"%s\",code=\"%s\"} %llu\n",
                              label_esc(m->r[r].name, esc, sizeof esc), RS_METHOD_NAMES[k], CODE_NAMES[c],
                              (unsigned long long)v);
            }
#define PER_ROUTER(metric, type, help, expr)                                                          \
    do {                                                                                              \
        sb_printf(&b, "# HELP " metric " " help "\n# TYPE " metric " " type "\n");                    \
        for (int r = 0; r < m->n; r++) {                                                              \
            router_m *x = &m->r[r];                                                                   \
            (void)x;                                                                                  \
            sb_printf(&b, metric "{router=\"%s\"} %lld\n", label_esc(x->name, esc, sizeof esc),       \
                      (long long)(expr));                                                             \
        }                                                                                             \
    } while (0)
    PER_ROUTER("routescore_prompts_total", "counter", "Prompts scored.", atomic_load(&x->prompts));
    PER_ROUTER("routescore_tokens_total", "counter", "Tokens scored (special tokens included).", atomic_load(&x->tokens));
    sb_printf(&b, "# HELP routescore_queue_refused_total Requests refused at once by admission: the queue's tokens "
                  "(tokens), its expected wait past max_queue_wait (wait), or past the call's deadline (deadline).\n"
                  "# TYPE routescore_queue_refused_total counter\n");
    for (int r = 0; r < m->n; r++) {
        static const char *const WHY[RS_REFUSED_COUNT] = {"tokens", "wait", "deadline"};
        label_esc(m->r[r].name, esc, sizeof esc);
        for (int k = 0; k < RS_REFUSED_COUNT; k++)
            sb_printf(&b, "routescore_queue_refused_total{router=\"%s\",reason=\"%s\"} %llu\n", esc, WHY[k],
                      (unsigned long long)atomic_load(&m->r[r].refused[k]));
    }
    PER_ROUTER("routescore_queue_prompts", "gauge", "Prompts admitted and not yet scored.", atomic_load(&x->q_prompts));
    PER_ROUTER("routescore_queue_tokens", "gauge", "Tokens admitted and not yet scored.", atomic_load(&x->q_tokens));
    sb_printf(&b, "# HELP routescore_decisions_total Routing decisions by route.\n# TYPE routescore_decisions_total counter\n");
    for (int r = 0; r < m->n; r++) {
        label_esc(m->r[r].name, esc, sizeof esc);
        sb_printf(&b, "routescore_decisions_total{router=\"%s\",route=\"strong\"} %llu\n", esc,
                  (unsigned long long)atomic_load(&m->r[r].strong));
        sb_printf(&b, "routescore_decisions_total{router=\"%s\",route=\"weak\"} %llu\n", esc,
                  (unsigned long long)atomic_load(&m->r[r].weak));
    }
    sb_printf(&b, "# HELP routescore_dropped_prompts_total Prompts that left the queue unscored.\n"
                  "# TYPE routescore_dropped_prompts_total counter\n");
    for (int r = 0; r < m->n; r++) {
        label_esc(m->r[r].name, esc, sizeof esc);
        sb_printf(&b, "routescore_dropped_prompts_total{router=\"%s\",reason=\"cancelled\"} %llu\n", esc,
                  (unsigned long long)atomic_load(&m->r[r].dropped[RS_DROP_CANCELLED]));
        sb_printf(&b, "routescore_dropped_prompts_total{router=\"%s\",reason=\"deadline\"} %llu\n", esc,
                  (unsigned long long)atomic_load(&m->r[r].dropped[RS_DROP_EXPIRED]));
    }
    sb_printf(&b, "# HELP routescore_threshold The router's default decision threshold now.\n# TYPE routescore_threshold gauge\n");
    for (int r = 0; r < m->n; r++) {
        uint32_t bits = atomic_load(&m->r[r].threshold_bits);
        float t;
        memcpy(&t, &bits, sizeof t);
        sb_printf(&b, "routescore_threshold{router=\"%s\"} %.9g\n", label_esc(m->r[r].name, esc, sizeof esc), (double)t);
    }
    for (int k = 0; k < RS_H_COUNT; k++) {
        sb_printf(&b, "# HELP %s %s\n# TYPE %s histogram\n", HISTS[k].name, HISTS[k].help, HISTS[k].name);
        for (int r = 0; r < m->n; r++) {
            hist *h = &m->r[r].h[k];
            label_esc(m->r[r].name, esc, sizeof esc);
            uint64_t cum = 0;
            for (int i = 0; i < HISTS[k].nb; i++) {
                cum += atomic_load(&h->counts[i]);
                sb_printf(&b, "%s_bucket{router=\"%s\",le=\"%g\"} %llu\n", HISTS[k].name, esc, HISTS[k].bounds[i],
                          (unsigned long long)cum);
            }
            cum += atomic_load(&h->counts[HISTS[k].nb]);
            sb_printf(&b, "%s_bucket{router=\"%s\",le=\"+Inf\"} %llu\n", HISTS[k].name, esc, (unsigned long long)cum);
            sb_printf(&b, "%s_sum{router=\"%s\"} %.9g\n", HISTS[k].name, esc, (double)atomic_load(&h->sum) / HISTS[k].scale);
            sb_printf(&b, "%s_count{router=\"%s\"} %llu\n", HISTS[k].name, esc, (unsigned long long)cum);
        }
    }
    if (b.oom) {
        free(b.p);
        return rs_errf(err, RS_ERR_NOMEM, "no memory");
    }
    *out = b.p;
    *len = b.len;
    return RS_OK;
}

/* ---- HTTP ---- */

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static http_conn *conn_find(rs_metrics *m, struct MHD_Connection *c) {
    for (int i = 0; i < m->n_conns; i++)
        if (m->conns[i].c == c) return &m->conns[i];
    return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode code) {
    (void)socket_context;
    rs_metrics *m = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci && m->n_conns < m->cap_conns) m->conns[m->n_conns++] = (http_conn){c, ci->connect_fd, mono_now(), 0};
    } else {
        http_conn *h = conn_find(m, c);
        if (h) *h = m->conns[--m->n_conns];
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe) {
    (void)req_cls;
    (void)toe;
    http_conn *h = conn_find(cls, c);
    if (h) h->t0 = mono_now(); /* the next request on this connection gets a deadline of its own */
}

/* Whether the request carries one of the bearer tokens (constant time in
 * the token's bytes, like the gRPC side). */
static int bearer_ok(const rs_metrics *m, struct MHD_Connection *conn) {
    if (!m->n_tokens) return 1;
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return v && rs_srv_bearer_ok((const char (*)[256])m->tokens, m->n_tokens, v, strlen(v));
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **req_cls) {
    (void)version;
    (void)upload_data;
    (void)upload_size;
    (void)req_cls;
    rs_metrics *m = cls;
    const char *body;
    size_t len;
    char *text = NULL;
    unsigned code = MHD_HTTP_OK;
    static const char NOT_FOUND[] = "not found: try /metrics\n";
    static const char BAD_METHOD[] = "only GET\n";
    static const char NO_CERT[] = "a client certificate from the configured CA is required\n";
    static const char NO_TOKEN[] = "missing or invalid bearer token\n";
    rs_err err;
    if (!srv_mhd_client_cert_ok(&m->http, conn)) { /* mTLS: a certificate from the client CA */
        body = NO_CERT;
        len = sizeof NO_CERT - 1;
        code = MHD_HTTP_FORBIDDEN;
    } else if (!bearer_ok(m, conn)) {
        body = NO_TOKEN;
        len = sizeof NO_TOKEN - 1;
        code = MHD_HTTP_UNAUTHORIZED;
    } else if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        body = BAD_METHOD;
        len = sizeof BAD_METHOD - 1;
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if (strcmp(url, "/metrics")) {
        body = NOT_FOUND;
        len = sizeof NOT_FOUND - 1;
        code = MHD_HTTP_NOT_FOUND;
    } else if (rs_metrics_render(m, &text, &len, &err) != RS_OK) {
        body = "out of memory\n";
        len = strlen(body);
        code = MHD_HTTP_INTERNAL_SERVER_ERROR;
    } else {
        body = text;
    }
    struct MHD_Response *resp =
        text ? MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    if (code == MHD_HTTP_OK) MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    if (code == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result r = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return r;
}

/* The HTTP thread: MHD's work, then the deadline (see metrics.h). */
static void *http_main(void *arg) {
    rs_metrics *m = arg;
    while (!atomic_load(&m->http_stop)) {
        MHD_run_wait(m->http.d, 100);
        const double now = mono_now();
        for (int i = 0; i < m->n_conns; i++) {
            http_conn *h = &m->conns[i];
            if (!h->shut && now - h->t0 > m->http_timeout) {
                shutdown(h->fd, SHUT_RDWR); /* MHD sees the end and closes it on its next pass */
                h->shut = 1;
            }
        }
    }
    return NULL;
}

static void http_free_state(rs_metrics *m) {
    free(m->conns);
    free(m->tokens);
    m->conns = NULL;
    m->tokens = NULL;
}

rs_status rs_metrics_http_start(rs_metrics *m, const rs_metrics_http_opts *o, int *bound_port, rs_err *err) {
    m->cap_conns = o->max_connections + 16;
    m->conns = calloc((size_t)m->cap_conns, sizeof *m->conns);
    m->tokens = o->n_tokens ? calloc((size_t)o->n_tokens, sizeof *m->tokens) : NULL;
    if (!m->conns || (o->n_tokens && !m->tokens)) {
        http_free_state(m);
        return rs_errf(err, RS_ERR_NOMEM, "no memory");
    }
    for (int i = 0; i < o->n_tokens; i++) memcpy(m->tokens[i], o->tokens[i], sizeof m->tokens[i]);
    m->n_tokens = o->n_tokens;
    m->http_timeout = o->request_timeout_s;
    /* External polling (our thread runs it); epoll: no FD_SETSIZE bound. */
    const srv_mhd_opts lo = {
        .what = "metrics",
        .addr_key = "metrics_listen",
        .addr = o->addr,
        .mode = MHD_USE_EPOLL,
        .max_connections = o->max_connections,
        .per_ip_connections = o->client_connections,
        .idle_timeout_s = (unsigned)ceil(o->request_timeout_s),
        .memory_limit = 32 * 1024, /* bounds request headers */
        .tls_cert_pem = o->tls_cert_pem,
        .tls_key_pem = o->tls_key_pem,
        .tls_client_ca_pem = o->tls_client_ca_pem,
        .handler = handle,
        .handler_cls = m,
        .on_connection = on_connection,
        .on_completed = on_completed,
        .notify_cls = m,
    };
    rs_status st = srv_mhd_listen(&lo, &m->http, err);
    if (st != RS_OK) {
        http_free_state(m);
        return st;
    }
    *bound_port = m->http.port;
    atomic_store(&m->http_stop, 0);
    if (pthread_create(&m->http_thread, NULL, http_main, m) != 0) {
        srv_mhd_stop(&m->http);
        http_free_state(m);
        return rs_errf(err, RS_ERR_INTERNAL, "metrics: cannot start the HTTP thread");
    }
    return RS_OK;
}

void rs_metrics_http_stop(rs_metrics *m) {
    if (m && m->http.d) {
        atomic_store(&m->http_stop, 1);
        pthread_join(m->http_thread, NULL);
        srv_mhd_stop(&m->http);
        http_free_state(m);
    }
}
