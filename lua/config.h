/* config.h — run configuration: a Lua file returning a table, checked against a C-side schema.
 *
 * A config file is evaluated in a sandbox (lua/sandbox.h) with modest budgets and must return a
 * nested table:
 *
 *     return {
 *       model = { dir = "models/tiny" },
 *       optim = { lr = 3e-4, betas = {0.9, 0.95} },
 *     }
 *
 * Loading is: (a) evaluate the file; (b) check every key against the schema (unknown keys and type
 * mismatches are errors); (c) fill defaults; (d) apply `--set key=value` overrides; (e) check that
 * required keys are set. The result is a resolved v3_cfg with typed getters, a JSON dump (stored
 * with the run) and a Lua dump that is itself a valid config file.
 *
 * Schemas: a schema is a list of key arrays ("parts"), so each subcommand composes the common keys
 * with its own (lua/config_schemas.h). A key of type V3_CFG_TABLE or V3_CFG_LIST is an open subtree
 * whose contents are converted but not checked. A schema with `open` set accepts undeclared keys
 * anywhere (the "generic" schema: print any config).
 *
 * --set values are parsed by the key's declared type:
 *   string            the text as is ("--set model.dir=/x/y"); `choices` are enforced
 *   integer, number   decimal literals ("1e3" is accepted for an integer when it is integral)
 *   boolean           true | false
 *   string/number list  comma-separated ("0.9,0.95"; "" is the empty list), or a Lua table
 *                     literal when the value starts with '{' ("{'a,b', 'c'}")
 *   list, table       a Lua table literal ("{ {name='len', weight=0.5} }")
 * A key below an open table ("--set extra.foo.bar=1") infers its type: true/false, an integer,
 * a number, a '{'-literal, else a string. Lua literals are evaluated as expressions in the config's
 * sandbox ("return " .. value), so `{1/3, 2^-4}` works too.
 *
 * Errors (all name the key; the file and, for file keys, the line found by searching the source for
 * the key's name, which is a best effort and omitted when not found):
 *   V3_EIO      the file cannot be read
 *   V3_EFORMAT  Lua syntax error ("file.lua:LINE: ...")
 *   V3_EINVAL   runtime error, wrong return value, unknown key ("file.lua:7: unknown key
 *               'optim.lrr' (did you mean 'optim.lr'?)"), type mismatch ("file.lua:9: key
 *               'optim.lr': expected number, found string"), missing required key, bad default
 *   V3_ENOMEM   a budget (memory, instructions, wall clock) or an allocation failed
 *   V3_EUSAGE   a bad --set: no '=', unknown key, unparsable value (the CLI exits 2)
 */
#ifndef V3_LUA_CONFIG_H
#define V3_LUA_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "lua/sandbox.h"

typedef enum v3_cfg_type {
    V3_CFG_STRING = 1,
    V3_CFG_INT,
    V3_CFG_NUMBER,      /* a Lua integer is accepted and stored as a number */
    V3_CFG_BOOL,
    V3_CFG_STRING_LIST, /* a sequence of strings */
    V3_CFG_NUMBER_LIST, /* a sequence of numbers */
    V3_CFG_LIST,        /* a sequence of anything (tables included); contents not checked */
    V3_CFG_TABLE,       /* an open subtree: any table; contents not checked */
} v3_cfg_type;

#define V3_CFG_REQUIRED 1u /* loading fails when the key is still unset after defaults and --set */

typedef struct v3_cfg_key {
    const char *path;    /* dotted: "optim.lr"; each part a Lua identifier */
    v3_cfg_type type;
    const char *def;     /* default in --set syntax ("3e-4", "0.9,0.95", "{}"); NULL = unset */
    const char *doc;     /* one line */
    unsigned flags;      /* V3_CFG_REQUIRED */
    const char *choices; /* strings only: "constant|cosine|linear"; NULL = any string */
} v3_cfg_key;

/* Key arrays end with an entry whose path is NULL. The key arrays must outlive every v3_cfg loaded
 * with the schema (they are static tables in practice). */
typedef struct v3_cfg_schema {
    const char *name;
    const v3_cfg_key *const *parts; /* NULL-terminated */
    int open;                       /* accept undeclared keys anywhere, unchecked */
} v3_cfg_schema;

