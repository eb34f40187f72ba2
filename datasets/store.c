/* store.c — opening and closing a run store, the run lifecycle, submit/flush and the one-record
 * conveniences. A writing store holds flock(LOCK_EX) on the side file run.db-lock for its whole
 * life: the kernel drops it when the process dies (even by SIGKILL), which is how a later writer or
 * reader knows that a run still marked "running" is in fact dead. Nothing here opens a second
 * descriptor of run.db itself (closing it would drop SQLite's POSIX locks for the whole process). Readers open with a `mode=ro` URI, so a reader can
 * never create, migrate or change a file. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/store_internal.h"

static int check_store(const v3_store *s, v3_err *err) {
    if (!s || s->magic != V3_STORE_MAGIC)
        return v3_errf(err, V3_EINVAL, "run store: not an open store handle (closed or corrupt?)");
    return V3_OK;
}

static int check_writer(const v3_store *s, v3_err *err) {
    int rc = check_store(s, err);
    if (rc) return rc;
    if (!(s->flags & V3_STORE_WRITE))
        return v3_errf(err, V3_EINVAL, "%s: opened read-only; cannot write", s->path);
    return V3_OK;
}

/* "file:" URI with every byte outside the unreserved set percent-encoded, so paths holding '?',
 * '#' or '%' open the right file. */
static char *ro_uri(const char *path) {
    size_t n = strlen(path);
    char *u = malloc(3 * n + 32);
    if (!u) return NULL;
    char *o = u + sprintf(u, "file:");
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("/-_.~", *c))
            *o++ = (char)*c;
        else
            o += sprintf(o, "%%%02X", *c);
    }
    strcpy(o, "?mode=ro");
    return u;
}

static int query_i64(v3_store *s, const char *sql, int64_t *out, v3_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = V3_OK;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK || v3_store__step(st) != SQLITE_ROW) {
        rc = v3_store__sqlerr(err, s->db, s->path, sql);
        goto done;
    }
    *out = sqlite3_column_int64(st, 0);
done:
    sqlite3_finalize(st);
    return rc;
}

/* Next ids and the prompt dedupe map, from what is committed. */
static int load_counters(v3_store *s, v3_err *err) {
    int rc;
    sqlite3_stmt *st = NULL;
    if ((rc = query_i64(s, "SELECT coalesce(max(id), 0) + 1 FROM runs", &s->next_run_id, err)) ||
        (rc = query_i64(s, "SELECT coalesce(max(id), 0) + 1 FROM prompts", &s->next_prompt_id, err)) ||
        (rc = query_i64(s, "SELECT coalesce(max(id), 0) + 1 FROM samples", &s->next_sample_id, err)) ||
        (rc = query_i64(s, "SELECT coalesce(max(id), 0) + 1 FROM traces", &s->next_trace_id, err)) ||
        (rc = query_i64(s, "SELECT coalesce(max(id), 0) + 1 FROM selections", &s->next_selection_id,
                        err)))
        return rc;
    if (sqlite3_prepare_v2(s->db, "SELECT key, id FROM prompts", -1, &st, NULL) != SQLITE_OK) {
        rc = v3_store__sqlerr(err, s->db, s->path, "loading prompt keys");
        goto done;
    }
    int k;
    while ((k = v3_store__step(st)) == SQLITE_ROW) {
        if (v3_store__prompt_map_put(s, (uint64_t)sqlite3_column_int64(st, 0),
                                     sqlite3_column_int64(st, 1))) {
            rc = v3_errf(err, V3_ENOMEM, "%s: out of memory loading prompt keys", s->path);
            goto done;
        }
    }
    if (k != SQLITE_DONE) rc = v3_store__sqlerr(err, s->db, s->path, "loading prompt keys");
done:
    sqlite3_finalize(st);
    return rc;
}

/* PATH-lock: the writer's flock lives on a side file, never on run.db itself, because closing any
 * descriptor of run.db would drop the POSIX locks SQLite holds on it for this process. */
static void lock_path(const char *path, char *buf, size_t n) { snprintf(buf, n, "%s-lock", path); }

