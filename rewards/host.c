/* host.c — the reward host's parent side: reads and hashes the scripts, keeps the pool of worker
 * processes, hands out (sample, function) tasks, enforces the deadline from outside (SIGKILL),
 * replaces dead workers, and gathers results in input order. See host.h. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/sha256.h"
#include "rewards/host.h"
#include "rewards/judge_module.h"
#include "rewards/sample.h"
#include "rewards/worker.h"

/* A restarted worker that fails to come up this many times in a row ends the scoring call. */
#define MAX_RESTART_FAILS 3

enum { SLOT_DOWN = 0, SLOT_STARTING, SLOT_IDLE, SLOT_BUSY };

typedef struct slot {
    v3_reward_worker w;
    int state;
    int task;            /* SLOT_BUSY: index into the task list */
    int64_t start_ns, deadline_ns;
    unsigned char *rx;   /* the frame being received */
    size_t rx_n, rx_cap;
} slot;

struct v3_reward_host {
    int n_funcs;
    v3_reward_func_info info[V3_REWARD_MAX_FUNCS];
    double weights[V3_REWARD_MAX_FUNCS];
    char *texts[V3_REWARD_MAX_FUNCS];
    size_t lens[V3_REWARD_MAX_FUNCS];
    char *chunknames[V3_REWARD_MAX_FUNCS];
    char *names[V3_REWARD_MAX_FUNCS]; /* configured names or NULL */
    char **dirs;
    int n_dirs;
    v3_reward_worker_cfg cfg;
    int n_workers;
    slot *slots;
    int64_t timeout_ms, grace_ms, hello_ms;
    size_t max_text, max_sample;
    int restart_fails;
    v3_reward_host_stats stats;
    v3_judge *judges[V3_REWARD_MAX_FUNCS]; /* judge modules (judge_module.h); NULL otherwise */
};

/* One call to run in a worker: function f on a payload (a sample, or a judge phase's wrapper of
 * it); the outcome goes to *v. */
typedef struct call_task {
    int f;
    const char *data;
    size_t len;
    v3_reward_value *v;
} call_task;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

/* ---- slots ---- */

static int slot_start(v3_reward_host *h, slot *s, v3_err *err) {
    s->rx_n = 0;
    int rc = v3_reward_worker_spawn(&s->w, &h->cfg, err);
    if (rc != V3_OK) {
        s->state = SLOT_DOWN;
        return rc;
    }
    s->state = SLOT_STARTING;
    s->task = -1;
    s->start_ns = now_ns();
    s->deadline_ns = s->start_ns + h->hello_ms * 1000000;
    return V3_OK;
}

/* Kills and reaps the worker; returns its wait status. */
static int slot_stop(slot *s) {
    int st = v3_reward_worker_kill(&s->w);
    s->state = SLOT_DOWN;
    s->rx_n = 0;
    return st;
}

/* Reads what is available. Returns 1 when a whole frame is in s->rx (payload from offset 4), 0
 * when more is needed, -1 on EOF or error (the worker is gone). */
static int slot_read(slot *s) {
    for (;;) {
        size_t need = 4;
        if (s->rx_n >= 4) {
            size_t len = (size_t)s->rx[0] | (size_t)s->rx[1] << 8 | (size_t)s->rx[2] << 16 |
                         (size_t)s->rx[3] << 24;
            if (len > V3_REWARD_MAX_FRAME) return -1;
            need = 4 + len;
            if (s->rx_n == need) return 1;
        }
        if (need + 1 > s->rx_cap) {
            size_t nc = need + 1 > 4096 ? need + 1 : 4096;
            unsigned char *nb = realloc(s->rx, nc);
            if (!nb) return -1;
            s->rx = nb;
            s->rx_cap = nc;
        }
        ssize_t k = recv(s->w.fd, s->rx + s->rx_n, need - s->rx_n, MSG_DONTWAIT);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (k <= 0) return -1;
        s->rx_n += (size_t)k;
    }
}

static void describe_exit(int status, char *buf, size_t n) {
    if (status < 0) snprintf(buf, n, "worker lost");
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "worker crashed (killed by signal %d: %s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else snprintf(buf, n, "worker exited with status %d", WEXITSTATUS(status));
}

