/* store_schema.c — what a run.db looks like and how a file is accepted: the schema as forward
 * migrations (PRAGMA user_version), the checks that refuse files we must not open or overwrite
 * (not SQLite, truncated, newer schema, someone else's database), and busy-retrying helpers.
 * Column meanings: docs/store.md. Changing the schema = appending a migration, never editing one. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datasets/store_internal.h"

/* v0 -> v1: the first schema. Times are unix seconds (REAL, UTC). Blobs: datasets/blob.h. */
static const char migration_1[] =
    "PRAGMA application_id = 1983083637;\n" /* V3_STORE_APPLICATION_ID, 0x76337475 */
    "CREATE TABLE runs(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  command TEXT NOT NULL,\n"
    "  config TEXT,\n"
    "  git_rev TEXT,\n"
    "  v3tune_version TEXT,\n"
    "  hostname TEXT,\n"
    "  pid INTEGER,\n"
    "  started_at REAL NOT NULL,\n"
    "  ended_at REAL,\n"
    "  heartbeat_at REAL,\n"
    "  status TEXT NOT NULL DEFAULT 'running'\n"
    "    CHECK(status IN ('running','completed','failed','interrupted')),\n"
    "  message TEXT,\n"
    "  resumed_from INTEGER REFERENCES runs(id),\n"
    "  n_samples INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE TABLE steps(\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id),\n"
    "  step INTEGER NOT NULL,\n"
    "  time REAL NOT NULL,\n"
    "  loss REAL, lr REAL, grad_norm REAL, tokens INTEGER, step_time_s REAL,\n"
    "  PRIMARY KEY(run_id, step)) WITHOUT ROWID;\n"
    "CREATE TABLE metrics(\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id),\n"
    "  name TEXT NOT NULL,\n"
    "  step INTEGER NOT NULL,\n"
    "  value REAL NOT NULL,\n"
    "  PRIMARY KEY(run_id, name, step)) WITHOUT ROWID;\n"
    "CREATE TABLE evals(\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id),\n"
    "  step INTEGER NOT NULL,\n"
    "  name TEXT NOT NULL,\n"
    "  value REAL,\n"
    "  n_examples INTEGER,\n"
    "  extra TEXT,\n"
    "  time REAL NOT NULL,\n"
    "  PRIMARY KEY(run_id, step, name)) WITHOUT ROWID;\n"
    "CREATE TABLE expert_load(\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id),\n"
    "  step INTEGER NOT NULL,\n"
    "  layer INTEGER NOT NULL,\n"
    "  expert INTEGER NOT NULL,\n"
    "  tokens INTEGER NOT NULL,\n"
    "  PRIMARY KEY(run_id, step, layer, expert)) WITHOUT ROWID;\n"
    "CREATE TABLE prompts(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  key INTEGER NOT NULL UNIQUE,\n"
    "  text TEXT,\n"
    "  messages TEXT,\n"
    "  fields TEXT,\n"
    "  source_file TEXT,\n"
    "  source_line INTEGER,\n"
    "  created_at REAL NOT NULL);\n"
    "CREATE TABLE samples(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id),\n"
    "  step INTEGER NOT NULL,\n"
    "  prompt_id INTEGER NOT NULL REFERENCES prompts(id),\n"
    "  group_id INTEGER NOT NULL,\n"
    "  group_index INTEGER NOT NULL,\n"
    "  reward REAL,\n"
    "  advantage REAL,\n"
    "  finish_reason TEXT CHECK(finish_reason IN ('stop','length','abort','error')),\n"
    "  prompt_tokens INTEGER,\n"
    "  completion_tokens INTEGER NOT NULL,\n"
    "  policy_version INTEGER,\n"
    "  seed INTEGER,\n"
    "  created_at REAL NOT NULL,\n"
    "  completion TEXT NOT NULL,\n"
    "  token_ids BLOB,\n"
    "  logprobs BLOB,\n"
    "  trainer_logprobs BLOB,\n"
    "  ref_logprobs BLOB);\n"
    "CREATE INDEX samples_run_step ON samples(run_id, step);\n"
    "CREATE INDEX samples_prompt ON samples(prompt_id);\n"
    "CREATE INDEX samples_reward ON samples(reward);\n"
    "CREATE TABLE rewards(\n"
    "  sample_id INTEGER NOT NULL REFERENCES samples(id),\n"
    "  name TEXT NOT NULL,\n"
    "  score REAL,\n"
    "  weight REAL,\n"
    "  error TEXT,\n"
    "  extra TEXT,\n"
    "  script_hash TEXT,\n"
    "  elapsed_ms REAL,\n"
    "  PRIMARY KEY(sample_id, name)) WITHOUT ROWID;\n"
    "CREATE TABLE traces(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  run_id INTEGER REFERENCES runs(id),\n"
    "  prompt_id INTEGER REFERENCES prompts(id),\n"
    "  reasoning TEXT,\n"
    "  answer TEXT,\n"
    "  source_model TEXT,\n"
    "  provenance TEXT,\n"
    "  filters_passed TEXT,\n"
    "  accepted INTEGER CHECK(accepted IN (0,1)),\n"
    "  created_at REAL NOT NULL);\n"
    "CREATE INDEX traces_prompt ON traces(prompt_id);\n"
    "CREATE TABLE verdicts(\n"
    "  trace_id INTEGER NOT NULL REFERENCES traces(id),\n"
    "  verifier TEXT NOT NULL,\n"
    "  passed INTEGER NOT NULL CHECK(passed IN (0,1)),\n"
    "  score REAL,\n"
    "  detail TEXT,\n"
    "  PRIMARY KEY(trace_id, verifier)) WITHOUT ROWID;\n"
    "CREATE TABLE checkpoints(\n"
    "  run_id INTEGER NOT NULL REFERENCES runs(id),\n"
    "  step INTEGER NOT NULL,\n"
    "  path TEXT NOT NULL,\n"
    "  bytes INTEGER,\n"
    "  hash TEXT,\n"
    "  created_at REAL NOT NULL,\n"
    "  PRIMARY KEY(run_id, step));\n";

