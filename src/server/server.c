/* server.c — the server's lifecycle: create (ports, credentials, threads),
 * load (routers, warm-up, batchers), reload, drain and free. See server.h
 * for the lifecycle from the caller's side, server_call.c for the calls and
 * server_request.c for one Score request. */
#include "server_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ext_proc.h"
#include "file.h"
#include "manifest.h"
#include "srv_log.h"

extern const unsigned char rs_proto_fds[];
extern const size_t rs_proto_fds_len;

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


/* A whole text file (TLS PEMs, the token file, a manifest); NULL with err
 * set when it is missing, unreadable, larger than max or holds a NUL. */
char *srv_read_text_file(const char *path, size_t max, rs_err *err) {
    char *text = NULL;
    return rs_file_read(path, max, RS_FILE_TEXT, &text, NULL, err) == RS_OK ? text : NULL;
}

static rs_status load_tokens(rs_server *s, rs_err *err) {
    char *text = srv_read_text_file(s->cfg.auth_tokens_file, 1 << 20, err);
    if (!text) return rs_errf(err, RS_ERR_IO, "auth tokens: %s", err->msg);
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
    char *cert = srv_read_text_file(s->cfg.tls_cert, 1 << 20, err), *key = srv_read_text_file(s->cfg.tls_key, 1 << 20, err);
    char *ca = s->cfg.tls_client_ca[0] ? srv_read_text_file(s->cfg.tls_client_ca, 1 << 20, err) : NULL;
    grpc_server_credentials *cr = NULL;
    if (!cert || !key || (s->cfg.tls_client_ca[0] && !ca)) {
        rs_errf(err, RS_ERR_IO, "TLS certificate, key or client CA: %s", err->msg);
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
        cert = srv_read_text_file(cfg->tls_cert, 1 << 20, err);
        key = srv_read_text_file(cfg->tls_key, 1 << 20, err);
        ca = cfg->tls_client_ca[0] ? srv_read_text_file(cfg->tls_client_ca, 1 << 20, err) : NULL;
        if (!cert || !key || (cfg->tls_client_ca[0] && !ca)) {
            free(cert);
            free(key);
            free(ca);
            return rs_errf(err, RS_ERR_IO, "metrics: TLS certificate, key or client CA: %s", err->msg);
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
    /* a manifest that does not open leaves the directory's name; opening
     * the router then reports why */
    rs_manifest m;
    int found = 0;
    if (rs_manifest_open(rc->model, &m, &found, NULL) == RS_OK && found && m.name) {
        snprintf(out, n, "%s", m.name);
    } else {
        char dir[RS_SRV_PATH];
        snprintf(dir, sizeof dir, "%s", rc->model);
        size_t l = strlen(dir);
        while (l > 1 && dir[l - 1] == '/') dir[--l] = 0;
        const char *b = strrchr(dir, '/');
        snprintf(out, n, "%s", b && b[1] ? b + 1 : dir);
    }
    rs_manifest_close(&m);
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
    if (cfg->http_listen[0] && (st = srv_http_start(s, err)) != RS_OK) goto fail;

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
    if (cfg->ext_proc && (st = srv_xp_check(s, err)) != RS_OK) goto fail_grpc;
    for (int k = 0; k < CK_COUNT; k++)
        if (srv_methods[k].path && (k != CK_EXTPROC || cfg->ext_proc)) /* ext_proc only when configured: else UNIMPLEMENTED */
            s->methods[k] = grpc_server_register_method(
                s->grpc, srv_methods[k].path, NULL,
                srv_methods[k].read_initial ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
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
        for (int i = 0; i < srv_methods[k].armed && (s->methods[k] || k == CK_UNKNOWN); i++) srv_arm(s, (call_kind)k);
    s->n_cq = cfg->cq_threads < 1 ? 1 : cfg->cq_threads > MAX_CQ_THREADS ? MAX_CQ_THREADS : cfg->cq_threads;
    for (int i = 0; i < s->n_cq; i++)
        if (pthread_create(&s->cq_threads[i], NULL, srv_cq_main, s) != 0) {
            s->n_cq = i;
            st = rs_errf(err, RS_ERR_INTERNAL, "cannot start completion-queue threads");
            rs_server_free(s);
            return st;
        }
    rs_log(RS_LOG_INFO, "listening", "\"port\":%d,\"metrics_port\":%d,\"http_port\":%d,\"tls\":%s,\"mtls\":%s,\"auth\":%s,\"cq_threads\":%d",
           s->port, s->metrics_port, s->http ? s->http_port : -1, cfg->tls_cert[0] ? "true" : "false", cfg->tls_client_ca[0] ? "true" : "false",
           s->n_tokens ? "true" : "false", s->n_cq);
    *out = s;
    return RS_OK;
fail_grpc: /* not started yet: no calls, nothing to shut down */
    grpc_server_destroy(s->grpc);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {}
    grpc_completion_queue_destroy(s->cq);
    grpc_shutdown();
fail:
    srv_http_stop(s);
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
                                    ("Prove that there are infinitely many primes. Then explain the proof to a child, "
                                     "step by step, with an example using the first ten primes.")};
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
        const double t0 = rs_clock_now();
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
         * tests/server/serve_faults.c, which wraps the engine's forward: nothing
         * here reads the environment.) */
        if ((st = rs_batcher_start(r->engines, r->n_engines, &bo, &r->batcher, err)) != RS_OK) return st;
        r->loaded = 1;
        char e1[300], e2[300], e3[300];
        rs_log(RS_LOG_INFO, "router_ready",
               "\"router\":\"%s\",\"model\":\"%s\",\"kind\":\"%s\",\"threshold\":%.6g,\"max_tokens\":%d,\"online\":%s,"
               "\"strong_model\":\"%s\",\"backend\":\"%s\",\"replicas\":%d,\"threads\":%d,\"load_s\":%.3f",
               rs_log_esc(e1, sizeof e1, r->name), rs_log_esc(e2, sizeof e2, r->cfg.model), r->info.kind, (double)t,
               r->info.max_tokens, r->cfg.online ? "true" : "false", rs_log_esc(e3, sizeof e3, r->info.strong_model),
               rs_engine_backend(r->engine), r->n_engines, engine_threads(&r->cfg, cpu_engines), rs_clock_now() - t0);
    }
    atomic_store(&s->ready, 1);
    rs_metrics_ready(s->metrics, 1);
    srv_wake_live_calls(s); /* health watchers */
    rs_log(RS_LOG_INFO, "serving", "\"routers\":%d", s->n_routers);
    return RS_OK;
}

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
        double left = until - rs_clock_now();
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
    wait_until(s, NULL, &s->n_calls, rs_clock_now() + 30);
    pthread_mutex_unlock(&s->mu);
}

