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
 * Calls: a Process stream is one of the gRPC server's calls (kind
 * CK_EXTPROC in server_call.c: the same completion queue, threads, state
 * machine and drain); this module holds the protocol: what each
 * ProcessingRequest is answered with, and scoring as a one-prompt Score
 * request (server_request.c). All functions run with the call's mutex
 * held, on a completion-queue thread. */
#ifndef RS_EXT_PROC_H
#define RS_EXT_PROC_H

#include <stddef.h>
#include <stdint.h>

#include "server_int.h"

/* At start-up: the configured router exists (RS_ERR_INVALID_ARG if not). */
rs_status srv_xp_check(const rs_server *s, rs_err *err);
/* A stream arrived (authorized, not draining): its state, or NULL (no memory). */
srv_xp *srv_xp_new(const rs_server *s);
/* The stream's state goes with the call (ends its drain accounting). NULL: nothing. */
void srv_xp_free(rs_server *s, srv_xp *x);
/* One ProcessingRequest: answered (srv_call_push), or its body submitted
 * for scoring (srv_call_submit), or the stream ended (srv_call_status). */
void srv_xp_on_message(rs_call *c, const uint8_t *data, size_t len);
/* The body's request is done: its answer; r is freed. */
void srv_xp_on_scored(rs_call *c, rs_req *r);

#endif
