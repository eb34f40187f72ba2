/* distill_key.c — the dedupe key of a (prompt, trace) pair and a set of such keys. */
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "datasets/distill_text.h"
#include "datasets/store.h"

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Hashes s with whitespace runs collapsed to one space and no leading/trailing whitespace. */
static void hash_normalised(v3_sha256_ctx *h, const char *s) {
    char buf[4096];
    size_t n = 0;
    int pending_space = 0, any = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (is_space(*p)) {
            pending_space = any;
            continue;
        }
        if (n + 2 > sizeof buf) {
            v3_sha256_update(h, buf, n);
            n = 0;
        }
        if (pending_space) buf[n++] = ' ';
        pending_space = 0;
        buf[n++] = (char)*p;
        any = 1;
    }
    v3_sha256_update(h, buf, n);
}

uint64_t v3_distill_key(const char *const *prompt_parts, int n_parts, const char *reasoning,
                        const char *answer) {
    static const char SEP = 0x1f, PART = 0x1e;
    v3_sha256_ctx h;
    v3_sha256_init(&h);
    for (int i = 0; i < n_parts; i++) {
        hash_normalised(&h, prompt_parts[i]);
        v3_sha256_update(&h, &PART, 1);
    }
    v3_sha256_update(&h, &SEP, 1);
    hash_normalised(&h, reasoning);
    v3_sha256_update(&h, &SEP, 1);
    hash_normalised(&h, answer);
    uint8_t d[32];
    v3_sha256_final(&h, d);
    uint64_t k = 0;
    for (int i = 0; i < 8; i++) k = k << 8 | d[i];
    return k ? k : 1;
}

void v3_keyset_init(v3_keyset *s) { memset(s, 0, sizeof *s); }

void v3_keyset_free(v3_keyset *s) {
    free(s->slot);
    memset(s, 0, sizeof *s);
}

static size_t slot_of(const uint64_t *slot, size_t cap, uint64_t key) {
    size_t j = (size_t)(key ^ key >> 29) & (cap - 1);
    while (slot[j] && slot[j] != key) j = (j + 1) & (cap - 1);
    return j;
}

int v3_keyset_has(const v3_keyset *s, uint64_t key) {
    return key && s->cap && s->slot[slot_of(s->slot, s->cap, key)] == key;
}

int v3_keyset_add(v3_keyset *s, uint64_t key) {
    if (!key) return 0;
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        uint64_t *slot = calloc(cap, sizeof *slot);
        if (!slot) return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i]) slot[slot_of(slot, cap, s->slot[i])] = s->slot[i];
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
    }
    size_t j = slot_of(s->slot, s->cap, key);
    if (s->slot[j] == key) return 0;
    s->slot[j] = key;
    s->n++;
    return 1;
}

static int collect_key(void *ud, const v3_store_trace_row *r) {
    return r->key && v3_keyset_add(ud, r->key) < 0 ? V3_ENOMEM : 0;
}

int v3_keyset_load_traces(v3_keyset *s, const char *db_path, v3_err *err) {
    v3_store *r = NULL;
    int rc = v3_store_open(&r, db_path, V3_STORE_READ, err);
    if (rc) return rc;
    v3_store_trace_query q = {.light = 1};
    rc = v3_store_query_traces(r, &q, collect_key, s, err);
    if (rc == V3_ENOMEM) v3_errf(err, V3_ENOMEM, "%s: out of memory loading trace keys", db_path);
    v3_store_close(r, NULL);
    return rc;
}