/* After shutdown_and_notify: cancel every call still open, wait (at most
 * 30 s) for the core to report the shutdown, then finish our side. */
static void cancel_and_finish(rs_server *s) {
    grpc_server_cancel_all_calls(s->grpc);
    pthread_mutex_lock(&s->mu);
    wait_until(s, &s->shutdown_done, NULL, rs_clock_now() + 30);
    pthread_mutex_unlock(&s->mu);
    finish_calls(s);
}

int rs_server_drain(rs_server *s) {
    const double t0 = rs_clock_now(), until = t0 + s->cfg.grace_s;
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
    srv_wake_live_calls(s);
    pthread_mutex_lock(&s->mu);
    double t_idle = 0;
    for (;;) {
        const double now = rs_clock_now();
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
    srv_wake_live_calls(s);
    struct timespec goaway = {0, 200 * 1000000L};
    nanosleep(&goaway, NULL);
    atomic_store(&s->release_held, 1);
    srv_wake_live_calls(s);
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
           rs_clock_now() - t0, in_time ? "true" : "false", (unsigned long long)batches, per,
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
    srv_http_stop(s); /* after the batchers: every suspended request has been resumed */
    grpc_server_destroy(s->grpc);
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
/* Shared by gRPC, HTTP and ext_proc (server_int.h).                          */

int srv_authorized(const rs_server *s, const grpc_metadata_array *md) {
    if (!s->n_tokens) return 1;
    for (size_t i = 0; i < md->count; i++) {
        if (grpc_slice_str_cmp(md->metadata[i].key, "authorization")) continue;
        const char *v = (const char *)GRPC_SLICE_START_PTR(md->metadata[i].value);
        if (rs_srv_bearer_ok((const char (*)[256])s->tokens, s->n_tokens, v, GRPC_SLICE_LENGTH(md->metadata[i].value)))
            return 1;
    }
    return 0;
}

int srv_work_begin(rs_server *s) {
    pthread_mutex_lock(&s->mu);
    const int ok = !atomic_load(&s->draining);
    if (ok)
        s->n_accepted++;
    else {
        s->n_refused++;
        s->t_last_refused = rs_clock_now();
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void srv_work_end(rs_server *s) {
    pthread_mutex_lock(&s->mu);
    s->n_accepted--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}
