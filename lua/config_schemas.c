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
    {"math", V3_CFG_STRING, "auto",
     "arithmetic of the GPU's matrix products and attention: auto = bf16 there (fp32 storage, "
     "master weights and optimizer state); fp32 is exact; the CPU always computes in fp32", 0,
     "auto|fp32|tf32|bf16"},
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

/* `v3tune grpo` (trainer/grpo.h, docs/grpo.md). TRL's GRPOConfig defaults where they apply. */
const v3_cfg_key v3_cfg_keys_grpo[] = {
    {"data.prompts", V3_CFG_STRING_LIST, NULL, "JSONL prompt files: rows with `prompt` (text) or `messages`, "
     "plus the fields the rewards read (answer, tests, ...)", V3_CFG_REQUIRED, NULL},
    {"data.eval", V3_CFG_STRING_LIST, "", "held-out prompt files; empty = data.eval_fraction of data.prompts", 0, NULL},
    {"data.eval_fraction", V3_CFG_NUMBER, "0", "share of data.prompts held out when data.eval is empty", 0, NULL},
    {"data.prompt_field", V3_CFG_STRING, "prompt", "row member holding the prompt text (GSM8K: question)", 0, NULL},
    {"data.chat", V3_CFG_BOOL, "true", "render each prompt as a user message with the chat template and "
     "its generation prompt; false = the text as is (BOS as the tokenizer says)", 0, NULL},
    {"data.template", V3_CFG_STRING, "v3", "chat template", 0, "v3|r1"},
    {"data.system_prompt", V3_CFG_STRING, "", "chat: a system message before every prompt; empty = none", 0, NULL},
    {"data.seq_len", V3_CFG_INT, "4096", "prompt + completion tokens at most: longer prompts are skipped "
     "(reported, counted in data/prompts_skipped)", 0, NULL},
    {"train.steps", V3_CFG_INT, "1000", "GRPO steps: one generation batch, its rewards and its updates each", 0, NULL},
    {"train.micro_batch_tokens", V3_CFG_INT, "8192", "tokens per forward/backward (the model's token "
     "budget, which also bounds the engine's step); >= data.seq_len", 0, NULL},
    {"train.threads", V3_CFG_INT, "0", "CPU threads; 0 = all cores", 0, NULL},
    {"train.log_every", V3_CFG_INT, "1", "steps between progress lines", 0, NULL},
    {"rollout.group_size", V3_CFG_INT, "8", "completions per prompt (G)", 0, NULL},
    {"rollout.prompts_per_step", V3_CFG_INT, "16", "prompts (groups) per generation batch", 0, NULL},
    {"rollout.max_new_tokens", V3_CFG_INT, "256", "completion length cap (TRL max_completion_length)", 0, NULL},
    {"rollout.temperature", V3_CFG_NUMBER, "1.0", "sampling temperature (> 0); the trainer's logprobs "
     "use the same temperature", 0, NULL},
    {"rollout.top_p", V3_CFG_NUMBER, "1.0", "nucleus sampling threshold; 1 = off", 0, NULL},
    {"rollout.top_k", V3_CFG_INT, "0", "top-k filter; 0 = off", 0, NULL},
    {"rollout.min_p", V3_CFG_NUMBER, "0", "min-p filter; 0 = off", 0, NULL},
    {"rollout.stop", V3_CFG_STRING_LIST, "", "stop strings (EOS always stops)", 0, NULL},
    {"rollout.max_live_tokens", V3_CFG_INT, "65536", "KV cache capacity of the engine in tokens", 0, NULL},
    {"rollout.max_seqs", V3_CFG_INT, "64", "sequences the engine decodes at once", 0, NULL},
    {"rollout.pack_weights", V3_CFG_BOOL, "true", "keep packed copies of the weights for decoding "
     "on the CPU (about the model's size; faster decode steps, same results)", 0, NULL},
    {"rollout.dynamic_sampling", V3_CFG_BOOL, "false", "drop groups whose rewards are all equal (no "
     "signal) and replace them with groups of further prompts (DAPO)", 0, NULL},
    {"rollout.dynamic_max_rounds", V3_CFG_INT, "4", "extra generation rounds per step at most (0..16); "
     "then the step trains on the groups it has", 0, NULL},
    {"grpo.mu", V3_CFG_INT, "1", "policy updates per generation batch (TRL num_iterations)", 0, NULL},
    {"grpo.mini_batches", V3_CFG_INT, "1", "optimizer steps per pass over the generation batch", 0, NULL},
    {"grpo.loss_type", V3_CFG_STRING, "dapo", "loss aggregation", 0, "grpo|bnpo|dr_grpo|dapo"},
    {"grpo.eps_low", V3_CFG_NUMBER, "0.2", "clip range low: ratio >= 1 - eps_low (TRL epsilon)", 0, NULL},
    {"grpo.eps_high", V3_CFG_NUMBER, "0.2", "clip range high: ratio <= 1 + eps_high (DAPO: 0.28)", 0, NULL},
    {"grpo.delta", V3_CFG_NUMBER, "0", "cap of the unclipped ratio (two-sided clipping); 0 = off", 0, NULL},
    {"grpo.beta", V3_CFG_NUMBER, "0", "weight of the k3 KL to the frozen reference; 0 = no reference model", 0, NULL},
    {"grpo.ref_model", V3_CFG_STRING, "", "reference model directory; empty = model.dir", 0, NULL},
    {"grpo.scale_rewards", V3_CFG_STRING, "group", "advantage scaling: group std, batch std, none (Dr. GRPO)", 0,
     "group|batch|none"},
    {"grpo.reward_aggregation", V3_CFG_STRING, "sum_then_normalize", "how reward functions combine "
     "(normalize_then_sum: GDPO)", 0, "sum_then_normalize|normalize_then_sum"},
    {"grpo.importance_sampling_level", V3_CFG_STRING, "token", "ratio per token, or per sequence (GSPO)", 0,
     "token|sequence"},
    {"grpo.mask_truncated", V3_CFG_BOOL, "false", "completions cut by rollout.max_new_tokens leave the loss", 0, NULL},
    {"grpo.check_all_logprobs", V3_CFG_BOOL, "false", "recompute every sample's logprobs before the first "
     "update (a forward more when grpo.mini_batches > 1), so the logprob gap covers them all", 0, NULL},
    {"rewards", V3_CFG_LIST, "{}", "reward modules: { {script = 'x.lua' | builtin = 'math' | source = "
     "'return function(s) ... end', weight = 1, name = 'acc'}, ... }", 0, NULL},
    {"reward.workers", V3_CFG_INT, "2", "reward worker processes", 0, NULL},
    {"reward.timeout_ms", V3_CFG_INT, "2000", "wall clock per reward call; the worker is killed past it", 0, NULL},
    {"reward.fallback", V3_CFG_NUMBER, "0", "score of a failed reward call unless the module sets its own", 0, NULL},
    {"reward.dirs", V3_CFG_STRING_LIST, "", "directories `require` searches (v3tune's rewards/ is always added)", 0, NULL},
    {"eval.every", V3_CFG_INT, "50", "evaluate on the held-out prompts every N steps (and at the start and "
     "the end); 0 disables", 0, NULL},
    {"eval.prompts", V3_CFG_INT, "0", "held-out prompts per evaluation; 0 = all", 0, NULL},
    {"eval.samples", V3_CFG_INT, "1", "completions per held-out prompt", 0, NULL},
    {"eval.temperature", V3_CFG_NUMBER, "0", "evaluation sampling temperature; 0 = greedy", 0, NULL},
    {"ckpt.dtype", V3_CFG_STRING, "f32", "weight dtype of checkpoints (f32 resumes exactly)", 0, "f32|bf16"},
    {"guard.max_bad_steps", V3_CFG_INT, "10", "stop after N skipped (NaN/Inf/outlier) updates in a row; 0 = never", 0, NULL},
    {"guard.outlier_z", V3_CFG_NUMBER, "0", "skip an update whose loss or grad-norm z-score exceeds this; 0 = off", 0, NULL},
    {"guard.window", V3_CFG_INT, "50", "recent updates the outlier z-score is measured against", 0, NULL},
    {NULL, 0, NULL, NULL, 0, NULL},
};

