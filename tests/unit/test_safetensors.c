/* test_safetensors.c — the safetensors reader, writer and checkpoint loader on good and bad
 * input. Every bad input must give the right status code AND a message that names the file and
 * the tensor at fault (a user with 163 shards needs both). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/params.h"
#include "model/safetensors.h"
#include "testutil.h"

static char g_tmp[256]; /* this test's scratch directory (set once in main) */

/* A small config with every tensor kind: dense layer 0, MoE layer 1, q_lora, router bias, MTP. */
static const char *TINY =
    "{\"vocab_size\":64,\"hidden_size\":16,\"intermediate_size\":32,\"moe_intermediate_size\":8,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":2,"
    "\"q_lora_rank\":8,\"kv_lora_rank\":8,\"qk_nope_head_dim\":4,\"qk_rope_head_dim\":4,"
    "\"v_head_dim\":4,\"n_routed_experts\":4,\"n_shared_experts\":1,\"num_experts_per_tok\":2,"
    "\"n_group\":2,\"topk_group\":1,\"first_k_dense_replace\":1,\"num_nextn_predict_layers\":1}";

/* Writes u64 header length + header + data_len zero bytes. */
static void raw_file(const char *path, const char *header, size_t data_len) {
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    fwrite(&n, 8, 1, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_len; i++) fputc(0, f);
    fclose(f);
}

static const char *tpath(const char *name, char *buf) {
    snprintf(buf, 512, "%s/%s", g_tmp, name);
    return buf;
}

/* Opens a file that must fail with code, and a message naming the file and (if given) tensor. */
static void expect_bad(const char *file, const char *header, size_t data_len, int code,
                       const char *tensor, const char *what) {
    char p[512];
    raw_file(tpath(file, p), header, data_len);
    v3_st_file f;
    v3_err err = {0};
    int rc = v3_st_open(&f, p, &err);
    CHECK(rc == code, "%s: code %d want %d (%s)", what, rc, code, err.msg);
    CHECK(strstr(err.msg, p) != NULL, "%s: message does not name the file: %s", what, err.msg);
    if (tensor) CHECK(strstr(err.msg, tensor) != NULL, "%s: message does not name '%s': %s", what, tensor, err.msg);
    if (rc == 0) v3_st_close(&f);
}

