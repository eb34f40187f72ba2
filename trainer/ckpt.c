/* ckpt.c — atomic training checkpoints and the trainer state file (see ckpt.h). */
#include "trainer/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "model/checkpoint.h"
#include "model/config.h"

/* u64 values go to JSON as decimal strings: JSON numbers are doubles in many readers */
static json_t *u64_json(uint64_t x) {
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, x);
    return json_string(b);
}

static int u64_get(json_t *o, const char *key, uint64_t *out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return -1;
    char *end;
    *out = strtoull(json_string_value(v), &end, 10);
    return *end ? -1 : 0;
}

int v3_train_state_save(const v3_train_state *s, const char *path, v3_err *err) {
    json_t *o = json_object(), *rng = json_array(), *gl = json_array(), *gg = json_array();
    json_object_set_new(o, "version", json_integer(V3_TRAIN_STATE_VERSION));
    json_object_set_new(o, "step", json_integer(s->step));
    json_object_set_new(o, "tokens", json_integer(s->tokens));
    json_t *cur = json_object();
    json_object_set_new(cur, "seed", u64_json(s->cursor.seed));
    json_object_set_new(cur, "epoch", u64_json(s->cursor.epoch));
    json_object_set_new(cur, "next", u64_json(s->cursor.next));
    json_object_set_new(o, "data_cursor", cur);
    for (int i = 0; i < 4; i++) json_array_append_new(rng, u64_json(s->rng.s[i]));
    json_object_set_new(o, "rng", rng);
    /* the window in slot order with head/n: doubles print in round-trip form, so resumed
     * z-scores are bit-identical */
    for (int i = 0; i < s->guard.n; i++) {
        json_array_append_new(gl, json_real(s->guard.loss[i]));
        json_array_append_new(gg, json_real(s->guard.gnorm[i]));
    }
    json_t *g = json_object();
    json_object_set_new(g, "loss", gl);
    json_object_set_new(g, "grad_norm", gg);
    json_object_set_new(g, "head", json_integer(s->guard.head));
    json_object_set_new(g, "bad_in_row", json_integer(s->guard.bad_in_row));
    json_object_set_new(g, "skipped", json_integer(s->guard.skipped));
    json_object_set_new(o, "guard", g);
    int rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(o);
    return rc ? v3_errf(err, V3_EIO, "%s: cannot write trainer state", path) : V3_OK;
}

int v3_train_state_load(v3_train_state *s, const char *path, v3_err *err) {
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) return v3_errf(err, V3_EFORMAT, "%s:%d: %s", path, je.line, je.text);
    int rc = V3_OK;
    json_t *ver = json_object_get(o, "version"), *cur = json_object_get(o, "data_cursor");
    json_t *rng = json_object_get(o, "rng"), *g = json_object_get(o, "guard");
    json_t *gl = json_object_get(g, "loss"), *gg = json_object_get(g, "grad_norm");
    if (!json_is_integer(ver) || json_integer_value(ver) != V3_TRAIN_STATE_VERSION) {
        rc = v3_errf(err, V3_EUNSUPPORTED, "%s: trainer state version %lld (expected %d)", path,
                     json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL,
                     V3_TRAIN_STATE_VERSION);
        goto out;
    }
    if (!json_is_object(cur) || !json_is_array(rng) || json_array_size(rng) != 4 || !json_is_array(gl) ||
        !json_is_array(gg) || json_array_size(gl) != json_array_size(gg) ||
        json_array_size(gl) > V3_GUARD_WINDOW_MAX || u64_get(cur, "seed", &s->cursor.seed) ||
        u64_get(cur, "epoch", &s->cursor.epoch) || u64_get(cur, "next", &s->cursor.next)) {
        rc = v3_errf(err, V3_EFORMAT, "%s: malformed trainer state", path);
        goto out;
    }
    s->step = json_integer_value(json_object_get(o, "step"));
    s->tokens = json_integer_value(json_object_get(o, "tokens"));
    for (int i = 0; i < 4; i++) {
        const char *t = json_string_value(json_array_get(rng, (size_t)i));
        s->rng.s[i] = t ? strtoull(t, NULL, 10) : 0;
    }
    s->guard.n = (int)json_array_size(gl);
    for (int i = 0; i < s->guard.n; i++) {
        s->guard.loss[i] = json_number_value(json_array_get(gl, (size_t)i));
        s->guard.gnorm[i] = json_number_value(json_array_get(gg, (size_t)i));
    }
    s->guard.head = (int)json_integer_value(json_object_get(g, "head"));
    s->guard.bad_in_row = (int)json_integer_value(json_object_get(g, "bad_in_row"));
    s->guard.skipped = json_integer_value(json_object_get(g, "skipped"));
    if (s->guard.head < 0 || s->guard.head >= V3_GUARD_WINDOW_MAX || s->step < 0)
        rc = v3_errf(err, V3_EFORMAT, "%s: malformed trainer state", path);
out:
    json_decref(o);
    return rc;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

int v3_rmtree(const char *path, v3_err *err) {
    if (!v3_dir_exists(path) && !v3_file_exists(path)) return V3_OK;
    if (nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS))
        return v3_errf(err, V3_EIO, "%s: cannot remove: %s", path, strerror(errno));
    return V3_OK;
}

static void fsync_dir(const char *path) {
    FILE *f = fopen(path, "r");
    if (f) {
        fsync(fileno(f));
        fclose(f);
    }
}