typedef struct v3_cfg_opts {
    v3_sandbox_limits limits; /* zero fields take the config defaults below */
} v3_cfg_opts;

/* Budgets for evaluating a config file: generous for any sane config, small enough that a loop
 * or a runaway table ends in well under a second of a user's time. */
#define V3_CFG_DEFAULT_MEM_CAP ((size_t)64 << 20)
#define V3_CFG_DEFAULT_MAX_INSTRUCTIONS 20000000
#define V3_CFG_DEFAULT_DEADLINE_MS 2000

enum { V3_CFG_UNSET = 0, V3_CFG_FROM_DEFAULT, V3_CFG_FROM_FILE, V3_CFG_FROM_SET };

/* A resolved configuration. Read it with the getters; fields are for those and the dumps. */
typedef struct v3_cfg {
    const v3_cfg_schema *schema;
    char *source;              /* the file path, or the name given to v3_cfg_load_string */
    size_t n_keys;
    const v3_cfg_key **keys;   /* the schema's keys flattened in declaration order */
    unsigned char *origin;     /* per key: V3_CFG_UNSET / _FROM_DEFAULT / _FROM_FILE / _FROM_SET */
    json_t **vals;             /* per key: its value (owned reference), NULL when unset */
    json_t *root;              /* the whole resolved tree; unset declared keys are JSON null */
} v3_cfg;

/* Loads `path` (sets: n_sets strings "key=value", applied in order). opts may be NULL. On failure
 * *cfg is zeroed and nothing is left allocated. */
int v3_cfg_load_file(v3_cfg *cfg, const v3_cfg_schema *schema, const char *path,
                     const char *const *sets, size_t n_sets, const v3_cfg_opts *opts, v3_err *err);
/* The same from text in memory; `name` stands for the file name in messages. */
int v3_cfg_load_string(v3_cfg *cfg, const v3_cfg_schema *schema, const char *name,
                       const char *text, size_t len, const char *const *sets, size_t n_sets,
                       const v3_cfg_opts *opts, v3_err *err);
/* Accepts a zeroed or already freed cfg. */
void v3_cfg_free(v3_cfg *cfg);

/* Typed getters. Each returns V3_OK and writes *out, V3_ENOTFOUND when the key is not declared
 * (the message suggests the nearest) or is unset, V3_EINVAL when the key's type does not fit the
 * getter (an integer key may be read as a number, not the reverse). Strings are borrowed from cfg. */
int v3_cfg_get_int(const v3_cfg *cfg, const char *key, int64_t *out, v3_err *err);
int v3_cfg_get_number(const v3_cfg *cfg, const char *key, double *out, v3_err *err);
int v3_cfg_get_bool(const v3_cfg *cfg, const char *key, int *out, v3_err *err);
int v3_cfg_get_string(const v3_cfg *cfg, const char *key, const char **out, v3_err *err);
/* Lists (any list type): length, then elements by 0-based index. */
int v3_cfg_get_list_len(const v3_cfg *cfg, const char *key, size_t *n, v3_err *err);
int v3_cfg_get_list_string(const v3_cfg *cfg, const char *key, size_t i, const char **out,
                           v3_err *err);
int v3_cfg_get_list_number(const v3_cfg *cfg, const char *key, size_t i, double *out, v3_err *err);
/* Any declared key's value as JSON (borrowed), for open subtrees. */
int v3_cfg_get_json(const v3_cfg *cfg, const char *key, const json_t **out, v3_err *err);
/* Where a declared key's value came from (V3_CFG_UNSET...), or -1 when not declared. */
int v3_cfg_origin(const v3_cfg *cfg, const char *key);

/* The resolved tree as JSON (numbers in shortest round-trip form; a real always shows '.' or an
 * exponent). indent 0 = one line. Returns a malloc'd string (free it), or NULL on out of memory. */
char *v3_cfg_to_json(const v3_cfg *cfg, int indent);
/* The resolved tree as a Lua config file, each declared key commented with its doc and where its
 * value came from; loading it back gives the same configuration. malloc'd, NULL on out of memory. */
char *v3_cfg_to_lua(const v3_cfg *cfg);

#endif
