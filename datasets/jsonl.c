/* jsonl.c — streaming record reader: plain or zstd bytes in, one record (line or array element)
 * out at a time, with the line it starts on. */
#include "jsonl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define CHUNK (1u << 17)
#define DEFAULT_MAX_RECORD ((size_t)64 << 20)

/* array splitter states between records: before '[', expecting an element (the separator after
 * an element is consumed with it), after the closing ']' */
enum { ARR_OPEN, ARR_ELEM, ARR_DONE };

struct v3_jsonl {
    char name[1024];
    int fd;                 /* -1 for a memory source */
    const uint8_t *mem;     /* memory source (not owned) */
    size_t mem_n, mem_pos;
    int src_eof;
    uint64_t bytes_in;

    int zstd;               /* 1 when the source is a zstd stream */
    ZSTD_DStream *zs;
    uint8_t *zin;           /* raw input chunk */
    ZSTD_inBuffer zib;
    size_t zret;            /* last ZSTD_decompressStream result: 0 at a frame boundary */

    uint8_t *buf;           /* decoded bytes window [pos, end) */
    size_t pos, end;
    int eof;                /* decoded stream exhausted */

    v3_jsonl_layout layout;
    int arr_state;
    size_t max_record;
    char *rec;              /* the current record, grown as needed */
    size_t rec_len, rec_cap;
    int too_long;
    int64_t line;           /* line of the byte at pos */
    int64_t index;
    int started;            /* the BOM / layout sniff has been done */
};

static long raw_read(v3_jsonl *r, uint8_t *dst, size_t cap) {
    if (r->src_eof) return 0;
    if (r->fd < 0) {
        size_t n = r->mem_n - r->mem_pos;
        if (n > cap) n = cap;
        memcpy(dst, r->mem + r->mem_pos, n);
        r->mem_pos += n;
        if (n == 0) r->src_eof = 1;
        r->bytes_in += n;
        return (long)n;
    }
    for (;;) {
        ssize_t n = read(r->fd, dst, cap);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) r->src_eof = 1;
        r->bytes_in += (uint64_t)n;
        return (long)n;
    }
}

/* Makes decoded bytes available at buf[pos..end). Returns 1, 0 at the end, or an error code
 * (negated) with err filled. */
static int fill(v3_jsonl *r, v3_err *err) {
    if (r->pos < r->end) return 1;
    if (r->eof) return 0;
    if (!r->zstd) {
        long n = raw_read(r, r->buf, CHUNK);
        if (n < 0) return -v3_errf(err, V3_EIO, "%s:%lld: read failed: %s", r->name, (long long)r->line, strerror(errno));
        r->pos = 0;
        r->end = (size_t)n;
        if (n == 0) r->eof = 1;
        return n > 0;
    }
    for (;;) {
        if (r->zib.pos == r->zib.size && !r->src_eof) {
            long n = raw_read(r, r->zin, ZSTD_DStreamInSize());
            if (n < 0) return -v3_errf(err, V3_EIO, "%s:%lld: read failed: %s", r->name, (long long)r->line, strerror(errno));
            r->zib.src = r->zin;
            r->zib.size = (size_t)n;
            r->zib.pos = 0;
        }
        if (r->zib.pos == r->zib.size && r->src_eof && r->zret == 0) {
            r->eof = 1; /* every frame ended cleanly (a call now would report a next frame's header size) */
            return 0;
        }
        ZSTD_outBuffer ob = {r->buf, CHUNK, 0};
        size_t ret = ZSTD_decompressStream(r->zs, &ob, &r->zib);
        if (ZSTD_isError(ret))
            return -v3_errf(err, V3_EFORMAT, "%s:%lld: corrupt zstd data: %s", r->name, (long long)r->line,
                            ZSTD_getErrorName(ret));
        r->zret = ret;
        if (ob.pos > 0) {
            r->pos = 0;
            r->end = ob.pos;
            return 1;
        }
        if (r->zib.pos == r->zib.size && r->src_eof) {
            r->eof = 1;
            if (r->zret != 0)
                return -v3_errf(err, V3_EFORMAT, "%s:%lld: truncated zstd stream", r->name, (long long)r->line);
            return 0;
        }
    }
}

