/* pack.c — dataset opening (manifest + shards), best-fit-decreasing packing, batch iterator. */
#include "pack.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/sha256.h"

/* ---- dataset ---- */

void v3_dataset_close(v3_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n_shards; i++) v3_shard_close(&d->shards[i]);
    free(d->shards);
    free(d->doc_base);
    memset(d, 0, sizeof *d);
}

int v3_dataset_open(v3_dataset *d, const char *dir, const char *split, int flags, v3_err *err) {
    memset(d, 0, sizeof *d);
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/manifest.json", dir) >= sizeof path)
        return v3_errf(err, V3_EINVAL, "%s: path too long", dir);
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je);
    if (!m) return v3_errf(err, V3_EFORMAT, "%s:%d: %s", path, je.line, je.text);
    int rc = V3_OK;
    json_t *shards = json_object_get(m, "shards");
    if (!json_is_string(json_object_get(m, "format")) ||
        strcmp(json_string_value(json_object_get(m, "format")), "v3tune-token-shards") != 0 || !json_is_array(shards)) {
        rc = v3_errf(err, V3_EFORMAT, "%s: not a v3tune token-shard manifest", path);
        goto done;
    }
    d->bad_rows = (uint64_t)json_integer_value(json_object_get(json_object_get(m, "totals"), "bad_rows"));
    size_t n = json_array_size(shards);
    d->shards = calloc(n ? n : 1, sizeof *d->shards);
    d->doc_base = calloc(n + 1, sizeof *d->doc_base);
    if (!d->shards || !d->doc_base) {
        rc = v3_errf(err, V3_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(shards, i);
        const char *file = json_string_value(json_object_get(e, "file"));
        const char *sp = json_string_value(json_object_get(e, "split"));
        const char *sha = json_string_value(json_object_get(e, "sha256"));
        if (!file || !sp || !sha || strchr(file, '/')) {
            rc = v3_errf(err, V3_EFORMAT, "%s: shard entry %zu lacks file/split/sha256", path, i);
            goto done;
        }
        if (split && strcmp(sp, split) != 0) continue;
        char sp_path[4096];
        snprintf(sp_path, sizeof sp_path, "%s/%s", dir, file);
        v3_shard *s = &d->shards[d->n_shards];
        if ((rc = v3_shard_open(s, sp_path, flags, err))) goto done;
        d->n_shards++;
        char hex[65];
        v3_sha256_hex(s->hdr.sha256, hex);
        if (strcmp(hex, sha) != 0 || (uint64_t)json_integer_value(json_object_get(e, "docs")) != s->n_docs ||
            (uint64_t)json_integer_value(json_object_get(e, "tokens")) != s->n_tokens) {
            rc = v3_errf(err, V3_EFORMAT, "%s: does not match its manifest entry (checksum or counts differ)", sp_path);
            goto done;
        }
        d->doc_base[d->n_shards] = d->doc_base[d->n_shards - 1] + s->n_docs;
        d->n_tokens += s->n_tokens;
        for (uint64_t k = 0; k < s->n_tokens; k++) d->n_loss += s->mask[k];
    }
    d->n_docs = d->doc_base[d->n_shards];
done:
    json_decref(m);
    if (rc) v3_dataset_close(d);
    return rc;
}

void v3_dataset_doc(const v3_dataset *d, uint64_t doc, const uint32_t **tokens, const uint8_t **mask,
                    uint64_t *len) {
    int lo = 0, hi = d->n_shards - 1; /* the shard with doc_base[s] <= doc < doc_base[s+1] */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->doc_base[mid] <= doc) lo = mid;
        else hi = mid - 1;
    }
    const v3_shard *s = &d->shards[lo];
    uint64_t k = doc - d->doc_base[lo];
    *tokens = s->tokens + s->docs[k];
    *mask = s->mask + s->docs[k];
    *len = s->docs[k + 1] - s->docs[k];
}

/* ---- planning ---- */

