/* store_batch.c — building batches: every record is validated and copied (strings, token ids,
 * logprobs) into the batch at once, so the caller's buffers may be reused as soon as an add call
 * returns, and the writer thread never touches caller memory. Ids (samples, prompts, traces) are
 * assigned here from per-store counters: the process holding the writer lock is the only one that
 * inserts, so ids need no round trip to the database and training never waits for them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/blob.h"
#include "datasets/store_internal.h"

static int check_batch(const v3_store_batch *b, v3_err *err) {
    if (!b || b->magic != V3_STORE_BATCH_MAGIC)
        return v3_errf(err, V3_EINVAL, "run store: not a live batch (already submitted or freed?)");
    return V3_OK;
}

int v3_store_batch_new(v3_store *s, v3_store_batch **out, v3_err *err) {
    if (!s || s->magic != V3_STORE_MAGIC) return v3_errf(err, V3_EINVAL, "run store: bad handle");
    if (!(s->flags & V3_STORE_WRITE))
        return v3_errf(err, V3_EINVAL, "%s: opened read-only; cannot write", s->path);
    /* Reusing a committed batch's buffers avoids page-faulting fresh megabytes for every batch,
     * which was a large part of the caller's cost for 1K-token samples. */
    pthread_mutex_lock(&s->mu);
    v3_store_batch *b = s->pool;
    if (b) {
        s->pool = b->next;
        s->n_pool--;
    }
    pthread_mutex_unlock(&s->mu);
    if (b) {
        b->n = 0;
        b->len = 0;
        b->durable = 0;
        b->seq = 0;
        b->next = NULL;
    } else if (!(b = calloc(1, sizeof *b))) {
        return v3_errf(err, V3_ENOMEM, "%s: out of memory for a batch", s->path);
    }
    b->magic = V3_STORE_BATCH_MAGIC;
    b->s = s;
    *out = b;
    return V3_OK;
}

void v3_store__batch_destroy(v3_store_batch *b) {
    if (!b) return;
    free(b->recs);
    free(b->data);
    b->magic = V3_STORE_DEAD;
    free(b);
}

#define V3_POOL_MAX 4                       /* batches kept for reuse */
#define V3_POOL_MAX_BYTES ((size_t)256 << 20) /* larger buffers go back to the system */

void v3_store__batch_recycle(v3_store *s, v3_store_batch *b) {
    if (b->data_cap > V3_POOL_MAX_BYTES) {
        v3_store__batch_destroy(b);
        return;
    }
    b->magic = V3_STORE_DEAD;
    pthread_mutex_lock(&s->mu);
    int keep = s->n_pool < V3_POOL_MAX;
    if (keep) {
        b->next = s->pool;
        s->pool = b;
        s->n_pool++;
    }
    pthread_mutex_unlock(&s->mu);
    if (!keep) v3_store__batch_destroy(b);
}

void v3_store_batch_free(v3_store_batch *b) {
    if (!b || b->magic != V3_STORE_BATCH_MAGIC) return;
    v3_store__batch_destroy(b);
}

int64_t v3_store__batch_bytes(const v3_store_batch *b) {
    return (int64_t)(b->len + (size_t)b->n * sizeof(v3_rec));
}

static int reserve_data(v3_store_batch *b, size_t extra, v3_err *err) {
    if (b->len + extra <= b->data_cap) return V3_OK;
    size_t cap = b->data_cap ? b->data_cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return v3_errf(err, V3_ENOMEM, "%s: out of memory growing a batch to %zu bytes",
                           b->s->path, cap);
    b->data = p;
    b->data_cap = cap;
    return V3_OK;
}

v3_rec *v3_store__new_rec(v3_store_batch *b, int type, v3_err *err) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 16;
        v3_rec *r = realloc(b->recs, (size_t)cap * sizeof *r);
        if (!r) {
            v3_errf(err, V3_ENOMEM, "%s: out of memory growing a batch", b->s->path);
            return NULL;
        }
        b->recs = r;
        b->cap = cap;
    }
    v3_rec *r = &b->recs[b->n++];
    memset(r, 0, sizeof *r);
    r->type = type;
    r->time = v3_store__now();
    return r;
}

