/* cmd_inspect.c — `v3tune inspect DIR`: a model's config, parameter counts, stored dtypes, and
 * the memory a full fine-tune needs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/fs.h"
#include "model/config.h"
#include "model/params.h"
#include "model/safetensors.h"

static const char *const help =
    "usage: v3tune inspect DIR\n"
    "\n"
    "Prints the model's config.json as v3tune understands it, total and active parameter counts,\n"
    "the dtypes and sizes stored in its safetensors (single file or sharded), and the memory a\n"
    "full fine-tune with AdamW needs for weights, gradients and optimizer states.\n";

static void print_bytes(const char *label, double bytes) {
    const char *unit = "B";
    double v = bytes;
    if (v >= 1024.0 * 1024 * 1024 * 1024) v /= 1024.0 * 1024 * 1024 * 1024, unit = "TiB";
    else if (v >= 1024.0 * 1024 * 1024) v /= 1024.0 * 1024 * 1024, unit = "GiB";
    else if (v >= 1024.0 * 1024) v /= 1024.0 * 1024, unit = "MiB";
    printf("  %-28s %.2f %s\n", label, v, unit);
}

static void print_count(const char *label, int64_t n) {
    if (n >= 1000000000) printf("  %-28s %.3fB (%lld)\n", label, n / 1e9, (long long)n);
    else printf("  %-28s %.3fM (%lld)\n", label, n / 1e6, (long long)n);
}

int v3_cmd_inspect(int argc, char **argv) {
    const char *cmd = "inspect";
    if (v3_cli_wants_help(argc, argv)) {
        fputs(help, stdout);
        return V3_EXIT_OK;
    }
    if (argc != 2 || argv[1][0] == '-') return v3_cli_usage_error(cmd, "expected exactly one model directory");
    const char *dir = argv[1];
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    v3_err err = {0};
    v3_config cfg;
    if (v3_config_load(&cfg, path, &err)) return v3_cli_fail(cmd, "%s", err.msg);

    printf("model %s\n\nconfig\n", dir);
    v3_config_print(&cfg, stdout);

    v3_param_counts pc;
    v3_config_count_params(&cfg, &pc);
    printf("\nparameters\n");
    print_count("total (main model)", pc.total);
    print_count("active per token", pc.active);
    print_count("active, non-embedding", pc.active_nonembed);
    print_count("embedding + lm_head", pc.embedding);
    if (cfg.num_nextn_predict_layers) print_count("MTP module (unique)", pc.mtp);

    /* what is stored: dtype histogram over every tensor of the checkpoint */
    v3_st_model m;
    if (v3_st_model_open(&m, dir, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    int64_t count[V3_DTYPE_COUNT] = {0}, elems[V3_DTYPE_COUNT] = {0};
    double bytes = 0;
    int rc = 0;
    for (int i = 0; i < m.n && !rc; i++) {
        const v3_st_file *f;
        const v3_st_tensor *t;
        rc = v3_st_model_get(&m, m.name[i], &f, &t, &err);
        if (rc) break;
        count[t->dtype]++;
        elems[t->dtype] += t->numel;
        bytes += (double)(t->end - t->begin);
    }
    printf("\nstored (%s%d file%s, %d tensors)\n", m.index_path ? "index + " : "", m.n_shards,
           m.n_shards == 1 ? "" : "s", m.n);
    for (int d = 0; d < V3_DTYPE_COUNT; d++)
        if (count[d])
            printf("  %-28s %lld tensors, %.3fM elements\n", v3_dtype_name((v3_dtype)d),
                   (long long)count[d], elems[d] / 1e6);
    print_bytes("bytes", bytes);
    v3_st_model_close(&m);
    if (rc) return v3_cli_fail(cmd, "%s", err.msg);

    /* Memory of a full fine-tune, excluding activations (they scale with batch × sequence and
     * are planned and printed by the trainer before its first step). */
    /* The MTP layer's stored embedding/head copies are shared with the main model in training,
     * so they count once. */
    double n = (double)(pc.total + pc.mtp);
    printf("\nfull fine-tune memory, AdamW, excluding activations (%.3fB trainable%s)\n", n / 1e9,
           cfg.num_nextn_predict_layers ? " incl. MTP" : "");
    printf("  CPU fp32: weights 4 B + grads 4 B + moments 8 B per parameter\n");
    print_bytes("  weights", 4 * n);
    print_bytes("  gradients", 4 * n);
    print_bytes("  AdamW m + v", 8 * n);
    print_bytes("  total", 16 * n);
    printf("  GPU mixed precision: bf16 weights 2 B + fp32 master 4 B + fp32 grads 4 B + moments 8 B\n");
    print_bytes("  total", 18 * n);
    return V3_EXIT_OK;
}