/* Parses a hello frame; fills the module options on the first one (init). */
static int take_hello(v3_reward_host *h, slot *s, int first, v3_err *err) {
    json_error_t je;
    json_t *j = json_loadb((const char *)s->rx + 4, s->rx_n - 4, 0, &je);
    s->rx_n = 0;
    int rc = V3_OK;
    if (!json_is_object(j)) {
        rc = v3_errf(err, V3_EFORMAT, "reward worker: bad hello");
    } else if (!json_is_true(json_object_get(j, "ok"))) {
        const char *m = json_string_value(json_object_get(j, "error"));
        rc = v3_errf(err, V3_EINVAL, "%s", m ? m : "reward worker failed to load the modules");
    } else if (first) {
        json_t *arr = json_object_get(j, "funcs");
        for (int f = 0; f < h->n_funcs; f++) {
            json_t *o = json_array_get(arr, (size_t)f);
            v3_reward_func_info *fi = &h->info[f];
            const char *mname = json_string_value(json_object_get(o, "name"));
            if (!h->names[f] && mname && mname[0]) snprintf(fi->name, sizeof fi->name, "%s", mname);
            json_t *w = json_object_get(o, "weight");
            if (json_is_number(w) && isnan(h->weights[f])) h->weights[f] = json_number_value(w);
            json_t *fb = json_object_get(o, "fallback");
            if (json_is_number(fb)) fi->fallback = json_number_value(fb);
        }
        for (int f = 0; f < h->n_funcs; f++) {
            if (isnan(h->weights[f])) h->weights[f] = 1.0;
            h->info[f].weight = h->weights[f];
        }
    }
    json_decref(j);
    if (rc == V3_OK) s->state = SLOT_IDLE;
    return rc;
}

/* ---- init / free ---- */

static int probe_judges(v3_reward_host *h, const v3_judge_opts *override, v3_err *err);

static void host_destroy(v3_reward_host *h) {
    if (!h) return;
    for (int i = 0; h->slots && i < h->n_workers; i++) {
        if (h->slots[i].state != SLOT_DOWN) slot_stop(&h->slots[i]);
        free(h->slots[i].rx);
    }
    free(h->slots);
    for (int f = 0; f < V3_REWARD_MAX_FUNCS; f++) {
        v3_judge_free(h->judges[f]);
        free(h->texts[f]);
        free(h->chunknames[f]);
        free(h->names[f]);
    }
    for (int i = 0; i < h->n_dirs; i++) free(h->dirs[i]);
    free(h->dirs);
    free(h);
}

void v3_reward_host_free(v3_reward_host *host) { host_destroy(host); }

static int read_script(v3_reward_host *h, int f, const char *path, v3_err *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return v3_errf(err, V3_EIO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = cap > (16u << 20) ? NULL : realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(fp);
                return v3_errf(err, V3_ENOMEM, "%s: too large or out of memory", path);
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n, fp);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return v3_errf(err, V3_EIO, "%s: read error", path);
    }
    /* the hash covers the bytes as read, before a "#!" line is blanked */
    uint8_t d[32];
    v3_sha256(buf, n, d);
    v3_sha256_hex(d, h->info[f].sha256);
    if (n && buf[0] == '#')
        for (size_t i = 0; i < n && buf[i] != '\n'; i++) buf[i] = ' ';
    h->texts[f] = buf;
    h->lens[f] = n;
    return V3_OK;
}

/* Waits until every STARTING slot has said hello (or failed). */
static int wait_hellos(v3_reward_host *h, v3_err *err) {
    for (;;) {
        struct pollfd pf[h->n_workers];
        int idx[h->n_workers], np = 0;
        int64_t t = now_ns(), soonest = INT64_MAX;
        for (int i = 0; i < h->n_workers; i++) {
            slot *s = &h->slots[i];
            if (s->state != SLOT_STARTING) continue;
            if (t >= s->deadline_ns)
                return v3_errf(err, V3_EINVAL, "reward worker: loading the modules took longer than %lld ms",
                               (long long)h->hello_ms);
            if (s->deadline_ns < soonest) soonest = s->deadline_ns;
            pf[np].fd = s->w.fd;
            pf[np].events = POLLIN;
            idx[np++] = i;
        }
        if (np == 0) return V3_OK;
        int ms = (int)((soonest - t) / 1000000) + 1;
        int k = poll(pf, (nfds_t)np, ms);
        if (k < 0 && errno != EINTR) return v3_errf(err, V3_EIO, "poll: %s", strerror(errno));
        for (int j = 0; j < np && k > 0; j++) {
            if (!pf[j].revents) continue;
            slot *s = &h->slots[idx[j]];
            int r = slot_read(s);
            if (r < 0) {
                char why[160];
                describe_exit(slot_stop(s), why, sizeof why);
                return v3_errf(err, V3_EIO, "reward worker died while loading the modules: %s", why);
            }
            if (r == 1) {
                int rc = take_hello(h, s, idx[j] == 0, err);
                if (rc != V3_OK) return rc;
            }
        }
    }
}

