/* shard.h — token shards: the binary files `data prepare` writes and the trainer mmaps.
 * The layout is specified in docs/shards.md; in short (all little-endian):
 *
 *   [0, 128)        header (v3_shard_header)
 *   tokens_off      uint32 token ids            [n_tokens]
 *   mask_off        uint8 loss mask, 0 or 1     [n_tokens]   (1 = the token is a training target)
 *   docs_off        uint64 document offsets     [n_docs + 1] (8-aligned; 0 first, n_tokens last)
 *
 * The header carries a SHA-256 of every byte after it, so a reader detects any corruption. */
#ifndef V3_SHARD_H
#define V3_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/sha256.h"

#define V3_SHARD_MAGIC "V3TOKSHD"
#define V3_SHARD_VERSION 1u
#define V3_SHARD_HEADER_SIZE 128u
#define V3_SHARD_FLAG_MASK 1ull /* the loss mask section is present (always, in version 1) */

/* The on-disk header, exactly 128 bytes. */
typedef struct v3_shard_header {
    char magic[8];          /* "V3TOKSHD" */
    uint32_t version;       /* V3_SHARD_VERSION */
    uint32_t header_size;   /* 128: sections start after it */
    uint64_t n_docs;
    uint64_t n_tokens;
    uint64_t flags;         /* V3_SHARD_FLAG_* */
    uint64_t tokens_off;
    uint64_t mask_off;
    uint64_t docs_off;
    uint64_t file_size;     /* the whole file, for truncation checks */
    uint32_t vocab_size;    /* every token id is below it (0 = not checked) */
    uint32_t reserved0;
    uint8_t sha256[32];     /* of bytes [header_size, file_size) */
    uint8_t reserved[16];
} v3_shard_header;

/* Writes one shard at a time, streaming: token ids go to the file as documents arrive (through
 * a 1 MiB buffer, hashed on the way), while the loss mask (1 byte/token) and the document
 * offsets are held until finish, which appends them and writes the header last. So memory is a
 * fifth of the shard size, and a file without a valid header/checksum is all a crash can leave. */
typedef struct v3_shard_writer {
    int fd;             /* -1 when no shard is open */
    char path[4096];
    v3_sha256_ctx sha;  /* running hash of the payload written so far */
    uint32_t *tbuf;     /* [V3_SHARD_TBUF] token ids not yet written */
    size_t tbuf_n;
    uint8_t *mask;      /* [n_tokens] */
    uint64_t *docs;     /* [n_docs + 1] */
    size_t n_tokens, cap_tokens;
    size_t n_docs, cap_docs;
    uint64_t n_loss;    /* tokens with mask 1 */
    uint32_t vocab_size;
} v3_shard_writer;

int v3_shard_writer_init(v3_shard_writer *w, uint32_t vocab_size, v3_err *err);
/* Closes and deletes a shard still open (an unfinished file is never left behind). */
void v3_shard_writer_free(v3_shard_writer *w);
/* Starts a shard at path (created or truncated). The caller gives a temporary name and renames
 * once the whole run succeeded. */
int v3_shard_writer_begin(v3_shard_writer *w, const char *path, v3_err *err);
static inline int v3_shard_writer_is_open(const v3_shard_writer *w) { return w->fd >= 0; }
/* Appends one document (n >= 1 tokens) to the open shard. mask may be NULL (all ones). */
int v3_shard_writer_add(v3_shard_writer *w, const uint32_t *ids, const uint8_t *mask, size_t n,
                        v3_err *err);
/* Completes the open shard (mask, offsets, header with the checksum; fsync; close) and empties
 * the writer for the next one. digest (may be NULL) receives the payload SHA-256. On failure the
 * file is deleted. */
int v3_shard_writer_finish(v3_shard_writer *w, uint8_t digest[32], v3_err *err);
/* Bytes the open shard will take on disk once finished. */
uint64_t v3_shard_writer_bytes(const v3_shard_writer *w);

/* A shard opened read-only through mmap. */
typedef struct v3_shard {
    char path[1024];
    void *map;
    size_t map_size;
    v3_shard_header hdr;     /* copy of the header */
    const uint32_t *tokens;  /* [n_tokens] */
    const uint8_t *mask;     /* [n_tokens] */
    const uint64_t *docs;    /* [n_docs + 1] */
    uint64_t n_docs, n_tokens;
} v3_shard;

enum { V3_SHARD_VERIFY = 1 }; /* v3_shard_open: also check the SHA-256 (reads every byte) */

/* Opens and validates path: magic, version, header size, section offsets against the file size,
 * document offsets (start 0, strictly increasing, end n_tokens), mask bytes, token ids below
 * vocab_size, and with V3_SHARD_VERIFY the checksum. Every failure names the file. */
int v3_shard_open(v3_shard *s, const char *path, int flags, v3_err *err);
void v3_shard_close(v3_shard *s);
static inline uint64_t v3_shard_doc_len(const v3_shard *s, uint64_t d) {
    return s->docs[d + 1] - s->docs[d];
}

#endif
