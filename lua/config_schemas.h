/* config_schemas.h — the schemas of v3tune's subcommands, built from shared key arrays.
 * Provisional: each subcommand's issue extends its part (sft, grpo, distill...). A command composes
 * `v3_cfg_keys_common` with its own array in a v3_cfg_schema (see lua/config.h). */
#ifndef V3_LUA_CONFIG_SCHEMAS_H
#define V3_LUA_CONFIG_SCHEMAS_H

#include "lua/config.h"

/* Keys every training command has: model, run directory, device, seed, optimizer, schedule,
 * checkpoints, MoE terms. Each array ends with a {NULL} entry. */
extern const v3_cfg_key v3_cfg_keys_common[];
extern const v3_cfg_key v3_cfg_keys_sft[];  /* data.*, train.steps/epochs, eval.* */
extern const v3_cfg_key v3_cfg_keys_grpo[]; /* prompts, rollout.*, grpo.*, rewards */

extern const v3_cfg_schema v3_cfg_schema_sft;
extern const v3_cfg_schema v3_cfg_schema_grpo;
/* Declares nothing and accepts anything: prints any config table as it resolves. */
extern const v3_cfg_schema v3_cfg_schema_generic;

/* The schema called `name` ("sft", "grpo", "generic"), or NULL. */
const v3_cfg_schema *v3_cfg_schema_find(const char *name);
/* NULL-terminated list of the names, for --help and error messages. */
const char *const *v3_cfg_schema_names(void);

#endif
