/* optim.c — AdamW with global-norm clipping on the backend's adamw op (see optim.h). */
#include "trainer/optim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char OPTIM_MAGIC[8] = {'V', '3', 'O', 'P', 'T', 'I', 'M', 0};

v3_adamw_opts v3_adamw_default_opts(void) {
    v3_adamw_opts o = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                       .decay_norms = 0};
    return o;
}

int v3_optim_init(v3_optim *o, v3_kctx *ctx, const v3_param_table *t, const v3_adamw_opts *opts,
                  v3_err *err) {
    memset(o, 0, sizeof *o);
    o->ctx = ctx;
    o->o = *opts;
    o->total = t->total;
    o->r = calloc((size_t)t->n + 1, sizeof *o->r);
    if (!o->r) return v3_errf(err, V3_ENOMEM, "optimizer: out of memory for %d ranges", t->n);
    /* coalesce neighbours with the same decay: the table interleaves norms and projections, so
     * this gives a few ranges per layer, each one adamw call */
    for (int i = 0; i < t->n; i++) {
        const v3_param_info *p = &t->p[i];
        if (p->kind == V3_PK_BIAS) continue;
        float wd = (p->kind == V3_PK_NORM && !opts->decay_norms) ? 0.0f : opts->weight_decay;
        v3_optim_range *last = o->n_r ? &o->r[o->n_r - 1] : NULL;
        if (last && last->off + last->n == p->offset && last->wd == wd) {
            last->n += p->numel;
        } else {
            o->r[o->n_r++] = (v3_optim_range){.off = p->offset, .n = p->numel, .wd = wd};
        }
    }
    size_t bytes = (size_t)t->total * sizeof(float);
    o->m = ctx->be->alloc(ctx, bytes);
    o->v = ctx->be->alloc(ctx, bytes);
    if (!o->m || !o->v) {
        v3_optim_free(o);
        return v3_errf(err, V3_ENOMEM, "optimizer: cannot allocate 2 x %zu bytes of state", bytes);
    }
    return V3_OK;
}

void v3_optim_free(v3_optim *o) {
    if (o->ctx) {
        o->ctx->be->free(o->ctx, o->m);
        o->ctx->be->free(o->ctx, o->v);
    }
    free(o->r);
    memset(o, 0, sizeof *o);
}

double v3_optim_grad_norm(v3_optim *o, const float *grads) {
    double ss = 0.0;
    v3k(o->ctx, sumsq, grads, o->total, &ss);
    return sqrt(ss);
}

float v3_clip_coef(double norm, double max_norm) {
    if (!(max_norm > 0.0)) return 1.0f;
    /* torch computes this in fp32: max_norm / (total_norm + 1e-6), clamped to 1 */
    float c = (float)max_norm / ((float)norm + 1e-6f);
    return c < 1.0f ? c : 1.0f;
}

void v3_optim_step(v3_optim *o, float *params, const float *grads, float lr, float grad_scale) {
    o->step++;
    float bc1 = (float)(1.0 - pow((double)o->o.beta1, (double)o->step));
    float bc2 = (float)(1.0 - pow((double)o->o.beta2, (double)o->step));
    for (int i = 0; i < o->n_r; i++) {
        const v3_optim_range *r = &o->r[i];
        v3k(o->ctx, adamw, params + r->off, grads + r->off, o->m + r->off, o->v + r->off, r->n, lr,
            o->o.beta1, o->o.beta2, o->o.eps, r->wd, bc1, bc2, grad_scale);
    }
}

int v3_optim_save(v3_optim *o, const char *path, v3_err *err) {
    size_t n = (size_t)o->total;
    float *host = malloc(n * sizeof *host);
    if (!host) return v3_errf(err, V3_ENOMEM, "%s: out of memory", path);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(host);
        return v3_errf(err, V3_EIO, "%s: cannot create: %s", path, strerror(errno));
    }
    uint32_t ver[2] = {V3_OPTIM_FILE_VERSION, 0};
    int64_t hdr[2] = {o->total, o->step};
    int ok = fwrite(OPTIM_MAGIC, 8, 1, f) == 1 && fwrite(ver, sizeof ver, 1, f) == 1 &&
             fwrite(hdr, sizeof hdr, 1, f) == 1;
    for (int k = 0; k < 2 && ok; k++) {
        o->ctx->be->to_host(o->ctx, host, k ? o->v : o->m, n * sizeof *host);
        ok = fwrite(host, sizeof *host, n, f) == n;
    }
    free(host);
    if (fflush(f) != 0) ok = 0;
    if (fclose(f) != 0) ok = 0;
    return ok ? V3_OK : v3_errf(err, V3_EIO, "%s: write failed", path);
}

int v3_optim_load(v3_optim *o, const char *path, v3_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return v3_errf(err, V3_EIO, "%s: cannot open: %s", path, strerror(errno));
    char magic[8];
    uint32_t ver[2];
    int64_t hdr[2];
    int rc = V3_OK;
    if (fread(magic, 8, 1, f) != 1 || memcmp(magic, OPTIM_MAGIC, 8) || fread(ver, sizeof ver, 1, f) != 1 ||
        fread(hdr, sizeof hdr, 1, f) != 1) {
        rc = v3_errf(err, V3_EFORMAT, "%s: not an optimizer state file", path);
    } else if (ver[0] != V3_OPTIM_FILE_VERSION) {
        rc = v3_errf(err, V3_EUNSUPPORTED, "%s: optimizer state version %u (expected %d)", path,
                     ver[0], V3_OPTIM_FILE_VERSION);
    } else if (hdr[0] != o->total || hdr[1] < 0) {
        rc = v3_errf(err, V3_ERANGE, "%s: state for %lld parameters, model has %lld", path,
                     (long long)hdr[0], (long long)o->total);
    }
    size_t n = (size_t)o->total;
    float *host = rc ? NULL : malloc(n * sizeof *host);
    if (!rc && !host) rc = v3_errf(err, V3_ENOMEM, "%s: out of memory", path);
    for (int k = 0; k < 2 && !rc; k++) {
        if (fread(host, sizeof *host, n, f) != n) {
            rc = v3_errf(err, V3_EFORMAT, "%s: truncated", path);
            break;
        }
        o->ctx->be->to_device(o->ctx, k ? o->v : o->m, host, n * sizeof *host);
    }
    if (!rc) o->step = hdr[1];
    free(host);
    fclose(f);
    return rc;
}
