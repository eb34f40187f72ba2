/* config_internal.h — helpers shared by the config loader, getters and dumps (not a public API). */
#ifndef V3_LUA_CONFIG_INTERNAL_H
#define V3_LUA_CONFIG_INTERNAL_H

#include <stddef.h>

#include "lua/config.h"

/* Longest dotted key path accepted (file keys nest at most this deep in characters). */
#define V3_CFG_PATH_MAX 256

/* Collects the schema's keys in declaration order into *keys (malloc'd through fault) and checks
 * the schema itself: paths well formed, no duplicates, no key below a leaf or open subtree. */
int v3_cfg_schema_flatten(const v3_cfg_schema *schema, v3_alloc_fault *fault,
                          const v3_cfg_key ***keys, size_t *n, v3_err *err);
/* Index of the key whose path is `path` (len bytes), or -1. */
int v3_cfg_find(const v3_cfg_key *const *keys, size_t n, const char *path, size_t len);
/* True when `path` is a section: a proper prefix, at a dot, of some declared key. */
int v3_cfg_is_section(const v3_cfg_key *const *keys, size_t n, const char *path, size_t len);
/* Index of the open (table) key that `path` lies strictly below, or -1. */
int v3_cfg_open_ancestor(const v3_cfg_key *const *keys, size_t n, const char *path, size_t len);
/* Writes into out the declared key or section nearest to `path` when one is close enough to be a
 * plausible typo (or has the same last component), else "". */
void v3_cfg_suggest(const v3_cfg_key *const *keys, size_t n, const char *path, char *out,
                    size_t cap);
/* The nearest of the '|'-separated choices to s, or "" when none is close. */
void v3_cfg_suggest_choice(const char *choices, const char *s, char *out, size_t cap);
/* True when s is one of the '|'-separated choices. */
int v3_cfg_choice_ok(const char *choices, const char *s);
/* Edit distance (byte-wise Levenshtein, a swap of neighbours counting as one edit). */
size_t v3_cfg_edit_distance(const char *a, size_t la, const char *b, size_t lb);
const char *v3_cfg_type_name(v3_cfg_type t);

#endif
