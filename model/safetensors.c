/* safetensors.c — safetensors reading (mmap or buffer, full header validation), sharded
 * checkpoints through the index, fp32 conversion with FP8 block dequantisation, atomic writing. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data are little-endian; this reader assumes a little-endian host"
#endif

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ======================================================================================
 * reading one file
 * ====================================================================================== */

/* Parses one entry's shape: an array of at most 8 non-negative integers whose product (times
 * the element size) fits in int64. */
static int parse_shape(const char *path, const char *name, json_t *shape, v3_st_tensor *t,
                       v3_err *err) {
    if (!json_is_array(shape))
        return v3_errf(err, V3_EFORMAT, "%s: tensor '%s': \"shape\" is not an array", path, name);
    size_t nd = json_array_size(shape);
    if (nd > V3_ST_MAX_DIM)
        return v3_errf(err, V3_EUNSUPPORTED, "%s: tensor '%s': %zu dimensions (at most %d)", path,
                       name, nd, V3_ST_MAX_DIM);
    t->ndim = (int)nd;
    int64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return v3_errf(err, V3_EFORMAT,
                           "%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name,
                           i);
        t->shape[i] = (int64_t)json_integer_value(d);
        if (__builtin_mul_overflow(numel, t->shape[i], &numel))
            return v3_errf(err, V3_ERANGE, "%s: tensor '%s': element count overflows", path, name);
    }
    int64_t bytes;
    if (__builtin_mul_overflow(numel, (int64_t)v3_dtype_size(t->dtype), &bytes))
        return v3_errf(err, V3_ERANGE, "%s: tensor '%s': byte size overflows", path, name);
    t->numel = numel;
    return V3_OK;
}

static int parse_entry(v3_st_file *f, const char *name, json_t *v, v3_st_tensor *t, v3_err *err) {
    const char *path = f->path;
    if (!json_is_object(v))
        return v3_errf(err, V3_EFORMAT, "%s: tensor '%s': entry is not an object", path, name);
    json_t *dt = json_object_get(v, "dtype");
    if (!json_is_string(dt))
        return v3_errf(err, V3_EFORMAT, "%s: tensor '%s': \"dtype\" missing or not a string", path,
                       name);
    int d = v3_dtype_from_name(json_string_value(dt));
    if (d < 0)
        return v3_errf(err, V3_EUNSUPPORTED, "%s: tensor '%s': unknown or unsupported dtype \"%s\"",
                       path, name, json_string_value(dt));
    t->dtype = (v3_dtype)d;
    int rc = parse_shape(path, name, json_object_get(v, "shape"), t, err);
    if (rc) return rc;
    json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
        return v3_errf(err, V3_EFORMAT, "%s: tensor '%s': \"data_offsets\" is not [begin, end]",
                       path, name);
    json_int_t b = json_integer_value(json_array_get(off, 0));
    json_int_t e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b)
        return v3_errf(err, V3_EFORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] are not ordered",
                       path, name, (long long)b, (long long)e);
    if ((uint64_t)e > f->data_size)
        return v3_errf(err, V3_ERANGE,
                       "%s: tensor '%s': data_offsets [%lld, %lld] outside the %llu-byte data region "
                       "(file truncated?)",
                       path, name, (long long)b, (long long)e, (unsigned long long)f->data_size);
    int64_t want = t->numel * v3_dtype_size(t->dtype);
    if ((int64_t)(e - b) != want)
        return v3_errf(err, V3_EFORMAT,
                       "%s: tensor '%s': data_offsets span %lld bytes but %s shape needs %lld",
                       path, name, (long long)(e - b), v3_dtype_name(t->dtype), (long long)want);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    t->data = f->data + b;
    return V3_OK;
}

static int parse_metadata(v3_st_file *f, json_t *meta, v3_err *err) {
    if (!json_is_object(meta))
        return v3_errf(err, V3_EFORMAT, "%s: \"__metadata__\" is not an object", f->path);
    size_t n = json_object_size(meta);
    f->meta_key = calloc(n ? n : 1, sizeof *f->meta_key);
    f->meta_val = calloc(n ? n : 1, sizeof *f->meta_val);
    if (!f->meta_key || !f->meta_val) return v3_errf(err, V3_ENOMEM, "%s: out of memory", f->path);
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return v3_errf(err, V3_EFORMAT, "%s: __metadata__ \"%s\" is not a string", f->path, k);
        f->meta_key[f->n_meta] = dup_str(k);
        f->meta_val[f->n_meta] = dup_str(json_string_value(v));
        if (!f->meta_key[f->n_meta] || !f->meta_val[f->n_meta])
            return v3_errf(err, V3_ENOMEM, "%s: out of memory", f->path);
        f->n_meta++;
    }
    return V3_OK;
}