/* v1 -> v2: distillation. traces gain a dedupe key (a hash of the normalised prompt and trace;
 * the same trace is stored once) and a truncation flag; verdicts keep what a reward script
 * reported (run, weight, error, extra fields, script hash, time), like rewards; a filter run is a
 * selection whose selection_traces rows say which traces it kept and which rule removed the
 * others, so filtering never deletes anything and every earlier selection stays readable. */
static const char migration_2[] =
    "ALTER TABLE traces ADD COLUMN key INTEGER;\n"
    "ALTER TABLE traces ADD COLUMN truncated INTEGER CHECK(truncated IN (0,1));\n"
    "CREATE UNIQUE INDEX traces_key ON traces(key);\n"
    "ALTER TABLE verdicts ADD COLUMN run_id INTEGER REFERENCES runs(id);\n"
    "ALTER TABLE verdicts ADD COLUMN weight REAL;\n"
    "ALTER TABLE verdicts ADD COLUMN error TEXT;\n"
    "ALTER TABLE verdicts ADD COLUMN extra TEXT;\n"
    "ALTER TABLE verdicts ADD COLUMN script_hash TEXT;\n"
    "ALTER TABLE verdicts ADD COLUMN elapsed_ms REAL;\n"
    "CREATE TABLE selections(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  run_id INTEGER REFERENCES runs(id),\n"
    "  name TEXT,\n"
    "  config TEXT,\n"
    "  report TEXT,\n"
    "  n_traces INTEGER NOT NULL,\n"
    "  n_kept INTEGER NOT NULL,\n"
    "  created_at REAL NOT NULL);\n"
    "CREATE TABLE selection_traces(\n"
    "  selection_id INTEGER NOT NULL REFERENCES selections(id),\n"
    "  trace_id INTEGER NOT NULL REFERENCES traces(id),\n"
    "  kept INTEGER NOT NULL CHECK(kept IN (0,1)),\n"
    "  rejected_by TEXT,\n"
    "  tokens INTEGER,\n"
    "  detail TEXT,\n"
    "  PRIMARY KEY(selection_id, trace_id)) WITHOUT ROWID;\n";

/* v2 -> v3: one index (run_id, step, reward) replaces samples(run_id, step) and samples(reward).
 * Rewards are random, so every insert into samples(reward) landed on a random page of it: on a
 * store of 10M samples a transaction of 64 MiB dirtied most of that index, and 1K-token samples
 * went in at a third of the rate into an empty store. Within a run steps only grow, so this index
 * takes its inserts at its end; the best or worst of a whole run are found step by step through it
 * (store_query.c). */
static const char migration_3[] =
    "DROP INDEX samples_reward;\n"
    "DROP INDEX samples_run_step;\n"
    "CREATE INDEX samples_run_step_reward ON samples(run_id, step, reward);\n";

const char *const v3_store_migrations[V3_STORE_SCHEMA_VERSION] = {migration_1, migration_2,
                                                                 migration_3};

double v3_store__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int v3_store__sqlerr(v3_err *err, sqlite3 *db, const char *path, const char *what) {
    int rc = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
    int prim = rc & 0xff;
    int code = (prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB) ? V3_EFORMAT : V3_EIO;
    const char *hint = "";
    if (prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB)
        hint = " (the file is damaged; it was not modified: copy it aside and inspect it with the "
               "sqlite3 shell, e.g. `.recover`)";
    else if (prim == SQLITE_FULL)
        hint = " (disk full)";
    return v3_errf(err, code, "%s: %s: %s (sqlite code %d)%s", path, what,
                   db ? sqlite3_errmsg(db) : "no connection", rc, hint);
}