typedef struct pitem {
    uint64_t doc;
    uint32_t len;
    uint32_t rank; /* position in the shuffled order: the tie-break */
    uint64_t seq;  /* assigned sequence */
} pitem;

static int cmp_item(const void *a, const void *b) {
    const pitem *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* Segment tree over remaining capacities 0..T: count of open sequences with that much room.
 * find(L) = smallest capacity >= L that has an open sequence, or -1. */
typedef struct captree {
    int size;       /* leaves, a power of two > T */
    uint32_t *cnt;  /* [2*size] */
} captree;

static void ct_add(captree *t, int cap, int delta) {
    for (int i = cap + t->size; i >= 1; i /= 2) t->cnt[i] = (uint32_t)((int64_t)t->cnt[i] + delta);
}

static int ct_find(const captree *t, int L) {
    /* walk up from leaf L to find a right sibling subtree with a count, then descend leftmost */
    int i = L + t->size;
    if (t->cnt[i]) return L;
    while (i > 1) {
        if ((i & 1) == 0 && t->cnt[i + 1]) {
            i = i + 1;
            while (i < t->size) i = t->cnt[2 * i] ? 2 * i : 2 * i + 1;
            return i - t->size;
        }
        i /= 2;
    }
    return -1;
}

static void plan_free(v3_packer *p) {
    free(p->pieces);
    free(p->seq_start);
    free(p->seq_order);
    p->pieces = NULL;
    p->seq_start = p->seq_order = NULL;
    p->n_pieces = p->n_seq = 0;
}

static int plan_epoch(v3_packer *p, uint64_t epoch, v3_err *err) {
    plan_free(p);
    const v3_dataset *d = p->ds;
    const int64_t T = p->o.seq_len;
    uint64_t n = d->n_docs;
    p->tokens_packed = p->dropped = p->truncated = 0;
    pitem *items = malloc((n ? n : 1) * sizeof *items);
    uint64_t *perm = malloc((n ? n : 1) * sizeof *perm);
    int rc = V3_OK;
    if (!items || !perm) {
        rc = v3_errf(err, V3_ENOMEM, "packing: out of memory for %llu documents", (unsigned long long)n);
        goto out;
    }
    v3_rng r;
    v3_rng_seed(&r, p->o.seed ^ (0x9e3779b97f4a7c15ull * (epoch + 1)));
    for (uint64_t i = 0; i < n; i++) perm[i] = i;
    for (uint64_t i = n; i > 1; i--) { /* Fisher–Yates */
        uint64_t j = v3_rng_below(&r, i);
        uint64_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    uint64_t m = 0;
    for (uint64_t i = 0; i < n; i++) {
        const uint32_t *tok;
        const uint8_t *mask;
        uint64_t len;
        v3_dataset_doc(d, perm[i], &tok, &mask, &len);
        if ((int64_t)len > T) {
            if (p->o.overlong == V3_OVERLONG_DROP) {
                p->dropped++;
                continue;
            }
            p->truncated++;
            len = (uint64_t)T;
        }
        items[m].doc = perm[i];
        items[m].len = (uint32_t)len;
        items[m].rank = (uint32_t)i;
        m++;
    }
    qsort(items, m, sizeof *items, cmp_item);

    captree ct = {1, NULL};
    while (ct.size <= T) ct.size *= 2;
    ct.cnt = calloc(2 * (size_t)ct.size, sizeof *ct.cnt);
    /* open sequences by remaining room: head[cap] -> stack of sequence ids linked by next[] */
    int64_t *head = malloc(((size_t)T + 1) * sizeof *head);
    int64_t *next = malloc((m ? m : 1) * sizeof *next);
    uint32_t *room = malloc((m ? m : 1) * sizeof *room);
    if (!ct.cnt || !head || !next || !room) {
        rc = v3_errf(err, V3_ENOMEM, "packing: out of memory");
        goto out2;
    }
    for (int64_t c = 0; c <= T; c++) head[c] = -1;
    uint64_t n_seq = 0;
    for (uint64_t i = 0; i < m; i++) {
        int L = (int)items[i].len;
        int c = ct_find(&ct, L);
        uint64_t s;
        if (c < 0) { /* open a new sequence */
            s = n_seq++;
            room[s] = (uint32_t)T;
        } else { /* take the most recently opened sequence with exactly c room */
            s = (uint64_t)head[c];
            head[c] = next[s];
            ct_add(&ct, c, -1);
        }
        room[s] -= (uint32_t)L;
        items[i].seq = s;
        p->tokens_packed += (uint64_t)L;
        if (room[s] > 0) {
            next[s] = head[room[s]];
            head[room[s]] = (int64_t)s;
            ct_add(&ct, (int)room[s], +1);
        }
    }
    /* group pieces by sequence (counting sort keeps the longest-first order inside each) */
    p->seq_start = calloc(n_seq + 1, sizeof *p->seq_start);
    p->pieces = malloc((m ? m : 1) * sizeof *p->pieces);
    p->seq_order = malloc((n_seq ? n_seq : 1) * sizeof *p->seq_order);
    if (!p->seq_start || !p->pieces || !p->seq_order) {
        rc = v3_errf(err, V3_ENOMEM, "packing: out of memory");
        goto out2;
    }
    for (uint64_t i = 0; i < m; i++) p->seq_start[items[i].seq + 1]++;
    for (uint64_t s = 0; s < n_seq; s++) p->seq_start[s + 1] += p->seq_start[s];
    for (uint64_t s = 0; s < n_seq; s++) next[s] = (int64_t)p->seq_start[s]; /* reuse as fill cursor */
    for (uint64_t i = 0; i < m; i++) {
        uint64_t k = (uint64_t)next[items[i].seq]++;
        p->pieces[k].doc = items[i].doc;
        p->pieces[k].len = items[i].len;
    }
    p->n_pieces = m;
    p->n_seq = n_seq;
    for (uint64_t s = 0; s < n_seq; s++) p->seq_order[s] = s;
    for (uint64_t i = n_seq; i > 1; i--) {
        uint64_t j = v3_rng_below(&r, i);
        uint64_t t = p->seq_order[i - 1];
        p->seq_order[i - 1] = p->seq_order[j];
        p->seq_order[j] = t;
    }
    p->cur.epoch = epoch;
    p->cur.next = 0;
out2:
    free(ct.cnt);
    free(head);
    free(next);
    free(room);
out:
    free(items);
    free(perm);
    if (rc) plan_free(p);
    return rc;
}

int v3_packer_init(v3_packer *p, const v3_dataset *ds, const v3_pack_opts *o, v3_err *err) {
    memset(p, 0, sizeof *p);
    if (o->seq_len < 2 || o->seq_len > (1 << 30))
        return v3_errf(err, V3_EINVAL, "packing: seq_len %lld out of range [2, 2^30]", (long long)o->seq_len);
    int world = o->world > 0 ? o->world : 1;
    if (o->rank < 0 || o->rank >= world) return v3_errf(err, V3_EINVAL, "packing: rank %d not in [0, %d)", o->rank, world);
    p->ds = ds;
    p->o = *o;
    p->o.world = world;
    p->cur.seed = o->seed;
    return plan_epoch(p, 0, err);
}

void v3_packer_free(v3_packer *p) {
    if (!p) return;
    plan_free(p);
    memset(p, 0, sizeof *p);
}

int v3_packer_seek(v3_packer *p, const v3_pack_cursor *c, v3_err *err) {
    if (c->seed != p->o.seed)
        return v3_errf(err, V3_EINVAL, "packing: cursor seed %llu differs from the packer's %llu",
                       (unsigned long long)c->seed, (unsigned long long)p->o.seed);
    if (c->epoch != p->cur.epoch || !p->seq_start) {
        int rc = plan_epoch(p, c->epoch, err);
        if (rc) return rc;
    }
    if (c->next > v3_packer_steps_per_epoch(p))
        return v3_errf(err, V3_ERANGE, "packing: cursor at sequence %llu of an epoch of %llu",
                       (unsigned long long)c->next, (unsigned long long)v3_packer_steps_per_epoch(p));
    p->cur = *c;
    return V3_OK;
}

double v3_packer_efficiency(const v3_packer *p) {
    return p->n_seq ? (double)p->tokens_packed / ((double)p->n_seq * (double)p->o.seq_len) : 0.0;
}

uint64_t v3_packer_steps_per_epoch(const v3_packer *p) { return p->n_seq / (uint64_t)p->o.world; }

int v3_pack_batch_init(v3_pack_batch *b, int B, int T, v3_err *err) {
    memset(b, 0, sizeof *b);
    if (B < 1 || T < 2) return v3_errf(err, V3_EINVAL, "batch shape %d x %d", B, T);
    size_t n = (size_t)B * (size_t)T;
    b->B = B;
    b->T = T;
    b->tokens = malloc(n * sizeof(int32_t));
    b->targets = malloc(n * sizeof(int32_t));
    b->positions = malloc(n * sizeof(int32_t));
    b->doc_start = malloc(n * sizeof(int32_t));
    if (!b->tokens || !b->targets || !b->positions || !b->doc_start) {
        v3_pack_batch_free(b);
        return v3_errf(err, V3_ENOMEM, "out of memory for a %d x %d batch", B, T);
    }
    return V3_OK;
}

void v3_pack_batch_free(v3_pack_batch *b) {
    if (!b) return;
    free(b->tokens);
    free(b->targets);
    free(b->positions);
    free(b->doc_start);
    memset(b, 0, sizeof *b);
}

void v3_packer_fill_row(const v3_packer *p, uint64_t s, int32_t *tokens, int32_t *targets,
                        int32_t *positions, int32_t *doc_start) {
    const int64_t T = p->o.seq_len;
    int64_t t = 0;
    for (uint64_t k = p->seq_start[s]; k < p->seq_start[s + 1]; k++) {
        const uint32_t *tok;
        const uint8_t *mask;
        uint64_t len;
        v3_dataset_doc(p->ds, p->pieces[k].doc, &tok, &mask, &len);
        int64_t L = p->pieces[k].len, start = t;
        for (int64_t i = 0; i < L; i++, t++) {
            tokens[t] = (int32_t)tok[i];
            /* the target of position i is token i+1 of the same document, if it is trained on */
            targets[t] = (i + 1 < L && mask[i + 1]) ? (int32_t)tok[i + 1] : V3_IGNORE_INDEX;
            positions[t] = (int32_t)(i);
            doc_start[t] = (int32_t)start;
        }
    }
    for (int64_t start = t; t < T; t++) {
        tokens[t] = p->o.pad_id;
        targets[t] = V3_IGNORE_INDEX;
        positions[t] = (int32_t)(t - start);
        doc_start[t] = (int32_t)start;
    }
}

int v3_packer_next(v3_packer *p, v3_pack_batch *b, v3_err *err) {
    if (b->T != p->o.seq_len) return v3_errf(err, V3_EINVAL, "batch T %d != packer seq_len %lld", b->T, (long long)p->o.seq_len);
    for (int row = 0; row < b->B; row++) {
        if (p->cur.next >= v3_packer_steps_per_epoch(p)) {
            int rc = plan_epoch(p, p->cur.epoch + 1, err);
            if (rc) return rc;
            if (v3_packer_steps_per_epoch(p) == 0)
                return v3_errf(err, V3_ERANGE, "packing: no sequence for rank %d (too few documents)", p->o.rank);
        }
        uint64_t s = p->seq_order[p->cur.next * (uint64_t)p->o.world + (uint64_t)p->o.rank];
        size_t off = (size_t)row * (size_t)b->T;
        v3_packer_fill_row(p, s, b->tokens + off, b->targets + off, b->positions + off, b->doc_start + off);
        p->cur.next++;
    }
    return V3_OK;
}
