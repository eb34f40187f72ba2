/* jsonl.h — streaming record reader for data files: JSON Lines (one value per line) or one JSON
 * array of values (the LLaMA-Factory demo layout), plain or zstd-compressed (detected by the
 * frame magic, so `.jsonl.zst` and renamed files both work). Records come out one at a time with
 * the 1-based line where they start, so every later complaint can say `file:line: reason`.
 *
 * Memory is bounded by the longest record (R1 traces reach hundreds of KB), never by the file:
 * there is no fixed line buffer, and a record past `max_record` bytes is reported as a bad row
 * (rec.too_long) and skipped without being held. The reader does not parse JSON itself; the
 * array splitter only tracks strings and bracket depth to find where each element ends. */
#ifndef V3_JSONL_H
#define V3_JSONL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum v3_jsonl_layout {
    V3_JSONL_AUTO = 0, /* '[' as the first non-blank byte means an array, anything else lines */
    V3_JSONL_LINES,
    V3_JSONL_ARRAY,
} v3_jsonl_layout;

typedef struct v3_record {
    const char *text; /* the record bytes, NUL-terminated; valid until the next call */
    size_t len;
    int64_t line;     /* 1-based line of the record's first byte */
    int64_t index;    /* 0-based record number within the file */
    int too_long;     /* 1: longer than max_record; text is empty and the row must be reported */
} v3_record;

typedef struct v3_jsonl v3_jsonl;

/* Opens path for reading. max_record: longest record kept (0 = 64 MiB). */
int v3_jsonl_open(v3_jsonl **out, const char *path, v3_jsonl_layout layout, size_t max_record,
                  v3_err *err);
/* The same over a caller-owned buffer (fuzzing, tests); name is used in messages. The buffer
 * must outlive the reader. */
int v3_jsonl_open_mem(v3_jsonl **out, const void *data, size_t n, const char *name,
                      v3_jsonl_layout layout, size_t max_record, v3_err *err);
/* Next record: returns V3_OK with *got = 1 (rec filled) or *got = 0 at the end. A structural
 * failure that makes the rest of the file unreadable (I/O error, corrupt zstd frame, an array
 * that never closes) returns an error whose message starts with "name:line: ". */
int v3_jsonl_next(v3_jsonl *r, v3_record *rec, int *got, v3_err *err);
/* Bytes of the underlying (possibly compressed) input consumed so far, for progress. */
uint64_t v3_jsonl_bytes_in(const v3_jsonl *r);
/* Which layout was chosen (after the first record when AUTO). */
v3_jsonl_layout v3_jsonl_layout_of(const v3_jsonl *r);
void v3_jsonl_close(v3_jsonl *r);

#endif
