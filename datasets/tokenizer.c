/* tokenizer.c — loading tokenizer.json and encoding/decoding exactly as HF `tokenizers` does.
 * See tokenizer.h for the pipeline; this file keeps everything read-only after load so one
 * tokenizer can serve a pool of worker threads. */
#include "datasets/tokenizer.h"

#include <jansson.h>
#include <oniguruma.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "datasets/pretok_deepseek.h"
#include "datasets/utf8.h"

#define FLAG_ADDED 1
#define FLAG_SPECIAL 2

/* ---------------------------------------------------------------- hash maps (built at load) */

typedef struct str_slot {
    char *s; /* owned key, NULL = empty slot */
    uint32_t len;
    int32_t id;
} str_slot;

typedef struct str_map {
    str_slot *slots;
    size_t mask;
} str_map;

static uint64_t fnv1a(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static int str_map_init(str_map *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->mask = cap - 1;
    return m->slots ? 0 : -1;
}

static void str_map_free(str_map *m) {
    if (!m->slots) return;
    for (size_t i = 0; i <= m->mask; i++) free(m->slots[i].s);
    free(m->slots);
    m->slots = NULL;
}

static str_slot *str_map_find(const str_map *m, const char *s, size_t n) {
    size_t i = (size_t)fnv1a(s, n) & m->mask;
    for (;;) {
        str_slot *sl = &m->slots[i];
        if (!sl->s || (sl->len == n && memcmp(sl->s, s, n) == 0)) return sl;
        i = (i + 1) & m->mask;
    }
}

/* Inserts or overwrites (later definitions win, as added tokens override the model vocab). */
static int str_map_put(str_map *m, const char *s, size_t n, int32_t id) {
    str_slot *sl = str_map_find(m, s, n);
    if (!sl->s) {
        sl->s = malloc(n + 1);
        if (!sl->s) return -1;
        memcpy(sl->s, s, n);
        sl->s[n] = 0;
        sl->len = (uint32_t)n;
    }
    sl->id = id;
    return 0;
}

static int32_t str_map_get(const str_map *m, const char *s, size_t n) {
    const str_slot *sl = str_map_find(m, s, n);
    return sl->s ? sl->id : -1;
}

/* (left id, right id) -> (rank, merged id); rank UINT32_MAX marks an empty slot. */
typedef struct merge_slot {
    uint64_t key;
    uint32_t rank;
    int32_t new_id;
} merge_slot;

static inline size_t merge_hash(uint64_t key, int bits) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* ---------------------------------------------------------------- the tokenizer object */

enum { PRE_SPLIT, PRE_BYTELEVEL };
enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };

typedef struct pretok {
    int type;
    OnigRegex re;   /* Split pattern, or ByteLevel's GPT-2 regex when use_regex */
    char *pattern;  /* the Split pattern as written (to recognise DeepSeek's, see below) */
    int literal;    /* a String pattern rather than a Regex */
    int behavior;
    int invert;
    int add_prefix_space;
} pretok;

typedef struct added_tok {
    int32_t id;
    int lstrip, rstrip, single_word, normalized, special;
} added_tok;

/* A byte trie of the added-token strings, one per matching phase. */
typedef struct trie_node {
    int32_t first_child, sibling;
    int32_t added; /* index into tok->added, -1 when no token ends here */
    uint8_t byte;
} trie_node;

typedef struct trie {
    trie_node *nodes;
    int32_t n, cap;
    int32_t root_child[256];
} trie;

/* Word cache: BPE results of short pieces, direct-mapped and split into shards with one mutex
 * each, so threads sharing the tokenizer rarely wait on each other. It is the only mutable part
 * of a loaded tokenizer and never changes a result, only how fast it is found (HF keeps a
 * similar cache). Slots hold pieces of up to CACHE_KEY bytes giving up to CACHE_IDS ids. */
#define CACHE_SHARD_BITS 6
#define CACHE_SLOT_BITS 10 /* per shard: 64 shards x 1024 slots x 64 bytes = 4 MiB */
#define CACHE_KEY 22
#define CACHE_IDS 8

typedef struct cache_slot {
    uint64_t hash; /* 0 = empty */
    uint8_t len, n_ids;
    char key[CACHE_KEY];
    int32_t ids[CACHE_IDS];
} cache_slot;

typedef struct cache_shard {
    pthread_mutex_t lock;
    cache_slot *slots;
} cache_shard;

struct v3_tokenizer {
    cache_shard cache[1 << CACHE_SHARD_BITS];
    int cache_ready;
    int32_t n_ids;
    char **tok_str;       /* [n_ids] the token as written in tokenizer.json, NULL = unused id */
    uint8_t *tok_bytes;   /* concatenated decode bytes */
    size_t *bytes_off;    /* [n_ids + 1] */
    uint8_t *flags;       /* [n_ids] FLAG_ADDED | FLAG_SPECIAL */
    str_map vocab;        /* token string -> id (model vocab, then added tokens) */
    merge_slot *merges;
    int merge_bits;
    int32_t byte_id[256]; /* id of each byte's single-symbol token */
    v3_bytelevel bl;
    pretok *pre;
    int n_pre;
    v3_pretok_ds *ds;     /* hand-written scanner when pre is DeepSeek-V3's exact sequence */
    added_tok *added;
    int n_added;
    trie tries[2];        /* [0] normalized=false tokens, matched first; [1] normalized=true */
    int ignore_merges;
    int32_t bos, eos;
    int add_bos, add_eos;
    char *chat_template;
};

/* ---------------------------------------------------------------- small helpers */

void v3_tok_ids_free(v3_tok_ids *v) {
    if (!v) return;
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

static int ids_reserve(v3_tok_ids *v, size_t extra, v3_err *err) {
    if (v->n + extra <= v->cap) return V3_OK;
    size_t nc = v->cap ? v->cap : 64;
    while (nc < v->n + extra) nc *= 2;
    int32_t *p = realloc(v->ids, nc * sizeof *p);
    if (!p) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory for %zu ids", __FILE__, __LINE__, nc);
    v->ids = p;
    v->cap = nc;
    return V3_OK;
}

int v3_tok_ids_push(v3_tok_ids *v, int32_t id, v3_err *err) {
    int rc = ids_reserve(v, 1, err);
    if (rc) return rc;
    v->ids[v->n++] = id;
    return V3_OK;
}

static int trie_add(trie *t, const char *s, size_t n, int32_t added_idx) {
    if (t->n == 0) {
        for (int i = 0; i < 256; i++) t->root_child[i] = -1;
    }
    int32_t node = -1; /* -1 = root */
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = node < 0 ? t->root_child[b] : t->nodes[node].first_child;
        if (node >= 0)
            while (c >= 0 && t->nodes[c].byte != b) c = t->nodes[c].sibling;
        if (c < 0) {
            if (t->n == t->cap) {
                int32_t nc = t->cap ? 2 * t->cap : 256;
                trie_node *p = realloc(t->nodes, (size_t)nc * sizeof *p);
                if (!p) return -1;
                t->nodes = p;
                t->cap = nc;
            }
            c = t->n++;
            t->nodes[c] = (trie_node){.first_child = -1, .sibling = -1, .added = -1, .byte = b};
            if (node < 0) {
                t->root_child[b] = c;
            } else {
                t->nodes[c].sibling = t->nodes[node].first_child;
                t->nodes[node].first_child = c;
            }
        }
        node = c;
    }
    if (node >= 0) t->nodes[node].added = added_idx;
    return 0;
}