/* Copies bytes into the batch; NULL becomes a NULL span. */
static int put_mem(v3_store_batch *b, const void *p, size_t n, v3_span *sp, v3_err *err) {
    sp->off = 0;
    sp->len = -1;
    if (!p) return V3_OK;
    int rc = reserve_data(b, n, err);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    sp->off = b->len;
    sp->len = (int64_t)n;
    b->len += n;
    return V3_OK;
}

int v3_store__put_str(v3_store_batch *b, const char *str, v3_span *sp, v3_err *err) {
    return put_mem(b, str, str ? strlen(str) : 0, sp, err);
}

/* Logprob arrays are stored as float32 LE (blob.h), token ids as uint32 LE. */
static int put_f32(v3_store_batch *b, const float *x, int32_t n, v3_span *sp, v3_err *err) {
    sp->off = 0;
    sp->len = -1;
    if (!x) return V3_OK;
    int rc = reserve_data(b, 4 * (size_t)n, err);
    if (rc) return rc;
    v3_blob_put_f32(b->data + b->len, x, (size_t)n);
    sp->off = b->len;
    sp->len = 4 * (int64_t)n;
    b->len += 4 * (size_t)n;
    return V3_OK;
}

static int put_u32(v3_store_batch *b, const uint32_t *x, int32_t n, v3_span *sp, v3_err *err) {
    sp->off = 0;
    sp->len = -1;
    if (!x) return V3_OK;
    int rc = reserve_data(b, 4 * (size_t)n, err);
    if (rc) return rc;
    v3_blob_put_u32(b->data + b->len, x, (size_t)n);
    sp->off = b->len;
    sp->len = 4 * (int64_t)n;
    b->len += 4 * (size_t)n;
    return V3_OK;
}

static int current_run(v3_store_batch *b, int64_t *run, const char *what, v3_err *err) {
    pthread_mutex_lock(&b->s->mu);
    *run = b->s->run_id;
    pthread_mutex_unlock(&b->s->mu);
    if (*run <= 0)
        return v3_errf(err, V3_EINVAL, "%s: %s before v3_store_run_begin", b->s->path, what);
    return V3_OK;
}

static int64_t take_id(v3_store *s, int64_t *counter) {
    pthread_mutex_lock(&s->mu);
    int64_t id = (*counter)++;
    pthread_mutex_unlock(&s->mu);
    return id;
}

int v3_store_batch_add_step(v3_store_batch *b, const v3_store_step *st, v3_err *err) {
    int rc = check_batch(b, err);
    int64_t run = 0;
    if (rc || (rc = current_run(b, &run, "step metrics", err))) return rc;
    if (st->n_metrics < 0 || (st->n_metrics > 0 && (!st->metric_names || !st->metric_values)))
        return v3_errf(err, V3_EINVAL, "%s: step %lld: bad metric arrays", b->s->path,
                       (long long)st->step);
    int n0 = b->n;
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_STEP, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->run_id = run;
    r->u.step.step = st->step;
    r->u.step.tokens = st->tokens;
    r->u.step.loss = st->loss;
    r->u.step.lr = st->lr;
    r->u.step.grad_norm = st->grad_norm;
    r->u.step.step_time_s = st->step_time_s;
    for (int i = 0; i < st->n_metrics; i++) {
        if (!st->metric_names[i] || !st->metric_names[i][0]) {
            rc = v3_errf(err, V3_EINVAL, "%s: step %lld: metric %d has no name", b->s->path,
                         (long long)st->step, i);
            goto fail;
        }
        if (isnan(st->metric_values[i])) continue; /* NOT NULL column: an unmeasured metric is absent */
        v3_rec *m = v3_store__new_rec(b, V3_REC_METRIC, err);
        if (!m) {
            rc = err ? err->code : V3_ENOMEM;
            goto fail;
        }
        m->run_id = run;
        m->u.metric.step = st->step;
        m->u.metric.value = st->metric_values[i];
        if ((rc = v3_store__put_str(b, st->metric_names[i], &m->u.metric.name, err))) goto fail;
    }
    return V3_OK;
fail: /* a half-added step never reaches the database */
    b->n = n0;
    b->len = len0;
    return rc;
}

