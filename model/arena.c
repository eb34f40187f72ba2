/* arena.c — the planned activation arena (see arena.h). */
#include "arena.h"

#include <string.h>

static size_t align_up(size_t n) { return (n + V3_ARENA_ALIGN - 1) / V3_ARENA_ALIGN * V3_ARENA_ALIGN; }

void v3_arena_begin_plan(v3_arena *a, v3_kctx *ctx) {
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
    a->planning = 1;
    a->cur_group = -1;
}

void v3_arena_group(v3_arena *a, const char *label) {
    for (int i = 0; i < a->n_groups; i++)
        if (strcmp(a->group_name[i], label) == 0) {
            a->cur_group = i;
            return;
        }
    if (a->n_groups == V3_ARENA_MAX_GROUPS) {
        a->cur_group = a->n_groups - 1; /* folded into the last group: the total stays exact */
        return;
    }
    a->group_name[a->n_groups] = label;
    a->group_bytes[a->n_groups] = 0;
    a->cur_group = a->n_groups++;
}

void *v3_arena_take(v3_arena *a, size_t n, size_t elt) {
    size_t bytes = align_up(n * elt);
    void *p = a->planning ? NULL : a->base + a->off;
    a->off += bytes;
    if (a->planning && a->cur_group >= 0) a->group_bytes[a->cur_group] += bytes;
    return p;
}

size_t v3_arena_mark(const v3_arena *a) { return a->off; }

void v3_arena_rewind(v3_arena *a, size_t mark, size_t *high) {
    if (a->off > *high) *high = a->off;
    /* a rewound union is counted once: remove what was taken since the mark from the group */
    if (a->planning && a->cur_group >= 0) a->group_bytes[a->cur_group] -= a->off - mark;
    a->off = mark;
}

void v3_arena_advance_to(v3_arena *a, size_t off) {
    if (off > a->off) {
        if (a->planning && a->cur_group >= 0) a->group_bytes[a->cur_group] += off - a->off;
        a->off = off;
    }
}

int v3_arena_alloc(v3_arena *a, v3_err *err) {
    a->planned = a->off;
    a->planning = 0;
    a->off = 0;
    a->cap = a->planned;
    a->base = a->ctx->be->alloc(a->ctx, a->cap ? a->cap : V3_ARENA_ALIGN);
    if (!a->base)
        return v3_errf(err, V3_ENOMEM, "activation arena: cannot allocate %.1f MiB",
                       (double)a->cap / (1 << 20));
    return V3_OK;
}

int v3_arena_check(const v3_arena *a, v3_err *err) {
    if (a->off != a->planned)
        return v3_errf(err, V3_ERANGE, "activation arena: carved %zu bytes, planned %zu", a->off,
                       a->planned);
    return V3_OK;
}

void v3_arena_print(const v3_arena *a, FILE *f) {
    fprintf(f, "activation arena: %.2f MiB\n", (double)a->planned / (1 << 20));
    for (int i = 0; i < a->n_groups; i++)
        fprintf(f, "  %-28s %10.2f MiB\n", a->group_name[i], (double)a->group_bytes[i] / (1 << 20));
}

void v3_arena_free(v3_arena *a) {
    if (!a) return;
    if (a->base && a->ctx) a->ctx->be->free(a->ctx, a->base);
    a->base = NULL;
    a->cap = a->planned = a->off = 0;
}