int v3_reward_host_init(v3_reward_host **out, const v3_reward_opts *o, v3_err *err) {
    *out = NULL;
    if (o->n_scripts < 1 || o->n_scripts > V3_REWARD_MAX_FUNCS)
        return v3_errf(err, V3_EINVAL, "reward host: %d scripts (1..%d allowed)", o->n_scripts,
                       V3_REWARD_MAX_FUNCS);
    v3_reward_host *h = calloc(1, sizeof *h);
    if (!h) return v3_errf(err, V3_ENOMEM, "reward host: out of memory");
    h->n_funcs = o->n_scripts;
    h->n_workers = o->n_workers > 0 ? o->n_workers : V3_REWARD_DEFAULT_WORKERS;
    h->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : V3_REWARD_DEFAULT_TIMEOUT_MS;
    h->grace_ms = o->grace_ms > 0 ? o->grace_ms : V3_REWARD_DEFAULT_GRACE_MS;
    h->max_text = o->max_text ? o->max_text : V3_REWARD_DEFAULT_MAX_TEXT;
    h->max_sample = o->max_sample ? o->max_sample : V3_REWARD_DEFAULT_MAX_SAMPLE;
    /* loading runs each module's top level under the per-call budgets, one after the other */
    h->hello_ms = h->n_funcs * h->timeout_ms + h->grace_ms + 2000;
    int rc = V3_OK;
    for (int f = 0; f < h->n_funcs && rc == V3_OK; f++) {
        const v3_reward_script *sc = &o->scripts[f];
        v3_reward_func_info *fi = &h->info[f];
        snprintf(fi->path, sizeof fi->path, "%s", sc->path);
        rc = read_script(h, f, sc->path, err);
        if (rc != V3_OK) break;
        size_t cn = strlen(sc->path) + 2;
        h->chunknames[f] = malloc(cn);
        if (!h->chunknames[f]) {
            rc = v3_errf(err, V3_ENOMEM, "reward host: out of memory");
            break;
        }
        snprintf(h->chunknames[f], cn, "@%s", sc->path);
        if (sc->name) {
            h->names[f] = dup_str(sc->name);
            snprintf(fi->name, sizeof fi->name, "%s", sc->name);
        } else {
            const char *b = strrchr(sc->path, '/');
            snprintf(fi->name, sizeof fi->name, "%s", b ? b + 1 : sc->path);
            char *dot = strrchr(fi->name, '.');
            if (dot && strcmp(dot, ".lua") == 0) *dot = 0;
        }
        h->weights[f] = sc->has_weight ? sc->weight : NAN; /* NaN: the module's, else 1 */
        fi->fallback = o->fallback;
    }
    if (rc == V3_OK && o->n_reward_dirs > 0) {
        h->dirs = calloc((size_t)o->n_reward_dirs, sizeof *h->dirs);
        if (!h->dirs) rc = v3_errf(err, V3_ENOMEM, "reward host: out of memory");
        for (int i = 0; rc == V3_OK && i < o->n_reward_dirs; i++) {
            h->dirs[i] = dup_str(o->reward_dirs[i]);
            h->n_dirs++;
            if (!h->dirs[i]) rc = v3_errf(err, V3_ENOMEM, "reward host: out of memory");
        }
    }
    if (rc != V3_OK) {
        host_destroy(h);
        return rc;
    }
    size_t mem = o->mem_cap ? o->mem_cap : V3_REWARD_DEFAULT_MEM;
    h->cfg.n_funcs = h->n_funcs;
    h->cfg.texts = (const char *const *)h->texts;
    h->cfg.lens = h->lens;
    h->cfg.chunknames = (const char *const *)h->chunknames;
    h->cfg.names = (const char *const *)h->names;
    h->cfg.limits.mem_cap = mem;
    h->cfg.limits.max_instructions = o->max_instructions > 0 ? o->max_instructions
                                     : o->max_instructions < 0 ? 0
                                                               : V3_REWARD_DEFAULT_INSTRUCTIONS;
    h->cfg.limits.deadline_ms = h->timeout_ms;
    h->cfg.reward_dirs = (const char *const *)h->dirs;
    h->cfg.n_reward_dirs = h->n_dirs;
    /* every state at its cap, plus jansson trees of a sample and the C heap's own slack */
    h->cfg.extra_as = (size_t)h->n_funcs * mem + 4 * h->max_sample + (256u << 20);

    h->slots = calloc((size_t)h->n_workers, sizeof *h->slots);
    if (!h->slots) {
        host_destroy(h);
        return v3_errf(err, V3_ENOMEM, "reward host: out of memory");
    }
    for (int i = 0; i < h->n_workers && rc == V3_OK; i++) rc = slot_start(h, &h->slots[i], err);
    if (rc == V3_OK) rc = wait_hellos(h, err);
    if (rc == V3_OK) rc = probe_judges(h, o->judge, err);
    if (rc != V3_OK) {
        host_destroy(h);
        return rc;
    }
    *out = h;
    return V3_OK;
}