int v3_store_batch_add_eval(v3_store_batch *b, const v3_store_eval *ev, v3_err *err) {
    int rc = check_batch(b, err);
    int64_t run = 0;
    if (rc || (rc = current_run(b, &run, "eval", err))) return rc;
    if (!ev->name || !ev->name[0]) return v3_errf(err, V3_EINVAL, "%s: eval without a name", b->s->path);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_EVAL, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->run_id = run;
    r->u.eval.step = ev->step;
    r->u.eval.n_examples = ev->n_examples;
    r->u.eval.value = ev->value;
    if ((rc = v3_store__put_str(b, ev->name, &r->u.eval.name, err)) ||
        (rc = v3_store__put_str(b, ev->extra_json, &r->u.eval.extra, err))) {
        b->n--;
        b->len = len0;
    }
    return rc;
}

int v3_store_batch_add_expert_load(v3_store_batch *b, int64_t step, int layer, int n_expert,
                                   const int64_t *counts, v3_err *err) {
    int rc = check_batch(b, err);
    int64_t run = 0;
    if (rc || (rc = current_run(b, &run, "expert load", err))) return rc;
    if (n_expert <= 0 || !counts || layer < 0)
        return v3_errf(err, V3_EINVAL, "%s: expert load of layer %d: bad counts", b->s->path, layer);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_EXPERT_LOAD, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->run_id = run;
    r->u.load.step = step;
    r->u.load.layer = layer;
    r->u.load.n_expert = n_expert;
    if ((rc = put_mem(b, counts, (size_t)n_expert * sizeof *counts, &r->u.load.counts, err))) {
        b->n--;
        b->len = len0;
    }
    return rc;
}

