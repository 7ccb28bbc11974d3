/* safetensors.h — mmap'd, validated reader (and a small writer) for the
 * safetensors format: an 8-byte little-endian header length, a JSON header
 * mapping tensor names to {dtype, shape, data_offsets}, then the data.
 *
 * Nothing is trusted before it is checked: header length against the file,
 * JSON syntax, known dtypes, shape x dtype size == byte range, every range
 * inside the data section, no two ranges overlapping.
 *
 * Ownership: an rs_st_file owns its mapping; rs_st_tensor.data points into it
 * and lives until rs_st_close. Read-only after open; safe to share. */
#ifndef RS_SAFETENSORS_H
#define RS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define RS_ST_MAX_DIMS 8

typedef enum rs_dtype {
    RS_DTYPE_F32 = 0,
    RS_DTYPE_F16,
    RS_DTYPE_BF16,
    RS_DTYPE_I64,
    RS_DTYPE_I32,
    RS_DTYPE_I16,
    RS_DTYPE_I8,
    RS_DTYPE_U8,
    RS_DTYPE_BOOL,
    RS_DTYPE_F64,
    RS_DTYPE_COUNT
} rs_dtype;

const char *rs_st_dtype_name(rs_dtype t);
size_t rs_st_dtype_size(rs_dtype t);

typedef struct rs_st_tensor {
    const char *name;
    rs_dtype dtype;
    int n_dims;
    int64_t shape[RS_ST_MAX_DIMS];
    int64_t n_elems;
    const void *data; /* into the mapping */
    size_t n_bytes;
} rs_st_tensor;

typedef struct rs_st_file rs_st_file;

rs_status rs_st_open(const char *path, rs_st_file **out, rs_err *err);
void rs_st_close(rs_st_file *f);
const char *rs_st_path(const rs_st_file *f);
size_t rs_st_count(const rs_st_file *f);
const rs_st_tensor *rs_st_at(const rs_st_file *f, size_t i);
const rs_st_tensor *rs_st_find(const rs_st_file *f, const char *name);

/* Writes F32 tensors to path (atomically: a temp file renamed into place). */
typedef struct rs_st_out_tensor {
    const char *name;
    int n_dims;
    int64_t shape[RS_ST_MAX_DIMS];
    const float *data;
} rs_st_out_tensor;
rs_status rs_st_write_f32(const char *path, const rs_st_out_tensor *tensors, size_t n, rs_err *err);

#endif
