/* test_pack.c — packing invariants on real data (../shared/data through prepare with a stand-in
 * byte encoder): every document exactly once per epoch, boundaries respected (targets, positions,
 * doc starts), efficiency as reported, determinism by (seed, epoch), exact resume, rank split. */
#include <stdlib.h>
#include <string.h>

#include "datasets/pack.h"
#include "datasets/prepare.h"
#include "testutil.h"

/* Stand-in encoder (tests only): role marker 256+role (no loss), content bytes (loss on
 * assistant), end marker 300 (loss) after assistant turns. */
static int push_bytes(v3_sample *s, const char *t, uint8_t m, v3_err *err) {
    for (; t && *t; t++) {
        int32_t id = (unsigned char)*t;
        int rc = v3_sample_push(s, &id, 1, m, err);
        if (rc) return rc;
    }
    return V3_OK;
}

static int byte_encode(void *ctx, const v3_conv *c, v3_sample *out, v3_err *err) {
    (void)ctx;
    for (int i = 0; i < c->n_msgs; i++) {
        const v3_msg *m = &c->msgs[i];
        int32_t marker = 256 + (int32_t)m->role, end = 300;
        uint8_t train = m->role == V3_ROLE_ASSISTANT;
        int rc = v3_sample_push(out, &marker, 1, 0, err);
        for (int k = 0; !rc && k < m->n_calls; k++) rc = push_bytes(out, m->calls[k].arguments, train, err);
        if (!rc) rc = push_bytes(out, m->content, train, err);
        if (!rc && train) rc = v3_sample_push(out, &end, 1, 1, err);
        if (rc) return rc;
    }
    return V3_OK;
}

static int prepare(const char *out, v3_err *err) {
    char p[3][4096];
    const char *inputs[3] = {t_data_path("gsm8k/test.jsonl", p[0], sizeof p[0]),
                             t_data_path("sft_llamafactory_demo/alpaca_en_demo.json", p[1], sizeof p[1]),
                             t_data_path("sft_llamafactory_demo/glaive_toolcall_en_demo.json", p[2], sizeof p[2])};
    v3_encoder e;
    memset(&e, 0, sizeof e);
    e.encode = byte_encode;
    e.vocab_size = 512;
    v3_prepare_opts o;
    v3_prepare_opts_default(&o);
    o.inputs = inputs;
    o.n_inputs = 3;
    o.out_dir = out;
    o.jobs = 2;
    o.shard_bytes = 1 << 20; /* several shards, so documents are looked up across them */
    char s1[] = "prompt=question", s2[] = "completion=answer";
    v3_ingest_map_field(&o.ingest, s1, err);
    v3_ingest_map_field(&o.ingest, s2, err);
    v3_prepare_stats st;
    return v3_prepare_run(&o, &e, &st, err);
}

/* Checks one epoch row by row against the plan and the documents; marks seen docs. */
static void check_epoch(v3_packer *p, const v3_dataset *d, uint32_t *seen, int B) {
    const int T = (int)p->o.seq_len;
    v3_pack_batch b;
    v3_err err = {0};
    CHECK_OK(v3_pack_batch_init(&b, B, T, &err), &err);
    uint64_t steps = v3_packer_steps_per_epoch(p), nonpad = 0, rows = 0, bad_rows = 0;
    uint64_t epoch = p->cur.epoch;
    for (uint64_t k = 0; k + (uint64_t)B <= steps; k += (uint64_t)B) {
        uint64_t first = p->cur.next;
        CHECK_OK(v3_packer_next(p, &b, &err), &err);
        for (int r = 0; r < B; r++, rows++) {
            uint64_t s = p->seq_order[first + (uint64_t)r];
            const int32_t *tok = b.tokens + (size_t)r * T, *tgt = b.targets + (size_t)r * T;
            const int32_t *pos = b.positions + (size_t)r * T, *ds = b.doc_start + (size_t)r * T;
            int t = 0, ok = 1;
            for (uint64_t q = p->seq_start[s]; q < p->seq_start[s + 1]; q++) {
                const uint32_t *dt;
                const uint8_t *dm;
                uint64_t len;
                v3_dataset_doc(d, p->pieces[q].doc, &dt, &dm, &len);
                uint32_t L = p->pieces[q].len;
                ok &= L == (len < (uint64_t)T ? len : (uint64_t)T); /* whole, or truncated to T */
                seen[p->pieces[q].doc]++;
                for (uint32_t i = 0; i < L; i++, t++) {
                    int32_t want_tgt = (i + 1 < L && dm[i + 1]) ? (int32_t)dt[i + 1] : V3_IGNORE_INDEX;
                    ok &= tok[t] == (int32_t)dt[i] && tgt[t] == want_tgt && pos[t] == (int32_t)i &&
                          ds[t] == t - (int32_t)i;
                }
                nonpad += L;
            }
            for (int start = t; t < T; t++) ok &= tok[t] == 1 && tgt[t] == V3_IGNORE_INDEX && ds[t] == start && pos[t] == t - start;
            bad_rows += !ok;
        }
    }
    CHECK(bad_rows == 0, "epoch %llu: %llu of %llu rows break an invariant", (unsigned long long)epoch,
          (unsigned long long)bad_rows, (unsigned long long)rows);
    if (rows == steps) {
        double eff = (double)nonpad / ((double)rows * T);
        CHECK(eff == v3_packer_efficiency(p) || (eff - v3_packer_efficiency(p)) * (eff - v3_packer_efficiency(p)) < 1e-20,
              "efficiency %.6f measured vs %.6f reported", eff, v3_packer_efficiency(p));
    }
    v3_pack_batch_free(&b);
}