int v3_ckpt_write(const char *run_dir, v3_model *m, v3_optim *o, const v3_train_state *st,
                  v3_dtype dtype, const char *tok_dir, int64_t *bytes, v3_err *err) {
    return v3_ckpt_write_ext(run_dir, m, o, st, dtype, tok_dir, NULL, NULL, bytes, err);
}

int v3_ckpt_write_ext(const char *run_dir, v3_model *m, v3_optim *o, const v3_train_state *st,
                      v3_dtype dtype, const char *tok_dir, v3_ckpt_extra_fn extra, void *user,
                      int64_t *bytes, v3_err *err) {
    char fin[4096], tmp[4200], path[4400];
    snprintf(fin, sizeof fin, "%s/step-%lld", run_dir, (long long)st->step);
    snprintf(tmp, sizeof tmp, "%s.tmp", fin);
    int rc = v3_rmtree(tmp, err);
    if (!rc) rc = v3_mkdirs(tmp, err);
    if (rc) return rc;
    /* host copy of the weights (the backend may be a GPU); MTP copies synced so the saved
     * checkpoint is consistent */
    v3_model_sync_mtp_copies(m);
    size_t n = (size_t)m->table.total;
    float *host = malloc(n * sizeof *host);
    if (!host) return v3_errf(err, V3_ENOMEM, "checkpoint: out of memory");
    m->ctx->be->to_host(m->ctx, host, m->params, n * sizeof *host);
    rc = v3_checkpoint_save(tmp, &m->table, host, dtype, 0, err);
    free(host);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    if ((rc = v3_config_save(&m->cfg, path, err))) return rc;
    if (tok_dir) {
        static const char *const tok_files[] = {"tokenizer.json", "tokenizer_config.json"};
        for (int i = 0; i < 2; i++) {
            char src[4200];
            snprintf(src, sizeof src, "%s/%s", tok_dir, tok_files[i]);
            snprintf(path, sizeof path, "%s/%s", tmp, tok_files[i]);
            if (v3_file_exists(src) && (rc = v3_copy_file(src, path, err))) return rc;
        }
    }
    snprintf(path, sizeof path, "%s/optim.bin", tmp);
    if ((rc = v3_optim_save(o, path, err))) return rc;
    if (extra && (rc = extra(user, tmp, err))) return rc;
    snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
    if ((rc = v3_train_state_save(st, path, err))) return rc;
    fsync_dir(tmp);
    /* an older step-N (a run resumed from before it) is replaced */
    if ((rc = v3_rmtree(fin, err))) return rc;
    if (rename(tmp, fin))
        return v3_errf(err, V3_EIO, "rename %s -> %s: %s", tmp, fin, strerror(errno));
    fsync_dir(run_dir);
    if (bytes) {
        snprintf(path, sizeof path, "%s/model.safetensors", fin);
        *bytes = v3_file_size(path);
    }
    return V3_OK;
}

/* step number of a complete checkpoint directory name, or -1 */
static int64_t ckpt_step(const char *run_dir, const char *name) {
    long long s;
    char tail;
    if (sscanf(name, "step-%lld%c", &s, &tail) != 1 || s < 0) return -1;
    char p[4400];
    snprintf(p, sizeof p, "%s/%s/trainer_state.json", run_dir, name);
    return v3_file_exists(p) ? (int64_t)s : -1;
}

int v3_ckpt_latest(const char *run_dir, int64_t *step, char *path, size_t n, v3_err *err) {
    DIR *d = opendir(run_dir);
    if (!d) return v3_errf(err, V3_ENOTFOUND, "%s: no run directory", run_dir);
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t s = ckpt_step(run_dir, e->d_name);
        if (s > best) best = s;
    }
    closedir(d);
    if (best < 0) return v3_errf(err, V3_ENOTFOUND, "%s: no complete checkpoint (step-N/)", run_dir);
    *step = best;
    snprintf(path, n, "%s/step-%lld", run_dir, (long long)best);
    return V3_OK;
}

static int cmp_i64_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int v3_ckpt_prune(const char *run_dir, int keep, v3_err *err) {
    DIR *d = opendir(run_dir);
    if (!d) return v3_errf(err, V3_EIO, "%s: cannot list: %s", run_dir, strerror(errno));
    int64_t *steps = NULL;
    size_t n = 0, cap = 0;
    int rc = V3_OK;
    struct dirent *e;
    char p[4400];
    while ((e = readdir(d))) {
        size_t L = strlen(e->d_name);
        if (!strncmp(e->d_name, "step-", 5) && L > 4 && !strcmp(e->d_name + L - 4, ".tmp")) {
            snprintf(p, sizeof p, "%s/%s", run_dir, e->d_name);
            if ((rc = v3_rmtree(p, err))) break;
            continue;
        }
        int64_t s = ckpt_step(run_dir, e->d_name);
        if (s < 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *ns = realloc(steps, cap * sizeof *ns);
            if (!ns) {
                rc = v3_errf(err, V3_ENOMEM, "prune: out of memory");
                break;
            }
            steps = ns;
        }
        steps[n++] = s;
    }
    closedir(d);
    if (!rc && keep > 0 && n > (size_t)keep) {
        qsort(steps, n, sizeof *steps, cmp_i64_desc);
        for (size_t i = (size_t)keep; i < n && !rc; i++) {
            snprintf(p, sizeof p, "%s/step-%lld", run_dir, (long long)steps[i]);
            rc = v3_rmtree(p, err);
        }
    }
    free(steps);
    return rc;
}
