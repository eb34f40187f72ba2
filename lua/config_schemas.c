/* config_schemas.c — provisional key tables of the training commands (see config_schemas.h).
 * Defaults follow the DeepSeek-V3 report where it states one (bias update speed 0.001, balance
 * loss alpha 0.0001, AdamW betas 0.9/0.95, weight decay 0.1, clipping at 1.0). */
#include <stddef.h>
#include <string.h>

#include "lua/config_schemas.h"

const v3_cfg_key v3_cfg_keys_common[] = {
    {"model.dir", V3_CFG_STRING, NULL, "directory with config.json, tokenizer and safetensors weights",
     V3_CFG_REQUIRED, NULL},
    {"run.dir", V3_CFG_STRING, "runs/default", "directory for run.db, checkpoints and the resolved config", 0, NULL},
    {"run.meta", V3_CFG_TABLE, "{}", "free-form metadata stored with the run (not checked)", 0, NULL},
    {"device", V3_CFG_STRING, "auto", "where to compute: auto picks cuda when a GPU is present", 0,
     "auto|cpu|cuda"},
    {"train.seed", V3_CFG_INT, "1234", "seed of every random stream (data order, dropout, sampling)", 0, NULL},
    {"optim.lr", V3_CFG_NUMBER, "1e-5", "peak learning rate of AdamW", 0, NULL},
    {"optim.betas", V3_CFG_NUMBER_LIST, "0.9,0.95", "AdamW beta1, beta2", 0, NULL},
    {"optim.eps", V3_CFG_NUMBER, "1e-8", "AdamW epsilon", 0, NULL},
    {"optim.weight_decay", V3_CFG_NUMBER, "0.1", "decoupled weight decay (not on norms, biases)", 0, NULL},
    {"optim.clip_grad_norm", V3_CFG_NUMBER, "1.0", "global gradient-norm clip; 0 disables", 0, NULL},
    {"sched.kind", V3_CFG_STRING, "cosine", "learning-rate schedule after warmup", 0,
     "constant|cosine|linear"},
    {"sched.warmup_steps", V3_CFG_INT, "100", "linear warmup from 0 to optim.lr", 0, NULL},
    {"sched.min_lr", V3_CFG_NUMBER, "0", "learning rate at the end of a cosine/linear decay", 0, NULL},
    {"moe.router_bias_gamma", V3_CFG_NUMBER, "0.001", "speed of the auxiliary-loss-free bias update", 0, NULL},
    {"moe.balance_alpha", V3_CFG_NUMBER, "0.0001", "weight of the sequence-wise balance loss", 0, NULL},
    {"moe.mtp_lambda", V3_CFG_NUMBER, "0", "weight of the multi-token-prediction loss; 0 disables", 0, NULL},
    {"ckpt.every", V3_CFG_INT, "1000", "save a checkpoint every N optimizer steps; 0 = only at the end", 0, NULL},
    {"ckpt.keep", V3_CFG_INT, "3", "checkpoints kept (older ones deleted); 0 keeps all", 0, NULL},
    {NULL, 0, NULL, NULL, 0, NULL},
};

