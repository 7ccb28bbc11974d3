/* fuzz_safetensors.c — rs_st_open on arbitrary bytes: header JSON, offsets,
 * dtypes and shapes are all the file's to lie about. Every tensor that opens
 * is read whole (ASan catches a bound the loader failed to check). */
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "model_files.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = rs_fuzz_file(0, "model.safetensors", data, n);
    rs_st_file *f = NULL;
    rs_err err;
    if (rs_st_open(path, &f, &err) != RS_OK) return 0;
    volatile unsigned sum = 0;
    for (size_t i = 0; i < rs_st_count(f); i++) {
        const rs_st_tensor *t = rs_st_at(f, i);
        const unsigned char *p = t->data;
        for (size_t k = 0; k < t->n_bytes; k++) sum += p[k];
        if (rs_st_find(f, t->name) == NULL) __builtin_trap();
        if (t->dtype == RS_DTYPE_F32 || t->dtype == RS_DTYPE_F16 || t->dtype == RS_DTYPE_BF16) {
            float tmp[64];
            size_t m = t->n_elems < 64 ? (size_t)t->n_elems : 64;
            rs_convert_f32(tmp, t->data, t->dtype, m);
        }
    }
    (void)sum; /* the reads are the point: ASan checks every tensor's bytes */
    rs_st_close(f);
    return 0;
}
