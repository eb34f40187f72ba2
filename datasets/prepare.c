/* prepare.c — the `data prepare` pipeline: reader thread → worker threads → ordered writer. */
#include "prepare.h"

#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/progress.h"
#include "common/sha256.h"
#include "datasets/shard.h"

/* ---- samples ---- */

void v3_sample_free(v3_sample *s) {
    if (!s) return;
    free(s->ids);
    free(s->mask);
    memset(s, 0, sizeof *s);
}

static int sample_reserve(v3_sample *s, size_t n, v3_err *err) {
    if (n <= s->cap) return V3_OK;
    size_t cap = s->cap ? s->cap : 1024;
    while (cap < n) cap *= 2;
    uint32_t *ids = realloc(s->ids, cap * sizeof *ids);
    if (ids) s->ids = ids;
    uint8_t *m = realloc(s->mask, cap);
    if (m) s->mask = m;
    if (!ids || !m) return v3_errf(err, V3_ENOMEM, "out of memory for a %zu-token sample", n);
    s->cap = cap;
    return V3_OK;
}

int v3_sample_push(v3_sample *s, const int32_t *ids, size_t n, uint8_t m, v3_err *err) {
    int rc = sample_reserve(s, s->n + n, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0) return v3_errf(err, V3_ERANGE, "negative token id %d", ids[i]);
        s->ids[s->n + i] = (uint32_t)ids[i];
        s->mask[s->n + i] = m;
    }
    s->n += n;
    return V3_OK;
}

void v3_sample_mask_last(v3_sample *s) {
    size_t i = s->n;
    while (i > 0 && !s->mask[i - 1]) i--;
    while (i > 0 && s->mask[i - 1]) i--;
    memset(s->mask, 0, i); /* everything before the last run of ones */
}