const v3_cfg_key v3_cfg_keys_sft[] = {
    {"data.train", V3_CFG_STRING_LIST, NULL, "training JSONL files (messages form; .zst allowed)",
     V3_CFG_REQUIRED, NULL},
    {"data.eval", V3_CFG_STRING_LIST, "", "held-out JSONL files; empty = no evaluation", 0, NULL},
    {"data.seq_len", V3_CFG_INT, "4096", "tokens per packed sequence", 0, NULL},
    {"data.micro_batch_tokens", V3_CFG_INT, "16384", "tokens per forward/backward pass", 0, NULL},
    {"data.grad_accum", V3_CFG_INT, "1", "micro-batches per optimizer step", 0, NULL},
    {"train.steps", V3_CFG_INT, "0", "optimizer steps; 0 = as many as train.epochs gives", 0, NULL},
    {"train.epochs", V3_CFG_INT, "1", "passes over data.train when train.steps is 0", 0, NULL},
    {"eval.every", V3_CFG_INT, "200", "evaluate every N optimizer steps; 0 disables", 0, NULL},
    {"data.format", V3_CFG_STRING, "auto", "row format of the JSONL files", 0,
     "auto|messages|alpaca|sharegpt|prompt_completion|text"},
    {"data.fields", V3_CFG_STRING_LIST, "", "field mappings KEY=NAME (gsm8k: prompt=question, completion=answer)", 0, NULL},
    {"data.template", V3_CFG_STRING, "v3", "chat template", 0, "v3|r1|r1-keep-reasoning"},
    {"data.mask", V3_CFG_STRING, "all", "loss on every assistant message or only the last", 0, "all|last"},
    {"data.eval_fraction", V3_CFG_NUMBER, "0.02", "share of data.train held out for evaluation when data.eval is empty", 0, NULL},
    {"eval.batches", V3_CFG_INT, "0", "micro-batches per evaluation; 0 = the whole held-out split", 0, NULL},
    {"ckpt.dtype", V3_CFG_STRING, "f32", "weight dtype of checkpoints (f32 resumes exactly)", 0, "f32|bf16"},
    {"guard.max_bad_steps", V3_CFG_INT, "10", "stop after N skipped (NaN/Inf/outlier) steps in a row; 0 = never", 0, NULL},
    {"guard.outlier_z", V3_CFG_NUMBER, "0", "skip a step whose loss or grad-norm z-score exceeds this; 0 = off", 0, NULL},
    {"guard.window", V3_CFG_INT, "50", "recent steps the outlier z-score is measured against", 0, NULL},
    {"train.threads", V3_CFG_INT, "0", "CPU threads; 0 = all cores", 0, NULL},
    {"train.log_every", V3_CFG_INT, "10", "steps between plain progress lines (not a terminal)", 0, NULL},
    {NULL, 0, NULL, NULL, 0, NULL},
};

const v3_cfg_key v3_cfg_keys_grpo[] = {
    {"data.prompts", V3_CFG_STRING_LIST, NULL, "JSONL prompt sets", V3_CFG_REQUIRED, NULL},
    {"data.seq_len", V3_CFG_INT, "4096", "prompt + completion tokens at most", 0, NULL},
    {"train.steps", V3_CFG_INT, "1000", "policy updates", 0, NULL},
    {"rollout.group_size", V3_CFG_INT, "8", "completions per prompt (G)", 0, NULL},
    {"rollout.prompts_per_step", V3_CFG_INT, "32", "prompts per policy update", 0, NULL},
    {"rollout.max_new_tokens", V3_CFG_INT, "1024", "completion length cap", 0, NULL},
    {"rollout.temperature", V3_CFG_NUMBER, "1.0", "sampling temperature", 0, NULL},
    {"rollout.top_p", V3_CFG_NUMBER, "1.0", "nucleus sampling threshold", 0, NULL},
    {"grpo.clip_eps", V3_CFG_NUMBER, "0.2", "ratio clipping epsilon", 0, NULL},
    {"grpo.kl_beta", V3_CFG_NUMBER, "0", "weight of the k3 KL to the reference; 0 = no reference", 0, NULL},
    {"rewards", V3_CFG_LIST, "{}", "reward modules: { {script = 'x.lua', weight = 1, ...}, ... }", 0, NULL},
    {NULL, 0, NULL, NULL, 0, NULL},
};

static const v3_cfg_key *const sft_parts[] = {v3_cfg_keys_common, v3_cfg_keys_sft, NULL};
static const v3_cfg_key *const grpo_parts[] = {v3_cfg_keys_common, v3_cfg_keys_grpo, NULL};
static const v3_cfg_key *const no_parts[] = {NULL};

const v3_cfg_schema v3_cfg_schema_sft = {"sft", sft_parts, 0};
const v3_cfg_schema v3_cfg_schema_grpo = {"grpo", grpo_parts, 0};
const v3_cfg_schema v3_cfg_schema_generic = {"generic", no_parts, 1};

static const char *const names[] = {"sft", "grpo", "generic", NULL};

const v3_cfg_schema *v3_cfg_schema_find(const char *name) {
    if (!strcmp(name, "sft")) return &v3_cfg_schema_sft;
    if (!strcmp(name, "grpo")) return &v3_cfg_schema_grpo;
    if (!strcmp(name, "generic")) return &v3_cfg_schema_generic;
    return NULL;
}

const char *const *v3_cfg_schema_names(void) { return names; }
