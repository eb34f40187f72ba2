/* test_grpo_run.c — the whole GRPO loop (v3_grpo_run) on a small random model with a byte-level
 * tokenizer that has DeepSeek-V3's special tokens (so the chat template renders; 269 ids keep the
 * test fast), every feature on: G samples per prompt, dynamic sampling, μ = 2 updates over 2
 * mini-batches split into micro-batches, β > 0 with a reference model, truncated completions
 * masked, a stop string, two reward modules (inline Lua), held-out evaluation, checkpoints.
 *
 *   1. the trainer's recompute equals the sampler's logprobs: logprob_gap/max is exactly 0 at
 *      every step, and trainer_logprobs == logprobs for every sample recomputed before an update;
 *   2. exact resume: 4 steps straight vs 2 steps (stopped, checkpointed) + --resume + 2 steps give
 *      byte-identical step-4 weights and optimizer state, and identical samples (ids, logprobs,
 *      trainer/reference logprobs, rewards, advantages) at every step;
 *   3. run.db holds what the issue lists: prompts, samples, rewards per function, step metrics
 *      (reward per function, accuracy, KL, clip fractions, entropy, lengths, time split...);
 *   4. resuming against another reference model is refused, naming grpo.ref_model;
 *   5. bad inputs, each recorded and the run goes on: a reward module that errors on some samples
 *      (error text + fallback score in the rewards table), a prompt longer than the context and a
 *      malformed row (skipped, counted in data/prompts_skipped), a group whose every reward is nil
 *      (NULL scores, advantage 0, counted in frac_no_signal); an empty prompt set fails at the
 *      start with a message naming data.prompts, and the run row records it. */
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/params.h"
#include "trainer/ckpt.h"
#include "trainer/grpo.h"
#include "testutil.h"

/* The chat template's special tokens (datasets/chat.c), ids 256.. after the 256 bytes. */
static const char *const SPECIAL[] = {
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>", "<｜tool▁sep｜>"};
#define N_SPECIAL ((int)(sizeof SPECIAL / sizeof SPECIAL[0]))

/* byte b as GPT-2's byte-level symbol, UTF-8 encoded into s */
static void byte_symbol(int b, char *s) {
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) s[0] = (char)cp, s[1] = 0;
    else s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F)), s[2] = 0;
}

/* tokenizer.json + tokenizer_config.json: one token per byte, no merges, the specials added */
static void write_tokenizer(const char *dir) {
    json_t *vocab = json_object(), *added = json_array();
    for (int b = 0; b < 256; b++) {
        char sym[4];
        byte_symbol(b, sym);
        json_object_set_new(vocab, sym, json_integer(b));
    }
    for (int i = 0; i < N_SPECIAL; i++)
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", 256 + i, "content",
                                               SPECIAL[i], "single_word", 0, "lstrip", 0, "rstrip", 0,
                                               "normalized", 0, "special", i < 2));
    json_t *t = json_pack("{s:s, s:o, s:n, s:{s:s, s:b, s:b, s:b}, s:{s:s, s:b, s:b, s:b}, s:{s:s, s:o, s:[]}}",
                          "version", "1.0", "added_tokens", added, "normalizer", "pre_tokenizer", "type", "ByteLevel",
                          "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0, "decoder", "type", "ByteLevel",
                          "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1, "model", "type", "BPE", "vocab",
                          vocab, "merges");
    char p[1200];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    json_dump_file(t, p, 0);
    json_decref(t);
    json_t *c = json_pack("{s:b, s:b, s:s, s:s}", "add_bos_token", 1, "add_eos_token", 0, "bos_token", SPECIAL[0],
                          "eos_token", SPECIAL[1]);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    json_dump_file(c, p, 0);
    json_decref(c);
}

