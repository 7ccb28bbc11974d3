/* server_ext.h — what a service served beside routescore.v1.Scorer on the
 * same gRPC server (ext_proc.c) may use of it: its routers, their batchers
 * and decisions, its auth, readiness and drain accounting. Implemented in
 * server.c. All of it is safe from any thread once rs_server_load has
 * returned (router lookups and names from rs_server_create on). */
#ifndef RS_SERVER_EXT_H
#define RS_SERVER_EXT_H

#include <grpc/grpc.h>

#include "batcher.h"
#include "engine.h"
#include "metrics.h"
#include "server.h"
#include "srv_config.h"

/* Decision rules, as ScoreRequest's `decision`. */
typedef enum rs_srv_decision { RS_DECIDE_DEFAULT, RS_DECIDE_THRESHOLD, RS_DECIDE_STRONG_SHARE } rs_srv_decision;

const rs_srv_config *rs_server_config(const rs_server *s);
/* Router index by name ("" or NULL: the default router); -1 when unknown. */
int rs_server_find_router(const rs_server *s, const char *name);
const char *rs_server_router_name(const rs_server *s, int router);
/* After rs_server_load: the router's first engine (tokenizing is
 * thread-safe), its facts and its batcher. */
rs_engine *rs_server_router_engine(const rs_server *s, int router);
const rs_router_info *rs_server_router_info(const rs_server *s, int router);
rs_batcher *rs_server_router_batcher(const rs_server *s, int router);
/* The threshold a decision by rule d (value v) uses now: the same rule
 * Score applies (request threshold, request strong share, online mode, the
 * router's default). */
float rs_server_decision_threshold(rs_server *s, int router, rs_srv_decision d, float v);
rs_metrics *rs_server_metrics(const rs_server *s);
/* Whether the routers are loaded, and not draining nor failed. */
int rs_server_serving(const rs_server *s);
int rs_server_draining(const rs_server *s);
int rs_server_shutting_down(const rs_server *s);
/* Whether the call's metadata carries a valid bearer token (1 when auth is off). */
int rs_server_authorized(const rs_server *s, const grpc_metadata_array *md);
/* Drain accounting: a piece of accepted work begins (0: the server is
 * draining, refuse it) and ends. The drain's first phase waits for every
 * piece begun. */
int rs_server_work_begin(rs_server *s);
void rs_server_work_end(rs_server *s);

#endif