static void test_bad_files(void) {
    char p[512];
    v3_err err = {0};
    v3_st_file f;
    /* shorter than the length field */
    FILE *fp = fopen(tpath("short.safetensors", p), "wb");
    fwrite("abc", 1, 3, fp);
    fclose(fp);
    int rc = v3_st_open(&f, p, &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, p) && strstr(err.msg, "truncated"), "short: %d %s", rc, err.msg);
    /* header length beyond the file */
    fp = fopen(tpath("hlen.safetensors", p), "wb");
    uint64_t big = 1000;
    fwrite(&big, 8, 1, fp);
    fwrite("{}", 1, 2, fp);
    fclose(fp);
    rc = v3_st_open(&f, p, &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, p) && strstr(err.msg, "exceeds"), "hlen: %d %s", rc, err.msg);

    expect_bad("notjson.safetensors", "{\"a\": {\"dtype\": ", 0, V3_EFORMAT, NULL, "not JSON");
    expect_bad("array.safetensors", "[1, 2, 3]", 0, V3_EFORMAT, NULL, "not an object");
    expect_bad("entry.safetensors", "{\"w.weight\": 3}", 0, V3_EFORMAT, "w.weight", "entry not an object");
    expect_bad("dtype.safetensors",
               "{\"w.weight\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               V3_EUNSUPPORTED, "w.weight", "unknown dtype");
    expect_bad("mismatch.safetensors",
               "{\"w.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
               V3_EFORMAT, "w.weight", "shape/offset mismatch");
    expect_bad("outside.safetensors",
               "{\"w.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]}}", 24,
               V3_ERANGE, "w.weight", "offsets outside data");
    expect_bad("overlap.safetensors",
               "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b.weight\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[8,16]}}",
               16, V3_EFORMAT, "b.weight", "overlapping tensors");
    expect_bad("dup.safetensors",
               "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, V3_EFORMAT, "a.weight", "duplicate names");
    expect_bad("negshape.safetensors",
               "{\"w.weight\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
               V3_EFORMAT, "w.weight", "negative shape");
    expect_bad("overflow.safetensors",
               "{\"w.weight\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
               "\"data_offsets\":[0,0]}}",
               0, V3_ERANGE, "w.weight", "numel overflow");
    expect_bad("offsets.safetensors",
               "{\"w.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4,
               V3_EFORMAT, "w.weight", "data_offsets not a pair");
    expect_bad("meta.safetensors", "{\"__metadata__\":{\"format\":7}}", 0, V3_EFORMAT, "format",
               "metadata value not a string");

    /* a truncated copy of a good file: the last tensor now reaches past the end */
    float x[6] = {1, 2, 3, 4, 5, 6};
    v3_st_spec s[2] = {{"a.weight", V3_F32, 1, {2}}, {"b.weight", V3_F32, 2, {2, 2}}};
    const void *d[2] = {x, x + 2};
    CHECK_OK(v3_st_write_file(tpath("good.safetensors", p), s, d, 2, NULL, 0, &err), &err);
    struct stat st;
    stat(p, &st);
    CHECK(truncate(p, st.st_size - 3) == 0, "truncate");
    rc = v3_st_open(&f, p, &err);
    CHECK(rc == V3_ERANGE && strstr(err.msg, p) && strstr(err.msg, "b.weight"), "truncated: %d %s", rc, err.msg);
}

static void test_roundtrip_file(v3_rng *r) {
    char p[512];
    v3_err err = {0};
    /* every dtype, a scalar, an empty tensor, odd sizes so data are not all aligned */
    enum { N = 8 };
    v3_st_spec s[N] = {{"f32", V3_F32, 2, {3, 5}},      {"bf16", V3_BF16, 1, {7}},
                       {"f16", V3_F16, 3, {2, 1, 3}},   {"u8", V3_U8, 1, {5}},
                       {"i64", V3_I64, 1, {2}},         {"scalar", V3_I32, 0, {0}},
                       {"empty", V3_F32, 2, {0, 4}},    {"bool", V3_BOOL, 1, {3}}};
    float f32[15];
    uint16_t bf[7], hf[6];
    uint8_t u8[5] = {0, 1, 127, 200, 255}, bo[3] = {1, 0, 1};
    int64_t i64[2] = {-5, 1LL << 40};
    int32_t sc = -77;
    float want_bf[7], want_hf[6];
    for (int i = 0; i < 15; i++) f32[i] = v3_rng_normal(r);
    for (int i = 0; i < 7; i++) {
        bf[i] = v3_f32_to_bf16(v3_rng_normal(r));
        want_bf[i] = v3_bf16_to_f32(bf[i]);
    }
    for (int i = 0; i < 6; i++) {
        hf[i] = v3_f32_to_f16(v3_rng_normal(r));
        want_hf[i] = v3_f16_to_f32(hf[i]);
    }
    const void *d[N] = {f32, bf, hf, u8, i64, &sc, NULL, bo};
    const char *meta[] = {"format", "pt", "note", "v3tune test"};
    CHECK_OK(v3_st_write_file(tpath("all.safetensors", p), s, d, N, meta, 2, &err), &err);
    /* HF's layout rule: the header is padded so the data start 8-byte aligned */
    FILE *fp = fopen(p, "rb");
    uint64_t hl = 0;
    CHECK(fread(&hl, 8, 1, fp) == 1 && hl % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hl);
    fclose(fp);
    v3_st_file f;
    CHECK_OK(v3_st_open(&f, p, &err), &err);
    if (err.code) return;
    CHECK(f.n == N, "n %d", f.n);
    CHECK(v3_st_metadata(&f, "note") && strcmp(v3_st_metadata(&f, "note"), "v3tune test") == 0, "metadata");
    float out[16];
    CHECK_OK(v3_st_to_f32(&f, v3_st_find(&f, "f32"), NULL, NULL, out, &err), &err);
    CHECK(memcmp(out, f32, sizeof f32) == 0, "f32 round trip");
    CHECK_OK(v3_st_to_f32(&f, v3_st_find(&f, "bf16"), NULL, NULL, out, &err), &err);
    CHECK(memcmp(out, want_bf, sizeof want_bf) == 0, "bf16 widening");
    CHECK_OK(v3_st_to_f32(&f, v3_st_find(&f, "f16"), NULL, NULL, out, &err), &err);
    CHECK(memcmp(out, want_hf, sizeof want_hf) == 0, "f16 widening");
    CHECK_OK(v3_st_to_f32(&f, v3_st_find(&f, "u8"), NULL, NULL, out, &err), &err);
    CHECK(out[3] == 200.f && out[4] == 255.f, "u8");
    CHECK_OK(v3_st_to_f32(&f, v3_st_find(&f, "i64"), NULL, NULL, out, &err), &err);
    CHECK(out[0] == -5.f && out[1] == 1099511627776.f, "i64");
    const v3_st_tensor *t = v3_st_find(&f, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1, "scalar");
    CHECK_OK(v3_st_to_f32(&f, t, NULL, NULL, out, &err), &err);
    CHECK(out[0] == -77.f, "scalar value %g", out[0]);
    t = v3_st_find(&f, "empty");
    CHECK(t && t->numel == 0 && t->begin == t->end, "empty tensor");
    CHECK(v3_st_find(&f, "nope") == NULL, "absent name");
    v3_st_close(&f);
    v3_st_close(&f); /* closing twice (zeroed) is harmless */

    /* the memory reader agrees with the file reader */
    fp = fopen(p, "rb");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    char *buf = malloc((size_t)n);
    CHECK(fread(buf, 1, (size_t)n, fp) == (size_t)n, "read back");
    fclose(fp);
    CHECK_OK(v3_st_open_memory(&f, buf, (size_t)n, "mem", &err), &err);
    CHECK(f.n == N && v3_st_find(&f, "bool") && v3_st_find(&f, "bool")->data[2] == 1, "memory reader");
    v3_st_close(&f);
    free(buf);

    /* the writer refuses a short write and leaves no file behind */
    v3_st_writer w;
    CHECK_OK(v3_st_writer_open(&w, tpath("short_write.safetensors", p), s, 1, NULL, 0, &err), &err);
    CHECK_OK(v3_st_writer_write(&w, f32, 8, &err), &err);
    int rc = v3_st_writer_finish(&w, &err);
    CHECK(rc == V3_EINVAL && strstr(err.msg, "short_write"), "short write: %d %s", rc, err.msg);
    v3_st_writer_abort(&w);
    CHECK(access(p, F_OK) != 0, "an unfinished file must not appear under its final name");
}

/* ---- checkpoints against a parameter table ---- */

typedef struct variant {
    v3_st_spec *s;
    const void **d;
    int n;
} variant;

static void variant_from_table(variant *v, const v3_param_table *t, const float *src) {
    v->s = calloc((size_t)t->n + 8, sizeof *v->s);
    v->d = calloc((size_t)t->n + 8, sizeof *v->d);
    v->n = t->n;
    for (int i = 0; i < t->n; i++) {
        v->s[i] = (v3_st_spec){t->p[i].name, V3_F32, t->p[i].ndim, {t->p[i].shape[0], t->p[i].shape[1]}};
        v->d[i] = src + t->p[i].offset;
    }
}

static int find_spec(const variant *v, const char *name) {
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->s[i].name, name) == 0) return i;
    return -1;
}

