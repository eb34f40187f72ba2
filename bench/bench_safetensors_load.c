/* bench_safetensors_load.c — how fast v3tune reads a checkpoint: open (header parse) + every
 * tensor of every shard, page cache warm or cold. Compared side by side with Python safetensors
 * by bench/run_safetensors_load.sh (bench/safetensors_load.py is the other half).
 *
 *   bench_safetensors_load generate DIR GB [TENSOR_MB]   write a BF16 checkpoint of ~GB GB
 *   bench_safetensors_load run DIR [REPEATS] [cold]      time every mode, print one line each
 *
 * Modes: open (index + every header), touch (mmap, read one byte per 4 KiB page of every
 * tensor), convert (every tensor to fp32 into one reused buffer), convert_fresh (each tensor
 * into a newly allocated fp32 buffer, freed after: what a loader allocating per tensor pays).
 * cold: before each repeat, posix_fadvise(DONTNEED) drops the shards' cached pages (works
 * without root for clean pages; a no-op where the kernel refuses). Single-threaded. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/rng.h"
#include "model/safetensors.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int generate(const char *dir, double gb, double tensor_mb) {
    v3_err err = {0};
    if (mkdir(dir, 0777) != 0 && access(dir, F_OK) != 0) {
        perror(dir);
        return 1;
    }
    /* a mix like a DeepSeek-V3 layer's: expert-sized matrices, some bigger, a few small norms */
    int64_t cols = 2048, rows = (int64_t)(tensor_mb * 1048576.0 / 2 / (double)cols);
    if (rows < 1) rows = 1;
    int64_t per = rows * cols * 2, total = (int64_t)(gb * 1e9);
    int n = (int)(total / per) + 1;
    v3_st_spec *s = calloc((size_t)n * 2, sizeof *s);
    char (*names)[64] = calloc((size_t)n * 2, 64);
    int m = 0;
    for (int i = 0; i < n; i++) {
        snprintf(names[m], 64, "model.layers.%d.mlp.experts.%d.up_proj.weight", i / 64, i % 64);
        s[m] = (v3_st_spec){names[m], V3_BF16, 2, {rows, cols}};
        m++;
        if (i % 8 == 0) {
            snprintf(names[m], 64, "model.layers.%d.norm%d.weight", i / 64, i);
            s[m] = (v3_st_spec){names[m], V3_BF16, 1, {cols}};
            m++;
        }
    }
    int *shard_of = calloc((size_t)m, sizeof *shard_of);
    int n_shards = v3_st_plan_shards(s, m, 1000000000, shard_of); /* 1 GB shards */
    uint16_t *buf = malloc((size_t)per);
    v3_rng r;
    v3_rng_seed(&r, 1);
    for (int64_t i = 0; i < rows * cols; i++) buf[i] = v3_f32_to_bf16(0.02f * v3_rng_normal(&r));
    int rc = 0;
    for (int sh = 0, first = 0; sh < n_shards && !rc; sh++) {
        int last = first;
        while (last < m && shard_of[last] == sh) last++;
        char name[64], path[4096];
        v3_st_shard_name(sh, n_shards, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        v3_st_writer w;
        static const char *const meta[] = {"format", "pt"};
        rc = v3_st_writer_open(&w, path, s + first, last - first, meta, 1, &err);
        for (int i = first; i < last && !rc; i++) {
            int64_t b = s[i].ndim == 2 ? per : cols * 2;
            buf[0] ^= (uint16_t)i; /* tensors differ */
            rc = v3_st_writer_write(&w, buf, (size_t)b, &err);
        }
        if (!rc) rc = v3_st_writer_finish(&w, &err);
        v3_st_writer_abort(&w);
        first = last;
    }
    if (!rc && n_shards > 1) rc = v3_st_write_index(dir, s, m, shard_of, n_shards, &err);
    if (rc) fprintf(stderr, "generate: %s\n", err.msg);
    else printf("wrote %s: %d tensors, %d shards, %.2f GB\n", dir, m, n_shards,
                (double)n * (double)per / 1e9);
    free(s);
    free(names);
    free(shard_of);
    free(buf);
    return rc ? 1 : 0;
}

