/* test_sft_parity.c — v3tune's optimizer + model against PyTorch (tests/golden/gen_sft.py):
 * the same tiny DeepSeek-V3 (HF DeepseekV3ForCausalLM, fp32, eager) trained for 6 steps on the
 * same packed batches with torch.optim.AdamW (no decay on norm gains), clip_grad_norm_ (it clips
 * at every step: norms ~6 vs max 1) and a warmup + cosine schedule. Compared: the loss and the
 * pre-clip gradient norm of every step, the learning rate, and every trained weight after the last
 * step, all within 1e-5 relative. Also: the optimizer state file round-trips exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "testutil.h"
#include "trainer/optim.h"
#include "trainer/schedule.h"

#define TOL 1e-5

static float *read_f32(const v3_st_file *f, const char *name, int64_t *n) {
    const v3_st_tensor *t = v3_st_find(f, name);
    if (!t) return NULL;
    float *p = malloc((size_t)t->numel * sizeof *p);
    v3_err err;
    if (v3_st_to_f32(f, t, NULL, NULL, p, &err)) {
        free(p);
        return NULL;
    }
    if (n) *n = t->numel;
    return p;
}

static int32_t *read_i32(const v3_st_file *f, const char *name, int64_t *n) {
    const v3_st_tensor *t = v3_st_find(f, name);
    if (!t || t->dtype != V3_I32) return NULL;
    int32_t *p = malloc((size_t)t->numel * sizeof *p);
    memcpy(p, t->data, (size_t)t->numel * sizeof *p);
    *n = t->numel;
    return p;
}

static void test_schedule(void) {
    v3_schedule s = {.kind = V3_SCHED_COSINE, .lr = 1.0, .min_lr = 0.1, .warmup = 4, .total_steps = 14};
    CHECK(fabs(v3_schedule_lr(&s, 1) - 0.25) < 1e-12, "warmup step 1");
    CHECK(fabs(v3_schedule_lr(&s, 4) - 1.0) < 1e-12, "warmup end");
    CHECK(fabs(v3_schedule_lr(&s, 9) - 0.55) < 1e-12, "cosine midpoint %g", v3_schedule_lr(&s, 9));
    CHECK(fabs(v3_schedule_lr(&s, 14) - 0.1) < 1e-12, "cosine floor");
    CHECK(fabs(v3_schedule_lr(&s, 99) - 0.1) < 1e-12, "past the end stays at the floor");
    s.kind = V3_SCHED_LINEAR;
    CHECK(fabs(v3_schedule_lr(&s, 9) - 0.55) < 1e-12, "linear midpoint");
    s.kind = V3_SCHED_CONSTANT;
    CHECK(fabs(v3_schedule_lr(&s, 13) - 1.0) < 1e-12, "constant");
    v3_sched_kind k;
    v3_err err;
    CHECK(v3_schedule_parse_kind("cosine", &k, &err) == 0 && k == V3_SCHED_COSINE, "parse");
    CHECK(v3_schedule_parse_kind("cosin", &k, &err) == V3_EINVAL, "bad name rejected");
    CHECK(v3_clip_coef(10.0, 1.0) < 0.1f && v3_clip_coef(0.5, 1.0) == 1.0f && v3_clip_coef(9, 0) == 1.0f,
          "clip coefficient");
}

static void test_parity(v3_kctx *ctx) {
    char dir[1024], path[1200];
    v3_err err;
    t_source_path("tests/golden/data/sft_parity", dir, sizeof dir);
    v3_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK_OK(v3_config_load(&cfg, path, &err), &err);
    v3_st_file ref;
    snprintf(path, sizeof path, "%s/ref.safetensors", dir);
    int rc = v3_st_open(&ref, path, &err);
    CHECK_OK(rc, &err);
    if (rc) return;
    int64_t nl = 0, nh = 0;
    float *losses = read_f32(&ref, "losses", &nl);
    float *norms = read_f32(&ref, "grad_norms", NULL);
    float *lrs = read_f32(&ref, "lrs", NULL);
    float *hp = read_f32(&ref, "hparams", &nh);
    CHECK(losses && norms && lrs && hp && nh == 9 && nl >= 5, "reference arrays");
    if (!(losses && norms && lrs && hp && nh == 9)) return;
    int steps = (int)nl;

    v3_model m;
    v3_model_options mo = v3_model_default_options();
    mo.training = 1;
    rc = v3_model_init(&m, &cfg, ctx, 64, &mo, &err);
    CHECK_OK(rc, &err);
    if (rc) return;
    CHECK_OK(v3_model_load(&m, dir, &err), &err);

    v3_adamw_opts ao = {.beta1 = hp[4], .beta2 = hp[5], .eps = hp[6], .weight_decay = hp[7]};
    v3_schedule sch = {.kind = V3_SCHED_COSINE, .lr = hp[0], .min_lr = hp[1], .warmup = (int64_t)hp[2],
                       .total_steps = (int64_t)hp[3]};
    v3_optim o;
    CHECK_OK(v3_optim_init(&o, ctx, &m.table, &ao, &err), &err);
    double worst_loss = 0, worst_norm = 0;
    for (int s = 0; s < steps; s++) {
        char key[64];
        int64_t n1 = 0, n2 = 0, n3 = 0, n4 = 0;
        snprintf(key, sizeof key, "s%d.tokens", s);
        int32_t *tok = read_i32(&ref, key, &n1);
        snprintf(key, sizeof key, "s%d.targets", s);
        int32_t *tgt = read_i32(&ref, key, &n2);
        snprintf(key, sizeof key, "s%d.positions", s);
        int32_t *pos = read_i32(&ref, key, &n3);
        snprintf(key, sizeof key, "s%d.doc_start", s);
        int32_t *ds = read_i32(&ref, key, &n4);
        CHECK(tok && tgt && pos && ds && n1 == n2 && n2 == n3 && n3 == n4, "step %d inputs", s);
        v3_batch b = {.N = n1, .tokens = tok, .targets = tgt, .positions = pos, .doc_start = ds};
        double loss = 0;
        v3_model_zero_grad(&m);
        CHECK_OK(v3_model_forward(&m, &b, &loss, &err), &err);
        CHECK_OK(v3_model_backward(&m, &err), &err);
        double norm = v3_optim_grad_norm(&o, m.grads);
        double lr = v3_schedule_lr(&sch, s + 1);
        v3_optim_step(&o, m.params, m.grads, (float)lr, v3_clip_coef(norm, hp[8]));
        double el = fabs(loss - losses[s]) / fabs(losses[s]);
        double en = fabs(norm - norms[s]) / fabs(norms[s]);
        printf("  step %d: loss %.7f (torch %.7f, rel %.1e)  grad norm %.5f (torch %.5f, rel %.1e)  lr %.3g\n",
               s + 1, loss, losses[s], el, norm, norms[s], en, lr);
        CHECK(el <= TOL, "step %d loss rel err %.3e", s + 1, el);
        CHECK(en <= TOL, "step %d grad norm rel err %.3e", s + 1, en);
        CHECK(fabs(lr - lrs[s]) <= 1e-6 * lrs[s], "step %d lr %g vs %g", s + 1, lr, lrs[s]);
        if (el > worst_loss) worst_loss = el;
        if (en > worst_norm) worst_norm = en;
        free(tok), free(tgt), free(pos), free(ds);
    }
    CHECK(o.step == steps, "optimizer step count");

    /* every trained weight after the last step */
    double worst_w = 0;
    char worst_name[128] = "";
    int compared = 0;
    for (int i = 0; i < m.table.n; i++) {
        const v3_param_info *p = &m.table.p[i];
        if (p->kind == V3_PK_BIAS) continue;
        char key[160];
        snprintf(key, sizeof key, "final.%s", p->name);
        int64_t n = 0;
        float *w = read_f32(&ref, key, &n);
        CHECK(w && n == p->numel, "final weight %s", p->name);
        if (!w || n != p->numel) {
            free(w);
            continue;
        }
        double e = t_rel_err(m.params + p->offset, w, n);
        CHECK(e <= TOL, "final %s rel err %.3e", p->name, e);
        if (e > worst_w) {
            worst_w = e;
            snprintf(worst_name, sizeof worst_name, "%s", p->name);
        }
        compared++;
        free(w);
    }
    printf("  %d steps: worst rel err loss %.2e, grad norm %.2e; %d final weights, worst %.2e (%s)\n",
           steps, worst_loss, worst_norm, compared, worst_w, worst_name);

    /* the state file round-trips bit for bit */
    char tmp[1024];
    t_tmpdir(tmp, sizeof tmp);
    snprintf(path, sizeof path, "%s/optim.bin", tmp);
    CHECK_OK(v3_optim_save(&o, path, &err), &err);
    v3_optim o2;
    CHECK_OK(v3_optim_init(&o2, ctx, &m.table, &ao, &err), &err);
    CHECK_OK(v3_optim_load(&o2, path, &err), &err);
    CHECK(o2.step == o.step && !memcmp(o2.m, o.m, (size_t)o.total * 4) &&
              !memcmp(o2.v, o.v, (size_t)o.total * 4), "optimizer state round trip");
    v3_optim_free(&o2);
    remove(path);
    remove(tmp);

    v3_optim_free(&o);
    v3_model_free(&m);
    free(losses), free(norms), free(lrs), free(hp);
    v3_st_close(&ref);
}

int main(void) {
    test_schedule();
    v3_kctx ctx;
    v3_err err;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), 2, &err)) {
        fprintf(stderr, "kctx: %s\n", err.msg);
        return 1;
    }
    test_parity(&ctx);
    v3_kctx_free(&ctx);
    return t_finish("test_sft_parity");
}