/* `v3tune distill import|verify|filter|export` (docs/distill.md). No model: each stage reads the
 * run store and, for token counts, the tokenizer. */
static const v3_cfg_key distill_keys[] = {
    {"import.form", V3_CFG_STRING, "auto", "row shape: auto detects it per row", 0,
     "auto|messages|response|pair|text|solution"},
    {"import.fields", V3_CFG_STRING_LIST, "", "field mappings KEY=NAME (KEY: prompt system messages "
     "reasoning content text reference solution correct model)", 0, NULL},
    {"import.records", V3_CFG_STRING, "", "member of a top-level object holding the records "
     "(\"results\"); empty = auto-detect in a pretty-printed document", 0, NULL},
    {"import.source_model", V3_CFG_STRING, "", "model name of traces whose row names none "
     "(empty: \"unknown\")", 0, NULL},
    {"import.starts_in_reasoning", V3_CFG_BOOL, "false", "outputs began inside the reasoning "
     "(<think> was in the prompt): a text without tags is cut-off reasoning, not an answer", 0, NULL},
    {"import.max_record", V3_CFG_INT, "67108864", "longest record in bytes (longer = bad row)", 0, NULL},
    {"verify.scripts", V3_CFG_LIST, "{}", "reward modules: { 'x.lua', {script = 'y.lua', weight = 2} }; "
     "empty = the built-in verifiers", 0, NULL},
    {"verify.builtin", V3_CFG_STRING_LIST, "math,r1_format", "built-in verifiers used when no script is given", 0, NULL},
    {"verify.jobs", V3_CFG_INT, "2", "reward worker processes", 0, NULL},
    {"verify.timeout_ms", V3_CFG_INT, "2000", "wall clock per call; the worker is killed past it", 0, NULL},
    {"verify.pass_score", V3_CFG_NUMBER, "1.0", "verdicts.passed = the score is at least this", 0, NULL},
    {"filter.correct", V3_CFG_STRING, "math", "verdict deciding correctness (a verifier name, "
     "\"source\" for the source's own flag); empty = no correctness rule", 0, NULL},
    {"filter.min_score", V3_CFG_NUMBER, "1.0", "that verdict's score must be at least this", 0, NULL},
    {"filter.keep_unverified", V3_CFG_BOOL, "false", "keep traces without that verdict (or a skipped one)", 0, NULL},
    {"filter.require_complete", V3_CFG_BOOL, "true", "reject traces cut off inside the reasoning", 0, NULL},
    {"filter.require_answer", V3_CFG_BOOL, "true", "reject traces without reasoning or without a final answer", 0, NULL},
    {"filter.min_tokens", V3_CFG_INT, "0", "fewest tokens of the assistant turn; 0 = no bound", 0, NULL},
    {"filter.max_tokens", V3_CFG_INT, "0", "most tokens of the assistant turn; 0 = no bound", 0, NULL},
    {"filter.language", V3_CFG_STRING, "auto", "expected script of the reasoning: auto (the "
     "prompt's), off, latin, cyrillic, greek, arabic, hebrew, devanagari, thai, hangul, cjk", 0, NULL},
    {"filter.min_language_fraction", V3_CFG_NUMBER, "0.95", "share of the reasoning's letters in that script", 0, NULL},
    {"filter.ngram", V3_CFG_INT, "8", "words per n-gram of the repetition measure", 0, NULL},
    {"filter.max_repetition", V3_CFG_NUMBER, "0.3", "reject when 1 - distinct/total n-grams exceeds this; 0 = off", 0, NULL},
    {"filter.per_prompt", V3_CFG_INT, "0", "keep at most this many traces per prompt; 0 = all", 0, NULL},
    {"filter.pick", V3_CFG_STRING, "shortest", "which traces per_prompt keeps", 0, "shortest|random"},
    {"filter.seed", V3_CFG_INT, "0", "seed of pick = random", 0, NULL},
    {"filter.threads", V3_CFG_INT, "2", "token counting threads", 0, NULL},
    {"export.form", V3_CFG_STRING, "r1", "r1: <system prompt, problem, R1 response>; original: "
     "<problem, original response>", 0, "r1|original"},
    {"export.system_prompt", V3_CFG_STRING, "", "system prompt of the r1 form (replaces the "
     "prompt's own); empty = keep the prompt's", 0, NULL},
    {"export.reasoning", V3_CFG_STRING, "field", "field: reasoning_content (what r1-keep-reasoning "
     "renders); inline: <think> in content", 0, "field|inline"},
    {"export.original_fallback", V3_CFG_STRING, "answer", "original form without a source solution: "
     "use the trace's final answer, or skip the prompt", 0, "answer|skip"},
    {"generate.prompts", V3_CFG_STRING, "", "JSONL prompts (prompt or messages, plus answer, "
     "solution, system); empty = the prompts already in the store", 0, NULL},
    {"generate.url", V3_CFG_STRING, "", "teacher endpoint, OpenAI-compatible (http://host:port/v1 "
     "or the whole /chat/completions URL)", 0, NULL},
    {"generate.model", V3_CFG_STRING, "", "the endpoint's model name (required with url); with "
     "model_dir the name stored as source_model (empty: the directory's name)", 0, NULL},
    {"generate.model_dir", V3_CFG_STRING, "", "local teacher: a model directory sampled with the "
     "rollout engine (R1 template); instead of url", 0, NULL},
    {"generate.key_env", V3_CFG_STRING, "", "environment variable holding the API key; empty = none", 0, NULL},
    {"generate.n", V3_CFG_INT, "1", "samples per prompt", 0, NULL},
    {"generate.temperature", V3_CFG_NUMBER, "0.6", "sampling temperature (R1's recommended 0.6; 0 = greedy)", 0, NULL},
    {"generate.top_p", V3_CFG_NUMBER, "0.95", "nucleus sampling threshold; 1 = off", 0, NULL},
    {"generate.max_tokens", V3_CFG_INT, "8192", "completion tokens at most (reasoning included); "
     "0 = not sent (the server's default; url only)", 0, NULL},
    {"generate.max_in_flight", V3_CFG_INT, "8", "HTTP requests at once", 0, NULL},
    {"generate.timeout", V3_CFG_NUMBER, "600", "seconds per HTTP attempt", 0, NULL},
    {"generate.retries", V3_CFG_INT, "3", "retries of a request after 429, 5xx or a network error "
     "(backoff, Retry-After honoured); 0 = none", 0, NULL},
    {"generate.system_prompt", V3_CFG_STRING, "", "replaces each prompt's system messages; empty = "
     "keep them (R1 is best asked without one)", 0, NULL},
    {"generate.seed", V3_CFG_INT, "0", "sampling seed (url: a \"seed\" per prompt and sample); 0 = none", 0, NULL},
    {"tokenizer.dir", V3_CFG_STRING, "", "tokenizer.json directory for token counts (empty: the "
     "DeepSeek-V3 tokenizer beside the repo or $V3_TOKENIZER_DIR)", 0, NULL},
    {NULL, 0, NULL, NULL, 0, NULL},
};

static const v3_cfg_key *const sft_parts[] = {v3_cfg_keys_common, v3_cfg_keys_sft, NULL};
static const v3_cfg_key *const distill_parts[] = {distill_keys, NULL};
/* Found by name (`v3tune config --schema distill`); not in names[]: the schema test there loads
 * every listed schema with the training commands' model.dir and data.train. */
static const v3_cfg_schema distill_schema = {"distill", distill_parts, 0};
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
    if (!strcmp(name, "distill")) return &distill_schema;
    return NULL;
}

const char *const *v3_cfg_schema_names(void) { return names; }