/* Backoff for SQLITE_BUSY: short sleeps first (most waits are a checkpoint finishing). */
static void busy_sleep(int attempt) {
    long us = attempt < 10 ? 1000 : attempt < 100 ? 10000 : 50000;
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* The busy_timeout handler already waits inside SQLite; these loops catch the cases where SQLite
 * returns BUSY without calling it (WAL recovery by another connection, a read snapshot that moved).
 * They give up only after ~10 minutes, so a user never sees SQLITE_BUSY from a healthy run. */
#define V3_BUSY_MAX_ATTEMPTS 12000

int v3_store__step(sqlite3_stmt *st) {
    for (int attempt = 0;; attempt++) {
        int rc = sqlite3_step(st);
        int prim = rc & 0xff;
        if ((prim != SQLITE_BUSY && prim != SQLITE_LOCKED) || attempt >= V3_BUSY_MAX_ATTEMPTS)
            return rc;
        /* A reset statement restarts from its first row, which is safe because BUSY comes before
         * the first row; a COMMIT that was BUSY keeps its transaction open and is simply retried. */
        sqlite3_reset(st);
        busy_sleep(attempt);
    }
}

int v3_store__exec(sqlite3 *db, const char *path, const char *sql, v3_err *err) {
    for (int attempt = 0;; attempt++) {
        char *msg = NULL;
        int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
        int prim = rc & 0xff;
        if (rc == SQLITE_OK) return V3_OK;
        if ((prim == SQLITE_BUSY || prim == SQLITE_LOCKED) && attempt < V3_BUSY_MAX_ATTEMPTS) {
            sqlite3_free(msg);
            busy_sleep(attempt);
            continue;
        }
        int code = (prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB) ? V3_EFORMAT : V3_EIO;
        char head[64];
        snprintf(head, sizeof head, "%.60s", sql);
        char *nl = strchr(head, '\n');
        if (nl) *nl = 0;
        v3_errf(err, code, "%s: \"%s\": %s (sqlite code %d)", path, head,
                msg ? msg : sqlite3_errmsg(db), rc);
        sqlite3_free(msg);
        return code;
    }
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int v3_store__stat_file(const char *path, int *exists, v3_err *err) {
    struct stat st;
    *exists = 0;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return V3_OK; /* the caller decides whether it may create it */
        return v3_errf(err, V3_EIO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return v3_errf(err, V3_EINVAL, "%s: not a regular file; a run store is a file named run.db",
                       path);
    /* An empty file holds nothing to lose: it is what a crash right after creation leaves. */
    *exists = st.st_size > 0;
    return V3_OK;
}

int v3_store__check_header(sqlite3 *db, const char *path, v3_err *err) {
    unsigned char h[100];
    sqlite3_file *f = NULL;
    sqlite3_int64 size = 0;
    /* Read through SQLite's own descriptor: opening and closing another descriptor of the file
     * would drop the POSIX locks every SQLite connection of this process holds on it. */
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f ||
        !f->pMethods || f->pMethods->xFileSize(f, &size) != SQLITE_OK)
        return v3_errf(err, V3_EIO, "%s: cannot inspect the file through SQLite", path);
    if (size == 0) return V3_OK;
    memset(h, 0, sizeof h);
    int k = f->pMethods->xRead(f, h, (int)sizeof h, 0); /* a short read zero-fills */
    if (k != SQLITE_OK && k != SQLITE_IOERR_SHORT_READ)
        return v3_errf(err, V3_EIO, "%s: cannot read the header (sqlite code %d)", path, k);
    if (size < 16 || memcmp(h, "SQLite format 3", 16) != 0)
        return v3_errf(err, V3_EFORMAT,
                       "%s: not an SQLite database (it does not start with \"SQLite format 3\"); "
                       "refusing to open or overwrite it", path);
    if (size < 100)
        return v3_errf(err, V3_EFORMAT, "%s: truncated SQLite file (%lld bytes, the header alone is "
                       "100); refusing to open it", path, (long long)size);
    uint32_t page = (uint32_t)h[16] << 8 | h[17];
    if (page == 1) page = 65536;
    if (page < 512 || (page & (page - 1)) != 0)
        return v3_errf(err, V3_EFORMAT, "%s: corrupt SQLite header (page size %u); refusing to open it",
                       path, page);
    /* The in-header page count is valid when the change counter matches "version-valid-for". The
     * file may legitimately be shorter only while a WAL still holds frames (a checkpoint that was
     * cut short is redone from the WAL), so the size check applies when there is no WAL. */
    uint32_t n_pages = be32(h + 28);
    int count_valid = be32(h + 24) == be32(h + 92) && n_pages > 0;
    char wal[4096];
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct stat wst;
    int wal_has_frames = stat(wal, &wst) == 0 && wst.st_size > 32;
    if (!wal_has_frames &&
        (size % page != 0 || (count_valid && (uint64_t)size < (uint64_t)n_pages * page)))
        return v3_errf(err, V3_EFORMAT,
                       "%s: truncated or damaged SQLite file: %lld bytes, header says %u pages of %u "
                       "bytes; refusing to open it (the file was not modified)",
                       path, (long long)size, n_pages, page);
    return V3_OK;
}

int v3_store__pragma_int(sqlite3 *db, const char *path, const char *pragma, int64_t *out,
                         v3_err *err) {
    sqlite3_stmt *st = NULL;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA %s", pragma);
    int rc = V3_OK;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = v3_store__sqlerr(err, db, path, sql);
        goto done;
    }
    int s = v3_store__step(st);
    if (s != SQLITE_ROW) {
        rc = v3_store__sqlerr(err, db, path, sql);
        goto done;
    }
    *out = sqlite3_column_int64(st, 0);
done:
    sqlite3_finalize(st);
    return rc;
}

static int count_tables(sqlite3 *db, const char *path, int64_t *n, v3_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = V3_OK;
    const char *sql = "SELECT count(*) FROM sqlite_schema WHERE type = 'table'";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK ||
        v3_store__step(st) != SQLITE_ROW) {
        rc = v3_store__sqlerr(err, db, path, "reading the schema");
        goto done;
    }
    *n = sqlite3_column_int64(st, 0);
done:
    sqlite3_finalize(st);
    return rc;
}

