/* fuzz_score_request.c — a Score request's bytes, as a gRPC message or a
 * ScoreStream frame carries them, through the server's own path: unpack
 * (srv_req_unpack), validate, tokenize and admit (srv_req_submit), score in
 * the router's batcher, build the ScoreResponse (srv_req_response) and pack
 * it. One server for the process (no client connects to its port), with two
 * routers from tests/data (RS_FUZZ_ROUTERS, set by CTest): the tiny causal
 * router, which takes text and messages, and the mf_routellm router, which
 * takes client embeddings.
 *
 * Beyond the sanitizers it checks what every answer must hold: OK carries
 * one score per prompt, each a probability routed by the answer's threshold;
 * a failure carries a gRPC error code and a message; the answer packs and
 * unpacks to the same number of scores. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "server.h"
#include "server_int.h"
#include "srv_log.h"

static rs_server *g_srv;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_done;

static void on_done(rs_req *r) { /* the engine worker's thread */
    (void)r;
    pthread_mutex_lock(&g_mu);
    g_done = 1;
    pthread_cond_signal(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void die(const char *what, const rs_err *err) {
    fprintf(stderr, "fuzz_score_request: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *dirs = getenv("RS_FUZZ_ROUTERS");
    if (!dirs) die("set RS_FUZZ_ROUTERS to router directories separated by ':'", NULL);
    static rs_srv_config cfg;
    rs_srv_config_default(&cfg);
    snprintf(cfg.listen, sizeof cfg.listen, "127.0.0.1:0");
    cfg.metrics_listen[0] = '\0';
    cfg.cq_threads = 1;
    cfg.max_prompts = 64;
    cfg.max_prompt_bytes = 4096;
    snprintf(cfg.log_level, sizeof cfg.log_level, "error");
    rs_log_set_level(RS_LOG_ERROR);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dirs);
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d && cfg.n_routers < RS_SRV_MAX_ROUTERS;
         d = strtok_r(NULL, ":", &save)) {
        rs_srv_router_cfg *rc = &cfg.routers[cfg.n_routers++];
        rs_srv_router_default(rc);
        snprintf(rc->model, sizeof rc->model, "%s", d);
        rc->threads = 1;
        rc->max_batch_tokens = 2048;
        rc->max_queue_delay_us = 0;
    }
    rs_err err;
    if (rs_srv_config_validate(&cfg, &err) != RS_OK) die("config", &err);
    if (rs_server_create(&cfg, &g_srv, &err) != RS_OK) die("server", &err);
    if (rs_server_load(g_srv, &err) != RS_OK) die("routers", &err);
    return 0;
}

/* What every answer must hold (see the header). */
static void check_response(const srv_resp *resp, rs_srv_err e, grpc_status_code code, size_t n_expect) {
    const Routescore__V1__ScoreResponse *m = &resp->msg;
    if (e == SRV_OK) {
        if (code != GRPC_STATUS_OK || m->error || m->n_scores != n_expect) __builtin_trap();
        for (size_t i = 0; i < m->n_scores; i++) {
            const Routescore__V1__PromptScore *p = m->scores[i];
            if (!(p->win_prob >= 0.f && p->win_prob <= 1.f)) __builtin_trap();
            const int strong = p->route == ROUTESCORE__V1__ROUTE__ROUTE_STRONG;
            if (strong != (p->win_prob >= m->threshold)) __builtin_trap();
        }
    } else if (code == GRPC_STATUS_OK || !m->error || m->error->code != (int32_t)code || !m->error->message ||
               !m->error->message[0]) {
        __builtin_trap();
    }
    const size_t len = routescore__v1__score_response__get_packed_size(m);
    uint8_t *wire = malloc(len ? len : 1);
    if (!wire) return;
    routescore__v1__score_response__pack(m, wire);
    Routescore__V1__ScoreResponse *back = routescore__v1__score_response__unpack(NULL, len, wire);
    if (!back || back->n_scores != m->n_scores) __builtin_trap();
    routescore__v1__score_response__free_unpacked(back, NULL);
    free(wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    rs_req *r = srv_req_new(g_srv, NULL, on_done, rs_clock_now() + 30.0);
    if (!r) return 0;
    g_done = 0;
    size_t n_expect = 0;
    Routescore__V1__ScoreRequest *m = srv_req_unpack(r, data, n);
    if (m) {
        n_expect = m->n_embeddings ? m->n_embeddings : m->n_messages ? 1 : m->n_prompts;
        const int queued = srv_req_submit(r, m);
        routescore__v1__score_request__free_unpacked(m, NULL);
        if (queued) {
            pthread_mutex_lock(&g_mu);
            while (!g_done) pthread_cond_wait(&g_cv, &g_mu);
            pthread_mutex_unlock(&g_mu);
        }
    }
    srv_resp resp;
    rs_srv_err e;
    grpc_status_code code;
    const char *msg;
    if (srv_req_response(r, 1, &resp, &e, &code, &msg)) {
        check_response(&resp, e, code, n_expect);
        srv_resp_free(&resp);
    }
    srv_req_free(r);
    return 0;
}