int main(void) {
    v3_rng rng;
    v3_rng_seed(&rng, t_seed("test_pack"));
    char dir[1024];
    t_tmpdir(dir, sizeof dir);
    v3_err err = {0};
    CHECK_OK(prepare(dir, &err), &err);
    v3_dataset d;
    CHECK_OK(v3_dataset_open(&d, dir, "train", V3_SHARD_VERIFY, &err), &err);
    CHECK(d.n_docs == 1319 + 999 + 300 && d.n_shards > 1, "docs %llu shards %d", (unsigned long long)d.n_docs, d.n_shards);

    /* T below the longest documents, so truncation and dropping both happen */
    int T = 1024 + (int)v3_rng_below(&rng, 2048);
    uint64_t seed = v3_rng_u64(&rng);
    uint64_t kept_tokens = 0, n_over = 0;
    for (uint64_t i = 0; i < d.n_docs; i++) {
        const uint32_t *t;
        const uint8_t *m;
        uint64_t len;
        v3_dataset_doc(&d, i, &t, &m, &len);
        kept_tokens += len < (uint64_t)T ? len : (uint64_t)T;
        n_over += len > (uint64_t)T;
    }
    CHECK(n_over > 0, "T=%d: no overlong document to exercise the policy", T);
    v3_pack_opts po = {.seq_len = T, .overlong = V3_OVERLONG_TRUNCATE, .seed = seed, .pad_id = 1, .rank = 0, .world = 1};
    v3_packer p;
    CHECK_OK(v3_packer_init(&p, &d, &po, &err), &err);
    /* no token lost or duplicated: the plan holds every document once, truncated to T */
    CHECK(p.tokens_packed == kept_tokens && p.n_pieces == d.n_docs && p.truncated == n_over,
          "plan: %llu tokens (want %llu), %llu pieces, %llu truncated", (unsigned long long)p.tokens_packed,
          (unsigned long long)kept_tokens, (unsigned long long)p.n_pieces, (unsigned long long)p.truncated);
    uint64_t lower = (kept_tokens + (uint64_t)T - 1) / (uint64_t)T;
    CHECK(p.n_seq >= lower && v3_packer_efficiency(&p) > 0.95, "T=%d: %llu sequences (lower bound %llu), efficiency %.4f", T,
          (unsigned long long)p.n_seq, (unsigned long long)lower, v3_packer_efficiency(&p));
    fprintf(stderr, "T=%d: %llu docs -> %llu sequences, efficiency %.4f\n", T, (unsigned long long)d.n_docs,
            (unsigned long long)p.n_seq, v3_packer_efficiency(&p));

    uint32_t *seen = calloc(d.n_docs, sizeof *seen);
    check_epoch(&p, &d, seen, 1);
    uint64_t once = 0;
    for (uint64_t i = 0; i < d.n_docs; i++) once += seen[i] == 1;
    CHECK(once == d.n_docs, "epoch 0: %llu of %llu documents seen exactly once", (unsigned long long)once,
          (unsigned long long)d.n_docs);

    /* the next epoch is re-shuffled: same documents, another order */
    uint64_t *order0 = malloc(p.n_seq * sizeof *order0);
    memcpy(order0, p.seq_order, p.n_seq * sizeof *order0);
    uint64_t n0 = p.n_seq;
    memset(seen, 0, d.n_docs * sizeof *seen);
    int B = 1 + (int)v3_rng_below(&rng, 4);
    v3_pack_batch b1, b2;
    CHECK_OK(v3_pack_batch_init(&b1, B, T, &err), &err);
    CHECK_OK(v3_pack_batch_init(&b2, B, T, &err), &err);
    CHECK_OK(v3_packer_next(&p, &b1, &err), &err); /* rolls into epoch 1 */
    CHECK(p.cur.epoch == 1 && p.cur.next == (uint64_t)B, "rollover: epoch %llu next %llu", (unsigned long long)p.cur.epoch,
          (unsigned long long)p.cur.next);
    CHECK(p.n_seq != n0 || memcmp(order0, p.seq_order, n0 * sizeof *order0) != 0, "epoch 1 has epoch 0's order");
    p.cur.next = 0;
    check_epoch(&p, &d, seen, B);
    once = 0;
    for (uint64_t i = 0; i < d.n_docs; i++) once += seen[i] == 1;
    CHECK(once == d.n_docs || v3_packer_steps_per_epoch(&p) % (uint64_t)B != 0, "epoch 1: %llu documents once",
          (unsigned long long)once);

    /* resume: a fresh packer seeked to a saved cursor yields the same batches, across epochs */
    v3_packer a, c;
    CHECK_OK(v3_packer_init(&a, &d, &po, &err), &err);
    uint64_t skip = v3_packer_steps_per_epoch(&a) / (uint64_t)B - 1; /* the batch after next crosses into epoch 1 */
    for (uint64_t k = 0; k < skip; k++) CHECK_OK(v3_packer_next(&a, &b1, &err), &err);
    v3_pack_cursor saved = a.cur;
    CHECK_OK(v3_packer_init(&c, &d, &po, &err), &err);
    CHECK_OK(v3_packer_seek(&c, &saved, &err), &err);
    int same = 1;
    size_t bytes = (size_t)B * (size_t)T * sizeof(int32_t);
    for (int k = 0; k < 3; k++) {
        CHECK_OK(v3_packer_next(&a, &b1, &err), &err);
        CHECK_OK(v3_packer_next(&c, &b2, &err), &err);
        same &= !memcmp(b1.tokens, b2.tokens, bytes) && !memcmp(b1.targets, b2.targets, bytes) &&
                !memcmp(b1.positions, b2.positions, bytes) && !memcmp(b1.doc_start, b2.doc_start, bytes);
    }
    CHECK(same && a.cur.epoch == 1 && c.cur.epoch == 1, "resumed batches differ (epochs %llu %llu)",
          (unsigned long long)a.cur.epoch, (unsigned long long)c.cur.epoch);
    v3_pack_cursor wrong = saved;
    wrong.seed ^= 1;
    CHECK(v3_packer_seek(&c, &wrong, &err) == V3_EINVAL, "seek with another seed accepted");
    v3_packer_free(&a);
    v3_packer_free(&c);

    /* ranks: disjoint sequences, together the whole (rounded-down) epoch */
    v3_pack_opts r0 = po, r1 = po;
    r0.world = r1.world = 2;
    r1.rank = 1;
    v3_packer q0, q1;
    CHECK_OK(v3_packer_init(&q0, &d, &r0, &err), &err);
    CHECK_OK(v3_packer_init(&q1, &d, &r1, &err), &err);
    CHECK(v3_packer_steps_per_epoch(&q0) == p.n_seq / 2, "rank steps %llu", (unsigned long long)v3_packer_steps_per_epoch(&q0));
    v3_pack_batch one0, one1;
    CHECK_OK(v3_pack_batch_init(&one0, 1, T, &err), &err);
    CHECK_OK(v3_pack_batch_init(&one1, 1, T, &err), &err);
    int differ = 1;
    for (int k = 0; k < 5; k++) {
        CHECK_OK(v3_packer_next(&q0, &one0, &err), &err);
        CHECK_OK(v3_packer_next(&q1, &one1, &err), &err);
        differ &= memcmp(one0.tokens, one1.tokens, (size_t)T * 4) != 0;
    }
    CHECK(differ, "ranks got the same sequence");
    v3_pack_batch_free(&one0);
    v3_pack_batch_free(&one1);
    v3_packer_free(&q0);
    v3_packer_free(&q1);

    /* drop policy: overlong documents vanish, the rest stay once */
    v3_pack_opts pd = po;
    pd.overlong = V3_OVERLONG_DROP;
    v3_packer dp;
    CHECK_OK(v3_packer_init(&dp, &d, &pd, &err), &err);
    CHECK(dp.dropped == n_over && dp.n_pieces == d.n_docs - n_over && dp.truncated == 0, "drop: %llu dropped, %llu pieces",
          (unsigned long long)dp.dropped, (unsigned long long)dp.n_pieces);
    v3_packer_free(&dp);

    /* same seed, same plan; another seed, another order */
    v3_packer e1, e2;
    v3_pack_opts po2 = po;
    po2.seed = seed + 1;
    CHECK_OK(v3_packer_init(&e1, &d, &po, &err), &err);
    CHECK_OK(v3_packer_init(&e2, &d, &po2, &err), &err);
    CHECK(e1.n_seq == n0 && memcmp(e1.seq_order, order0, n0 * sizeof *order0) == 0, "same seed gave another plan");
    CHECK(e2.n_seq != n0 || memcmp(e2.seq_order, order0, n0 * sizeof *order0) != 0, "another seed gave the same order");
    v3_packer_free(&e1);
    v3_packer_free(&e2);

    v3_pack_batch_free(&b1);
    v3_pack_batch_free(&b2);
    free(order0);
    free(seen);
    v3_packer_free(&p);
    v3_dataset_close(&d);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return t_finish("test_pack");
}
