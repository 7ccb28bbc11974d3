/* cli_serve.c — `routescore serve`: configuration (file, then flags),
 * --check-config, signals, and the server's lifecycle (server.h).
 *
 * Signals are blocked in every thread before any thread starts; one thread
 * takes them with sigwait and turns them into server events, so no work ever
 * runs in a signal handler. SIGTERM/SIGINT drain, SIGHUP reloads thresholds.
 * Exit codes: 0 drained cleanly, 1 calls were cancelled at the grace limit,
 * 2 bad configuration or start-up failure, 3 an engine failed while serving. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_common.h"
#include "engine.h"
#include "server.h"
#include "srv_config.h"
#include "srv_log.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: routescore serve [--config FILE] [--model DIR] [options]\n"
            "\n"
            "Serves routescore.v1.Scorer (gRPC), grpc.health.v1.Health, server reflection and\n"
            "Prometheus metrics. Flags override the config file (docs/SERVING.md).\n"
            "\n"
            "  --config FILE            JSON config (routers, listen, TLS, auth, limits)\n"
            "  --model DIR              serve this one router (replaces the config's routers;\n"
            "                           default: the default router, as for `routescore score`)\n"
            "  --name NAME              its name (default: manifest name, else directory name)\n"
            "  --listen HOST:PORT       gRPC address (default 0.0.0.0:50051)\n"
            "  --port P                 gRPC port on the listen host\n"
            "  --metrics-listen HOST:PORT  Prometheus address ('' disables; default 0.0.0.0:9090)\n"
            "  --metrics-port P         Prometheus port on the metrics host\n"
            "  --http-listen HOST:PORT  HTTP/JSON API address (default: off)\n"
            "  --http-port P            HTTP/JSON API port on the gRPC listen host\n"
            "  --http-request-timeout S an HTTP request's headers and body must arrive within S seconds (default 5)\n"
            "  --threshold X            default decision threshold of every router\n"
            "  --online-share S         online threshold mode: keep a share S of strong routes\n"
            "  --max-batch-tokens N     --max-batch-size N    --max-queue-delay-us N\n"
            "  --max-queue-tokens N     --max-tokens N        --threads N (per replica)\n"
            "  --max-queue-wait-ms N    refuse when the queue's expected wait passes N ms (0: off; default 250)\n"
            "  --metrics-request-timeout S  a /metrics request must arrive within S seconds (default 5)\n"
            "  --metrics-client-connections N  open /metrics connections per client address (default 8)\n"
            "  --backend B              cpu, cuda or auto (cuda when a GPU is present; default cpu)\n"
            "  --device N               the GPU of a cuda router\n"
            "  --devices 0,1            one replica per GPU listed (batches spread across them)\n"
            "  --replicas N             engines per router, one worker each (CPU: they share the cores)\n"
            "  --cq-threads N           completion-queue threads (default 2)\n"
            "  --grace S                SIGTERM drain limit in seconds (default 25)\n"
            "  --max-request-bytes N    --max-prompts N       --max-prompt-bytes N\n"
            "  --stream-window N        in-flight requests per ScoreStream (default 16)\n"
            "  --tls-cert F --tls-key F [--tls-client-ca F]   TLS, and mTLS with a client CA\n"
            "  --auth-tokens FILE       require 'authorization: Bearer <token>' (one token a line)\n"
            "  --ext-proc               also serve Envoy's ext_proc (envoy.service.ext_proc.v3.ExternalProcessor)\n"
            "  --ext-proc-router NAME   the router it scores with (default: the default router)\n"
            "  --ext-proc-rewrite-model set the chat body's \"model\" to the chosen model\n"
            "  --ext-proc-strong-model M --ext-proc-weak-model M   the names it writes (default: the manifest's)\n"
            "  --ext-proc-fail-closed   refuse (503/400) what it cannot score, instead of passing it unchanged\n"
            "  --log-level L            debug, info, warn, error\n"
            "  --check-config           validate everything, open the routers, print a summary, exit\n");
}

enum {
    O_CONFIG = 1000, O_MODEL, O_NAME, O_LISTEN, O_PORT, O_MLISTEN, O_MPORT, O_THRESHOLD, O_ONLINE,
    O_MBT, O_MBS, O_DELAY, O_MQT, O_MAXTOK, O_THREADS, O_CQ, O_GRACE, O_MREQ, O_MPROMPTS, O_MPBYTES,
    O_WINDOW, O_CERT, O_KEY, O_CA, O_AUTH, O_LOG, O_CHECK, O_HELP, O_BACKEND, O_DEVICE, O_DEVICES, O_REPLICAS,
    O_MQW, O_MTIMEOUT, O_MCLIENT, O_HLISTEN, O_HPORT, O_HTIMEOUT, O_XP, O_XP_ROUTER, O_XP_REWRITE, O_XP_STRONG, O_XP_WEAK, O_XP_CLOSED
};

typedef struct flag_overrides {
    const char *hlisten;
    long hport;
    double htimeout;
    int has_hport, has_htimeout;
    const char *model, *name, *listen, *mlisten, *cert, *key, *ca, *auth, *log, *backend, *devices;
    const char *xp_router, *xp_strong, *xp_weak;
    int xp, xp_rewrite, xp_closed;
    long port, mport, mbt, mbs, delay, mqt, maxtok, threads, cq, mreq, mprompts, mpbytes, window, device, replicas;
    long mqw, mclient;
    double threshold, online, grace, mtimeout;
    int has_port, has_mport, has_threshold, has_online, has_grace, has_mqw, has_mtimeout;
    int has_mbt, has_mbs, has_delay, has_mqt, has_maxtok, has_threads, has_device;
} flag_overrides;

static void set_port(char *hostport, size_t n, long port) {
    char host[256] = "0.0.0.0";
    const char *colon = strrchr(hostport, ':');
    if (colon && colon != hostport) snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
    snprintf(hostport, n, "%s:%ld", host, port);
}

static rs_status apply(const flag_overrides *f, rs_srv_config *c, rs_err *err) {
    if (f->model) {
        c->n_routers = 1;
        rs_srv_router_default(&c->routers[0]);
        snprintf(c->routers[0].model, sizeof c->routers[0].model, "%s", f->model);
    }
    if (f->name && c->n_routers) snprintf(c->routers[0].name, sizeof c->routers[0].name, "%s", f->name);
    if (f->listen) snprintf(c->listen, sizeof c->listen, "%s", f->listen);
    if (f->has_port) set_port(c->listen, sizeof c->listen, f->port);
    if (f->mlisten) snprintf(c->metrics_listen, sizeof c->metrics_listen, "%s", f->mlisten);
    if (f->has_mport) set_port(c->metrics_listen, sizeof c->metrics_listen, f->mport);
    if (f->hlisten) snprintf(c->http_listen, sizeof c->http_listen, "%s", f->hlisten);
    if (f->has_hport) {
        snprintf(c->http_listen, sizeof c->http_listen, "%s", c->listen);
        set_port(c->http_listen, sizeof c->http_listen, f->hport);
    }
    if (f->has_htimeout) c->http_request_timeout_s = f->htimeout;
    if (f->cert) snprintf(c->tls_cert, sizeof c->tls_cert, "%s", f->cert);
    if (f->key) snprintf(c->tls_key, sizeof c->tls_key, "%s", f->key);
    if (f->ca) snprintf(c->tls_client_ca, sizeof c->tls_client_ca, "%s", f->ca);
    if (f->auth) snprintf(c->auth_tokens_file, sizeof c->auth_tokens_file, "%s", f->auth);
    if (f->log) snprintf(c->log_level, sizeof c->log_level, "%s", f->log);
    if (f->cq) c->cq_threads = (int)f->cq;
    if (f->has_grace) c->grace_s = f->grace;
    if (f->mreq) c->max_request_bytes = f->mreq;
    if (f->mprompts) c->max_prompts = (int)f->mprompts;
    if (f->mpbytes) c->max_prompt_bytes = f->mpbytes;
    if (f->window) c->stream_window = (int)f->window;
    if (f->has_mtimeout) c->metrics_request_timeout_s = f->mtimeout;
    if (f->mclient) c->metrics_client_connections = (int)f->mclient;
    if (f->xp) c->ext_proc = 1;
    if ((f->xp_router && strlen(f->xp_router) >= sizeof c->ext_proc_router) ||
        (f->xp_strong && strlen(f->xp_strong) >= sizeof c->ext_proc_strong_model) ||
        (f->xp_weak && strlen(f->xp_weak) >= sizeof c->ext_proc_weak_model))
        return rs_errf(err, RS_ERR_INVALID_ARG, "--ext-proc-router / --ext-proc-strong-model / --ext-proc-weak-model: too long");
    if (f->xp_router) snprintf(c->ext_proc_router, sizeof c->ext_proc_router, "%s", f->xp_router);
    if (f->xp_strong) snprintf(c->ext_proc_strong_model, sizeof c->ext_proc_strong_model, "%s", f->xp_strong);
    if (f->xp_weak) snprintf(c->ext_proc_weak_model, sizeof c->ext_proc_weak_model, "%s", f->xp_weak);
    if (f->xp_rewrite) c->ext_proc_rewrite_model = 1;
    if (f->xp_closed) c->ext_proc_fail_open = 0;
    for (int i = 0; i < c->n_routers; i++) {
        rs_srv_router_cfg *r = &c->routers[i];
        if (f->has_threshold) {
            r->has_threshold = r->threshold_flag = 1;
            r->threshold = (float)f->threshold;
        }
        if (f->has_online) {
            r->online = 1;
            r->online_share = (float)f->online;
        }
        if (f->has_mbt) r->max_batch_tokens = (int)f->mbt;
        if (f->has_mbs) r->max_batch_size = (int)f->mbs;
        if (f->has_delay) r->max_queue_delay_us = f->delay;
        if (f->has_mqt) r->max_queue_tokens = f->mqt;
        else if (f->has_mbt && r->max_queue_tokens < r->max_batch_tokens) r->max_queue_tokens = 16L * r->max_batch_tokens;
        if (f->has_maxtok) r->max_tokens = (int)f->maxtok;
        if (f->has_mqw) r->max_queue_wait_ms = f->mqw;
        if (f->has_threads) r->threads = (int)f->threads;
        if (f->backend) snprintf(r->backend, sizeof r->backend, "%s", f->backend);
        if (f->has_device) {
            r->device = (int)f->device;
            r->n_devices = 0;
        }
        if (f->devices) {
            rs_status st = rs_srv_parse_devices(f->devices, r, err);
            if (st != RS_OK) return st;
        }
        if (f->replicas) r->replicas = (int)f->replicas;
    }
    return RS_OK;
}

/* --check-config: open every router (this validates manifests and weights)
 * and print what would be served; nothing on stdout when one fails. */
