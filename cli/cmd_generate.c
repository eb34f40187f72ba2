/* cmd_generate.c — `v3tune generate`: batched sampling from a model with the rollout engine
 * (rollout/engine.h), prompts from JSONL (text, chat messages or token ids), results as JSONL or
 * into a run's SQLite store. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/fs.h"
#include "datasets/chat.h"
#include "datasets/jsonl.h"
#include "datasets/store.h"
#include "datasets/tokenizer.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/model.h"
#include "rollout/engine.h"

static const char *USAGE =
    "usage: v3tune generate --model DIR --prompts FILE.jsonl [options]\n"
    "\n"
    "Samples completions with the rollout engine (paged latent KV cache, continuous batching,\n"
    "prefix sharing of the n samples of a prompt). Each JSONL row holds one of\n"
    "  \"prompt\": \"text\"          encoded with the tokenizer (BOS as tokenizer_config says)\n"
    "  \"messages\": [...]         rendered with the chat template and its generation prompt\n"
    "  \"input_ids\": [ids...]     used as is\n"
    "plus any other fields, which are copied to the output rows (e.g. \"answer\").\n"
    "\n"
    "  --n N                 samples per prompt (1)\n"
    "  --temperature T       0 = greedy (1.0)\n"
    "  --top-p P  --top-k K  --min-p P   filters (off)\n"
    "  --max-new-tokens N    (256)\n"
    "  --stop STR            stop string (repeatable); the EOS token always stops\n"
    "  --seed S              sample s of row i uses stream (S, i, s) (0)\n"
    "  --template NAME       chat template for \"messages\": v3 | r1 (v3)\n"
    "  --out FILE.jsonl      one row per sample (default: stdout)\n"
    "  --run RUN_DIR         also store prompts and samples in RUN_DIR/run.db\n"
    "  --stream              print text as it is generated (raw for one sample, else JSON deltas\n"
    "                        {\"index\",\"sample\",\"delta\"}); the rows then go only to --out/--run\n"
    "  --mtp                 MTP speculative decoding for greedy requests (needs MTP weights)\n"
    "  --mtp-draft-vocab N   drafts choose among token ids < N (16384; 0 = whole vocabulary)\n"
    "  --no-pack-weights     no packed copies of the weights for decoding (saves about the\n"
    "                        model's size in memory; CPU decode is then slower, the output the same)\n"
    "  --no-pack-bf16        pack as fp32 even weights that are exactly bf16 (the same output)\n"
    "  --max-live-tokens N   KV cache budget in tokens (65536)\n"
    "  --max-step-tokens N   tokens per model step (2048)\n"
    "  --max-seqs N          sequences decoded at once (256)\n"
    "  --block-size N        tokens per cache block (16)\n"
    "  --threads N           CPU threads (all cores)\n"
    "  --device D            auto | cpu | cuda (auto: cuda when a GPU is present)\n"
    "  --math M              auto | fp32 | tf32 | bf16: GPU arithmetic (auto = bf16; the CPU\n"
    "                        is always fp32, where recorded logprobs are trainer-exact)\n"
    "  --tokenizer DIR       tokenizer files (default: the model dir if it has tokenizer.json,\n"
    "                        else the DeepSeek-V3 tokenizer of the shared data)\n"
    "\n"
    "A bad row is reported as FILE:LINE: reason and skipped (exit code 1 at the end).\n";

typedef struct prow {
    int64_t line;
    int32_t *ids;
    int64_t n;
    json_t *fields; /* the row minus prompt/messages/input_ids */
    char *text;     /* prompt text or rendered template */
    char *messages; /* JSON of messages, if given */
} prow;

typedef struct gen_args {
    const char *model, *prompts, *out, *run, *tok_dir, *tmpl, *device, *math;
    int n, top_k, stream, mtp, threads, no_pack_weights, no_pack_bf16;
    float temperature, top_p, min_p;
    int64_t max_new, max_live, max_step, max_seqs, block, draft_vocab;
    uint64_t seed;
    const char *stops[16];
    int n_stops;
} gen_args;