/* Sorting by begin offset turns the overlap check into one pass over neighbours. */
static int cmp_begin(const void *a, const void *b, void *ctx) {
    const v3_st_tensor *t = ctx;
    const v3_st_tensor *x = &t[*(const int *)a], *y = &t[*(const int *)b];
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int check_overlap(v3_st_file *f, v3_err *err) {
    int *ord = malloc((size_t)(f->n ? f->n : 1) * sizeof *ord);
    if (!ord) return v3_errf(err, V3_ENOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n; i++) ord[i] = i;
    qsort_r(ord, (size_t)f->n, sizeof *ord, cmp_begin, f->t);
    int rc = V3_OK;
    uint64_t reach = 0; /* furthest end so far, and whose */
    int who = -1;
    for (int k = 0; k < f->n && !rc; k++) {
        const v3_st_tensor *t = &f->t[ord[k]];
        if (t->begin == t->end) continue; /* empty tensors occupy no bytes */
        if (who >= 0 && t->begin < reach)
            rc = v3_errf(err, V3_EFORMAT,
                         "%s: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (ending at %llu)",
                         f->path, t->name, (unsigned long long)t->begin,
                         (unsigned long long)t->end, f->t[who].name, (unsigned long long)reach);
        if (t->end > reach) {
            reach = t->end;
            who = ord[k];
        }
    }
    free(ord);
    return rc;
}

static int parse_header(v3_st_file *f, v3_err *err) {
    if (f->size < 8)
        return v3_errf(err, V3_EFORMAT,
                       "%s: truncated: %zu bytes, too short for the 8-byte header length", f->path,
                       f->size);
    uint64_t hl;
    memcpy(&hl, f->base, 8);
    if (hl > f->size - 8)
        return v3_errf(err, V3_EFORMAT,
                       "%s: header length %llu exceeds the file size %zu (truncated or not a "
                       "safetensors file)",
                       f->path, (unsigned long long)hl, f->size);
    if (hl > V3_ST_MAX_HEADER)
        return v3_errf(err, V3_EFORMAT, "%s: header length %llu over the %llu-byte limit", f->path,
                       (unsigned long long)hl, V3_ST_MAX_HEADER);
    if (hl < 2) return v3_errf(err, V3_EFORMAT, "%s: header of %llu bytes", f->path, (unsigned long long)hl);
    f->header_len = hl;
    f->data = f->base + 8 + hl;
    f->data_size = f->size - 8 - hl;

    json_error_t je;
    json_t *root = json_loadb((const char *)f->base + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (strstr(je.text, "duplicate"))
            return v3_errf(err, V3_EFORMAT, "%s: duplicate tensor name in header: %s", f->path,
                           je.text);
        return v3_errf(err, V3_EFORMAT, "%s: header is not valid JSON (line %d, column %d): %s",
                       f->path, je.line, je.column, je.text);
    }
    int rc = V3_OK;
    if (!json_is_object(root)) {
        rc = v3_errf(err, V3_EFORMAT, "%s: header is not a JSON object", f->path);
        goto done;
    }
    size_t n = json_object_size(root), names_len = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) names_len += strlen(k) + 1;
    f->t = calloc(n ? n : 1, sizeof *f->t);
    f->names = malloc(names_len ? names_len : 1);
    if (!f->t || !f->names || v3_strmap_init(&f->by_name, (int)n)) {
        rc = v3_errf(err, V3_ENOMEM, "%s: out of memory for %zu tensors", f->path, n);
        goto done;
    }
    char *np = f->names;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0) {
            if ((rc = parse_metadata(f, v, err))) goto done;
            continue;
        }
        size_t kl = strlen(k) + 1;
        memcpy(np, k, kl);
        v3_st_tensor *t = &f->t[f->n];
        t->name = np;
        np += kl;
        if ((rc = parse_entry(f, t->name, v, t, err))) goto done;
        int prev = v3_strmap_put(&f->by_name, t->name, f->n);
        if (prev == -2) {
            rc = v3_errf(err, V3_ENOMEM, "%s: out of memory", f->path);
            goto done;
        }
        if (prev >= 0) { /* unreachable with JSON_REJECT_DUPLICATES; kept as a guard */
            rc = v3_errf(err, V3_EFORMAT, "%s: duplicate tensor name '%s'", f->path, t->name);
            goto done;
        }
        f->n++;
    }
    rc = check_overlap(f, err);