static int is_ws_byte(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static int is_word_byte(uint8_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c >= 0x80;
}

/* ---------------------------------------------------------------- loading */

static int json_flag(json_t *o, const char *key, int dflt) {
    json_t *v = json_object_get(o, key);
    if (json_is_boolean(v)) return json_is_true(v);
    return dflt;
}

static int compile_regex(OnigRegex *re, const char *pat, size_t n, int literal, const char *path,
                         v3_err *err) {
    OnigErrorInfo einfo;
    /* The Rust onig crate (used by HF tokenizers) compiles with ONIG_OPTION_NONE, UTF-8 and
     * OnigDefaultSyntax; String patterns are literal text (ONIG_SYNTAX_ASIS here). */
    int r = onig_new(re, (const OnigUChar *)pat, (const OnigUChar *)pat + n, ONIG_OPTION_NONE,
                     ONIG_ENCODING_UTF8, literal ? ONIG_SYNTAX_ASIS : OnigDefaultSyntax, &einfo);
    if (r != ONIG_NORMAL) {
        OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &einfo);
        *re = NULL;
        return v3_errf(err, V3_EFORMAT, "%s: pre_tokenizer regex /%.*s/: %s", path, (int)n, pat,
                       (const char *)msg);
    }
    return V3_OK;
}

static int parse_pretok(v3_tokenizer *tok, json_t *pt, const char *path, v3_err *err) {
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type) return v3_errf(err, V3_EFORMAT, "%s: pre_tokenizer without a type", path);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(pt, "pretokenizers");
        if (!json_is_array(list))
            return v3_errf(err, V3_EFORMAT, "%s: Sequence pre_tokenizer without pretokenizers", path);
        size_t i;
        json_t *it;
        json_array_foreach(list, i, it) {
            int rc = parse_pretok(tok, it, path, err);
            if (rc) return rc;
        }
        return V3_OK;
    }
    pretok *np = realloc(tok->pre, (size_t)(tok->n_pre + 1) * sizeof *np);
    if (!np) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    tok->pre = np;
    pretok *p = &tok->pre[tok->n_pre];
    memset(p, 0, sizeof *p);
    if (strcmp(type, "Split") == 0) {
        json_t *pat = json_object_get(pt, "pattern");
        json_t *rx = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
        json_t *src = json_is_string(rx) ? rx : lit;
        if (!json_is_string(src))
            return v3_errf(err, V3_EFORMAT, "%s: Split pre_tokenizer without Regex/String pattern", path);
        int rc = compile_regex(&p->re, json_string_value(src), json_string_length(src), src == lit,
                               path, err);
        if (rc) return rc;
        tok->n_pre++; /* owned from here on, freed by v3_tok_free */
        p->type = PRE_SPLIT;
        p->literal = src == lit;
        p->pattern = strdup(json_string_value(src));
        if (!p->pattern) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
        const char *beh = json_string_value(json_object_get(pt, "behavior"));
        if (!beh) beh = "Isolated";
        if (strcmp(beh, "Removed") == 0) p->behavior = B_REMOVED;
        else if (strcmp(beh, "Isolated") == 0) p->behavior = B_ISOLATED;
        else if (strcmp(beh, "MergedWithPrevious") == 0) p->behavior = B_MERGED_PREV;
        else if (strcmp(beh, "MergedWithNext") == 0) p->behavior = B_MERGED_NEXT;
        else if (strcmp(beh, "Contiguous") == 0) p->behavior = B_CONTIGUOUS;
        else return v3_errf(err, V3_EUNSUPPORTED, "%s: Split behavior %s", path, beh);
        p->invert = json_flag(pt, "invert", 0);
        return V3_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        p->type = PRE_BYTELEVEL;
        p->add_prefix_space = json_flag(pt, "add_prefix_space", 1);
        if (json_flag(pt, "use_regex", 1)) {
            /* GPT-2's split, which HF's ByteLevel applies when use_regex is true */
            static const char gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+"
                                       "|\\s+(?!\\S)|\\s+";
            int rc = compile_regex(&p->re, gpt2, sizeof gpt2 - 1, 0, path, err);
            if (rc) return rc;
            p->behavior = B_ISOLATED;
        }
        tok->n_pre++;
        return V3_OK;
    }
    return v3_errf(err, V3_EUNSUPPORTED, "%s: pre_tokenizer type %s is not supported", path, type);
}

static int parse_merges(v3_tokenizer *tok, json_t *merges, const char *path, v3_err *err) {
    size_t n = json_array_size(merges);
    int bits = 4;
    while (((size_t)1 << bits) < 2 * n + 16) bits++;
    tok->merge_bits = bits;
    tok->merges = malloc(((size_t)1 << bits) * sizeof *tok->merges);
    if (!tok->merges) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    for (size_t i = 0; i < ((size_t)1 << bits); i++) tok->merges[i].rank = UINT32_MAX;
    char buf[1024];
    for (size_t r = 0; r < n; r++) {
        json_t *m = json_array_get(merges, r);
        const char *a, *b;
        size_t na, nb;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return v3_errf(err, V3_EFORMAT, "%s: merge %zu \"%s\" is not \"a b\"", path, r, s);
            a = s, na = (size_t)(sp - s), b = sp + 1, nb = strlen(sp + 1);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            na = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            nb = json_string_length(json_array_get(m, 1));
        } else {
            return v3_errf(err, V3_EFORMAT, "%s: merge %zu is neither \"a b\" nor [a, b]", path, r);
        }
        if (na + nb >= sizeof buf)
            return v3_errf(err, V3_EFORMAT, "%s: merge %zu is too long", path, r);
        int32_t ia = str_map_get(&tok->vocab, a, na), ib = str_map_get(&tok->vocab, b, nb);
        memcpy(buf, a, na);
        memcpy(buf + na, b, nb);
        int32_t inew = str_map_get(&tok->vocab, buf, na + nb);
        if (ia < 0 || ib < 0 || inew < 0)
            return v3_errf(err, V3_EFORMAT, "%s: merge %zu (%.*s %.*s) uses a token not in the vocab",
                           path, r, (int)na, a, (int)nb, b);
        uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        size_t h = merge_hash(key, bits);
        while (tok->merges[h].rank != UINT32_MAX && tok->merges[h].key != key)
            h = (h + 1) & (((size_t)1 << bits) - 1);
        if (tok->merges[h].rank == UINT32_MAX) { /* a repeated pair keeps its first (lowest) rank */
            tok->merges[h].key = key;
            tok->merges[h].rank = (uint32_t)r;
            tok->merges[h].new_id = inew;
        }
    }
    return V3_OK;
}