static int parse_args(int argc, char **argv, gen_args *a) {
    memset(a, 0, sizeof *a);
    a->n = 1, a->temperature = 1.0f, a->top_p = 1.0f, a->max_new = 256, a->max_live = 65536;
    a->max_step = 2048, a->max_seqs = 256, a->block = 16, a->tmpl = "v3";
    a->draft_vocab = v3_engine_default_options().mtp_draft_vocab;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_V()                                                               \
    do {                                                                       \
        if (!v) return v3_cli_usage_error("generate", "%s needs a value", k); \
        i++;                                                                   \
    } while (0)
        char *end = NULL;
        if (!strcmp(k, "--model")) { NEED_V(); a->model = v; }
        else if (!strcmp(k, "--prompts")) { NEED_V(); a->prompts = v; }
        else if (!strcmp(k, "--out")) { NEED_V(); a->out = v; }
        else if (!strcmp(k, "--run")) { NEED_V(); a->run = v; }
        else if (!strcmp(k, "--tokenizer")) { NEED_V(); a->tok_dir = v; }
        else if (!strcmp(k, "--template")) { NEED_V(); a->tmpl = v; }
        else if (!strcmp(k, "--device")) { NEED_V(); a->device = v; }
        else if (!strcmp(k, "--math")) { NEED_V(); a->math = v; }
        else if (!strcmp(k, "--stream")) a->stream = 1;
        else if (!strcmp(k, "--mtp")) a->mtp = 1;
        else if (!strcmp(k, "--no-pack-weights")) a->no_pack_weights = 1;
        else if (!strcmp(k, "--no-pack-bf16")) a->no_pack_bf16 = 1;
        else if (!strcmp(k, "--stop")) {
            NEED_V();
            if (a->n_stops == 16) return v3_cli_usage_error("generate", "at most 16 --stop strings");
            if (!*v) return v3_cli_usage_error("generate", "--stop needs a non-empty string");
            a->stops[a->n_stops++] = v;
        } else if (!strcmp(k, "--temperature") || !strcmp(k, "--top-p") || !strcmp(k, "--min-p")) {
            NEED_V();
            double x = strtod(v, &end);
            if (!*v || *end || !isfinite(x)) return v3_cli_usage_error("generate", "%s: '%s' is not a number", k, v);
            if (!strcmp(k, "--temperature")) a->temperature = (float)x;
            else if (!strcmp(k, "--top-p")) a->top_p = (float)x;
            else a->min_p = (float)x;
        } else if (!strcmp(k, "--n") || !strcmp(k, "--top-k") || !strcmp(k, "--max-new-tokens") ||
                   !strcmp(k, "--seed") || !strcmp(k, "--max-live-tokens") ||
                   !strcmp(k, "--max-step-tokens") || !strcmp(k, "--max-seqs") ||
                   !strcmp(k, "--block-size") || !strcmp(k, "--threads") ||
                   !strcmp(k, "--mtp-draft-vocab")) {
            NEED_V();
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (!*v || *end || errno || x < 0) return v3_cli_usage_error("generate", "%s: '%s' is not a count", k, v);
            if (!strcmp(k, "--n")) a->n = (int)x;
            else if (!strcmp(k, "--top-k")) a->top_k = (int)x;
            else if (!strcmp(k, "--max-new-tokens")) a->max_new = x;
            else if (!strcmp(k, "--seed")) a->seed = (uint64_t)x;
            else if (!strcmp(k, "--max-live-tokens")) a->max_live = x;
            else if (!strcmp(k, "--max-step-tokens")) a->max_step = x;
            else if (!strcmp(k, "--max-seqs")) a->max_seqs = x;
            else if (!strcmp(k, "--block-size")) a->block = x;
            else if (!strcmp(k, "--mtp-draft-vocab")) a->draft_vocab = x;
            else a->threads = (int)x;
        } else {
            return v3_cli_usage_error("generate", "unknown option '%s'", k);
        }
#undef NEED_V
    }
    if (!a->model || !a->prompts) return v3_cli_usage_error("generate", "--model and --prompts are required");
    if (a->n < 1 || a->max_new < 1 || a->max_seqs < 1 || a->block < 1 || a->max_step < 1)
        return v3_cli_usage_error("generate", "--n, --max-new-tokens, --max-seqs, --block-size and "
                                              "--max-step-tokens must be at least 1");
    if (v3_chat_template_parse(a->tmpl) < 0 || v3_chat_template_parse(a->tmpl) == V3_CHAT_R1_KEEP_REASONING)
        return v3_cli_usage_error("generate", "--template: '%s' (v3 or r1)", a->tmpl);
    return -1;
}