/* Writes v as dir/model.safetensors, loads it against t, expects code and names in the message. */
static void expect_load(const char *dirname, variant *v, const v3_param_table *t, float *dst,
                        int flags, int code, const char *name, const char *what) {
    char dir[512], p[600];
    v3_err err = {0};
    tpath(dirname, dir);
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK_OK(v3_st_write_file(p, v->s, v->d, v->n, NULL, 0, &err), &err);
    int rc = v3_checkpoint_load(dir, t, dst, flags, &err);
    CHECK(rc == code, "%s: code %d want %d (%s)", what, rc, code, err.msg);
    if (code) {
        CHECK(strstr(err.msg, dir) != NULL, "%s: message does not name the file: %s", what, err.msg);
        CHECK(strstr(err.msg, name) != NULL, "%s: message does not name '%s': %s", what, name, err.msg);
    }
}

static void test_checkpoint(v3_rng *r) {
    v3_err err = {0};
    v3_config c;
    CHECK_OK(v3_config_parse(&c, TINY, "tiny", &err), &err);
    v3_param_table t, tm;
    CHECK_OK(v3_params_build(&t, &c, 0, &err), &err);
    CHECK_OK(v3_params_build(&tm, &c, 1, &err), &err);
    float *src = malloc((size_t)tm.total * 4), *dst = malloc((size_t)tm.total * 4);
    t_fill_normal(r, src, tm.total, 1.0f);

    /* save + load, one file and sharded, F32 bit-exact and BF16 exactly the rounded values */
    char dir[512], p[600];
    CHECK_OK(v3_checkpoint_save(tpath("ck_f32", dir), &t, src, V3_F32, 0, &err), &err);
    memset(dst, 0, (size_t)t.total * 4);
    CHECK_OK(v3_checkpoint_load(dir, &t, dst, 0, &err), &err);
    CHECK(memcmp(dst, src, (size_t)t.total * 4) == 0, "f32 checkpoint round trip");
    CHECK_OK(v3_checkpoint_save(tpath("ck_shard", dir), &t, src, V3_F32, 4096, &err), &err);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    CHECK(access(p, F_OK) == 0, "sharded save writes the index");
    v3_st_model m;
    CHECK_OK(v3_st_model_open(&m, dir, &err), &err);
    CHECK(m.n_shards > 3 && m.n == t.n, "shards %d tensors %d", m.n_shards, m.n);
    int n_shards_was = m.n_shards;
    v3_st_model_close(&m);
    memset(dst, 0, (size_t)t.total * 4);
    CHECK_OK(v3_checkpoint_load(dir, &t, dst, 0, &err), &err);
    CHECK(memcmp(dst, src, (size_t)t.total * 4) == 0, "sharded round trip");
    /* saving the same dir unsharded removes the index, so the new single file is what loads */
    CHECK_OK(v3_checkpoint_save(dir, &t, src, V3_BF16, 0, &err), &err);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    CHECK(access(p, F_OK) != 0, "stale index removed");
    snprintf(p, sizeof p, "%s/model-00001-of-%05d.safetensors", dir, n_shards_was);
    CHECK(access(p, F_OK) != 0, "stale shard %s removed", p);
    CHECK_OK(v3_checkpoint_load(dir, &t, dst, 0, &err), &err);
    int bad = 0;
    for (int64_t i = 0; i < t.total; i++) bad += dst[i] != v3_bf16_to_f32(v3_f32_to_bf16(src[i]));
    CHECK(bad == 0, "bf16 round trip: %d values differ", bad);

    /* MTP: HF drops these tensors; refused by default, tolerated with the flag, left untouched */
    CHECK_OK(v3_checkpoint_save(tpath("ck_nomtp", dir), &t, src, V3_F32, 0, &err), &err);
    int rc = v3_checkpoint_load(dir, &tm, dst, 0, &err);
    CHECK(rc == V3_ENOTFOUND && strstr(err.msg, "model.layers.2.") && strstr(err.msg, "MTP"),
          "missing MTP: %d %s", rc, err.msg);
    for (int64_t i = 0; i < tm.total; i++) dst[i] = -1.0f;
    CHECK_OK(v3_checkpoint_load(dir, &tm, dst, V3_CKPT_ALLOW_MISSING_MTP, &err), &err);
    CHECK(memcmp(dst, src, (size_t)t.total * 4) == 0, "main tensors loaded with MTP absent");
    CHECK(dst[tm.total - 1] == -1.0f && dst[t.total] == -1.0f, "MTP region left as it was");

    /* with the MTP layer saved, the MTP table loads it all */
    CHECK_OK(v3_checkpoint_save(tpath("ck_mtp", dir), &tm, src, V3_F32, 0, &err), &err);
    memset(dst, 0, (size_t)tm.total * 4);
    CHECK_OK(v3_checkpoint_load(dir, &tm, dst, 0, &err), &err);
    CHECK(memcmp(dst, src, (size_t)tm.total * 4) == 0, "round trip with MTP");
    /* ... and the table without MTP finds those tensors unexpected, naming one */
    rc = v3_checkpoint_load(dir, &t, dst, 0, &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, "model.layers.2.") && strstr(err.msg, dir),
          "MTP tensors unexpected without MTP: %d %s", rc, err.msg);
    CHECK_OK(v3_checkpoint_load(dir, &t, dst, V3_CKPT_IGNORE_UNEXPECTED, &err), &err);

    variant v;
    variant_from_table(&v, &t, src);
    /* missing tensor */
    int k = find_spec(&v, "model.layers.1.mlp.experts.2.up_proj.weight");
    v3_st_spec keep = v.s[k];
    const void *keepd = v.d[k];
    v.s[k] = v.s[v.n - 1];
    v.d[k] = v.d[v.n - 1];
    v.n--;
    expect_load("ck_missing", &v, &t, dst, 0, V3_ENOTFOUND, keep.name, "missing tensor");
    v.s[v.n] = v.s[k];
    v.d[v.n] = v.d[k];
    v.s[k] = keep;
    v.d[k] = keepd;
    v.n++;
    /* unexpected tensor (tolerated with the flag) */
    v.s[v.n] = (v3_st_spec){"model.layers.0.mlp.bias", V3_F32, 1, {4}};
    v.d[v.n++] = src;
    expect_load("ck_unexpected", &v, &t, dst, 0, V3_EFORMAT, "model.layers.0.mlp.bias", "unexpected tensor");
    expect_load("ck_unexpected2", &v, &t, dst, V3_CKPT_IGNORE_UNEXPECTED, 0, "", "unexpected ignored");
    v.n--;
    /* wrong shape against the config: o_proj transposed would be the classic mistake */
    k = find_spec(&v, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight");
    int64_t s0 = v.s[k].shape[0];
    v.s[k].shape[0] = v.s[k].shape[1];
    v.s[k].shape[1] = s0;
    expect_load("ck_shape", &v, &t, dst, 0, V3_ERANGE, v.s[k].name, "wrong shape");
    v.s[k].shape[1] = v.s[k].shape[0];
    v.s[k].shape[0] = s0;
    /* wrong dtype */
    k = find_spec(&v, "model.norm.weight");
    v.s[k].dtype = V3_I32;
    expect_load("ck_dtype", &v, &t, dst, 0, V3_EFORMAT, "model.norm.weight", "wrong dtype");
    v.s[k].dtype = V3_F32;
    /* FP8 weight without its scale_inv, then with it (loads and dequantises) */
    k = find_spec(&v, "model.layers.0.mlp.down_proj.weight");
    const v3_param_info *pi = &t.p[v3_params_find(&t, "model.layers.0.mlp.down_proj.weight")];
    uint8_t *q = malloc((size_t)pi->numel);
    for (int64_t i = 0; i < pi->numel; i++) q[i] = v3_f32_to_e4m3(src[pi->offset + i] * 100.f);
    v.s[k].dtype = V3_F8_E4M3;
    v.d[k] = q;
    expect_load("ck_noscale", &v, &t, dst, 0, V3_ENOTFOUND, "model.layers.0.mlp.down_proj.weight_scale_inv",
                "missing scale_inv");
    float sc[1] = {0.01f};
    v.s[v.n] = (v3_st_spec){"model.layers.0.mlp.down_proj.weight_scale_inv", V3_F32, 2, {1, 1}};
    v.d[v.n++] = sc;
    expect_load("ck_fp8", &v, &t, dst, 0, 0, "", "fp8 with scale");
    bad = 0;
    for (int64_t i = 0; i < pi->numel; i++) bad += dst[pi->offset + i] != v3_e4m3_to_f32(q[i]) * 0.01f;
    CHECK(bad == 0, "fp8 dequantised on load: %d differ", bad);
    v.s[v.n - 1].shape[1] = 2; /* scale of the wrong block shape */
    float sc2[2] = {0.01f, 0.01f};
    v.d[v.n - 1] = sc2;
    expect_load("ck_scale_shape", &v, &t, dst, 0, V3_ERANGE, "down_proj.weight_scale_inv", "scale shape");
    v.n--;
    v.s[k].dtype = V3_F32;
    v.d[k] = src + pi->offset;
    free(q);

    /* fused expert layout (transformers v5 in-memory names): gate_up [E, 2I, d], down [E, d, I] */
    {
        int E = c.n_routed_experts;
        int64_t I = c.moe_intermediate_size, d = c.hidden_size;
        float *gu = malloc((size_t)(E * 2 * I * d) * 4), *dn = malloc((size_t)(E * d * I) * 4);
        variant f;
        f.s = calloc((size_t)t.n + 2, sizeof *f.s);
        f.d = calloc((size_t)t.n + 2, sizeof *f.d);
        f.n = 0;
        for (int i = 0; i < t.n; i++) {
            const v3_param_info *x = &t.p[i];
            if (x->expert < 0) {
                f.s[f.n] = v.s[i];
                f.d[f.n++] = v.d[i];
                continue;
            }
            float *at = strstr(x->name, "gate_proj") ? gu + x->expert * 2 * I * d
                        : strstr(x->name, "up_proj")  ? gu + x->expert * 2 * I * d + I * d
                                                      : dn + x->expert * d * I;
            memcpy(at, src + x->offset, (size_t)x->numel * 4);
        }
        f.s[f.n] = (v3_st_spec){"model.layers.1.mlp.experts.gate_up_proj", V3_F32, 3, {E, 2 * I, d}};
        f.d[f.n++] = gu;
        f.s[f.n] = (v3_st_spec){"model.layers.1.mlp.experts.down_proj", V3_F32, 3, {E, d, I}};
        f.d[f.n++] = dn;
        memset(dst, 0, (size_t)t.total * 4);
        expect_load("ck_fused", &f, &t, dst, 0, 0, "", "fused experts");
        CHECK(memcmp(dst, src, (size_t)t.total * 4) == 0, "fused experts split per expert");
        f.s[f.n - 1].shape[2] = I - 1; /* wrong fused shape is named */
        expect_load("ck_fused_bad", &f, &t, dst, 0, V3_ERANGE, "experts.down_proj", "fused shape");
        free(gu);
        free(dn);
        free(f.s);
        free(f.d);
    }

    /* index: a shard path that leaves the directory is refused before anything is opened */
    tpath("ck_traversal", dir);
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    FILE *fp = fopen(p, "w");
    fprintf(fp, "{\"metadata\":{},\"weight_map\":{\"model.norm.weight\":\"../ck_f32/model.safetensors\"}}");
    fclose(fp);
    rc = v3_checkpoint_load(dir, &t, dst, 0, &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, p) && strstr(err.msg, "model.norm.weight") &&
              strstr(err.msg, "../ck_f32"),
          "traversal: %d %s", rc, err.msg);
    fp = fopen(p, "w");
    fprintf(fp, "{\"weight_map\":{\"model.norm.weight\":\"/etc/passwd.safetensors\"}}");
    fclose(fp);
    rc = v3_checkpoint_load(dir, &t, dst, 0, &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, "model.norm.weight"), "absolute: %d %s", rc, err.msg);
    /* index names a shard that does not hold the tensor */
    fp = fopen(p, "w");
    fprintf(fp, "{\"weight_map\":{\"model.norm.weight\":\"model.safetensors\"}}");
    fclose(fp);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    v3_st_spec one = {"lm_head.weight", V3_F32, 1, {2}};
    const void *oned = src;
    CHECK_OK(v3_st_write_file(p, &one, &oned, 1, NULL, 0, &err), &err);
    v3_st_model m2;
    CHECK_OK(v3_st_model_open(&m2, dir, &err), &err);
    rc = v3_st_model_load_f32(&m2, "model.norm.weight", dst, &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, p) && strstr(err.msg, "model.norm.weight"), "index lies: %d %s", rc, err.msg);
    rc = v3_st_model_load_f32(&m2, "nothing.here", dst, &err);
    CHECK(rc == V3_ENOTFOUND && strstr(err.msg, "nothing.here"), "not in index: %d %s", rc, err.msg);
    v3_st_model_close(&m2);

    free(v.s);
    free(v.d);
    free(src);
    free(dst);
    v3_params_free(&t);
    v3_params_free(&tm);
}

