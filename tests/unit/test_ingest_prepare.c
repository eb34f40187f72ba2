/* test_ingest_prepare.c — the prepare pipeline end to end with a stand-in byte encoder (the real
 * tokenizer is tested by its own suite): bad rows reported as file:line: reason, strict mode
 * leaves nothing behind, overlong policies, and output identical for any number of jobs. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "common/fs.h"
#include "datasets/pack.h"
#include "datasets/prepare.h"
#include "testutil.h"

/* Stand-in encoder: one marker id per message (256 + role, not trained on), then the content
 * bytes (trained on for assistant and raw text), then an end id 300 for assistant turns. A
 * content holding "ENCODE_FAIL" fails as a real tokenizer fails on invalid UTF-8. */
static int push_bytes(v3_sample *s, const char *t, uint8_t m, v3_err *err) {
    for (; t && *t; t++) {
        int32_t id = (unsigned char)*t;
        int rc = v3_sample_push(s, &id, 1, m, err);
        if (rc) return rc;
    }
    return V3_OK;
}

static int byte_encode(void *ctx, const v3_conv *c, v3_sample *out, v3_err *err) {
    (void)ctx;
    for (int i = 0; i < c->n_msgs; i++) {
        const v3_msg *m = &c->msgs[i];
        if (m->content && strstr(m->content, "ENCODE_FAIL")) return v3_errf(err, V3_EFORMAT, "invalid UTF-8 at byte 3");
        int32_t marker = 256 + (int32_t)m->role, end = 300;
        uint8_t train = m->role == V3_ROLE_ASSISTANT || m->role == V3_ROLE_TEXT;
        int rc = v3_sample_push(out, &marker, 1, 0, err);
        if (!rc) rc = push_bytes(out, m->reasoning, train, err);
        for (int k = 0; !rc && k < m->n_calls; k++) {
            rc = push_bytes(out, m->calls[k].name, train, err);
            if (!rc) rc = push_bytes(out, m->calls[k].arguments, train, err);
        }
        if (!rc) rc = push_bytes(out, m->content, train, err);
        if (!rc && m->role == V3_ROLE_ASSISTANT) rc = v3_sample_push(out, &end, 1, 1, err);
        if (rc) return rc;
    }
    return V3_OK;
}

static v3_encoder stand_in(void) {
    v3_encoder e;
    memset(&e, 0, sizeof e);
    e.encode = byte_encode;
    e.vocab_size = 512;
    snprintf(e.name, sizeof e.name, "test byte encoder");
    memset(e.hash, '0', 64);
    return e;
}

