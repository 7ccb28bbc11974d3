/* cli_engine.c — see cli_engine.h. */
#include "cli_engine.h"

#include <stdio.h>

#include "cli_common.h"

rs_engine *rs_cli_open_engine(const char *cmd, const rs_cli_engine_flags *fl) {
    char buf[4096];
    const char *dir = fl->model;
    if (!dir) {
        if (rs_cli_default_model(buf, sizeof buf) != RS_OK) {
            fprintf(stderr, "routescore %s: no --model given and no default router found (%s); run "
                            "`bash models/fetch.sh` first\n", cmd, buf);
            return NULL;
        }
        dir = buf;
    }
    rs_engine_opts o;
    rs_engine_opts_default(&o);
    o.n_threads = (int)fl->threads;
    o.max_tokens = (int)fl->max_tokens;
    o.max_batch_tokens = (int)fl->batch_tokens;
    if (fl->backend) o.backend = fl->backend;
    o.device = (int)fl->device;
    o.precision = fl->precision;
    rs_engine *e = NULL;
    rs_err err = {{0}};
    rs_status st = rs_engine_open(dir, &o, &e, &err);
    if (st != RS_OK) {
        fprintf(stderr, "routescore %s: %s: %s\n", cmd, rs_status_str(st), err.msg);
        return NULL;
    }
    return e;
}
