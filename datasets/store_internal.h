/* store_internal.h — the run store's private structures, shared by store*.c (and white-box tests).
 * Layering: store_schema.c (file checks, DDL, migrations) < store_batch.c (records copied into
 * batches) < store_writer.c (queue + writer thread) < store.c (open/close, runs) ; store_query.c
 * reads. Nothing here is part of the public API. */
#ifndef V3_STORE_INTERNAL_H
#define V3_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "datasets/store.h"

#define V3_STORE_MAGIC 0x76335354u       /* "v3ST": a live v3_store */
#define V3_STORE_BATCH_MAGIC 0x76334254u /* "v3BT": a live batch */
#define V3_STORE_DEAD 0xDEADDEADu        /* written on free so a stale handle is caught */

/* A string or blob copied into the batch's byte buffer; off is an offset (the buffer may move). */
typedef struct v3_span {
    size_t off;
    int64_t len; /* bytes; -1 = NULL */
} v3_span;

enum v3_rec_type {
    V3_REC_RUN_BEGIN,
    V3_REC_RUN_END,
    V3_REC_STEP,
    V3_REC_METRIC,
    V3_REC_EVAL,
    V3_REC_EXPERT_LOAD,
    V3_REC_PROMPT,
    V3_REC_SAMPLE,
    V3_REC_SAMPLE_UPDATE,
    V3_REC_REWARD,
    V3_REC_TRACE,
    V3_REC_VERDICT,
    V3_REC_CHECKPOINT,
    V3_REC_TRACE_UPDATE,
    V3_REC_SELECTION,
    V3_REC_SELECTED,
};

/* One row to write (EXPERT_LOAD: one row per expert). Doubles use NAN for SQL NULL. */
typedef struct v3_rec {
    int type;
    int64_t run_id;
    double time; /* unix seconds when the caller queued it */
    union {
        struct { int64_t id, resumed_from, pid; v3_span command, config, git_rev, host; } run;
        struct { int64_t id; v3_span status, message; } run_end;
        struct { int64_t step, tokens; double loss, lr, grad_norm, step_time_s; } step;
        struct { int64_t step; double value; v3_span name; } metric;
        struct { int64_t step, n_examples; double value; v3_span name, extra; } eval;
        struct { int64_t step; int32_t layer, n_expert; v3_span counts; /* int64 [n_expert] */ } load;
        struct { int64_t id, key, line; v3_span text, messages, fields, file; } prompt;
        struct {
            int64_t id, step, prompt_id, group_id, policy_version, seed;
            int32_t group_index, n_tokens, prompt_tokens;
            double reward, advantage;
            v3_span completion, ids, logprobs, trainer_logprobs, ref_logprobs, finish;
        } sample;
        struct { int64_t id; double reward, advantage; v3_span trainer_logprobs, ref_logprobs; } upd;
        struct {
            int64_t sample_id;
            double score, weight, elapsed_ms;
            v3_span name, error, extra, hash;
        } reward;
        struct {
            int64_t id, prompt_id, key;
            int accepted, truncated;
            v3_span reasoning, answer, model, prov, filters;
        } trace;
        struct {
            int64_t trace_id;
            int passed;
            double score, weight, elapsed_ms;
            v3_span verifier, detail, error, extra, hash;
        } verdict;
        struct { int64_t id; int accepted; v3_span filters; } trace_upd;
        struct { int64_t id, n_traces, n_kept; v3_span name, config, report; } selection;
        struct { int64_t selection_id, trace_id, tokens; int kept; v3_span rejected_by, detail; } selected;
        struct { int64_t step, bytes; v3_span path, hash; } ckpt;
    } u;
} v3_rec;

struct v3_store_batch {
    uint32_t magic;
    v3_store *s;
    v3_rec *recs;
    int n, cap;
    uint8_t *data; /* copied strings and blobs */
    size_t len, data_cap;
    int durable;   /* a flush(durable) marker: commit with synchronous=FULL */
    uint64_t seq;
    struct v3_store_batch *next;
};