/* FNV-1a 64 over the fields that make two prompts the same; 0 is reserved for empty map slots. */
static uint64_t prompt_key(const v3_store_prompt *p) {
    uint64_t h = 1469598103934665603ull;
    const char *parts[3] = {p->text, p->messages_json, p->fields_json};
    for (int k = 0; k < 3; k++) {
        for (const unsigned char *c = (const unsigned char *)parts[k]; c && *c; c++) {
            h ^= *c;
            h *= 1099511628211ull;
        }
        h ^= parts[k] ? 0xfe : 0xff; /* separator that also tells NULL from "" */
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

/* Keeps the open-addressing prompt map under half full. Caller holds s->mu (or is open()). */
static int map_reserve(v3_store *s) {
    if (2 * (s->pn + 1) <= s->pcap) return V3_OK;
    size_t cap = s->pcap ? 2 * s->pcap : 1024;
    uint64_t *k = calloc(cap, sizeof *k);
    int64_t *v = calloc(cap, sizeof *v);
    if (!k || !v) {
        free(k);
        free(v);
        return V3_ENOMEM;
    }
    for (size_t i = 0; i < s->pcap; i++) {
        if (!s->pkeys[i]) continue;
        size_t j = s->pkeys[i] & (cap - 1);
        while (k[j]) j = (j + 1) & (cap - 1);
        k[j] = s->pkeys[i];
        v[j] = s->pids[i];
    }
    free(s->pkeys);
    free(s->pids);
    s->pkeys = k;
    s->pids = v;
    s->pcap = cap;
    return V3_OK;
}

/* The slot holding key, or the empty slot where it belongs. */
static size_t map_slot(const v3_store *s, uint64_t key) {
    size_t j = key & (s->pcap - 1);
    while (s->pkeys[j] && s->pkeys[j] != key) j = (j + 1) & (s->pcap - 1);
    return j;
}

int v3_store__prompt_map_put(v3_store *s, uint64_t key, int64_t id) {
    if (map_reserve(s)) return V3_ENOMEM;
    size_t j = map_slot(s, key);
    if (!s->pkeys[j]) s->pn++;
    s->pkeys[j] = key;
    s->pids[j] = id;
    return V3_OK;
}

int v3_store_batch_add_prompt(v3_store_batch *b, const v3_store_prompt *p, int64_t *id, v3_err *err) {
    int rc = check_batch(b, err);
    if (rc) return rc;
    if (!p->text && !p->messages_json)
        return v3_errf(err, V3_EINVAL, "%s: a prompt needs text or messages", b->s->path);
    uint64_t key = prompt_key(p);
    int64_t pid = 0;
    pthread_mutex_lock(&b->s->mu);
    rc = map_reserve(b->s);
    if (!rc) {
        size_t j = map_slot(b->s, key);
        if (!b->s->pkeys[j]) { /* first sight in this store: a fresh id */
            b->s->pkeys[j] = key;
            b->s->pids[j] = b->s->next_prompt_id++;
            b->s->pn++;
        }
        pid = b->s->pids[j];
    }
    pthread_mutex_unlock(&b->s->mu);
    if (rc) return v3_errf(err, V3_ENOMEM, "%s: out of memory in the prompt map", b->s->path);
    /* The row is queued every time (INSERT OR IGNORE): if the batch that first carried this prompt
     * was freed unsubmitted, or lost in a crash, a later batch still writes it. */
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_PROMPT, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->u.prompt.id = pid;
    r->u.prompt.key = (int64_t)key;
    r->u.prompt.line = p->source_line;
    if ((rc = v3_store__put_str(b, p->text, &r->u.prompt.text, err)) ||
        (rc = v3_store__put_str(b, p->messages_json, &r->u.prompt.messages, err)) ||
        (rc = v3_store__put_str(b, p->fields_json, &r->u.prompt.fields, err)) ||
        (rc = v3_store__put_str(b, p->source_file, &r->u.prompt.file, err))) {
        b->n--;
        b->len = len0;
        return rc;
    }
    *id = pid;
    return V3_OK;
}

static int finish_ok(const char *f) {
    return !f || !strcmp(f, "stop") || !strcmp(f, "length") || !strcmp(f, "abort") ||
           !strcmp(f, "error");
}

int v3_store_batch_add_sample(v3_store_batch *b, const v3_store_sample *smp, int64_t *id,
                              v3_err *err) {
    int rc = check_batch(b, err);
    int64_t run = 0;
    if (rc || (rc = current_run(b, &run, "sample", err))) return rc;
    if (!smp->completion || smp->n_tokens < 0 || smp->prompt_id <= 0)
        return v3_errf(err, V3_EINVAL, "%s: sample needs a completion, n_tokens >= 0 and a prompt id",
                       b->s->path);
    if (!finish_ok(smp->finish_reason))
        return v3_errf(err, V3_EINVAL, "%s: finish_reason \"%s\" is not stop, length, abort or error",
                       b->s->path, smp->finish_reason);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_SAMPLE, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->run_id = run;
    r->u.sample.step = smp->step;
    r->u.sample.prompt_id = smp->prompt_id;
    r->u.sample.group_id = smp->group_id;
    r->u.sample.group_index = smp->group_index;
    r->u.sample.n_tokens = smp->n_tokens;
    r->u.sample.prompt_tokens = smp->prompt_tokens;
    r->u.sample.policy_version = smp->policy_version;
    r->u.sample.seed = (int64_t)smp->seed;
    r->u.sample.reward = smp->reward;
    r->u.sample.advantage = smp->advantage;
    if ((rc = v3_store__put_str(b, smp->completion, &r->u.sample.completion, err)) ||
        (rc = put_u32(b, smp->token_ids, smp->n_tokens, &r->u.sample.ids, err)) ||
        (rc = put_f32(b, smp->logprobs, smp->n_tokens, &r->u.sample.logprobs, err)) ||
        (rc = put_f32(b, smp->trainer_logprobs, smp->n_tokens, &r->u.sample.trainer_logprobs, err)) ||
        (rc = put_f32(b, smp->ref_logprobs, smp->n_tokens, &r->u.sample.ref_logprobs, err)) ||
        (rc = v3_store__put_str(b, smp->finish_reason, &r->u.sample.finish, err))) {
        b->n--;
        b->len = len0;
        return rc;
    }
    r->u.sample.id = take_id(b->s, &b->s->next_sample_id);
    if (id) *id = r->u.sample.id;
    return V3_OK;
}

int v3_store_batch_update_sample(v3_store_batch *b, const v3_store_sample_update *u, v3_err *err) {
    int rc = check_batch(b, err);
    if (rc) return rc;
    if (u->sample_id <= 0 || u->n_tokens < 0)
        return v3_errf(err, V3_EINVAL, "%s: sample update needs a sample id", b->s->path);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_SAMPLE_UPDATE, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->u.upd.id = u->sample_id;
    r->u.upd.reward = u->reward;
    r->u.upd.advantage = u->advantage;
    if ((rc = put_f32(b, u->trainer_logprobs, u->n_tokens, &r->u.upd.trainer_logprobs, err)) ||
        (rc = put_f32(b, u->ref_logprobs, u->n_tokens, &r->u.upd.ref_logprobs, err))) {
        b->n--;
        b->len = len0;
    }
    return rc;
}

int v3_store_batch_add_reward(v3_store_batch *b, const v3_store_reward *rw, v3_err *err) {
    int rc = check_batch(b, err);
    if (rc) return rc;
    if (rw->sample_id <= 0 || !rw->name || !rw->name[0])
        return v3_errf(err, V3_EINVAL, "%s: reward needs a sample id and a function name", b->s->path);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_REWARD, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->u.reward.sample_id = rw->sample_id;
    r->u.reward.score = rw->score;
    r->u.reward.weight = rw->weight;
    r->u.reward.elapsed_ms = rw->elapsed_ms;
    if ((rc = v3_store__put_str(b, rw->name, &r->u.reward.name, err)) ||
        (rc = v3_store__put_str(b, rw->error, &r->u.reward.error, err)) ||
        (rc = v3_store__put_str(b, rw->extra_json, &r->u.reward.extra, err)) ||
        (rc = v3_store__put_str(b, rw->script_hash, &r->u.reward.hash, err))) {
        b->n--;
        b->len = len0;
    }
    return rc;
}

int v3_store_batch_add_trace(v3_store_batch *b, const v3_store_trace *t, int64_t *id, v3_err *err) {
    int rc = check_batch(b, err);
    if (rc) return rc;
    pthread_mutex_lock(&b->s->mu);
    int64_t run = b->s->run_id; /* traces may be imported outside a run: then run_id is NULL */
    pthread_mutex_unlock(&b->s->mu);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_TRACE, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->run_id = run;
    r->u.trace.prompt_id = t->prompt_id;
    r->u.trace.accepted = t->accepted;
    r->u.trace.key = (int64_t)t->key;
    r->u.trace.truncated = t->truncated ? 1 : 0;
    if ((rc = v3_store__put_str(b, t->reasoning, &r->u.trace.reasoning, err)) ||
        (rc = v3_store__put_str(b, t->answer, &r->u.trace.answer, err)) ||
        (rc = v3_store__put_str(b, t->source_model, &r->u.trace.model, err)) ||
        (rc = v3_store__put_str(b, t->provenance_json, &r->u.trace.prov, err)) ||
        (rc = v3_store__put_str(b, t->filters_json, &r->u.trace.filters, err))) {
        b->n--;
        b->len = len0;
        return rc;
    }
    r->u.trace.id = take_id(b->s, &b->s->next_trace_id);
    if (id) *id = r->u.trace.id;
    return V3_OK;
}

int v3_store_batch_add_verdict(v3_store_batch *b, const v3_store_verdict *v, v3_err *err) {
    int rc = check_batch(b, err);
    if (rc) return rc;
    if (v->trace_id <= 0 || !v->verifier || !v->verifier[0])
        return v3_errf(err, V3_EINVAL, "%s: verdict needs a trace id and a verifier", b->s->path);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_VERDICT, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    pthread_mutex_lock(&b->s->mu);
    r->run_id = b->s->run_id; /* verdicts may be written outside a run: then run_id is NULL */
    pthread_mutex_unlock(&b->s->mu);
    r->u.verdict.trace_id = v->trace_id;
    r->u.verdict.passed = v->passed ? 1 : 0;
    r->u.verdict.score = v->score;
    r->u.verdict.weight = v->weight;
    r->u.verdict.elapsed_ms = v->elapsed_ms;
    if ((rc = v3_store__put_str(b, v->verifier, &r->u.verdict.verifier, err)) ||
        (rc = v3_store__put_str(b, v->detail, &r->u.verdict.detail, err)) ||
        (rc = v3_store__put_str(b, v->error, &r->u.verdict.error, err)) ||
        (rc = v3_store__put_str(b, v->extra_json, &r->u.verdict.extra, err)) ||
        (rc = v3_store__put_str(b, v->script_hash, &r->u.verdict.hash, err))) {
        b->n--;
        b->len = len0;
    }
    return rc;
}

int v3_store_batch_update_trace(v3_store_batch *b, const v3_store_trace_update *u, v3_err *err) {
    int rc = check_batch(b, err);
    if (rc) return rc;
    if (u->trace_id <= 0) return v3_errf(err, V3_EINVAL, "%s: trace update needs a trace id", b->s->path);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_TRACE_UPDATE, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->u.trace_upd.id = u->trace_id;
    r->u.trace_upd.accepted = u->accepted < 0 ? -1 : (u->accepted ? 1 : 0);
    if ((rc = v3_store__put_str(b, u->filters_json, &r->u.trace_upd.filters, err))) {
        b->n--;
        b->len = len0;
    }
    return rc;
}

int v3_store_batch_add_selection(v3_store_batch *b, const v3_store_selection *sel, int64_t *id,
                                 v3_err *err) {
    int rc = check_batch(b, err);
    if (rc) return rc;
    if (sel->n_traces < 0 || sel->n_kept < 0 || sel->n_kept > sel->n_traces)
        return v3_errf(err, V3_EINVAL, "%s: selection counts %lld kept of %lld", b->s->path,
                       (long long)sel->n_kept, (long long)sel->n_traces);
    pthread_mutex_lock(&b->s->mu);
    int64_t run = b->s->run_id;
    pthread_mutex_unlock(&b->s->mu);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_SELECTION, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->run_id = run;
    r->u.selection.n_traces = sel->n_traces;
    r->u.selection.n_kept = sel->n_kept;
    if ((rc = v3_store__put_str(b, sel->name, &r->u.selection.name, err)) ||
        (rc = v3_store__put_str(b, sel->config_json, &r->u.selection.config, err)) ||
        (rc = v3_store__put_str(b, sel->report_json, &r->u.selection.report, err))) {
        b->n--;
        b->len = len0;
        return rc;
    }
    r->u.selection.id = take_id(b->s, &b->s->next_selection_id);
    if (id) *id = r->u.selection.id;
    return V3_OK;
}

int v3_store_batch_add_selected(v3_store_batch *b, const v3_store_selected *sd, v3_err *err) {
    int rc = check_batch(b, err);
    if (rc) return rc;
    if (sd->selection_id <= 0 || sd->trace_id <= 0)
        return v3_errf(err, V3_EINVAL, "%s: a selected trace needs a selection id and a trace id",
                       b->s->path);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_SELECTED, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->u.selected.selection_id = sd->selection_id;
    r->u.selected.trace_id = sd->trace_id;
    r->u.selected.kept = sd->kept ? 1 : 0;
    r->u.selected.tokens = sd->tokens;
    if ((rc = v3_store__put_str(b, sd->rejected_by, &r->u.selected.rejected_by, err)) ||
        (rc = v3_store__put_str(b, sd->detail_json, &r->u.selected.detail, err))) {
        b->n--;
        b->len = len0;
    }
    return rc;
}

int v3_store_batch_add_checkpoint(v3_store_batch *b, const v3_store_checkpoint *c, v3_err *err) {
    int rc = check_batch(b, err);
    int64_t run = 0;
    if (rc || (rc = current_run(b, &run, "checkpoint", err))) return rc;
    if (!c->path || !c->path[0])
        return v3_errf(err, V3_EINVAL, "%s: checkpoint without a path", b->s->path);
    size_t len0 = b->len;
    v3_rec *r = v3_store__new_rec(b, V3_REC_CHECKPOINT, err);
    if (!r) return err ? err->code : V3_ENOMEM;
    r->run_id = run;
    r->u.ckpt.step = c->step;
    r->u.ckpt.bytes = c->bytes;
    if ((rc = v3_store__put_str(b, c->path, &r->u.ckpt.path, err)) ||
        (rc = v3_store__put_str(b, c->hash, &r->u.ckpt.hash, err))) {
        b->n--;
        b->len = len0;
    }
    return rc;
}
