/* fuzz_util.h — what the libFuzzer harnesses share: the input written to a
 * file in a per-process temp directory, for the loaders that take a path. */
#ifndef RS_FUZZ_UTIL_H
#define RS_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The per-process scratch directory (created on first use). */
const char *rs_fuzz_dir(void);
/* Writes data to rs_fuzz_dir()/name; returns the path (static buffer per slot 0..3). */
const char *rs_fuzz_file(int slot, const char *name, const uint8_t *data, size_t n);

#endif
