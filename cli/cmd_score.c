/* cmd_score.c — `v3tune score`: mean token loss and perplexity of a model over JSONL rows of token
 * ids, computed by the training forward pass (so a score here equals the loss a training step
 * would report). Rows are packed into batches with document boundaries; each row's positions
 * restart at 0 and its tokens never see another row. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/model.h"

static const char *USAGE =
    "usage: v3tune score --model DIR --data FILE [--json] [--threads N] [--batch-tokens N]\n"
    "                    [--device auto|cpu|cuda] [--math auto|fp32|tf32|bf16]\n"
    "\n"
    "Prints the mean loss (nats per scored token) and the perplexity of the model in DIR (a\n"
    "Hugging Face directory: config.json + safetensors) over FILE, a JSONL file whose rows hold\n"
    "  \"input_ids\": [ids...]   and optionally   \"labels\": [ids or -100...]\n"
    "(same length; HF convention: position t predicts labels[t+1], -100 is not scored; without\n"
    "labels every next token is scored). The mean is over all scored tokens of the file.\n"
    "\n"
    "  --json            one line per row: {\"index\": i, \"tokens\": n, \"loss\": x}\n"
    "                    (tokens = scored targets; loss null when none); summary on stderr\n"
    "  --threads N       CPU threads (default: all cores)\n"
    "  --batch-tokens N  tokens packed per forward pass (default 4096, at least the longest row)\n"
    "  --device D        auto (cuda when a GPU is present), cpu or cuda\n"
    "  --math M          GPU arithmetic: auto (= bf16), fp32 (exact), tf32 or bf16; the CPU\n"
    "                    always computes in fp32\n"
    "\n"
    "A bad row is reported as FILE:LINE: reason and skipped; the exit code is then 1.\n";

typedef struct row {
    int64_t line, index;
    int64_t n;
    int32_t *ids, *targets; /* [n] */
} row;

typedef struct rows {
    row *r;
    int64_t n, cap;
} rows;

/* Parses one JSONL row; on failure fills why and returns -1. */
static int parse_row(const char *text, int64_t vocab, row *out, char *why, size_t whylen) {
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!o) {
        snprintf(why, whylen, "invalid JSON: %s (column %d)", je.text, je.column);
        return -1;
    }
    int rc = -1;
    json_t *ids = json_object_get(o, "input_ids");
    json_t *labels = json_object_get(o, "labels");
    if (!json_is_object(o)) {
        snprintf(why, whylen, "a row must be a JSON object");
        goto done;
    }
    if (!json_is_array(ids)) {
        snprintf(why, whylen, "missing \"input_ids\" array");
        goto done;
    }
    size_t n = json_array_size(ids);
    if (n == 0) {
        snprintf(why, whylen, "\"input_ids\" is empty");
        goto done;
    }
    if (labels && !json_is_null(labels) && (!json_is_array(labels) || json_array_size(labels) != n)) {
        snprintf(why, whylen, "\"labels\" must be an array of the same length as \"input_ids\" (%zu)", n);
        goto done;
    }
    out->n = (int64_t)n;
    out->ids = malloc(n * sizeof(int32_t));
    out->targets = malloc(n * sizeof(int32_t));
    if (!out->ids || !out->targets) {
        snprintf(why, whylen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(ids, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= vocab) {
            snprintf(why, whylen, "input_ids[%zu] is not a token id in [0, %lld)", i, (long long)vocab);
            goto done;
        }
        out->ids[i] = (int32_t)json_integer_value(v);
    }
    for (size_t i = 0; i < n; i++) {
        int64_t lab;
        if (labels && !json_is_null(labels)) {
            json_t *v = json_array_get(labels, i);
            if (!json_is_integer(v) || json_integer_value(v) >= vocab ||
                (json_integer_value(v) < 0 && json_integer_value(v) != -100)) {
                snprintf(why, whylen, "labels[%zu] is neither a token id nor -100", i);
                goto done;
            }
            lab = json_integer_value(v);
        } else {
            lab = out->ids[i];
        }
        /* HF shift: position i-1 predicts labels[i] */
        if (i > 0) out->targets[i - 1] = (int32_t)lab;
    }
    out->targets[n - 1] = -100;
    rc = 0;
done:
    if (rc) {
        free(out->ids);
        free(out->targets);
        out->ids = out->targets = NULL;
    }
    json_decref(o);
    return rc;
}

static int read_rows(const char *path, int64_t vocab, rows *rs, int64_t *n_bad) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "v3tune score: error: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue; /* blank lines are not rows */
        row r = {0};
        char why[256];
        if (parse_row(line, vocab, &r, why, sizeof why)) {
            fprintf(stderr, "%s:%lld: %s\n", path, (long long)lineno, why);
            (*n_bad)++;
            continue;
        }
        r.line = lineno;
        r.index = rs->n;
        if (rs->n == rs->cap) {
            rs->cap = rs->cap ? 2 * rs->cap : 64;
            row *nr = realloc(rs->r, (size_t)rs->cap * sizeof *nr);
            if (!nr) {
                free(line);
                fclose(f);
                return -1;
            }
            rs->r = nr;
        }
        rs->r[rs->n++] = r;
    }
    free(line);
    fclose(f);
    return 0;
}

