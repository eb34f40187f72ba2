/* bench_generate.c — generation throughput of the rollout engine (rollout/engine.h) on a model
 * directory, for bench/run_generate.sh (side by side with bench/generate_hf.py, HF transformers'
 * generate on the same checkpoint and the same prompts).
 *
 *   bench_generate --model DIR [--prompts P] [--n N] [--prompt-len L] [--max-new M]
 *                  [--temperature T] [--mtp] [--threads K] [--seed S] [--prompts-out FILE]
 *                  [--gsm8k FILE --tokenizer DIR [--skip R] [--stop-eos]] [--sequential] [--repeat R]
 *                  [--ids-out FILE] [--mtp-draft-vocab V] [--no-pack-weights] [--no-pack-bf16]
 *
 * Prompts: P random token ids sequences of length L (seed S), written to --prompts-out as JSON
 * ({"prompts": [[ids], ...]}) so the reference side runs the same ones; or, with --gsm8k, the
 * first P questions of a GSM8K JSONL (after --skip rows) rendered with the DeepSeek-V3 chat
 * template and its generation prompt. Every prompt asks for N samples of at most M new tokens
 * (no stop id unless --stop-eos), at temperature T (0 = greedy) with no other filter.
 *
 * All P requests go to ONE v3_engine_generate call (or one call per prompt with --sequential,
 * batch 1 latency), after an untimed warm-up call (one 8-token prompt, 2 new tokens); with
 * --repeat R the timed run is done R times and the fastest is reported (median_wall_s beside it;
 * repeats_same says every repeat generated the same ids, as it must: greedy, or seeded sampling).
 * --ids-out writes the first run's generated ids, one JSON array per sample. --mtp-draft-vocab
 * sets the engine's mtp_draft_vocab (drafts among token ids < V; 0 = all); --no-pack-weights turns
 * off the engine's packed weight copies (pack_weights), --no-pack-bf16 their bf16 form
 * (pack_bf16). The copies are made in the warm-up call (pack_s: a load-time cost, reported
 * beside load_s; the timed calls find them fresh). The model
 * step budget is sized so the whole prefill fits in the first step: then every sample's first
 * token comes at the end of step 1, and the decode phase is the rest, as in HF's generate.
 * Prints one JSON line:
 *   generated (tokens), wall_s (the generate call), tok_s = generated / wall_s (end to end),
 *   cpu_s (user + system CPU time of the process over the calls: less sensitive than wall time
 *   to other jobs on a shared machine), ttft_s (time to the last sample's first token: prefill), decode_tok_s = (generated − samples)
 *   / (wall_s − ttft_s), engine stats (steps, MTP drafted/accepted, time in the model, the MTP
 *   module and the sampler), peak RSS, and ids_fnv (a hash of every generated id, to check that
 *   two runs, e.g. with and without MTP, produced the same tokens). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/rng.h"
#include "datasets/chat.h"
#include "datasets/tokenizer.h"
#include "model/checkpoint.h"
#include "rollout/engine.h"

typedef struct bopts {
    const char *model, *prompts_out, *gsm8k, *tok_dir, *ids_out;
    int prompts, n, threads, mtp, sequential, stop_eos, repeat, no_pack_weights, no_pack_bf16;
    int64_t prompt_len, max_new, skip, draft_vocab;
    double temperature;
    uint64_t seed;
} bopts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void) { /* user + system CPU time of the process, all threads */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static void usage(void) {
    fputs("usage: bench_generate --model DIR [--prompts P] [--n N] [--prompt-len L] [--max-new M]\n"
          "         [--temperature T] [--mtp] [--threads K] [--seed S] [--prompts-out FILE]\n"
          "         [--gsm8k FILE --tokenizer DIR [--skip R] [--stop-eos]] [--sequential] [--repeat R]\n"
          "         [--ids-out FILE] [--mtp-draft-vocab V] [--no-pack-weights] [--no-pack-bf16]\n",
          stderr);
}

