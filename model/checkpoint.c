/* checkpoint.c — Hugging Face checkpoint directory <-> the fp32 parameter buffer of a
 * parameter table. Loading validates everything (names, shapes, dtypes, FP8 scales) before it
 * writes a single float, so a bad checkpoint leaves dst untouched.
 *
 * Expert layout: the released checkpoints and transformers v5's save_pretrained (checked with
 * 5.23: it un-fuses on save) store routed experts per expert,
 * `model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight`. transformers v5 holds them fused in
 * memory as `mlp.experts.gate_up_proj` [E, 2I, d] (gate rows first, then up) and
 * `mlp.experts.down_proj` [E, d, I]; a file written from that state dict without the reverse
 * conversion has those names, so the loader accepts them too and slices them per expert. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/strmap.h"
#include "safetensors.h"

#define SCALE_SUFFIX "_scale_inv"

/* How table entry i is found in the checkpoint. */
typedef enum { SRC_NONE, SRC_DIRECT, SRC_FUSED_GATE, SRC_FUSED_UP, SRC_FUSED_DOWN } src_kind;

typedef struct loader {
    const v3_param_table *t;
    v3_st_model m;
    v3_strmap tmap;    /* table name -> index */
    int n_layers;      /* 1 + largest layer index in the table */
    int mtp_first;     /* first MTP layer (has an enorm), or n_layers */
    int *n_expert;     /* [n_layers] routed experts of each layer in the table */
    src_kind *src;     /* [t->n] */
    const char *where; /* the checkpoint, for messages about it as a whole */
} loader;

static const char *where_of(const loader *L, const char *name) {
    return v3_st_model_where(&L->m, name);
}

static void fused_name(int layer, int down, char *buf, size_t n) {
    snprintf(buf, n, "model.layers.%d.mlp.experts.%s", layer, down ? "down_proj" : "gate_up_proj");
}

/* Is name a fused expert tensor of a layer that has routed experts in the table? */
static int is_fused_name(const loader *L, const char *name) {
    int layer, pos = 0;
    if (sscanf(name, "model.layers.%d.mlp.experts.%n", &layer, &pos) != 1 || pos == 0) return 0;
    if (layer < 0 || layer >= L->n_layers || L->n_expert[layer] == 0) return 0;
    return strcmp(name + pos, "gate_up_proj") == 0 || strcmp(name + pos, "down_proj") == 0;
}

static int setup(loader *L, const char *dir, const v3_param_table *t, v3_err *err) {
    memset(L, 0, sizeof *L);
    L->t = t;
    int rc = v3_st_model_open(&L->m, dir, err);
    if (rc) return rc;
    L->where = L->m.index_path ? L->m.index_path : L->m.shard[0].path;
    if (v3_strmap_init(&L->tmap, t->n)) return v3_errf(err, V3_ENOMEM, "out of memory");
    for (int i = 0; i < t->n; i++) {
        if (v3_strmap_put(&L->tmap, t->p[i].name, i) == -2)
            return v3_errf(err, V3_ENOMEM, "out of memory");
        if (t->p[i].layer + 1 > L->n_layers) L->n_layers = t->p[i].layer + 1;
    }
    L->mtp_first = L->n_layers;
    L->n_expert = calloc((size_t)L->n_layers + 1, sizeof *L->n_expert);
    L->src = calloc((size_t)t->n + 1, sizeof *L->src);
    if (!L->n_expert || !L->src) return v3_errf(err, V3_ENOMEM, "out of memory");
    for (int i = 0; i < t->n; i++) {
        const v3_param_info *p = &t->p[i];
        if (p->expert >= 0 && p->expert + 1 > L->n_expert[p->layer]) L->n_expert[p->layer] = p->expert + 1;
        if (p->layer >= 0 && p->layer < L->mtp_first && strstr(p->name, ".enorm.weight"))
            L->mtp_first = p->layer;
    }
    return V3_OK;
}

static void teardown(loader *L) {
    v3_st_model_close(&L->m);
    v3_strmap_free(&L->tmap);
    free(L->n_expert);
    free(L->src);
}