int v3_reward_host_n_funcs(const v3_reward_host *h) { return h->n_funcs; }

const v3_reward_func_info *v3_reward_host_func(const v3_reward_host *h, int i) {
    return i >= 0 && i < h->n_funcs ? &h->info[i] : NULL;
}

void v3_reward_host_get_stats(const v3_reward_host *h, v3_reward_host_stats *st) { *st = h->stats; }

int v3_reward_host_worker_pid(const v3_reward_host *h, int w) {
    if (w < 0 || w >= h->n_workers || h->slots[w].state == SLOT_DOWN) return -1;
    return (int)h->slots[w].w.pid;
}

void v3_reward_results_free(v3_reward_result *out, int n) {
    for (int i = 0; out && i < n; i++)
        for (int f = 0; f < V3_REWARD_MAX_FUNCS; f++) {
            free(out[i].values[f].error);
            free(out[i].values[f].extra_json);
            out[i].values[f].error = out[i].values[f].extra_json = NULL;
        }
}

/* ---- scoring ---- */

/* Records an error for the call of function f whose outcome is *v, with the fallback. */
static void set_error(v3_reward_host *h, v3_reward_value *v, int f, const char *msg,
                      double elapsed_ms) {
    v->status = V3_REWARD_ERROR;
    v->score = h->info[f].fallback;
    free(v->error);
    v->error = dup_str(msg);
    v->elapsed_ms += elapsed_ms;
    h->stats.errors++;
}

static void take_response(v3_reward_host *h, slot *s, const call_task *tasks, double elapsed_ms) {
    const call_task *tk = &tasks[s->task];
    v3_reward_value *v = tk->v;
    json_error_t je;
    json_t *j = json_loadb((const char *)s->rx + 4, s->rx_n - 4, 0, &je);
    s->rx_n = 0;
    s->state = SLOT_IDLE;
    s->task = -1;
    json_t *st = json_object_get(j, "st");
    if (!json_is_integer(st)) {
        set_error(h, v, tk->f, "reward worker: malformed response", elapsed_ms);
    } else if (json_integer_value(st) == V3_REWARD_ERROR) {
        const char *m = json_string_value(json_object_get(j, "error"));
        set_error(h, v, tk->f, m ? m : "error", elapsed_ms);
    } else {
        v->status = json_integer_value(st) == V3_REWARD_OK ? V3_REWARD_OK : V3_REWARD_SKIP;
        v->score = v->status == V3_REWARD_OK ? json_number_value(json_object_get(j, "score")) : NAN;
        v->elapsed_ms += elapsed_ms;
    }
    const char *extra = json_string_value(json_object_get(j, "extra"));
    if (extra) v->extra_json = dup_str(extra);
    json_decref(j);
}

