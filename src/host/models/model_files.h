/* model_files.h — a Hugging Face model directory on disk: config.json plus
 * model.safetensors or a sharded model.safetensors.index.json.
 *
 * Tensors are looked up by name (with the "bert."/"roberta." prefixes that
 * task heads add tried as well) and checked against the shape the caller
 * expects; a mismatch is an error naming the tensor and its file. F32
 * tensors are served straight from the mmap; F16/BF16 ones are converted to
 * fp32 copies owned by the rs_model_files.
 *
 * Ownership: everything returned lives until rs_model_files_close. Not
 * thread-safe while loading; read-only afterwards. */
#ifndef RS_MODEL_FILES_H
#define RS_MODEL_FILES_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "safetensors.h"
#include "status.h"

typedef struct rs_model_files rs_model_files;

rs_status rs_model_files_open(const char *dir, rs_model_files **out, rs_err *err);
void rs_model_files_close(rs_model_files *m);

const char *rs_model_files_dir(const rs_model_files *m);
/* The parsed config.json (owned by m). */
const cJSON *rs_model_files_config(const rs_model_files *m);

/* fp32 data of tensor `name` with exactly the given shape. n_dims == 0
 * accepts any shape. */
rs_status rs_model_files_f32(rs_model_files *m, const char *name, int n_dims, const int64_t *shape,
                             const float **out, rs_err *err);

/* Converts n elements of src (F32/F16/BF16) to fp32. */
void rs_convert_f32(float *dst, const void *src, rs_dtype dtype, size_t n);

#endif