/* One prompt row → token ids; on failure fills why. */
static int parse_prompt(const char *text, const v3_tokenizer *tok, int tmpl, int64_t vocab, prow *p,
                        char *why, size_t whylen) {
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    v3_err err;
    if (!o || !json_is_object(o)) {
        snprintf(why, whylen, o ? "a row must be a JSON object" : "invalid JSON: %s (column %d)", je.text, je.column);
        json_decref(o);
        return -1;
    }
    json_t *pr = json_object_get(o, "prompt"), *ms = json_object_get(o, "messages"),
           *ids = json_object_get(o, "input_ids");
    int rc = -1;
    v3_tok_ids ti = {0};
    v3_chat_out co = {0};
    if (json_is_array(ids)) {
        p->n = (int64_t)json_array_size(ids);
        p->ids = malloc((size_t)(p->n ? p->n : 1) * sizeof(int32_t));
        if (!p->ids) goto oom;
        for (int64_t i = 0; i < p->n; i++) {
            json_t *v = json_array_get(ids, (size_t)i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= vocab) {
                snprintf(why, whylen, "input_ids[%lld] is not a token id in [0, %lld)", (long long)i, (long long)vocab);
                goto done;
            }
            p->ids[i] = (int32_t)json_integer_value(v);
        }
        if (tok) { /* the store wants a readable prompt */
            size_t tl = 0;
            if (v3_tok_decode(tok, p->ids, (size_t)p->n, 0, &p->text, &tl, &err)) p->text = NULL;
        }
        if (!p->text) p->text = json_dumps(ids, JSON_COMPACT);
    } else if (json_is_string(pr) || json_is_array(ms)) {
        if (!tok) {
            snprintf(why, whylen, "text prompts need a tokenizer");
            goto done;
        }
        if (json_is_string(pr)) {
            if (v3_tok_encode(tok, json_string_value(pr), json_string_length(pr), V3_TOK_DEFAULT_BOS, &ti, &err)) {
                snprintf(why, whylen, "prompt: %.400s", err.msg);
                goto done;
            }
            p->text = strdup(json_string_value(pr));
        } else {
            v3_chat_opts co_opts = {(v3_chat_template)tmpl, 1, 0, 0};
            if (v3_chat_render(tok, ms, &co_opts, &co, &err)) {
                snprintf(why, whylen, "messages: %.400s", err.msg);
                goto done;
            }
            for (size_t i = 0; i < co.ids.n; i++)
                if (v3_tok_ids_push(&ti, co.ids.ids[i], &err)) goto oom;
            p->text = strdup(co.text);
            p->messages = json_dumps(ms, JSON_COMPACT);
        }
        p->n = (int64_t)ti.n;
        p->ids = malloc((size_t)(p->n ? p->n : 1) * sizeof(int32_t));
        if (!p->ids) goto oom;
        memcpy(p->ids, ti.ids, (size_t)p->n * sizeof(int32_t));
        for (int64_t i = 0; i < p->n; i++)
            if (p->ids[i] >= vocab) {
                snprintf(why, whylen, "token %d is outside the model's vocabulary (%lld)", p->ids[i], (long long)vocab);
                goto done;
            }
    } else {
        snprintf(why, whylen, "needs \"prompt\" (string), \"messages\" (array) or \"input_ids\" (array)");
        goto done;
    }
    if (p->n == 0) {
        snprintf(why, whylen, "the prompt is empty");
        goto done;
    }
    json_object_del(o, "prompt");
    json_object_del(o, "messages");
    json_object_del(o, "input_ids");
    p->fields = json_incref(o);
    rc = 0;
    goto done;
oom:
    snprintf(why, whylen, "out of memory");
done:
    v3_tok_ids_free(&ti);
    v3_chat_out_free(&co);
    json_decref(o);
    if (rc) {
        free(p->ids);
        free(p->text);
        free(p->messages);
        p->ids = NULL, p->text = p->messages = NULL;
    }
    return rc;
}

typedef struct stream_ctx {
    int raw;
    const prow *rows;
} stream_ctx;

