/* safetensors.h — the Hugging Face safetensors format: reading one file (mmap, or a caller's
 * buffer for fuzzing), a sharded checkpoint through model.safetensors.index.json, conversion of
 * any tensor to fp32 (FP8 e4m3 weights dequantised with their 128×128 `_scale_inv` blocks,
 * model-spec §8), and writing files and shard sets atomically.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 *   {"__metadata__": {str: str}, name: {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}}
 * then the data region; offsets are relative to its start. Every check of the reader names the
 * file and the tensor at fault, because a 671B checkpoint has 163 files and 91,991 tensors. */
#ifndef V3_SAFETENSORS_H
#define V3_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/dtype.h"
#include "../common/err.h"
#include "../common/strmap.h"

#define V3_ST_MAX_DIM 8
#define V3_ST_MAX_HEADER 100000000ull /* the reference implementation's limit on N */
#define V3_FP8_BLOCK 128              /* weight_block_size of every released FP8 checkpoint */

typedef struct v3_st_tensor {
    const char *name;
    v3_dtype dtype;
    int ndim;
    int64_t shape[V3_ST_MAX_DIM];
    int64_t numel;            /* product of shape (1 for a scalar) */
    uint64_t begin, end;      /* data_offsets: bytes, relative to the data region */
    const uint8_t *data;      /* address of byte `begin` (may be unaligned) */
} v3_st_tensor;

typedef struct v3_st_file {
    char *path;               /* names the file in every message */
    const uint8_t *base;      /* the whole file: mmap'ed, or the caller's buffer */
    size_t size;
    int mapped;               /* base is ours to munmap */
    uint64_t header_len;
    const uint8_t *data;      /* base + 8 + header_len */
    uint64_t data_size;
    v3_st_tensor *t;          /* [n], in header order */
    int n;
    char *names;              /* the tensor names, NUL-separated (t[i].name points here) */
    v3_strmap by_name;
    int n_meta;
    char **meta_key, **meta_val; /* __metadata__ */
} v3_st_file;

/* Maps path read-only and validates the header completely. */
int v3_st_open(v3_st_file *f, const char *path, v3_err *err);
/* The same over buf[0..size), which must outlive f (nothing is copied). origin names it. */
int v3_st_open_memory(v3_st_file *f, const void *buf, size_t size, const char *origin, v3_err *err);
void v3_st_close(v3_st_file *f);
const v3_st_tensor *v3_st_find(const v3_st_file *f, const char *name);
/* __metadata__[key], or NULL. */
const char *v3_st_metadata(const v3_st_file *f, const char *key);

/* The expected shape of an FP8 weight's scale_inv: [ceil(rows/128), ceil(cols/128)]. */
static inline int64_t v3_fp8_blocks(int64_t n) { return (n + V3_FP8_BLOCK - 1) / V3_FP8_BLOCK; }

/* Elements [start, start+count) of t (row-major) as fp32 into dst. F32/BF16/F16 widen exactly,
 * I32/I64/U8/BOOL are cast. F8_E4M3 needs scale (F32 or BF16, [ceil(R/128), ceil(C/128)] for a
 * 2-D t of shape [R, C]; sf is the file holding it, for messages) and gives
 * W[r,c] = e4m3(Wq[r,c]) * scale[r/128][c/128], one fp32 multiply as torch does. */
int v3_st_to_f32_range(const v3_st_file *f, const v3_st_tensor *t, int64_t start, int64_t count,
                       const v3_st_file *sf, const v3_st_tensor *scale, float *dst, v3_err *err);
/* Checks that scale (in file sf; NULL when absent) fits the F8_E4M3 weight t of file f: present,
 * F32 or BF16, shape [ceil(R/128), ceil(C/128)]. v3_st_to_f32_range applies the same checks. */
int v3_st_fp8_scale_check(const v3_st_file *f, const v3_st_tensor *t, const v3_st_file *sf,
                          const v3_st_tensor *scale, v3_err *err);
static inline int v3_st_to_f32(const v3_st_file *f, const v3_st_tensor *t, const v3_st_file *sf,
                               const v3_st_tensor *scale, float *dst, v3_err *err) {
    return v3_st_to_f32_range(f, t, 0, t->numel, sf, scale, dst, err);
}

