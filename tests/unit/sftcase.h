/* sftcase.h — the inputs of the end-to-end SFT tests (test_sft_e2e, test_gpu_sft): a
 * transformers-style random init of the `tiny` preset without MTP, written in HF layout, and the
 * first rows of a JSONL file (GSM8K train).
 * Header-only (static inline functions), as golden.h: only test programs include it. */
#ifndef V3_SFTCASE_H
#define V3_SFTCASE_H

#include <stdio.h>
#include <stdlib.h>

#include "common/fs.h"
#include "common/rng.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/params.h"
#include "testutil.h"

/* The tiny preset without MTP (its physical copies of the embedding and head would double the
 * ~17M parameters), N(0, 0.02) weights, unit norms, zero router biases, seed 7, into dir. */
static inline int sft_tiny_model(const char *dir) {
    v3_config c;
    v3_err err = {0};
    v3_param_table t;
    int rc = v3_config_preset(&c, "tiny", &err);
    if (!rc) {
        c.num_nextn_predict_layers = 0;
        rc = v3_params_build(&t, &c, 0, &err);
    }
    CHECK_OK(rc, &err);
    if (rc) return rc;
    float *w = malloc((size_t)t.total * sizeof *w);
    if (!w) {
        v3_params_free(&t);
        CHECK(0, "out of memory for %lld parameters", (long long)t.total);
        return 1;
    }
    v3_rng r;
    v3_rng_seed(&r, 7);
    for (int i = 0; i < t.n; i++) {
        const v3_param_info *p = &t.p[i];
        for (int64_t j = 0; j < p->numel; j++)
            w[p->offset + j] = p->kind == V3_PK_NORM ? 1.0f : p->kind == V3_PK_BIAS ? 0.0f : 0.02f * v3_rng_normal(&r);
    }
    char path[1400];
    rc = v3_mkdirs(dir, &err);
    if (!rc) rc = v3_checkpoint_save(dir, &t, w, V3_F32, 0, &err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!rc) rc = v3_config_save(&c, path, &err);
    CHECK_OK(rc, &err);
    free(w);
    v3_params_free(&t);
    return rc;
}

/* the first n rows of src into dst */
static inline int sft_head_rows(const char *src, const char *dst, int n) {
    FILE *in = fopen(src, "r"), *out = fopen(dst, "w");
    int ok = in && out;
    char *line = NULL;
    size_t cap = 0;
    for (int i = 0; ok && i < n && getline(&line, &cap, in) > 0; i++) fputs(line, out);
    free(line);
    if (in) fclose(in);
    if (out && fclose(out)) ok = 0;
    CHECK(ok, "cannot copy %s to %s", src, dst);
    return !ok;
}

/* The paths of an SFT case: the shared data it reads, and under a fresh temporary directory the
 * model, the data (the first 120 GSM8K train rows) and two run directories. */
typedef struct sft_paths {
    char gsm[1024], tok[1024], tmp[1024];
    char model[1200], data[1200], ra[1200], rb[1200];
} sft_paths;

/* Fills s (runs named run_a, run_b) and writes the model and the data. 77 (printed as skipped)
 * when the shared data are absent; 1 on a failure (recorded as a failed check); 0 when ready. */
static inline int sft_case_prepare(sft_paths *s, const char *test, const char *run_a,
                                   const char *run_b) {
    char p[1100];
    t_data_path("gsm8k/train.jsonl", s->gsm, sizeof s->gsm);
    t_data_path("deepseek-v3", s->tok, sizeof s->tok);
    snprintf(p, sizeof p, "%s/tokenizer.json", s->tok);
    if (!v3_file_exists(s->gsm) || !v3_file_exists(p)) {
        printf("%s: skipped: shared data (%s, %s) not found\n", test, s->gsm, p);
        return 77;
    }
    t_tmpdir(s->tmp, sizeof s->tmp);
    snprintf(s->model, sizeof s->model, "%s/model", s->tmp);
    snprintf(s->data, sizeof s->data, "%s/gsm8k_head.jsonl", s->tmp);
    snprintf(s->ra, sizeof s->ra, "%s/%s", s->tmp, run_a);
    snprintf(s->rb, sizeof s->rb, "%s/%s", s->tmp, run_b);
    return sft_tiny_model(s->model) || sft_head_rows(s->gsm, s->data, 120) ? 1 : 0;
}

#endif
