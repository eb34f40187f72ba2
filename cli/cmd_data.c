/* cmd_data.c — `v3tune data prepare|stats`: data files → token shards, and what is in them. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "datasets/pack.h"
#include "datasets/prepare.h"
#include "datasets/prepare_chat.h"

int v3_cmd_data(int argc, char **argv); /* also declared in cli.h once the lead adds it */

static const char *const help =
    "usage: v3tune data prepare --input FILE... --out DIR [options]\n"
    "       v3tune data stats DIR [--seq-len N] [--split train|eval] [--no-verify]\n"
    "\n"
    "prepare: read JSONL (.jsonl, .jsonl.zst) or JSON-array files of conversations, apply the chat\n"
    "template and tokenizer, and write token shards with loss masks plus manifest.json into DIR\n"
    "(format: docs/shards.md). Output is identical for any --jobs. Bad rows are reported as\n"
    "file:line: reason and skipped (or stop the run with --strict).\n"
    "\n"
    "options (prepare):\n"
    "  --input FILE...        data files (repeatable; more files may follow as arguments)\n"
    "  --out DIR              output directory\n"
    "  --format F             auto | messages | alpaca | sharegpt | prompt_completion | text\n"
    "                         (default auto: chosen per row by its fields)\n"
    "  --field KEY=NAME       read JSON field NAME for KEY (e.g. prompt=question,\n"
    "                         completion=answer); KEY is one of messages role content reasoning\n"
    "                         tool_calls conversations from value instruction input output history\n"
    "                         prompt completion system tools text (repeatable)\n"
    "  --split-think          split \"<think>R</think>A\" assistant strings into reasoning + answer\n"
    "  --template T           v3 | r1 | r1-keep-reasoning (default v3)\n"
    "  --mask all|last        loss on every assistant message or only the last (default all)\n"
    "  --max-len N            longest sample in tokens (default 0 = no limit)\n"
    "  --overlong truncate|drop   what to do with longer samples (default truncate)\n"
    "  --eval-fraction F      share of documents for the eval split (default 0)\n"
    "  --seed S               seed of the train/eval split (default 0)\n"
    "  --strict               stop at the first bad row (exit 1)\n"
    "  --jobs N               worker threads (default: all cores)\n"
    "  --tokenizer DIR        tokenizer.json directory (default ../shared/data/deepseek-v3 or\n"
    "                         $V3_TOKENIZER_DIR)\n"
    "  --shard-size BYTES     roll shards over at this size (default 268435456)\n"
    "  --max-record BYTES     longest input record (default 67108864); longer = bad row\n"
    "  --layout auto|lines|array   how records are laid out (default auto: '[' = JSON array)\n"
    "  --force                replace a prepared dataset already in DIR\n"
    "  --quiet                no progress line\n"
    "\n"
    "stats: counts per split, document length histogram, loss-token fraction, bad rows, and with\n"
    "--seq-len the packing efficiency of best-fit-decreasing packing at that length.\n";

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    if (!*s || *s == '-') return -1;
    *out = strtoull(s, &end, 0);
    return *end ? -1 : 0;
}