/* Prepared statements the writer thread keeps for the life of the store. */
enum v3_stmt_id {
    V3_ST_BEGIN, V3_ST_COMMIT, V3_ST_ROLLBACK, V3_ST_RUN, V3_ST_RUN_END, V3_ST_HEARTBEAT, V3_ST_NSAMP,
    V3_ST_STEP, V3_ST_METRIC, V3_ST_EVAL, V3_ST_LOAD, V3_ST_PROMPT, V3_ST_SAMPLE,
    V3_ST_SAMPLE_UPDATE, V3_ST_REWARD, V3_ST_TRACE, V3_ST_VERDICT, V3_ST_CKPT,
    V3_ST_TRACE_UPDATE, V3_ST_SELECTION, V3_ST_SELECTED,
    V3_ST_COUNT
};

struct v3_store {
    uint32_t magic;
    int flags;
    char *path;
    sqlite3 *db; /* write mode: used only by the writer thread once it runs */
    int lock_fd; /* write mode: flock(LOCK_EX) on PATH-lock for the life of the store */
    int writer_alive; /* read mode: a writer held PATH-lock when this store was opened */
    v3_store_opts opts;
    int have_thread;
    int opened; /* open succeeded: close may then write planner statistics */
    pthread_t thread;

    /* everything below is guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* queue gained a batch, or stop */
    pthread_cond_t cv_done; /* a transaction committed, the writer failed, or queue space freed */
    int64_t run_id;         /* current run (0 = none begun) */
    int64_t next_run_id, next_prompt_id, next_sample_id, next_trace_id, next_selection_id;
    uint64_t *pkeys; /* prompt dedupe map: open addressing, key 0 = empty slot */
    int64_t *pids;
    size_t pcap, pn;
    v3_store_batch *head, *tail;
    v3_store_batch *pool; /* committed batches kept for reuse: their buffers are already mapped */
    int n_pool;
    int64_t queued_bytes;
    uint64_t next_seq, committed_seq;
    int stop;
    v3_err werr; /* first writer or checkpointer failure (code 0 = none); sticky */
    pthread_cond_t cv_ck;        /* a checkpoint round was asked for or finished, or ck_stop */
    uint64_t ck_wanted, ck_done; /* checkpoint rounds asked for / the last one finished */
    int ck_stop;

    /* writer-thread only */
    sqlite3_stmt *st[V3_ST_COUNT];
    double last_heartbeat;
    int wal_frames; /* frames in the WAL after the last commit (its WAL hook) */
    int64_t page_bytes; /* the file's page size */

    /* the checkpointer (store_ckpt.c): its own connection and thread */
    sqlite3 *ck_db;
    pthread_t ck_thread;
    int have_ck_thread;
};

/* ---- store_schema.c ---- */
extern const char *const v3_store_migrations[]; /* [V3_STORE_SCHEMA_VERSION]: i upgrades i -> i+1 */

/* Before opening: *exists = a non-empty file is there; refuses what is not a regular file. */
int v3_store__stat_file(const char *path, int *exists, v3_err *err);
/* store_batch.c: a new zeroed record of `type` appended to b; a string copied into b's data
 * (NULL becomes a NULL span). Used by store.c for the run records too. */
v3_rec *v3_store__new_rec(v3_store_batch *b, int type, v3_err *err);
int v3_store__put_str(v3_store_batch *b, const char *str, v3_span *sp, v3_err *err);
/* Right after sqlite3_open_v2, before any statement: refuses a file that is not SQLite or is
 * truncated. Reads through SQLite's own descriptor. */
int v3_store__check_header(sqlite3 *db, const char *path, v3_err *err);
/* Before anything is written (even the switch to WAL): refuses a newer file or an SQLite file
 * that is not a run store. A new empty database passes. */
int v3_store__identify(sqlite3 *db, const char *path, v3_err *err);
/* Applies migrations [user_version, n_migrations) in one transaction; refuses a newer file or an
 * SQLite file that is not a run store. */
int v3_store__migrate(sqlite3 *db, const char *path, const char *const *migrations, int n_migrations,
                      v3_err *err);