/* GSM8K questions rows [skip, skip + P) as V3 chat prompts. */
typedef struct rep {
    int64_t generated;
    double wall, ttft, cpu;
    uint64_t hash;
    v3_engine_stats stats;
} rep;

/* One timed run: all requests in one generate call, or one call per request (--sequential). */
static int one_run(v3_engine *e, const bopts *o, const v3_gen_request *rq, rep *r, FILE *ids_out, v3_err *err) {
    memset(r, 0, sizeof *r);
    r->hash = 1469598103934665603ull;
    double cpu0 = cpu_s();
    int calls = o->sequential ? o->prompts : 1;
    for (int ci = 0; ci < calls; ci++) {
        v3_gen_output *out = NULL;
        int64_t n_out = 0;
        double t0 = now_s();
        int rc = v3_engine_generate(e, o->sequential ? rq + ci : rq, o->sequential ? 1 : o->prompts, &out,
                                    &n_out, err);
        if (rc) return rc;
        double first = 0;
        r->wall += now_s() - t0;
        for (int64_t i = 0; i < n_out; i++) {
            r->generated += out[i].n;
            if (out[i].t_first_token > first) first = out[i].t_first_token;
            for (int64_t t = 0; t < out[i].n; t++)
                r->hash = (r->hash ^ (uint64_t)(uint32_t)out[i].ids[t]) * 1099511628211ull;
            if (ids_out) {
                fputc('[', ids_out);
                for (int64_t t = 0; t < out[i].n; t++) fprintf(ids_out, t ? ",%d" : "%d", out[i].ids[t]);
                fputs("]\n", ids_out);
            }
        }
        r->ttft += first;
        v3_gen_outputs_free(out, n_out);
    }
    r->cpu = cpu_s() - cpu0;
    r->stats = e->stats;
    return V3_OK;
}

static int gsm8k_prompts(const bopts *o, const v3_tokenizer *tok, int32_t **ids, int64_t *lens, v3_err *err) {
    FILE *f = fopen(o->gsm8k, "r");
    if (!f) return v3_errf(err, V3_EIO, "%s: cannot open", o->gsm8k);
    char *line = NULL;
    size_t cap = 0;
    int64_t row = 0;
    int got = 0, rc = V3_OK;
    v3_chat_out co;
    memset(&co, 0, sizeof co);
    v3_chat_opts copt = {V3_CHAT_V3, 1, 0, 0};
    while (got < o->prompts && getline(&line, &cap, f) > 0) {
        if (row++ < o->skip) continue;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        const char *q = j ? json_string_value(json_object_get(j, "question")) : NULL;
        if (!q) {
            json_decref(j);
            rc = v3_errf(err, V3_EINVAL, "%s: row %lld has no question", o->gsm8k, (long long)row);
            break;
        }
        json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", q);
        rc = v3_chat_render(tok, msgs, &copt, &co, err);
        json_decref(msgs);
        json_decref(j);
        if (rc) break;
        ids[got] = malloc(co.ids.n * sizeof(int32_t));
        if (!ids[got]) {
            rc = v3_errf(err, V3_ENOMEM, "out of memory");
            break;
        }
        memcpy(ids[got], co.ids.ids, co.ids.n * sizeof(int32_t));
        lens[got++] = (int64_t)co.ids.n;
    }
    free(line);
    v3_chat_out_free(&co);
    fclose(f);
    if (!rc && got < o->prompts)
        rc = v3_errf(err, V3_EINVAL, "%s: only %d questions after row %lld", o->gsm8k, got, (long long)o->skip);
    return rc;
}

