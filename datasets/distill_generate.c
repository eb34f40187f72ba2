/* distill_generate.c — `distill generate`: the driver. It records a run, reads the keys of the
 * traces already stored and the prompts, lists the (prompt, sample) pairs still missing for this
 * teacher, asks the teacher for them chunk by chunk and commits each chunk's traces (with their
 * prompt rows) before asking for the next, so an interruption loses at most the chunk in flight.
 * See distill_generate.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/distill_generate_internal.h"
#include "datasets/distill_text.h"
#include "datasets/store.h"

#define MAX_FAILURES_LISTED 1000 /* failures named in the run's generate/failed row */
#define MAX_FAILURES_LOGGED 20   /* failures printed per run (then only counted) */

void v3_distill_generate_opts_default(v3_distill_generate_opts *o) {
    memset(o, 0, sizeof *o);
    o->n = 1;
    o->temperature = 0.6;
    o->top_p = 0.95;
    o->max_tokens = 8192;
    o->max_in_flight = 8;
    o->timeout_s = 600;
    o->retries = 3;
}

typedef struct gen_ctx {
    const v3_distill_generate_opts *o;
    v3_distill_generate_stats *st;
    FILE *log;
    v3_store *w;
    v3_dgen_prompts ps;
    v3_keyset keys;       /* traces stored (and those asked for now) */
    v3_dgen_item *items;  /* still missing, prompt by prompt */
    int64_t n_items;
    v3_dgen_teacher t;
    char *model;          /* the teacher's model name (source_model) */
    json_t *params;       /* the request parameters, in every provenance */
    json_t *failures;     /* [{prompt_id, sample, error}] */
} gen_ctx;

/* The (prompt, sample) pairs not stored yet for this teacher, at most max_requests of them. */
static int list_items(gen_ctx *c, v3_err *err) {
    const v3_distill_generate_opts *o = c->o;
    int64_t cap = 0;
    for (int64_t p = 0; p < c->ps.n; p++) {
        for (int s = 0; s < o->n; s++) {
            uint64_t key = v3_dgen_key(&c->ps.p[p], c->model, s);
            int added = key ? v3_keyset_add(&c->keys, key) : -1;
            if (added < 0) return v3_errf(err, V3_ENOMEM, "out of memory");
            c->st->wanted++;
            if (!added) { /* stored by an earlier run (or the same prompt twice in the file) */
                c->st->done_before++;
                continue;
            }
            if (o->max_requests > 0 && c->n_items >= o->max_requests) {
                c->st->left++;
                continue;
            }
            if (c->n_items == cap) {
                cap = cap ? 2 * cap : 256;
                v3_dgen_item *ni = realloc(c->items, (size_t)cap * sizeof *ni);
                if (!ni) return v3_errf(err, V3_ENOMEM, "out of memory");
                c->items = ni;
            }
            c->items[c->n_items++] = (v3_dgen_item){.prompt = p, .sample = s, .key = key};
        }
    }
    return V3_OK;
}

static json_t *request_params(const v3_distill_generate_opts *o) {
    json_t *p = json_pack("{s:i, s:f, s:f}", "n", o->n, "temperature", o->temperature, "top_p",
                          o->top_p);
    if (p && o->max_tokens > 0)
        json_object_set_new(p, "max_tokens", json_integer((json_int_t)o->max_tokens));
    if (p && o->seed)
        json_object_set_new(p, "seed", json_integer((json_int_t)(o->seed & 0x7fffffffffffffffull)));
    if (p && o->system_prompt && o->system_prompt[0])
        json_object_set_new(p, "system_prompt", json_string(o->system_prompt));
    return p;
}

