/* distill_config.h — a distill config file (Lua, schema "distill" of lua/config_schemas.c) turned
 * into the options of each stage of datasets/distill.h. Without a file every key has its default;
 * `--set key=value` overrides apply either way. The resolved config (JSON) is stored with the run.
 * Strings in the filled options point into the config: keep it until the stage has run. */
#ifndef V3_DISTILL_CONFIG_H
#define V3_DISTILL_CONFIG_H

#include <stddef.h>

#include "common/err.h"
#include "datasets/distill.h"
#include "lua/config.h"

#define V3_DISTILL_MAX_FIELDS 16

typedef struct v3_distill_config {
    v3_cfg cfg;
    char *json;                                  /* the resolved config, one line */
    char *fields[V3_DISTILL_MAX_FIELDS];         /* owned copies of import.fields */
    int n_fields;
    v3_reward_script scripts[V3_REWARD_MAX_FUNCS]; /* verify.scripts */
    char *script_paths[V3_REWARD_MAX_FUNCS];
    char *script_names[V3_REWARD_MAX_FUNCS];
    int n_scripts;
} v3_distill_config;

/* path may be NULL (defaults only). V3_EUSAGE for a bad --set, other codes for a bad file. */
int v3_distill_config_load(v3_distill_config *c, const char *path, const char *const *sets,
                           size_t n_sets, v3_err *err);
void v3_distill_config_free(v3_distill_config *c);

int v3_distill_config_import(v3_distill_config *c, v3_distill_import_opts *o, v3_err *err);
/* Fills the host options from verify.* (scripts from verify.scripts; none: o->host.n_scripts 0 and
 * the caller adds the built-ins of verify.builtin). */
int v3_distill_config_verify(v3_distill_config *c, v3_distill_verify_opts *o, v3_err *err);
/* Built-in verifier names of verify.builtin (borrowed), at most max. */
int v3_distill_config_builtins(const v3_distill_config *c, const char **names, int max, int *n,
                               v3_err *err);
int v3_distill_config_filter(v3_distill_config *c, v3_distill_filter_opts *o, v3_err *err);
int v3_distill_config_export(v3_distill_config *c, v3_distill_export_opts *o, v3_err *err);
/* tokenizer.dir, or NULL when unset (empty). */
const char *v3_distill_config_tokenizer(const v3_distill_config *c);

#endif
