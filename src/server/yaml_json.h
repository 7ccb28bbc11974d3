/* yaml_json.h — a YAML document (libyaml) as the cJSON tree the JSON config
 * reader takes, so `serve --config` reads either format through one set of
 * checks (srv_config.c).
 *
 * Mapping -> object, sequence -> array. A plain (unquoted) scalar is typed
 * by YAML 1.2's core schema as far as a config needs: true/false (any of
 * their three spellings), null, ~ or empty -> null, a decimal number ->
 * number; anything else, and every quoted or block scalar, is a string.
 * Aliases are followed. Refused with the line and column: syntax errors,
 * more than one document, keys that are not scalars, a key given twice,
 * more than 64 levels of nesting or 100,000 nodes after aliases are
 * expanded (an alias bomb stops there). */
#ifndef RS_YAML_JSON_H
#define RS_YAML_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "status.h"

/* buf[0..n) is the file's text; name is used in messages. */
rs_status rs_yaml_to_json(const char *buf, size_t n, const char *name, cJSON **out, rs_err *err);

#endif