done:
    json_decref(root);
    return rc;
}

int v3_st_open_memory(v3_st_file *f, const void *buf, size_t size, const char *origin, v3_err *err) {
    memset(f, 0, sizeof *f);
    f->path = dup_str(origin ? origin : "<memory>");
    if (!f->path) return v3_errf(err, V3_ENOMEM, "out of memory");
    f->base = buf;
    f->size = size;
    int rc = parse_header(f, err);
    if (rc) v3_st_close(f);
    return rc;
}

int v3_st_open(v3_st_file *f, const char *path, v3_err *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return v3_errf(err, errno == ENOENT ? V3_ENOTFOUND : V3_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return v3_errf(err, V3_EIO, "%s: not a regular file", path);
    }
    f->path = dup_str(path);
    if (!f->path) {
        close(fd);
        return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *p = mmap(NULL, f->size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(f->path);
            memset(f, 0, sizeof *f);
            return v3_errf(err, V3_EIO, "%s: mmap failed: %s", path, strerror(e));
        }
        f->base = p;
        f->mapped = 1;
    }
    close(fd); /* the mapping keeps the file */
    int rc = parse_header(f, err);
    if (rc) v3_st_close(f);
    return rc;
}

void v3_st_close(v3_st_file *f) {
    if (!f) return;
    if (f->mapped && f->base) munmap((void *)f->base, f->size);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->meta_key);
    free(f->meta_val);
    free(f->t);
    free(f->names);
    v3_strmap_free(&f->by_name);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const v3_st_tensor *v3_st_find(const v3_st_file *f, const char *name) {
    int i = v3_strmap_get(&f->by_name, name);
    return i < 0 ? NULL : &f->t[i];
}