/* The provenance of a trace: what was asked, of whom and when, then what the teacher said. */
static char *provenance(gen_ctx *c, const v3_dgen_prompt *p, const v3_dgen_item *it,
                        const v3_dgen_reply *r) {
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:O, s:s}", "form", "generate", "teacher",
                          c->t.kind, "endpoint", c->t.endpoint, "model", c->t.model, "sample",
                          it->sample, "params", c->params, "time", when);
    if (!o) return NULL;
    if (p->file) {
        json_object_set_new(o, "file", json_string(p->file));
        json_object_set_new(o, "line", json_integer((json_int_t)p->line));
    }
    if (r->prov) json_object_update(o, r->prov);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    json_decref(o);
    return s;
}

static int note_failure(gen_ctx *c, const v3_dgen_prompt *p, int64_t prompt_id,
                        const v3_dgen_item *it, const char *why) {
    if (c->st->failed++ < MAX_FAILURES_LOGGED) {
        if (p->file)
            fprintf(c->log, "%s:%lld: sample %d: %s\n", p->file, (long long)p->line, it->sample, why);
        else
            fprintf(c->log, "prompt %lld: sample %d: %s\n", (long long)prompt_id, it->sample, why);
    }
    if (json_array_size(c->failures) >= MAX_FAILURES_LISTED) return V3_OK;
    json_t *f = json_pack("{s:I, s:i, s:s}", "prompt_id", (json_int_t)prompt_id, "sample",
                          it->sample, "error", why);
    return f && !json_array_append_new(c->failures, f) ? V3_OK : V3_ENOMEM;
}

/* Stores the replies to items[0..n): each prompt row once, a trace per answer, failures noted. */
static int store_chunk(gen_ctx *c, const v3_dgen_item *items, const v3_dgen_reply *rs, int n,
                       v3_err *err) {
    v3_store_batch *b = NULL;
    int rc = v3_store_batch_new(c->w, &b, err);
    int64_t prompt_id = 0, last = -1;
    for (int i = 0; i < n && !rc; i++) {
        const v3_dgen_item *it = &items[i];
        const v3_dgen_prompt *p = &c->ps.p[it->prompt];
        const v3_dgen_reply *r = &rs[i];
        if (it->prompt != last) {
            v3_store_prompt sp = {.text = p->text, .messages_json = p->messages_json,
                                  .fields_json = p->fields_json, .source_file = p->file,
                                  .source_line = p->line};
            if ((rc = v3_store_batch_add_prompt(b, &sp, &prompt_id, err))) break;
            last = it->prompt;
        }
        c->st->attempts += r->attempts;
        c->st->retries += r->retries;
        if (r->prompt_tokens > 0) c->st->prompt_tokens += r->prompt_tokens;
        if (r->completion_tokens > 0) c->st->completion_tokens += r->completion_tokens;
        if (!r->ok || (!r->reasoning[0] && !r->answer[0])) {
            if (note_failure(c, p, prompt_id, it, r->ok ? "empty reply" : r->error))
                rc = v3_errf(err, V3_ENOMEM, "out of memory");
            continue;
        }
        char *prov = provenance(c, p, it, r);
        if (!prov) {
            rc = v3_errf(err, V3_ENOMEM, "out of memory");
            break;
        }
        v3_store_trace t = {.prompt_id = prompt_id, .reasoning = r->reasoning, .answer = r->answer,
                            .source_model = c->t.model, .provenance_json = prov, .accepted = -1,
                            .key = it->key, .truncated = r->truncated};
        int64_t trace_id = 0;
        rc = v3_store_batch_add_trace(b, &t, &trace_id, err);
        free(prov);
        if (rc) break;
        c->st->stored++;
        c->st->truncated += r->truncated;
        c->st->no_reasoning += r->reasoning[0] == 0;
    }
    if (rc) {
        v3_store_batch_free(b);
        return rc;
    }
    /* committed before the next chunk is asked for: a later crash keeps these */
    if ((rc = v3_store_submit(c->w, b, NULL, err))) return rc;
    return v3_store_flush(c->w, 0, err);
}