/* The worker in s is gone (or killed): restart it. Counts consecutive failures. */
static int slot_restart(v3_reward_host *h, slot *s, v3_err *err) {
    h->stats.restarts++;
    int rc = slot_start(h, s, err);
    if (rc != V3_OK) v3_err_prefix(err, "restarting a reward worker");
    return rc;
}

/* Runs tasks[0..total) across the pool (tasks without data are skipped); every outcome lands in
 * its task's value. Fails only when the pool cannot go on; busy workers are then stopped. */
static int run_tasks(v3_reward_host *h, const call_task *tasks, int total, v3_err *err) {
    int rc = V3_OK, done = 0;
    for (int t = 0; t < total; t++) done += tasks[t].data == NULL;
    /* workers lost when an earlier call failed are started again */
    for (int i = 0; i < h->n_workers && rc == V3_OK; i++)
        if (h->slots[i].state == SLOT_DOWN) rc = slot_restart(h, &h->slots[i], err);
    int next = 0;
    while (done < total && rc == V3_OK) {
        /* hand out tasks to idle workers */
        for (int i = 0; i < h->n_workers && rc == V3_OK; i++) {
            slot *s = &h->slots[i];
            while (next < total && !tasks[next].data) next++;
            if (s->state != SLOT_IDLE || next >= total) continue;
            int t = next;
            unsigned char fi[4] = {(unsigned char)tasks[t].f, 0, 0, 0};
            v3_err e;
            if (v3_reward_frame_write(s->w.fd, fi, 4, tasks[t].data, tasks[t].len, &e) != V3_OK) {
                /* the worker died while idle: the task was never delivered, so it is not the
                 * script's fault; restart and hand the task out again */
                slot_stop(s);
                h->stats.crashes++;
                if (++h->restart_fails > MAX_RESTART_FAILS * h->n_workers) {
                    rc = v3_errf(err, V3_EIO, "reward workers keep dying: %s", e.msg);
                    break;
                }
                rc = slot_restart(h, s, err);
                continue;
            }
            next++;
            h->stats.calls++;
            s->state = SLOT_BUSY;
            s->task = t;
            s->start_ns = now_ns();
            s->deadline_ns = s->start_ns + (h->timeout_ms + h->grace_ms) * 1000000;
        }
        if (rc != V3_OK) break;
        /* wait for answers or the earliest deadline */
        struct pollfd pf[h->n_workers];
        int idx[h->n_workers], np = 0;
        int64_t t0 = now_ns(), soonest = INT64_MAX;
        for (int i = 0; i < h->n_workers; i++) {
            slot *s = &h->slots[i];
            if (s->state != SLOT_BUSY && s->state != SLOT_STARTING) continue;
            if (s->deadline_ns < soonest) soonest = s->deadline_ns;
            pf[np].fd = s->w.fd;
            pf[np].events = POLLIN;
            pf[np].revents = 0;
            idx[np++] = i;
        }
        if (np == 0) continue;
        int ms = soonest <= t0 ? 0 : (int)((soonest - t0 + 999999) / 1000000);
        int k = poll(pf, (nfds_t)np, ms);
        if (k < 0 && errno != EINTR) {
            rc = v3_errf(err, V3_EIO, "poll: %s", strerror(errno));
            break;
        }
        int64_t t1 = now_ns();
        for (int j = 0; j < np && rc == V3_OK; j++) {
            slot *s = &h->slots[idx[j]];
            double el = (double)(t1 - s->start_ns) / 1e6;
            if (pf[j].revents) {
                int r = slot_read(s);
                if (r == 1) {
                    if (s->state == SLOT_STARTING) {
                        v3_err e;
                        if (take_hello(h, s, 0, &e) != V3_OK) {
                            slot_stop(s);
                            if (++h->restart_fails > MAX_RESTART_FAILS * h->n_workers) {
                                rc = v3_errf(err, V3_EIO, "reward worker cannot restart: %s", e.msg);
                                break;
                            }
                            rc = slot_restart(h, s, err);
                        } else {
                            h->restart_fails = 0;
                        }
                    } else {
                        take_response(h, s, tasks, el);
                        done++;
                    }
                    continue;
                }
                if (r < 0) {
                    char why[200];
                    int was_busy = s->state == SLOT_BUSY;
                    int task = s->task;
                    describe_exit(slot_stop(s), why, sizeof why);
                    h->stats.crashes++;
                    if (was_busy) {
                        set_error(h, tasks[task].v, tasks[task].f, why, el);
                        done++;
                    } else if (++h->restart_fails > MAX_RESTART_FAILS * h->n_workers) {
                        rc = v3_errf(err, V3_EIO, "reward worker cannot restart: %s", why);
                        break;
                    }
                    rc = slot_restart(h, s, err);
                    continue;
                }
            }
            if (t1 >= s->deadline_ns) {
                /* out of reach of the sandbox's hooks (stuck in C) or hung: kill from outside */
                int was_busy = s->state == SLOT_BUSY;
                int task = s->task;
                slot_stop(s);
                h->stats.kills++;
                if (was_busy) {
                    char why[160];
                    snprintf(why, sizeof why, "deadline of %lld ms exceeded (killed)",
                             (long long)h->timeout_ms);
                    set_error(h, tasks[task].v, tasks[task].f, why, el);
                    done++;
                } else if (++h->restart_fails > MAX_RESTART_FAILS * h->n_workers) {
                    rc = v3_errf(err, V3_EIO, "reward worker cannot restart (module loading too slow)");
                    break;
                }
                rc = slot_restart(h, s, err);
            }
        }
    }
    if (rc != V3_OK) {
        /* a worker still busy would answer a task of this call during the next one: stop it */
        for (int i = 0; i < h->n_workers; i++)
            if (h->slots[i].state == SLOT_BUSY) slot_stop(&h->slots[i]);
    }
    return rc;
}

