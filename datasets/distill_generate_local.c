/* distill_generate_local.c — the local teacher of `distill generate`: a model directory sampled
 * with the rollout engine (rollout/engine.h). Prompts are rendered with the R1 chat template and
 * its generation prompt `<｜Assistant｜><think>\n`, so the completion starts inside the reasoning
 * and is split at `</think>`; one that never closes it is cut-off reasoning. The samples still
 * wanted of one prompt are one engine request (their prompt is prefilled once). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "datasets/chat.h"
#include "datasets/distill_generate_internal.h"
#include "datasets/tokenizer.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/model.h"
#include "rollout/engine.h"

#define LOCAL_CHUNK 256       /* samples per engine call (then they are committed) */
#define LOCAL_STEP_TOKENS 2048 /* tokens per model step */

typedef struct local_teacher {
    const v3_distill_generate_opts *o; /* borrowed: lives while the driver runs */
    v3_config cfg;
    v3_tokenizer *tok;
    v3_kctx ctx;
    v3_model m;
    v3_engine e;
    int have_ctx, have_model, have_engine;
    int32_t eos;
} local_teacher;

static void local_free(void *impl) {
    local_teacher *l = impl;
    if (!l) return;
    if (l->have_engine) v3_engine_free(&l->e);
    if (l->have_model) v3_model_free(&l->m);
    if (l->have_ctx) v3_kctx_free(&l->ctx);
    v3_tok_free(l->tok);
    free(l);
}

/* The accelerator when the build has one and a device answers, else the CPU. */
static int make_ctx(local_teacher *l, v3_err *err) {
    int rc = v3_kctx_open(&l->ctx, "auto", "auto", 0, err);
    l->have_ctx = !rc;
    return rc;
}

/* The prompt's token ids (R1 template with its generation prompt) into ids; V3_EFORMAT when it
 * cannot be rendered or leaves the model's vocabulary. */
static int render(local_teacher *l, const v3_dgen_prompt *p, v3_chat_out *co, v3_err *err) {
    v3_chat_opts opts = {V3_CHAT_R1, 1, 0, 0};
    if (v3_chat_render(l->tok, p->messages, &opts, co, err)) return V3_EFORMAT;
    for (size_t i = 0; i < co->ids.n; i++)
        if (co->ids.ids[i] < 0 || co->ids.ids[i] >= l->cfg.vocab_size)
            return v3_errf(err, V3_EFORMAT, "token %d is outside the model's vocabulary (%lld)",
                           co->ids.ids[i], (long long)l->cfg.vocab_size);
    return co->ids.n ? V3_OK : v3_errf(err, V3_EFORMAT, "the prompt renders to no tokens");
}

static int fill_reply(const v3_gen_output *g, int64_t prompt_len, uint64_t seed, v3_dgen_reply *r,
                      v3_err *err) {
    int rc = v3_dgen_split(NULL, g->text ? g->text : "", 1, g->finish == V3_FINISH_LENGTH, r, err);
    if (rc) return rc;
    r->ok = 1;
    r->attempts = 1;
    r->prompt_tokens = prompt_len;
    r->completion_tokens = g->n;
    r->prov = json_pack("{s:s, s:{s:I, s:I}, s:I}", "finish_reason", v3_finish_name(g->finish),
                        "usage", "prompt_tokens", (json_int_t)prompt_len, "completion_tokens",
                        (json_int_t)g->n, "seed", (json_int_t)(seed & 0x7fffffffffffffffull));
    return r->prov ? V3_OK : v3_errf(err, V3_ENOMEM, "out of memory");
}

/* Items of one prompt are consecutive (the driver lists them prompt by prompt): one request each
 * run of them. */