static int run_chunks(gen_ctx *c, v3_err *err) {
    const v3_distill_generate_opts *o = c->o;
    int chunk = c->t.chunk > 0 ? c->t.chunk : 32;
    v3_dgen_reply *rs = calloc((size_t)chunk, sizeof *rs);
    if (!rs) return v3_errf(err, V3_ENOMEM, "out of memory");
    int rc = V3_OK;
    for (int64_t off = 0; off < c->n_items && !rc; off += chunk) {
        if (o->stop && *o->stop) {
            c->st->stopped = 1;
            c->st->left += c->n_items - off;
            break;
        }
        int n = c->n_items - off < chunk ? (int)(c->n_items - off) : chunk;
        memset(rs, 0, (size_t)n * sizeof *rs);
        c->st->requested += n;
        rc = c->t.run(c->t.impl, &c->ps, c->items + off, n, rs, err);
        if (!rc) rc = store_chunk(c, c->items + off, rs, n, err);
        for (int i = 0; i < n; i++) v3_dgen_reply_free(&rs[i]);
        if (!rc && o->progress)
            fprintf(o->progress, "distill generate: %lld/%lld asked, %lld stored, %lld failed\n",
                    (long long)(off + n), (long long)c->n_items, (long long)c->st->stored,
                    (long long)c->st->failed);
    }
    free(rs);
    return rc;
}

/* The run's record of what happened: generate/stored, and generate/failed naming each failure. */
static int log_outcome(gen_ctx *c, v3_err *err) {
    v3_store_eval ev = {.step = 0, .name = "generate/stored", .value = (double)c->st->stored,
                        .n_examples = c->st->requested};
    int rc = v3_store_log_eval(c->w, &ev, err);
    if (rc) return rc;
    json_t *x = json_pack("{s:O, s:I}", "failures", c->failures, "left", (json_int_t)c->st->left);
    char *extra = x ? json_dumps(x, JSON_COMPACT) : NULL;
    json_decref(x);
    if (!extra) return v3_errf(err, V3_ENOMEM, "out of memory");
    ev = (v3_store_eval){.step = 0, .name = "generate/failed", .value = (double)c->st->failed,
                         .n_examples = c->st->requested, .extra_json = extra};
    rc = v3_store_log_eval(c->w, &ev, err);
    free(extra);
    return rc;
}

static int check_opts(const v3_distill_generate_opts *o, v3_err *err) {
    int has_url = o->url && o->url[0], has_dir = o->model_dir && o->model_dir[0];
    if (has_url == has_dir)
        return v3_errf(err, V3_EINVAL, has_url ? "generate.url and generate.model_dir both name a "
                       "teacher: give one" : "no teacher: give generate.url (an OpenAI-compatible "
                       "endpoint) or generate.model_dir (a local model directory)");
    if (o->n < 1) return v3_errf(err, V3_EINVAL, "generate.n must be at least 1");
    if (!(o->temperature >= 0) || !(o->top_p > 0 && o->top_p <= 1))
        return v3_errf(err, V3_EINVAL, "generate.temperature must be >= 0 and generate.top_p in "
                       "(0, 1]");
    if (o->max_tokens < 0 || o->max_in_flight < 1 || o->max_in_flight > V3_JUDGE_MAX_IN_FLIGHT ||
        !(o->timeout_s > 0))
        return v3_errf(err, V3_EINVAL, "generate.max_tokens must be >= 0, generate.max_in_flight "
                       "1..%d and generate.timeout > 0", V3_JUDGE_MAX_IN_FLIGHT);
    if (has_url && (!o->model || !o->model[0]))
        return v3_errf(err, V3_EINVAL, "generate.model is required with generate.url (the model "
                       "name the endpoint serves, e.g. deepseek-reasoner)");
    return V3_OK;
}

