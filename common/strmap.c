/* strmap.c — open-addressing hash map from borrowed strings to ints (FNV-1a, linear probing). */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

static int alloc_slots(v3_strmap *m, uint32_t cap) {
    m->key = calloc(cap, sizeof *m->key);
    m->val = malloc((size_t)cap * sizeof *m->val);
    if (!m->key || !m->val) {
        free(m->key);
        free(m->val);
        m->key = NULL;
        m->val = NULL;
        return -1;
    }
    m->cap = cap;
    return 0;
}

int v3_strmap_init(v3_strmap *m, int expected) {
    memset(m, 0, sizeof *m);
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)(expected > 0 ? expected : 1) && cap < (1u << 31)) cap <<= 1;
    return alloc_slots(m, cap);
}

void v3_strmap_free(v3_strmap *m) {
    if (!m) return;
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

/* Slot holding key, or the empty slot where it would go. */
static uint32_t probe(const v3_strmap *m, const char *key) {
    uint32_t mask = m->cap - 1, i = hash_str(key) & mask;
    while (m->key[i] && strcmp(m->key[i], key) != 0) i = (i + 1) & mask;
    return i;
}

static int grow(v3_strmap *m) {
    v3_strmap bigger;
    if (m->cap >= (1u << 31) || alloc_slots(&bigger, m->cap * 2)) return -1;
    bigger.count = m->count;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->key[i]) continue;
        uint32_t j = probe(&bigger, m->key[i]);
        bigger.key[j] = m->key[i];
        bigger.val[j] = m->val[i];
    }
    free(m->key);
    free(m->val);
    *m = bigger;
    return 0;
}

int v3_strmap_put(v3_strmap *m, const char *key, int val) {
    if (!m->key) return -2;
    uint32_t i = probe(m, key);
    if (m->key[i]) return m->val[i];
    if (2 * (m->count + 1) > m->cap) { /* keep the load factor at most 1/2 */
        if (grow(m)) return -2;
        i = probe(m, key);
    }
    m->key[i] = key;
    m->val[i] = val;
    m->count++;
    return -1;
}

int v3_strmap_get(const v3_strmap *m, const char *key) {
    if (!m->key) return -1;
    uint32_t i = probe(m, key);
    return m->key[i] ? m->val[i] : -1;
}