static int setup(v3_jsonl *r, v3_jsonl_layout layout, size_t max_record, v3_err *err) {
    r->layout = layout;
    r->max_record = max_record ? max_record : DEFAULT_MAX_RECORD;
    r->line = 1;
    size_t zin_cap = ZSTD_DStreamInSize();
    if (zin_cap < CHUNK) zin_cap = CHUNK;
    r->zin = malloc(zin_cap);
    r->buf = malloc(CHUNK);
    r->rec_cap = 4096;
    r->rec = malloc(r->rec_cap);
    if (!r->zin || !r->buf || !r->rec) return v3_errf(err, V3_ENOMEM, "%s: out of memory", r->name);
    /* Sniff the zstd magic (28 b5 2f fd) on the first raw chunk. */
    long n = raw_read(r, r->zin, CHUNK);
    if (n < 0) return v3_errf(err, V3_EIO, "%s: read failed: %s", r->name, strerror(errno));
    static const uint8_t magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    if (n >= 4 && memcmp(r->zin, magic, 4) == 0) {
        r->zstd = 1;
        r->zs = ZSTD_createDStream();
        if (!r->zs) return v3_errf(err, V3_ENOMEM, "%s: out of memory", r->name);
        ZSTD_initDStream(r->zs);
        r->zib.src = r->zin;
        r->zib.size = (size_t)n;
        r->zib.pos = 0;
    } else {
        memcpy(r->buf, r->zin, (size_t)n);
        r->pos = 0;
        r->end = (size_t)n;
        if (n == 0) r->eof = 1;
    }
    return V3_OK;
}

int v3_jsonl_open(v3_jsonl **out, const char *path, v3_jsonl_layout layout, size_t max_record,
                  v3_err *err) {
    v3_jsonl *r = calloc(1, sizeof *r);
    if (!r) return v3_errf(err, V3_ENOMEM, "%s: out of memory", path);
    snprintf(r->name, sizeof r->name, "%s", path);
    r->fd = open(path, O_RDONLY);
    if (r->fd < 0) {
        int rc = v3_errf(err, V3_EIO, "%s: cannot open: %s", path, strerror(errno));
        free(r);
        return rc;
    }
    int rc = setup(r, layout, max_record, err);
    if (rc) {
        v3_jsonl_close(r);
        return rc;
    }
    *out = r;
    return V3_OK;
}

int v3_jsonl_open_mem(v3_jsonl **out, const void *data, size_t n, const char *name,
                      v3_jsonl_layout layout, size_t max_record, v3_err *err) {
    v3_jsonl *r = calloc(1, sizeof *r);
    if (!r) return v3_errf(err, V3_ENOMEM, "%s: out of memory", name);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->fd = -1;
    r->mem = data;
    r->mem_n = n;
    int rc = setup(r, layout, max_record, err);
    if (rc) {
        v3_jsonl_close(r);
        return rc;
    }
    *out = r;
    return V3_OK;
}

void v3_jsonl_close(v3_jsonl *r) {
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    if (r->zs) ZSTD_freeDStream(r->zs);
    free(r->zin);
    free(r->buf);
    free(r->rec);
    free(r);
}

uint64_t v3_jsonl_bytes_in(const v3_jsonl *r) { return r->bytes_in; }
v3_jsonl_layout v3_jsonl_layout_of(const v3_jsonl *r) { return r->layout; }

/* Appends n bytes to the record unless it has already gone past max_record (then it only
 * remembers that, so a 10 GB line costs no memory). */
static int rec_append(v3_jsonl *r, const uint8_t *p, size_t n, v3_err *err) {
    if (r->too_long || n == 0) return V3_OK;
    if (r->rec_len + n > r->max_record) {
        r->too_long = 1;
        r->rec_len = 0;
        return V3_OK;
    }
    if (r->rec_len + n + 1 > r->rec_cap) {
        size_t cap = r->rec_cap;
        while (cap < r->rec_len + n + 1) cap *= 2;
        char *nr = realloc(r->rec, cap);
        if (!nr) return v3_errf(err, V3_ENOMEM, "%s:%lld: out of memory for a %zu-byte record", r->name, (long long)r->line, r->rec_len + n);
        r->rec = nr;
        r->rec_cap = cap;
    }
    memcpy(r->rec + r->rec_len, p, n);
    r->rec_len += n;
    return V3_OK;
}