static const char *token_content(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    return json_string_value(json_object_get(v, "content"));
}

static int load_config(v3_tokenizer *tok, const char *path, v3_err *err) {
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    if (!cfg)
        return v3_errf(err, V3_EFORMAT, "%s:%d: %s", path, jerr.line, jerr.text);
    tok->add_bos = json_flag(cfg, "add_bos_token", 0);
    tok->add_eos = json_flag(cfg, "add_eos_token", 0);
    const char *bos = token_content(json_object_get(cfg, "bos_token"));
    const char *eos = token_content(json_object_get(cfg, "eos_token"));
    int rc = V3_OK;
    if (bos && (tok->bos = str_map_get(&tok->vocab, bos, strlen(bos))) < 0)
        rc = v3_errf(err, V3_EFORMAT, "%s: bos_token %s is not a token", path, bos);
    if (!rc && eos && (tok->eos = str_map_get(&tok->vocab, eos, strlen(eos))) < 0)
        rc = v3_errf(err, V3_EFORMAT, "%s: eos_token %s is not a token", path, eos);
    json_t *ct = json_object_get(cfg, "chat_template");
    if (!rc && json_is_string(ct)) {
        tok->chat_template = strdup(json_string_value(ct));
        if (!tok->chat_template) rc = v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    }
    json_decref(cfg);
    return rc;
}

static int build_decode_table(v3_tokenizer *tok, v3_err *err) {
    size_t total = 0;
    for (int32_t i = 0; i < tok->n_ids; i++)
        if (tok->tok_str[i]) total += strlen(tok->tok_str[i]);
    tok->tok_bytes = malloc(total + 1);
    tok->bytes_off = malloc(((size_t)tok->n_ids + 1) * sizeof *tok->bytes_off);
    if (!tok->tok_bytes || !tok->bytes_off)
        return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    size_t k = 0;
    for (int32_t i = 0; i < tok->n_ids; i++) {
        tok->bytes_off[i] = k;
        const char *s = tok->tok_str[i];
        if (!s) continue;
        size_t n = strlen(s);
        /* HF's ByteLevel decoder maps each symbol back to its byte; a token with any character
         * outside the map (e.g. <｜User｜>) contributes its own UTF-8 bytes instead. */
        long r = v3_bytelevel_decode(&tok->bl, s, n, tok->tok_bytes + k);
        if (r < 0) {
            memcpy(tok->tok_bytes + k, s, n);
            r = (long)n;
        }
        k += (size_t)r;
    }
    tok->bytes_off[tok->n_ids] = k;
    return V3_OK;
}

