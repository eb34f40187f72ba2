/* test_jsonl.c — the streaming record reader: JSON Lines and JSON arrays, plain and zstd, line
 * numbers, very long lines, the record-size cap, and structural errors named file:line. */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "datasets/jsonl.h"
#include "testutil.h"

typedef struct recs {
    char **text;
    int64_t *line;
    int *too_long;
    int n;
} recs;

static void recs_free(recs *r) {
    for (int i = 0; i < r->n; i++) free(r->text[i]);
    free(r->text);
    free(r->line);
    free(r->too_long);
    memset(r, 0, sizeof *r);
}

/* Reads everything; returns the status of the failing call (or 0). */
static int read_all(v3_jsonl *j, recs *out, v3_err *err) {
    memset(out, 0, sizeof *out);
    for (;;) {
        v3_record rec;
        int got;
        int rc = v3_jsonl_next(j, &rec, &got, err);
        if (rc || !got) return rc;
        out->text = realloc(out->text, (size_t)(out->n + 1) * sizeof *out->text);
        out->line = realloc(out->line, (size_t)(out->n + 1) * sizeof *out->line);
        out->too_long = realloc(out->too_long, (size_t)(out->n + 1) * sizeof *out->too_long);
        out->text[out->n] = strndup(rec.text, rec.len);
        CHECK(strlen(rec.text) == rec.len || memchr(rec.text, 0, rec.len), "len mismatch");
        CHECK(rec.index == out->n, "index %lld != %d", (long long)rec.index, out->n);
        out->line[out->n] = rec.line;
        out->too_long[out->n] = rec.too_long;
        out->n++;
    }
}

static int read_mem(const char *data, size_t n, v3_jsonl_layout layout, size_t max_rec, recs *out, v3_err *err) {
    v3_jsonl *j;
    int rc = v3_jsonl_open_mem(&j, data, n, "mem.jsonl", layout, max_rec, err);
    if (rc) return rc;
    rc = read_all(j, out, err);
    v3_jsonl_close(j);
    return rc;
}

static void test_lines(void) {
    const char *data = "\xEF\xBB\xBF{\"a\":1}\n\n  \n{\"b\":2}\r\n{\"c\":\n3}\n{\"d\":4}";
    recs r;
    v3_err err = {0};
    CHECK_OK(read_mem(data, strlen(data), V3_JSONL_AUTO, 0, &r, &err), &err);
    CHECK(r.n == 5, "got %d records", r.n);
    if (r.n == 5) {
        CHECK(strcmp(r.text[0], "{\"a\":1}") == 0, "BOM not stripped: %s", r.text[0]);
        CHECK(r.line[0] == 1 && r.line[1] == 4 && r.line[2] == 5 && r.line[3] == 6 && r.line[4] == 7,
              "lines %lld %lld %lld %lld %lld", (long long)r.line[0], (long long)r.line[1], (long long)r.line[2],
              (long long)r.line[3], (long long)r.line[4]);
        CHECK(strcmp(r.text[1], "{\"b\":2}") == 0, "CR not stripped: \"%s\"", r.text[1]);
        CHECK(strcmp(r.text[2], "{\"c\":") == 0, "a line is a record: %s", r.text[2]);
        CHECK(strcmp(r.text[4], "{\"d\":4}") == 0, "last line without newline: %s", r.text[4]);
    }
    recs_free(&r);
    CHECK_OK(read_mem("", 0, V3_JSONL_AUTO, 0, &r, &err), &err);
    CHECK(r.n == 0, "empty input gave %d records", r.n);
    recs_free(&r);
    CHECK_OK(read_mem("\n\n\n", 3, V3_JSONL_AUTO, 0, &r, &err), &err);
    CHECK(r.n == 0, "blank input gave %d records", r.n);
    recs_free(&r);
}