static void on_stream(void *user, const v3_gen_output *o, const char *piece, size_t n, int done) {
    stream_ctx *s = user;
    if (s->raw) {
        fwrite(piece, 1, n, stdout);
        if (done) fputc('\n', stdout);
        fflush(stdout);
        return;
    }
    if (n == 0 && !done) return;
    json_t *j = json_pack("{s:I, s:i, s:s%}", "index", (json_int_t)o->request, "sample", o->sample,
                          "delta", piece, n);
    if (done) json_object_set_new(j, "finish_reason", json_string(v3_finish_name(o->finish)));
    char *t = json_dumps(j, JSON_COMPACT);
    if (t) printf("%s\n", t);
    fflush(stdout);
    free(t);
    json_decref(j);
}

static json_t *output_row(const prow *p, const v3_gen_output *o) {
    json_t *j = json_deep_copy(p->fields);
    json_object_set_new(j, "index", json_integer(o->request));
    json_object_set_new(j, "sample", json_integer(o->sample));
    json_object_set_new(j, "text", o->text ? json_stringn(o->text, o->text_len) : json_null());
    json_t *ids = json_array(), *lp = json_array(), *lpt = json_array();
    for (int64_t i = 0; i < o->n; i++) {
        json_array_append_new(ids, json_integer(o->ids[i]));
        json_array_append_new(lp, json_real(o->logprob[i]));
        json_array_append_new(lpt, json_real(o->logprob_temp[i]));
    }
    json_object_set_new(j, "ids", ids);
    json_object_set_new(j, "logprobs", lp);
    json_object_set_new(j, "logprobs_temp", lpt);
    json_object_set_new(j, "finish_reason", json_string(v3_finish_name(o->finish)));
    json_object_set_new(j, "prompt_tokens", json_integer(p->n));
    json_object_set_new(j, "completion_tokens", json_integer(o->n));
    json_object_set_new(j, "time_s", json_real(o->t_done));
    return j;
}

static int store_results(const gen_args *a, const prow *rows, const v3_gen_output *outs, int64_t n_out,
                         v3_err *err) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/run.db", a->run) >= (int)sizeof path)
        return v3_errf(err, V3_EINVAL, "--run: path too long");
    if (v3_mkdirs(a->run, err)) return V3_EIO;
    v3_store *st = NULL;
    int rc = v3_store_open(&st, path, V3_STORE_WRITE | V3_STORE_CREATE, err);
    if (rc) return rc;
    v3_store_run_info ri = {"generate", NULL, NULL, 0};
    int64_t run_id;
    if ((rc = v3_store_run_begin(st, &ri, &run_id, err))) goto done;
    v3_store_batch *b = NULL;
    if ((rc = v3_store_batch_new(st, &b, err))) goto done;
    int64_t prompt_id = 0, last_req = -1;
    for (int64_t i = 0; i < n_out && !rc; i++) {
        const v3_gen_output *o = &outs[i];
        const prow *p = &rows[o->request];
        if (o->request != last_req) {
            char *fields = json_dumps(p->fields, JSON_COMPACT);
            v3_store_prompt sp = {p->text, p->messages, fields, a->prompts, p->line};
            rc = v3_store_batch_add_prompt(b, &sp, &prompt_id, err);
            free(fields);
            last_req = o->request;
            if (rc) break;
        }
        uint32_t *ids = malloc((size_t)(o->n ? o->n : 1) * sizeof(uint32_t));
        if (!ids) {
            rc = v3_errf(err, V3_ENOMEM, "out of memory");
            break;
        }
        for (int64_t t = 0; t < o->n; t++) ids[t] = (uint32_t)o->ids[t];
        v3_store_sample s = {0};
        s.prompt_id = prompt_id;
        s.group_id = o->request;
        s.group_index = o->sample;
        s.completion = o->text ? o->text : "";
        s.n_tokens = (int32_t)o->n;
        s.token_ids = ids;
        s.logprobs = o->logprob_temp;
        s.finish_reason = v3_finish_name(o->finish);
        s.prompt_tokens = (int32_t)p->n;
        s.seed = a->seed;
        s.reward = NAN;
        s.advantage = NAN;
        int64_t sid;
        rc = v3_store_batch_add_sample(b, &s, &sid, err);
        free(ids);
    }
    if (rc) v3_store_batch_free(b);
    else rc = v3_store_submit(st, b, NULL, err);
    v3_err e2;
    v3_store_run_end(st, rc ? "failed" : "completed", rc ? err->msg : NULL, &e2);
done:;
    v3_err e3;
    int rc2 = v3_store_close(st, &e3);
    if (!rc && rc2) {
        *err = e3;
        rc = rc2;
    }
    return rc;
}

