/* ext_proc.h — Envoy's external processing service
 * (envoy.service.ext_proc.v3.ExternalProcessor/Process) on the server's
 * gRPC port, routing OpenAI chat requests.
 *
 * One Process stream per HTTP request that Envoy's ext_proc filter sees.
 * For `POST /v1/chat/completions` with a buffered body (request_body_mode
 * BUFFERED) the last user message is scored through the router's batcher,
 * as a Score call would be, and the body's answer sets
 * x-routescore-route, x-routescore-model, x-routescore-win-prob (and
 * x-routescore-threshold, x-routescore-router) on the request, clears the
 * route cache so that routes can match them, and, with rewrite_model,
 * replaces the body's "model". Request headers x-routescore-threshold or
 * x-routescore-strong-share choose the decision rule, x-routescore-router
 * the router. Any other request passes unchanged; client-sent
 * x-routescore-route/-model/-win-prob headers are always removed, so they
 * cannot be forged. What cannot be scored (a malformed body, no user
 * message, queue full, draining) passes unchanged with x-routescore-error
 * (fail-open) or is answered by Envoy with an error status (fail-closed:
 * 400 for the request's fault, 429/503/504 for the server's).
 *
 * Threads: calls are served on a completion queue of their own by threads
 * of their own (cq_threads of them); scoring is the router's batcher's. */
#ifndef RS_EXT_PROC_H
#define RS_EXT_PROC_H

#include <grpc/grpc.h>

#include "server.h"
#include "status.h"

typedef struct rs_ext_proc rs_ext_proc;

/* Before grpc_server_start: registers the method and a completion queue on
 * g. Checks the configured router name. */
rs_status rs_ext_proc_create(rs_server *s, grpc_server *g, rs_ext_proc **out, rs_err *err);
/* After grpc_server_start: arms calls and starts the threads. NULL: nothing. */
void rs_ext_proc_start(rs_ext_proc *x);
/* The server is shutting down: idle streams end. NULL: nothing. */
void rs_ext_proc_wake(rs_ext_proc *x);
/* After grpc_server_destroy (every call is over at the transport and the
 * batchers are stopped): ends the threads and frees. NULL: nothing. */
void rs_ext_proc_free(rs_ext_proc *x);

#endif