static int open_writer(v3_store *s, v3_err *err) {
    int rc, exists = 0;
    char lock[4200];
    struct stat fst;
    if ((rc = v3_store__stat_file(s->path, &exists, err))) return rc;
    if (stat(s->path, &fst) != 0 && !(s->flags & V3_STORE_CREATE))
        return v3_errf(err, V3_ENOTFOUND, "%s: no run store here (open with V3_STORE_CREATE to "
                       "start one)", s->path);
    lock_path(s->path, lock, sizeof lock);
    s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0) {
        if (errno == ENOENT)
            return v3_errf(err, V3_ENOTFOUND, "%s: cannot open a run store here: its directory does "
                           "not exist", s->path);
        return v3_errf(err, V3_EIO, "%s: %s", lock, strerror(errno));
    }
    /* A reader probing for a live writer holds LOCK_SH for a moment: retry for ~1 s before
     * concluding that another writer owns the file. */
    for (int attempt = 0; flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0; attempt++) {
        if (errno != EWOULDBLOCK) return v3_errf(err, V3_EIO, "%s: flock: %s", lock, strerror(errno));
        if (attempt == 100)
            return v3_errf(err, V3_EINVAL, "%s: another process is writing this run store; one "
                           "writer per run.db", s->path);
        usleep(10000);
    }
    /* again under the lock: another writer may have created the file in the meantime */
    if ((rc = v3_store__stat_file(s->path, &exists, err))) return rc;
    int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                 ((s->flags & V3_STORE_CREATE) ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(s->path, &s->db, oflags, NULL) != SQLITE_OK)
        return v3_store__sqlerr(err, s->db, s->path, "opening for writing");
    if ((rc = v3_store__check_header(s->db, s->path, err))) return rc;
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    if ((rc = v3_store__identify(s->db, s->path, err))) return rc;
    char sql[96];
    if (!exists) { /* page size is fixed at creation, before the first write */
        snprintf(sql, sizeof sql, "PRAGMA page_size = %d", s->opts.page_size);
        if ((rc = v3_store__exec(s->db, s->path, sql, err))) return rc;
    }
    /* WAL: readers never block the writer nor the writer readers. NORMAL: a commit reaches the OS
     * (survives a process crash) without an fsync; flush(durable) makes it survive a power cut. */
    if ((rc = v3_store__exec(s->db, s->path, "PRAGMA journal_mode = WAL", err)) ||
        (rc = v3_store__exec(s->db, s->path, "PRAGMA synchronous = NORMAL", err)) ||
        (rc = v3_store__exec(s->db, s->path, "PRAGMA cache_size = -65536", err)) ||
        (rc = v3_store__exec(s->db, s->path, "PRAGMA temp_store = MEMORY", err)))
        return rc;
    char *mode = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
        v3_store__step(st) == SQLITE_ROW)
        mode = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    int wal = mode && !strcmp(mode, "wal");
    free(mode);
    if (!wal)
        return v3_errf(err, V3_EUNSUPPORTED, "%s: cannot switch the store to WAL mode (a network "
                       "file system?); run directories must be on a local disk", s->path);
    if ((rc = v3_store__migrate(s->db, s->path, v3_store_migrations, V3_STORE_SCHEMA_VERSION, err)))
        return rc;
    /* We hold the writer lock, so a run still "running" lost its process. */
    if ((rc = v3_store__exec(s->db, s->path,
                             "UPDATE runs SET status = 'interrupted', "
                             "ended_at = coalesce(heartbeat_at, started_at), message = 'the writing "
                             "process ended without closing the run' WHERE status = 'running'",
                             err)))
        return rc;
    if ((rc = load_counters(s, err)) || (rc = v3_store__ckpt_start(s, err))) return rc;
    return v3_store__writer_start(s, err);
}