const char *v3_st_metadata(const v3_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

/* ======================================================================================
 * conversion to fp32
 * ====================================================================================== */

int v3_st_fp8_scale_check(const v3_st_file *f, const v3_st_tensor *t, const v3_st_file *sf,
                          const v3_st_tensor *s, v3_err *err) {
    if (!s)
        return v3_errf(err, V3_ENOTFOUND, "%s: tensor '%s': F8_E4M3 weight without its '%s_scale_inv'",
                       f->path, t->name, t->name);
    const char *sp = sf ? sf->path : f->path;
    if (t->ndim != 2)
        return v3_errf(err, V3_EUNSUPPORTED,
                       "%s: tensor '%s': F8_E4M3 tensor of %d dimensions (block dequantisation "
                       "needs 2)",
                       f->path, t->name, t->ndim);
    if (s->dtype != V3_F32 && s->dtype != V3_BF16)
        return v3_errf(err, V3_EFORMAT, "%s: tensor '%s': scale_inv dtype %s (want F32)", sp,
                       s->name, v3_dtype_name(s->dtype));
    int64_t br = v3_fp8_blocks(t->shape[0]), bc = v3_fp8_blocks(t->shape[1]);
    if (s->ndim != 2 || s->shape[0] != br || s->shape[1] != bc)
        return v3_errf(err, V3_ERANGE,
                       "%s: tensor '%s': scale_inv shape should be [%lld, %lld] for weight '%s' "
                       "[%lld, %lld]",
                       sp, s->name, (long long)br, (long long)bc, t->name,
                       (long long)t->shape[0], (long long)t->shape[1]);
    return V3_OK;
}

/* Converts elements [start, start+count) of a validated tensor; cannot fail. lut is the e4m3
 * table (used for F8 only). */
static void convert_span(const v3_st_tensor *t, const v3_st_tensor *scale, const float *lut,
                         int64_t start, int64_t count, float *dst) {
    const uint8_t *p = t->data + (size_t)start * (size_t)v3_dtype_size(t->dtype);
    /* Data may be unaligned (the format does not promise alignment), so loads go through memcpy,
     * which compilers turn into plain moves. */
    switch (t->dtype) {
    case V3_F32:
        memcpy(dst, p, (size_t)count * 4);
        break;
    case V3_BF16:
        for (int64_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = v3_bf16_to_f32(h);
        }
        break;
    case V3_F16:
        for (int64_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = v3_f16_to_f32(h);
        }
        break;
    case V3_I32:
        for (int64_t i = 0; i < count; i++) {
            int32_t x;
            memcpy(&x, p + 4 * i, 4);
            dst[i] = (float)x;
        }
        break;
    case V3_I64:
        for (int64_t i = 0; i < count; i++) {
            int64_t x;
            memcpy(&x, p + 8 * i, 8);
            dst[i] = (float)x;
        }
        break;
    case V3_U8:
    case V3_BOOL:
        for (int64_t i = 0; i < count; i++) dst[i] = (float)p[i];
        break;
    case V3_F8_E4M3: {
        int64_t C = t->shape[1], bc = scale->shape[1];
        for (int64_t i = 0; i < count;) {
            int64_t idx = start + i, r = idx / C, c = idx % C;
            /* one row segment within one column block shares a scale */
            int64_t run = V3_FP8_BLOCK - c % V3_FP8_BLOCK;
            if (run > C - c) run = C - c;
            if (run > count - i) run = count - i;
            int64_t si = (r / V3_FP8_BLOCK) * bc + c / V3_FP8_BLOCK;
            float s;
            if (scale->dtype == V3_F32) memcpy(&s, scale->data + 4 * si, 4);
            else {
                uint16_t h;
                memcpy(&h, scale->data + 2 * si, 2);
                s = v3_bf16_to_f32(h);
            }
            /* one fp32 multiply, as torch's `w.float() * scale_inv`: bit-identical results */
            for (int64_t j = 0; j < run; j++) dst[i + j] = lut[p[i + j]] * s;
            i += run;
        }
        break;
    }
    default:
        break;
    }
}

int v3_st_to_f32_range(const v3_st_file *f, const v3_st_tensor *t, int64_t start, int64_t count,
                       const v3_st_file *sf, const v3_st_tensor *scale, float *dst, v3_err *err) {
    if (start < 0 || count < 0 || start > t->numel || count > t->numel - start)
        return v3_errf(err, V3_ERANGE, "%s: tensor '%s': element range [%lld, +%lld) outside %lld",
                       f->path, t->name, (long long)start, (long long)count, (long long)t->numel);
    if ((unsigned)t->dtype >= V3_DTYPE_COUNT)
        return v3_errf(err, V3_EUNSUPPORTED, "%s: tensor '%s': cannot convert dtype %d", f->path,
                       t->name, (int)t->dtype);
    float lut[256];
    if (t->dtype == V3_F8_E4M3) {
        int rc = v3_st_fp8_scale_check(f, t, sf, scale, err);
        if (rc) return rc;
        for (int c = 0; c < 256; c++) lut[c] = v3_e4m3_to_f32((uint8_t)c);
    }
    /* Large tensors are split over OpenMP threads (a 671B load converts ~700 GB); chunks are
     * independent, so the result does not depend on the thread count. */
    const int64_t chunk = (int64_t)1 << 18;
    int64_t n_chunks = (count + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n_chunks > 4)
    for (int64_t k = 0; k < n_chunks; k++) {
        int64_t a = k * chunk, n = count - a < chunk ? count - a : chunk;
        convert_span(t, scale, lut, start + a, n, dst + a);
    }
    return V3_OK;
}

/* ======================================================================================
 * a checkpoint: one file or index + shards
 * ====================================================================================== */

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* A shard named by the index must be a plain file beside it: an index that says
 * "../../etc/passwd" or "/abs/x" must not make the loader open it. */
static int shard_name_ok(const char *s) {
    if (!*s || s[0] == '.' || strchr(s, '/') || strchr(s, '\\') || strlen(s) > 255) return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20) return 0;
    return ends_with(s, ".safetensors");
}

static int model_add_shard(v3_st_model *m, const char *name, v3_strmap *seen, v3_err *err) {
    int i = v3_strmap_get(seen, name);
    if (i >= 0) return i;
    char **sn = realloc(m->shard_name, (size_t)(m->n_shards + 1) * sizeof *sn);
    if (!sn) return -v3_errf(err, V3_ENOMEM, "out of memory");
    m->shard_name = sn;
    if (!(sn[m->n_shards] = dup_str(name))) return -v3_errf(err, V3_ENOMEM, "out of memory");
    if (v3_strmap_put(seen, sn[m->n_shards], m->n_shards) == -2)
        return -v3_errf(err, V3_ENOMEM, "out of memory");
    return m->n_shards++;
}

