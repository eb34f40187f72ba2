/* cmd_init.c — `v3tune init`: write a randomly initialised DeepSeek-V3-family model in Hugging Face
 * layout (config.json, safetensors, tokenizer files), initialised as transformers does. */
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/fs.h"
#include "common/rng.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/params.h"

static const char *const help =
    "usage: v3tune init (--preset NAME | --config config.json) --out DIR [options]\n"
    "\n"
    "Writes a randomly initialised model that transformers' DeepseekV3ForCausalLM loads:\n"
    "config.json, model.safetensors (sharded past --shard-size), and the tokenizer files.\n"
    "Initialisation follows transformers: linear, embedding and router weights ~ N(0, "
    "initializer_range),\nRMSNorm gains 1, e_score_correction_bias 0; MTP copies of the "
    "embedding/head equal the main ones.\n"
    "\n"
    "options:\n"
    "  --preset NAME       tiny | small | medium | deepseek-v3-671b | moonlight-16b-a3b | kimi-k2\n"
    "  --config FILE       a config.json to initialise instead of a preset\n"
    "  --out DIR           output directory (created; must not already hold a model)\n"
    "  --seed N            random seed (default 0): the same seed gives the same bytes\n"
    "  --dtype bf16|f32    storage dtype (default bf16, as the released checkpoints)\n"
    "  --tokenizer DIR     where tokenizer.json/tokenizer_config.json come from\n"
    "                      (default: the DeepSeek-V3 files in ../shared/data/deepseek-v3)\n"
    "  --no-mtp            leave out the multi-token-prediction layer\n"
    "  --shard-size BYTES  shard past this many bytes (default 5000000000)\n"
    "  --max-bytes BYTES   refuse models larger than this (default 64 GiB; 0 = no limit)\n"
    "  --force             overwrite an existing model in DIR\n";

/* Per-tensor streams: the bytes of a tensor depend only on (seed, tensor index). */
static void init_tensor(const v3_param_info *p, float *dst, uint64_t seed, int index, float std) {
    switch (p->kind) {
    case V3_PK_NORM:
        for (int64_t i = 0; i < p->numel; i++) dst[i] = 1.0f;
        return;
    case V3_PK_BIAS:
        memset(dst, 0, (size_t)p->numel * sizeof *dst);
        return;
    default: {
        v3_rng r;
        v3_rng_seed(&r, seed * 0x9e3779b97f4a7c15ull + (uint64_t)index);
        for (int64_t i = 0; i < p->numel; i++) dst[i] = std * v3_rng_normal(&r);
    }
    }
}

