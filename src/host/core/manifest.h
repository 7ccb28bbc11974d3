/* manifest.h — a router's routescore.json, parsed once into a typed struct.
 *
 * Every key any router kind reads is here, checked for its type and range
 * when the manifest is opened, so a kind, the pins, train and calibrate
 * read fields instead of the JSON (docs/ARCHITECTURE.md, "Router
 * directories"). Absent keys are NULL / has_* 0; defaults stay with whoever
 * applies them (the kinds), since they differ per kind.
 *
 * Ownership: an rs_manifest owns the parsed JSON; its strings point into it
 * and live until rs_manifest_close. Read-only after open. */
#ifndef RS_MANIFEST_H
#define RS_MANIFEST_H

#include <cjson/cJSON.h>

#include "status.h"

#define RS_MANIFEST_MAX_LABELS 8 /* engine.h's RS_MAX_LABELS */
#define RS_MANIFEST_PATH 4096

typedef struct rs_manifest {
    cJSON *json;               /* the whole manifest (owned) */
    char path[RS_MANIFEST_PATH + 32]; /* dir/routescore.json, for messages */
    /* shared by every kind */
    const char *kind;          /* "bert" when absent */
    const char *name, *strong_model, *weak_model;
    const char *encoder;       /* as written */
    char encoder_dir[RS_MANIFEST_PATH]; /* encoder joined to the router dir; "" when absent */
    int has_threshold;
    float threshold;           /* [0, 1] */
    int max_tokens;            /* [3, 1e6]; 0 absent */
    const char *precision;     /* "fp32", "bf16", "bf16-emulated" */
    int has_parse_special, parse_special;
    /* encoder kinds */
    const char *head;          /* mf: the head file */
    const char *pooling;       /* "mean", "cls", "last" */
    int has_normalize, normalize;
    int encoder_layers;        /* [1, 1024]; 0 absent */
    int n_strong_labels;       /* 0 absent, else 1..8 */
    int strong_labels[RS_MANIFEST_MAX_LABELS]; /* each in [0, 8) */
    /* mf_routellm / sw_ranking */
    const char *checkpoint, *battles;
    const cJSON *models;       /* array of model-name strings */
    int num_tiers;             /* [1, 64]; 0 absent */
    /* causal_llm */
    const char *tokenizer, *system_file, *classifier_file;
    int max_new_tokens;        /* [1, 64]; 0 absent */
    int max_slots;             /* [1, 4096]; 0 absent */
    int tensor_parallel;       /* [1, 64]; 0 absent (the model checks its own maximum) */
    int orig_vocab_size;       /* >= 1; 0 absent */
    int has_allreduce_timeout;
    int allreduce_timeout_ms;  /* [0, 3600000] */
    /* pins (pins.h checks them) */
    const cJSON *sha256;
} rs_manifest;

/* Opens dir/routescore.json. *found = 0 (and RS_OK, m zeroed) when the
 * router has none. RS_ERR_FORMAT for JSON that is not an object,
 * RS_ERR_INVALID_ARG for a key of the wrong type or out of range, each
 * naming the file and the key. On error m holds nothing to close. */
rs_status rs_manifest_open(const char *dir, rs_manifest *m, int *found, rs_err *err);
/* The same over JSON already parsed; takes ownership of json (also on
 * error, when it is freed). */
rs_status rs_manifest_from_json(const char *dir, cJSON *json, rs_manifest *m, rs_err *err);
void rs_manifest_close(rs_manifest *m);

/* Non-zero for a key some router kind, train or the pins use: a pinned
 * manifest may hold no other (pins.h). */
int rs_manifest_known_key(const char *key);

#endif