static int check_config(const rs_srv_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&text, &len);
    if (!o) {
        fprintf(stderr, "routescore serve: out of memory\n");
        return 2;
    }
    fprintf(o, "{\"config\":\"ok\",\"listen\":\"%s\",\"metrics_listen\":\"%s\",\"tls\":%s,\"auth\":%s,\"routers\":[",
            c->listen, c->metrics_listen, c->tls_cert[0] ? "true" : "false", c->auth_tokens_file[0] ? "true" : "false");
    int rc = 0;
    for (int i = 0; i < c->n_routers && rc == 0; i++) {
        const rs_srv_router_cfg *r = &c->routers[i];
        char label[160];
        snprintf(label, sizeof label, "%s", r->name[0] ? r->name : "(unnamed)");
        rs_router_info info;
        char name[256] = "";
        const char *backend = "";
        const int n_rep = rs_srv_replicas(r);
        for (int k = 0; k < n_rep && rc == 0; k++) { /* every replica: each may name another device */
            rs_engine *e;
            rs_err err = {{0}};
            if (rs_server_open_router(r, label, k, 1, &e, &info, &err) != RS_OK) {
                fprintf(stderr, "routescore serve: routers[%d]: %s\n", i, err.msg);
                rc = 2;
                break;
            }
            backend = rs_engine_backend(e); /* a static name, as info.kind */
            snprintf(name, sizeof name, "%s", r->name[0] ? r->name : info.name);
            rs_engine_close(e); /* info's other strings go with it */
        }
        if (rc) break;
        fprintf(o, "%s{\"name\":", i ? "," : "");
        rs_cli_write_json_string(o, name, strlen(name));
        fprintf(o, ",\"kind\":\"%s\",\"threshold\":%.6g,\"max_tokens\":%d,\"client_embedding_dim\":%d,"
                   "\"backend\":\"%s\",\"replicas\":%d}",
                info.kind, (double)(r->has_threshold ? r->threshold : info.threshold), info.max_tokens,
                info.client_embed_dim, backend, n_rep);
    }
    fclose(o);
    if (rc == 0) printf("%s]}\n", text);
    free(text);
    return rc;
}

