/* pins.h — sha256 pins of a router's files, kept in its routescore.json.
 *
 * A manifest may carry
 *   "sha256": {"head.safetensors": "<64 hex>", "../enc/model.safetensors": "...",
 *              "routescore.json": "<digest of the manifest itself>"}
 * Paths are relative to the router directory (or absolute). Every pin found is
 * checked when the router opens: a file whose digest differs, a file that is
 * missing, or a malformed pin is an error naming the file. The
 * "routescore.json" entry pins the manifest's own content: the sha256 of its
 * compact cJSON print without the members that do not decide scores ("sha256",
 * "threshold", "name", "strong_model", "weak_model"), so a changed number
 * (max_tokens, encoder_layers) is caught while a threshold may still be
 * edited by hand, by calibrate or before a SIGHUP reload. A pinned manifest may hold only
 * the keys routescore knows, so a mistyped key cannot silently fall back to a
 * default.
 *
 * Pure functions; no state. */
#ifndef RS_PINS_H
#define RS_PINS_H

#include <cjson/cJSON.h>

#include "manifest.h"
#include "status.h"

#define RS_SHA256_HEX 65 /* 64 hex digits and a NUL */

/* sha256 of a whole file, as lowercase hex. */
rs_status rs_pins_sha256_file(const char *path, char hex[RS_SHA256_HEX], rs_err *err);

/* The manifest's self-digest (see above). */
rs_status rs_pins_manifest_digest(const cJSON *manifest, char hex[RS_SHA256_HEX], rs_err *err);

/* Checks every pin of the manifest (none: RS_OK). RS_ERR_FORMAT for a
 * mismatch or a malformed pin, RS_ERR_IO / RS_ERR_NOT_FOUND for a pinned file
 * that cannot be read. */
rs_status rs_pins_check(const char *router_dir, const rs_manifest *manifest, rs_err *err);

/* Sets manifest["sha256"]["routescore.json"] to the manifest's digest when the
 * manifest carries pins (after a tool such as calibrate changed it). */
rs_status rs_pins_update_manifest(cJSON *manifest, rs_err *err);

#endif