static int open_reader(v3_store *s, v3_err *err) {
    int rc, exists = 0;
    char lock[4200];
    if ((rc = v3_store__stat_file(s->path, &exists, err))) return rc;
    if (!exists) return v3_errf(err, V3_ENOTFOUND, "%s: no run store here (missing or empty)", s->path);
    /* Is a writer alive? Its flock on PATH-lock says so (no lock file: there never was one). */
    lock_path(s->path, lock, sizeof lock);
    int fd = open(lock, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (flock(fd, LOCK_SH | LOCK_NB) == 0) flock(fd, LOCK_UN);
        else s->writer_alive = errno == EWOULDBLOCK;
        close(fd);
    }
    char *uri = ro_uri(s->path);
    if (!uri) return v3_errf(err, V3_ENOMEM, "%s: out of memory", s->path);
    int k = sqlite3_open_v2(uri, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                            NULL);
    free(uri);
    if (k != SQLITE_OK) return v3_store__sqlerr(err, s->db, s->path, "opening read-only");
    if ((rc = v3_store__check_header(s->db, s->path, err))) return rc;
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    if ((rc = v3_store__exec(s->db, s->path, "PRAGMA query_only = 1", err))) return rc;
    return v3_store__check_version(s->db, s->path, err);
}

int v3_store_open_opts(v3_store **out, const char *path, int flags, const v3_store_opts *opts,
                       v3_err *err) {
    int rc = V3_OK;
    if (!out || !path || !path[0]) return v3_errf(err, V3_EINVAL, "run store: no path given");
    if ((flags & V3_STORE_CREATE) && !(flags & V3_STORE_WRITE))
        return v3_errf(err, V3_EINVAL, "%s: V3_STORE_CREATE needs V3_STORE_WRITE", path);
    v3_store *s = calloc(1, sizeof *s);
    if (!s) return v3_errf(err, V3_ENOMEM, "%s: out of memory", path);
    s->magic = V3_STORE_MAGIC;
    s->flags = flags;
    s->lock_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_work, NULL);
    pthread_cond_init(&s->cv_done, NULL);
    pthread_cond_init(&s->cv_ck, NULL);
    if (opts) s->opts = *opts;
    if (s->opts.queue_max_bytes <= 0) s->opts.queue_max_bytes = (int64_t)512 << 20;
    if (s->opts.txn_max_bytes <= 0) s->opts.txn_max_bytes = (int64_t)64 << 20;
    if (s->opts.page_size <= 0) s->opts.page_size = 65536;
    if (s->opts.wal_checkpoint_bytes <= 0) s->opts.wal_checkpoint_bytes = (int64_t)32 << 20;
    if (s->opts.wal_max_bytes <= 0) s->opts.wal_max_bytes = (int64_t)256 << 20;
    if (s->opts.page_size < 512 || s->opts.page_size > 65536 ||
        (s->opts.page_size & (s->opts.page_size - 1))) {
        rc = v3_errf(err, V3_EINVAL, "%s: page size %d is not a power of two in 512..65536", path,
                     s->opts.page_size);
        goto fail;
    }
    if (!(s->path = strdup(path))) {
        rc = v3_errf(err, V3_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    rc = (flags & V3_STORE_WRITE) ? open_writer(s, err) : open_reader(s, err);
    if (rc) goto fail;
    s->opened = 1;
    *out = s;
    return V3_OK;
fail:
    v3_store_close(s, NULL);
    return rc;
}

int v3_store_open(v3_store **out, const char *path, int flags, v3_err *err) {
    return v3_store_open_opts(out, path, flags, NULL, err);
}

int v3_store_close(v3_store *s, v3_err *err) {
    if (!s) return V3_OK;
    if (s->magic != V3_STORE_MAGIC)
        return v3_errf(err, V3_EINVAL, "run store: closing a handle that is not open");
    int rc = V3_OK;
    v3_store__writer_stop(s); /* commits whatever is queued first */
    if ((s->flags & V3_STORE_WRITE) && s->opened && !s->werr.code)
        /* Fresh planner statistics (sampled, so this stays fast on a huge file) let readers pick
         * the step index over the reward index for `--step N --order best`. Best effort. */
        sqlite3_exec(s->db, "PRAGMA analysis_limit = 1000; ANALYZE", NULL, NULL, NULL);
    if (s->werr.code) {
        if (err) *err = s->werr;
        rc = s->werr.code;
    }
    /* batches left in the queue after a writer failure are dropped with it */
    for (int list = 0; list < 2; list++) {
        for (v3_store_batch *b = list ? s->pool : s->head; b;) {
            v3_store_batch *next = b->next;
            v3_store__batch_destroy(b);
            b = next;
        }
    }
    v3_store__ckpt_stop(s); /* after the writer: it may wait for a round until it stops */
    if (s->db && sqlite3_close(s->db) != SQLITE_OK && !rc)
        rc = v3_store__sqlerr(err, s->db, s->path, "closing");
    if (s->lock_fd >= 0) close(s->lock_fd); /* releases the writer flock */
    free(s->pkeys);
    free(s->pids);
    free(s->path);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_done);
    pthread_cond_destroy(&s->cv_ck);
    s->magic = V3_STORE_DEAD;
    free(s);
    return rc;
}

