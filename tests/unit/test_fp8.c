/* test_fp8.c — e4m3fn decoding and 128x128 block dequantisation against torch's golden data
 * (tests/golden/gen_fp8.py): all 256 codes, and a [260, 140] weight with partial edge blocks
 * both ways, bit for bit; then the same weight with its scale in another shard. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "testutil.h"

static int same_bits(float a, float b) { return memcmp(&a, &b, 4) == 0; }

static void test_codes(void) {
    char p[512];
    v3_err err = {0};
    v3_st_file f;
    CHECK_OK(v3_st_open(&f, t_source_path("tests/golden/data/fp8_codes.safetensors", p, sizeof p), &err), &err);
    if (err.code) return;
    const v3_st_tensor *codes = v3_st_find(&f, "codes"), *val = v3_st_find(&f, "value"),
                       *nan = v3_st_find(&f, "is_nan");
    CHECK(codes && val && nan && codes->numel == 256 && val->dtype == V3_F32, "golden layout");
    if (!codes || !val || !nan) return;
    int n_nan = 0, bad = 0;
    for (int i = 0; i < 256; i++) {
        float want;
        memcpy(&want, val->data + 4 * i, 4);
        float got = v3_e4m3_to_f32(codes->data[i]);
        if (nan->data[i]) {
            n_nan++;
            if (!isnan(got)) bad++;
        } else if (!same_bits(got, want)) { /* -0.0 (code 0x80) must stay negative zero */
            bad++;
            fprintf(stderr, "code 0x%02x: got %a want %a\n", i, got, want);
        }
    }
    CHECK(bad == 0, "%d of 256 e4m3 codes differ from torch", bad);
    CHECK(n_nan == 2, "torch marks %d NaN codes (0x7f, 0xff expected)", n_nan);
    v3_st_close(&f);
}

/* Reads fp8_block and fp8_dequant; returns the reference into *ref (caller frees). */
static void test_block(const char *tmp) {
    char p[512], q[512];
    v3_err err = {0};
    v3_st_file wf, rf;
    CHECK_OK(v3_st_open(&wf, t_source_path("tests/golden/data/fp8_block.safetensors", p, sizeof p), &err), &err);
    CHECK_OK(v3_st_open(&rf, t_source_path("tests/golden/data/fp8_dequant.safetensors", q, sizeof q), &err), &err);
    const v3_st_tensor *w = v3_st_find(&wf, "weight"), *s = v3_st_find(&wf, "weight_scale_inv"),
                       *r = v3_st_find(&rf, "weight");
    CHECK(w && s && r && w->dtype == V3_F8_E4M3 && w->shape[0] == 260 && w->shape[1] == 140 &&
              s->shape[0] == 3 && s->shape[1] == 2 && r->numel == w->numel,
          "golden layout");
    if (!w || !s || !r) return;
    int64_t n = w->numel;
    float *got = malloc((size_t)n * 4), *ref = malloc((size_t)n * 4), *part = malloc((size_t)n * 4);
    CHECK_OK(v3_st_to_f32(&rf, r, NULL, NULL, ref, &err), &err);
    CHECK_OK(v3_st_to_f32(&wf, w, &wf, s, got, &err), &err);
    CHECK(memcmp(got, ref, (size_t)n * 4) == 0, "dequantised weight differs from torch (max %g)",
          t_max_abs_diff(got, ref, n));
    /* ranges that start and end mid-row and mid-block give the same values */
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_fp8"));
    for (int k = 0; k < 20; k++) {
        int64_t a = (int64_t)(v3_rng_uniform(&rng) * (float)n), b = (int64_t)(v3_rng_uniform(&rng) * (float)n);
        if (a > b) { int64_t c = a; a = b; b = c; }
        CHECK_OK(v3_st_to_f32_range(&wf, w, a, b - a, &wf, s, part, &err), &err);
        CHECK(memcmp(part, ref + a, (size_t)(b - a) * 4) == 0, "range [%lld, %lld) differs", (long long)a, (long long)b);
    }
    /* without its scale the weight is refused, naming it */
    int rc = v3_st_to_f32(&wf, w, NULL, NULL, got, &err);
    CHECK(rc == V3_ENOTFOUND && strstr(err.msg, "weight_scale_inv") && strstr(err.msg, "fp8_block"),
          "missing scale: %d %s", rc, err.msg);

    /* the scale in a different shard, found through the index */
    v3_st_spec sw = {"model.layers.0.mlp.down_proj.weight", V3_F8_E4M3, 2, {260, 140}};
    v3_st_spec ss = {"model.layers.0.mlp.down_proj.weight_scale_inv", V3_F32, 2, {3, 2}};
    v3_st_spec both[2] = {sw, ss};
    int shard_of[2] = {0, 1};
    const void *dw = w->data, *ds = s->data;
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", tmp);
    CHECK_OK(v3_st_write_file(p, &sw, &dw, 1, NULL, 0, &err), &err);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", tmp);
    CHECK_OK(v3_st_write_file(p, &ss, &ds, 1, NULL, 0, &err), &err);
    CHECK_OK(v3_st_write_index(tmp, both, 2, shard_of, 2, &err), &err);
    v3_st_model m;
    CHECK_OK(v3_st_model_open(&m, tmp, &err), &err);
    memset(got, 0, (size_t)n * 4);
    CHECK_OK(v3_st_model_load_f32(&m, sw.name, got, &err), &err);
    CHECK(memcmp(got, ref, (size_t)n * 4) == 0, "cross-shard dequantisation differs");
    v3_st_model_close(&m);
    free(got);
    free(ref);
    free(part);
    v3_st_close(&wf);
    v3_st_close(&rf);
}