/* Pass 1: names only — what is missing, what is unexpected. */
static int check_names(loader *L, int flags, v3_err *err) {
    const v3_param_table *t = L->t;
    int missing = 0, first_missing = -1;
    char fn[128];
    for (int i = 0; i < t->n; i++) {
        const v3_param_info *p = &t->p[i];
        L->src[i] = SRC_NONE;
        if (v3_strmap_get(&L->m.by_name, p->name) >= 0) {
            L->src[i] = SRC_DIRECT;
            continue;
        }
        if (p->expert >= 0) {
            int down = strstr(p->name, ".down_proj.weight") != NULL;
            fused_name(p->layer, down, fn, sizeof fn);
            if (v3_strmap_get(&L->m.by_name, fn) >= 0) {
                L->src[i] = down ? SRC_FUSED_DOWN
                            : strstr(p->name, ".gate_proj.weight") ? SRC_FUSED_GATE
                                                                  : SRC_FUSED_UP;
                continue;
            }
        }
        if ((flags & V3_CKPT_ALLOW_MISSING_MTP) && p->layer >= L->mtp_first) continue;
        if (missing++ == 0) first_missing = i;
    }
    if (missing)
        return v3_errf(err, V3_ENOTFOUND, "%s: missing tensor '%s'%s (%d missing in all)", L->where,
                       t->p[first_missing].name,
                       t->p[first_missing].layer >= L->mtp_first
                           ? " (an MTP layer: HF transformers drops these; allow with "
                             "V3_CKPT_ALLOW_MISSING_MTP)"
                           : "",
                       missing);
    if (flags & V3_CKPT_IGNORE_UNEXPECTED) return V3_OK;
    int unexpected = 0;
    const char *first = NULL;
    for (int k = 0; k < L->m.n; k++) {
        const char *name = L->m.name[k];
        if (v3_strmap_get(&L->tmap, name) >= 0 || is_fused_name(L, name)) continue;
        size_t n = strlen(name), sl = strlen(SCALE_SUFFIX);
        if (n > sl && strcmp(name + n - sl, SCALE_SUFFIX) == 0 && n - sl < sizeof fn) {
            memcpy(fn, name, n - sl);
            fn[n - sl] = 0;
            if (v3_strmap_get(&L->tmap, fn) >= 0) continue; /* an FP8 weight's companion */
        }
        if (unexpected++ == 0) first = name;
    }
    if (unexpected)
        return v3_errf(err, V3_EFORMAT,
                       "%s: unexpected tensor '%s' (%d in all) that the config's parameter table "
                       "does not name",
                       where_of(L, first), first, unexpected);
    return V3_OK;
}