/* Asks every function whether it is a judge module (judge_module.h) and starts the judges. */
static int probe_judges(v3_reward_host *h, const v3_judge_opts *override, v3_err *err) {
    int nf = h->n_funcs;
    char *msg = NULL;
    size_t len = 0;
    call_task tasks[V3_REWARD_MAX_FUNCS];
    v3_reward_value vals[V3_REWARD_MAX_FUNCS];
    memset(tasks, 0, sizeof tasks);
    memset(vals, 0, sizeof vals);
    int rc = v3_judge_wire_config(&msg, &len, err);
    for (int f = 0; f < nf; f++) tasks[f] = (call_task){f, msg, len, &vals[f]};
    if (rc == V3_OK) rc = run_tasks(h, tasks, nf, err);
    for (int f = 0; f < nf && rc == V3_OK; f++) {
        if (vals[f].status == V3_REWARD_ERROR)
            rc = v3_errf(err, V3_EINVAL, "%s: %s", h->info[f].path, vals[f].error ? vals[f].error : "error");
        else if (vals[f].status == V3_REWARD_OK && vals[f].extra_json) {
            rc = v3_judge_from_config(&h->judges[f], vals[f].extra_json, override, err);
            if (rc != V3_OK) v3_err_prefix(err, "%s", h->info[f].path);
            h->info[f].is_judge = 1;
        }
    }
    for (int f = 0; f < nf; f++) {
        free(vals[f].error);
        free(vals[f].extra_json);
    }
    free(msg);
    memset(&h->stats, 0, sizeof h->stats); /* the probe is no scoring */
    return rc;
}

/* Phases two and three of judge modules: the request bodies that phase one left in the values'
 * extra_json go out through each function's judge; good replies go back to the workers' parse(),
 * failed requests become errors with the fallback. */