static int load_json(v3_tokenizer *tok, json_t *root, const char *path, v3_err *err) {
    json_t *model = json_object_get(root, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!mtype || strcmp(mtype, "BPE") != 0)
        return v3_errf(err, V3_EUNSUPPORTED, "%s: model.type %s (only BPE)", path, mtype ? mtype : "missing");
    if (json_flag(model, "byte_fallback", 0))
        return v3_errf(err, V3_EUNSUPPORTED, "%s: BPE byte_fallback is not supported", path);
    json_t *drop = json_object_get(model, "dropout");
    if (drop && !json_is_null(drop) && json_number_value(drop) != 0.0)
        return v3_errf(err, V3_EUNSUPPORTED, "%s: BPE dropout is not supported", path);
    const char *cont = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *suff = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if ((cont && *cont) || (suff && *suff))
        return v3_errf(err, V3_EUNSUPPORTED, "%s: subword prefix/suffix is not supported", path);
    tok->ignore_merges = json_flag(model, "ignore_merges", 0);

    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        const char *nt = json_string_value(json_object_get(norm, "type"));
        if (!nt || strcmp(nt, "Sequence") != 0 ||
            json_array_size(json_object_get(norm, "normalizers")) != 0)
            return v3_errf(err, V3_EUNSUPPORTED, "%s: normalizer %s is not supported (identity only)",
                           path, nt ? nt : "?");
    }
    json_t *post = json_object_get(root, "post_processor");
    if (post && !json_is_null(post)) {
        const char *pt = json_string_value(json_object_get(post, "type"));
        if (!pt || strcmp(pt, "ByteLevel") != 0)
            return v3_errf(err, V3_EUNSUPPORTED, "%s: post_processor %s is not supported", path, pt ? pt : "?");
    }
    json_t *dec = json_object_get(root, "decoder");
    const char *dt = json_string_value(json_object_get(dec, "type"));
    if (!dt || strcmp(dt, "ByteLevel") != 0)
        return v3_errf(err, V3_EUNSUPPORTED, "%s: decoder %s is not supported (ByteLevel only)", path,
                       dt ? dt : "missing");

    /* ids and strings */
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) return v3_errf(err, V3_EFORMAT, "%s: model.vocab is not an object", path);
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id > 100000000)
            return v3_errf(err, V3_EFORMAT, "%s: vocab entry %s has a bad id", path, key);
        if (id > max_id) max_id = id;
    }
    size_t i;
    json_t *it;
    json_array_foreach(added, i, it) {
        json_t *idv = json_object_get(it, "id");
        json_int_t id = json_integer_value(idv);
        if (!json_is_integer(idv) || id < 0 || id > 100000000 ||
            !json_is_string(json_object_get(it, "content")) ||
            json_string_length(json_object_get(it, "content")) == 0)
            return v3_errf(err, V3_EFORMAT, "%s: added_tokens[%zu] needs an id and a non-empty content", path, i);
        if (id > max_id) max_id = id;
    }
    tok->n_ids = (int32_t)(max_id + 1);
    tok->tok_str = calloc((size_t)tok->n_ids, sizeof *tok->tok_str);
    tok->flags = calloc((size_t)tok->n_ids, 1);
    tok->added = calloc(json_array_size(added) + 1, sizeof *tok->added);
    if (!tok->tok_str || !tok->flags || !tok->added ||
        str_map_init(&tok->vocab, json_object_size(vocab) + json_array_size(added)))
        return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (tok->tok_str[id]) return v3_errf(err, V3_EFORMAT, "%s: id %d appears twice in vocab", path, id);
        tok->tok_str[id] = strdup(key);
        if (!tok->tok_str[id] || str_map_put(&tok->vocab, key, strlen(key), id))
            return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    }
    json_array_foreach(added, i, it) {
        int32_t id = (int32_t)json_integer_value(json_object_get(it, "id"));
        json_t *cv = json_object_get(it, "content");
        const char *content = json_string_value(cv);
        size_t clen = json_string_length(cv);
        free(tok->tok_str[id]); /* HF decodes an added id to its content */
        tok->tok_str[id] = strdup(content);
        if (!tok->tok_str[id] || str_map_put(&tok->vocab, content, clen, id))
            return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
        added_tok *a = &tok->added[tok->n_added];
        a->id = id;
        a->lstrip = json_flag(it, "lstrip", 0);
        a->rstrip = json_flag(it, "rstrip", 0);
        a->single_word = json_flag(it, "single_word", 0);
        a->normalized = json_flag(it, "normalized", 0);
        a->special = json_flag(it, "special", 0);
        tok->flags[id] = FLAG_ADDED | (a->special ? FLAG_SPECIAL : 0);
        if (trie_add(&tok->tries[a->normalized ? 1 : 0], content, clen, tok->n_added))
            return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
        tok->n_added++;
    }
    for (int t = 0; t < 2; t++)
        if (tok->tries[t].n == 0)
            for (int b = 0; b < 256; b++) tok->tries[t].root_child[b] = -1;

    json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) return v3_errf(err, V3_EFORMAT, "%s: model.merges is not an array", path);
    int rc = parse_merges(tok, merges, path, err);
    if (rc) return rc;

    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (pre && !json_is_null(pre)) {
        rc = parse_pretok(tok, pre, path, err);
        if (rc) return rc;
    }
    int has_bl = 0;
    for (int k = 0; k < tok->n_pre; k++) has_bl |= tok->pre[k].type == PRE_BYTELEVEL;
    if (!has_bl)
        return v3_errf(err, V3_EUNSUPPORTED, "%s: no ByteLevel pre_tokenizer (only byte-level BPE is supported)", path);
    for (int b = 0; b < 256; b++) {
        tok->byte_id[b] = str_map_get(&tok->vocab, (const char *)tok->bl.sym[b], tok->bl.sym_len[b]);
        if (tok->byte_id[b] < 0)
            return v3_errf(err, V3_EUNSUPPORTED, "%s: byte 0x%02x has no byte-level token", path, b);
    }
    /* DeepSeek-V3's exact pre_tokenizer: use the equivalent hand-written scanner (20x fewer
     * cycles than running Oniguruma per piece); anything else goes through Oniguruma. */
    int ds = tok->n_pre == 4 && tok->pre[3].type == PRE_BYTELEVEL && !tok->pre[3].re &&
             !tok->pre[3].add_prefix_space;
    for (int k = 0; ds && k < 3; k++)
        ds = tok->pre[k].type == PRE_SPLIT && tok->pre[k].behavior == B_ISOLATED && !tok->pre[k].invert &&
             !tok->pre[k].literal && strcmp(tok->pre[k].pattern, v3_pretok_ds_patterns[k]) == 0;
    if (ds && (rc = v3_pretok_ds_init(&tok->ds, err))) return rc;
    return build_decode_table(tok, err);
}

int v3_tok_load_files(v3_tokenizer **out, const char *json_path, const char *config_path,
                      v3_err *err) {
    v3_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    tok->bos = tok->eos = -1;
    v3_bytelevel_init(&tok->bl);
    json_error_t jerr;
    json_t *root = json_load_file(json_path, JSON_ALLOW_NUL, &jerr);
    int rc;
    if (!root) {
        rc = v3_errf(err, jerr.line > 0 ? V3_EFORMAT : V3_EIO, "%s:%d: %s", json_path, jerr.line, jerr.text);
    } else {
        rc = load_json(tok, root, json_path, err);
        json_decref(root);
    }
    if (!rc && config_path) rc = load_config(tok, config_path, err);
    if (!rc) {
        for (int i = 0; i < (1 << CACHE_SHARD_BITS); i++) {
            tok->cache[i].slots = calloc((size_t)1 << CACHE_SLOT_BITS, sizeof(cache_slot));
            if (!tok->cache[i].slots || pthread_mutex_init(&tok->cache[i].lock, NULL) != 0) {
                free(tok->cache[i].slots);
                tok->cache[i].slots = NULL;
                rc = v3_errf(err, V3_ENOMEM, "%s:%d: out of memory for the word cache", __FILE__, __LINE__);
                break;
            }
            tok->cache_ready = i + 1;
        }
    }
    if (rc) {
        v3_tok_free(tok);
        return rc;
    }
    *out = tok;
    return V3_OK;
}

