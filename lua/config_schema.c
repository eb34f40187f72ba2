/* config_schema.c — schema flattening and self-check, key lookup, and "did you mean" suggestions
 * (edit distance) for the config loader. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/config_internal.h"

const char *v3_cfg_type_name(v3_cfg_type t) {
    switch (t) {
    case V3_CFG_STRING: return "string";
    case V3_CFG_INT: return "integer";
    case V3_CFG_NUMBER: return "number";
    case V3_CFG_BOOL: return "boolean";
    case V3_CFG_STRING_LIST: return "list of strings";
    case V3_CFG_NUMBER_LIST: return "list of numbers";
    case V3_CFG_LIST: return "list";
    case V3_CFG_TABLE: return "table";
    }
    return "?";
}

static int ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int ident_char(char c) { return ident_start(c) || (c >= '0' && c <= '9'); }

/* Each dot-separated part a Lua identifier, so that the Lua dump can write it bare. */
static int path_ok(const char *p) {
    size_t len = strlen(p);
    if (len == 0 || len >= V3_CFG_PATH_MAX) return 0;
    int at_start = 1;
    for (const char *c = p; *c; c++) {
        if (*c == '.') {
            if (at_start) return 0;
            at_start = 1;
        } else if (at_start ? !ident_start(*c) : !ident_char(*c)) {
            return 0;
        } else {
            at_start = 0;
        }
    }
    return !at_start;
}

/* True when a (la bytes) is a proper prefix of b ending at a dot of b. */
static int is_prefix_at_dot(const char *a, size_t la, const char *b) {
    return strncmp(a, b, la) == 0 && b[la] == '.';
}

int v3_cfg_schema_flatten(const v3_cfg_schema *schema, v3_alloc_fault *fault,
                          const v3_cfg_key ***keys, size_t *n, v3_err *err) {
    size_t count = 0;
    for (size_t p = 0; schema->parts && schema->parts[p]; p++)
        for (const v3_cfg_key *k = schema->parts[p]; k->path; k++) count++;
    const v3_cfg_key **out = v3_fault_malloc(fault, (count ? count : 1) * sizeof *out);
    if (!out) return v3_errf(err, V3_ENOMEM, "schema '%s': out of memory", schema->name);
    size_t i = 0;
    for (size_t p = 0; schema->parts && schema->parts[p]; p++)
        for (const v3_cfg_key *k = schema->parts[p]; k->path; k++) out[i++] = k;
    for (i = 0; i < count; i++) {
        const v3_cfg_key *k = out[i];
        int rc = V3_OK;
        if (!path_ok(k->path))
            rc = v3_errf(err, V3_EINVAL, "schema '%s': bad key path '%s'", schema->name, k->path);
        else if (k->type < V3_CFG_STRING || k->type > V3_CFG_TABLE)
            rc = v3_errf(err, V3_EINVAL, "schema '%s': key '%s' has no valid type", schema->name,
                         k->path);
        else if (k->choices && k->type != V3_CFG_STRING)
            rc = v3_errf(err, V3_EINVAL, "schema '%s': key '%s' has choices but is not a string",
                         schema->name, k->path);
        for (size_t j = 0; rc == V3_OK && j < count; j++) {
            if (j == i) continue;
            size_t li = strlen(k->path);
            if (j > i && strcmp(k->path, out[j]->path) == 0)
                rc = v3_errf(err, V3_EINVAL, "schema '%s': key '%s' declared twice", schema->name,
                             k->path);
            else if (is_prefix_at_dot(k->path, li, out[j]->path))
                rc = v3_errf(err, V3_EINVAL, "schema '%s': key '%s' is declared below key '%s'",
                             schema->name, out[j]->path, k->path);
        }
        if (rc != V3_OK) {
            free(out);
            return rc;
        }
    }
    *keys = out;
    *n = count;
    return V3_OK;
}