/* Read side: the file must be a run store of exactly this schema version. */
int v3_store__check_version(sqlite3 *db, const char *path, v3_err *err);
/* Reads one integer pragma (user_version, application_id, page_size). */
int v3_store__pragma_int(sqlite3 *db, const char *path, const char *pragma, int64_t *out,
                         v3_err *err);
/* sqlite3_exec with SQLITE_BUSY retried; message names the path. */
int v3_store__exec(sqlite3 *db, const char *path, const char *sql, v3_err *err);
/* sqlite3_step with SQLITE_BUSY/LOCKED retried (statement reset between tries). */
int v3_store__step(sqlite3_stmt *st);
/* "PATH: what: sqlite message (code)" as a V3_EIO / V3_EFORMAT error. */
int v3_store__sqlerr(v3_err *err, sqlite3 *db, const char *path, const char *what);
double v3_store__now(void);

/* ---- store_batch.c ---- */
int64_t v3_store__batch_bytes(const v3_store_batch *b);
/* Records a committed prompt (key -> id) when a writer opens an existing store. */
int v3_store__prompt_map_put(v3_store *s, uint64_t key, int64_t id);
void v3_store__batch_destroy(v3_store_batch *b);
/* Returns a committed batch to the store's pool (or frees it when the pool is full). */
void v3_store__batch_recycle(v3_store *s, v3_store_batch *b);
static inline const uint8_t *v3_span_ptr(const v3_store_batch *b, v3_span sp) {
    return sp.len < 0 ? NULL : b->data + sp.off;
}

/* ---- store_query.c: helpers of every read-side query (store_query.c, store_traces.c) ---- */
/* V3_OK for an open read-only store (queries never run on the writer's connection). */
int v3_store__check_reader(const v3_store *s, v3_err *err);
double v3_store__col_real(sqlite3_stmt *st, int i);      /* NULL -> NAN */
const char *v3_store__col_text(sqlite3_stmt *st, int i);
char *v3_store__dup_col(sqlite3_stmt *st, int i);        /* malloc'd copy, NULL for NULL */
int v3_store__prepare(v3_store *s, const char *sql, sqlite3_stmt **st, v3_err *err);

/* FROM clause of every sample query; --where text may name s.* and p.* */
#define V3_STORE_SAMPLE_FROM " FROM samples s LEFT JOIN prompts p ON p.id = s.prompt_id WHERE 1"

/* ---- store_topk.c ---- */
#define V3_STORE_TOPK_MAX 100000 /* larger limits are left to SQLite's sort */
/* The ids of q's reward order (best or worst; q->limit in 1..V3_STORE_TOPK_MAX) over q's run, or
 * every run, in that order, meeting q's reward bounds and q->where (already checked by the
 * caller): *ids (malloc'd, caller frees), *n <= q->limit. Runs inside the caller's read
 * transaction. */
int v3_store__topk_ids(v3_store *s, const v3_store_sample_query *q, int64_t **ids, int64_t *n,
                       v3_err *err);

/* ---- store_writer.c ---- */
int v3_store__writer_start(v3_store *s, v3_err *err);
/* Asks the writer to drain the queue and stop; joins it; finalizes statements. */
void v3_store__writer_stop(v3_store *s);
int v3_store__enqueue(v3_store *s, v3_store_batch *b, uint64_t *seq, v3_err *err);
int v3_store__wait(v3_store *s, uint64_t seq, v3_err *err);

/* ---- store_ckpt.c ---- */
/* Opens the checkpointer's connection, takes over the writer connection's WAL hook (no automatic
 * checkpoints), starts the thread. Before the writer thread starts. */
int v3_store__ckpt_start(v3_store *s, v3_err *err);
/* After the writer thread stopped: stops the thread, closes its connection. Idempotent. */
void v3_store__ckpt_stop(v3_store *s);
/* Writer thread, after each commit: asks for a checkpoint once the WAL is large, and waits for
 * one when it is very large (so the WAL restarts). */
void v3_store__ckpt_after_commit(v3_store *s);
/* Writer thread: waits for a checkpoint round that began after this call (it fsyncs the WAL). */
void v3_store__ckpt_sync(v3_store *s);

#endif
