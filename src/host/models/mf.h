/* mf.h — RouteLLM's matrix-factorisation router (MFModel) on a prompt
 * embedding, read from RouteLLM's own checkpoint layout.
 *
 * RouteLLM (routellm/routers/matrix_factorization/model.py):
 *   s_m = classifier · (normalize(P[m]) ⊙ text_proj(e)),
 *   win_prob = sigmoid(s_strong − s_weak).
 * Tensors: "P.weight" [num_models, dim], "text_proj.0.weight" [dim, text_dim]
 * (absent when use_proj was false: then text_dim == dim), and
 * "classifier.0.weight" [1, dim]. Every layer is linear, so open folds them
 * into one vector v [text_dim] and scoring is sigmoid(v · e).
 *
 * Ownership: an rs_mf owns v; it is read-only after open and safe to share
 * between threads. */
#ifndef RS_MF_H
#define RS_MF_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "status.h"

typedef struct rs_mf rs_mf;

/* Opens the checkpoint `path` (safetensors). `models`: a JSON array of model
 * names in id order, or NULL for RouteLLM's table; strong and weak are
 * looked up by name in it. */
rs_status rs_mf_open(const char *path, const cJSON *models, const char *strong, const char *weak, rs_mf **out,
                     rs_err *err);
void rs_mf_close(rs_mf *m);

/* The prompt embedding's width (text_proj's input). */
int rs_mf_input_dim(const rs_mf *m);

/* P(strong wins) for one embedding emb[input_dim]. */
float rs_mf_win_prob(const rs_mf *m, const float *emb);

#endif