int v3_cmd_score(int argc, char **argv) {
    if (v3_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return V3_EXIT_OK;
    }
    const char *model_dir = NULL, *data = NULL, *device = "auto", *math = "auto";
    int json = 0, threads = 0;
    int64_t batch_tokens = 4096;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if ((strcmp(a, "--device") == 0 || strcmp(a, "--math") == 0)) {
            if (i + 1 >= argc) return v3_cli_usage_error("score", "%s needs a value", a);
            if (strcmp(a, "--device") == 0) device = argv[++i];
            else math = argv[++i];
        } else if ((strcmp(a, "--model") == 0 || strcmp(a, "--data") == 0 ||
                    strcmp(a, "--threads") == 0 || strcmp(a, "--batch-tokens") == 0)) {
            if (i + 1 >= argc) return v3_cli_usage_error("score", "%s needs a value", a);
            const char *v = argv[++i];
            if (strcmp(a, "--model") == 0) model_dir = v;
            else if (strcmp(a, "--data") == 0) data = v;
            else {
                char *end;
                long long x = strtoll(v, &end, 10);
                if (*end || x < (strcmp(a, "--threads") == 0 ? 0 : 1))
                    return v3_cli_usage_error("score", "%s: bad number \"%s\"", a, v);
                if (strcmp(a, "--threads") == 0) threads = (int)x;
                else batch_tokens = x;
            }
        } else {
            return v3_cli_usage_error("score", "unknown argument \"%s\"", a);
        }
    }
    if (!model_dir || !data) return v3_cli_usage_error("score", "--model and --data are required");

    v3_err err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    v3_config cfg;
    if (v3_config_load(&cfg, path, &err)) return v3_cli_fail("score", "%s", err.msg);

    rows rs = {0};
    int64_t n_bad = 0;
    if (read_rows(data, cfg.vocab_size, &rs, &n_bad)) return v3_cli_fail("score", "cannot read %s", data);
    int64_t longest = 0;
    for (int64_t i = 0; i < rs.n; i++)
        if (rs.r[i].n > longest) longest = rs.r[i].n;
    if (batch_tokens < longest) batch_tokens = longest;

    int status = V3_EXIT_OK;
    v3_kctx ctx;
    v3_model m;
    int have_ctx = 0, have_model = 0;
    int32_t *tok = NULL, *tgt = NULL, *pos = NULL, *ds = NULL;
    float *tl = NULL;
    double sum = 0;
    int64_t scored = 0;
    if (rs.n == 0) {
        status = v3_cli_fail("score", "%s: no rows to score", data);
        goto out;
    }
    if (v3_kctx_open(&ctx, device, math, threads, &err)) {
        status = v3_cli_fail("score", "%s", err.msg);
        goto out;
    }
    have_ctx = 1;
    v3_model_options o = v3_model_default_options();
    o.training = 0;
    if (v3_model_init(&m, &cfg, &ctx, batch_tokens, &o, &err)) {
        status = v3_cli_fail("score", "%s", err.msg);
        goto out;
    }
    have_model = 1;
    if (v3_model_load(&m, model_dir, &err)) {
        status = v3_cli_fail("score", "%s", err.msg);
        goto out;
    }
    tok = malloc((size_t)batch_tokens * sizeof *tok);
    tgt = malloc((size_t)batch_tokens * sizeof *tgt);
    pos = malloc((size_t)batch_tokens * sizeof *pos);
    ds = malloc((size_t)batch_tokens * sizeof *ds);
    tl = malloc((size_t)batch_tokens * sizeof *tl);
    if (!tok || !tgt || !pos || !ds || !tl) {
        status = v3_cli_fail("score", "out of memory");
        goto out;
    }
    /* greedy packing of whole rows into batches of at most batch_tokens */
    for (int64_t first = 0; first < rs.n;) {
        int64_t N = 0, last = first;
        while (last < rs.n && N + rs.r[last].n <= batch_tokens) {
            const row *r = &rs.r[last];
            for (int64_t t = 0; t < r->n; t++) {
                tok[N + t] = r->ids[t];
                tgt[N + t] = r->targets[t];
                pos[N + t] = (int32_t)t;
                ds[N + t] = (int32_t)N;
            }
            N += r->n;
            last++;
        }
        v3_batch b = {N, tok, tgt, pos, ds, tl, NULL, NULL, 0.0f, NULL};
        if (v3_model_forward(&m, &b, NULL, &err)) {
            status = v3_cli_fail("score", "%s", err.msg);
            goto out;
        }
        int64_t off = 0;
        for (int64_t i = first; i < last; i++) {
            const row *r = &rs.r[i];
            double s = 0;
            int64_t n = 0;
            for (int64_t t = 0; t < r->n; t++)
                if (r->targets[t] >= 0) {
                    s += tl[off + t];
                    n++;
                }
            off += r->n;
            sum += s;
            scored += n;
            if (json) {
                if (n) printf("{\"index\": %lld, \"tokens\": %lld, \"loss\": %.9g}\n", (long long)r->index, (long long)n, s / n);
                else printf("{\"index\": %lld, \"tokens\": 0, \"loss\": null}\n", (long long)r->index);
            }
        }
        first = last;
    }
    {
        double mean = scored ? sum / (double)scored : NAN;
        FILE *f = json ? stderr : stdout;
        fprintf(f, "rows %lld  scored tokens %lld  loss %.6f  perplexity %.4f\n", (long long)rs.n,
                (long long)scored, mean, exp(mean));
    }
    if (n_bad) status = v3_cli_fail("score", "%lld bad row%s skipped", (long long)n_bad, n_bad == 1 ? "" : "s");
out:
    free(tok);
    free(tgt);
    free(pos);
    free(ds);
    free(tl);
    if (have_model) v3_model_free(&m);
    if (have_ctx) v3_kctx_free(&ctx);
    for (int64_t i = 0; i < rs.n; i++) {
        free(rs.r[i].ids);
        free(rs.r[i].targets);
    }
    free(rs.r);
    return status;
}