int v3_tok_load(v3_tokenizer **out, const char *dir, v3_err *err) {
    char jp[4096], cp[4096];
    snprintf(jp, sizeof jp, "%s/tokenizer.json", dir);
    snprintf(cp, sizeof cp, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(cp, "rb");
    if (f) fclose(f);
    return v3_tok_load_files(out, jp, f ? cp : NULL, err);
}

void v3_tok_free(v3_tokenizer *tok) {
    if (!tok) return;
    for (int i = 0; i < tok->cache_ready; i++) {
        pthread_mutex_destroy(&tok->cache[i].lock);
        free(tok->cache[i].slots);
    }
    if (tok->tok_str)
        for (int32_t i = 0; i < tok->n_ids; i++) free(tok->tok_str[i]);
    free(tok->tok_str);
    free(tok->tok_bytes);
    free(tok->bytes_off);
    free(tok->flags);
    str_map_free(&tok->vocab);
    free(tok->merges);
    for (int i = 0; i < tok->n_pre; i++) {
        if (tok->pre[i].re) onig_free(tok->pre[i].re);
        free(tok->pre[i].pattern);
    }
    v3_pretok_ds_free(tok->ds);
    free(tok->pre);
    free(tok->added);
    free(tok->tries[0].nodes);
    free(tok->tries[1].nodes);
    free(tok->chat_template);
    free(tok);
}

/* ---------------------------------------------------------------- BPE */

static inline int merge_lookup(const v3_tokenizer *tok, int32_t a, int32_t b, uint32_t *rank,
                               int32_t *new_id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = ((size_t)1 << tok->merge_bits) - 1;
    size_t h = merge_hash(key, tok->merge_bits);
    for (;;) {
        const merge_slot *s = &tok->merges[h];
        if (s->rank == UINT32_MAX) return 0;
        if (s->key == key) {
            *rank = s->rank;
            *new_id = s->new_id;
            return 1;
        }
        h = (h + 1) & mask;
    }
}

/* Per-call scratch, grown as needed and reused across the pieces of one encode call. */
typedef struct scratch {
    int32_t *sym;      /* symbol ids */
    uint32_t *rank;    /* rank of the pair (i, i+1) */
    int32_t *newid;
    int32_t *prev, *next;
    uint64_t *heap;    /* (rank << 32 | pos) */
    size_t cap;
} scratch;

static int scratch_reserve(scratch *w, size_t n, v3_err *err) {
    if (n <= w->cap) return V3_OK;
    size_t nc = w->cap ? w->cap : 256;
    while (nc < n) nc *= 2;
    free(w->sym), free(w->rank), free(w->newid), free(w->prev), free(w->next), free(w->heap);
    w->sym = malloc(nc * sizeof *w->sym);
    w->rank = malloc(nc * sizeof *w->rank);
    w->newid = malloc(nc * sizeof *w->newid);
    w->prev = malloc(nc * sizeof *w->prev);
    w->next = malloc(nc * sizeof *w->next);
    w->heap = malloc(2 * nc * sizeof *w->heap);
    w->cap = nc;
    if (!w->sym || !w->rank || !w->newid || !w->prev || !w->next || !w->heap) {
        w->cap = 0;
        return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    }
    return V3_OK;
}

static void scratch_free(scratch *w) {
    free(w->sym), free(w->rank), free(w->newid), free(w->prev), free(w->next), free(w->heap);
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = v;
    return top;
}

/* Below this length the pair ranks live in an array scanned for the minimum (cheap and cache
 * friendly); longer pieces (runs of spaces, long identifiers) use a heap so cost stays n log n. */
#define BPE_SMALL 48

static int bpe_piece(const v3_tokenizer *tok, const uint8_t *p, size_t n, scratch *w,
                     v3_tok_ids *out, v3_err *err) {
    if (n == 1) return v3_tok_ids_push(out, tok->byte_id[p[0]], err);
    int rc = scratch_reserve(w, n + 1, err);
    if (rc) return rc;
    if (tok->ignore_merges) {
        /* the whole piece, written in byte-level symbols, may be a token by itself */
        char small[512];
        if (n * 2 <= sizeof small) {
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                memcpy(small + k, tok->bl.sym[p[i]], tok->bl.sym_len[p[i]]);
                k += tok->bl.sym_len[p[i]];
            }
            int32_t id = str_map_get(&tok->vocab, small, k);
            if (id >= 0 && !(tok->flags[id] & FLAG_ADDED)) return v3_tok_ids_push(out, id, err);
        }
    }
    int32_t *sym = w->sym;
    for (size_t i = 0; i < n; i++) sym[i] = tok->byte_id[p[i]];
    if (n <= BPE_SMALL) {
        size_t m = n;
        uint32_t *rk = w->rank;
        int32_t *nid = w->newid;
        for (size_t i = 0; i + 1 < m; i++)
            if (!merge_lookup(tok, sym[i], sym[i + 1], &rk[i], &nid[i])) rk[i] = UINT32_MAX;
        while (m > 1) {
            size_t best = 0;
            for (size_t i = 1; i + 1 < m; i++)
                if (rk[i] < rk[best]) best = i; /* strict: the leftmost of equal ranks wins */
            if (rk[best] == UINT32_MAX) break;
            sym[best] = nid[best];
            for (size_t i = best + 1; i + 1 < m; i++) { /* short shifts: a loop beats memmove calls */
                sym[i] = sym[i + 1];
                rk[i] = rk[i + 1];
                nid[i] = nid[i + 1];
            }
            m--;
            if (best > 0 && !merge_lookup(tok, sym[best - 1], sym[best], &rk[best - 1], &nid[best - 1]))
                rk[best - 1] = UINT32_MAX;
            if (best + 1 < m && !merge_lookup(tok, sym[best], sym[best + 1], &rk[best], &nid[best]))
                rk[best] = UINT32_MAX;
        }
        rc = ids_reserve(out, m, err);
        if (rc) return rc;
        memcpy(out->ids + out->n, sym, m * sizeof *sym);
        out->n += m;
        return V3_OK;
    }
    /* heap version: symbols in a linked list; stale heap entries are skipped on pop */
    int32_t *prev = w->prev, *next = w->next;
    uint8_t *alive = (uint8_t *)w->newid; /* n bytes fit in n int32 */
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        alive[i] = 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r;
        int32_t nid;
        if (merge_lookup(tok, sym[i], sym[i + 1], &r, &nid)) heap_push(w->heap, &hn, ((uint64_t)r << 32) | i);
    }
    while (hn) {
        uint64_t top = heap_pop(w->heap, &hn);
        uint32_t r = (uint32_t)(top >> 32);
        int32_t pos = (int32_t)(uint32_t)top;
        if (!alive[pos] || next[pos] < 0) continue;
        int32_t nx = next[pos];
        uint32_t cr;
        int32_t nid;
        if (!merge_lookup(tok, sym[pos], sym[nx], &cr, &nid) || cr != r) continue; /* stale */
        sym[pos] = nid;
        alive[nx] = 0;
        next[pos] = next[nx];
        if (next[nx] >= 0) prev[next[nx]] = pos;
        if (prev[pos] >= 0 && merge_lookup(tok, sym[prev[pos]], sym[pos], &cr, &nid))
            heap_push(w->heap, &hn, ((uint64_t)cr << 32) | (uint32_t)prev[pos]);
        if (next[pos] >= 0 && merge_lookup(tok, sym[pos], sym[next[pos]], &cr, &nid))
            heap_push(w->heap, &hn, ((uint64_t)cr << 32) | (uint32_t)pos);
    }
    rc = ids_reserve(out, n, err);
    if (rc) return rc;
    for (int32_t i = 0; i >= 0; i = next[i]) out->ids[out->n++] = sym[i];
    return V3_OK;
}