static uint64_t mix64(uint64_t x) { /* splitmix64 finaliser */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int v3_split_of(uint64_t seed, uint64_t row, double eval_fraction) {
    if (eval_fraction <= 0) return 0;
    if (eval_fraction >= 1) return 1;
    double u = (double)(mix64(mix64(seed) ^ row) >> 11) * 0x1.0p-53;
    return u < eval_fraction;
}

void v3_prepare_opts_default(v3_prepare_opts *o) {
    memset(o, 0, sizeof *o);
    v3_ingest_opts_default(&o->ingest);
    o->overlong = V3_OVERLONG_TRUNCATE;
    o->jobs = 1;
    o->template_name = "v3";
    o->progress_tty = -1;
}

/* ---- batches ---- */

enum { SLOT_EMPTY, SLOT_FILLED, SLOT_BUSY, SLOT_DONE };
#define BATCH_ROWS 512
#define BATCH_BYTES ((size_t)4 << 20)

typedef struct item {
    size_t off, len;     /* record text in batch.text */
    int64_t line;
    int file;
    int too_long;
    /* results */
    int bad;             /* 1: reason holds why */
    int dropped_overlong, truncated;
    size_t tok_off, n_tok;
    char reason[400];
} item;

typedef struct batch {
    int state;
    uint64_t seq;
    uint64_t bytes_end;  /* input bytes read when the batch was complete (progress) */
    int n;
    item items[BATCH_ROWS];
    char *text;
    size_t text_len, text_cap;
    uint32_t *ids;       /* results of every item, back to back */
    uint8_t *mask;
    size_t n_tok, cap_tok;
} batch;

typedef struct pipeline {
    const v3_prepare_opts *o;
    const v3_encoder *enc;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch *slots;         /* [n_slots] */
    int n_slots;
    uint64_t next_work;   /* next batch seq a worker takes */
    uint64_t n_batches;   /* batches the reader has produced so far */
    int reader_done;
    int stop;             /* set on a fatal error or strict failure: everyone leaves */
    int reader_rc;
    v3_err reader_err;
    uint64_t bytes_in;    /* reader progress (under mu) */
    uint64_t *file_rows;  /* [n_inputs] rows per file (reader) */
} pipeline;

static int batch_add_text(batch *b, const char *t, size_t n) {
    if (b->text_len + n + 1 > b->text_cap) {
        size_t cap = b->text_cap ? b->text_cap : 1 << 16;
        while (cap < b->text_len + n + 1) cap *= 2;
        char *p = realloc(b->text, cap);
        if (!p) return -1;
        b->text = p;
        b->text_cap = cap;
    }
    memcpy(b->text + b->text_len, t, n);
    b->text[b->text_len + n] = 0;
    b->text_len += n + 1;
    return 0;
}

static int batch_add_tokens(batch *b, const v3_sample *s, size_t n) {
    if (b->n_tok + n > b->cap_tok) {
        size_t cap = b->cap_tok ? b->cap_tok : 1 << 16;
        while (cap < b->n_tok + n) cap *= 2;
        uint32_t *ids = realloc(b->ids, cap * sizeof *ids);
        if (ids) b->ids = ids;
        uint8_t *m = realloc(b->mask, cap);
        if (m) b->mask = m;
        if (!ids || !m) return -1;
        b->cap_tok = cap;
    }
    memcpy(b->ids + b->n_tok, s->ids, n * sizeof *s->ids);
    memcpy(b->mask + b->n_tok, s->mask, n);
    b->n_tok += n;
    return 0;
}

/* ---- reader thread ---- */

/* Waits for the slot of batch `seq` to be free; returns it, or NULL when the run stops. */
static batch *claim_slot(pipeline *p, uint64_t seq) {
    pthread_mutex_lock(&p->mu);
    batch *b = &p->slots[seq % (uint64_t)p->n_slots];
    while (!p->stop && b->state != SLOT_EMPTY) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    if (p->stop) return NULL;
    b->seq = seq;
    b->n = 0;
    b->text_len = 0;
    b->n_tok = 0;
    return b;
}

static void publish(pipeline *p, batch *b, uint64_t bytes) {
    pthread_mutex_lock(&p->mu);
    b->state = SLOT_FILLED;
    b->bytes_end = bytes;
    p->n_batches = b->seq + 1;
    p->bytes_in = bytes;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void *reader_main(void *arg) {
    pipeline *p = arg;
    const v3_prepare_opts *o = p->o;
    uint64_t seq = 0, bytes_done = 0;
    batch *b = NULL;
    int rc = V3_OK;
    v3_err err = {0};
    for (int f = 0; f < o->n_inputs && !rc; f++) {
        v3_jsonl *r;
        if ((rc = v3_jsonl_open(&r, o->inputs[f], o->layout, o->max_record, &err))) break;
        for (;;) {
            v3_record rec;
            int got;
            if ((rc = v3_jsonl_next(r, &rec, &got, &err)) || !got) break;
            if (!b && !(b = claim_slot(p, seq))) break;
            item *it = &b->items[b->n];
            memset(it, 0, offsetof(item, reason));
            it->reason[0] = 0;
            it->off = b->text_len;
            it->len = rec.len;
            it->line = rec.line;
            it->file = f;
            it->too_long = rec.too_long;
            if (batch_add_text(b, rec.text, rec.len)) {
                rc = v3_errf(&err, V3_ENOMEM, "%s:%lld: out of memory", o->inputs[f], (long long)rec.line);
                break;
            }
            b->n++;
            p->file_rows[f]++;
            if (b->n == BATCH_ROWS || b->text_len >= BATCH_BYTES) {
                publish(p, b, bytes_done + v3_jsonl_bytes_in(r));
                b = NULL;
                seq++;
            }
        }
        bytes_done += v3_jsonl_bytes_in(r);
        v3_jsonl_close(r);
        if (p->stop) break;
    }
    if (b && !rc && b->n > 0) {
        publish(p, b, bytes_done);
        seq++;
    } else if (b) {
        pthread_mutex_lock(&p->mu);
        b->state = SLOT_EMPTY; /* claimed but never published */
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    p->reader_done = 1;
    p->bytes_in = bytes_done;
    if (rc) {
        p->reader_rc = rc;
        p->reader_err = err;
        p->stop = 1;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- workers ---- */

typedef struct worker {
    pipeline *p;
    v3_conv conv;
    v3_sample s;
    pthread_t th;
    int rc;
    v3_err err;
} worker;

static void set_reason(item *it, const char *msg) { snprintf(it->reason, sizeof it->reason, "%.399s", msg); }

/* One record → tokens or a reason. Returns nonzero only for failures that must stop the run
 * (out of memory). */
static int process_item(worker *w, batch *b, item *it) {
    const v3_prepare_opts *o = w->p->o;
    v3_err e = {0};
    if (it->too_long) {
        snprintf(it->reason, sizeof it->reason, "record longer than %zu bytes (raise --max-record)",
                 o->max_record ? o->max_record : (size_t)64 << 20);
        it->bad = 1;
        return 0;
    }
    int rc = v3_ingest_row(&o->ingest, b->text + it->off, it->len, &w->conv, &e);
    if (rc == V3_ENOMEM) return rc;
    if (rc) {
        set_reason(it, e.msg);
        it->bad = 1;
        return 0;
    }
    w->s.n = 0;
    rc = w->p->enc->encode(w->p->enc->ctx, &w->conv, &w->s, &e);
    if (rc == V3_ENOMEM) return rc;
    if (rc) {
        snprintf(it->reason, sizeof it->reason, "cannot encode: %.380s", e.msg);
        it->bad = 1;
        return 0;
    }
    if (o->mask_last && !w->p->enc->masks_last) v3_sample_mask_last(&w->s);
    size_t n = w->s.n;
    if (o->max_len > 0 && n > (size_t)o->max_len) {
        if (o->overlong == V3_OVERLONG_DROP) {
            snprintf(it->reason, sizeof it->reason, "sample has %zu tokens > --max-len %lld (dropped)", n,
                     (long long)o->max_len);
            it->bad = 1;
            it->dropped_overlong = 1;
            return 0;
        }
        n = (size_t)o->max_len;
        it->truncated = 1;
    }
    size_t loss = 0;
    for (size_t i = 0; i < n; i++) loss += w->s.mask[i];
    if (n == 0 || loss == 0) {
        if (it->truncated)
            snprintf(it->reason, sizeof it->reason, "sample has %zu tokens > --max-len %lld and no loss token survives truncation",
                     w->s.n, (long long)o->max_len);
        else
            snprintf(it->reason, sizeof it->reason, "no loss tokens (nothing to train on)");
        it->bad = 1;
        it->dropped_overlong = it->truncated;
        it->truncated = 0;
        return 0;
    }
    it->tok_off = b->n_tok;
    it->n_tok = n;
    if (batch_add_tokens(b, &w->s, n)) return V3_ENOMEM;
    return 0;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    pipeline *p = w->p;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        batch *b = NULL;
        for (;;) {
            if (p->stop) break;
            if (p->next_work < p->n_batches) {
                b = &p->slots[p->next_work % (uint64_t)p->n_slots];
                if (b->state == SLOT_FILLED && b->seq == p->next_work) {
                    b->state = SLOT_BUSY;
                    p->next_work++;
                    break;
                }
                b = NULL;
            } else if (p->reader_done) {
                break;
            }
            pthread_cond_wait(&p->cv, &p->mu);
        }
        pthread_mutex_unlock(&p->mu);
        if (!b) return NULL;
        int rc = 0;
        for (int i = 0; i < b->n && !rc; i++) rc = process_item(w, b, &b->items[i]);
        pthread_mutex_lock(&p->mu);
        if (rc) {
            w->rc = rc;
            v3_errf(&w->err, rc, "out of memory while encoding");
            p->stop = 1;
        }
        b->state = SLOT_DONE;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ---- output ---- */

typedef struct shard_rec {
    char file[64];
    int split;
    uint64_t docs, tokens, loss, bytes;
    char sha[65];
} shard_rec;

typedef struct out_state {
    const v3_prepare_opts *o;
    v3_shard_writer w[2];   /* train, eval */
    int next_index[2];
    shard_rec *shards;
    int n_shards, cap_shards;
} out_state;

static const char *const split_names[2] = {"train", "eval"};

static int path_join(char *buf, size_t n, const char *dir, const char *name, const char *suffix, v3_err *err) {
    if ((size_t)snprintf(buf, n, "%s/%s%s", dir, name, suffix) >= n)
        return v3_errf(err, V3_EINVAL, "%s: path too long", dir);
    return V3_OK;
}

static void shard_name(const out_state *s, int split, char *buf, size_t n) {
    snprintf(buf, n, "%s-%05d.bin", split_names[split], s->next_index[split]);
}

/* Adds a document to the split's open shard, starting the shard (as NAME.bin.tmp) if needed. */
static int add_doc(out_state *s, int split, const uint32_t *ids, const uint8_t *mask, size_t n, v3_err *err) {
    v3_shard_writer *w = &s->w[split];
    if (!v3_shard_writer_is_open(w)) {
        char name[64], path[4096];
        shard_name(s, split, name, sizeof name);
        int rc = path_join(path, sizeof path, s->o->out_dir, name, ".tmp", err);
        if (rc || (rc = v3_shard_writer_begin(w, path, err))) return rc;
    }
    return v3_shard_writer_add(w, ids, mask, n, err);
}

static int flush_shard(out_state *s, int split, v3_err *err) {
    v3_shard_writer *w = &s->w[split];
    if (!v3_shard_writer_is_open(w)) return V3_OK;
    if (s->n_shards == s->cap_shards) {
        int cap = s->cap_shards ? 2 * s->cap_shards : 16;
        shard_rec *r = realloc(s->shards, (size_t)cap * sizeof *r);
        if (!r) return v3_errf(err, V3_ENOMEM, "out of memory");
        s->shards = r;
        s->cap_shards = cap;
    }
    shard_rec *r = &s->shards[s->n_shards];
    shard_name(s, split, r->file, sizeof r->file);
    r->split = split;
    r->docs = w->n_docs;
    r->tokens = w->n_tokens;
    r->loss = w->n_loss;
    r->bytes = v3_shard_writer_bytes(w);
    uint8_t d[32];
    int rc = v3_shard_writer_finish(w, d, err);
    if (rc) return rc;
    v3_sha256_hex(d, r->sha);
    s->next_index[split]++;
    s->n_shards++;
    return V3_OK;
}

static void remove_tmps(out_state *s) {
    char path[4096];
    for (int i = 0; i < s->n_shards; i++)
        if (!path_join(path, sizeof path, s->o->out_dir, s->shards[i].file, ".tmp", NULL)) unlink(path);
}

/* With --force: the old manifest goes first (so a crash leaves no manifest pointing at a mix of
 * old and new shards), then the old shard files. */
static int clear_out_dir(const v3_prepare_opts *o, v3_err *err) {
    char path[4096];
    int rc = path_join(path, sizeof path, o->out_dir, "manifest.json", "", err);
    if (rc) return rc;
    if (v3_file_exists(path)) {
        if (!o->force)
            return v3_errf(err, V3_EINVAL, "%s already holds a prepared dataset (manifest.json); use --force to replace it",
                           o->out_dir);
        if (unlink(path) != 0) return v3_errf(err, V3_EIO, "%s: cannot remove: %s", path, strerror(errno));
    }
    DIR *d = opendir(o->out_dir);
    if (!d) return v3_errf(err, V3_EIO, "%s: cannot open directory: %s", o->out_dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        int ours = (strncmp(n, "train-", 6) == 0 || strncmp(n, "eval-", 5) == 0) &&
                   ((len > 4 && strcmp(n + len - 4, ".bin") == 0) || (len > 8 && strcmp(n + len - 8, ".bin.tmp") == 0));
        if (!ours) continue;
        if (!o->force) {
            closedir(d);
            return v3_errf(err, V3_EINVAL, "%s holds shard files (%s) without a manifest; use --force to replace them",
                           o->out_dir, n);
        }
        if (!path_join(path, sizeof path, o->out_dir, n, "", NULL)) unlink(path);
    }
    closedir(d);
    return V3_OK;
}

static int write_manifest(const v3_prepare_opts *o, const v3_encoder *enc, const out_state *s,
                          const v3_prepare_stats *st, const uint64_t *file_rows, const uint64_t *file_bad,
                          v3_err *err) {
    json_t *m = json_object();
    json_object_set_new(m, "format", json_string("v3tune-token-shards"));
    json_object_set_new(m, "version", json_integer(1));
    json_t *tok = json_object();
    json_object_set_new(tok, "name", json_string(enc->name));
    json_object_set_new(tok, "sha256", json_string(enc->hash));
    json_object_set_new(tok, "vocab_size", json_integer(enc->vocab_size));
    json_object_set_new(m, "tokenizer", tok);
    json_t *opt = json_object();
    json_object_set_new(opt, "input_format", json_string(v3_format_name(o->ingest.format)));
    json_object_set_new(opt, "template", json_string(o->template_name ? o->template_name : ""));
    json_object_set_new(opt, "mask", json_string(o->mask_last ? "last" : "all"));
    json_object_set_new(opt, "max_len", json_integer(o->max_len));
    json_object_set_new(opt, "overlong", json_string(o->overlong == V3_OVERLONG_DROP ? "drop" : "truncate"));
    json_object_set_new(opt, "eval_fraction", json_real(o->eval_fraction));
    json_object_set_new(opt, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(opt, "split_think", json_boolean(o->ingest.split_think));
    json_object_set_new(m, "options", opt);
    json_t *src = json_array();
    for (int i = 0; i < o->n_inputs; i++) {
        json_t *f = json_object();
        json_object_set_new(f, "path", json_string(o->inputs[i]));
        json_object_set_new(f, "bytes", json_integer(v3_file_size(o->inputs[i])));
        json_object_set_new(f, "rows", json_integer((json_int_t)file_rows[i]));
        json_object_set_new(f, "bad_rows", json_integer((json_int_t)file_bad[i]));
        json_array_append_new(src, f);
    }
    json_object_set_new(m, "sources", src);
    json_t *sh = json_array();
    for (int i = 0; i < s->n_shards; i++) {
        const shard_rec *r = &s->shards[i];
        json_t *f = json_object();
        json_object_set_new(f, "file", json_string(r->file));
        json_object_set_new(f, "split", json_string(split_names[r->split]));
        json_object_set_new(f, "docs", json_integer((json_int_t)r->docs));
        json_object_set_new(f, "tokens", json_integer((json_int_t)r->tokens));
        json_object_set_new(f, "loss_tokens", json_integer((json_int_t)r->loss));
        json_object_set_new(f, "bytes", json_integer((json_int_t)r->bytes));
        json_object_set_new(f, "sha256", json_string(r->sha));
        json_array_append_new(sh, f);
    }
    json_object_set_new(m, "shards", sh);
    json_t *t = json_object();
    json_object_set_new(t, "rows", json_integer((json_int_t)st->rows));
    json_object_set_new(t, "docs", json_integer((json_int_t)st->docs));
    json_object_set_new(t, "docs_train", json_integer((json_int_t)st->docs_train));
    json_object_set_new(t, "docs_eval", json_integer((json_int_t)st->docs_eval));
    json_object_set_new(t, "tokens", json_integer((json_int_t)st->tokens));
    json_object_set_new(t, "loss_tokens", json_integer((json_int_t)st->loss_tokens));
    json_object_set_new(t, "bad_rows", json_integer((json_int_t)st->bad_rows));
    json_object_set_new(t, "dropped_overlong", json_integer((json_int_t)st->dropped_overlong));
    json_object_set_new(t, "truncated", json_integer((json_int_t)st->truncated));
    json_object_set_new(m, "totals", t);
    json_t *errs = json_array();
    for (int i = 0; i < st->n_errors; i++) json_array_append_new(errs, json_string(st->errors[i]));
    json_object_set_new(m, "first_errors", errs);

    char path[4096], tmp[4096];
    int rc = path_join(path, sizeof path, o->out_dir, "manifest.json", "", err);
    if (!rc) rc = path_join(tmp, sizeof tmp, o->out_dir, "manifest.json", ".tmp", err);
    if (!rc && json_dump_file(m, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        rc = v3_errf(err, V3_EIO, "%s: cannot write", tmp);
    json_decref(m);
    if (!rc && rename(tmp, path) != 0) rc = v3_errf(err, V3_EIO, "%s: rename failed: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

/* ---- the run ---- */

int v3_prepare_run(const v3_prepare_opts *o, const v3_encoder *enc, v3_prepare_stats *st, v3_err *err) {
    memset(st, 0, sizeof *st);
    if (o->n_inputs <= 0) return v3_errf(err, V3_EINVAL, "no input files");
    if (o->jobs < 1 || o->jobs > 1024) return v3_errf(err, V3_EINVAL, "jobs must be in [1, 1024], not %d", o->jobs);
    if (!(o->eval_fraction >= 0 && o->eval_fraction <= 1))
        return v3_errf(err, V3_EINVAL, "eval fraction must be in [0, 1], not %g", o->eval_fraction);
    for (int i = 0; i < o->n_inputs; i++)
        if (!v3_file_exists(o->inputs[i])) return v3_errf(err, V3_ENOTFOUND, "%s: no such file", o->inputs[i]);
    int rc = v3_mkdirs(o->out_dir, err);
    if (rc || (rc = clear_out_dir(o, err))) return rc;
    uint64_t shard_bytes = o->shard_bytes ? o->shard_bytes : (uint64_t)256 << 20;

    double t0 = v3_now();
    uint64_t total_bytes = 0;
    for (int i = 0; i < o->n_inputs; i++) total_bytes += (uint64_t)v3_file_size(o->inputs[i]);

    pipeline p;
    memset(&p, 0, sizeof p);
    p.o = o;
    p.enc = enc;
    p.n_slots = 2 * o->jobs + 2;
    p.slots = calloc((size_t)p.n_slots, sizeof *p.slots);
    p.file_rows = calloc((size_t)o->n_inputs, sizeof *p.file_rows);
    uint64_t *file_bad = calloc((size_t)o->n_inputs, sizeof *file_bad);
    worker *ws = calloc((size_t)o->jobs, sizeof *ws);
    out_state out;
    memset(&out, 0, sizeof out);
    out.w[0].fd = out.w[1].fd = -1; /* no shard open (free must not close fd 0) */
    out.o = o;
    if (!p.slots || !p.file_rows || !file_bad || !ws) {
        free(p.slots);
        free(p.file_rows);
        free(file_bad);
        free(ws);
        return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    if ((rc = v3_shard_writer_init(&out.w[0], enc->vocab_size, err)) ||
        (rc = v3_shard_writer_init(&out.w[1], enc->vocab_size, err)))
        goto cleanup_early;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);

    v3_progress prog;
    v3_progress_init(&prog, o->log, o->progress_tty, "rows", total_bytes);
    pthread_t reader;
    int n_started = 0, reader_started = 0;
    if (pthread_create(&reader, NULL, reader_main, &p) != 0) {
        rc = v3_errf(err, V3_EIO, "cannot start the reader thread");
        goto join;
    }
    reader_started = 1;
    for (; n_started < o->jobs; n_started++) {
        ws[n_started].p = &p;
        v3_conv_init(&ws[n_started].conv);
        if (pthread_create(&ws[n_started].th, NULL, worker_main, &ws[n_started]) != 0) {
            rc = v3_errf(err, V3_EIO, "cannot start worker thread %d", n_started);
            goto join;
        }
    }

    /* The writer: batches in sequence order, whatever order the workers finish them in. */
    for (uint64_t seq = 0;; seq++) {
        pthread_mutex_lock(&p.mu);
        batch *b = &p.slots[seq % (uint64_t)p.n_slots];
        while (!p.stop && !(b->state == SLOT_DONE && b->seq == seq) && !(p.reader_done && seq >= p.n_batches))
            pthread_cond_wait(&p.cv, &p.mu);
        int finished = p.stop || (p.reader_done && seq >= p.n_batches && !(b->state == SLOT_DONE && b->seq == seq));
        uint64_t bytes = b->bytes_end; /* what the writer has finished, not what was read ahead */
        pthread_mutex_unlock(&p.mu);
        if (finished) break;
        for (int i = 0; i < b->n && !rc; i++) {
            item *it = &b->items[i];
            uint64_t row = st->rows++;
            if (it->bad) {
                st->bad_rows++;
                st->dropped_overlong += (uint64_t)it->dropped_overlong;
                file_bad[it->file]++;
                char msg[512];
                snprintf(msg, sizeof msg, "%s:%lld: %s", o->inputs[it->file], (long long)it->line, it->reason);
                if (st->n_errors < V3_PREPARE_MAX_ERRORS) memcpy(st->errors[st->n_errors++], msg, sizeof msg);
                if (o->strict) rc = v3_errf(err, V3_EFORMAT, "%s", msg);
                continue;
            }
            int split = v3_split_of(o->seed, row, o->eval_fraction);
            rc = add_doc(&out, split, b->ids + it->tok_off, b->mask + it->tok_off, it->n_tok, err);
            if (rc) {
                v3_err_prefix(err, "%s:%lld", o->inputs[it->file], (long long)it->line);
                break;
            }
            st->docs++;
            if (split) st->docs_eval++;
            else st->docs_train++;
            st->tokens += it->n_tok;
            for (size_t k = 0; k < it->n_tok; k++) st->loss_tokens += b->mask[it->tok_off + k];
            st->truncated += (uint64_t)it->truncated;
            if (v3_shard_writer_bytes(&out.w[split]) >= shard_bytes) rc = flush_shard(&out, split, err);
        }
        pthread_mutex_lock(&p.mu);
        b->state = SLOT_EMPTY;
        if (rc) p.stop = 1;
        pthread_cond_broadcast(&p.cv);
        pthread_mutex_unlock(&p.mu);
        if (rc) break;
        v3_progress_update(&prog, st->rows, bytes);
    }

join:
    pthread_mutex_lock(&p.mu);
    if (rc) p.stop = 1;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    if (reader_started) pthread_join(reader, NULL);
    for (int i = 0; i < n_started; i++) pthread_join(ws[i].th, NULL);
    if (!rc && p.reader_rc) {
        rc = p.reader_rc;
        *err = p.reader_err;
    }
    for (int i = 0; i < n_started && !rc; i++)
        if (ws[i].rc) {
            rc = ws[i].rc;
            *err = ws[i].err;
        }
    st->bytes_in = p.bytes_in;
    if (!rc) rc = flush_shard(&out, 0, err);
    if (!rc) rc = flush_shard(&out, 1, err);
    if (!rc) { /* all shards complete: give them their real names, then the manifest */
        char a[4096], b2[4096];
        for (int i = 0; i < out.n_shards && !rc; i++) {
            if ((rc = path_join(a, sizeof a, o->out_dir, out.shards[i].file, ".tmp", err)) ||
                (rc = path_join(b2, sizeof b2, o->out_dir, out.shards[i].file, "", err)))
                break;
            if (rename(a, b2) != 0) rc = v3_errf(err, V3_EIO, "%s: rename failed: %s", b2, strerror(errno));
        }
        st->n_shards = out.n_shards;
        st->seconds = v3_now() - t0;
        if (!rc) rc = write_manifest(o, enc, &out, st, p.file_rows, file_bad, err);
    }
    if (rc) remove_tmps(&out);
    if (o->log) v3_progress_done(&prog, st->rows, st->bytes_in);
    for (int i = 0; i < n_started; i++) {
        v3_conv_free(&ws[i].conv);
        v3_sample_free(&ws[i].s);
    }
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
cleanup_early:
    for (int i = 0; i < p.n_slots; i++) {
        free(p.slots[i].text);
        free(p.slots[i].ids);
        free(p.slots[i].mask);
    }
    v3_shard_writer_free(&out.w[0]);
    v3_shard_writer_free(&out.w[1]);
    free(out.shards);
    free(p.slots);
    free(p.file_rows);
    free(file_bad);
    free(ws);
    st->seconds = v3_now() - t0;
    return rc;
}
