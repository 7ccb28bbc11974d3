/* srv_config.h — the server's configuration: one JSON file, then flags.
 *
 * The file (docs/SERVING.md has the full reference):
 *   {"listen": "0.0.0.0:50051", "metrics_listen": "0.0.0.0:9090",
 *    "metrics_request_timeout_s": 5, "metrics_client_connections": 8,
 *    "metrics_max_connections": 1024, "metrics_open": false,
 *    "cq_threads": 2, "grace_period_s": 25, "log_level": "info",
 *    "max_request_bytes": 4194304, "max_prompts_per_request": 1024,
 *    "max_prompt_bytes": 262144, "stream_window": 16,
 *    "tls": {"cert": "server.pem", "key": "server.key", "client_ca": "ca.pem"},
 *    "auth": {"bearer_tokens_file": "tokens.txt"},
 *    "ext_proc": {"enabled": true, "router": "", "strong_model": "", "weak_model": "",
 *                 "rewrite_model": false, "fail_open": true},
 *    "routers": [{"name": "minilm-mf", "model": "models/routers/minilm-mf",
 *                 "threshold": 0.5, "backend": "cpu", "device": 0, "threads": 0,
 *                 "replicas": 1, "devices": [0, 1],
 *                 "max_tokens": 0, "max_batch_tokens": 16384, "max_batch_size": 256,
 *                 "max_queue_delay_us": 2000, "max_queue_tokens": 262144, "max_queue_wait_ms": 250,
 *                 "online": {"strong_share": 0.3, "window": 4096, "min_samples": 256}}]}
 * Relative paths are taken from the config file's directory. Every key is
 * checked: an unknown key, a wrong type or a value out of range is an error
 * that names the key. Flags (cli_serve.c) are applied on top, then
 * rs_srv_config_validate checks the whole. Plain data: no ownership. */
#ifndef RS_SRV_CONFIG_H
#define RS_SRV_CONFIG_H

#include "status.h"

#define RS_SRV_MAX_ROUTERS 16
#define RS_SRV_PATH 4096
#define RS_SRV_MAX_REPLICAS 16

typedef struct rs_srv_router_cfg {
    char name[128];            /* "" until resolved: manifest name or dir name */
    char model[RS_SRV_PATH];   /* router directory */
    int has_threshold;         /* threshold given here (overrides the manifest's) */
    float threshold;
    int threshold_flag;        /* it came from --threshold: reloads keep it */
    char backend[32];          /* "cpu", "cuda" or "auto" (cuda when a GPU is present) */
    int device;                /* GPU of every replica when `devices` is empty */
    int n_devices;             /* "devices": replica k runs on devices[k % n_devices] */
    int devices[RS_SRV_MAX_REPLICAS];
    int replicas;              /* engines serving this router, one worker each; 0: max(1, n_devices) */
    int threads;               /* engine threads per replica; 0: the cores / replicas */
    int max_tokens;            /* truncation; 0: the router's own */
    int max_batch_tokens;      /* token budget of one forward */
    int max_batch_size;        /* prompts in one forward */
    long max_queue_delay_us;   /* longest wait for companions while the engine is idle */
    long max_queue_tokens;     /* admitted, unfinished tokens; refuse beyond */
    long max_queue_wait_ms;    /* refuse when the queue's expected wait passes it; 0: off */
    int online;                /* online threshold mode */
    float online_share;        /* its target strong share, (0, 1] */
    int online_window;         /* scores in the sliding window */
    int online_min_samples;    /* fall back to the static threshold below this */
} rs_srv_router_cfg;

typedef struct rs_srv_config {
    char path[RS_SRV_PATH];          /* the config file, "" when none (SIGHUP re-reads it) */
    char listen[256];                /* gRPC host:port */
    char metrics_listen[256];        /* Prometheus host:port; "" disables */
    char http_listen[256];           /* HTTP/JSON API host:port; "" (the default) disables */
    double http_request_timeout_s;   /* an HTTP request's headers and body must arrive within this */
    int http_max_connections;        /* open HTTP API connections in all */
    double metrics_request_timeout_s; /* a request must arrive whole within this (not idle time) */
    int metrics_client_connections;  /* open connections per client address */
    int metrics_max_connections;     /* open connections in all */
    int metrics_open;                /* 1: /metrics needs no bearer token even when auth is on */
    int cq_threads;
    double grace_s;                  /* SIGTERM drain limit */
    long max_request_bytes;          /* gRPC max receive message length */
    int max_prompts;                 /* per request */
    long max_prompt_bytes;           /* per prompt */
    int stream_window;               /* in-flight requests per ScoreStream */
    char log_level[16];
    char tls_cert[RS_SRV_PATH], tls_key[RS_SRV_PATH], tls_client_ca[RS_SRV_PATH];
    char auth_tokens_file[RS_SRV_PATH];
    /* Envoy ext_proc (ext_proc.h): "ext_proc": {"enabled", "router",
     * "strong_model", "weak_model", "rewrite_model", "fail_open"}. */
    int ext_proc;                    /* serve envoy.service.ext_proc.v3.ExternalProcessor */
    char ext_proc_router[128];       /* router it scores with; "" the default router */
    char ext_proc_strong_model[256]; /* the model names it writes; "" the router manifest's */
    char ext_proc_weak_model[256];
    int ext_proc_rewrite_model;      /* 1: set the body's "model" to the chosen model */
    int ext_proc_fail_open;          /* 1 (default): a request it cannot score passes unchanged */
    int n_routers;
    rs_srv_router_cfg routers[RS_SRV_MAX_ROUTERS];
} rs_srv_config;

void rs_srv_config_default(rs_srv_config *c);
void rs_srv_router_default(rs_srv_router_cfg *r);
/* Reads the file into c (keys it does not name keep their values). */
rs_status rs_srv_config_load(const char *path, rs_srv_config *c, rs_err *err);
/* Cross-field checks and file existence (TLS files, token file, router dirs). */
rs_status rs_srv_config_validate(const rs_srv_config *c, rs_err *err);
/* "host:port" -> host (no brackets) and port; RS_ERR_INVALID_ARG if malformed. */
rs_status rs_srv_split_hostport(const char *s, char *host, int hn, int *port, rs_err *err);
/* Thresholds only, for SIGHUP: re-reads the config file (when there is one)
 * and each router's manifest. out[i] is the new default threshold of router
 * i, NaN when neither names one. Fails without changing anything when the
 * file no longer parses. */
rs_status rs_srv_config_thresholds(const rs_srv_config *c, float *out, rs_err *err);
/* Parses a device list "0,1,3" (distinct indices 0..1024, at most
 * RS_SRV_MAX_REPLICAS) into r->devices. */
rs_status rs_srv_parse_devices(const char *s, rs_srv_router_cfg *r, rs_err *err);
/* Replicas router r runs (its "replicas", else one per listed device, else 1). */
int rs_srv_replicas(const rs_srv_router_cfg *r);
/* Whether an authorization header value v (vl bytes, "Bearer <token>", the
 * scheme case-insensitive) carries one of the n tokens. Each tokens[i] is
 * 1..255 bytes, NUL-terminated and zero-padded to 256 bytes. Constant time
 * in the tokens (their bytes and lengths): no branch or memory access
 * depends on them (tests/unit/test_bearer_ct.c); shared by the gRPC and HTTP
 * endpoints. */
int rs_srv_bearer_ok(const char (*tokens)[256], int n, const char *v, size_t vl);

#endif