static int local_run(void *impl, const v3_dgen_prompts *ps, const v3_dgen_item *items, int n,
                     v3_dgen_reply *out, v3_err *err) {
    local_teacher *l = impl;
    const v3_distill_generate_opts *o = l->o;
    v3_gen_request *reqs = calloc((size_t)n, sizeof *reqs);
    int *first = calloc((size_t)n, sizeof *first);
    v3_chat_out *co = calloc((size_t)n, sizeof *co);
    v3_gen_output *outs = NULL;
    int64_t n_out = 0;
    int n_req = 0, rc = reqs && first && co ? V3_OK : v3_errf(err, V3_ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc;) {
        int j = i + 1;
        while (j < n && items[j].prompt == items[i].prompt) j++;
        v3_err rerr = {0};
        int k = render(l, &ps->p[items[i].prompt], &co[n_req], &rerr);
        if (k == V3_EFORMAT) { /* this prompt's samples fail; the others go on */
            for (int t = i; t < j && !rc; t++)
                if (!(out[t].error = strdup(rerr.msg))) rc = v3_errf(err, V3_ENOMEM, "out of memory");
        } else if (k) {
            rc = v3_errf(err, k, "%s", rerr.msg);
        } else {
            v3_gen_request *r = &reqs[n_req];
            r->prompt = co[n_req].ids.ids;
            r->prompt_len = (int64_t)co[n_req].ids.n;
            r->n = j - i;
            r->sampling = v3_sampling_default();
            r->sampling.temperature = (float)o->temperature;
            r->sampling.top_p = (float)o->top_p;
            r->max_new_tokens = o->max_tokens;
            r->stop_ids = l->eos >= 0 ? &l->eos : NULL;
            r->n_stop_ids = l->eos >= 0;
            r->seed = o->seed ^ items[i].key;
            first[n_req++] = i;
        }
        i = j;
    }
    if (!rc && n_req) rc = v3_engine_generate(&l->e, reqs, n_req, &outs, &n_out, err);
    for (int64_t k = 0; k < n_out && !rc; k++) {
        const v3_gen_output *g = &outs[k];
        const v3_gen_request *r = &reqs[g->request];
        rc = fill_reply(g, r->prompt_len, r->seed, &out[first[g->request] + g->sample], err);
    }
    v3_gen_outputs_free(outs, n_out);
    for (int i = 0; co && i < n; i++) v3_chat_out_free(&co[i]);
    free(co);
    free(first);
    free(reqs);
    return rc;
}

char *v3_dgen_local_name(const v3_distill_generate_opts *o) {
    if (o->model && o->model[0]) return strdup(o->model);
    const char *d = o->model_dir;
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/') n--;
    const char *s = d + n;
    while (s > d && s[-1] != '/') s--;
    char *name = malloc((size_t)(d + n - s) + 1);
    if (name) {
        memcpy(name, s, (size_t)(d + n - s));
        name[d + n - s] = 0;
    }
    return name;
}

static int local_load(local_teacher *l, const v3_distill_generate_opts *o, v3_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", o->model_dir);
    int rc = v3_config_load(&l->cfg, path, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/tokenizer.json", o->model_dir);
    const char *tdir = v3_file_exists(path) ? o->model_dir : o->tokenizer_dir;
    if (!tdir) return v3_errf(err, V3_ENOTFOUND, "%s has no tokenizer.json and no tokenizer "
                              "directory is given (tokenizer.dir)", o->model_dir);
    if ((rc = v3_tok_load(&l->tok, tdir, err))) return rc;
    l->eos = v3_tok_eos_id(l->tok);
    if ((rc = make_ctx(l, err))) return rc;
    v3_model_options mo = v3_model_default_options();
    mo.training = 0;
    mo.absorb = 1;
    if ((rc = v3_model_init(&l->m, &l->cfg, &l->ctx, LOCAL_STEP_TOKENS, &mo, err))) return rc;
    l->have_model = 1;
    if ((rc = v3_model_load(&l->m, o->model_dir, err))) return rc;
    v3_engine_options eo = v3_engine_default_options();
    eo.tok = l->tok;
    if ((rc = v3_engine_init(&l->e, &l->m, &eo, err))) return rc;
    l->have_engine = 1;
    return V3_OK;
}

int v3_dgen_local_init(v3_dgen_teacher *t, const v3_distill_generate_opts *o, v3_err *err) {
    memset(t, 0, sizeof *t);
    if (o->max_tokens < 1)
        return v3_errf(err, V3_EINVAL, "generate.max_tokens must be at least 1 with a local teacher");
    v3_sampling s = v3_sampling_default();
    s.temperature = (float)o->temperature;
    s.top_p = (float)o->top_p;
    int rc = v3_sampling_check(&s, err);
    if (rc) return rc;
    local_teacher *l = calloc(1, sizeof *l);
    if (!l) return v3_errf(err, V3_ENOMEM, "out of memory");
    l->o = o;
    if ((rc = local_load(l, o, err))) {
        v3_err_prefix(err, "teacher %s", o->model_dir);
        local_free(l);
        return rc;
    }
    t->kind = "local";
    t->model = v3_dgen_local_name(o);
    t->endpoint = strdup(o->model_dir);
    t->chunk = LOCAL_CHUNK;
    t->impl = l;
    t->run = local_run;
    t->free = local_free;
    if (!t->model || !t->endpoint) {
        v3_dgen_teacher_free(t);
        return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    return V3_OK;
}