static int generate(gen_ctx *c, const char *db_path, v3_err *err) {
    const v3_distill_generate_opts *o = c->o;
    int rc = v3_keyset_load_traces(&c->keys, db_path, err);
    if (rc) return rc;
    if (o->prompts && o->prompts[0]) {
        if ((rc = v3_dgen_prompts_from_file(&c->ps, o, c->log, c->st, err))) return rc;
        if (!c->ps.n) return v3_errf(err, V3_EINVAL, "%s holds no usable prompts", o->prompts);
    } else {
        if ((rc = v3_dgen_prompts_from_store(&c->ps, db_path, o, c->st, err))) return rc;
        if (!c->ps.n) return v3_errf(err, V3_EINVAL, "%s holds no prompts: give a prompts file "
                                     "(generate.prompts)", db_path);
    }
    c->model = o->model_dir && o->model_dir[0] ? v3_dgen_local_name(o) : strdup(o->model);
    if (!c->model) return v3_errf(err, V3_ENOMEM, "out of memory");
    if ((rc = list_items(c, err))) return rc;
    if (o->model_dir && o->model_dir[0]) {
        snprintf(c->st->teacher, sizeof c->st->teacher, "%s @ %s", c->model, o->model_dir);
        if (!c->n_items) return V3_OK; /* nothing to ask: the model is not loaded */
        rc = v3_dgen_local_init(&c->t, o, err);
    } else {
        rc = v3_dgen_http_init(&c->t, o, err);
        if (!rc) snprintf(c->st->teacher, sizeof c->st->teacher, "%s @ %s", c->t.model, c->t.endpoint);
    }
    if (!rc) rc = run_chunks(c, err);
    return rc;
}

int v3_distill_generate(const char *db_path, const v3_distill_generate_opts *o,
                        v3_distill_generate_stats *st, v3_err *err) {
    gen_ctx c = {.o = o, .st = st, .log = o->log ? o->log : stderr};
    memset(st, 0, sizeof *st);
    int rc = check_opts(o, err);
    if (rc) return rc;
    v3_dgen_prompts_init(&c.ps);
    v3_keyset_init(&c.keys);
    c.params = request_params(o);
    c.failures = json_array();
    if (!c.params || !c.failures) {
        rc = v3_errf(err, V3_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = v3_store_open(&c.w, db_path, V3_STORE_WRITE | V3_STORE_CREATE, err))) goto done;
    if ((rc = v3_store_run_begin(c.w, &(v3_store_run_info){.command = "distill generate",
                                                          .config = o->config_json},
                                 NULL, err)))
        goto done;
    rc = generate(&c, db_path, err);
    if (!rc) rc = log_outcome(&c, err);
    char msg[1100];
    const char *status = "completed";
    msg[0] = 0;
    if (rc) {
        status = "failed";
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "failed");
    } else if (st->failed) {
        status = "failed";
        snprintf(msg, sizeof msg, "%lld of %lld requests failed after their retries (%lld traces "
                 "stored); run again to ask for them", (long long)st->failed,
                 (long long)st->requested, (long long)st->stored);
    } else if (st->left) {
        status = "interrupted";
        snprintf(msg, sizeof msg, "%lld prompt samples left (%s); run again for the rest",
                 (long long)st->left, st->stopped ? "stopped" : "max_requests");
    }
    v3_err end_err = {0};
    int erc = v3_store_run_end(c.w, status, msg[0] ? msg : NULL, &end_err);
    if (!rc && erc) {
        rc = erc;
        if (err) *err = end_err;
    }
done:;
    v3_err close_err = {0};
    int crc = v3_store_close(c.w, &close_err);
    if (!rc && crc) {
        rc = crc;
        if (err) *err = close_err;
    }
    v3_dgen_teacher_free(&c.t);
    v3_dgen_prompts_free(&c.ps);
    v3_keyset_free(&c.keys);
    free(c.items);
    free(c.model);
    json_decref(c.params);
    json_decref(c.failures);
    return rc;
}