static int write_prompts(const char *path, int32_t **ids, const int64_t *lens, int n, v3_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) return v3_errf(err, V3_EIO, "%s: cannot write", path);
    fputs("{\"prompts\": [", f);
    for (int i = 0; i < n; i++) {
        fputs(i ? ",\n[" : "\n[", f);
        for (int64_t t = 0; t < lens[i]; t++) fprintf(f, t ? ",%d" : "%d", ids[i][t]);
        fputc(']', f);
    }
    fputs("]}\n", f);
    return fclose(f) ? v3_errf(err, V3_EIO, "%s: write failed", path) : V3_OK;
}

int main(int argc, char **argv) {
    bopts o = {0};
    o.draft_vocab = v3_engine_default_options().mtp_draft_vocab;
    o.prompts = 1, o.n = 1, o.threads = 2, o.prompt_len = 64, o.max_new = 32, o.temperature = 1.0, o.seed = 1, o.repeat = 1;
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},       {"prompts", required_argument, 0, 'P'},
        {"n", required_argument, 0, 'n'},           {"prompt-len", required_argument, 0, 'L'},
        {"max-new", required_argument, 0, 'M'},     {"temperature", required_argument, 0, 'T'},
        {"mtp", no_argument, 0, 'x'},               {"threads", required_argument, 0, 't'},
        {"seed", required_argument, 0, 's'},        {"prompts-out", required_argument, 0, 'o'},
        {"gsm8k", required_argument, 0, 'g'},       {"tokenizer", required_argument, 0, 'k'},
        {"skip", required_argument, 0, 'S'},        {"stop-eos", no_argument, 0, 'e'},
        {"sequential", no_argument, 0, 'q'},        {"repeat", required_argument, 0, 'R'},      {"ids-out", required_argument, 0, 'I'},
        {"mtp-draft-vocab", required_argument, 0, 'D'}, {"no-pack-weights", no_argument, 0, 'H'},
        {"no-pack-bf16", no_argument, 0, 'B'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o.model = optarg; break;
        case 'P': o.prompts = atoi(optarg); break;
        case 'n': o.n = atoi(optarg); break;
        case 'L': o.prompt_len = atoll(optarg); break;
        case 'M': o.max_new = atoll(optarg); break;
        case 'T': o.temperature = atof(optarg); break;
        case 'x': o.mtp = 1; break;
        case 'D': o.draft_vocab = atoll(optarg); break;
        case 'H': o.no_pack_weights = 1; break;
        case 'B': o.no_pack_bf16 = 1; break;
        case 't': o.threads = atoi(optarg); break;
        case 's': o.seed = strtoull(optarg, NULL, 0); break;
        case 'o': o.prompts_out = optarg; break;
        case 'g': o.gsm8k = optarg; break;
        case 'k': o.tok_dir = optarg; break;
        case 'S': o.skip = atoll(optarg); break;
        case 'e': o.stop_eos = 1; break;
        case 'q': o.sequential = 1; break;
        case 'R': o.repeat = atoi(optarg); break;
        case 'I': o.ids_out = optarg; break;
        default: usage(); return 2;
        }
    }
    if (!o.model || o.prompts < 1 || o.n < 1 || o.prompt_len < 1 || o.max_new < 1 || o.threads < 1 ||
        o.repeat < 1 || o.repeat > 64 ||
        (o.gsm8k && !o.tok_dir) || (o.stop_eos && !o.tok_dir)) {
        usage();
        return 2;
    }

    v3_err err;
    v3_config cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", o.model);
    if (v3_config_load(&cfg, path, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    v3_tokenizer *tok = NULL;
    if (o.tok_dir && v3_tok_load(&tok, o.tok_dir, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    int32_t **ids = calloc((size_t)o.prompts, sizeof *ids);
    int64_t *lens = calloc((size_t)o.prompts, sizeof *lens);
    if (!ids || !lens) return 1;
    if (o.gsm8k) {
        if (gsm8k_prompts(&o, tok, ids, lens, &err)) {
            fprintf(stderr, "bench_generate: %s\n", err.msg);
            return 1;
        }
    } else {
        v3_rng r;
        v3_rng_seed(&r, o.seed);
        for (int i = 0; i < o.prompts; i++) {
            ids[i] = malloc((size_t)o.prompt_len * sizeof(int32_t));
            if (!ids[i]) return 1;
            lens[i] = o.prompt_len;
            for (int64_t t = 0; t < o.prompt_len; t++) ids[i][t] = (int32_t)v3_rng_below(&r, (uint64_t)cfg.vocab_size);
        }
    }
    if (o.prompts_out && write_prompts(o.prompts_out, ids, lens, o.prompts, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    int64_t total_prompt = 0, samples = (int64_t)o.prompts * o.n;
    for (int i = 0; i < o.prompts; i++) total_prompt += lens[i];

    v3_kctx ctx;
    if (v3_kctx_init(&ctx, v3_backend_cpu(), o.threads, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    /* the whole prefill in one step, and room for every sample's decode (+ MTP draft) rows */
    int64_t max_tokens = (o.sequential ? total_prompt / o.prompts + 64 : total_prompt) + 2 * samples;
    if (max_tokens < 256) max_tokens = 256;
    v3_model_options mo = v3_model_default_options();
    mo.absorb = 1;
    mo.mtp = o.mtp;
    mo.training = 0;
    v3_model m;
    double t_load = now_s();
    if (v3_model_init(&m, &cfg, &ctx, max_tokens, &mo, &err) || v3_model_load(&m, o.model, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    t_load = now_s() - t_load;

    v3_engine_options eo = v3_engine_default_options();
    eo.mtp = o.mtp;
    eo.mtp_draft_vocab = o.draft_vocab;
    eo.pack_weights = !o.no_pack_weights;
    eo.pack_bf16 = !o.no_pack_bf16;
    eo.max_seqs = samples > 256 ? samples : 256;
    int64_t live = samples * (lens[0] + o.max_new + 2) + 1024;
    for (int i = 1; i < o.prompts; i++)
        if (samples * (lens[i] + o.max_new + 2) + 1024 > live) live = samples * (lens[i] + o.max_new + 2) + 1024;
    if (live > eo.max_live_tokens) eo.max_live_tokens = live;
    v3_engine e;
    if (v3_engine_init(&e, &m, &eo, &err)) {
        fprintf(stderr, "bench_generate: %s\n", err.msg);
        return 1;
    }
    int32_t eos = tok ? v3_tok_eos_id(tok) : -1;
    v3_gen_request *rq = calloc((size_t)o.prompts, sizeof *rq);
    if (!rq) return 1;
    for (int i = 0; i < o.prompts; i++) {
        rq[i].prompt = ids[i];
        rq[i].prompt_len = lens[i];
        rq[i].n = o.n;
        rq[i].sampling = v3_sampling_default();
        rq[i].sampling.temperature = (float)o.temperature;
        rq[i].max_new_tokens = o.max_new;
        rq[i].seed = o.seed + 1000;
        if (o.stop_eos && eos >= 0) rq[i].stop_ids = &eos, rq[i].n_stop_ids = 1;
    }

    double t_pack = 0;
    /* warm-up: one short request (first touches of weights and buffers) */
    {
        v3_gen_request w = rq[0];
        w.prompt_len = lens[0] < 8 ? lens[0] : 8;
        w.n = 1;
        w.max_new_tokens = 2;
        v3_gen_output *wo = NULL;
        int64_t nw = 0;
        if (v3_engine_generate(&e, &w, 1, &wo, &nw, &err)) {
            fprintf(stderr, "bench_generate: warm-up: %s\n", err.msg);
            return 1;
        }
        v3_gen_outputs_free(wo, nw);
        t_pack = e.stats.t_pack;
        memset(&e.stats, 0, sizeof e.stats);
    }

    /* --repeat R timed runs of the same requests; the fastest is reported (the machine is shared:
     * the best of R is the least disturbed), with the median wall time beside it */
    rep best = {0};
    double walls[64];
    int reps_same = 1;
    for (int ri = 0; ri < o.repeat; ri++) {
        rep r;
        memset(&e.stats, 0, sizeof e.stats);
        FILE *io = NULL;
        if (ri == 0 && o.ids_out && !(io = fopen(o.ids_out, "w"))) {
            fprintf(stderr, "bench_generate: %s: cannot write\n", o.ids_out);
            return 1;
        }
        int rc = one_run(&e, &o, rq, &r, io, &err);
        if (io) fclose(io);
        if (rc) {
            fprintf(stderr, "bench_generate: %s\n", err.msg);
            return 1;
        }
        walls[ri] = r.wall;
        if (ri > 0) reps_same &= r.hash == best.hash && r.generated == best.generated;
        if (ri == 0 || r.wall < best.wall) best = r;
    }
    for (int i = 1; i < o.repeat; i++) /* insertion sort for the median */
        for (int j = i; j > 0 && walls[j] < walls[j - 1]; j--) {
            double t = walls[j];
            walls[j] = walls[j - 1], walls[j - 1] = t;
        }
    double median = o.repeat % 2 ? walls[o.repeat / 2] : 0.5 * (walls[o.repeat / 2 - 1] + walls[o.repeat / 2]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const v3_engine_stats *s = &best.stats;
    printf("{\"impl\": \"v3tune\", \"prompts\": %d, \"n\": %d, \"prompt_len\": %lld, \"prompt_tokens\": %lld, "
           "\"max_new\": %lld, \"temperature\": %g, \"mtp\": %d, \"mtp_draft_vocab\": %lld, \"pack_weights\": %d, \"pack_bf16\": %d, "
           "\"packed_copies\": %lld, \"packed_bf16\": %lld, \"packed_mib\": %.1f, \"pack_s\": %.3f, \"sequential\": %d, \"threads\": %d, "
           "\"repeat\": %d, \"generated\": %lld, \"wall_s\": %.3f, \"median_wall_s\": %.3f, \"tok_s\": %.2f, "
           "\"cpu_s\": %.2f, \"ttft_s\": %.3f, \"decode_tok_s\": %.2f, "
           "\"steps\": %lld, \"mtp_drafted\": %lld, \"mtp_accepted\": %lld, \"acceptance\": %.4f, "
           "\"t_model_s\": %.3f, \"t_mtp_s\": %.3f, \"t_sample_s\": %.3f, \"t_pack_s\": %.3f, \"load_s\": %.2f, "
           "\"peak_rss_mib\": %.1f, \"ids_fnv\": \"%016llx\", \"repeats_same\": %s}\n",
           o.prompts, o.n, (long long)(o.gsm8k ? 0 : o.prompt_len), (long long)total_prompt, (long long)o.max_new,
           o.temperature, o.mtp, (long long)o.draft_vocab, !o.no_pack_weights, !o.no_pack_bf16,
           (long long)e.wp.n, (long long)e.wp.n_bf16, e.wp.bytes_read / 1048576.0, t_pack, o.sequential, o.threads, o.repeat, (long long)best.generated, best.wall, median,
           (double)best.generated / best.wall, best.cpu, best.ttft,
           best.wall > best.ttft ? (double)(best.generated - samples) / (best.wall - best.ttft) : 0.0,
           (long long)s->steps, (long long)s->mtp_drafted, (long long)s->mtp_accepted,
           s->mtp_drafted ? (double)s->mtp_accepted / (double)s->mtp_drafted : 0.0, s->t_model, s->t_mtp,
           s->t_sample, s->t_pack, t_load, (double)ru.ru_maxrss / 1024.0, (unsigned long long)best.hash,
           reps_same ? "true" : "false");
    v3_engine_free(&e);
    v3_model_free(&m);
    v3_kctx_free(&ctx);
    for (int i = 0; i < o.prompts; i++) free(ids[i]);
    free(ids), free(lens), free(rq);
    if (tok) v3_tok_free(tok);
    return 0;
}