const char *v3_store_path(const v3_store *s) {
    return s && s->magic == V3_STORE_MAGIC ? s->path : NULL;
}

struct sqlite3 *v3_store_db(v3_store *s) {
    if (!s || s->magic != V3_STORE_MAGIC || (s->flags & V3_STORE_WRITE)) return NULL;
    return s->db;
}

int v3_store_submit(v3_store *s, v3_store_batch *b, uint64_t *seq, v3_err *err) {
    int rc = check_writer(s, err);
    if (!rc && (!b || b->magic != V3_STORE_BATCH_MAGIC))
        return v3_errf(err, V3_EINVAL, "%s: submitting a batch that is not live (submitted twice?)",
                       s->path);
    if (!rc && b->s != s) rc = v3_errf(err, V3_EINVAL, "%s: batch belongs to another store", s->path);
    if (rc) {
        v3_store_batch_free(b);
        return rc;
    }
    return v3_store__enqueue(s, b, seq, err);
}

int v3_store_flush(v3_store *s, int durable, v3_err *err) {
    v3_store_batch *b = NULL;
    uint64_t seq = 0;
    int rc = v3_store_batch_new(s, &b, err);
    if (rc) return rc;
    b->durable = durable != 0;
    if ((rc = v3_store_submit(s, b, &seq, err))) return rc;
    return v3_store__wait(s, seq, err);
}

uint64_t v3_store_committed_seq(v3_store *s) {
    if (!s || s->magic != V3_STORE_MAGIC) return 0;
    pthread_mutex_lock(&s->mu);
    uint64_t c = s->committed_seq;
    pthread_mutex_unlock(&s->mu);
    return c;
}

int v3_store_run_begin(v3_store *s, const v3_store_run_info *info, int64_t *run_id, v3_err *err) {
    v3_store_batch *b = NULL;
    uint64_t seq = 0;
    char host[256] = "";
    int rc = check_writer(s, err);
    if (rc) return rc;
    if (!info || !info->command || !info->command[0])
        return v3_errf(err, V3_EINVAL, "%s: run_begin needs a command name", s->path);
    pthread_mutex_lock(&s->mu);
    int64_t cur = s->run_id;
    pthread_mutex_unlock(&s->mu);
    if (cur > 0)
        return v3_errf(err, V3_EINVAL, "%s: run %lld is still open; end it first", s->path,
                       (long long)cur);
    if ((rc = v3_store_batch_new(s, &b, err))) return rc;
    v3_rec *r = v3_store__new_rec(b, V3_REC_RUN_BEGIN, err);
    if (!r) {
        rc = err ? err->code : V3_ENOMEM;
        goto fail;
    }
    gethostname(host, sizeof host - 1);
    pthread_mutex_lock(&s->mu);
    int64_t id = s->next_run_id++;
    pthread_mutex_unlock(&s->mu);
    r->u.run.id = id;
    r->u.run.resumed_from = info->resumed_from;
    r->u.run.pid = (int64_t)getpid();
    if ((rc = v3_store__put_str(b, info->command, &r->u.run.command, err)) ||
        (rc = v3_store__put_str(b, info->config, &r->u.run.config, err)) ||
        (rc = v3_store__put_str(b, info->git_rev, &r->u.run.git_rev, err)) ||
        (rc = v3_store__put_str(b, host, &r->u.run.host, err)))
        goto fail;
    if ((rc = v3_store_submit(s, b, &seq, err))) return rc; /* the batch is the store's now */
    pthread_mutex_lock(&s->mu);
    s->run_id = id;
    pthread_mutex_unlock(&s->mu);
    if ((rc = v3_store__wait(s, seq, err))) return rc;
    if (run_id) *run_id = id;
    return V3_OK;
fail:
    v3_store_batch_free(b);
    return rc;
}

