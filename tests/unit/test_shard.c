/* test_shard.c — token shard round trip and detection of every kind of corruption. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/sha256.h"
#include "datasets/shard.h"
#include "testutil.h"

typedef struct doc {
    uint32_t *ids;
    uint8_t *mask;
    size_t n;
} doc;

static char *slurp(const char *path, size_t *n) {
    char *b;
    v3_err err = {0};
    if (v3_read_file(path, &b, n, (size_t)1 << 30, &err)) return NULL;
    return b;
}

static void spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

/* Rewrites the checksum after a deliberate edit, so the structural checks are what must fire. */
static void reseal(char *b, size_t n) {
    v3_shard_header h;
    memcpy(&h, b, sizeof h);
    v3_sha256(b + V3_SHARD_HEADER_SIZE, n - V3_SHARD_HEADER_SIZE, h.sha256);
    memcpy(b, &h, sizeof h);
}

static void expect_fail(const char *path, const char *orig, size_t n, void (*edit)(char *, size_t *), int flags,
                        const char *what, const char *needle) {
    char *b = malloc(n + 64);
    memcpy(b, orig, n);
    size_t m = n;
    edit(b, &m);
    spit(path, b, m);
    free(b);
    v3_shard s;
    v3_err err = {0};
    int rc = v3_shard_open(&s, path, flags, &err);
    CHECK(rc == V3_EFORMAT, "%s: rc %d (%s)", what, rc, err.msg);
    CHECK(strstr(err.msg, path) == err.msg, "%s: message does not start with the file: %s", what, err.msg);
    CHECK(strstr(err.msg, needle) != NULL, "%s: message lacks \"%s\": %s", what, needle, err.msg);
    if (rc == V3_OK) v3_shard_close(&s);
}

static void e_magic(char *b, size_t *n) { (void)n; b[0] = 'X'; }
static void e_version(char *b, size_t *n) { (void)n; b[8] = 9; reseal(b, *n); }
static void e_hsize(char *b, size_t *n) { (void)n; b[12] = 64; }
static void e_truncate(char *b, size_t *n) { (void)b; *n -= 8; }
static void e_append(char *b, size_t *n) { memset(b + *n, 0, 8); *n += 8; }
static void e_payload(char *b, size_t *n) { b[V3_SHARD_HEADER_SIZE + 5 + (*n - V3_SHARD_HEADER_SIZE) / 3] ^= 0x10; }
static void e_ntokens(char *b, size_t *n) { (void)n; b[24] += 1; reseal(b, *n); }
static void e_docs_order(char *b, size_t *n) { /* the second document offset set below the first */
    v3_shard_header h;
    memcpy(&h, b, sizeof h);
    uint64_t zero = 0;
    memcpy(b + h.docs_off + 8, &zero, 8);
    reseal(b, *n);
}
static void e_mask(char *b, size_t *n) {
    v3_shard_header h;
    memcpy(&h, b, sizeof h);
    b[h.mask_off + 3] = 2;
    reseal(b, *n);
}
static void e_token(char *b, size_t *n) {
    v3_shard_header h;
    memcpy(&h, b, sizeof h);
    uint32_t big = h.vocab_size;
    memcpy(b + h.tokens_off + 4, &big, 4);
    reseal(b, *n);
}
static void e_short(char *b, size_t *n) { (void)b; *n = 100; }