static int cmd_prepare(int argc, char **argv) {
    const char *cmd = "data prepare";
    v3_prepare_opts o;
    v3_prepare_opts_default(&o);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.jobs = ncpu > 0 ? (int)ncpu : 1;
    o.log = stderr;
    const char *tmpl = "v3", *tok_dir = NULL;
    int quiet = 0;
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    if (!inputs) return v3_cli_fail(cmd, "out of memory");
    int n_in = 0, rc = V3_EXIT_OK;
    v3_err err = {0};
    static const struct option opts[] = {
        {"input", required_argument, 0, 'i'},     {"out", required_argument, 0, 'o'},
        {"format", required_argument, 0, 'F'},    {"field", required_argument, 0, 'k'},
        {"split-think", no_argument, 0, 'T'},     {"template", required_argument, 0, 't'},
        {"mask", required_argument, 0, 'm'},      {"max-len", required_argument, 0, 'L'},
        {"overlong", required_argument, 0, 'O'},  {"eval-fraction", required_argument, 0, 'e'},
        {"seed", required_argument, 0, 's'},      {"strict", no_argument, 0, 'S'},
        {"jobs", required_argument, 0, 'j'},      {"tokenizer", required_argument, 0, 'z'},
        {"shard-size", required_argument, 0, 'B'}, {"max-record", required_argument, 0, 'R'},
        {"layout", required_argument, 0, 'l'},    {"force", no_argument, 0, 'f'},
        {"quiet", no_argument, 0, 'q'},           {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    uint64_t u;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'i': inputs[n_in++] = optarg; break;
        case 'o': o.out_dir = optarg; break;
        case 'F': {
            int f = v3_format_parse(optarg);
            if (f < 0) { rc = v3_cli_usage_error(cmd, "unknown --format \"%s\"", optarg); goto out; }
            o.ingest.format = (v3_format)f;
            break;
        }
        case 'k':
            if (v3_ingest_map_field(&o.ingest, optarg, &err)) { rc = v3_cli_usage_error(cmd, "%s", err.msg); goto out; }
            break;
        case 'T': o.ingest.split_think = 1; break;
        case 't': tmpl = optarg; break;
        case 'm':
            if (strcmp(optarg, "all") == 0) o.mask_last = 0;
            else if (strcmp(optarg, "last") == 0) o.mask_last = 1;
            else { rc = v3_cli_usage_error(cmd, "--mask must be all or last"); goto out; }
            break;
        case 'L':
            if (parse_u64(optarg, &u) || u > ((uint64_t)1 << 31)) { rc = v3_cli_usage_error(cmd, "--max-len needs a token count"); goto out; }
            o.max_len = (int64_t)u;
            break;
        case 'O':
            if (strcmp(optarg, "truncate") == 0) o.overlong = V3_OVERLONG_TRUNCATE;
            else if (strcmp(optarg, "drop") == 0) o.overlong = V3_OVERLONG_DROP;
            else { rc = v3_cli_usage_error(cmd, "--overlong must be truncate or drop"); goto out; }
            break;
        case 'e': {
            char *end;
            o.eval_fraction = strtod(optarg, &end);
            if (!*optarg || *end || !(o.eval_fraction >= 0 && o.eval_fraction <= 1)) {
                rc = v3_cli_usage_error(cmd, "--eval-fraction must be a number in [0, 1]");
                goto out;
            }
            break;
        }
        case 's':
            if (parse_u64(optarg, &o.seed)) { rc = v3_cli_usage_error(cmd, "--seed needs an integer"); goto out; }
            break;
        case 'S': o.strict = 1; break;
        case 'j':
            if (parse_u64(optarg, &u) || u < 1 || u > 1024) { rc = v3_cli_usage_error(cmd, "--jobs must be in [1, 1024]"); goto out; }
            o.jobs = (int)u;
            break;
        case 'z': tok_dir = optarg; break;
        case 'B':
            if (parse_u64(optarg, &o.shard_bytes) || o.shard_bytes < 4096) { rc = v3_cli_usage_error(cmd, "--shard-size needs bytes (>= 4096)"); goto out; }
            break;
        case 'R':
            if (parse_u64(optarg, &u) || u < 2) { rc = v3_cli_usage_error(cmd, "--max-record needs bytes"); goto out; }
            o.max_record = (size_t)u;
            break;
        case 'l':
            if (strcmp(optarg, "auto") == 0) o.layout = V3_JSONL_AUTO;
            else if (strcmp(optarg, "lines") == 0) o.layout = V3_JSONL_LINES;
            else if (strcmp(optarg, "array") == 0) o.layout = V3_JSONL_ARRAY;
            else { rc = v3_cli_usage_error(cmd, "--layout must be auto, lines or array"); goto out; }
            break;
        case 'f': o.force = 1; break;
        case 'q': quiet = 1; break;
        default: rc = v3_cli_usage_error(cmd, "unknown or incomplete option \"%s\"", argv[optind - 1]); goto out;
        }
    }
    while (optind < argc) inputs[n_in++] = argv[optind++];
    if (n_in == 0) { rc = v3_cli_usage_error(cmd, "--input FILE is required"); goto out; }
    if (!o.out_dir) { rc = v3_cli_usage_error(cmd, "--out DIR is required"); goto out; }
    if (v3_chat_template_parse(tmpl) < 0) { rc = v3_cli_usage_error(cmd, "unknown --template \"%s\" (v3, r1, r1-keep-reasoning)", tmpl); goto out; }
    if (quiet) o.log = NULL;
    o.inputs = inputs;
    o.n_inputs = n_in;
    o.template_name = tmpl;

    char tokbuf[4096];
    if (!tok_dir) tok_dir = v3_cli_default_tokenizer_dir(tokbuf, sizeof tokbuf);
    v3_chat_encoder ce;
    v3_encoder enc;
    if (v3_chat_encoder_init(&ce, &enc, tok_dir, tmpl, o.mask_last, &err)) {
        rc = v3_cli_fail(cmd, "%s", err.msg);
        goto out;
    }
    v3_prepare_stats st;
    int prc = v3_prepare_run(&o, &enc, &st, &err);
    v3_chat_encoder_free(&ce);
    if (prc) {
        rc = prc == V3_EUSAGE ? v3_cli_usage_error(cmd, "%s", err.msg) : v3_cli_fail(cmd, "%s", err.msg);
        goto out;
    }
    printf("prepared %s: %llu rows -> %llu docs (train %llu, eval %llu), %llu tokens, %llu loss tokens (%.1f%%)\n",
           o.out_dir, (unsigned long long)st.rows, (unsigned long long)st.docs, (unsigned long long)st.docs_train,
           (unsigned long long)st.docs_eval, (unsigned long long)st.tokens, (unsigned long long)st.loss_tokens,
           st.tokens ? 100.0 * (double)st.loss_tokens / (double)st.tokens : 0.0);
    printf("shards: %d; truncated: %llu; bad rows: %llu (overlong dropped: %llu); %.2fs, %.0f rows/s, %.1f MB/s\n",
           st.n_shards, (unsigned long long)st.truncated, (unsigned long long)st.bad_rows,
           (unsigned long long)st.dropped_overlong, st.seconds, st.seconds > 0 ? (double)st.rows / st.seconds : 0.0,
           st.seconds > 0 ? (double)st.bytes_in / st.seconds / 1e6 : 0.0);
    if (st.n_errors) {
        printf("first %d bad rows:\n", st.n_errors);
        for (int i = 0; i < st.n_errors; i++) printf("  %s\n", st.errors[i]);
    }
out:
    free(inputs);
    return rc;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int stats_split(const char *dir, const char *split, int flags, int64_t seq_len) {
    const char *cmd = "data stats";
    v3_dataset d;
    v3_err err = {0};
    if (v3_dataset_open(&d, dir, split, flags, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    printf("[%s] shards %d, docs %llu, tokens %llu, loss tokens %llu (%.2f%% of tokens; masked out %.2f%%)\n", split,
           d.n_shards, (unsigned long long)d.n_docs, (unsigned long long)d.n_tokens, (unsigned long long)d.n_loss,
           d.n_tokens ? 100.0 * (double)d.n_loss / (double)d.n_tokens : 0.0,
           d.n_tokens ? 100.0 - 100.0 * (double)d.n_loss / (double)d.n_tokens : 0.0);
    if (d.n_docs == 0) {
        v3_dataset_close(&d);
        return V3_EXIT_OK;
    }
    uint64_t *len = malloc(d.n_docs * sizeof *len);
    if (!len) {
        v3_dataset_close(&d);
        return v3_cli_fail(cmd, "out of memory");
    }
    uint64_t hist[64] = {0};
    for (uint64_t i = 0; i < d.n_docs; i++) {
        const uint32_t *t;
        const uint8_t *m;
        v3_dataset_doc(&d, i, &t, &m, &len[i]);
        int b = 0;
        while (((uint64_t)2 << b) <= len[i]) b++; /* bucket b holds [2^b, 2^(b+1)) */
        hist[b]++;
    }
    qsort(len, d.n_docs, sizeof *len, cmp_u64);
    printf("  doc length: min %llu, median %llu, mean %.1f, p99 %llu, max %llu\n", (unsigned long long)len[0],
           (unsigned long long)len[d.n_docs / 2], (double)d.n_tokens / (double)d.n_docs,
           (unsigned long long)len[(d.n_docs * 99) / 100], (unsigned long long)len[d.n_docs - 1]);
    uint64_t top = 0;
    for (int b = 0; b < 64; b++)
        if (hist[b] > top) top = hist[b];
    for (int b = 0; b < 64; b++) {
        if (!hist[b]) continue;
        char bar[41];
        int w = (int)(40.0 * (double)hist[b] / (double)top + 0.5);
        memset(bar, '#', (size_t)w);
        bar[w] = 0;
        printf("  [%7llu, %7llu) %9llu %s\n", (unsigned long long)1 << b, (unsigned long long)2 << b,
               (unsigned long long)hist[b], bar);
    }
    free(len);
    int rc = V3_EXIT_OK;
    if (seq_len > 0) {
        v3_pack_opts po = {.seq_len = seq_len, .overlong = V3_OVERLONG_TRUNCATE, .seed = 0, .pad_id = 1, .rank = 0, .world = 1};
        v3_packer p;
        if (v3_packer_init(&p, &d, &po, &err)) rc = v3_cli_fail(cmd, "%s", err.msg);
        else
            printf("  packing at seq_len %lld: %llu sequences, efficiency %.2f%% (non-pad tokens / total), "
                   "%llu docs truncated\n",
                   (long long)seq_len, (unsigned long long)p.n_seq, 100.0 * v3_packer_efficiency(&p),
                   (unsigned long long)p.truncated);
        v3_packer_free(&p);
    }
    v3_dataset_close(&d);
    return rc;
}

static int cmd_stats(int argc, char **argv) {
    const char *cmd = "data stats";
    const char *dir = NULL, *split = NULL;
    int flags = V3_SHARD_VERIFY;
    uint64_t seq_len = 0;
    static const struct option opts[] = {{"seq-len", required_argument, 0, 'L'},
                                          {"split", required_argument, 0, 's'},
                                          {"no-verify", no_argument, 0, 'n'},
                                          {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'L':
            if (parse_u64(optarg, &seq_len) || seq_len < 2 || seq_len > ((uint64_t)1 << 30))
                return v3_cli_usage_error(cmd, "--seq-len needs a length >= 2");
            break;
        case 's':
            if (strcmp(optarg, "train") && strcmp(optarg, "eval")) return v3_cli_usage_error(cmd, "--split is train or eval");
            split = optarg;
            break;
        case 'n': flags = 0; break;
        default: return v3_cli_usage_error(cmd, "unknown or incomplete option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind < argc) dir = argv[optind++];
    if (!dir) return v3_cli_usage_error(cmd, "DIR is required");
    if (optind < argc) return v3_cli_usage_error(cmd, "unexpected argument \"%s\"", argv[optind]);
    v3_dataset all;
    v3_err err = {0};
    if (v3_dataset_open(&all, dir, NULL, 0, &err)) return v3_cli_fail(cmd, "%s", err.msg);
    printf("%s: %d shards, %llu docs, %llu tokens, bad rows skipped at prepare: %llu\n", dir, all.n_shards,
           (unsigned long long)all.n_docs, (unsigned long long)all.n_tokens, (unsigned long long)all.bad_rows);
    v3_dataset_close(&all);
    int rc = V3_EXIT_OK;
    const char *splits[2] = {"train", "eval"};
    for (int i = 0; i < 2 && !rc; i++)
        if (!split || strcmp(split, splits[i]) == 0) rc = stats_split(dir, splits[i], flags, (int64_t)seq_len);
    return rc;
}

int v3_cmd_data(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(help, argc < 2 ? stderr : stdout);
        return argc < 2 ? V3_EXIT_USAGE : V3_EXIT_OK;
    }
    if (v3_cli_wants_help(argc - 1, argv + 1)) {
        fputs(help, stdout);
        return V3_EXIT_OK;
    }
    if (strcmp(argv[1], "prepare") == 0) return cmd_prepare(argc - 1, argv + 1);
    if (strcmp(argv[1], "stats") == 0) return cmd_stats(argc - 1, argv + 1);
    return v3_cli_usage_error("data", "unknown subcommand \"%s\" (prepare, stats)", argv[1]);
}
