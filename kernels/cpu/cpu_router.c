/* cpu_router.c — MoE router (model-spec §5) and the sequence-wise balance loss (§7) for the
 * CPU backend. Each token is routed by one thread, in fp32, from its own logits only. */
#include <math.h>
#include <stdlib.h>

#include "cpu_internal.h"

/* Selection for one token: c = s + b; with groups, keep the topk_group groups of largest
 * (sum of the group's top-2 c), mask the rest with -inf, then take the K largest c.
 * Strict '>' comparisons while scanning in index order make the lower index win ties. */
static void route_token(const v3_router_params *p, const float *s, float *c, int *gkeep,
                        float *gsc, int32_t *idx) {
    int64_t E = p->E, K = p->K;
    for (int64_t e = 0; e < E; e++) c[e] = s[e] + (p->bias ? p->bias[e] : 0.0f);
    if (p->n_group > 1) {
        int64_t G = p->n_group, gs = E / G;
        for (int64_t g = 0; g < G; g++) {
            const float *cg = c + g * gs;
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int64_t e = 0; e < gs; e++) {
                if (cg[e] > b1) { b2 = b1; b1 = cg[e]; }
                else if (cg[e] > b2) b2 = cg[e];
            }
            gsc[g] = gs == 1 ? b1 : b1 + b2;
            gkeep[g] = 0;
        }
        for (int k = 0; k < p->topk_group; k++) {
            int64_t best = -1;
            for (int64_t g = 0; g < G; g++)
                if (!gkeep[g] && (best < 0 || gsc[g] > gsc[best])) best = g;
            gkeep[best] = 1;
        }
        for (int64_t g = 0; g < G; g++)
            if (!gkeep[g])
                for (int64_t e = 0; e < gs; e++) c[g * gs + e] = -INFINITY;
    }
    for (int64_t k = 0; k < K; k++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++) {
            int taken = 0;
            for (int64_t j = 0; j < k; j++) taken |= idx[j] == e;
            if (!taken && (best < 0 || c[e] > c[best])) best = e;
        }
        idx[k] = (int32_t)best;
    }
}

void cpu_router_fwd(v3_kctx *ctx, const v3_router_params *p) {
    int64_t T = p->T, E = p->E, K = p->K;
    if (K > E || (p->n_group > 1 && (E % p->n_group || p->topk_group < 1 ||
                                     p->topk_group > p->n_group))) {
        v3k_fail(ctx, V3_EINVAL, "router_fwd: bad shape E=%lld K=%lld n_group=%d topk_group=%d",
                 (long long)E, (long long)K, p->n_group, p->topk_group);
        return;
    }
    int failed = 0;
#pragma omp parallel num_threads(cpu_threads(ctx)) if (T * E > 4096)
    {
        float *c = malloc((size_t)E * sizeof(float));
        float *gsc = malloc((size_t)(p->n_group > 0 ? p->n_group : 1) * sizeof(float));
        int *gkeep = malloc((size_t)(p->n_group > 0 ? p->n_group : 1) * sizeof(int));
        if (!c || !gsc || !gkeep) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for
        for (int64_t t = 0; t < T; t++) {
            if (!c || !gsc || !gkeep) continue;
            float *s = p->scores + t * E;
            for (int64_t e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-p->logits[t * E + e]));
            int32_t *idx = p->topk_idx + t * K;
            route_token(p, s, c, gkeep, gsc, idx);
            float *w = p->topk_w + t * K;
            float z = 0.0f;
            for (int64_t k = 0; k < K; k++) {
                w[k] = s[idx[k]];
                z += w[k];
            }
            /* as the reference: w / (Σ w + 1e-20), then times route_scale, all in fp32 */
            z += 1e-20f;
            for (int64_t k = 0; k < K; k++)
                w[k] = (p->norm_topk_prob ? w[k] / z : w[k]) * p->route_scale;
        }
        free(c);
        free(gsc);
        free(gkeep);
    }
    if (failed) v3k_fail(ctx, V3_ENOMEM, "router_fwd: out of memory");
}

