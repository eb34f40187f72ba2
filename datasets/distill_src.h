/* distill_src.h — the records of one input file of `distill import`, parsed, with their lines.
 *
 * Layouts: JSON Lines, one JSON array of records, or one JSON document (pretty-printed over many
 * lines) whose records sit in an array member: {"results": [record, ...]} (the Misguided
 * Attention dumps). All of them plain or zstd-compressed (datasets/jsonl.h reads the bytes).
 * A document is recognised when the file starts with '{' and its first line is not JSON by
 * itself; its record array is the member named by `records`, else its only member holding a list
 * of objects (other than messages / conversations / choices, which belong to a row), else the
 * document is one record. `records` also unwraps such a member inside each JSON Lines record.
 * Every record comes with the 1-based line where it starts. */
#ifndef V3_DISTILL_SRC_H
#define V3_DISTILL_SRC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct v3_distill_src v3_distill_src;

/* max_record: longest record (and, for a document, the cap is 32 times that, at least 1 GiB). */
int v3_distill_src_open(v3_distill_src **out, const char *path, const char *records,
                        size_t max_record, v3_err *err);
/* Next record. *got = 0 at the end. A record that is not valid JSON comes back with *obj = NULL
 * and the reason in why (the caller reports path:line: why and goes on). Returns an error only
 * when the rest of the file cannot be read (message "path:line: ..."). */
int v3_distill_src_next(v3_distill_src *s, json_t **obj, int64_t *line, int64_t *index, char *why,
                        size_t wn, int *got, v3_err *err);
/* "lines", "array" or "document": how the file was read (after the first record). */
const char *v3_distill_src_layout(const v3_distill_src *s);
void v3_distill_src_close(v3_distill_src *s);

#endif