/* A small random model over that tokenizer's 269 ids in dir. */
static int make_model(const char *dir, uint64_t seed, v3_err *err) {
    v3_config c;
    int rc = v3_config_preset(&c, "tiny", err);
    if (rc) return rc;
    c.n_layer = 2;
    c.num_nextn_predict_layers = 0;
    c.vocab_size = 256 + N_SPECIAL;
    c.bos_token_id = 256;
    c.eos_token_id = 257;
    v3_param_table t;
    if ((rc = v3_params_build(&t, &c, 0, err))) return rc;
    float *w = malloc((size_t)t.total * sizeof *w);
    v3_rng r;
    v3_rng_seed(&r, seed);
    for (int i = 0; i < t.n; i++) {
        const v3_param_info *p = &t.p[i];
        for (int64_t k = 0; k < p->numel; k++)
            w[p->offset + k] = p->kind == V3_PK_NORM ? 1.0f : p->kind == V3_PK_BIAS ? 0.0f : 0.05f * v3_rng_normal(&r);
    }
    char p[1200];
    rc = v3_mkdirs(dir, err);
    if (!rc) rc = v3_checkpoint_save(dir, &t, w, V3_F32, 0, err);
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (!rc) rc = v3_config_save(&c, p, err);
    if (!rc) write_tokenizer(dir);
    free(w);
    v3_params_free(&t);
    return rc;
}

static void write_prompts(const char *path, int n, uint64_t seed) {
    FILE *f = fopen(path, "w");
    v3_rng r;
    v3_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        int d[4], best = -1;
        for (int k = 0; k < 4; k++) {
            d[k] = (int)v3_rng_below(&r, 10);
            if (d[k] > best) best = d[k];
        }
        fprintf(f, "{\"prompt\": \"Largest digit: %d %d %d %d\", \"answer\": \"%d\"}\n", d[0], d[1], d[2], d[3], best);
    }
    fclose(f);
}

static const v3_grpo_reward rewards[] = {
    {.name = "accuracy",
     .source = "return function(s)\n"
               "  local got = (s.completion or ''):match('^%s*(.-)%s*$')\n"
               "  return { score = got == tostring(s.answer) and 1.0 or 0.0, got = got }\n"
               "end\n"},
    {.name = "short", .source = "return function(s) return -#(s.completion or '') / 8 end\n", .weight = 0.5,
     .has_weight = 1},
};

/* stop strings that end about one random completion in two (one byte is one token here) */
static const char *const STOPS[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f",
                                    "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t"};

static void options(v3_grpo_opts *o, const char *model, const char *run, const char *const *prompts,
                    const char *const *eval) {
    v3_grpo_opts_default(o);
    o->model_dir = model;
    o->run_dir = run;
    o->device = "cpu";
    o->threads = 2;
    o->seed = 11;
    o->prompts = prompts;
    o->n_prompts = 1;
    o->eval = eval;
    o->n_eval = 1;
    o->seq_len = 40;
    o->stop = STOPS;
    o->n_stop = (int)(sizeof STOPS / sizeof STOPS[0]);
    o->group_size = 3;
    o->prompts_per_step = 2;
    o->max_new_tokens = 5;
    o->sampling.temperature = 0.9f;
    o->dynamic_sampling = 1;
    o->dynamic_max_rounds = 1;
    o->steps = 4;
    o->mu = 2;
    o->mini_batches = 2;
    o->micro_batch_tokens = 72; /* a mini-batch of 3 samples of ~35 tokens needs 2 micro-batches */
    o->loss.beta = 0.05;
    o->mask_truncated = 1;
    o->check_all_logprobs = 1;
    o->sched = (v3_schedule){.kind = V3_SCHED_COSINE, .lr = 5e-3, .min_lr = 1e-3, .warmup = 2};
    o->router_gamma = 1e-3f;
    o->rewards = rewards;
    o->n_rewards = 2;
    o->reward_workers = 1;
    o->eval_every = 2;
    o->eval_prompts = 3;
    o->ckpt_every = 0;
    o->ckpt_keep = 0;
    o->log = stderr;
}

static int same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    v3_err err;
    int ok = !v3_read_file(a, &x, &nx, (size_t)1 << 30, &err) && !v3_read_file(b, &y, &ny, (size_t)1 << 30, &err) &&
             nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return ok;
}

