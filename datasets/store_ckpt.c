/* store_ckpt.c — the checkpointer: a second thread, on its own connection, copies the WAL into the
 * database file while the writer thread goes on appending to the WAL.
 *
 * With SQLite's automatic checkpoints the writer thread did that copy itself after a commit, and
 * waited for the fsyncs of the WAL and of the database file that come with it: a quarter of its
 * time with 1K-token samples (bench_store insert: 15,800 -> 20,500 samples/s on disk without
 * checkpoints). Here the writer's connection has no automatic checkpoint (its WAL hook only
 * records the WAL's size); after each commit it asks for a round once the WAL holds
 * opts.wal_checkpoint_bytes. A PASSIVE checkpoint never blocks the writer nor readers.
 *
 * The WAL restarts from its beginning only when a write transaction begins after a checkpoint
 * copied all of it. A writer that never pauses could outrun that forever and grow the WAL to the
 * size of the run, so past opts.wal_max_bytes the writer waits for one round that began after its
 * commit; its next transaction then restarts the WAL (unless a reader still holds an older
 * snapshot, as with automatic checkpoints). */
#include "datasets/store_internal.h"

/* The writer connection's WAL hook: runs in the writer thread inside COMMIT. Registering a hook
 * replaces SQLite's automatic checkpoint, which is exactly what we want. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int n_frames) {
    (void)db;
    (void)name;
    ((v3_store *)arg)->wal_frames = n_frames;
    return SQLITE_OK;
}

static void *ckpt_main(void *arg) {
    v3_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->ck_wanted == s->ck_done && !s->ck_stop) pthread_cond_wait(&s->cv_ck, &s->mu);
        if (s->ck_stop) break;
        uint64_t round = s->ck_wanted; /* every request made before now is served by this round */
        pthread_mutex_unlock(&s->mu);
        int n_log = 0, n_ckpt = 0;
        int rc = sqlite3_wal_checkpoint_v2(s->ck_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &n_log, &n_ckpt);
        v3_err e = {0};
        /* BUSY: another connection is checkpointing (e.g. a reader closing); the next round will
         * do it. Anything else (disk full, I/O error) is the writer's error too: the WAL could
         * then only grow, and a run must not go on as if its rows were safe. */
        if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY)
            v3_store__sqlerr(&e, s->ck_db, s->path, "checkpointing the WAL into the database file");
        pthread_mutex_lock(&s->mu);
        if (e.code && !s->werr.code) s->werr = e;
        s->ck_done = round;
        pthread_cond_broadcast(&s->cv_ck);
        if (e.code) pthread_cond_broadcast(&s->cv_done); /* wake submitters to see the error */
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int v3_store__ckpt_start(v3_store *s, v3_err *err) {
    if (sqlite3_open_v2(s->path, &s->ck_db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        return v3_store__sqlerr(err, s->ck_db, s->path, "opening the checkpointer's connection");
    sqlite3_extended_result_codes(s->ck_db, 1);
    sqlite3_busy_timeout(s->ck_db, 5000);
    /* NORMAL: each checkpoint fsyncs the WAL before copying it and the database file after. */
    int rc = v3_store__exec(s->ck_db, s->path, "PRAGMA synchronous = NORMAL", err);
    if (rc) return rc;
    if ((rc = v3_store__pragma_int(s->db, s->path, "page_size", &s->page_bytes, err))) return rc;
    sqlite3_wal_hook(s->db, wal_hook, s);
    if (pthread_create(&s->ck_thread, NULL, ckpt_main, s) != 0)
        return v3_errf(err, V3_EIO, "%s: cannot start the store checkpointer thread", s->path);
    s->have_ck_thread = 1;
    return V3_OK;
}

void v3_store__ckpt_stop(v3_store *s) {
    if (s->have_ck_thread) {
        pthread_mutex_lock(&s->mu);
        s->ck_stop = 1;
        pthread_cond_broadcast(&s->cv_ck);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->ck_thread, NULL);
        s->have_ck_thread = 0;
    }
    if (s->db) sqlite3_wal_hook(s->db, NULL, NULL);
    /* Not the last connection (the writer's closes after it), so this close copies nothing. */
    if (s->ck_db) sqlite3_close(s->ck_db);
    s->ck_db = NULL;
}

/* Asks for a round; wait: until a round that began after this call finished. Caller: the writer
 * thread, not holding mu. */
static void request(v3_store *s, int wait) {
    pthread_mutex_lock(&s->mu);
    uint64_t round = ++s->ck_wanted;
    pthread_cond_broadcast(&s->cv_ck);
    while (wait && s->ck_done < round && !s->ck_stop && s->have_ck_thread)
        pthread_cond_wait(&s->cv_ck, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void v3_store__ckpt_after_commit(v3_store *s) {
    int64_t wal_bytes = (int64_t)s->wal_frames * (s->page_bytes + 24);
    if (wal_bytes < s->opts.wal_checkpoint_bytes) return;
    request(s, wal_bytes >= s->opts.wal_max_bytes);
}

void v3_store__ckpt_sync(v3_store *s) { request(s, 1); }