int v3_cmd_generate(int argc, char **argv) {
    if (v3_cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return V3_EXIT_OK;
    }
    gen_args a;
    int prc = parse_args(argc, argv, &a);
    if (prc >= 0) return prc;

    v3_err err;
    int exit_code = V3_EXIT_OK;
    v3_config cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", a.model);
    if (v3_config_load(&cfg, path, &err)) return v3_cli_fail("generate", "%s", err.msg);

    v3_tokenizer *tok = NULL;
    char tbuf[4096];
    const char *tdir = a.tok_dir;
    if (!tdir) {
        snprintf(path, sizeof path, "%s/tokenizer.json", a.model);
        FILE *f = fopen(path, "r");
        if (f) {
            fclose(f);
            tdir = a.model;
        } else {
            tdir = v3_cli_default_tokenizer_dir(tbuf, sizeof tbuf);
        }
    }
    if (v3_tok_load(&tok, tdir, &err)) {
        if (a.tok_dir || a.n_stops) return v3_cli_fail("generate", "%s", err.msg);
        fprintf(stderr, "v3tune generate: no tokenizer (%s): token-id prompts only, no text output\n", err.msg);
        tok = NULL;
    }

    /* prompts */
    prow *rows = NULL;
    int64_t n_rows = 0, cap = 0, n_bad = 0, longest = 0;
    v3_jsonl *jr = NULL;
    if (v3_jsonl_open(&jr, a.prompts, V3_JSONL_AUTO, 0, &err)) {
        v3_tok_free(tok);
        return v3_cli_fail("generate", "%s", err.msg);
    }
    int tmpl = v3_chat_template_parse(a.tmpl);
    for (;;) {
        v3_record rec;
        int got = 0;
        if (v3_jsonl_next(jr, &rec, &got, &err)) {
            fprintf(stderr, "v3tune generate: error: %s\n", err.msg);
            exit_code = V3_EXIT_FAIL;
            break;
        }
        if (!got) break;
        char why[512];
        prow p = {rec.line, NULL, 0, NULL, NULL, NULL};
        if (rec.too_long || parse_prompt(rec.text, tok, tmpl, cfg.vocab_size, &p, why, sizeof why)) {
            fprintf(stderr, "%s:%lld: %s\n", a.prompts, (long long)rec.line, rec.too_long ? "row too long" : why);
            n_bad++;
            continue;
        }
        if (n_rows == cap) {
            cap = cap ? 2 * cap : 64;
            prow *r = realloc(rows, (size_t)cap * sizeof *r);
            if (!r) {
                fprintf(stderr, "v3tune generate: error: out of memory\n");
                exit_code = V3_EXIT_FAIL;
                break;
            }
            rows = r;
        }
        if (p.n > longest) longest = p.n;
        rows[n_rows++] = p;
    }
    v3_jsonl_close(jr);

    v3_kctx ctx;
    v3_model m;
    v3_engine e;
    int have_ctx = 0, have_model = 0, have_engine = 0;
    v3_gen_request *reqs = NULL;
    v3_gen_output *outs = NULL;
    int64_t n_out = 0;
    FILE *fo = NULL;
    if (exit_code || n_rows == 0) { /* an unreadable file, or nothing to do */
        if (n_rows == 0 && !exit_code) {
            fprintf(stderr, "v3tune generate: %s holds no usable prompts\n", a.prompts);
            exit_code = V3_EXIT_FAIL;
        }
        goto done;
    }
    if (v3_kctx_open(&ctx, a.device, a.math, a.threads, &err)) goto fail;
    have_ctx = 1;
    v3_model_options mo = v3_model_default_options();
    mo.training = 0;
    mo.absorb = 1;
    mo.mtp = a.mtp;
    int64_t step = a.max_step;
    if (v3_model_init(&m, &cfg, &ctx, step, &mo, &err)) goto fail;
    have_model = 1;
    if (v3_model_load(&m, a.model, &err)) goto fail;
    v3_engine_options eo = v3_engine_default_options();
    eo.block_size = a.block;
    eo.max_live_tokens = a.max_live;
    eo.max_seqs = a.max_seqs;
    eo.mtp = a.mtp;
    eo.mtp_draft_vocab = a.draft_vocab;
    eo.pack_weights = !a.no_pack_weights;
    eo.pack_bf16 = !a.no_pack_bf16;
    eo.tok = tok;
    stream_ctx sc = {(int64_t)a.n * n_rows == 1, rows};
    if (a.stream) {
        eo.stream = on_stream;
        eo.stream_user = &sc;
    }
    if (v3_engine_init(&e, &m, &eo, &err)) goto fail;
    have_engine = 1;

    int32_t eos = tok ? v3_tok_eos_id(tok) : -1;
    reqs = calloc((size_t)n_rows, sizeof *reqs);
    if (!reqs) {
        v3_errf(&err, V3_ENOMEM, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < n_rows; i++) {
        v3_gen_request *r = &reqs[i];
        r->prompt = rows[i].ids;
        r->prompt_len = rows[i].n;
        r->n = a.n;
        r->sampling = v3_sampling_default();
        r->sampling.temperature = a.temperature;
        r->sampling.top_k = a.top_k;
        r->sampling.top_p = a.top_p;
        r->sampling.min_p = a.min_p;
        r->max_new_tokens = a.max_new;
        r->stop_ids = eos >= 0 ? &eos : NULL;
        r->n_stop_ids = eos >= 0 ? 1 : 0;
        r->stop = a.stops;
        r->n_stop = a.n_stops;
        r->seed = a.seed;
    }
    if (v3_engine_generate(&e, reqs, (int)n_rows, &outs, &n_out, &err)) goto fail;

    if (a.out) {
        fo = fopen(a.out, "w");
        if (!fo) {
            v3_errf(&err, V3_EIO, "%s: %s", a.out, strerror(errno));
            goto fail;
        }
    } else if (!a.stream) {
        fo = stdout;
    }
    for (int64_t i = 0; fo && i < n_out; i++) {
        json_t *j = output_row(&rows[outs[i].request], &outs[i]);
        char *t = json_dumps(j, JSON_COMPACT);
        if (t) fprintf(fo, "%s\n", t);
        free(t);
        json_decref(j);
    }
    if (fo && fo != stdout && fclose(fo)) {
        fo = NULL;
        v3_errf(&err, V3_EIO, "%s: write failed", a.out);
        goto fail;
    }
    fo = NULL;
    if (a.run && store_results(&a, rows, outs, n_out, &err)) goto fail;
    {
        const v3_engine_stats *s = &e.stats;
        fprintf(stderr,
                "v3tune generate: %lld prompts × %d samples, %lld tokens in %.2f s (%.1f tokens/s); "
                "%lld steps, %lld prefill tokens (%lld shared), %lld preemptions, peak %lld/%lld blocks",
                (long long)n_rows, a.n, (long long)s->generated, s->t_total,
                s->t_total > 0 ? (double)s->generated / s->t_total : 0.0, (long long)s->steps,
                (long long)s->prefill_tokens, (long long)s->prefix_shared_tokens,
                (long long)s->preemptions, (long long)s->peak_blocks, (long long)e.kv.n_blocks);
        if (a.mtp)
            fprintf(stderr, "; MTP acceptance %lld/%lld (%.1f%%)", (long long)s->mtp_accepted,
                    (long long)s->mtp_drafted, s->mtp_drafted ? 100.0 * s->mtp_accepted / s->mtp_drafted : 0.0);
        if (e.wp.n)
            fprintf(stderr, "; packed weights: %lld copies (%lld bf16), %.1f MiB", (long long)e.wp.n,
                    (long long)e.wp.n_bf16, e.wp.bytes_read / 1048576.0);
        fputc('\n', stderr);
    }
    if (n_bad) {
        fprintf(stderr, "v3tune generate: %lld bad rows skipped\n", (long long)n_bad);
        exit_code = V3_EXIT_FAIL;
    }
    goto done;
fail:
    fprintf(stderr, "v3tune generate: error: %s\n", err.msg);
    exit_code = V3_EXIT_FAIL;
done:
    if (fo && fo != stdout) fclose(fo);
    v3_gen_outputs_free(outs, n_out);
    free(reqs);
    if (have_engine) v3_engine_free(&e);
    if (have_model) v3_model_free(&m);
    if (have_ctx) v3_kctx_free(&ctx);
    for (int64_t i = 0; i < n_rows; i++) {
        free(rows[i].ids);
        free(rows[i].text);
        free(rows[i].messages);
        json_decref(rows[i].fields);
    }
    free(rows);
    v3_tok_free(tok);
    return exit_code;
}
