/* distill_generate_http.c — the HTTP teacher of `distill generate`: an OpenAI-compatible
 * /v1/chat/completions endpoint, asked through the judge client (rewards/judge.h: concurrency,
 * timeouts, retries with backoff and Retry-After, the API key from the environment). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/distill_generate_internal.h"

#define DGEN_MAX_BODY ((size_t)16 << 20) /* a reply with 100k tokens of reasoning fits */
#define DGEN_CHUNK_PER_SLOT 4            /* requests per commit: this many per connection */

typedef struct http_teacher {
    v3_judge *judge;
    const v3_distill_generate_opts *o; /* borrowed: lives while the driver runs */
    const char *model;
} http_teacher;

/* The request of one item: model, messages and the sampling parameters. */
static char *request_body(const http_teacher *h, const v3_dgen_prompt *p, const v3_dgen_item *it) {
    const v3_distill_generate_opts *o = h->o;
    json_t *b = json_pack("{s:s, s:O, s:f, s:f}", "model", h->model, "messages", p->messages,
                          "temperature", o->temperature, "top_p", o->top_p);
    if (!b) return NULL;
    if (o->max_tokens > 0)
        json_object_set_new(b, "max_tokens", json_integer((json_int_t)o->max_tokens));
    if (o->seed) /* one seed per prompt and sample, so that the samples differ */
        json_object_set_new(b, "seed", json_integer((json_int_t)((o->seed ^ it->key) & 0x7fffffff)));
    char *s = json_dumps(b, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(b);
    return s;
}

static int http_run(void *impl, const v3_dgen_prompts *ps, const v3_dgen_item *items, int n,
                    v3_dgen_reply *out, v3_err *err) {
    http_teacher *h = impl;
    char **bodies = calloc((size_t)n, sizeof *bodies);
    v3_judge_result *res = calloc((size_t)n, sizeof *res);
    int rc = bodies && res ? V3_OK : v3_errf(err, V3_ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++)
        if (!(bodies[i] = request_body(h, &ps->p[items[i].prompt], &items[i])))
            rc = v3_errf(err, V3_ENOMEM, "out of memory");
    int ran = 0;
    if (!rc) ran = !(rc = v3_judge_run(h->judge, (const char *const *)bodies, n, res, err));
    for (int i = 0; i < n && !rc; i++) rc = v3_dgen_http_reply(&res[i], &out[i], err);
    if (ran) v3_judge_results_free(res, n);
    for (int i = 0; bodies && i < n; i++) free(bodies[i]);
    free(bodies);
    free(res);
    return rc;
}

static void http_free(void *impl) {
    http_teacher *h = impl;
    if (!h) return;
    v3_judge_free(h->judge);
    free(h);
}

int v3_dgen_http_init(v3_dgen_teacher *t, const v3_distill_generate_opts *o, v3_err *err) {
    memset(t, 0, sizeof *t);
    if (!o->model || !o->model[0]) return v3_errf(err, V3_EINVAL, "generate.model is required");
    http_teacher *h = calloc(1, sizeof *h);
    if (!h) return v3_errf(err, V3_ENOMEM, "out of memory");
    h->o = o;
    h->model = o->model;
    v3_judge_opts jo = {.url = o->url, .model = o->model, .key_env = o->key_env,
                        .max_in_flight = o->max_in_flight, .timeout_s = o->timeout_s,
                        .max_retries = o->retries > 0 ? o->retries : -1, /* judge: 0 = default */
                        .backoff_base_s = o->backoff_s, .max_body = DGEN_MAX_BODY};
    int rc = v3_judge_init(&h->judge, &jo, err);
    if (rc) {
        free(h);
        return rc;
    }
    int in_flight = o->max_in_flight > 0 ? o->max_in_flight : V3_JUDGE_DEFAULT_IN_FLIGHT;
    t->kind = "http";
    t->model = strdup(o->model);
    t->endpoint = strdup(v3_judge_endpoint(h->judge));
    t->chunk = in_flight * DGEN_CHUNK_PER_SLOT;
    t->impl = h;
    t->run = http_run;
    t->free = http_free;
    if (!t->model || !t->endpoint) {
        v3_dgen_teacher_free(t);
        return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    return V3_OK;
}

void v3_dgen_teacher_free(v3_dgen_teacher *t) {
    if (t->free) t->free(t->impl);
    free(t->model);
    free(t->endpoint);
    memset(t, 0, sizeof *t);
}
