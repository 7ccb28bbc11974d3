/* yaml_json.c — see yaml_json.h. libyaml's document API builds the node
 * graph (aliases are references to earlier nodes); this walks it once,
 * depth-first, with a depth and a node budget. */
#include "yaml_json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_NODES 100000

typedef struct walk {
    yaml_document_t *doc;
    const char *name;
    long budget;
    rs_err *err;
} walk;

static int is_one_of(const char *s, const char *const *words) {
    for (; *words; words++)
        if (!strcmp(s, *words)) return 1;
    return 0;
}

/* A plain scalar's value under the core schema (decimal numbers only). */
static cJSON *plain_scalar(const char *s, size_t len) {
    static const char *const TRUE_[] = {"true", "True", "TRUE", NULL};
    static const char *const FALSE_[] = {"false", "False", "FALSE", NULL};
    static const char *const NULL_[] = {"null", "Null", "NULL", "~", "", NULL};
    if (is_one_of(s, TRUE_)) return cJSON_CreateTrue();
    if (is_one_of(s, FALSE_)) return cJSON_CreateFalse();
    if (is_one_of(s, NULL_)) return cJSON_CreateNull();
    /* [-+]?(digits)(.digits)?([eE][-+]?digits)? and the like: strtod must
     * use every byte, and only these characters may appear (no inf, nan,
     * hex). */
    int digits = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            digits = 1;
        else if (!strchr("+-.eE", c))
            return cJSON_CreateString(s);
    }
    if (digits) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s + len && errno == 0 && isfinite(v)) return cJSON_CreateNumber(v);
    }
    return cJSON_CreateString(s);
}

static rs_status at(walk *w, const yaml_node_t *node, const char *what) {
    return rs_errf(w->err, RS_ERR_FORMAT, "config: %s: line %zu, column %zu: %s", w->name,
                   (size_t)node->start_mark.line + 1, (size_t)node->start_mark.column + 1, what);
}

static rs_status convert(walk *w, yaml_node_t *node, int depth, cJSON **out) {
    *out = NULL;
    if (--w->budget < 0) return at(w, node, "more than 100000 nodes (after aliases): refused");
    if (depth > MAX_DEPTH) return at(w, node, "nested more than 64 levels deep");
    switch (node->type) {
    case YAML_SCALAR_NODE: {
        const char *s = (const char *)node->data.scalar.value;
        const size_t len = node->data.scalar.length;
        if (strlen(s) != len) return at(w, node, "a NUL byte inside a scalar");
        *out = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? plain_scalar(s, len) : cJSON_CreateString(s);
        break;
    }
    case YAML_SEQUENCE_NODE:
        *out = cJSON_CreateArray();
        for (yaml_node_item_t *it = node->data.sequence.items.start; *out && it < node->data.sequence.items.top; it++) {
            cJSON *child;
            rs_status st = convert(w, yaml_document_get_node(w->doc, *it), depth + 1, &child);
            if (st != RS_OK) {
                cJSON_Delete(*out);
                *out = NULL;
                return st;
            }
            cJSON_AddItemToArray(*out, child);
        }
        break;
    case YAML_MAPPING_NODE:
        *out = cJSON_CreateObject();
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; *out && p < node->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
            rs_status st = RS_OK;
            if (k->type != YAML_SCALAR_NODE)
                st = at(w, k, "a mapping key must be a scalar");
            else if (cJSON_GetObjectItemCaseSensitive(*out, (const char *)k->data.scalar.value))
                st = rs_errf(w->err, RS_ERR_FORMAT, "config: %s: line %zu: key '%s' given twice", w->name,
                             (size_t)k->start_mark.line + 1, (const char *)k->data.scalar.value);
            cJSON *child = NULL;
            if (st == RS_OK) st = convert(w, yaml_document_get_node(w->doc, p->value), depth + 1, &child);
            if (st != RS_OK) {
                cJSON_Delete(*out);
                *out = NULL;
                return st;
            }
            cJSON_AddItemToObject(*out, (const char *)k->data.scalar.value, child);
        }
        break;
    default:
        return at(w, node, "an empty node");
    }
    return *out ? RS_OK : rs_errf(w->err, RS_ERR_NOMEM, "no memory");
}

rs_status rs_yaml_to_json(const char *buf, size_t n, const char *name, cJSON **out, rs_err *err) {
    *out = NULL;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return rs_errf(err, RS_ERR_NOMEM, "no memory for the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, n);
    yaml_document_t doc, extra;
    rs_status st = RS_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        st = rs_errf(err, RS_ERR_FORMAT, "config: %s: line %zu, column %zu: %s%s%s", name,
                     (size_t)parser.problem_mark.line + 1, (size_t)parser.problem_mark.column + 1,
                     parser.problem ? parser.problem : "not valid YAML", parser.context ? " " : "",
                     parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        st = rs_errf(err, RS_ERR_FORMAT, "config: %s holds no YAML document", name);
    } else if (!yaml_parser_load(&parser, &extra)) {
        st = rs_errf(err, RS_ERR_FORMAT, "config: %s: line %zu: %s", name, (size_t)parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "not valid YAML after the first document");
    } else {
        int more = yaml_document_get_root_node(&extra) != NULL;
        yaml_document_delete(&extra);
        if (more) {
            st = rs_errf(err, RS_ERR_FORMAT, "config: %s holds more than one YAML document", name);
        } else {
            walk w = {.doc = &doc, .name = name, .budget = MAX_NODES, .err = err};
            st = convert(&w, root, 0, out);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return st;
}
