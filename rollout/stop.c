/* stop.c — Aho–Corasick matching of stop strings over text appended piece by piece.
 * The trie is stored as first-child / next-sibling lists (one node per distinct prefix), so its
 * size is the total length of the stop strings whatever bytes they use. */
#include "stop.h"

#include <stdlib.h>
#include <string.h>

static int32_t find_child(const v3_stop *st, int32_t node, uint8_t b) {
    for (int32_t c = st->child[node]; c >= 0; c = st->sibling[c])
        if (st->byte[c] == b) return c;
    return -1;
}

/* The automaton's transition: the longest stop-string prefix that is a suffix of (prefix(s) + b). */
static int32_t step(const v3_stop *st, int32_t s, uint8_t b) {
    for (;;) {
        int32_t g = find_child(st, s, b);
        if (g >= 0) return g;
        if (s == 0) return 0;
        s = st->fail[s];
    }
}

void v3_stop_reset(v3_stop *st) {
    st->state = 0;
    st->n_text = 0;
    st->stopped = 0;
    st->which = -1;
    st->cut = st->end = -1;
}

void v3_stop_free(v3_stop *st) {
    if (!st) return;
    free(st->child);
    free(st->sibling);
    free(st->byte);
    free(st->fail);
    free(st->depth);
    free(st->term);
    free(st->dict);
    memset(st, 0, sizeof *st);
}

int v3_stop_init(v3_stop *st, const char *const *stops, int n_stop, v3_err *err) {
    memset(st, 0, sizeof *st);
    if (n_stop < 0 || (n_stop > 0 && !stops))
        return v3_errf(err, V3_EINVAL, "stop: %d stop strings given without an array", n_stop);
    size_t total = 1; /* the root */
    for (int i = 0; i < n_stop; i++) {
        if (!stops[i] || !stops[i][0])
            return v3_errf(err, V3_EINVAL, "stop: stop string %d is empty", i);
        total += strlen(stops[i]);
        if (total > (size_t)INT32_MAX / 2)
            return v3_errf(err, V3_ERANGE, "stop: stop strings total more than %d bytes",
                           INT32_MAX / 2);
    }
    st->child = malloc(total * sizeof *st->child);
    st->sibling = malloc(total * sizeof *st->sibling);
    st->byte = malloc(total * sizeof *st->byte);
    st->fail = malloc(total * sizeof *st->fail);
    st->depth = malloc(total * sizeof *st->depth);
    st->term = malloc(total * sizeof *st->term);
    st->dict = malloc(total * sizeof *st->dict);
    int32_t *queue = malloc(total * sizeof *queue);
    if (!st->child || !st->sibling || !st->byte || !st->fail || !st->depth || !st->term ||
        !st->dict || !queue) {
        free(queue);
        v3_stop_free(st);
        return v3_errf(err, V3_ENOMEM, "stop: cannot allocate a matcher of %zu nodes", total);
    }
    st->n_stop = n_stop;

    /* the trie */
    st->n_node = 1;
    st->child[0] = st->sibling[0] = -1;
    st->byte[0] = 0;
    st->depth[0] = 0;
    st->term[0] = -1;
    for (int i = 0; i < n_stop; i++) {
        int32_t node = 0;
        for (const unsigned char *p = (const unsigned char *)stops[i]; *p; p++) {
            int32_t next = find_child(st, node, *p);
            if (next < 0) {
                next = st->n_node++;
                st->child[next] = -1;
                st->byte[next] = *p;
                st->depth[next] = st->depth[node] + 1;
                st->term[next] = -1;
                st->sibling[next] = st->child[node];
                st->child[node] = next;
            }
            node = next;
        }
        if (st->term[node] < 0) st->term[node] = i; /* a duplicate keeps the first index */
    }

    /* failure and dictionary links, breadth first (a node's links use only shallower nodes) */
    int32_t head = 0, tail = 0;
    st->fail[0] = 0;
    st->dict[0] = -1;
    for (int32_t c = st->child[0]; c >= 0; c = st->sibling[c]) {
        st->fail[c] = 0;
        st->dict[c] = -1;
        queue[tail++] = c;
    }
    while (head < tail) {
        int32_t u = queue[head++];
        for (int32_t v = st->child[u]; v >= 0; v = st->sibling[v]) {
            int32_t f = step(st, st->fail[u], st->byte[v]);
            st->fail[v] = f;
            st->dict[v] = st->term[f] >= 0 ? f : st->dict[f];
            queue[tail++] = v;
        }
    }
    free(queue);
    v3_stop_reset(st);
    return V3_OK;
}

void v3_stop_status_get(const v3_stop *st, v3_stop_status *res) {
    res->stopped = st->stopped;
    res->which = st->which;
    res->cut = st->cut;
    res->end = st->end;
    res->hold = st->stopped ? 0 : st->depth[st->state];
    res->safe = st->stopped ? st->cut : st->n_text - res->hold;
}

int v3_stop_append(v3_stop *st, const char *text, size_t n, v3_stop_status *res) {
    if (!st->stopped) {
        const unsigned char *p = (const unsigned char *)text;
        for (size_t i = 0; i < n; i++) {
            int32_t s = step(st, st->state, p[i]);
            st->state = s;
            /* the longest stop string that is a suffix of the text so far, if any */
            int32_t t = st->term[s] >= 0 ? s : st->dict[s];
            if (t >= 0) {
                st->stopped = 1;
                st->which = st->term[t];
                st->end = st->n_text + (int64_t)i + 1;
                st->cut = st->end - st->depth[t];
                st->n_text = st->end;
                break;
            }
        }
        if (!st->stopped) st->n_text += (int64_t)n;
    }
    if (res) v3_stop_status_get(st, res);
    return st->stopped;
}
