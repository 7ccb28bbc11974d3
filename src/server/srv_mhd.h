/* srv_mhd.h — one libmicrohttpd listener, as the /metrics endpoint
 * (metrics.c) and the HTTP/JSON API (http.c) both start theirs: resolve
 * "host:port", take the TLS / mTLS PEMs, build the daemon's options, start
 * it and read back the port it bound. What differs between the two (the
 * threading mode, the bound on request headers, the per-address limit, the
 * handlers) is in the options. Private to src/server/. */
#ifndef RS_SRV_MHD_H
#define RS_SRV_MHD_H

#include <microhttpd.h>
#include <stddef.h>

#include "status.h"

typedef struct srv_mhd_opts {
    const char *what;          /* "metrics", "http": the prefix of error messages */
    const char *addr_key;      /* the config key of addr, for messages ("metrics_listen") */
    const char *addr;          /* "host:port"; port 0 picks one */
    unsigned mode;             /* MHD flags of the threading mode (MHD_USE_EPOLL for external
                                  polling, MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, ...) */
    int max_connections;       /* open connections in all */
    int per_ip_connections;    /* per client address; 0: no limit */
    unsigned idle_timeout_s;   /* MHD's idle timeout (at least 1) */
    size_t memory_limit;       /* per connection: bounds the request headers */
    const char *tls_cert_pem, *tls_key_pem; /* both set: HTTPS (copied) */
    const char *tls_client_ca_pem;          /* and set: client certificates from this CA are asked for */
    MHD_AccessHandlerCallback handler;
    void *handler_cls;
    MHD_NotifyConnectionCallback on_connection; /* may be NULL */
    MHD_RequestCompletedCallback on_completed;  /* may be NULL */
    void *notify_cls;                           /* for both */
} srv_mhd_opts;

typedef struct srv_mhd {
    struct MHD_Daemon *d;
    int port;     /* the port bound */
    int mtls;     /* a client CA is set: check with srv_mhd_client_cert_ok */
    char *pem[3]; /* cert, key, client CA: MHD keeps pointers to them */
} srv_mhd;

/* Starts the daemon into *l (zeroed on failure, with a message naming
 * o->what / o->addr_key). */
rs_status srv_mhd_listen(const srv_mhd_opts *o, srv_mhd *l, rs_err *err);
/* Stops the daemon (joining MHD's own thread, if any) and frees *l's copies.
 * Safe on a zeroed srv_mhd. */
void srv_mhd_stop(srv_mhd *l);
/* mTLS: 1 when l has no client CA, or the connection presented a
 * certificate that verifies against it. */
int srv_mhd_client_cert_ok(const srv_mhd *l, struct MHD_Connection *c);

#endif
