/* cmd_sft.c — `v3tune sft CONFIG.lua [--set key=value]... [--resume]`: reads the config (schema
 * "sft", lua/config_schemas.c), maps it onto v3_sft_opts and runs the trainer (trainer/sft.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lua/config.h"
#include "lua/config_schemas.h"
#include "trainer/optim_cfg.h"
#include "trainer/sft.h"

static const char *const help =
    "usage: v3tune sft CONFIG.lua [--set key=value]... [--resume] [--quiet]\n"
    "\n"
    "Supervised fine-tuning of a DeepSeek-V3-family model (Hugging Face layout in model.dir) on\n"
    "conversations: data.train JSONL files are prepared into token shards in run.dir/data on first\n"
    "use (or give one prepared directory), packed into data.seq_len sequences, trained with AdamW\n"
    "on a warmup + cosine/linear/constant schedule with global gradient-norm clipping. Metrics,\n"
    "evals and expert load go to run.dir/run.db; checkpoints (HF layout + optimizer state) to\n"
    "run.dir/step-N/, written atomically, the last ckpt.keep kept. `v3tune report RUN_DIR` charts them.\n"
    "\n"
    "options:\n"
    "  --set key=value   override a config key (repeatable; `v3tune config --schema sft` lists keys)\n"
    "  --resume          continue from the latest complete checkpoint in run.dir (exact: the same\n"
    "                    per-step losses as an uninterrupted run on the CPU backend)\n"
    "  --quiet           no progress output\n";

static int list(const v3_cfg *c, const char *key, const char ***out, int *n, v3_err *err) {
    size_t len = 0;
    int rc = v3_cfg_get_list_len(c, key, &len, err);
    if (rc) return rc;
    *out = calloc(len + 1, sizeof **out);
    if (!*out) return v3_errf(err, V3_ENOMEM, "out of memory");
    for (size_t i = 0; i < len; i++)
        if ((rc = v3_cfg_get_list_string(c, key, i, &(*out)[i], err))) return rc;
    *n = (int)len;
    return V3_OK;
}

/* Fills o from the resolved config; strings stay borrowed from c. */
static int map_config(const v3_cfg *c, v3_sft_opts *o, v3_err *err) {
    int rc = 0;
    double d;
    int64_t i;
    const char *s;
#define GETS(key, dst) if (!rc) rc = v3_cfg_get_string(c, key, &(dst), err)
#define GETI(key, dst) if (!rc && !(rc = v3_cfg_get_int(c, key, &i, err))) (dst) = i
#define GETD(key, dst) if (!rc && !(rc = v3_cfg_get_number(c, key, &d, err))) (dst) = d
    GETS("model.dir", o->model_dir);
    GETS("run.dir", o->run_dir);
    GETS("device", o->device);
    GETS("math", o->math);
    GETS("data.format", o->format);
    GETS("data.template", o->template_name);
    if (!rc && !(rc = v3_cfg_get_string(c, "data.mask", &s, err))) o->mask_last = !strcmp(s, "last");
    GETD("data.eval_fraction", o->eval_fraction);
    GETI("data.seq_len", o->seq_len);
    GETI("data.micro_batch_tokens", o->micro_batch_tokens);
    GETI("data.grad_accum", o->grad_accum);
    GETI("train.steps", o->steps);
    GETI("train.epochs", o->epochs);
    GETI("train.seed", o->seed);
    GETI("train.threads", o->threads);
    GETI("train.log_every", o->log_every);
    GETI("eval.every", o->eval_every);
    GETI("eval.batches", o->eval_batches);
    if (!rc) rc = v3_optim_from_cfg(c, &o->adamw, &o->sched, &o->clip, err);
    GETD("moe.router_bias_gamma", o->router_gamma);
    GETD("moe.balance_alpha", o->balance_alpha);
    GETD("moe.mtp_lambda", o->mtp_lambda);
    GETI("ckpt.every", o->ckpt_every);
    GETI("ckpt.keep", o->ckpt_keep);
    if (!rc && !(rc = v3_cfg_get_string(c, "ckpt.dtype", &s, err)))
        o->ckpt_dtype = !strcmp(s, "bf16") ? V3_BF16 : V3_F32;
    GETI("guard.max_bad_steps", o->guard_max_bad);
    GETD("guard.outlier_z", o->guard_z);
    GETI("guard.window", o->guard_window);
#undef GETS
#undef GETI
#undef GETD
    return rc;
}

int v3_cmd_sft(int argc, char **argv) {
    const char *cmd = "sft";
    if (v3_cli_wants_help(argc, argv)) {
        fputs(help, stdout);
        return V3_EXIT_OK;
    }
    int resume = 0, quiet = 0;
    v3_cfg cfg;
    v3_err err;
    int rc = v3_cli_load_run_config(cmd, argc, argv, &v3_cfg_schema_sft, &cfg, &resume, &quiet);
    if (rc >= 0) return rc;

    v3_sft_opts o;
    v3_sft_opts_default(&o);
    const char **train = NULL, **eval = NULL, **fields = NULL;
    char *json = NULL, *lua = NULL;
    rc = map_config(&cfg, &o, &err);
    if (!rc) rc = list(&cfg, "data.train", &train, &o.n_train, &err);
    if (!rc) rc = list(&cfg, "data.eval", &eval, &o.n_eval, &err);
    if (!rc) rc = list(&cfg, "data.fields", &fields, &o.n_fields, &err);
    int exit_code;
    if (rc) {
        exit_code = v3_cli_fail(cmd, "%s", err.msg);
    } else {
        o.train = train;
        o.eval = eval;
        o.fields = fields;
        o.resume = resume;
        o.log = quiet ? NULL : stderr;
        json = v3_cfg_to_json(&cfg, 0);
        lua = v3_cfg_to_lua(&cfg);
        o.config_json = json;
        o.config_lua = lua;
        rc = v3_sft_run(&o, &err);
        exit_code = rc ? v3_cli_fail(cmd, "%s", err.msg) : V3_EXIT_OK;
    }
    free(json);
    free(lua);
    free(train);
    free(eval);
    free(fields);
    v3_cfg_free(&cfg);
    return exit_code;
}