static void test_array(void) {
    const char *data =
        "\n[\n  {\"s\": \"a,b]}\\\"[{\"},\n  {\"x\": [1, {\"y\": 2}]}\n  ,\n  3, \"str\" ,\n[1,2]\n]\n";
    recs r;
    v3_err err = {0};
    CHECK_OK(read_mem(data, strlen(data), V3_JSONL_AUTO, 0, &r, &err), &err);
    CHECK(r.n == 5, "got %d elements", r.n);
    if (r.n == 5) {
        CHECK(strcmp(r.text[0], "{\"s\": \"a,b]}\\\"[{\"}") == 0, "element 0: %s", r.text[0]);
        CHECK(strcmp(r.text[1], "{\"x\": [1, {\"y\": 2}]}") == 0, "element 1: %s", r.text[1]);
        CHECK(strcmp(r.text[2], "3") == 0 && strcmp(r.text[3], "\"str\"") == 0, "scalars: %s %s", r.text[2], r.text[3]);
        CHECK(strcmp(r.text[4], "[1,2]") == 0, "nested array: %s", r.text[4]);
        CHECK(r.line[0] == 3 && r.line[1] == 4 && r.line[2] == 6 && r.line[3] == 6 && r.line[4] == 7,
              "element lines %lld %lld %lld %lld %lld", (long long)r.line[0], (long long)r.line[1],
              (long long)r.line[2], (long long)r.line[3], (long long)r.line[4]);
    }
    recs_free(&r);
    CHECK_OK(read_mem("[]", 2, V3_JSONL_AUTO, 0, &r, &err), &err);
    CHECK(r.n == 0, "empty array gave %d", r.n);
    recs_free(&r);

    /* structural failures stop the file with name:line */
    const char *unclosed = "[\n{\"a\": 1},\n{\"b\": \"x\n";
    int rc = read_mem(unclosed, strlen(unclosed), V3_JSONL_AUTO, 0, &r, &err);
    CHECK(rc == V3_EFORMAT, "unclosed array rc %d", rc);
    CHECK(strcmp(err.msg, "mem.jsonl:4: the JSON array is not closed (element from line 3 never ends)") == 0,
          "message: %s", err.msg);
    CHECK(r.n == 1, "records before the failure: %d", r.n);
    recs_free(&r);
    const char *trailing = "[1,\n2]\n{\"x\":1}";
    rc = read_mem(trailing, strlen(trailing), V3_JSONL_AUTO, 0, &r, &err);
    CHECK(rc == V3_EFORMAT && strcmp(err.msg, "mem.jsonl:3: unexpected data after the JSON array") == 0,
          "rc %d: %s", rc, err.msg);
    recs_free(&r);
    rc = read_mem("[1,,2]", 6, V3_JSONL_AUTO, 0, &r, &err);
    CHECK(rc == V3_EFORMAT && strcmp(err.msg, "mem.jsonl:1: empty array element") == 0, "rc %d: %s", rc, err.msg);
    recs_free(&r);
    rc = read_mem("{\"a\":1}", 7, V3_JSONL_ARRAY, 0, &r, &err);
    CHECK(rc == V3_EFORMAT && strcmp(err.msg, "mem.jsonl:1: expected '[' to open a JSON array") == 0, "rc %d: %s", rc, err.msg);
    recs_free(&r);
}

/* Lines far longer than any I/O chunk (R1 traces reach hundreds of KB) and the record cap. */
static void test_long_lines(v3_rng *rng) {
    size_t big = 300000 + v3_rng_below(rng, 400000);
    size_t n = big + 64;
    char *data = malloc(n + 32);
    size_t k = 0;
    k += (size_t)sprintf(data + k, "{\"a\":1}\n{\"t\":\"");
    size_t body0 = k;
    for (size_t i = 0; i < big; i++) data[k++] = (char)('a' + v3_rng_below(rng, 26));
    k += (size_t)sprintf(data + k, "\"}\n{\"z\":2}\n");
    recs r;
    v3_err err = {0};
    CHECK_OK(read_mem(data, k, V3_JSONL_AUTO, 0, &r, &err), &err);
    CHECK(r.n == 3 && strlen(r.text[1]) == big + 8, "long line: %d records, len %zu", r.n, r.n > 1 ? strlen(r.text[1]) : 0);
    if (r.n == 3) CHECK(memcmp(r.text[1] + 6, data + body0, big) == 0, "long line bytes differ");
    recs_free(&r);
    /* with a cap below it, the long line is flagged and skipped; the next line is intact */
    CHECK_OK(read_mem(data, k, V3_JSONL_AUTO, 1000, &r, &err), &err);
    CHECK(r.n == 3 && r.too_long[1] && !r.too_long[0] && !r.too_long[2] && r.line[2] == 3 &&
              strcmp(r.text[2], "{\"z\":2}") == 0,
          "capped: n %d", r.n);
    recs_free(&r);
    free(data);
}

static char *write_tmp(const char *dir, const char *name, const void *data, size_t n, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
    return path;
}

