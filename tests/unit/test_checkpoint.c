/* test_checkpoint.c — checkpoints written by Hugging Face transformers (tests/golden/
 * gen_hf_checkpoint.py: DeepseekV3ForCausalLM, tiny config, fp32 and bf16) load bit for bit:
 * every tensor, converted back to its stored dtype, has the SHA-256 torch's bytes had. Then our
 * own save of what was loaded reproduces the same bytes (F32 and BF16), and reloads exactly. */
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/params.h"
#include "model/safetensors.h"
#include "testutil.h"

typedef struct ref_line {
    char name[96], dtype[8], shape[32], hex[65];
} ref_line;

/* Reads hf_tiny_<tag>.sha256.txt: name, dtype, shape, sha256, tab-separated; '#' comments. */
static int read_ref(const char *path, ref_line **out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, cap = 256;
    ref_line *r = malloc((size_t)cap * sizeof *r);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        if (n == cap) r = realloc(r, (size_t)(cap *= 2) * sizeof *r);
        if (sscanf(line, "%95[^\t]\t%7[^\t]\t%31[^\t]\t%64s", r[n].name, r[n].dtype, r[n].shape, r[n].hex) == 4)
            n++;
    }
    fclose(f);
    *out = r;
    return n;
}

static void shape_text(const v3_param_info *p, char *buf, size_t n) {
    if (p->ndim == 1) snprintf(buf, n, "%lld", (long long)p->shape[0]);
    else snprintf(buf, n, "%lld,%lld", (long long)p->shape[0], (long long)p->shape[1]);
}

/* SHA-256 of tensor p of buf in dtype's bytes (BF16 narrowing is exact for bf16-origin data). */
static void hash_as(const v3_param_info *p, const float *buf, v3_dtype dt, char hex[65]) {
    uint8_t d[32];
    const float *x = buf + p->offset;
    if (dt == V3_F32) {
        v3_sha256(x, (size_t)p->numel * 4, d);
    } else {
        uint16_t *h = malloc((size_t)p->numel * 2);
        for (int64_t i = 0; i < p->numel; i++) h[i] = v3_f32_to_bf16(x[i]);
        v3_sha256(h, (size_t)p->numel * 2, d);
        free(h);
    }
    v3_sha256_hex(d, hex);
}

/* Every tensor of the file in dir against the reference (raw stored bytes, no conversion). */
static void check_file_bytes(const char *dir, const ref_line *ref, int n, const char *what) {
    char p[600];
    v3_err err = {0};
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    v3_st_file f;
    CHECK_OK(v3_st_open(&f, p, &err), &err);
    if (err.code) return;
    CHECK(f.n == n, "%s: %d tensors in file, %d in reference", what, f.n, n);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const v3_st_tensor *t = v3_st_find(&f, ref[i].name);
        uint8_t d[32];
        char hex[65] = "";
        if (t) {
            v3_sha256(t->data, (size_t)(t->end - t->begin), d);
            v3_sha256_hex(d, hex);
        }
        if (!t || strcmp(hex, ref[i].hex) != 0 || strcmp(v3_dtype_name(t->dtype), ref[i].dtype) != 0) {
            if (bad++ < 5) fprintf(stderr, "%s: %s differs from torch's bytes\n", what, ref[i].name);
        }
    }
    CHECK(bad == 0, "%s: %d tensors differ from torch's bytes", what, bad);
    v3_st_close(&f);
}

