/* grpo_ckpt.c — GRPO checkpoints: run_dir/step-N/ holds the policy as a loadable HF model
 * directory (config.json, safetensors, tokenizer files), optim.bin, grpo_state.json and
 * trainer_state.json (step, trained tokens, prompt cursor, RNG, guard window; ckpt.h).
 *
 * grpo_state.json (versioned) holds what a GRPO resume must match: the reference model's
 * identity (sha256 of its parameter names, shapes and values) when beta > 0, and the identity of
 * the prompt set whose cursor the state carries. A resume that would train against another
 * reference or walk another prompt set is refused with the key to fix.
 *
 * Written by trainer/ckpt.h's v3_ckpt_write_ext (grpo_state.json as its extra file): everything
 * into step-N.tmp/, trainer_state.json last, then one rename, so a crash never leaves a checkpoint
 * that looks complete. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "trainer/grpo_internal.h"

int grpo_model_sha(v3_model *m, char hex[65], v3_err *err) {
    const int64_t chunk = (int64_t)1 << 22;
    float *buf = malloc((size_t)chunk * sizeof *buf);
    if (!buf) return v3_errf(err, V3_ENOMEM, "reference identity: out of memory");
    v3_sha256_ctx s;
    v3_sha256_init(&s);
    for (int i = 0; i < m->table.n; i++) {
        const v3_param_info *p = &m->table.p[i];
        v3_sha256_update(&s, p->name, strlen(p->name) + 1);
        v3_sha256_update(&s, p->shape, sizeof p->shape);
        for (int64_t o = 0; o < p->numel; o += chunk) {
            int64_t k = p->numel - o < chunk ? p->numel - o : chunk;
            m->ctx->be->to_host(m->ctx, buf, m->params + p->offset + o, (size_t)k * sizeof *buf);
            v3_sha256_update(&s, buf, (size_t)k * sizeof *buf);
        }
    }
    free(buf);
    uint8_t d[32];
    v3_sha256_final(&s, d);
    v3_sha256_hex(d, hex);
    return V3_OK;
}

static int state_save(grpo *g, const char *path, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    json_t *j = json_object();
    json_object_set_new(j, "version", json_integer(GRPO_STATE_VERSION));
    json_object_set_new(j, "step", json_integer(g->st.step));
    json_object_set_new(j, "optimizer_steps", json_integer(g->opt.step));
    json_object_set_new(j, "ref_sha256", g->have_ref ? json_string(g->ref_sha) : json_null());
    json_object_set_new(j, "ref_model", g->have_ref ? json_string(o->ref_dir ? o->ref_dir : o->model_dir) : json_null());
    json_object_set_new(j, "prompts_sha256", json_string(g->prompts_sha));
    json_object_set_new(j, "prompts", json_integer(g->train.n));
    int rc = json_dump_file(j, path, JSON_INDENT(2));
    json_decref(j);
    return rc ? v3_errf(err, V3_EIO, "%s: cannot write", path) : V3_OK;
}

static int write_state(void *user, const char *tmp_dir, v3_err *err) {
    char path[4400];
    snprintf(path, sizeof path, "%s/grpo_state.json", tmp_dir);
    return state_save(user, path, err);
}

int grpo_ckpt_write(grpo *g, v3_err *err) {
    const v3_grpo_opts *o = g->o;
    int rc = v3_store_flush(g->store, 1, err);
    if (rc) return rc;
    int64_t bytes = 0;
    rc = v3_ckpt_write_ext(o->run_dir, &g->m, &g->opt, &g->st, o->ckpt_dtype,
                           g->tok_dir[0] ? g->tok_dir : NULL, write_state, g, &bytes, err);
    if (rc) return rc;
    char rel[64];
    snprintf(rel, sizeof rel, "step-%lld", (long long)g->st.step);
    v3_store_checkpoint c = {.step = g->st.step, .path = rel, .bytes = bytes};
    if ((rc = v3_store_register_checkpoint(g->store, &c, err))) return rc;
    return v3_ckpt_prune(o->run_dir, o->ckpt_keep, err);
}

int grpo_ckpt_restore(grpo *g, const char *dir, v3_err *err) {
    char p[4400];
    snprintf(p, sizeof p, "%s/optim.bin", dir);
    int rc = v3_optim_load(&g->opt, p, err);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s/trainer_state.json", dir);
    if ((rc = v3_train_state_load(&g->st, p, err))) return rc;
    snprintf(p, sizeof p, "%s/grpo_state.json", dir);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j) return v3_errf(err, V3_EFORMAT, "%s:%d: %s (not a GRPO checkpoint?)", p, je.line, je.text);
    json_t *ver = json_object_get(j, "version"), *ref = json_object_get(j, "ref_sha256");
    const char *psha = json_string_value(json_object_get(j, "prompts_sha256"));
    if (!json_is_integer(ver) || json_integer_value(ver) != GRPO_STATE_VERSION) {
        rc = v3_errf(err, V3_EUNSUPPORTED, "%s: version %lld (expected %d)", p,
                     json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL, GRPO_STATE_VERSION);
    } else if (g->have_ref != json_is_string(ref)) {
        rc = v3_errf(err, V3_EINVAL, "grpo.beta: the checkpoint was trained %s a reference model, this "
                     "config %s one (%s)", json_is_string(ref) ? "with" : "without",
                     g->have_ref ? "has" : "has none", p);
    } else if (g->have_ref && strcmp(json_string_value(ref), g->ref_sha)) {
        rc = v3_errf(err, V3_EINVAL, "grpo.ref_model: the reference weights differ from the run's (sha256 "
                     "%.16s... now, %.16s... in %s)", g->ref_sha, json_string_value(ref), p);
    } else if (!psha || strcmp(psha, g->prompts_sha)) {
        rc = v3_errf(err, V3_EINVAL, "data.prompts: not the prompt set this run was started with (its "
                     "cursor would point elsewhere; %s)", p);
    }
    json_decref(j);
    return rc;
}