static int dtype_ok(v3_dtype d) {
    return d == V3_F32 || d == V3_BF16 || d == V3_F16 || d == V3_F8_E4M3;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Pass 2: headers — every tensor's shape and dtype against the table, FP8 scales present and
 * shaped right. Opens the shards (headers only; data stay on disk until pass 3). */
static int check_headers(loader *L, v3_err *err) {
    const v3_param_table *t = L->t;
    char fn[128], a[96], b[96];
    for (int i = 0; i < t->n; i++) {
        const v3_param_info *p = &t->p[i];
        if (L->src[i] == SRC_NONE) continue;
        const v3_st_file *f;
        const v3_st_tensor *x;
        if (L->src[i] == SRC_DIRECT) {
            int rc = v3_st_model_get(&L->m, p->name, &f, &x, err);
            if (rc) return rc;
            if (!dtype_ok(x->dtype))
                return v3_errf(err, V3_EFORMAT, "%s: tensor '%s': dtype %s is not a weight type "
                               "(F32, BF16, F16, F8_E4M3)", f->path, p->name, v3_dtype_name(x->dtype));
            if (x->ndim != p->ndim || x->shape[0] != p->shape[0] ||
                (p->ndim == 2 && x->shape[1] != p->shape[1])) {
                shape_str(x->ndim, x->shape, a, sizeof a);
                shape_str(p->ndim, p->shape, b, sizeof b);
                return v3_errf(err, V3_ERANGE,
                               "%s: tensor '%s': shape %s but the config expects %s", f->path,
                               p->name, a, b);
            }
            if (x->dtype == V3_F8_E4M3) {
                snprintf(fn, sizeof fn, "%s" SCALE_SUFFIX, p->name);
                const v3_st_file *sf = NULL;
                const v3_st_tensor *s = NULL;
                if (v3_strmap_get(&L->m.by_name, fn) >= 0) {
                    int rc2 = v3_st_model_get(&L->m, fn, &sf, &s, err);
                    if (rc2) return rc2;
                }
                int rc2 = v3_st_fp8_scale_check(f, x, sf, s, err);
                if (rc2) return rc2;
            }
            continue;
        }
        /* fused experts: gate_up [E, 2I, d], down [E, d, I] */
        int down = L->src[i] == SRC_FUSED_DOWN;
        fused_name(p->layer, down, fn, sizeof fn);
        int rc = v3_st_model_get(&L->m, fn, &f, &x, err);
        if (rc) return rc;
        int64_t E = L->n_expert[p->layer];
        int64_t want[3] = {E, down ? p->shape[0] : 2 * p->shape[0], p->shape[1]};
        if (x->ndim != 3 || x->shape[0] != want[0] || x->shape[1] != want[1] || x->shape[2] != want[2]) {
            shape_str(x->ndim, x->shape, a, sizeof a);
            shape_str(3, want, b, sizeof b);
            return v3_errf(err, V3_ERANGE, "%s: tensor '%s': shape %s but the config expects %s",
                           f->path, fn, a, b);
        }
        if (!dtype_ok(x->dtype) || x->dtype == V3_F8_E4M3)
            return v3_errf(err, V3_EUNSUPPORTED,
                           "%s: tensor '%s': fused expert tensors of dtype %s are not supported",
                           f->path, fn, v3_dtype_name(x->dtype));
    }
    return V3_OK;
}

/* Pass 3: the data. */
static int convert_all(loader *L, float *dst, v3_err *err) {
    const v3_param_table *t = L->t;
    char fn[128];
    for (int i = 0; i < t->n; i++) {
        const v3_param_info *p = &t->p[i];
        float *out = dst + p->offset;
        int rc = V3_OK;
        if (L->src[i] == SRC_NONE) continue;
        if (L->src[i] == SRC_DIRECT) {
            rc = v3_st_model_load_f32(&L->m, p->name, out, err);
        } else {
            const v3_st_file *f;
            const v3_st_tensor *x;
            int down = L->src[i] == SRC_FUSED_DOWN;
            fused_name(p->layer, down, fn, sizeof fn);
            rc = v3_st_model_get(&L->m, fn, &f, &x, err);
            if (!rc) {
                int64_t per_expert = x->shape[1] * x->shape[2];
                int64_t start = p->expert * per_expert +
                                (L->src[i] == SRC_FUSED_UP ? p->numel : 0);
                rc = v3_st_to_f32_range(f, x, start, p->numel, NULL, NULL, out, err);
            }
        }
        if (rc) return rc;
    }
    return V3_OK;
}

int v3_checkpoint_load(const char *dir, const v3_param_table *t, float *dst, int flags, v3_err *err) {
    loader L;
    int rc = setup(&L, dir, t, err);
    if (!rc) rc = check_names(&L, flags, err);
    if (!rc) rc = check_headers(&L, err);
    if (!rc) rc = convert_all(&L, dst, err);
    teardown(&L);
    return rc;
}

/* ---- saving ---- */

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Streams tensor p of src, converted to dtype, into w in bounded pieces (no full-size copy). */
static int write_tensor(v3_st_writer *w, const v3_param_info *p, const float *src, v3_dtype dtype,
                        void *buf, int64_t chunk, v3_err *err) {
    const float *x = src + p->offset;
    for (int64_t i = 0; i < p->numel; i += chunk) {
        int64_t n = p->numel - i < chunk ? p->numel - i : chunk;
        int rc;
        if (dtype == V3_F32) {
            rc = v3_st_writer_write(w, x + i, (size_t)n * 4, err);
        } else {
            uint16_t *h = buf;
            for (int64_t j = 0; j < n; j++)
                h[j] = dtype == V3_BF16 ? v3_f32_to_bf16(x[i + j]) : v3_f32_to_f16(x[i + j]);
            rc = v3_st_writer_write(w, h, (size_t)n * 2, err);
        }
        if (rc) return v3_err_prefix(err, "tensor '%s'", p->name);
    }
    return V3_OK;
}

/* Removes the files of a previous save that the new one does not use (a single file replaced
 * by shards or the reverse, or a different shard count), as save_pretrained does: a loader must
 * never mix them. Only names of the HF patterns are touched. */
static void remove_stale(const char *dir, int n_shards) {
    char *other = path_in(dir, n_shards > 1 ? "model.safetensors" : "model.safetensors.index.json");
    if (other) unlink(other);
    free(other);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int a, b, end = 0;
        if (sscanf(e->d_name, "model-%5d-of-%5d.safetensors%n", &a, &b, &end) != 2 ||
            e->d_name[end] != 0 || (n_shards > 1 && b == n_shards))
            continue;
        char *p = path_in(dir, e->d_name);
        if (p) unlink(p);
        free(p);
    }
    if (d) closedir(d);
}