/* Shard planning follows HF: in order, a new shard when the next tensor would overflow. */
static void test_plan(void) {
    v3_st_spec s[5] = {{"a", V3_F32, 1, {10}}, {"b", V3_F32, 1, {10}}, {"c", V3_F32, 1, {100}},
                       {"d", V3_F32, 1, {5}},  {"e", V3_F32, 1, {5}}};
    int sh[5];
    int n = v3_st_plan_shards(s, 5, 80, sh);
    CHECK(n == 3 && sh[0] == 0 && sh[1] == 0 && sh[2] == 1 && sh[3] == 2 && sh[4] == 2,
          "plan %d: %d %d %d %d %d", n, sh[0], sh[1], sh[2], sh[3], sh[4]);
    CHECK(v3_st_plan_shards(s, 5, 0, sh) == 1 && sh[4] == 0, "no limit, one shard");
    char name[64];
    v3_st_shard_name(1, 3, name, sizeof name);
    CHECK(strcmp(name, "model-00002-of-00003.safetensors") == 0, "%s", name);
}

/* The 671B checkpoint's scale: 91,991 tensors in one header and in one index over 163 shards.
 * Every name must be found (hash lookup), and shards must not be opened until needed. */
static void test_scale(void) {
    enum { N = 91991, SHARDS = 163 };
    v3_err err = {0};
    size_t cap = (size_t)N * 96 + 64, len = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(h + len, cap - len,
                                "%s\"model.layers.%d.t%d.weight\":{\"dtype\":\"U8\",\"shape\":[1],"
                                "\"data_offsets\":[%d,%d]}",
                                i ? "," : "", i / 1508, i, N - 1 - i, N - i);
    len += (size_t)snprintf(h + len, cap - len, "}");
    uint8_t *buf = malloc(8 + len + N);
    uint64_t hl = len;
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, h, len);
    for (int i = 0; i < N; i++) buf[8 + len + i] = (uint8_t)(N - 1 - i);
    v3_st_file f;
    int rc = v3_st_open_memory(&f, buf, 8 + len, "big.safetensors", &err); /* data cut off */
    CHECK(rc == V3_ERANGE && strstr(err.msg, "big.safetensors"), "no data: %d %s", rc, err.msg);
    CHECK_OK(v3_st_open_memory(&f, buf, 8 + len + N, "big.safetensors", &err), &err);
    int found = 0;
    char name[64];
    for (int i = 0; i < N && f.n == N; i++) {
        snprintf(name, sizeof name, "model.layers.%d.t%d.weight", i / 1508, i);
        const v3_st_tensor *t = v3_st_find(&f, name);
        found += t && t->data[0] == (uint8_t)i;
    }
    CHECK(found == N, "%d of %d names found with their data", found, N);
    v3_st_close(&f);
    free(buf);

    /* index over 163 shards that do not exist: opening the index must not touch them */
    char dir[512], p[600];
    tpath("big_index", dir);
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    FILE *fp = fopen(p, "w");
    fprintf(fp, "{\"metadata\":{\"total_size\":1},\"weight_map\":{");
    for (int i = 0; i < N; i++)
        fprintf(fp, "%s\"model.layers.%d.t%d.weight\":\"model-%05d-of-%05d.safetensors\"", i ? "," : "",
                i / 1508, i, i % SHARDS + 1, SHARDS);
    fprintf(fp, "}}");
    fclose(fp);
    v3_st_model m;
    CHECK_OK(v3_st_model_open(&m, dir, &err), &err);
    CHECK(m.n == N && m.n_shards == SHARDS, "index: %d tensors, %d shards", m.n, m.n_shards);
    found = 0;
    for (int i = 0; i < N && m.n == N; i++) {
        snprintf(name, sizeof name, "model.layers.%d.t%d.weight", i / 1508, i);
        int k = v3_strmap_get(&m.by_name, name);
        found += k >= 0 && m.shard_of[k] == i % SHARDS;
    }
    CHECK(found == N, "%d of %d index names found in the right shard", found, N);
    rc = v3_st_model_get(&m, "model.layers.3.t4600.weight", NULL, NULL, &err); /* 4600 % 163 = 36 */
    CHECK(rc == V3_ENOTFOUND && strstr(err.msg, "model.layers.3.t4600.weight") &&
              strstr(err.msg, "model-00037-of-00163.safetensors"),
          "absent shard: %d %s", rc, err.msg);
    v3_st_model_close(&m);
    free(h);
}

int main(void) {
    v3_rng r;
    v3_rng_seed(&r, t_seed("test_safetensors"));
    t_tmpdir(g_tmp, sizeof g_tmp);
    test_bad_files();
    test_roundtrip_file(&r);
    test_checkpoint(&r);
    test_plan();
    test_scale();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    CHECK(system(cmd) == 0, "cleanup");
    return t_finish("test_safetensors");
}
