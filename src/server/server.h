/* server.h — the routescore gRPC service on the gRPC C core.
 *
 * Serves routescore.v1.Scorer (Score, ScoreStream, ListRouters),
 * grpc.health.v1.Health (Check, Watch) and server reflection
 * (grpc.reflection.v1alpha and v1) over one completion queue; one batcher
 * (batcher.h) and engine worker per router; Prometheus metrics on their own
 * port. Lifecycle, from the caller's side (cli_serve.c):
 *
 *   rs_server_create   bind the ports, start the completion-queue threads;
 *                      health answers NOT_SERVING, Score answers UNAVAILABLE
 *   rs_server_load     open every router, warm it up, start its batcher;
 *                      then health turns SERVING
 *   rs_server_wait_event / rs_server_notify   the main thread sleeps until a
 *                      signal (delivered by the caller) or a fatal engine error
 *   rs_server_reload   SIGHUP: new default thresholds, nothing dropped
 *   rs_server_drain    SIGTERM: NOT_SERVING, stop accepting, finish every
 *                      accepted request within the grace period
 *   rs_server_free
 *
 * Threads: the completion-queue threads run every call's state machine and
 * tokenize; each router has a former and an engine worker thread; libgrpc
 * and libmicrohttpd run their own. All functions here are for one
 * controlling thread, except rs_server_notify (any thread, async-signal
 * unsafe). */
#ifndef RS_SERVER_H
#define RS_SERVER_H

#include "engine.h"
#include "srv_config.h"
#include "status.h"

typedef struct rs_server rs_server;

typedef enum rs_server_event {
    RS_EV_NONE = 0,
    RS_EV_TERM = 1,  /* drain and exit */
    RS_EV_HUP = 2,   /* reload thresholds */
    RS_EV_FATAL = 4, /* an engine failed: drain and exit non-zero */
} rs_server_event;

/* Opens replica `replica` of router rc (its device: devices[replica %
 * n_devices], else rc->device; n_threads overrides rc->threads when > 0, and
 * CPU replicas without a thread count share the cores) and checks that it can
 * be served: it has a scoring head, and its prompts fit max_batch_tokens.
 * Errors name the router (label). Used by the server and by
 * `serve --check-config`. */
rs_status rs_server_open_router(const rs_srv_router_cfg *rc, const char *label, int replica, int n_threads,
                                rs_engine **out, rs_router_info *info, rs_err *err);

/* cfg must have passed rs_srv_config_validate. */
rs_status rs_server_create(const rs_srv_config *cfg, rs_server **out, rs_err *err);
rs_status rs_server_load(rs_server *s, rs_err *err);
void rs_server_notify(rs_server *s, rs_server_event ev);
/* Blocks until an event is pending; returns and clears the pending set (a
 * mask of rs_server_event). */
int rs_server_wait_event(rs_server *s);
void rs_server_reload(rs_server *s);
/* Returns the process exit code: 0 when every accepted request finished in
 * time, 1 when calls had to be cancelled at the grace limit, 3 after a fatal
 * engine error. */
int rs_server_drain(rs_server *s);
void rs_server_free(rs_server *s);

#endif