/* bpe_piece through the word cache. */
static int bpe_cached(const v3_tokenizer *tok, const uint8_t *p, size_t n, scratch *w, v3_tok_ids *out,
                      v3_err *err) {
    if (n == 1) return v3_tok_ids_push(out, tok->byte_id[p[0]], err);
    if (n > CACHE_KEY) return bpe_piece(tok, p, n, w, out, err);
    uint64_t h = fnv1a(p, n) | 1;
    cache_shard *sh = (cache_shard *)&tok->cache[h >> (64 - CACHE_SHARD_BITS)];
    cache_slot *sl = &sh->slots[(h >> 8) & (((size_t)1 << CACHE_SLOT_BITS) - 1)];
    int32_t found[CACHE_IDS];
    int nf = -1;
    pthread_mutex_lock(&sh->lock);
    if (sl->hash == h && sl->len == n && memcmp(sl->key, p, n) == 0) {
        nf = sl->n_ids;
        memcpy(found, sl->ids, (size_t)nf * sizeof *found);
    }
    pthread_mutex_unlock(&sh->lock);
    int rc;
    if (nf >= 0) {
        if ((rc = ids_reserve(out, (size_t)nf, err))) return rc;
        memcpy(out->ids + out->n, found, (size_t)nf * sizeof *found);
        out->n += (size_t)nf;
        return V3_OK;
    }
    size_t n0 = out->n;
    if ((rc = bpe_piece(tok, p, n, w, out, err))) return rc;
    size_t k = out->n - n0;
    if (k <= CACHE_IDS) {
        pthread_mutex_lock(&sh->lock);
        sl->hash = h;
        sl->len = (uint8_t)n;
        sl->n_ids = (uint8_t)k;
        memcpy(sl->key, p, n);
        memcpy(sl->ids, out->ids + n0, k * sizeof *out->ids);
        pthread_mutex_unlock(&sh->lock);
    }
    return V3_OK;
}

/* ---------------------------------------------------------------- pre-tokenization */

typedef struct piece {
    const char *p;
    size_t n;
} piece;

typedef struct piece_vec {
    piece *v;
    size_t n, cap;
} piece_vec;

static int pv_push(piece_vec *pv, const char *p, size_t n, v3_err *err) {
    if (n == 0) return V3_OK; /* HF drops empty splits */
    if (pv->n == pv->cap) {
        size_t nc = pv->cap ? 2 * pv->cap : 64;
        piece *q = realloc(pv->v, nc * sizeof *q);
        if (!q) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
        pv->v = q;
        pv->cap = nc;
    }
    pv->v[pv->n++] = (piece){p, n};
    return V3_OK;
}

typedef struct span {
    size_t s, e;
    int match;
} span;

typedef struct encode_ctx {
    const v3_tokenizer *tok;
    int flags;
    v3_tok_ids *out;
    v3_err *err;
    piece_vec a, b;
    span *spans;
    size_t n_spans, cap_spans;
    OnigRegion *region;
    scratch w;
    char **bufs; /* copies made for add_prefix_space */
    size_t n_bufs;
} encode_ctx;

static int span_push(encode_ctx *c, size_t s, size_t e, int match, v3_err *err) {
    if (c->n_spans == c->cap_spans) {
        size_t nc = c->cap_spans ? 2 * c->cap_spans : 64;
        span *q = realloc(c->spans, nc * sizeof *q);
        if (!q) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
        c->spans = q;
        c->cap_spans = nc;
    }
    c->spans[c->n_spans++] = (span){s, e, match};
    return V3_OK;
}

/* Splits one piece with a regex as HF's Split does: the match list of onig's find_iter over the
 * piece alone, then the delimiter behaviour. */
static int split_piece(encode_ctx *c, const pretok *pt, piece pc, piece_vec *outv, v3_err *err) {
    const OnigUChar *str = (const OnigUChar *)pc.p, *end = str + pc.n;
    size_t pos = 0, prev = 0;
    long last_match_end = -1;
    int rc;
    c->n_spans = 0;
    if (!c->region && !(c->region = onig_region_new()))
        return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    while (pos <= pc.n) {
        onig_region_clear(c->region);
        int r = onig_search(pt->re, str, end, str + pos, end, c->region, ONIG_OPTION_NONE);
        if (r == ONIG_MISMATCH) break;
        if (r < 0) return v3_errf(err, V3_EFORMAT, "%s:%d: oniguruma search failed (%ld)", __FILE__, __LINE__, (long)r);
        size_t ms = (size_t)r, me = (size_t)c->region->end[0];
        if (ms == me && last_match_end == (long)me) {
            /* empty match right after the previous one: step one character, like onig's
             * FindMatches, so the search always advances */
            uint32_t cp;
            int k = pos < pc.n ? v3_utf8_next(str + pos, pc.n - pos, &cp) : 1;
            pos += k > 0 ? (size_t)k : 1;
            continue;
        }
        if (prev != ms && (rc = span_push(c, prev, ms, 0, err))) return rc;
        if ((rc = span_push(c, ms, me, 1, err))) return rc;
        prev = me;
        pos = me;
        last_match_end = (long)me;
    }
    if (prev != pc.n && (rc = span_push(c, prev, pc.n, 0, err))) return rc;
    if (pt->invert)
        for (size_t i = 0; i < c->n_spans; i++) c->spans[i].match = !c->spans[i].match;

    span *sp = c->spans;
    size_t ns = c->n_spans;
    switch (pt->behavior) {
    case B_ISOLATED:
        for (size_t i = 0; i < ns; i++)
            if ((rc = pv_push(outv, pc.p + sp[i].s, sp[i].e - sp[i].s, err))) return rc;
        break;
    case B_REMOVED:
        for (size_t i = 0; i < ns; i++)
            if (!sp[i].match && (rc = pv_push(outv, pc.p + sp[i].s, sp[i].e - sp[i].s, err))) return rc;
        break;
    case B_MERGED_PREV: {
        /* a delimiter joins the piece before it */
        size_t k = 0;
        int prev_match = 0;
        for (size_t i = 0; i < ns; i++) {
            if (sp[i].match && !prev_match && k > 0) sp[k - 1].e = sp[i].e;
            else sp[k++] = sp[i];
            prev_match = sp[i].match;
        }
        for (size_t i = 0; i < k; i++)
            if ((rc = pv_push(outv, pc.p + sp[i].s, sp[i].e - sp[i].s, err))) return rc;
        break;
    }
    case B_MERGED_NEXT: {
        /* a delimiter joins the piece after it: walk backwards */
        size_t k = ns;
        int prev_match = 0;
        for (size_t i = ns; i-- > 0;) {
            if (sp[i].match && !prev_match && k < ns) sp[k].s = sp[i].s;
            else sp[--k] = sp[i];
            prev_match = sp[i].match;
        }
        for (size_t i = k; i < ns; i++)
            if ((rc = pv_push(outv, pc.p + sp[i].s, sp[i].e - sp[i].s, err))) return rc;
        break;
    }
    case B_CONTIGUOUS: {
        size_t k = 0;
        int prev_match = 0;
        for (size_t i = 0; i < ns; i++) {
            if (sp[i].match == prev_match && k > 0) sp[k - 1].e = sp[i].e;
            else sp[k++] = sp[i];
            prev_match = sp[i].match;
        }
        for (size_t i = 0; i < k; i++)
            if ((rc = pv_push(outv, pc.p + sp[i].s, sp[i].e - sp[i].s, err))) return rc;
        break;
    }
    }
    return V3_OK;
}

