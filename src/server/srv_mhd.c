/* srv_mhd.c — see srv_mhd.h. */
#include "srv_mhd.h"

#include <gnutls/gnutls.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "srv_config.h"

static void mhd_free(srv_mhd *l) {
    for (int i = 0; i < 3; i++) free(l->pem[i]);
    memset(l, 0, sizeof *l);
}

rs_status srv_mhd_listen(const srv_mhd_opts *o, srv_mhd *l, rs_err *err) {
    memset(l, 0, sizeof *l);
    char host[256];
    int port;
    rs_status st = rs_srv_split_hostport(o->addr, host, sizeof host, &port, err);
    if (st != RS_OK) return st;
    const int tls = o->tls_cert_pem && o->tls_key_pem;
    if (tls && !MHD_is_feature_supported(MHD_FEATURE_TLS))
        return rs_errf(err, RS_ERR_UNSUPPORTED, "%s: this libmicrohttpd has no TLS", o->what);
    const char *src[3] = {tls ? o->tls_cert_pem : NULL, tls ? o->tls_key_pem : NULL, tls ? o->tls_client_ca_pem : NULL};
    for (int i = 0; i < 3; i++)
        if (src[i] && !(l->pem[i] = strdup(src[i]))) {
            mhd_free(l);
            return rs_errf(err, RS_ERR_NOMEM, "no memory");
        }
    l->mtls = tls && l->pem[2];
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    const int gai = getaddrinfo(host, ps, &hints, &ai);
    if (gai != 0) {
        mhd_free(l);
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s %s: %s", o->addr_key, o->addr, gai_strerror(gai));
    }
    unsigned flags = o->mode | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    if (tls) flags |= MHD_USE_TLS;
    struct MHD_OptionItem opts[12];
    int n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, (intptr_t)o->max_connections, NULL};
    if (o->per_ip_connections > 0)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)o->per_ip_connections, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)(o->idle_timeout_s ? o->idle_timeout_s : 1), NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)o->memory_limit, NULL};
    if (o->on_connection) opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)o->on_connection, o->notify_cls};
    if (o->on_completed) opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)o->on_completed, o->notify_cls};
    if (tls) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, l->pem[0]};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, l->pem[1]};
        if (l->mtls) opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, l->pem[2]};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    l->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, o->handler, o->handler_cls, MHD_OPTION_ARRAY, opts,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!l->d) {
        mhd_free(l);
        return rs_errf(err, RS_ERR_IO, "%s: cannot listen on %s", o->what, o->addr);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_BIND_PORT);
    l->port = info ? info->port : port;
    return RS_OK;
}

void srv_mhd_stop(srv_mhd *l) {
    if (l->d) MHD_stop_daemon(l->d);
    mhd_free(l);
}

int srv_mhd_client_cert_ok(const srv_mhd *l, struct MHD_Connection *c) {
    if (!l->mtls) return 1;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session) return 0;
    gnutls_session_t ses = (gnutls_session_t)ci->tls_session;
    unsigned n = 0, status = 1;
    if (!gnutls_certificate_get_peers(ses, &n) || n == 0) return 0;
    return gnutls_certificate_verify_peers2(ses, &status) == GNUTLS_E_SUCCESS && status == 0;
}