/* Random rows written plain, as zstd (several frames) and as a JSON array read back equal. */
static void test_zstd_roundtrip(v3_rng *rng, const char *dir) {
    int rows = 200 + (int)v3_rng_below(rng, 300);
    size_t cap = 1 << 20, n = 0;
    char *plain = malloc(cap);
    char **want = calloc((size_t)rows, sizeof *want);
    for (int i = 0; i < rows; i++) {
        size_t len = 1 + v3_rng_below(rng, i % 50 == 0 ? 20000 : 200);
        char *s = malloc(len + 32);
        int k = sprintf(s, "{\"i\":%d,\"s\":\"", i);
        for (size_t j = 0; j < len; j++) s[k++] = (char)('A' + v3_rng_below(rng, 26));
        k += sprintf(s + k, "\"}");
        want[i] = s;
        while (n + (size_t)k + 2 > cap) plain = realloc(plain, cap *= 2);
        memcpy(plain + n, s, (size_t)k);
        n += (size_t)k;
        plain[n++] = '\n';
    }
    /* two zstd frames back to back, split mid-line: the stream must continue across them */
    size_t half = n / 2, zc = ZSTD_compressBound(n) + 64;
    char *z = malloc(zc);
    size_t z1 = ZSTD_compress(z, zc, plain, half, 3);
    size_t z2 = ZSTD_compress(z + z1, zc - z1, plain + half, n - half, 1);
    CHECK(!ZSTD_isError(z1) && !ZSTD_isError(z2), "compress failed");
    char p1[4096], p2[4096], p3[4096];
    write_tmp(dir, "rows.jsonl", plain, n, p1, sizeof p1);
    write_tmp(dir, "rows.jsonl.zst", z, z1 + z2, p2, sizeof p2);
    const char *paths[2] = {p1, p2};
    for (int f = 0; f < 2; f++) {
        v3_jsonl *j;
        v3_err err = {0};
        recs r = {0};
        CHECK_OK(v3_jsonl_open(&j, paths[f], V3_JSONL_AUTO, 0, &err), &err);
        CHECK_OK(read_all(j, &r, &err), &err);
        CHECK(v3_jsonl_bytes_in(j) == (f ? z1 + z2 : n), "bytes_in %llu", (unsigned long long)v3_jsonl_bytes_in(j));
        v3_jsonl_close(j);
        CHECK(r.n == rows, "%s: %d rows, want %d", paths[f], r.n, rows);
        for (int i = 0; i < r.n && i < rows; i++) {
            CHECK(strcmp(r.text[i], want[i]) == 0, "%s row %d differs", paths[f], i);
            CHECK(r.line[i] == i + 1, "%s row %d line %lld", paths[f], i, (long long)r.line[i]);
        }
        recs_free(&r);
    }
    /* truncated zstd: the rows before the cut come out, then a named error */
    write_tmp(dir, "cut.jsonl.zst", z, z1 + z2 / 2, p3, sizeof p3);
    v3_jsonl *j;
    v3_err err = {0};
    recs r;
    CHECK_OK(v3_jsonl_open(&j, p3, V3_JSONL_AUTO, 0, &err), &err);
    int rc = read_all(j, &r, &err);
    v3_jsonl_close(j);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, "cut.jsonl.zst:") && strstr(err.msg, "truncated zstd stream"),
          "truncated zstd: rc %d: %s", rc, err.msg);
    CHECK(r.n > 0 && r.n < rows, "rows before the cut: %d", r.n);
    recs_free(&r);
    /* corrupt zstd data */
    z[z1 + 20] ^= 0x55;
    z[z1 + 21] ^= 0xAA;
    write_tmp(dir, "bad.jsonl.zst", z, z1 + z2, p3, sizeof p3);
    CHECK_OK(v3_jsonl_open(&j, p3, V3_JSONL_AUTO, 0, &err), &err);
    rc = read_all(j, &r, &err);
    v3_jsonl_close(j);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, "bad.jsonl.zst:"), "corrupt zstd: rc %d: %s", rc, err.msg);
    recs_free(&r);
    rc = v3_jsonl_open(&j, "/nonexistent/x.jsonl", V3_JSONL_AUTO, 0, &err);
    CHECK(rc == V3_EIO && strstr(err.msg, "/nonexistent/x.jsonl: cannot open"), "missing file: %s", err.msg);

    for (int i = 0; i < rows; i++) free(want[i]);
    free(want);
    free(plain);
    free(z);
}

static void test_shared_files(void) {
    char path[4096];
    v3_jsonl *j;
    v3_err err = {0};
    recs r;
    CHECK_OK(v3_jsonl_open(&j, t_data_path("sft_llamafactory_demo/alpaca_en_demo.json", path, sizeof path),
                           V3_JSONL_AUTO, 0, &err), &err);
    CHECK_OK(read_all(j, &r, &err), &err);
    CHECK(v3_jsonl_layout_of(j) == V3_JSONL_ARRAY, "alpaca demo is an array");
    CHECK(r.n == 999, "alpaca demo has 999 rows, read %d", r.n);
    CHECK(r.n > 1 && r.line[0] == 2 && r.line[1] == 7, "alpaca element lines %lld %lld", (long long)r.line[0], (long long)r.line[1]);
    v3_jsonl_close(j);
    recs_free(&r);
    CHECK_OK(v3_jsonl_open(&j, t_data_path("gsm8k/train.jsonl", path, sizeof path), V3_JSONL_AUTO, 0, &err), &err);
    CHECK_OK(read_all(j, &r, &err), &err);
    CHECK(v3_jsonl_layout_of(j) == V3_JSONL_LINES && r.n == 7473 && r.line[7472] == 7473, "gsm8k train: %d rows", r.n);
    v3_jsonl_close(j);
    recs_free(&r);
}

int main(void) {
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_jsonl"));
    char dir[4096];
    t_tmpdir(dir, sizeof dir);
    test_lines();
    test_array();
    test_long_lines(&rng);
    test_zstd_roundtrip(&rng, dir);
    test_shared_files();
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return t_finish("test_jsonl");
}
