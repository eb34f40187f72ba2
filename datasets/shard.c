/* shard.c — token shard writer (in-memory, one write) and validating mmap reader. */
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/sha256.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token shards are little-endian; this reader maps them directly"
#endif

_Static_assert(sizeof(v3_shard_header) == V3_SHARD_HEADER_SIZE, "shard header must be 128 bytes");

static uint64_t align8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

#define TBUF (1u << 18) /* token ids per write: 1 MiB */

int v3_shard_writer_init(v3_shard_writer *w, uint32_t vocab_size, v3_err *err) {
    memset(w, 0, sizeof *w);
    w->fd = -1;
    w->vocab_size = vocab_size;
    w->cap_docs = 1024;
    w->docs = malloc(w->cap_docs * sizeof *w->docs);
    w->tbuf = malloc(TBUF * sizeof *w->tbuf);
    if (!w->docs || !w->tbuf) {
        v3_shard_writer_free(w);
        return v3_errf(err, V3_ENOMEM, "shard writer: out of memory");
    }
    w->docs[0] = 0;
    return V3_OK;
}

static void abandon(v3_shard_writer *w) {
    if (w->fd < 0) return;
    close(w->fd);
    unlink(w->path);
    w->fd = -1;
}

void v3_shard_writer_free(v3_shard_writer *w) {
    if (!w) return;
    abandon(w);
    free(w->tbuf);
    free(w->mask);
    free(w->docs);
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

static int write_all(int fd, const void *p, size_t n, const char *path, v3_err *err) {
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return v3_errf(err, V3_EIO, "%s: write failed: %s", path, strerror(errno));
        c += k;
        n -= (size_t)k;
    }
    return V3_OK;
}

int v3_shard_writer_begin(v3_shard_writer *w, const char *path, v3_err *err) {
    if (w->fd >= 0) return v3_errf(err, V3_EINVAL, "%s: shard writer already has %s open", path, w->path);
    if ((size_t)snprintf(w->path, sizeof w->path, "%s", path) >= sizeof w->path)
        return v3_errf(err, V3_EINVAL, "%s: path too long", path);
    w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w->fd < 0) return v3_errf(err, V3_EIO, "%s: cannot create: %s", path, strerror(errno));
    /* a zero header until finish: a crash leaves a file every reader rejects (bad magic) */
    static const uint8_t zero_header[V3_SHARD_HEADER_SIZE] = {0};
    int rc = write_all(w->fd, zero_header, sizeof zero_header, path, err);
    if (rc) {
        abandon(w);
        return rc;
    }
    v3_sha256_init(&w->sha);
    w->n_tokens = w->n_docs = w->tbuf_n = 0;
    w->n_loss = 0;
    w->docs[0] = 0;
    return V3_OK;
}

static int drain(v3_shard_writer *w, v3_err *err) {
    if (w->tbuf_n == 0) return V3_OK;
    v3_sha256_update(&w->sha, w->tbuf, w->tbuf_n * sizeof *w->tbuf);
    int rc = write_all(w->fd, w->tbuf, w->tbuf_n * sizeof *w->tbuf, w->path, err);
    w->tbuf_n = 0;
    return rc;
}

int v3_shard_writer_add(v3_shard_writer *w, const uint32_t *ids, const uint8_t *mask, size_t n,
                        v3_err *err) {
    if (w->fd < 0) return v3_errf(err, V3_EINVAL, "shard writer: no shard open (call begin)");
    if (n == 0) return v3_errf(err, V3_EINVAL, "%s: empty document", w->path);
    for (size_t i = 0; i < n; i++)
        if (w->vocab_size && ids[i] >= w->vocab_size)
            return v3_errf(err, V3_ERANGE, "%s: token id %u >= vocab size %u", w->path, ids[i], w->vocab_size);
    if (w->n_tokens + n > w->cap_tokens) {
        size_t cap = w->cap_tokens ? w->cap_tokens : 1 << 16;
        while (cap < w->n_tokens + n) cap *= 2;
        uint8_t *m = realloc(w->mask, cap);
        if (!m) return v3_errf(err, V3_ENOMEM, "%s: out of memory for %zu tokens", w->path, cap);
        w->mask = m;
        w->cap_tokens = cap;
    }
    if (w->n_docs + 2 > w->cap_docs) {
        uint64_t *d = realloc(w->docs, 2 * w->cap_docs * sizeof *d);
        if (!d) return v3_errf(err, V3_ENOMEM, "%s: out of memory", w->path);
        w->docs = d;
        w->cap_docs *= 2;
    }
    for (size_t done = 0; done < n;) {
        size_t k = n - done < TBUF - w->tbuf_n ? n - done : TBUF - w->tbuf_n;
        memcpy(w->tbuf + w->tbuf_n, ids + done, k * sizeof *ids);
        w->tbuf_n += k;
        done += k;
        if (w->tbuf_n == TBUF) {
            int rc = drain(w, err);
            if (rc) return rc;
        }
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t m = mask ? (mask[i] != 0) : 1;
        w->mask[w->n_tokens + i] = m;
        w->n_loss += m;
    }
    w->n_tokens += n;
    w->docs[++w->n_docs] = w->n_tokens;
    return V3_OK;
}