typedef struct sig_ctx {
    rs_server *srv;
    sigset_t set;
} sig_ctx;

static void *signal_main(void *arg) {
    sig_ctx *sc = arg;
    for (;;) {
        int sig;
        if (sigwait(&sc->set, &sig) != 0) continue;
        if (sig == SIGHUP)
            rs_server_notify(sc->srv, RS_EV_HUP);
        else
            rs_server_notify(sc->srv, RS_EV_TERM);
    }
    return NULL;
}

int rs_cli_serve(int argc, char **argv) {
    static const struct option LONG[] = {
        {"config", required_argument, 0, O_CONFIG},          {"model", required_argument, 0, O_MODEL},
        {"name", required_argument, 0, O_NAME},              {"listen", required_argument, 0, O_LISTEN},
        {"port", required_argument, 0, O_PORT},              {"metrics-listen", required_argument, 0, O_MLISTEN},
        {"metrics-port", required_argument, 0, O_MPORT},     {"threshold", required_argument, 0, O_THRESHOLD},
        {"online-share", required_argument, 0, O_ONLINE},    {"max-batch-tokens", required_argument, 0, O_MBT},
        {"max-batch-size", required_argument, 0, O_MBS},     {"max-queue-delay-us", required_argument, 0, O_DELAY},
        {"max-queue-tokens", required_argument, 0, O_MQT},   {"max-tokens", required_argument, 0, O_MAXTOK},
        {"threads", required_argument, 0, O_THREADS},        {"cq-threads", required_argument, 0, O_CQ},
        {"grace", required_argument, 0, O_GRACE},            {"max-request-bytes", required_argument, 0, O_MREQ},
        {"max-prompts", required_argument, 0, O_MPROMPTS},   {"max-prompt-bytes", required_argument, 0, O_MPBYTES},
        {"stream-window", required_argument, 0, O_WINDOW},   {"tls-cert", required_argument, 0, O_CERT},
        {"tls-key", required_argument, 0, O_KEY},            {"tls-client-ca", required_argument, 0, O_CA},
        {"auth-tokens", required_argument, 0, O_AUTH},       {"log-level", required_argument, 0, O_LOG},
        {"max-queue-wait-ms", required_argument, 0, O_MQW},
        {"metrics-request-timeout", required_argument, 0, O_MTIMEOUT},
        {"metrics-client-connections", required_argument, 0, O_MCLIENT},
        {"http-listen", required_argument, 0, O_HLISTEN},    {"http-port", required_argument, 0, O_HPORT},
        {"http-request-timeout", required_argument, 0, O_HTIMEOUT},
        {"check-config", no_argument, 0, O_CHECK},           {"help", no_argument, 0, O_HELP},
        {"backend", required_argument, 0, O_BACKEND},        {"device", required_argument, 0, O_DEVICE},
        {"devices", required_argument, 0, O_DEVICES},        {"replicas", required_argument, 0, O_REPLICAS},
        {"ext-proc", no_argument, 0, O_XP},                  {"ext-proc-router", required_argument, 0, O_XP_ROUTER},
        {"ext-proc-rewrite-model", no_argument, 0, O_XP_REWRITE},
        {"ext-proc-strong-model", required_argument, 0, O_XP_STRONG},
        {"ext-proc-weak-model", required_argument, 0, O_XP_WEAK},
        {"ext-proc-fail-closed", no_argument, 0, O_XP_CLOSED},
        {0, 0, 0, 0}};
    flag_overrides f = {0};
    const char *config_path = NULL;
    int check = 0;
    rs_err err = {{0}};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", LONG, NULL)) != -1;) {
        rs_status st = RS_OK;
        switch (c) {
        case O_CONFIG: config_path = optarg; break;
        case O_MODEL: f.model = optarg; break;
        case O_NAME: f.name = optarg; break;
        case O_LISTEN: f.listen = optarg; break;
        case O_PORT: st = rs_cli_parse_int("--port", optarg, 0, 65535, &f.port, &err), f.has_port = 1; break;
        case O_MLISTEN: f.mlisten = optarg; break;
        case O_HLISTEN: f.hlisten = optarg; break;
        case O_HPORT: st = rs_cli_parse_int("--http-port", optarg, 0, 65535, &f.hport, &err), f.has_hport = 1; break;
        case O_HTIMEOUT:
            st = rs_cli_parse_float("--http-request-timeout", optarg, 0.01, 3600, &f.htimeout, &err), f.has_htimeout = 1;
            break;
        case O_MPORT: st = rs_cli_parse_int("--metrics-port", optarg, 0, 65535, &f.mport, &err), f.has_mport = 1; break;
        case O_THRESHOLD: st = rs_cli_parse_float("--threshold", optarg, 0, 1, &f.threshold, &err), f.has_threshold = 1; break;
        case O_ONLINE: st = rs_cli_parse_float("--online-share", optarg, 1e-6, 1, &f.online, &err), f.has_online = 1; break;
        case O_MBT: st = rs_cli_parse_int("--max-batch-tokens", optarg, 16, 1 << 22, &f.mbt, &err), f.has_mbt = 1; break;
        case O_MBS: st = rs_cli_parse_int("--max-batch-size", optarg, 1, 512, &f.mbs, &err), f.has_mbs = 1; break;
        case O_DELAY: st = rs_cli_parse_int("--max-queue-delay-us", optarg, 0, 10000000, &f.delay, &err), f.has_delay = 1; break;
        case O_MQT: st = rs_cli_parse_int("--max-queue-tokens", optarg, 16, 1L << 30, &f.mqt, &err), f.has_mqt = 1; break;
        case O_MAXTOK: st = rs_cli_parse_int("--max-tokens", optarg, 3, 1 << 20, &f.maxtok, &err), f.has_maxtok = 1; break;
        case O_THREADS: st = rs_cli_parse_int("--threads", optarg, 1, 1024, &f.threads, &err), f.has_threads = 1; break;
        case O_CQ: st = rs_cli_parse_int("--cq-threads", optarg, 1, 64, &f.cq, &err); break;
        case O_GRACE: st = rs_cli_parse_float("--grace", optarg, 0, 3600, &f.grace, &err), f.has_grace = 1; break;
        case O_MREQ: st = rs_cli_parse_int("--max-request-bytes", optarg, 1024, 1L << 30, &f.mreq, &err); break;
        case O_MPROMPTS: st = rs_cli_parse_int("--max-prompts", optarg, 1, 65536, &f.mprompts, &err); break;
        case O_MPBYTES: st = rs_cli_parse_int("--max-prompt-bytes", optarg, 1, 1L << 28, &f.mpbytes, &err); break;
        case O_WINDOW: st = rs_cli_parse_int("--stream-window", optarg, 1, 4096, &f.window, &err); break;
        case O_CERT: f.cert = optarg; break;
        case O_KEY: f.key = optarg; break;
        case O_CA: f.ca = optarg; break;
        case O_AUTH: f.auth = optarg; break;
        case O_LOG: f.log = optarg; break;
        case O_CHECK: check = 1; break;
        case O_MQW: st = rs_cli_parse_int("--max-queue-wait-ms", optarg, 0, 3600000, &f.mqw, &err), f.has_mqw = 1; break;
        case O_MTIMEOUT:
            st = rs_cli_parse_float("--metrics-request-timeout", optarg, 0.01, 3600, &f.mtimeout, &err), f.has_mtimeout = 1;
            break;
        case O_MCLIENT: st = rs_cli_parse_int("--metrics-client-connections", optarg, 1, 4096, &f.mclient, &err); break;
        case O_BACKEND: f.backend = optarg; break;
        case O_DEVICE: st = rs_cli_parse_int("--device", optarg, 0, 1024, &f.device, &err), f.has_device = 1; break;
        case O_DEVICES: f.devices = optarg; break;
        case O_XP: f.xp = 1; break;
        case O_XP_ROUTER: f.xp_router = optarg; break;
        case O_XP_REWRITE: f.xp_rewrite = 1; break;
        case O_XP_STRONG: f.xp_strong = optarg; break;
        case O_XP_WEAK: f.xp_weak = optarg; break;
        case O_XP_CLOSED: f.xp_closed = 1; break;
        case O_REPLICAS: st = rs_cli_parse_int("--replicas", optarg, 1, RS_SRV_MAX_REPLICAS, &f.replicas, &err); break;
        case O_HELP:
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (st != RS_OK) {
            fprintf(stderr, "routescore serve: %s\n", err.msg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "routescore serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    rs_srv_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return 2;
    rs_srv_config_default(cfg);
    int rc = 2;
    if (config_path && rs_srv_config_load(config_path, cfg, &err) != RS_OK) {
        fprintf(stderr, "routescore serve: %s\n", err.msg);
        goto out;
    }
    if (!f.model && cfg->n_routers == 0) { /* no router named anywhere: the default one */
        static char def[RS_SRV_PATH];
        if (rs_cli_default_model(def, sizeof def) != RS_OK) {
            fprintf(stderr, "routescore serve: no router given (--model or --config) and no default router: %s\n", def);
            goto out;
        }
        f.model = def;
    }
    if (apply(&f, cfg, &err) != RS_OK || rs_srv_config_validate(cfg, &err) != RS_OK) {
        fprintf(stderr, "routescore serve: %s\n", err.msg);
        goto out;
    }
    rs_log_level lvl;
    rs_log_parse_level(cfg->log_level, &lvl);
    rs_log_set_level(lvl);
    if (check) {
        rc = check_config(cfg);
        goto out;
    }

    /* Block the signals before any thread exists, so that all inherit it. */
    static sig_ctx sc;
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGTERM);
    sigaddset(&sc.set, SIGINT);
    sigaddset(&sc.set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
    signal(SIGPIPE, SIG_IGN);

    rs_server *srv;
    if (rs_server_create(cfg, &srv, &err) != RS_OK) {
        char esc[600];
        rs_log(RS_LOG_ERROR, "start_failed", "\"message\":\"%s\"", rs_log_esc(esc, sizeof esc, err.msg));
        goto out;
    }
    sc.srv = srv;
    pthread_t sig_thread;
    if (pthread_create(&sig_thread, NULL, signal_main, &sc) != 0) {
        rs_server_free(srv);
        goto out;
    }
    pthread_detach(sig_thread);
    if (rs_server_load(srv, &err) != RS_OK) {
        char esc[600];
        rs_log(RS_LOG_ERROR, "load_failed", "\"message\":\"%s\"", rs_log_esc(esc, sizeof esc, err.msg));
        rs_server_free(srv);
        goto out;
    }
    for (;;) {
        int ev = rs_server_wait_event(srv);
        if (ev & (RS_EV_TERM | RS_EV_FATAL)) break;
        if (ev & RS_EV_HUP) rs_server_reload(srv);
    }
    rc = rs_server_drain(srv);
    rs_server_free(srv);
    rs_log(RS_LOG_INFO, "exit", "\"code\":%d", rc);
out:
    free(cfg);
    return rc;
}