/* The samples of steps 1..4 as one text digest per row (blobs hex) */
static char **sample_rows(const char *db_path, int *n) {
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    char **rows = calloc(4096, sizeof *rows);
    *n = 0;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT s.step, s.group_id, s.group_index, hex(s.token_ids), hex(s.logprobs), "
                           "hex(s.trainer_logprobs), hex(s.ref_logprobs), s.reward, s.advantage, s.completion, "
                           "(SELECT group_concat(name || '=' || coalesce(score, 'NULL'), ',') FROM rewards r "
                           " WHERE r.sample_id = s.id) FROM samples s WHERE s.step <= 4 ORDER BY s.step, s.id",
                           -1, &q, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", db_path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return rows;
    }
    while (sqlite3_step(q) == SQLITE_ROW && *n < 4096) {
        size_t len = 0;
        for (int c = 0; c < 11; c++) len += (size_t)sqlite3_column_bytes(q, c) + 2;
        char *s = malloc(len + 64), *w = s;
        for (int c = 0; c < 11; c++) {
            const unsigned char *t = sqlite3_column_text(q, c);
            w += sprintf(w, "%s|", t ? (const char *)t : "NULL");
        }
        rows[(*n)++] = s;
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return rows;
}

static double query_d(const char *db_path, const char *sql) {
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    double v = NAN;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW &&
        sqlite3_column_type(q, 0) != SQLITE_NULL)
        v = sqlite3_column_double(q, 0);
    else fprintf(stderr, "query failed: %s: %s\n", sql, db ? sqlite3_errmsg(db) : "?");
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* Bad inputs: each is recorded and the run goes on (the empty set fails at the start). */
static void bad_inputs(const char *tmp, const char *model) {
    char pr[1200], run[1200], db[1300], empty[1200];
    snprintf(pr, sizeof pr, "%s/bad.jsonl", tmp);
    snprintf(run, sizeof run, "%s/bad", tmp);
    snprintf(db, sizeof db, "%s/run.db", run);
    snprintf(empty, sizeof empty, "%s/empty.jsonl", tmp);
    write_prompts(pr, 12, 3);
    FILE *f = fopen(pr, "a");
    fputs("{\"prompt\": \"", f);
    for (int i = 0; i < 60; i++) fputs("long ", f); /* 300 tokens: past data.seq_len */
    fputs("\", \"answer\": \"1\"}\n{not json\n{\"no_prompt\": 1}\n", f);
    fclose(f);
    /* every sample of a prompt whose answer is 9 gets nil from both functions: no scored sample */
    static const v3_grpo_reward bad_rewards[] = {
        {.name = "flaky",
         .source = "return function(s)\n"
                   "  if s.answer == '9' then return nil end\n"
                   "  if s.index == 1 then error('boom on sample ' .. s.index) end\n"
                   "  return #(s.completion or '') % 2\n"
                   "end\n"},
        {.name = "maybe", .source = "return function(s) if s.answer == '9' then return nil end return 0.5 end\n"},
    };
    v3_grpo_opts o;
    const char *prompts[] = {pr};
    options(&o, model, run, prompts, NULL);
    o.n_eval = 0;
    o.eval_every = 0;
    o.rewards = bad_rewards;
    o.dynamic_sampling = 0;
    o.prompts_per_step = 6;
    o.steps = 2;
    o.loss.beta = 0;
    v3_err err;
    CHECK_OK(v3_grpo_run(&o, &err), &err);
    CHECK(query_d(db, "SELECT count(*) FROM runs WHERE status = 'completed'") == 1, "bad inputs: run not completed");
    CHECK(query_d(db, "SELECT max(value) FROM metrics WHERE name = 'data/prompts_skipped'") == 3,
          "skipped rows (long prompt, bad JSON, no prompt) not counted 3");
    CHECK(query_d(db, "SELECT count(*) FROM rewards WHERE name = 'flaky' AND error LIKE '%boom on sample 1%' "
                      "AND score = 0") > 0, "reward errors not recorded with the fallback score");
    CHECK(query_d(db, "SELECT sum(value) FROM metrics WHERE name = 'reward_errors'") > 0, "reward_errors metric");
    double nil_groups = query_d(db, "SELECT count(*) FROM samples s JOIN prompts p ON p.id = s.prompt_id "
                                    "WHERE json_extract(p.fields, '$.answer') = '9'");
    CHECK(nil_groups > 0, "no prompt with answer 9 was drawn (fix the data)");
    CHECK(query_d(db, "SELECT count(*) FROM samples s JOIN prompts p ON p.id = s.prompt_id WHERE "
                      "json_extract(p.fields, '$.answer') = '9' AND (s.reward IS NOT NULL OR s.advantage != 0)") == 0,
          "all-nil samples: reward must be NULL and advantage 0");
    CHECK(query_d(db, "SELECT count(*) FROM rewards r JOIN samples s ON s.id = r.sample_id JOIN prompts p ON "
                      "p.id = s.prompt_id WHERE json_extract(p.fields, '$.answer') = '9' AND r.score IS NOT NULL") == 0,
          "nil scores stored as NULL");
    CHECK(query_d(db, "SELECT max(value) FROM metrics WHERE name = 'frac_no_signal'") > 0, "frac_no_signal");

    /* an empty prompt set: a clear error, recorded as the run's failure */
    f = fopen(empty, "w");
    fputs("{\"prompt\": 3}\n\n", f);
    fclose(f);
    const char *ep[] = {empty};
    snprintf(run, sizeof run, "%s/empty", tmp);
    snprintf(db, sizeof db, "%s/run.db", run);
    options(&o, model, run, ep, NULL);
    o.n_eval = 0;
    int rc = v3_grpo_run(&o, &err);
    CHECK(rc != 0 && strstr(err.msg, "data.prompts: no usable prompt"), "empty set: rc %d (%s)", rc, err.msg);
    CHECK(query_d(db, "SELECT count(*) FROM runs WHERE status = 'failed' AND message LIKE '%no usable prompt%'") == 1,
          "the failure is not recorded in run.db");
}