static void run(const char *tag, v3_dtype dt, const char *tmp) {
    char dir[512], p[600];
    v3_err err = {0};
    snprintf(p, sizeof p, "tests/golden/data/hf_tiny_%s", tag);
    t_source_path(p, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    v3_config c;
    CHECK_OK(v3_config_load(&c, p, &err), &err);
    if (err.code) return;
    CHECK(c.n_layer == 3 && c.first_k_dense_replace == 1 && c.n_routed_experts == 4 && c.q_lora_rank == 16 && c.rope_yarn,
          "%s: config fields", tag);
    ref_line *ref = NULL;
    snprintf(p, sizeof p, "tests/golden/data/hf_tiny_%s.sha256.txt", tag);
    char rp[600];
    int n = read_ref(t_source_path(p, rp, sizeof rp), &ref);
    CHECK(n > 0, "%s: reference %s unreadable", tag, rp);
    if (n <= 0) return;

    v3_param_table t, tm;
    CHECK_OK(v3_params_build(&t, &c, 0, &err), &err);
    CHECK_OK(v3_params_build(&tm, &c, 1, &err), &err);
    CHECK(t.n == n, "%s: table has %d tensors, HF saved %d", tag, t.n, n);
    float *w = malloc((size_t)tm.total * 4), *back = malloc((size_t)tm.total * 4);
    CHECK_OK(v3_checkpoint_load(dir, &t, w, 0, &err), &err);

    /* each tensor: name known, shape and dtype as saved, bytes as torch held them */
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int k = v3_params_find(&t, ref[i].name);
        if (k < 0) {
            bad++;
            fprintf(stderr, "%s: %s not in the parameter table\n", tag, ref[i].name);
            continue;
        }
        char shape[32], hex[65];
        shape_text(&t.p[k], shape, sizeof shape);
        hash_as(&t.p[k], w, dt, hex);
        if (strcmp(shape, ref[i].shape) != 0 || strcmp(ref[i].dtype, v3_dtype_name(dt)) != 0 ||
            strcmp(hex, ref[i].hex) != 0) {
            if (bad++ < 5) fprintf(stderr, "%s: %s differs (shape %s vs %s)\n", tag, ref[i].name, shape, ref[i].shape);
        }
    }
    CHECK(bad == 0, "%s: %d of %d tensors differ from transformers' bytes", tag, bad, n);
    check_file_bytes(dir, ref, n, tag);

    /* HF drops the MTP layer: with the MTP table it is missing unless allowed */
    int rc = v3_checkpoint_load(dir, &tm, back, 0, &err);
    CHECK(rc == V3_ENOTFOUND && strstr(err.msg, "model.layers.3."), "%s: MTP absent: %d %s", tag, rc, err.msg);
    CHECK_OK(v3_checkpoint_load(dir, &tm, back, V3_CKPT_ALLOW_MISSING_MTP, &err), &err);
    CHECK(memcmp(back, w, (size_t)t.total * 4) == 0, "%s: main tensors with the MTP table", tag);

    /* our save in the same dtype writes exactly transformers' bytes, and reloads exactly */
    snprintf(p, sizeof p, "%s/%s_resaved", tmp, tag);
    CHECK_OK(v3_checkpoint_save(p, &t, w, dt, 0, &err), &err);
    check_file_bytes(p, ref, n, "resaved");
    memset(back, 0, (size_t)t.total * 4);
    CHECK_OK(v3_checkpoint_load(p, &t, back, 0, &err), &err);
    CHECK(memcmp(back, w, (size_t)t.total * 4) == 0, "%s: save/load round trip not bit-exact", tag);
    /* and sharded */
    snprintf(p, sizeof p, "%s/%s_sharded", tmp, tag);
    CHECK_OK(v3_checkpoint_save(p, &t, w, dt, 20000, &err), &err);
    memset(back, 0, (size_t)t.total * 4);
    CHECK_OK(v3_checkpoint_load(p, &t, back, 0, &err), &err);
    CHECK(memcmp(back, w, (size_t)t.total * 4) == 0, "%s: sharded round trip not bit-exact", tag);

    free(w);
    free(back);
    free(ref);
    v3_params_free(&t);
    v3_params_free(&tm);
}

int main(void) {
    char tmp[256], cmd[300];
    t_tmpdir(tmp, sizeof tmp);
    run("f32", V3_F32, tmp);
    run("bf16", V3_BF16, tmp);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "cleanup");
    return t_finish("test_checkpoint");
}
