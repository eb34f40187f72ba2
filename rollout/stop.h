/* stop.h — stop strings over streamed, detokenised text.
 *
 * The completion text arrives in pieces (one per decoded token); a stop string may be split across
 * pieces. The matcher is an Aho–Corasick automaton over the stop strings' bytes, fed byte by byte,
 * so each appended byte costs O(1) amortised and no text is buffered.
 *
 * Rules (those of vLLM / the OpenAI API, made exact):
 *   - the text stops at the first stop string to COMPLETE (smallest end offset); if several end at
 *     the same byte, the longest one (the earliest start) wins; later text is never examined;
 *   - the output is cut before the stop string: `cut` is the byte length to keep, `end` the offset
 *     just after the stop string (for an include-the-stop-string option);
 *   - until a stop completes, the `hold` trailing bytes — the longest suffix of the text that is a
 *     proper prefix of some stop string — must not be streamed yet: they may turn out to be the
 *     beginning of a stop string. Stop strings are matched as bytes; for valid UTF-8 text and stop
 *     strings, a held-back suffix always begins on a character boundary.
 * Offsets count bytes from the start of the text appended since init/reset.
 *
 *     v3_stop st;  v3_stop_init(&st, (const char *[]){"</answer>", "\n\nUser:"}, 2, &err);
 *     for each token: v3_stop_append(&st, piece, len, &res);
 *                     stream text[emitted .. res.safe);  if (res.stopped) finish at res.cut;
 *     v3_stop_free(&st);
 */
#ifndef V3_STOP_H
#define V3_STOP_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct v3_stop {
    int n_stop;
    int32_t n_node;       /* trie nodes; node 0 is the root (the empty prefix) */
    int32_t *child;       /* [n_node] first child of a node, -1 if none */
    int32_t *sibling;     /* [n_node] next child of the same parent, -1 if none */
    uint8_t *byte;        /* [n_node] byte on the edge into the node */
    int32_t *fail;        /* [n_node] node of the longest proper suffix that is also a prefix */
    int32_t *depth;       /* [n_node] length of the node's prefix */
    int32_t *term;        /* [n_node] stop string ending exactly here (lowest index), -1 if none */
    int32_t *dict;        /* [n_node] deepest terminal node on the fail chain below, -1 if none */
    /* streaming state */
    int32_t state;        /* node of the longest text suffix that is a stop-string prefix */
    int64_t n_text;       /* bytes consumed so far */
    int stopped;
    int which;            /* index of the stop string that matched, -1 while running */
    int64_t cut, end;     /* [cut, end) is the matched stop string's byte range; -1 while running */
} v3_stop;

typedef struct v3_stop_status {
    int stopped;   /* a stop string has completed */
    int which;     /* its index in the stops given to init; -1 if none */
    int64_t cut;   /* stopped: bytes of text to keep (everything before the stop string); else -1 */
    int64_t end;   /* stopped: byte offset just after the stop string; else -1 */
    int64_t hold;  /* running: trailing bytes that may begin a stop string (0 once stopped) */
    int64_t safe;  /* bytes that may be streamed now: cut when stopped, else text length - hold */
} v3_stop_status;

/* Builds the matcher. stops [n_stop] are NUL-terminated, non-empty (may be NULL if n_stop == 0:
 * nothing ever stops). The strings are not referenced after init. */
int v3_stop_init(v3_stop *st, const char *const *stops, int n_stop, v3_err *err);
void v3_stop_free(v3_stop *st); /* accepts a zeroed or freed matcher */

/* Forgets the text; the matcher is ready for the next sequence. */
void v3_stop_reset(v3_stop *st);

/* Appends n bytes of text. Returns 1 when the text has stopped (now or by an earlier append —
 * appends after a stop are ignored), else 0. *res (may be NULL) describes the state after. */
int v3_stop_append(v3_stop *st, const char *text, size_t n, v3_stop_status *res);

/* The current state without appending. */
void v3_stop_status_get(const v3_stop *st, v3_stop_status *res);

#endif
