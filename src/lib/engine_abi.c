/* engine_abi.c — layout facts of engine.h for callers in other languages.
 *
 * A binding that mirrors rs_score, rs_router_info and rs_engine_opts (the
 * Python package's ctypes structures) checks these at load time, so a header
 * change that the binding has not followed fails loudly instead of reading
 * fields at the wrong offsets. */
#include <stddef.h>

#include "engine.h"

/* Bumped when engine.h changes a struct or a signature incompatibly. */
int rs_abi_version(void) { return 1; }

size_t rs_abi_sizeof_score(void) { return sizeof(rs_score); }
size_t rs_abi_sizeof_router_info(void) { return sizeof(rs_router_info); }
size_t rs_abi_sizeof_engine_opts(void) { return sizeof(rs_engine_opts); }
size_t rs_abi_sizeof_err(void) { return sizeof(rs_err); }
size_t rs_abi_max_labels(void) { return RS_MAX_LABELS; }