static int open_index(v3_st_model *m, v3_err *err) {
    const char *ip = m->index_path;
    json_error_t je;
    json_t *root = json_load_file(ip, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return v3_errf(err, strstr(je.text, "unable to open") ? V3_ENOTFOUND : V3_EFORMAT,
                       "%s:%d:%d: %s", ip, je.line, je.column, je.text);
    int rc = V3_OK;
    v3_strmap seen = {0};
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        rc = v3_errf(err, V3_EFORMAT, "%s: no \"weight_map\" object", ip);
        goto done;
    }
    size_t n = json_object_size(wm), len = 0;
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) len += strlen(k) + 1;
    m->name = calloc(n ? n : 1, sizeof *m->name);
    m->shard_of = calloc(n ? n : 1, sizeof *m->shard_of);
    m->name_store = malloc(len ? len : 1);
    if (!m->name || !m->shard_of || !m->name_store || v3_strmap_init(&m->by_name, (int)n) ||
        v3_strmap_init(&seen, 16)) {
        rc = v3_errf(err, V3_ENOMEM, "%s: out of memory", ip);
        goto done;
    }
    char *np = m->name_store;
    json_object_foreach(wm, k, v) {
        if (!json_is_string(v)) {
            rc = v3_errf(err, V3_EFORMAT, "%s: tensor '%s': shard is not a string", ip, k);
            goto done;
        }
        const char *s = json_string_value(v);
        if (!shard_name_ok(s)) {
            rc = v3_errf(err, V3_EFORMAT,
                         "%s: tensor '%s': shard \"%s\" is not a plain .safetensors file name "
                         "beside the index",
                         ip, k, s);
            goto done;
        }
        int si = model_add_shard(m, s, &seen, err);
        if (si < 0) {
            rc = -si;
            goto done;
        }
        size_t kl = strlen(k) + 1;
        memcpy(np, k, kl);
        m->name[m->n] = np;
        m->shard_of[m->n] = si;
        np += kl;
        if (v3_strmap_put(&m->by_name, m->name[m->n], m->n) == -2) {
            rc = v3_errf(err, V3_ENOMEM, "%s: out of memory", ip);
            goto done;
        }
        m->n++;
    }
    m->shard = calloc((size_t)(m->n_shards ? m->n_shards : 1), sizeof *m->shard);
    m->shard_ok = calloc((size_t)(m->n_shards ? m->n_shards : 1), 1);
    if (!m->shard || !m->shard_ok) rc = v3_errf(err, V3_ENOMEM, "%s: out of memory", ip);
done:
    v3_strmap_free(&seen);
    json_decref(root);
    return rc;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return dup_str(".");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 2);
    if (!d) return NULL;
    if (n == 0) {
        strcpy(d, "/");
        return d;
    }
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

