/* golden.h — a golden model of tests/golden/data/model_<name> (tests/golden/gen_model.py): its
 * config, the HF reference file (inputs, logits, losses, every gradient) and the packed batch
 * read from it (test_model_golden, test_model_fused, test_gpu_model).
 * Header-only (static functions), as opcheck.h: only test programs include it. */
#ifndef V3_GOLDEN_H
#define V3_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "model/safetensors.h"
#include "testutil.h"

typedef struct golden {
    char dir[1024];    /* the model directory: config.json, model.safetensors, ref.safetensors */
    v3_config cfg;
    v3_st_file ref;    /* open while the golden is */
    int64_t N;         /* tokens of the batch (two packed documents, some targets ignored) */
    int32_t *tokens, *targets, *positions, *doc_start; /* [N] */
} golden;

/* int32 copy of a reference tensor, or NULL */
static inline int32_t *golden_i32(const golden *g, const char *name, int64_t *n) {
    const v3_st_tensor *t = v3_st_find(&g->ref, name);
    if (!t || t->dtype != V3_I32) return NULL;
    int32_t *p = malloc((size_t)t->numel * sizeof *p);
    if (!p) return NULL;
    memcpy(p, t->data, (size_t)t->numel * sizeof *p);
    if (n) *n = t->numel;
    return p;
}

/* fp32 copy of a reference tensor, or NULL */
static inline float *golden_f32(const golden *g, const char *name, int64_t *n) {
    const v3_st_tensor *t = v3_st_find(&g->ref, name);
    if (!t) return NULL;
    float *p = malloc((size_t)t->numel * sizeof *p);
    v3_err err;
    if (!p || v3_st_to_f32(&g->ref, t, NULL, NULL, p, &err)) {
        free(p);
        return NULL;
    }
    if (n) *n = t->numel;
    return p;
}

static inline void golden_close(golden *g) {
    v3_st_close(&g->ref);
    free(g->tokens);
    free(g->targets);
    free(g->positions);
    free(g->doc_start);
    memset(g, 0, sizeof *g);
}

/* Opens model_<name>; 0 on success. A failure is a failed CHECK (the data are committed), and
 * leaves nothing to close. */
static inline int golden_open(golden *g, const char *name) {
    memset(g, 0, sizeof *g);
    char rel[256], path[1200];
    v3_err err = {0};
    snprintf(rel, sizeof rel, "tests/golden/data/model_%s", name);
    t_source_path(rel, g->dir, sizeof g->dir);
    snprintf(path, sizeof path, "%s/config.json", g->dir);
    int rc = v3_config_load(&g->cfg, path, &err);
    CHECK_OK(rc, &err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/ref.safetensors", g->dir);
    rc = v3_st_open(&g->ref, path, &err);
    CHECK_OK(rc, &err);
    if (rc) return rc;
    int64_t n1 = 0, n2 = 0, n3 = 0, n4 = 0;
    g->tokens = golden_i32(g, "tokens", &n1);
    g->targets = golden_i32(g, "targets", &n2);
    g->positions = golden_i32(g, "positions", &n3);
    g->doc_start = golden_i32(g, "doc_start", &n4);
    int ok = g->tokens && g->targets && g->positions && g->doc_start && n1 == n2 && n2 == n3 &&
             n3 == n4 && n1 > 0;
    CHECK(ok, "model_%s: reference inputs missing", name);
    if (!ok) {
        golden_close(g);
        return 1;
    }
    g->N = n1;
    return 0;
}

#endif