static int piece_cb(void *ctx, const char *p, size_t n) {
    encode_ctx *c = ctx;
    return bpe_cached(c->tok, (const uint8_t *)p, n, &c->w, c->out, c->err);
}

/* Pre-tokenizes and BPE-encodes one run of text that holds no added token. */
static int encode_text(encode_ctx *c, const char *p, size_t n, v3_tok_ids *out, v3_err *err) {
    const v3_tokenizer *tok = c->tok;
    int rc;
    if (tok->ds && !(c->flags & V3_TOK_NO_FASTPATH)) {
        c->out = out;
        c->err = err;
        return v3_pretok_ds_split(tok->ds, p, n, piece_cb, c);
    }
    c->a.n = 0;
    if ((rc = pv_push(&c->a, p, n, err))) return rc;
    for (int k = 0; k < tok->n_pre; k++) {
        const pretok *pt = &tok->pre[k];
        if (pt->type == PRE_BYTELEVEL && pt->add_prefix_space) {
            for (size_t i = 0; i < c->a.n; i++) {
                piece *pc = &c->a.v[i];
                if (pc->p[0] == ' ') continue;
                char **nb = realloc(c->bufs, (c->n_bufs + 1) * sizeof *nb);
                char *copy = malloc(pc->n + 1);
                if (nb) c->bufs = nb;
                if (!nb || !copy) {
                    free(copy);
                    return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
                }
                c->bufs[c->n_bufs++] = copy;
                copy[0] = ' ';
                memcpy(copy + 1, pc->p, pc->n);
                pc->p = copy;
                pc->n++;
            }
        }
        if (!pt->re) continue; /* ByteLevel without regex: the byte map is applied in BPE */
        c->b.n = 0;
        for (size_t i = 0; i < c->a.n; i++)
            if ((rc = split_piece(c, pt, c->a.v[i], &c->b, err))) return rc;
        piece_vec t = c->a;
        c->a = c->b;
        c->b = t;
    }
    for (size_t i = 0; i < c->a.n; i++)
        if ((rc = bpe_cached(tok, (const uint8_t *)c->a.v[i].p, c->a.v[i].n, &c->w, out, err))) return rc;
    return V3_OK;
}

/* Leftmost-longest added-token match in text[s..e) using trie t; returns 0 when none. */
static int find_added(const v3_tokenizer *tok, const trie *t, const char *text, size_t s, size_t e,
                      size_t *ms, size_t *me, int32_t *added_idx) {
    const uint8_t *u = (const uint8_t *)text;
    for (size_t i = s; i < e; i++) {
        int32_t node = t->root_child[u[i]];
        if (node < 0) continue;
        int32_t best = -1;
        size_t bend = 0, j = i;
        while (node >= 0) {
            if (t->nodes[node].added >= 0) {
                best = t->nodes[node].added;
                bend = j + 1;
            }
            if (++j >= e) break;
            int32_t ch = t->nodes[node].first_child;
            while (ch >= 0 && t->nodes[ch].byte != u[j]) ch = t->nodes[ch].sibling;
            node = ch;
        }
        if (best < 0) continue;
        const added_tok *a = &tok->added[best];
        /* single_word: the token must not touch word characters on either side */
        if (a->single_word && ((i > s && is_word_byte(u[i - 1])) || (bend < e && is_word_byte(u[bend]))))
            continue;
        size_t a0 = i, a1 = bend;
        if (a->lstrip)
            while (a0 > s && is_ws_byte(u[a0 - 1])) a0--;
        if (a->rstrip)
            while (a1 < e && is_ws_byte(u[a1])) a1++;
        *ms = a0;
        *me = a1;
        *added_idx = best;
        return 1;
    }
    return 0;
}

static int encode_phase(encode_ctx *c, const char *text, size_t s, size_t e, int phase, int no_added,
                        v3_tok_ids *out, v3_err *err) {
    const v3_tokenizer *tok = c->tok;
    if (no_added || phase == 2) return e > s ? encode_text(c, text + s, e - s, out, err) : V3_OK;
    size_t pos = s, ms, me;
    int32_t ai;
    int rc;
    while (pos < e && find_added(tok, &tok->tries[phase], text, pos, e, &ms, &me, &ai)) {
        if (ms > pos && (rc = encode_phase(c, text, pos, ms, phase + 1, 0, out, err))) return rc;
        if ((rc = v3_tok_ids_push(out, tok->added[ai].id, err))) return rc;
        pos = me;
    }
    return pos < e ? encode_phase(c, text, pos, e, phase + 1, 0, out, err) : V3_OK;
}