int v3_store_run_end(v3_store *s, const char *status, const char *message, v3_err *err) {
    v3_store_batch *b = NULL;
    int rc = check_writer(s, err);
    if (rc) return rc;
    if (!status || (strcmp(status, "completed") && strcmp(status, "failed") &&
                    strcmp(status, "interrupted")))
        return v3_errf(err, V3_EINVAL, "%s: run status \"%s\" is not completed, failed or interrupted",
                       s->path, status ? status : "(null)");
    pthread_mutex_lock(&s->mu);
    int64_t id = s->run_id;
    pthread_mutex_unlock(&s->mu);
    if (id <= 0) return v3_errf(err, V3_EINVAL, "%s: run_end without an open run", s->path);
    if ((rc = v3_store_batch_new(s, &b, err))) return rc;
    v3_rec *r = v3_store__new_rec(b, V3_REC_RUN_END, err);
    if (!r) {
        v3_store_batch_free(b);
        return err ? err->code : V3_ENOMEM;
    }
    r->u.run_end.id = id;
    if ((rc = v3_store__put_str(b, status, &r->u.run_end.status, err)) ||
        (rc = v3_store__put_str(b, message, &r->u.run_end.message, err))) {
        v3_store_batch_free(b);
        return rc;
    }
    b->durable = 1; /* the end of a run is worth an fsync */
    uint64_t seq = 0;
    if ((rc = v3_store_submit(s, b, &seq, err))) return rc;
    rc = v3_store__wait(s, seq, err);
    pthread_mutex_lock(&s->mu);
    s->run_id = 0;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int v3_store_log_step(v3_store *s, const v3_store_step *st, v3_err *err) {
    v3_store_batch *b = NULL;
    int rc = v3_store_batch_new(s, &b, err);
    if (rc) return rc;
    if ((rc = v3_store_batch_add_step(b, st, err))) {
        v3_store_batch_free(b);
        return rc;
    }
    return v3_store_submit(s, b, NULL, err);
}

int v3_store_log_eval(v3_store *s, const v3_store_eval *ev, v3_err *err) {
    v3_store_batch *b = NULL;
    int rc = v3_store_batch_new(s, &b, err);
    if (rc) return rc;
    if ((rc = v3_store_batch_add_eval(b, ev, err))) {
        v3_store_batch_free(b);
        return rc;
    }
    return v3_store_submit(s, b, NULL, err);
}

int v3_store_register_checkpoint(v3_store *s, const v3_store_checkpoint *c, v3_err *err) {
    v3_store_batch *b = NULL;
    int rc = v3_store_batch_new(s, &b, err);
    if (rc) return rc;
    if ((rc = v3_store_batch_add_checkpoint(b, c, err))) {
        v3_store_batch_free(b);
        return rc;
    }
    b->durable = 1;
    uint64_t seq = 0;
    if ((rc = v3_store_submit(s, b, &seq, err))) return rc;
    return v3_store__wait(s, seq, err);
}

int v3_store_finish(v3_store *s, int run_begun, int rc, v3_err *err) {
    if (run_begun) {
        v3_err e2 = {0};
        char msg[1100];
        snprintf(msg, sizeof msg, "%s", rc && err ? err->msg : "");
        int erc = v3_store_run_end(s, rc ? "failed" : "completed", rc ? msg : NULL, &e2);
        if (!rc && erc) {
            rc = erc;
            if (err) *err = e2;
        }
    }
    v3_err ce = {0};
    int crc = v3_store_close(s, &ce);
    if (!rc && crc) {
        rc = crc;
        if (err) *err = ce;
    }
    return rc;
}