static void layout(v3_shard_header *h, uint64_t n_docs, uint64_t n_tokens) {
    h->tokens_off = V3_SHARD_HEADER_SIZE;
    h->mask_off = h->tokens_off + 4 * n_tokens;
    h->docs_off = align8(h->mask_off + n_tokens);
    h->file_size = h->docs_off + 8 * (n_docs + 1);
}

uint64_t v3_shard_writer_bytes(const v3_shard_writer *w) {
    v3_shard_header h;
    layout(&h, w->n_docs, w->n_tokens);
    return h.file_size;
}

int v3_shard_writer_finish(v3_shard_writer *w, uint8_t digest[32], v3_err *err) {
    if (w->fd < 0) return v3_errf(err, V3_EINVAL, "shard writer: no shard open");
    v3_shard_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, V3_SHARD_MAGIC, 8);
    h.version = V3_SHARD_VERSION;
    h.header_size = V3_SHARD_HEADER_SIZE;
    h.n_docs = w->n_docs;
    h.n_tokens = w->n_tokens;
    h.flags = V3_SHARD_FLAG_MASK;
    h.vocab_size = w->vocab_size;
    layout(&h, w->n_docs, w->n_tokens);
    static const uint8_t zeros[8] = {0};
    size_t pad = (size_t)(h.docs_off - (h.mask_off + w->n_tokens));
    int rc = drain(w, err);
    v3_sha256_update(&w->sha, w->mask, w->n_tokens);
    v3_sha256_update(&w->sha, zeros, pad);
    v3_sha256_update(&w->sha, w->docs, 8 * (w->n_docs + 1));
    v3_sha256_final(&w->sha, h.sha256);
    if (!rc) rc = write_all(w->fd, w->mask, w->n_tokens, w->path, err);
    if (!rc) rc = write_all(w->fd, zeros, pad, w->path, err);
    if (!rc) rc = write_all(w->fd, w->docs, 8 * (w->n_docs + 1), w->path, err);
    /* the header goes last, so a file is recognisable as a shard only once it is complete */
    if (!rc && pwrite(w->fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        rc = v3_errf(err, V3_EIO, "%s: header write failed: %s", w->path, strerror(errno));
    if (!rc && fsync(w->fd) != 0) rc = v3_errf(err, V3_EIO, "%s: fsync failed: %s", w->path, strerror(errno));
    if (rc) {
        abandon(w);
        return rc;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        unlink(w->path);
        return v3_errf(err, V3_EIO, "%s: close failed: %s", w->path, strerror(errno));
    }
    if (digest) memcpy(digest, h.sha256, 32);
    w->n_tokens = 0;
    w->n_docs = 0;
    w->n_loss = 0;
    return V3_OK;
}

/* ---- reader ---- */

static int bad(v3_shard *s, v3_err *err, const char *fmt, unsigned long long a, unsigned long long b) {
    char what[256];
    snprintf(what, sizeof what, fmt, a, b);
    int rc = v3_errf(err, V3_EFORMAT, "%s: not a valid token shard: %s", s->path, what);
    v3_shard_close(s);
    return rc;
}

int v3_shard_open(v3_shard *s, const char *path, int flags, v3_err *err) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return v3_errf(err, V3_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return v3_errf(err, V3_EIO, "%s: cannot stat: %s", path, strerror(errno));
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < V3_SHARD_HEADER_SIZE) {
        close(fd);
        return v3_errf(err, V3_EFORMAT, "%s: not a valid token shard: %llu bytes is shorter than the header",
                       path, (unsigned long long)size);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return v3_errf(err, V3_EIO, "%s: mmap failed: %s", path, strerror(errno));
    s->map = map;
    s->map_size = (size_t)size;
    memcpy(&s->hdr, map, sizeof s->hdr);
    const v3_shard_header *h = &s->hdr;
    if (memcmp(h->magic, V3_SHARD_MAGIC, 8) != 0) return bad(s, err, "bad magic (expected \"V3TOKSHD\")%.0llu%.0llu", 0, 0);
    if (h->version != V3_SHARD_VERSION)
        return bad(s, err, "version %llu (this build reads version %llu)", h->version, V3_SHARD_VERSION);
    if (h->header_size != V3_SHARD_HEADER_SIZE)
        return bad(s, err, "header size %llu (expected %llu)", h->header_size, V3_SHARD_HEADER_SIZE);
    if (!(h->flags & V3_SHARD_FLAG_MASK) || (h->flags & ~V3_SHARD_FLAG_MASK))
        return bad(s, err, "unknown flags 0x%llx%.0llu", h->flags, 0);
    /* Bound the counts before any arithmetic on them can overflow. */
    if (h->n_tokens > size || h->n_docs > size) return bad(s, err, "counts (%llu tokens, %llu docs) exceed the file size", h->n_tokens, h->n_docs);
    v3_shard_header want;
    layout(&want, h->n_docs, h->n_tokens);
    if (h->tokens_off != want.tokens_off || h->mask_off != want.mask_off || h->docs_off != want.docs_off ||
        h->file_size != want.file_size)
        return bad(s, err, "section offsets do not match the counts (file_size field %llu, expected %llu)",
                   h->file_size, want.file_size);
    if (h->file_size != size)
        return bad(s, err, "file is %llu bytes, header says %llu (truncated or padded)", size, h->file_size);
    const uint8_t *base = map;
    s->tokens = (const uint32_t *)(base + h->tokens_off);
    s->mask = base + h->mask_off;
    s->docs = (const uint64_t *)(base + h->docs_off);
    s->n_docs = h->n_docs;
    s->n_tokens = h->n_tokens;
    if (flags & V3_SHARD_VERIFY) {
        uint8_t d[32];
        v3_sha256(base + h->header_size, (size_t)(size - h->header_size), d);
        if (memcmp(d, h->sha256, 32) != 0) {
            char want_hex[65], got_hex[65];
            v3_sha256_hex(h->sha256, want_hex);
            v3_sha256_hex(d, got_hex);
            int rc = v3_errf(err, V3_EFORMAT, "%s: checksum mismatch (header sha256 %.16s…, payload %.16s…): the shard is corrupt",
                             path, want_hex, got_hex);
            v3_shard_close(s);
            return rc;
        }
    }
    if (s->docs[0] != 0) return bad(s, err, "first document offset is %llu, not 0%.0llu", s->docs[0], 0);
    for (uint64_t i = 0; i < s->n_docs; i++)
        if (s->docs[i + 1] <= s->docs[i])
            return bad(s, err, "document %llu has offset %llu not above the previous one", i + 1, s->docs[i + 1]);
    if (s->docs[s->n_docs] != s->n_tokens)
        return bad(s, err, "last document offset %llu != token count %llu", s->docs[s->n_docs], s->n_tokens);
    for (uint64_t i = 0; i < s->n_tokens; i++)
        if (s->mask[i] > 1) return bad(s, err, "loss mask byte %llu is %llu (must be 0 or 1)", i, s->mask[i]);
    if (h->vocab_size)
        for (uint64_t i = 0; i < s->n_tokens; i++)
            if (s->tokens[i] >= h->vocab_size)
                return bad(s, err, "token %llu has id %llu >= vocab size", i, s->tokens[i]);
    return V3_OK;
}

void v3_shard_close(v3_shard *s) {
    if (!s) return;
    if (s->map) munmap(s->map, s->map_size);
    s->map = NULL;
    s->tokens = NULL;
    s->mask = NULL;
    s->docs = NULL;
}