static void write_file(const char *path, const char *data) {
    FILE *f = fopen(path, "wb");
    fputs(data, f);
    fclose(f);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static void test_bad_rows(const char *tmp) {
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/mixed.jsonl", tmp);
    snprintf(out, sizeof out, "%s/mixed.out", tmp);
    /* line: content */
    write_file(in,
               "{\"prompt\":\"p\",\"completion\":\"good one\"}\n"                       /* 1 ok */
               "{\"prompt\": \"p\", \"completion\": \n"                                 /* 2 invalid JSON */
               "{\"instruction\":\"i\"}\n"                                              /* 3 missing field */
               "\n"                                                                     /* 4 blank: not a row */
               "{\"instruction\":\"i\",\"output\":[1]}\n"                               /* 5 wrong type */
               "{\"messages\":[]}\n"                                                    /* 6 empty conversation */
               "{\"prompt\":\"p\",\"completion\":\"" "0123456789012345678901234567890123456789\"}\n" /* 7 overlong */
               "{\"prompt\":\"p\",\"completion\":\"ENCODE_FAIL\"}\n"                    /* 8 encoder failure */
               "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}\n"               /* 9 no assistant */
               "{\"prompt\":\"p\",\"completion\":\"" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n" /* 10 record too long */
               "{\"text\":\"fine\"}\n"                                                  /* 11 ok */
               "{\"conversations\":[{\"from\":\"human\",\"value\":\"a\"},{\"from\":\"gpt\",\"value\":\"b\"}]}\n" /* 12 ok */
               "[]\n");                                                                 /* 13 not an object */
    v3_encoder enc = stand_in();
    v3_prepare_opts o;
    v3_prepare_opts_default(&o);
    const char *inputs[1] = {in};
    o.inputs = inputs;
    o.n_inputs = 1;
    o.out_dir = out;
    o.max_len = 30;
    o.overlong = V3_OVERLONG_DROP;
    o.max_record = 100;
    o.jobs = 2;
    v3_prepare_stats st;
    v3_err err = {0};
    CHECK_OK(v3_prepare_run(&o, &enc, &st, &err), &err);
    char want[10][5000];
    const char *reasons[10] = {
        "2: invalid JSON: unexpected token near end of file (line 1, column 29 of the row)",
        "3: missing field \"output\"",
        "5: field \"output\" is not a string (got array)",
        "6: empty conversation",
        "7: sample has 44 tokens > --max-len 30 (dropped)",
        "8: cannot encode: invalid UTF-8 at byte 3",
        "9: no assistant message (nothing to train on)",
        "10: record longer than 100 bytes (raise --max-record)",
        "13: row is not a JSON object (got array)",
        NULL};
    int n_want = 0;
    for (; reasons[n_want]; n_want++) snprintf(want[n_want], sizeof want[n_want], "%s:%s", in, reasons[n_want]);
    CHECK(st.rows == 12 && st.bad_rows == (uint64_t)n_want && st.docs == 3 && st.dropped_overlong == 1,
          "rows %llu bad %llu docs %llu dropped %llu", (unsigned long long)st.rows, (unsigned long long)st.bad_rows,
          (unsigned long long)st.docs, (unsigned long long)st.dropped_overlong);
    CHECK(st.n_errors == n_want, "%d errors listed", st.n_errors);
    for (int i = 0; i < st.n_errors && i < n_want; i++)
        CHECK(strcmp(st.errors[i], want[i]) == 0, "error %d:\n   got  %s\n   want %s", i, st.errors[i], want[i]);

    /* truncate instead: the overlong row is kept, cut to max_len */
    o.overlong = V3_OVERLONG_TRUNCATE;
    o.force = 1;
    CHECK_OK(v3_prepare_run(&o, &enc, &st, &err), &err);
    CHECK(st.docs == 4 && st.truncated == 1 && st.bad_rows == (uint64_t)n_want - 1, "truncate: docs %llu truncated %llu",
          (unsigned long long)st.docs, (unsigned long long)st.truncated);
    v3_dataset d;
    CHECK_OK(v3_dataset_open(&d, out, "train", V3_SHARD_VERIFY, &err), &err);
    uint64_t maxlen = 0;
    for (uint64_t i = 0; i < d.n_docs; i++) {
        const uint32_t *t;
        const uint8_t *m;
        uint64_t len;
        v3_dataset_doc(&d, i, &t, &m, &len);
        if (len > maxlen) maxlen = len;
    }
    CHECK(d.n_docs == 4 && maxlen == 30, "docs %llu, longest %llu", (unsigned long long)d.n_docs, (unsigned long long)maxlen);
    v3_dataset_close(&d);

    /* an existing dataset is not replaced without force */
    o.force = 0;
    int rc = v3_prepare_run(&o, &enc, &st, &err);
    CHECK(rc == V3_EINVAL && strstr(err.msg, "already holds a prepared dataset"), "no force: rc %d %s", rc, err.msg);

    /* strict: the run stops at the first bad row and leaves nothing that looks complete */
    char out2[4096];
    snprintf(out2, sizeof out2, "%s/strict.out", tmp);
    o.out_dir = out2;
    o.strict = 1;
    o.shard_bytes = 4096; /* so a shard would have been flushed before the failure if rows allowed */
    rc = v3_prepare_run(&o, &enc, &st, &err);
    CHECK(rc == V3_EFORMAT && strcmp(err.msg, want[0]) == 0, "strict: rc %d: %s", rc, err.msg);
    CHECK(count_files(out2) == 0, "strict run left %d files in %s", count_files(out2), out2);

    /* more than 10 bad rows: 10 listed, all counted */
    char in2[4096];
    snprintf(in2, sizeof in2, "%s/bad25.jsonl", tmp);
    FILE *f = fopen(in2, "w");
    for (int i = 0; i < 25; i++) fprintf(f, "{\"nope\":%d}\n", i);
    fprintf(f, "{\"text\":\"ok\"}\n");
    fclose(f);
    inputs[0] = in2;
    o.strict = 0;
    o.force = 1;
    CHECK_OK(v3_prepare_run(&o, &enc, &st, &err), &err);
    CHECK(st.bad_rows == 25 && st.n_errors == V3_PREPARE_MAX_ERRORS && st.docs == 1, "bad25: bad %llu listed %d",
          (unsigned long long)st.bad_rows, st.n_errors);
    char w10[5000];
    snprintf(w10, sizeof w10, "%s:10: no known fields", in2);
    CHECK(strncmp(st.errors[9], w10, strlen(w10)) == 0, "10th error: %s", st.errors[9]);
}

static int same_file(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    v3_err err = {0};
    if (v3_read_file(a, &x, &nx, (size_t)1 << 30, &err)) return 0;
    if (v3_read_file(b, &y, &ny, (size_t)1 << 30, &err)) {
        free(x);
        return 0;
    }
    int same = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

/* Real data from ../shared/data (plus a zstd copy of gsm8k test): jobs 1, 2, 3 → same bytes. */
static void test_jobs_identical(const char *tmp, v3_rng *rng) {
    char p[4][4096], zst[4096];
    t_data_path("sft_llamafactory_demo/alpaca_en_demo.json", p[0], sizeof p[0]);
    t_data_path("sft_llamafactory_demo/glaive_toolcall_en_demo.json", p[1], sizeof p[1]);
    t_data_path("gsm8k/train.jsonl", p[2], sizeof p[2]);
    char *buf;
    size_t n;
    v3_err err = {0};
    CHECK_OK(v3_read_file(t_data_path("gsm8k/test.jsonl", p[3], sizeof p[3]), &buf, &n, (size_t)1 << 30, &err), &err);
    size_t zc = ZSTD_compressBound(n);
    char *z = malloc(zc);
    size_t zn = ZSTD_compress(z, zc, buf, n, 3);
    snprintf(zst, sizeof zst, "%s/gsm8k_test.jsonl.zst", tmp);
    FILE *f = fopen(zst, "wb");
    fwrite(z, 1, zn, f);
    fclose(f);
    free(z);
    free(buf);
    const char *inputs[4] = {p[0], p[1], p[2], zst};

    v3_encoder enc = stand_in();
    v3_prepare_opts o;
    v3_prepare_opts_default(&o);
    o.inputs = inputs;
    o.n_inputs = 4;
    char s1[] = "prompt=question", s2[] = "completion=answer";
    v3_ingest_map_field(&o.ingest, s1, &err);
    v3_ingest_map_field(&o.ingest, s2, &err);
    o.eval_fraction = 0.05 + 0.2 * v3_rng_uniform_f64(rng);
    o.seed = v3_rng_u64(rng);
    o.shard_bytes = (uint64_t)(200000 + v3_rng_below(rng, 2000000));
    o.max_len = 1024;
    o.mask_last = 1;
    const int jobs[3] = {1, 2, 3};
    char dirs[3][4096];
    v3_prepare_stats st[3];
    for (int k = 0; k < 3; k++) {
        snprintf(dirs[k], sizeof dirs[k], "%s/jobs%d", tmp, jobs[k]);
        o.out_dir = dirs[k];
        o.jobs = jobs[k];
        CHECK_OK(v3_prepare_run(&o, &enc, &st[k], &err), &err);
    }
    uint64_t want_rows = 999 + 300 + 7473 + 1319;
    /* byte-level stand-in tokens are long: some last answers start past max_len and are dropped */
    CHECK(st[0].rows == want_rows && st[0].bad_rows < want_rows / 20, "rows %llu (want %llu), bad %llu",
          (unsigned long long)st[0].rows, (unsigned long long)want_rows, (unsigned long long)st[0].bad_rows);
    for (int i = 0; i < st[0].n_errors; i++)
        CHECK(strstr(st[0].errors[i], "> --max-len 1024 and no loss token survives truncation"), "unexpected bad row %s",
              st[0].errors[i]);
    CHECK(st[0].docs_eval > 0 && st[0].docs_train > st[0].docs_eval && st[0].n_shards > 2, "split %llu/%llu, %d shards",
          (unsigned long long)st[0].docs_train, (unsigned long long)st[0].docs_eval, st[0].n_shards);
    double frac = (double)st[0].docs_eval / (double)st[0].docs;
    CHECK(frac > o.eval_fraction - 0.03 && frac < o.eval_fraction + 0.03, "eval fraction %.3f for %.3f", frac, o.eval_fraction);
    for (int k = 1; k < 3; k++) {
        CHECK(st[k].docs == st[0].docs && st[k].tokens == st[0].tokens && st[k].n_shards == st[0].n_shards,
              "jobs %d stats differ", jobs[k]);
        CHECK(count_files(dirs[k]) == count_files(dirs[0]), "jobs %d: %d files vs %d", jobs[k], count_files(dirs[k]),
              count_files(dirs[0]));
        DIR *d = opendir(dirs[0]);
        struct dirent *e;
        int compared = 0;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char a[8192], b[8192];
            snprintf(a, sizeof a, "%s/%s", dirs[0], e->d_name);
            snprintf(b, sizeof b, "%s/%s", dirs[k], e->d_name);
            CHECK(same_file(a, b), "%s differs between jobs 1 and %d", e->d_name, jobs[k]);
            compared++;
        }
        if (d) closedir(d);
        CHECK(compared == st[0].n_shards + 1, "compared %d files", compared);
    }
    /* --mask last kept exactly one run of loss tokens per document */
    v3_dataset ds;
    CHECK_OK(v3_dataset_open(&ds, dirs[0], NULL, V3_SHARD_VERIFY, &err), &err);
    uint64_t multi = 0;
    for (uint64_t i = 0; i < ds.n_docs; i++) {
        const uint32_t *t;
        const uint8_t *m;
        uint64_t len;
        v3_dataset_doc(&ds, i, &t, &m, &len);
        int runs = 0;
        for (uint64_t k = 0; k < len; k++) runs += m[k] && (k == 0 || !m[k - 1]);
        multi += runs != 1;
    }
    CHECK(ds.n_docs == st[0].docs && multi == 0, "docs %llu, %llu with != 1 loss run", (unsigned long long)ds.n_docs,
          (unsigned long long)multi);
    v3_dataset_close(&ds);
}

int main(void) {
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_ingest_prepare"));
    char tmp[1024];
    t_tmpdir(tmp, sizeof tmp);
    test_bad_rows(tmp);
    test_jobs_identical(tmp, &rng);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return t_finish("test_ingest_prepare");
}