static int is_ws(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Skips blanks (counting lines). Returns 1 with buf[pos] the next byte, 0 at the end, <0 error. */
static int skip_ws(v3_jsonl *r, v3_err *err) {
    for (;;) {
        int f = fill(r, err);
        if (f <= 0) return f;
        while (r->pos < r->end && is_ws(r->buf[r->pos])) {
            if (r->buf[r->pos] == '\n') r->line++;
            r->pos++;
        }
        if (r->pos < r->end) return 1;
    }
}

/* The first call skips a UTF-8 byte-order mark and, for AUTO, picks the layout. */
static int start(v3_jsonl *r, v3_err *err) {
    r->started = 1;
    int f = fill(r, err);
    if (f < 0) return -f;
    if (f > 0 && r->end - r->pos >= 3 && memcmp(r->buf + r->pos, "\xEF\xBB\xBF", 3) == 0) r->pos += 3;
    if (r->layout != V3_JSONL_AUTO) return V3_OK;
    f = skip_ws(r, err);
    if (f < 0) return -f;
    r->layout = (f > 0 && r->buf[r->pos] == '[') ? V3_JSONL_ARRAY : V3_JSONL_LINES;
    return V3_OK;
}

static void emit(v3_jsonl *r, v3_record *rec, int64_t line) {
    r->rec[r->rec_len] = 0;
    rec->text = r->rec;
    rec->len = r->rec_len;
    rec->line = line;
    rec->index = r->index++;
    rec->too_long = r->too_long;
}

static int next_line(v3_jsonl *r, v3_record *rec, int *got, v3_err *err) {
    for (;;) {
        r->rec_len = 0;
        r->too_long = 0;
        int64_t line = r->line;
        int any = 0, nl = 0;
        for (;;) {
            int f = fill(r, err);
            if (f < 0) return -f;
            if (f == 0) break;
            any = 1;
            const uint8_t *p = r->buf + r->pos;
            size_t n = r->end - r->pos;
            const uint8_t *q = memchr(p, '\n', n);
            size_t take = q ? (size_t)(q - p) : n;
            int rc = rec_append(r, p, take, err);
            if (rc) return rc;
            r->pos += take;
            if (q) {
                r->pos++;
                r->line++;
                nl = 1;
                break;
            }
        }
        if (!any && !nl) {
            *got = 0;
            return V3_OK;
        }
        while (r->rec_len > 0 && is_ws((unsigned char)r->rec[r->rec_len - 1])) r->rec_len--;
        size_t lead = 0;
        while (lead < r->rec_len && is_ws((unsigned char)r->rec[lead])) lead++;
        if (lead == r->rec_len && !r->too_long) continue; /* blank line: not a record */
        emit(r, rec, line);
        *got = 1;
        return V3_OK;
    }
}

static int next_elem(v3_jsonl *r, v3_record *rec, int *got, v3_err *err) {
    int f;
    if (r->arr_state == ARR_OPEN) {
        if ((f = skip_ws(r, err)) < 0) return -f;
        if (f == 0 || r->buf[r->pos] != '[')
            return v3_errf(err, V3_EFORMAT, "%s:%lld: expected '[' to open a JSON array", r->name, (long long)r->line);
        r->pos++;
        r->arr_state = ARR_ELEM;
    }
    for (;;) {
        if (r->arr_state == ARR_DONE) {
            if ((f = skip_ws(r, err)) < 0) return -f;
            if (f > 0)
                return v3_errf(err, V3_EFORMAT, "%s:%lld: unexpected data after the JSON array", r->name, (long long)r->line);
            *got = 0;
            return V3_OK;
        }
        if ((f = skip_ws(r, err)) < 0) return -f;
        if (f == 0)
            return v3_errf(err, V3_EFORMAT, "%s:%lld: the JSON array is not closed (missing ']')", r->name, (long long)r->line);
        uint8_t c = r->buf[r->pos];
        if (c == ']') { /* also tolerates a trailing comma */
            r->pos++;
            r->arr_state = ARR_DONE;
            continue;
        }
        if (c == ',')
            return v3_errf(err, V3_EFORMAT, "%s:%lld: empty array element", r->name, (long long)r->line);
        break;
    }
    /* Scan one element: its end is the ',' or ']' at depth 0 outside strings. */
    r->rec_len = 0;
    r->too_long = 0;
    int64_t line = r->line;
    int depth = 0, in_str = 0, esc = 0, done = 0;
    while (!done) {
        if ((f = fill(r, err)) < 0) return -f;
        if (f == 0)
            return v3_errf(err, V3_EFORMAT, "%s:%lld: the JSON array is not closed (element from line %lld never ends)",
                           r->name, (long long)r->line, (long long)line);
        const uint8_t *p = r->buf + r->pos;
        size_t n = r->end - r->pos, i = 0;
        for (; i < n; i++) {
            uint8_t c = p[i];
            if (c == '\n') r->line++;
            if (in_str) {
                if (esc) esc = 0;
                else if (c == '\\') esc = 1;
                else if (c == '"') in_str = 0;
            } else if (c == '"') {
                in_str = 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (depth == 0 && c == ']') {
                    r->arr_state = ARR_DONE;
                    done = 1;
                    break;
                }
                if (depth > 0) depth--;
            } else if (c == ',' && depth == 0) {
                r->arr_state = ARR_ELEM;
                done = 1;
                break;
            }
        }
        int rc = rec_append(r, p, i, err);
        if (rc) return rc;
        r->pos += i + (size_t)done; /* the separator is consumed, not kept */
    }
    while (r->rec_len > 0 && is_ws((unsigned char)r->rec[r->rec_len - 1])) r->rec_len--;
    emit(r, rec, line);
    *got = 1;
    return V3_OK;
}

int v3_jsonl_next(v3_jsonl *r, v3_record *rec, int *got, v3_err *err) {
    *got = 0;
    if (!r->started) {
        int rc = start(r, err);
        if (rc) return rc;
    }
    return r->layout == V3_JSONL_ARRAY ? next_elem(r, rec, got, err) : next_line(r, rec, got, err);
}