/* ---- a checkpoint: one file, or an index and its shards ---- */
typedef struct v3_st_model {
    char *dir;                /* directory of the files */
    char *index_path;         /* model.safetensors.index.json, or NULL for one file */
    int n_shards;
    char **shard_name;        /* [n_shards] file names inside dir */
    char **shard_path;        /* [n_shards] dir/shard_name, for opening and for messages */
    v3_st_file *shard;        /* [n_shards]; shard[i] is opened on first use */
    unsigned char *shard_ok;  /* [n_shards] 1 when opened */
    int n;                    /* tensors named by the index (or in the single file) */
    char **name;              /* [n] */
    int *shard_of;            /* [n] */
    char *name_store;         /* backing of name[] when they come from the index */
    v3_strmap by_name;
} v3_st_model;

/* path: a directory (model.safetensors.index.json if present, else model.safetensors), an
 * index .json, or one .safetensors file. Shard names are checked (a bare file name ending in
 * .safetensors: no directories, no "..") but shards are only opened when first needed. */
int v3_st_model_open(v3_st_model *m, const char *path, v3_err *err);
void v3_st_model_close(v3_st_model *m);
/* Looks name up (V3_ENOTFOUND if the checkpoint does not name it), opening its shard. */
int v3_st_model_get(v3_st_model *m, const char *name, const v3_st_file **file,
                    const v3_st_tensor **t, v3_err *err);
/* The file a tensor lives in (for messages); the index path when unknown. */
const char *v3_st_model_where(const v3_st_model *m, const char *name);
/* Whole tensor as fp32 into dst[numel]; an F8_E4M3 tensor's `<name>_scale_inv` is found
 * through the index, so it may live in another shard. */
int v3_st_model_load_f32(v3_st_model *m, const char *name, float *dst, v3_err *err);

/* ---- writing ---- */
typedef struct v3_st_spec {
    const char *name;
    v3_dtype dtype;
    int ndim;
    int64_t shape[V3_ST_MAX_DIM];
} v3_st_spec;

/* Streams one file: the header is written at open; the data of every tensor, in spec order, is
 * then appended with v3_st_writer_write in pieces of any size; finish checks the byte count,
 * fsyncs, and renames the temporary file onto path (and fsyncs the directory). */
typedef struct v3_st_writer {
    char *path, *tmp_path;
    int fd;
    uint64_t expect, written; /* data bytes */
} v3_st_writer;

/* meta: n_meta key/value pairs for __metadata__ (HF writes {"format": "pt"}). */
int v3_st_writer_open(v3_st_writer *w, const char *path, const v3_st_spec *specs, int n,
                      const char *const *meta_kv, int n_meta, v3_err *err);
int v3_st_writer_write(v3_st_writer *w, const void *bytes, size_t n, v3_err *err);
int v3_st_writer_finish(v3_st_writer *w, v3_err *err);
/* Removes the temporary file and frees w; safe after finish, and on a zeroed writer. */
void v3_st_writer_abort(v3_st_writer *w);

/* Whole file from in-memory tensors: data[i] holds specs[i] in its dtype. */
int v3_st_write_file(const char *path, const v3_st_spec *specs, const void *const *data, int n,
                     const char *const *meta_kv, int n_meta, v3_err *err);

/* Splits tensors into shards as Hugging Face does: in order, a new shard starts when the next
 * tensor would take the current one past max_bytes (a larger tensor gets a shard of its own).
 * shard_of[n] receives each tensor's shard; returns the shard count. max_bytes <= 0: one shard. */
int v3_st_plan_shards(const v3_st_spec *specs, int n, int64_t max_bytes, int *shard_of);
/* "model-00001-of-00003.safetensors" (or "model.safetensors" when n_shards == 1). */
void v3_st_shard_name(int shard, int n_shards, char *buf, size_t len);
/* Writes dir/model.safetensors.index.json (atomically) for a shard plan. */
int v3_st_write_index(const char *dir, const v3_st_spec *specs, int n, const int *shard_of,
                      int n_shards, v3_err *err);

#endif