static int run_judges(v3_reward_host *h, char **enc, const size_t *enc_len, int n,
                      v3_reward_result *out, v3_err *err) {
    int nf = h->n_funcs, rc = V3_OK, nt = 0;
    call_task *tasks = calloc((size_t)n * (size_t)nf + 1, sizeof *tasks);
    char **bodies = calloc((size_t)n + 1, sizeof *bodies);
    int *who = calloc((size_t)n + 1, sizeof *who);
    v3_judge_result *res = calloc((size_t)n + 1, sizeof *res);
    if (!tasks || !bodies || !who || !res) rc = v3_errf(err, V3_ENOMEM, "reward host: out of memory");
    for (int f = 0; f < nf && rc == V3_OK; f++) {
        if (!h->judges[f]) continue;
        int m = 0;
        for (int i = 0; i < n; i++) {
            v3_reward_value *v = &out[i].values[f];
            if (!enc[i] || v->status != V3_REWARD_OK) continue; /* skipped or failed in request() */
            bodies[m] = v->extra_json;                          /* the body, not an extra */
            v->extra_json = NULL;
            who[m++] = i;
        }
        if (m == 0) continue;
        rc = v3_judge_run(h->judges[f], (const char *const *)bodies, m, res, err);
        for (int k = 0; k < m; k++) {
            free(bodies[k]);
            bodies[k] = NULL;
        }
        if (rc != V3_OK) break;
        for (int k = 0; k < m && rc == V3_OK; k++) {
            int i = who[k];
            v3_reward_value *v = &out[i].values[f];
            if (!res[k].ok) {
                char msg[1200];
                snprintf(msg, sizeof msg, "judge: %s", res[k].error ? res[k].error : "request failed");
                set_error(h, v, f, msg, res[k].elapsed_ms);
                continue;
            }
            v->elapsed_ms += res[k].elapsed_ms;
            char *p = NULL;
            size_t len = 0;
            rc = v3_judge_wire_parse(enc[i], enc_len[i], &res[k], &p, &len, err);
            if (rc == V3_OK) tasks[nt++] = (call_task){f, p, len, v};
        }
        v3_judge_results_free(res, m);
    }
    if (rc == V3_OK && nt > 0) rc = run_tasks(h, tasks, nt, err);
    for (int t = 0; t < nt; t++) free((char *)tasks[t].data);
    free(tasks);
    free(bodies);
    free(who);
    free(res);
    return rc;
}

int v3_reward_host_score(v3_reward_host *h, const v3_reward_sample *samples, int n,
                         v3_reward_result *out, v3_err *err) {
    int nf = h->n_funcs;
    memset(out, 0, (size_t)n * sizeof *out);
    char **enc = calloc((size_t)(n ? n : 1), sizeof *enc);
    size_t *enc_len = calloc((size_t)(n ? n : 1), sizeof *enc_len);
    call_task *tasks = calloc((size_t)(n ? n : 1) * (size_t)nf, sizeof *tasks);
    char **wraps = calloc((size_t)(n ? n : 1) * (size_t)nf, sizeof *wraps); /* judge requests */
    int rc = V3_OK, any_judge = 0;
    if (!enc || !enc_len || !tasks || !wraps) {
        free(enc);
        free(enc_len);
        free(tasks);
        free(wraps);
        return v3_errf(err, V3_ENOMEM, "reward host: out of memory");
    }
    for (int f = 0; f < nf; f++) any_judge |= h->judges[f] != NULL;
    for (int i = 0; i < n && rc == V3_OK; i++) {
        v3_err e;
        for (int f = 0; f < nf; f++) out[i].values[f].score = NAN;
        if (v3_reward_sample_encode(&samples[i], h->max_text, h->max_sample, &enc[i], &enc_len[i], &e) !=
            V3_OK) {
            for (int f = 0; f < nf; f++) set_error(h, &out[i].values[f], f, e.msg, 0);
            continue;
        }
        for (int f = 0; f < nf && rc == V3_OK; f++) {
            call_task *tk = &tasks[i * nf + f];
            *tk = (call_task){f, enc[i], enc_len[i], &out[i].values[f]};
            if (!h->judges[f]) continue;
            /* phase one of a judge module: its request() */
            size_t len = 0;
            rc = v3_judge_wire_request(enc[i], enc_len[i], &wraps[i * nf + f], &len, err);
            tk->data = wraps[i * nf + f];
            tk->len = len;
        }
    }
    if (rc == V3_OK) rc = run_tasks(h, tasks, n * nf, err);
    if (rc == V3_OK && any_judge) rc = run_judges(h, enc, enc_len, n, out, err);
    for (int i = 0; i < n * nf; i++) free(wraps[i]);
    for (int i = 0; i < n; i++) free(enc[i]);
    free(enc);
    free(enc_len);
    free(tasks);
    free(wraps);
    if (rc != V3_OK) {
        v3_reward_results_free(out, n);
        return rc;
    }
    for (int i = 0; i < n; i++) v3_reward_combine(&out[i], h->weights, nf);
    return V3_OK;
}

void v3_reward_host_judge_stats(const v3_reward_host *h, int f, v3_judge_stats *st) {
    memset(st, 0, sizeof *st);
    if (f >= 0 && f < h->n_funcs && h->judges[f]) v3_judge_get_stats(h->judges[f], st);
}