int main(void) {
    char tmp[1024], model[1200], other[1200], pr[1200], ev[1200], runA[1200], runB[1200], p[1400], q[1400];
    t_tmpdir(tmp, sizeof tmp);
    snprintf(model, sizeof model, "%s/model", tmp);
    snprintf(other, sizeof other, "%s/other", tmp);
    snprintf(pr, sizeof pr, "%s/prompts.jsonl", tmp);
    snprintf(ev, sizeof ev, "%s/eval.jsonl", tmp);
    snprintf(runA, sizeof runA, "%s/a", tmp);
    snprintf(runB, sizeof runB, "%s/b", tmp);
    v3_err err;
    CHECK_OK(make_model(model, 5, &err), &err);
    CHECK_OK(make_model(other, 6, &err), &err);
    write_prompts(pr, 16, 1);
    write_prompts(ev, 3, 2);
    const char *prompts[] = {pr}, *eval[] = {ev};
    v3_grpo_opts o;

    /* A: 4 steps straight */
    options(&o, model, runA, prompts, eval);
    CHECK_OK(v3_grpo_run(&o, &err), &err);
    /* B: 2 steps, stop (checkpointed), resume, 2 more */
    options(&o, model, runB, prompts, eval);
    o.stop_after = 2;
    CHECK_OK(v3_grpo_run(&o, &err), &err);
    snprintf(p, sizeof p, "%s/step-2/grpo_state.json", runB);
    CHECK(v3_file_exists(p), "no step-2 checkpoint after stop_after");
    o.stop_after = 0;
    o.resume = 1;
    CHECK_OK(v3_grpo_run(&o, &err), &err);

    static const char *const files[] = {"model.safetensors", "optim.bin", "trainer_state.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/step-4/%s", runA, files[i]);
        snprintf(q, sizeof q, "%s/step-4/%s", runB, files[i]);
        CHECK(same_file(p, q), "step-4/%s differs between the straight and the resumed run", files[i]);
    }
    snprintf(p, sizeof p, "%s/run.db", runA);
    snprintf(q, sizeof q, "%s/run.db", runB);
    int na = 0, nb = 0;
    char **ra = sample_rows(p, &na), **rb = sample_rows(q, &nb);
    CHECK(na > 0 && na == nb, "samples: %d straight, %d resumed", na, nb);
    int diff = 0;
    for (int i = 0; i < na && i < nb; i++) diff += strcmp(ra[i], rb[i]) != 0;
    CHECK(diff == 0, "%d of %d samples differ between the straight and the resumed run", diff, na);
    printf("  resume: %d samples identical, step-4 weights and optimizer state byte-identical\n", na - diff);
    for (int i = 0; i < na; i++) free(ra[i]);
    for (int i = 0; i < nb; i++) free(rb[i]);
    free(ra), free(rb);

    /* the logprob invariant and what run.db holds */
    double gap = query_d(p, "SELECT max(value) FROM metrics WHERE name = 'logprob_gap/max'");
    double ngap = query_d(p, "SELECT count(*) FROM metrics WHERE name = 'logprob_gap/max'");
    CHECK(gap == 0 && ngap == 4, "logprob gap %g over %g steps (want exactly 0 at 4)", gap, ngap);
    double same = query_d(p, "SELECT count(*) FROM samples WHERE trainer_logprobs IS NOT NULL AND trainer_logprobs = logprobs");
    double trained = query_d(p, "SELECT count(*) FROM samples WHERE trainer_logprobs IS NOT NULL");
    CHECK(trained > 0 && same == trained, "trainer logprobs equal the sampler's for %g of %g samples", same, trained);
    CHECK(query_d(p, "SELECT count(*) FROM samples WHERE ref_logprobs IS NULL AND trainer_logprobs IS NOT NULL") == 0,
          "trained samples without reference logprobs");
    CHECK(query_d(p, "SELECT count(*) FROM rewards WHERE name = 'accuracy' AND extra LIKE '%got%'") > 0, "reward extras");
    CHECK(query_d(p, "SELECT count(DISTINCT script_hash) FROM rewards") == 2, "script hashes");
    static const char *const names[] = {"reward", "rewards/accuracy/mean", "rewards/short/std", "accuracy", "kl",
                                        "clip_ratio/low_mean", "clip_ratio/high_mean", "entropy",
                                        "completions/mean_length", "completions/max_length",
                                        "completions/clipped_ratio", "frac_reward_zero_std", "time/rollout_s",
                                        "time/reward_s", "time/train_s", "tokens_per_s"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM metrics WHERE name = '%s'", names[i]);
        CHECK(query_d(p, sql) == 4, "metric %s not logged at every step", names[i]);
    }
    CHECK(query_d(p, "SELECT count(*) FROM evals WHERE name = 'eval/accuracy'") == 3, "evals at steps 0, 2, 4");
    CHECK(query_d(p, "SELECT min(value) FROM metrics WHERE name = 'kl'") >= 0, "kl");
    CHECK(query_d(p, "SELECT max(value) FROM metrics WHERE name = 'clip_ratio/region_mean'") > 0 ||
          query_d(p, "SELECT max(value) FROM metrics WHERE name = 'ratio/max'") > 1, "the second update saw no ratio off 1");
    CHECK(query_d(q, "SELECT count(*) FROM runs WHERE status = 'interrupted'") == 1 &&
          query_d(q, "SELECT count(*) FROM runs WHERE status = 'completed' AND resumed_from IS NOT NULL") == 1,
          "run rows of the stopped and the resumed run");

    /* another reference is refused on resume */
    options(&o, model, runB, prompts, eval);
    o.resume = 1;
    o.steps = 5;
    o.ref_dir = other;
    int rc = v3_grpo_run(&o, &err);
    CHECK(rc != 0 && strstr(err.msg, "grpo.ref_model"), "resume with another reference: rc %d (%s)", rc, err.msg);

    bad_inputs(tmp, model);
    v3_rmtree(tmp, &err);
    return t_finish("test_grpo_run");
}