static int open_single(v3_st_model *m, const char *file, v3_err *err) {
    m->n_shards = 1;
    m->shard_name = calloc(1, sizeof *m->shard_name);
    m->shard = calloc(1, sizeof *m->shard);
    m->shard_ok = calloc(1, 1);
    const char *base = strrchr(file, '/');
    if (!m->shard_name || !m->shard || !m->shard_ok ||
        !(m->shard_name[0] = dup_str(base ? base + 1 : file)))
        return v3_errf(err, V3_ENOMEM, "out of memory");
    int rc = v3_st_open(&m->shard[0], file, err);
    if (rc) return rc;
    m->shard_ok[0] = 1;
    const v3_st_file *f = &m->shard[0];
    m->n = f->n;
    m->name = calloc((size_t)(f->n ? f->n : 1), sizeof *m->name);
    m->shard_of = calloc((size_t)(f->n ? f->n : 1), sizeof *m->shard_of);
    if (!m->name || !m->shard_of || v3_strmap_init(&m->by_name, f->n))
        return v3_errf(err, V3_ENOMEM, "out of memory");
    for (int i = 0; i < f->n; i++) {
        m->name[i] = (char *)f->t[i].name;
        if (v3_strmap_put(&m->by_name, m->name[i], i) == -2)
            return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    return V3_OK;
}

int v3_st_model_open(v3_st_model *m, const char *path, v3_err *err) {
    memset(m, 0, sizeof *m);
    struct stat st;
    if (stat(path, &st) != 0)
        return v3_errf(err, V3_ENOTFOUND, "%s: no such checkpoint file or directory", path);
    int rc;
    if (S_ISDIR(st.st_mode)) {
        m->dir = dup_str(path);
        m->index_path = join(path, "model.safetensors.index.json");
        char *single = join(path, "model.safetensors");
        if (!m->dir || !m->index_path || !single) {
            free(single);
            v3_st_model_close(m);
            return v3_errf(err, V3_ENOMEM, "out of memory");
        }
        if (access(m->index_path, F_OK) == 0) {
            rc = open_index(m, err);
        } else if (access(single, F_OK) == 0) {
            free(m->index_path);
            m->index_path = NULL;
            rc = open_single(m, single, err);
        } else {
            rc = v3_errf(err, V3_ENOTFOUND,
                         "%s: neither model.safetensors.index.json nor model.safetensors", path);
        }
        free(single);
    } else {
        m->dir = dir_of(path);
        if (!m->dir) return v3_errf(err, V3_ENOMEM, "out of memory");
        if (ends_with(path, ".json")) {
            m->index_path = dup_str(path);
            rc = m->index_path ? open_index(m, err) : v3_errf(err, V3_ENOMEM, "out of memory");
        } else {
            rc = open_single(m, path, err);
        }
    }
    if (!rc) {
        m->shard_path = calloc((size_t)(m->n_shards ? m->n_shards : 1), sizeof *m->shard_path);
        if (!m->shard_path) rc = v3_errf(err, V3_ENOMEM, "out of memory");
        for (int i = 0; i < m->n_shards && !rc; i++)
            if (!(m->shard_path[i] = join(m->dir, m->shard_name[i])))
                rc = v3_errf(err, V3_ENOMEM, "out of memory");
    }
    if (rc) v3_st_model_close(m);
    return rc;
}

void v3_st_model_close(v3_st_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_shards; i++) {
        if (m->shard && m->shard_ok && m->shard_ok[i]) v3_st_close(&m->shard[i]);
        if (m->shard_name) free(m->shard_name[i]);
        if (m->shard_path) free(m->shard_path[i]);
    }
    free(m->shard_name);
    free(m->shard_path);
    free(m->shard);
    free(m->shard_ok);
    free(m->name);
    free(m->shard_of);
    free(m->name_store);
    v3_strmap_free(&m->by_name);
    free(m->dir);
    free(m->index_path);
    memset(m, 0, sizeof *m);
}

const char *v3_st_model_where(const v3_st_model *m, const char *name) {
    int i = v3_strmap_get(&m->by_name, name);
    if (i >= 0 && m->shard_ok[m->shard_of[i]]) return m->shard[m->shard_of[i]].path;
    if (i >= 0) return m->shard_path[m->shard_of[i]];
    if (m->index_path) return m->index_path;
    return m->n_shards && m->shard_ok[0] ? m->shard[0].path : m->dir;
}

int v3_st_model_get(v3_st_model *m, const char *name, const v3_st_file **file,
                    const v3_st_tensor **t, v3_err *err) {
    int i = v3_strmap_get(&m->by_name, name);
    if (i < 0)
        return v3_errf(err, V3_ENOTFOUND, "%s: tensor '%s' not found",
                       m->index_path ? m->index_path : v3_st_model_where(m, name), name);
    int s = m->shard_of[i];
    if (!m->shard_ok[s]) {
        int rc = v3_st_open(&m->shard[s], m->shard_path[s], err);
        if (rc) return v3_err_prefix(err, "tensor '%s' (shard of %s)", name, m->index_path);
        m->shard_ok[s] = 1;
    }
    const v3_st_tensor *x = v3_st_find(&m->shard[s], name);
    if (!x)
        return v3_errf(err, V3_EFORMAT, "%s: tensor '%s': the index places it here but the file "
                       "does not contain it", m->shard[s].path, name);
    if (file) *file = &m->shard[s];
    if (t) *t = x;
    return V3_OK;
}

int v3_st_model_load_f32(v3_st_model *m, const char *name, float *dst, v3_err *err) {
    const v3_st_file *f, *sf = NULL;
    const v3_st_tensor *t, *s = NULL;
    int rc = v3_st_model_get(m, name, &f, &t, err);
    if (rc) return rc;
    if (t->dtype == V3_F8_E4M3) {
        size_t n = strlen(name);
        char *sn = malloc(n + sizeof "_scale_inv");
        if (!sn) return v3_errf(err, V3_ENOMEM, "out of memory");
        memcpy(sn, name, n);
        memcpy(sn + n, "_scale_inv", sizeof "_scale_inv");
        /* m->shard[] never moves, so f and t stay valid while another shard is opened */
        if (v3_strmap_get(&m->by_name, sn) >= 0) rc = v3_st_model_get(m, sn, &sf, &s, err);
        free(sn);
        if (rc) return rc;
    }
    return v3_st_to_f32(f, t, sf, s, dst, err);
}

