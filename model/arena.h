/* arena.h — activation memory planned up front: a bump allocator over ONE backend allocation.
 *
 * Use it in two passes with the same carving code: a planning pass (v3_arena_begin_plan) only
 * adds up aligned sizes and records a labelled breakdown; after v3_arena_alloc the carving pass
 * hands out the same pointers for real. "planned == allocated" is therefore checked, not hoped:
 * v3_arena_check fails if the second pass asked for a different total. Nothing is ever allocated
 * inside a training step; a larger batch than planned is an error, not a silent realloc. */
#ifndef V3_ARENA_H
#define V3_ARENA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/err.h"
#include "../kernels/kernels.h"

#define V3_ARENA_ALIGN 64
#define V3_ARENA_MAX_GROUPS 16

typedef struct v3_arena {
    v3_kctx *ctx;
    char *base;            /* backend memory, NULL during planning */
    size_t cap;            /* bytes allocated (= planned) */
    size_t off;            /* bytes handed out in the current pass */
    size_t planned;        /* total of the planning pass */
    int planning;
    /* breakdown by group label (e.g. "layer saved", "backward scratch") */
    int n_groups;
    const char *group_name[V3_ARENA_MAX_GROUPS];
    size_t group_bytes[V3_ARENA_MAX_GROUPS];
    int cur_group;
} v3_arena;

void v3_arena_begin_plan(v3_arena *a, v3_kctx *ctx);
/* Starts accounting the following takes under label (a string literal). */
void v3_arena_group(v3_arena *a, const char *label);
/* Takes n elements of size elt; NULL during planning. */
void *v3_arena_take(v3_arena *a, size_t n, size_t elt);
/* Offset of the next take (for carving unions: remember, take one layout, rewind, take another). */
size_t v3_arena_mark(const v3_arena *a);
/* Rewinds to a mark, keeping the high-water offset for the total. */
void v3_arena_rewind(v3_arena *a, size_t mark, size_t *high);
void v3_arena_advance_to(v3_arena *a, size_t off);
/* Ends planning and allocates `planned` bytes on the backend; the carving pass starts at 0. */
int v3_arena_alloc(v3_arena *a, v3_err *err);
/* After the carving pass: V3_ERANGE unless it took exactly the planned bytes. */
int v3_arena_check(const v3_arena *a, v3_err *err);
void v3_arena_print(const v3_arena *a, FILE *f);
void v3_arena_free(v3_arena *a);

#endif