int main(void) {
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_shard"));
    char dir[1024], path[2048], bad[2048];
    t_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/train-00000.bin", dir);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);

    const uint32_t vocab = 129280;
    int n_docs = 50 + (int)v3_rng_below(&rng, 200);
    doc *docs = calloc((size_t)n_docs, sizeof *docs);
    v3_shard_writer w;
    v3_err err = {0};
    CHECK_OK(v3_shard_writer_init(&w, vocab, &err), &err);
    uint32_t one = 1;
    CHECK(v3_shard_writer_add(&w, &one, NULL, 1, &err) == V3_EINVAL, "add without an open shard accepted");
    CHECK_OK(v3_shard_writer_begin(&w, path, &err), &err);
    uint64_t total = 0, loss = 0;
    for (int i = 0; i < n_docs; i++) {
        size_t n = 1 + v3_rng_below(&rng, i % 17 == 0 ? 5000 : 300);
        docs[i].ids = malloc(n * sizeof(uint32_t));
        docs[i].mask = malloc(n);
        docs[i].n = n;
        for (size_t k = 0; k < n; k++) {
            docs[i].ids[k] = (uint32_t)v3_rng_below(&rng, vocab);
            docs[i].mask[k] = (uint8_t)(v3_rng_below(&rng, 3) != 0);
            loss += docs[i].mask[k];
        }
        total += n;
        CHECK_OK(v3_shard_writer_add(&w, docs[i].ids, docs[i].mask, n, &err), &err);
    }
    uint32_t too_big = vocab;
    CHECK(v3_shard_writer_add(&w, &too_big, NULL, 1, &err) == V3_ERANGE, "id >= vocab accepted");
    CHECK(v3_shard_writer_add(&w, &too_big, NULL, 0, &err) == V3_EINVAL, "empty document accepted");
    uint64_t bytes = v3_shard_writer_bytes(&w);
    uint8_t digest[32];
    /* until finish, the file has a zero header: a crash leaves nothing a reader accepts */
    v3_shard s;
    CHECK(v3_shard_open(&s, path, 0, &err) == V3_EFORMAT && strstr(err.msg, "bad magic"), "unfinished shard opened: %s", err.msg);
    CHECK_OK(v3_shard_writer_finish(&w, digest, &err), &err);
    CHECK(w.n_docs == 0 && w.n_tokens == 0 && !v3_shard_writer_is_open(&w), "writer not emptied after finish");
    CHECK(v3_file_size(path) == (int64_t)bytes, "file %lld bytes, predicted %llu", (long long)v3_file_size(path),
          (unsigned long long)bytes);

    /* round trip */
    CHECK_OK(v3_shard_open(&s, path, V3_SHARD_VERIFY, &err), &err);
    CHECK(s.n_docs == (uint64_t)n_docs && s.n_tokens == total, "counts %llu docs %llu tokens", (unsigned long long)s.n_docs,
          (unsigned long long)s.n_tokens);
    CHECK(memcmp(s.hdr.sha256, digest, 32) == 0, "digest returned by flush differs from the header");
    int same = 1;
    uint64_t loss_read = 0;
    for (int i = 0; i < n_docs && s.map; i++) {
        same &= v3_shard_doc_len(&s, (uint64_t)i) == docs[i].n;
        same &= memcmp(s.tokens + s.docs[i], docs[i].ids, docs[i].n * 4) == 0;
        same &= memcmp(s.mask + s.docs[i], docs[i].mask, docs[i].n) == 0;
    }
    for (uint64_t k = 0; k < s.n_tokens; k++) loss_read += s.mask[k];
    CHECK(same && loss_read == loss, "round trip differs");
    CHECK(((uintptr_t)s.docs & 7) == 0 && ((uintptr_t)s.tokens & 3) == 0, "sections misaligned");
    v3_shard_close(&s);

    /* every corruption is refused, naming the file */
    size_t n;
    char *orig = slurp(path, &n);
    expect_fail(bad, orig, n, e_magic, 0, "bad magic", "bad magic");
    expect_fail(bad, orig, n, e_version, V3_SHARD_VERIFY, "version", "version 9");
    expect_fail(bad, orig, n, e_hsize, 0, "header size", "header size 64");
    expect_fail(bad, orig, n, e_truncate, 0, "truncated", "truncated");
    expect_fail(bad, orig, n, e_append, 0, "padded", "truncated or padded");
    expect_fail(bad, orig, n, e_payload, V3_SHARD_VERIFY, "payload bit flip", "checksum mismatch");
    expect_fail(bad, orig, n, e_ntokens, 0, "token count", "section offsets");
    expect_fail(bad, orig, n, e_docs_order, 0, "doc offsets", "not above the previous one");
    expect_fail(bad, orig, n, e_mask, 0, "mask byte", "loss mask byte 3 is 2");
    expect_fail(bad, orig, n, e_token, 0, "token id", "token 1 has id");
    expect_fail(bad, orig, n, e_short, 0, "short file", "shorter than the header");
    /* the unedited bytes still open */
    spit(bad, orig, n);
    CHECK_OK(v3_shard_open(&s, bad, V3_SHARD_VERIFY, &err), &err);
    v3_shard_close(&s);
    CHECK(v3_shard_open(&s, "/nonexistent/x.bin", 0, &err) == V3_EIO && strstr(err.msg, "/nonexistent/x.bin"),
          "missing file: %s", err.msg);
    free(orig);

    /* an empty shard (no documents) is valid */
    CHECK_OK(v3_shard_writer_begin(&w, bad, &err), &err);
    CHECK_OK(v3_shard_writer_finish(&w, NULL, &err), &err);
    CHECK_OK(v3_shard_open(&s, bad, V3_SHARD_VERIFY, &err), &err);
    CHECK(s.n_docs == 0 && s.n_tokens == 0, "empty shard counts");
    v3_shard_close(&s);

    /* a writer freed with a shard open deletes the unfinished file */
    char partial[2100];
    snprintf(partial, sizeof partial, "%s.part", path);
    CHECK_OK(v3_shard_writer_begin(&w, partial, &err), &err);
    CHECK_OK(v3_shard_writer_add(&w, &one, NULL, 1, &err), &err);
    v3_shard_writer_free(&w);
    CHECK(!v3_file_exists(partial), "unfinished shard left behind");
    for (int i = 0; i < n_docs; i++) {
        free(docs[i].ids);
        free(docs[i].mask);
    }
    free(docs);
    unlink(path);
    unlink(bad);
    rmdir(dir);
    return t_finish("test_shard");
}
