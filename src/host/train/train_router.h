/* train_router.h — the router directory `routescore train` writes: the
 * fitted head as head.safetensors ("mf.weight" [d], "mf.bias" [1],
 * "mf.length_weight" [1] with the length term) and routescore.json (kind
 * "mf", the encoder as a path relative to the router, the fit's summary
 * under "trained", and sha256 pins of every file the router reads, the
 * manifest's own included). */
#ifndef RS_TRAIN_ROUTER_H
#define RS_TRAIN_ROUTER_H

#include "status.h"
#include "train.h"

typedef struct rs_train_router {
    const char *out;     /* the router directory (must exist: rs_train_mkdir_p) */
    const char *encoder; /* a model directory, or a router directory of kind "embed" whose keys carry over */
    const char *source;  /* the training file (its base name is recorded) */
    const char *name;    /* NULL: the directory's name */
    const float *head;   /* [w (d), lw (nf > d), b] */
    int d, nf;
    double threshold, l2;
    int standardized;
    const rs_train_split *split;
    const rs_train_metrics *heldout;
} rs_train_router;

/* head.safetensors, then routescore.json, each through a temp file +
 * rename: an interrupted run leaves the old pair, or the new head beside
 * the old manifest, never a torn file. */
rs_status rs_train_router_write(const rs_train_router *r, rs_err *err);
/* mkdir -p; an error when dir ends up not a directory. */
rs_status rs_train_mkdir_p(const char *dir, rs_err *err);

#endif