/* ======================================================================================
 * writing
 * ====================================================================================== */

static int64_t spec_bytes(const v3_st_spec *s) {
    int64_t n = v3_dtype_size(s->dtype);
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    return n;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A fresh temporary beside path, so the final rename stays within one filesystem. */
static int open_tmp(const char *path, char **tmp_out, int *fd_out) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp) return -1;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp.XXXXXX", 12);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    /* mkostemp creates 0600; a checkpoint is meant to be read by others, as HF's files are */
    if (fchmod(fd, 0644) != 0) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    *tmp_out = tmp;
    *fd_out = fd;
    return 0;
}

static void fsync_dir_of(const char *path) {
    char *d = dir_of(path);
    if (!d) return;
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* makes the rename durable; failure here loses nothing already written */
        close(fd);
    }
    free(d);
}

/* Moves a finished temporary file into place: fsync, close, rename, fsync the directory. */
static int commit_tmp(int fd, const char *tmp, const char *path, v3_err *err) {
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return v3_errf(err, V3_EIO, "%s: fsync failed: %s", path, strerror(e));
    }
    if (close(fd) != 0) return v3_errf(err, V3_EIO, "%s: close failed: %s", path, strerror(errno));
    if (rename(tmp, path) != 0)
        return v3_errf(err, V3_EIO, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
    fsync_dir_of(path);
    return V3_OK;
}