int v3_checkpoint_save(const char *dir, const v3_param_table *t, const float *src, v3_dtype dtype,
                       int64_t shard_bytes, v3_err *err) {
    if (dtype != V3_F32 && dtype != V3_BF16 && dtype != V3_F16)
        return v3_errf(err, V3_EINVAL, "%s: checkpoints are written as F32, BF16 or F16, not %s",
                       dir, v3_dtype_name(dtype));
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return v3_errf(err, V3_EIO, "%s: cannot create directory: %s", dir, strerror(errno));
    const int64_t chunk = 1 << 16;
    v3_st_spec *specs = calloc((size_t)t->n + 1, sizeof *specs);
    int *shard_of = calloc((size_t)t->n + 1, sizeof *shard_of);
    void *buf = malloc((size_t)chunk * 2);
    int rc = V3_OK;
    if (!specs || !shard_of || !buf) {
        rc = v3_errf(err, V3_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < t->n; i++) {
        specs[i].name = t->p[i].name;
        specs[i].dtype = dtype;
        specs[i].ndim = t->p[i].ndim;
        specs[i].shape[0] = t->p[i].shape[0];
        specs[i].shape[1] = t->p[i].shape[1];
    }
    int n_shards = v3_st_plan_shards(specs, t->n, shard_bytes, shard_of);
    static const char *const meta[] = {"format", "pt"}; /* what transformers expects to find */
    for (int s = 0, first = 0; s < n_shards && !rc; s++) {
        int last = first;
        while (last < t->n && shard_of[last] == s) last++;
        char name[64];
        v3_st_shard_name(s, n_shards, name, sizeof name);
        char *path = path_in(dir, name);
        v3_st_writer w;
        if (!path) {
            rc = v3_errf(err, V3_ENOMEM, "out of memory");
            break;
        }
        rc = v3_st_writer_open(&w, path, specs + first, last - first, meta, 1, err);
        for (int i = first; i < last && !rc; i++)
            rc = write_tensor(&w, &t->p[i], src, dtype, buf, chunk, err);
        if (!rc) rc = v3_st_writer_finish(&w, err);
        v3_st_writer_abort(&w);
        free(path);
        first = last;
    }
    /* The index is written last: until it exists, the new shard set is not a checkpoint. The
     * other layout's entry file is removed so a loader cannot pick up a stale one. */
    if (!rc && n_shards > 1) rc = v3_st_write_index(dir, specs, t->n, shard_of, n_shards, err);
    if (!rc) remove_stale(dir, n_shards);
done:
    free(specs);
    free(shard_of);
    free(buf);
    return rc;
}
