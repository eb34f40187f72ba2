/* checkpoint.h — a model's weights on disk (Hugging Face layout) <-> one fp32 buffer laid out by
 * the parameter table. Built on safetensors.h; FP8 weights are dequantised on load. */
#ifndef V3_CHECKPOINT_H
#define V3_CHECKPOINT_H

#include <stdint.h>

#include "../common/dtype.h"
#include "../common/err.h"
#include "params.h"

enum {
    V3_CKPT_ALLOW_MISSING_MTP = 1 << 0, /* tolerate absent model.layers.{n_layer}.* (HF drops MTP) */
    V3_CKPT_IGNORE_UNEXPECTED = 1 << 1, /* do not fail on tensors the table does not name */
};

/* Loads every tensor of t from dir (model.safetensors, or model.safetensors.index.json and its
 * shards) into dst (host, t->total floats, tensor i at t->p[i].offset), converting F32/BF16/F16
 * and dequantising F8_E4M3 with its `<name>_scale_inv` (128×128 blocks, model-spec §8).
 * Errors name the file and the tensor: missing, unexpected, wrong shape, wrong dtype, truncated.
 * Missing MTP tensors (when allowed) are left as they were in dst. */
int v3_checkpoint_load(const char *dir, const v3_param_table *t, float *dst, int flags, v3_err *err);

/* Writes dir/model.safetensors (or model-0000i-of-0000n.safetensors + index when the data
 * exceed shard_bytes; 0 = never shard) in dtype F32 or BF16, names and shapes from t. Files are
 * written to temporary names and renamed, so a crash never leaves a complete-looking file. */
int v3_checkpoint_save(const char *dir, const v3_param_table *t, const float *src, v3_dtype dtype,
                       int64_t shard_bytes, v3_err *err);

#endif