int v3_st_writer_open(v3_st_writer *w, const char *path, const v3_st_spec *specs, int n,
                      const char *const *meta_kv, int n_meta, v3_err *err) {
    memset(w, 0, sizeof *w);
    w->fd = -1;
    json_t *root = json_object();
    int rc = V3_OK;
    if (!root) return v3_errf(err, V3_ENOMEM, "out of memory");
    if (n_meta > 0) {
        json_t *meta = json_object();
        json_object_set_new(root, "__metadata__", meta);
        for (int i = 0; i < n_meta; i++)
            json_object_set_new(meta, meta_kv[2 * i], json_string(meta_kv[2 * i + 1]));
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const v3_st_spec *s = &specs[i];
        if ((unsigned)s->dtype >= V3_DTYPE_COUNT || s->ndim < 0 || s->ndim > V3_ST_MAX_DIM ||
            strcmp(s->name, "__metadata__") == 0 || json_object_get(root, s->name)) {
            rc = v3_errf(err, V3_EINVAL, "%s: tensor '%s': bad spec or duplicate name", path,
                         s->name);
            goto fail;
        }
        json_t *e = json_object(), *shape = json_array();
        for (int d = 0; d < s->ndim; d++) json_array_append_new(shape, json_integer(s->shape[d]));
        uint64_t b = (uint64_t)spec_bytes(s);
        json_object_set_new(e, "dtype", json_string(v3_dtype_name(s->dtype)));
        json_object_set_new(e, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + b)));
        json_object_set_new(e, "data_offsets", offs);
        if (json_object_set_new(root, s->name, e)) {
            rc = v3_errf(err, V3_ENOMEM, "%s: tensor '%s': cannot build header", path, s->name);
            goto fail;
        }
        off += b;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    root = NULL;
    if (!hdr) return v3_errf(err, V3_ENOMEM, "%s: cannot serialise header", path);
    size_t hl = strlen(hdr);
    size_t padded = (hl + 7) & ~(size_t)7; /* HF pads with spaces so data start 8-aligned */
    char *buf = malloc(8 + padded);
    if (!buf) {
        free(hdr);
        return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    uint64_t le = padded;
    memcpy(buf, &le, 8);
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    free(hdr);
    w->path = dup_str(path);
    if (!w->path || open_tmp(path, &w->tmp_path, &w->fd)) {
        free(buf);
        rc = v3_errf(err, V3_EIO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        v3_st_writer_abort(w);
        return rc;
    }
    if (write_all(w->fd, buf, 8 + padded)) {
        free(buf);
        rc = v3_errf(err, V3_EIO, "%s: write failed: %s", path, strerror(errno));
        v3_st_writer_abort(w);
        return rc;
    }
    free(buf);
    w->expect = off;
    return V3_OK;
fail:
    json_decref(root);
    return rc;
}

int v3_st_writer_write(v3_st_writer *w, const void *bytes, size_t n, v3_err *err) {
    if (w->fd < 0) return v3_errf(err, V3_EINVAL, "safetensors writer is not open");
    if (n > w->expect - w->written)
        return v3_errf(err, V3_EINVAL, "%s: more data than the header declares", w->path);
    if (write_all(w->fd, bytes, n))
        return v3_errf(err, V3_EIO, "%s: write failed: %s", w->path, strerror(errno));
    w->written += n;
    return V3_OK;
}

int v3_st_writer_finish(v3_st_writer *w, v3_err *err) {
    if (w->fd < 0) return v3_errf(err, V3_EINVAL, "safetensors writer is not open");
    if (w->written != w->expect)
        return v3_errf(err, V3_EINVAL, "%s: %llu data bytes written, header declares %llu",
                       w->path, (unsigned long long)w->written, (unsigned long long)w->expect);
    int fd = w->fd;
    w->fd = -1;
    int rc = commit_tmp(fd, w->tmp_path, w->path, err);
    if (rc) return rc; /* abort() still removes the temporary */
    free(w->tmp_path);
    w->tmp_path = NULL;
    return V3_OK;
}

void v3_st_writer_abort(v3_st_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->tmp_path) unlink(w->tmp_path);
    free(w->tmp_path);
    free(w->path);
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

int v3_st_write_file(const char *path, const v3_st_spec *specs, const void *const *data, int n,
                     const char *const *meta_kv, int n_meta, v3_err *err) {
    v3_st_writer w;
    int rc = v3_st_writer_open(&w, path, specs, n, meta_kv, n_meta, err);
    for (int i = 0; i < n && !rc; i++)
        rc = v3_st_writer_write(&w, data[i], (size_t)spec_bytes(&specs[i]), err);
    if (!rc) rc = v3_st_writer_finish(&w, err);
    v3_st_writer_abort(&w);
    return rc;
}

int v3_st_plan_shards(const v3_st_spec *specs, int n, int64_t max_bytes, int *shard_of) {
    int shard = 0;
    int64_t used = 0;
    for (int i = 0; i < n; i++) {
        int64_t b = spec_bytes(&specs[i]);
        if (max_bytes > 0 && used > 0 && used + b > max_bytes) {
            shard++;
            used = 0;
        }
        shard_of[i] = shard;
        used += b;
    }
    return n ? shard + 1 : 1;
}

void v3_st_shard_name(int shard, int n_shards, char *buf, size_t len) {
    if (n_shards <= 1) snprintf(buf, len, "model.safetensors");
    else snprintf(buf, len, "model-%05d-of-%05d.safetensors", shard + 1, n_shards);
}

int v3_st_write_index(const char *dir, const v3_st_spec *specs, int n, const int *shard_of,
                      int n_shards, v3_err *err) {
    char *path = join(dir, "model.safetensors.index.json");
    if (!path) return v3_errf(err, V3_ENOMEM, "out of memory");
    json_t *root = json_object(), *meta = json_object(), *wm = json_object();
    int64_t total = 0, params = 0;
    for (int i = 0; i < n; i++) {
        char name[64];
        v3_st_shard_name(shard_of[i], n_shards, name, sizeof name);
        json_object_set_new(wm, specs[i].name, json_string(name));
        total += spec_bytes(&specs[i]);
        params += spec_bytes(&specs[i]) / v3_dtype_size(specs[i].dtype);
    }
    json_object_set_new(meta, "total_parameters", json_integer(params));
    json_object_set_new(meta, "total_size", json_integer(total));
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", wm);
    /* HF writes json.dumps(index, indent=2, sort_keys=True) + "\n" */
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    int rc = V3_OK, fd = -1;
    char *tmp = NULL;
    if (!text) rc = v3_errf(err, V3_ENOMEM, "%s: cannot serialise", path);
    else if (open_tmp(path, &tmp, &fd))
        rc = v3_errf(err, V3_EIO, "%s: cannot create a temporary file: %s", path, strerror(errno));
    else if (write_all(fd, text, strlen(text)) || write_all(fd, "\n", 1)) {
        rc = v3_errf(err, V3_EIO, "%s: write failed: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
    } else {
        rc = commit_tmp(fd, tmp, path, err);
        if (rc) unlink(tmp);
    }
    free(tmp);
    free(text);
    free(path);
    return rc;
}