int v3_cfg_find(const v3_cfg_key *const *keys, size_t n, const char *path, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strncmp(keys[i]->path, path, len) == 0 && keys[i]->path[len] == 0) return (int)i;
    return -1;
}

int v3_cfg_is_section(const v3_cfg_key *const *keys, size_t n, const char *path, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (is_prefix_at_dot(path, len, keys[i]->path)) return 1;
    return 0;
}

int v3_cfg_open_ancestor(const v3_cfg_key *const *keys, size_t n, const char *path, size_t len) {
    for (size_t i = 0; i < n; i++) {
        size_t lk = strlen(keys[i]->path);
        if (keys[i]->type == V3_CFG_TABLE && lk < len && strncmp(keys[i]->path, path, lk) == 0 &&
            path[lk] == '.')
            return (int)i;
    }
    return -1;
}

size_t v3_cfg_edit_distance(const char *a, size_t la, const char *b, size_t lb) {
    /* optimal string alignment: Levenshtein plus transposition of neighbours ("fats" -> "fast"
     * is one edit), kept in three rows; config paths are short, so fixed rows are enough */
    size_t r0[V3_CFG_PATH_MAX + 1], r1[V3_CFG_PATH_MAX + 1], r2[V3_CFG_PATH_MAX + 1];
    size_t *prev2 = r0, *prev = r1, *cur = r2;
    if (la > V3_CFG_PATH_MAX || lb > V3_CFG_PATH_MAX) return (size_t)-1;
    for (size_t j = 0; j <= lb; j++) prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < best) best = prev[j] + 1;
            if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* How far a typo may be from what was meant: a third of the word, at least 1, at most 3. */
static size_t typo_budget(size_t len) {
    size_t t = len / 3;
    return t < 1 ? 1 : t > 3 ? 3 : t;
}

static const char *last_part(const char *p) {
    const char *d = strrchr(p, '.');
    return d ? d + 1 : p;
}

void v3_cfg_suggest(const v3_cfg_key *const *keys, size_t n, const char *path, char *out,
                    size_t cap) {
    size_t lp = strlen(path), best = (size_t)-1;
    out[0] = 0;
    /* candidates: every key and every section (each proper prefix of a key at a dot) */
    for (size_t i = 0; i < n; i++) {
        const char *k = keys[i]->path;
        for (size_t end = 0;; end++) {
            if (k[end] == '.' || k[end] == 0) {
                size_t d = v3_cfg_edit_distance(path, lp, k, end);
                if (d < best) {
                    best = d;
                    snprintf(out, cap, "%.*s", (int)end, k);
                }
            }
            if (k[end] == 0) break;
        }
    }
    if (best != (size_t)-1 && best <= typo_budget(lp)) return;
    /* not a typo: perhaps the right name in the wrong section ("train.lr" for "optim.lr") */
    out[0] = 0;
    const char *lastp = last_part(path);
    int found = -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(last_part(keys[i]->path), lastp) == 0) {
            if (found >= 0) return; /* ambiguous */
            found = (int)i;
        }
    }
    if (found >= 0) snprintf(out, cap, "%s", keys[found]->path);
}

int v3_cfg_choice_ok(const char *choices, const char *s) {
    size_t ls = strlen(s);
    for (const char *c = choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t lc = bar ? (size_t)(bar - c) : strlen(c);
        if (lc == ls && strncmp(c, s, ls) == 0) return 1;
        c += lc + (bar != NULL);
    }
    return 0;
}

void v3_cfg_suggest_choice(const char *choices, const char *s, char *out, size_t cap) {
    size_t ls = strlen(s), best = (size_t)-1;
    out[0] = 0;
    for (const char *c = choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t lc = bar ? (size_t)(bar - c) : strlen(c);
        size_t d = v3_cfg_edit_distance(s, ls, c, lc);
        if (d < best && d <= typo_budget(ls)) {
            best = d;
            snprintf(out, cap, "%.*s", (int)lc, c);
        }
        c += lc + (bar != NULL);
    }
}