/* For the selected set S, Z = Σ_S s (+1e-20): ds_i = (rs/Z)(g_i − Σ_k g_k s_k / Z) when
 * normalised, rs·g_i otherwise; dlogit_i = ds_i·s_i(1 − s_i). Selection has no gradient. */
void cpu_router_bwd(v3_kctx *ctx, const v3_router_params *p) {
    int64_t T = p->T, E = p->E, K = p->K;
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (T * E > 4096)
    for (int64_t t = 0; t < T; t++) {
        const float *s = p->scores + t * E, *g = p->dtopk_w + t * K;
        const int32_t *idx = p->topk_idx + t * K;
        float *dl = p->dlogits + t * E;
        for (int64_t e = 0; e < E; e++) dl[e] = 0.0f;
        double z = 1e-20, gs = 0;
        for (int64_t k = 0; k < K; k++) {
            z += s[idx[k]];
            gs += (double)g[k] * s[idx[k]];
        }
        for (int64_t k = 0; k < K; k++) {
            double si = s[idx[k]];
            double ds = p->norm_topk_prob ? p->route_scale / z * (g[k] - gs / z)
                                          : (double)p->route_scale * g[k];
            dl[idx[k]] = (float)(ds * si * (1.0 - si));
        }
    }
}

/* L = alpha Σ_e f_e P_e per sequence of length L_n: P_e = (1/L_n) Σ_t s_te / S_t (S_t = Σ_j s_tj),
 * f_e = E/(K L_n) · #{t: e selected}. f is constant, so dL/ds_tj = (alpha/L_n)(f_j − Σ_e f_e s_te/S_t)/S_t,
 * and dlogit = ds·s(1 − s). */
void cpu_router_balance(v3_kctx *ctx, const v3_balance_params *p) {
    int64_t E = p->E, K = p->K;
    double total = 0;
    double *f = malloc((size_t)E * sizeof(double)), *P = malloc((size_t)E * sizeof(double));
    if (!f || !P) {
        free(f);
        free(P);
        v3k_fail(ctx, V3_ENOMEM, "router_balance: out of memory");
        return;
    }
    for (int64_t n = 0; n < p->n_seq; n++) {
        int64_t t0 = p->seq_off[n], t1 = p->seq_off[n + 1], L = t1 - t0;
        if (L <= 0) continue;
        for (int64_t e = 0; e < E; e++) f[e] = P[e] = 0;
        for (int64_t t = t0; t < t1; t++) {
            const float *s = p->scores + t * E;
            double S = 0;
            for (int64_t e = 0; e < E; e++) S += s[e];
            for (int64_t e = 0; e < E; e++) P[e] += s[e] / S;
            for (int64_t k = 0; k < K; k++) {
                int32_t e = p->topk_idx[t * K + k];
                if (e >= 0 && e < E) f[e] += 1.0;
            }
        }
        double loss = 0;
        for (int64_t e = 0; e < E; e++) {
            f[e] *= (double)E / ((double)K * (double)L);
            P[e] /= (double)L;
            loss += f[e] * P[e];
        }
        total += (double)p->alpha * loss;
        if (!p->dlogits) continue;
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (L * E > 4096)
        for (int64_t t = t0; t < t1; t++) {
            const float *s = p->scores + t * E;
            double S = 0, fs = 0;
            for (int64_t e = 0; e < E; e++) {
                S += s[e];
                fs += f[e] * s[e];
            }
            fs /= S;
            double c = (double)p->alpha / (double)L / S;
            float *dl = p->dlogits + t * E;
            for (int64_t e = 0; e < E; e++) {
                double ds = c * (f[e] - fs);
                dl[e] += (float)(ds * s[e] * (1.0 - s[e]));
            }
        }
    }
    free(f);
    free(P);
    *p->loss = total;
}