/* Tensors big enough to be split over threads give what the formula gives, element by element
 * (random codes, random per-block scales, partial edge blocks). */
static void test_big(void) {
    enum { R = 1100, C = 1000 }; /* 1.1M elements: several conversion chunks */
    int64_t br = v3_fp8_blocks(R), bc = v3_fp8_blocks(C), n = (int64_t)R * C;
    v3_rng r;
    v3_rng_seed(&r, t_seed("test_fp8 big"));
    uint8_t *q = malloc((size_t)n);
    float *sc = malloc((size_t)(br * bc) * 4), *out = malloc((size_t)n * 4);
    uint16_t *bf = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) {
        q[i] = (uint8_t)v3_rng_below(&r, 256);
        bf[i] = (uint16_t)v3_rng_u64(&r);
    }
    for (int64_t i = 0; i < br * bc; i++) sc[i] = 1e-3f + v3_rng_uniform(&r);
    v3_st_spec s[3] = {{"w", V3_F8_E4M3, 2, {R, C}}, {"w_scale_inv", V3_F32, 2, {br, bc}},
                       {"b", V3_BF16, 2, {R, C}}};
    const void *d[3] = {q, sc, bf};
    char dir[256], p[300];
    v3_err err = {0};
    t_tmpdir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/big.safetensors", dir);
    CHECK_OK(v3_st_write_file(p, s, d, 3, NULL, 0, &err), &err);
    v3_st_file f;
    CHECK_OK(v3_st_open(&f, p, &err), &err);
    if (err.code) return;
    CHECK_OK(v3_st_to_f32(&f, v3_st_find(&f, "w"), &f, v3_st_find(&f, "w_scale_inv"), out, &err), &err);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float want = v3_e4m3_to_f32(q[i]) * sc[(i / C / 128) * bc + (i % C) / 128];
        bad += !same_bits(out[i], want);
    }
    CHECK(bad == 0, "big fp8: %lld of %lld differ", (long long)bad, (long long)n);
    CHECK_OK(v3_st_to_f32(&f, v3_st_find(&f, "b"), NULL, NULL, out, &err), &err);
    bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !same_bits(out[i], v3_bf16_to_f32(bf[i]));
    CHECK(bad == 0, "big bf16: %lld of %lld differ", (long long)bad, (long long)n);
    v3_st_close(&f);
    unlink(p);
    rmdir(dir);
    free(q);
    free(sc);
    free(out);
    free(bf);
}

int main(void) {
    char tmp[256];
    t_tmpdir(tmp, sizeof tmp);
    test_codes();
    test_block(tmp);
    test_big();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "cleanup");
    return t_finish("test_fp8");
}