int v3_tok_encode(const v3_tokenizer *tok, const char *text, size_t len, int flags,
                  v3_tok_ids *out, v3_err *err) {
    size_t n0 = out->n, bad;
    char *repaired = NULL;
    int rc = V3_OK;
    if (!v3_utf8_valid((const uint8_t *)text, len, &bad)) {
        if (!(flags & V3_TOK_LOSSY))
            return v3_errf(err, V3_EFORMAT, "invalid UTF-8 at byte offset %zu (byte 0x%02x)", bad,
                           (unsigned)(uint8_t)text[bad]);
        size_t rl = 0, rcap = 0;
        if (v3_utf8_lossy_append((const uint8_t *)text, len, &repaired, &rl, &rcap))
            return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
        text = repaired;
        len = rl;
    }
    int bos = (flags & V3_TOK_ADD_BOS) || ((flags & V3_TOK_DEFAULT_BOS) && tok->add_bos);
    int eos = (flags & V3_TOK_ADD_EOS) || ((flags & V3_TOK_DEFAULT_BOS) && tok->add_eos);
    encode_ctx c = {.tok = tok, .flags = flags}; /* the onig region is made on first use */
    if (bos) {
        if (tok->bos < 0) rc = v3_errf(err, V3_EINVAL, "encode: BOS requested but tokenizer has no bos_token");
        else rc = v3_tok_ids_push(out, tok->bos, err);
    }
    if (!rc) rc = encode_phase(&c, text, 0, len, 0, flags & V3_TOK_NO_ADDED, out, err);
    if (!rc && eos) {
        if (tok->eos < 0) rc = v3_errf(err, V3_EINVAL, "encode: EOS requested but tokenizer has no eos_token");
        else rc = v3_tok_ids_push(out, tok->eos, err);
    }
    if (c.region) onig_region_free(c.region, 1);
    free(c.a.v);
    free(c.b.v);
    free(c.spans);
    scratch_free(&c.w);
    for (size_t i = 0; i < c.n_bufs; i++) free(c.bufs[i]);
    free(c.bufs);
    free(repaired);
    if (rc) out->n = n0;
    return rc;
}

/* ---------------------------------------------------------------- decoding */

int32_t v3_tok_n_ids(const v3_tokenizer *tok) { return tok->n_ids; }

int32_t v3_tok_token_id(const v3_tokenizer *tok, const char *token) {
    return str_map_get(&tok->vocab, token, strlen(token));
}

const char *v3_tok_token_str(const v3_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_ids ? tok->tok_str[id] : NULL;
}

const uint8_t *v3_tok_token_bytes(const v3_tokenizer *tok, int32_t id, size_t *n) {
    if (id < 0 || id >= tok->n_ids || !tok->tok_str[id]) return NULL;
    *n = tok->bytes_off[id + 1] - tok->bytes_off[id];
    return tok->tok_bytes + tok->bytes_off[id];
}

int v3_tok_is_special(const v3_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_ids && (tok->flags[id] & FLAG_SPECIAL);
}

int v3_tok_is_added(const v3_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_ids && (tok->flags[id] & FLAG_ADDED);
}

int32_t v3_tok_bos_id(const v3_tokenizer *tok) { return tok->bos; }
int32_t v3_tok_eos_id(const v3_tokenizer *tok) { return tok->eos; }
int v3_tok_add_bos_default(const v3_tokenizer *tok) { return tok->add_bos; }
const char *v3_tok_chat_template(const v3_tokenizer *tok) { return tok->chat_template; }

int v3_tok_decode(const v3_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                  char **out, size_t *out_len, v3_err *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_ids || !tok->tok_str[id])
            return v3_errf(err, V3_ERANGE, "decode: id %d at position %zu is not a token", id, i);
        total += tok->bytes_off[id + 1] - tok->bytes_off[id];
    }
    uint8_t *raw = malloc(total + 1);
    if (!raw) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (skip_special && (tok->flags[id] & FLAG_SPECIAL)) continue;
        size_t bl = tok->bytes_off[id + 1] - tok->bytes_off[id];
        memcpy(raw + k, tok->tok_bytes + tok->bytes_off[id], bl);
        k += bl;
    }
    char *s = NULL;
    size_t len = 0, cap = 0;
    int bad = v3_utf8_lossy_append(raw, k, &s, &len, &cap);
    free(raw);
    if (bad) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    *out = s;
    *out_len = len;
    return V3_OK;
}

void v3_tok_stream_init(v3_tok_stream *s, const v3_tokenizer *tok, int skip_special) {
    memset(s, 0, sizeof *s);
    s->tok = tok;
    s->skip_special = skip_special;
}

int v3_tok_stream_push(v3_tok_stream *s, int32_t id, char **out, size_t *len, size_t *cap,
                       v3_err *err) {
    const v3_tokenizer *tok = s->tok;
    if (id < 0 || id >= tok->n_ids || !tok->tok_str[id])
        return v3_errf(err, V3_ERANGE, "decode: id %d is not a token", id);
    if (s->skip_special && (tok->flags[id] & FLAG_SPECIAL)) {
        if (!*out && v3_utf8_lossy_append(NULL, 0, out, len, cap))
            return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
        return V3_OK;
    }
    size_t bl = tok->bytes_off[id + 1] - tok->bytes_off[id];
    uint8_t stackbuf[256];
    uint8_t *buf = bl + 4 <= sizeof stackbuf ? stackbuf : malloc(bl + 4);
    if (!buf) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    size_t n = (size_t)s->n_held;
    memcpy(buf, s->held, n);
    memcpy(buf + n, tok->tok_bytes + tok->bytes_off[id], bl);
    n += bl;
    /* Find where a possibly-incomplete final sequence starts: scan from the last few bytes for
     * a position whose sequence is a truncated-but-valid prefix reaching the end. */
    size_t cut = n;
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        size_t i = n - back;
        uint32_t cp;
        if (buf[i] < 0xC0) continue; /* ASCII or continuation: not a start */
        if (v3_utf8_next(buf + i, n - i, &cp) == 0) {
            /* only hold it if the bytes before it end cleanly (they are complete or invalid
             * on their own, judged independently of what follows) */
            cut = i;
        }
        break;
    }
    int rc = V3_OK;
    if (v3_utf8_lossy_append(buf, cut, out, len, cap))
        rc = v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    s->n_held = (int)(n - cut);
    memcpy(s->held, buf + cut, n - cut);
    if (buf != stackbuf) free(buf);
    return rc;
}

int v3_tok_stream_flush(v3_tok_stream *s, char **out, size_t *len, size_t *cap, v3_err *err) {
    int rc = V3_OK;
    if (v3_utf8_lossy_append(s->held, (size_t)s->n_held, out, len, cap))
        rc = v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    s->n_held = 0;
    return rc;
}

const char *v3_tok_find_dir(const char *given, const char *model_dir, char *buf, size_t n) {
    if (given) return given;
    if (model_dir) {
        snprintf(buf, n, "%s/tokenizer.json", model_dir);
        if (v3_file_exists(buf)) return model_dir;
    }
    const char *env = getenv("V3_TOKENIZER_DIR");
    if (env && *env) snprintf(buf, n, "%s", env);
    else snprintf(buf, n, "%s/../shared/data/deepseek-v3", V3_SOURCE_DIR);
    return buf;
}