static void drop_cache(const v3_st_model *m) {
    for (int i = 0; i < m->n_shards; i++) {
        int fd = open(m->shard_path[i], O_RDONLY);
        if (fd < 0) continue;
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

#define REUSE_FLOATS ((int64_t)64 << 20) /* 256 MiB: larger than any tensor generated here */

typedef enum { M_OPEN, M_TOUCH, M_CONVERT, M_CONVERT_FRESH, M_COUNT } mode;
static const char *const mode_name[M_COUNT] = {"open", "touch", "convert", "convert_fresh"};

/* One timed pass; returns seconds (negative on error), *bytes = tensor bytes visited. */
static double pass(const char *dir, mode md, int cold, float *reuse, double *bytes, int64_t *n_tensors) {
    v3_err err = {0};
    v3_st_model m;
    if (cold) { /* the index names the shards; drop them before the clock starts */
        if (v3_st_model_open(&m, dir, &err) == 0) {
            drop_cache(&m);
            v3_st_model_close(&m);
        }
    }
    double t0 = now();
    if (v3_st_model_open(&m, dir, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    int64_t maxn = 0;
    double b = 0;
    unsigned sink = 0; /* reported, so the reads cannot be optimised away */
    for (int i = 0; i < m.n; i++) {
        const v3_st_file *f;
        const v3_st_tensor *t;
        if (v3_st_model_get(&m, m.name[i], &f, &t, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            v3_st_model_close(&m);
            return -1;
        }
        b += (double)(t->end - t->begin);
        if (t->numel > maxn) maxn = t->numel;
        if (md == M_TOUCH) {
            unsigned acc = 0;
            for (uint64_t k = 0; k < t->end - t->begin; k += 4096) acc += t->data[k];
            sink += acc;
        } else if (md == M_CONVERT) {
            if (t->numel > REUSE_FLOATS) {
                fprintf(stderr, "tensor too big for the reuse buffer\n");
                return -1;
            }
            if (v3_st_model_load_f32(&m, m.name[i], reuse, &err)) fprintf(stderr, "%s\n", err.msg);
            sink += (unsigned)reuse[t->numel / 2];
        } else if (md == M_CONVERT_FRESH) {
            float *x = malloc((size_t)t->numel * sizeof *x);
            if (v3_st_model_load_f32(&m, m.name[i], x, &err)) fprintf(stderr, "%s\n", err.msg);
            sink += (unsigned)x[t->numel / 2];
            free(x);
        }
    }
    *n_tensors = m.n;
    v3_st_model_close(&m);
    if (sink == 0x5eed5eedu) fprintf(stderr, "(checksum %u)\n", sink);
    *bytes = b;
    return now() - t0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run(const char *dir, int repeats, int cold) {
    /* one fp32 buffer for "convert", faulted in once, outside the timed passes */
    float *reuse = malloc(sizeof(float) * REUSE_FLOATS);
    if (!reuse) return 1;
    memset(reuse, 0, sizeof(float) * REUSE_FLOATS);
    for (int md = 0; md < M_COUNT; md++) {
        double best[64], bytes = 0;
        int64_t n = 0;
        if (!cold) pass(dir, (mode)md, 0, reuse, &bytes, &n); /* warm-up: page cache, allocator */
        for (int r = 0; r < repeats; r++) {
            best[r] = pass(dir, (mode)md, cold, reuse, &bytes, &n);
            if (best[r] < 0) {
                free(reuse);
                return 1;
            }
        }
        qsort(best, (size_t)repeats, sizeof *best, cmp_d);
        double med = best[repeats / 2];
        printf("v3tune\t%s\t%s\t%lld\t%.3f\t%.3f\t%.2f\n", cold ? "cold" : "warm", mode_name[md],
               (long long)n, bytes / 1e9, med, md == M_OPEN ? 0.0 : bytes / 1e9 / med);
        fflush(stdout);
    }
    free(reuse);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "generate") == 0)
        return generate(argv[2], atof(argv[3]), argc > 4 ? atof(argv[4]) : 28.0);
    if (argc >= 3 && strcmp(argv[1], "run") == 0) {
        int repeats = argc > 3 ? atoi(argv[3]) : 3;
        if (repeats < 1 || repeats > 64) repeats = 3;
        return run(argv[2], repeats, argc > 4 && strcmp(argv[4], "cold") == 0);
    }
    fprintf(stderr, "usage: %s generate DIR GB [TENSOR_MB] | run DIR [REPEATS] [cold]\n", argv[0]);
    return 2;
}