/* Common refusals for readers and writers. *version gets user_version. */
static int identify(sqlite3 *db, const char *path, int max_version, int64_t *version, v3_err *err) {
    int64_t app = 0, n_tables = 0;
    int rc = v3_store__pragma_int(db, path, "user_version", version, err);
    if (rc) return rc;
    if ((rc = v3_store__pragma_int(db, path, "application_id", &app, err))) return rc;
    if ((rc = count_tables(db, path, &n_tables, err))) return rc;
    if (app == 0 && *version == 0 && n_tables == 0) return V3_OK; /* a new, empty database */
    if (app != V3_STORE_APPLICATION_ID)
        return v3_errf(err, V3_EFORMAT,
                       "%s: an SQLite database that is not a v3tune run store (application_id "
                       "%lld, %lld tables); refusing to use it", path, (long long)app,
                       (long long)n_tables);
    if (*version > max_version)
        return v3_errf(err, V3_EUNSUPPORTED,
                       "%s: written by a newer v3tune (store schema version %lld; this build knows "
                       "versions up to %d); refusing to open it: upgrade v3tune", path,
                       (long long)*version, max_version);
    return V3_OK;
}

int v3_store__check_version(sqlite3 *db, const char *path, v3_err *err) {
    int64_t version = 0;
    int rc = identify(db, path, V3_STORE_SCHEMA_VERSION, &version, err);
    if (rc) return rc;
    if (version == 0)
        return v3_errf(err, V3_ENOTFOUND, "%s: an empty database, not a run store yet", path);
    if (version < V3_STORE_SCHEMA_VERSION)
        return v3_errf(err, V3_EUNSUPPORTED,
                       "%s: store schema version %lld is older than this build's %d; it is "
                       "upgraded the next time a run writes to it (readers never modify a file)",
                       path, (long long)version, V3_STORE_SCHEMA_VERSION);
    return V3_OK;
}

int v3_store__identify(sqlite3 *db, const char *path, v3_err *err) {
    int64_t version = 0;
    return identify(db, path, V3_STORE_SCHEMA_VERSION, &version, err);
}

int v3_store__migrate(sqlite3 *db, const char *path, const char *const *migrations, int n_migrations,
                      v3_err *err) {
    int rc = V3_OK, in_txn = 0;
    int64_t version = 0;
    /* IMMEDIATE: the version read and the upgrade happen under the write lock, so two writers
     * racing to create the same file cannot both apply migration 1. */
    if ((rc = v3_store__exec(db, path, "BEGIN IMMEDIATE", err))) goto done;
    in_txn = 1;
    if ((rc = identify(db, path, n_migrations, &version, err))) goto done;
    for (int64_t v = version; v < n_migrations; v++) {
        if ((rc = v3_store__exec(db, path, migrations[v], err))) {
            v3_err_prefix(err, "%s: migrating the store schema from version %lld to %lld", path,
                          (long long)v, (long long)v + 1);
            goto done;
        }
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %lld", (long long)v + 1);
        if ((rc = v3_store__exec(db, path, sql, err))) goto done;
    }
    if ((rc = v3_store__exec(db, path, "COMMIT", err))) goto done;
    in_txn = 0;
done:
    if (in_txn) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL); /* nothing of a failed upgrade stays */
    return rc;
}