int v3_cmd_init(int argc, char **argv) {
    const char *cmd = "init";
    if (v3_cli_wants_help(argc, argv)) {
        fputs(help, stdout);
        return V3_EXIT_OK;
    }
    const char *preset = NULL, *config_path = NULL, *out = NULL, *tok_dir = NULL;
    const char *dtype_name = "bf16";
    uint64_t seed = 0;
    long long shard = 5000000000LL, max_bytes = 64LL << 30;
    int no_mtp = 0, force = 0;
    static const struct option opts[] = {
        {"preset", required_argument, 0, 'p'}, {"config", required_argument, 0, 'c'},
        {"out", required_argument, 0, 'o'},    {"seed", required_argument, 0, 's'},
        {"dtype", required_argument, 0, 'd'},  {"tokenizer", required_argument, 0, 't'},
        {"no-mtp", no_argument, 0, 'n'},       {"shard-size", required_argument, 0, 'S'},
        {"max-bytes", required_argument, 0, 'M'}, {"force", no_argument, 0, 'f'},
        {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'p': preset = optarg; break;
        case 'c': config_path = optarg; break;
        case 'o': out = optarg; break;
        case 's':
            seed = strtoull(optarg, &end, 0);
            if (!*optarg || *end) return v3_cli_usage_error(cmd, "--seed needs an integer");
            break;
        case 'd': dtype_name = optarg; break;
        case 't': tok_dir = optarg; break;
        case 'n': no_mtp = 1; break;
        case 'S':
            shard = strtoll(optarg, &end, 0);
            if (!*optarg || *end || shard < 0) return v3_cli_usage_error(cmd, "--shard-size needs bytes");
            break;
        case 'M':
            max_bytes = strtoll(optarg, &end, 0);
            if (!*optarg || *end || max_bytes < 0) return v3_cli_usage_error(cmd, "--max-bytes needs bytes");
            break;
        case 'f': force = 1; break;
        default: return v3_cli_usage_error(cmd, "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind < argc) return v3_cli_usage_error(cmd, "unexpected argument \"%s\"", argv[optind]);
    if (!out) return v3_cli_usage_error(cmd, "--out DIR is required");
    if (!preset == !config_path) return v3_cli_usage_error(cmd, "give exactly one of --preset or --config");
    v3_dtype dtype;
    if (strcmp(dtype_name, "bf16") == 0) dtype = V3_BF16;
    else if (strcmp(dtype_name, "f32") == 0) dtype = V3_F32;
    else return v3_cli_usage_error(cmd, "--dtype must be bf16 or f32, not \"%s\"", dtype_name);

    v3_err err = {0};
    v3_config cfg;
    int rc = preset ? v3_config_preset(&cfg, preset, &err) : v3_config_load(&cfg, config_path, &err);
    if (rc) return preset && rc == V3_EINVAL ? v3_cli_usage_error(cmd, "%s", err.msg)
                                             : v3_cli_fail(cmd, "%s", err.msg);
    if (no_mtp) cfg.num_nextn_predict_layers = 0;
    cfg.quant_fp8 = 0; /* we write bf16/f32 weights, so the config must not claim fp8 */
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "%s", dtype == V3_BF16 ? "bfloat16" : "float32");

    v3_param_table t;
    if ((rc = v3_params_build(&t, &cfg, cfg.num_nextn_predict_layers > 0, &err)))
        return v3_cli_fail(cmd, "%s", err.msg);
    double bytes = (double)t.total * (dtype == V3_BF16 ? 2 : 4);
    if (max_bytes && bytes > (double)max_bytes) {
        v3_params_free(&t);
        return v3_cli_fail(cmd, "the model needs %.1f GiB of weights, over --max-bytes %lld; raise it "
                           "to write it anyway", bytes / (1 << 30), max_bytes);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", out);
    if (!force && v3_file_exists(path)) {
        v3_params_free(&t);
        return v3_cli_fail(cmd, "%s already holds a model (config.json); use --force to overwrite", out);
    }
    if ((rc = v3_mkdirs(out, &err))) {
        v3_params_free(&t);
        return v3_cli_fail(cmd, "%s", err.msg);
    }

    float *w = malloc((size_t)t.total * sizeof *w);
    if (!w) {
        v3_params_free(&t);
        return v3_cli_fail(cmd, "out of memory for %lld parameters", (long long)t.total);
    }
    float std = (float)cfg.initializer_range;
    int embed = v3_params_find(&t, "model.embed_tokens.weight");
    int head = v3_params_find(&t, "lm_head.weight");
    for (int i = 0; i < t.n; i++) {
        const v3_param_info *p = &t.p[i];
        /* MTP's stored copies of the shared embedding/head start equal to the main ones */
        int src = p->layer >= cfg.n_layer && p->kind == V3_PK_EMBED ? embed
                  : p->layer >= cfg.n_layer && p->kind == V3_PK_HEAD ? head : -1;
        if (src >= 0) memcpy(w + p->offset, w + t.p[src].offset, (size_t)p->numel * sizeof *w);
        else init_tensor(p, w + p->offset, seed, i, std);
    }
    rc = v3_checkpoint_save(out, &t, w, dtype, shard, &err);
    free(w);
    if (!rc) rc = v3_config_save(&cfg, path, &err);
    if (!rc) {
        char tb[4096];
        const char *td = tok_dir ? tok_dir : v3_cli_default_tokenizer_dir(tb, sizeof tb);
        static const char *const files[] = {"tokenizer.json", "tokenizer_config.json"};
        for (int i = 0; i < 2 && !rc; i++) {
            char s[4096], d[4096];
            snprintf(s, sizeof s, "%s/%s", td, files[i]);
            snprintf(d, sizeof d, "%s/%s", out, files[i]);
            rc = v3_copy_file(s, d, &err);
        }
        if (rc && !tok_dir && cfg.vocab_size != 129280) {
            /* the shared tokenizer is DeepSeek-V3's; other vocabularies bring their own */
            fprintf(stderr, "v3tune init: note: no tokenizer copied (%s)\n", err.msg);
            rc = V3_OK;
        }
    }
    if (rc) {
        v3_params_free(&t);
        return v3_cli_fail(cmd, "%s", err.msg);
    }
    v3_param_counts pc;
    v3_config_count_params(&cfg, &pc);
    printf("wrote %s: %s, %d tensors, %.2fM parameters (%.2fM active per token), %s, seed %llu\n",
           out, preset ? preset : config_path, t.n, t.total / 1e6, pc.active / 1e6,
           dtype == V3_BF16 ? "bf16" : "f32", (unsigned long long)seed);
    v3_params_free(&t);
    return V3_EXIT_OK;
}
