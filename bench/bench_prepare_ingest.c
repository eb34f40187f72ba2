/* bench_prepare_ingest.c — where `data prepare` spends its CPU: reading records (jsonl.h),
 * parsing rows (ingest.h), and the real tokenizer + chat template, each timed on one thread over
 * the same file, in CPU time, so the share of each stage is visible.
 *   usage: bench_prepare_ingest FILE [TOKENIZER_DIR]   (FILE: JSONL/JSON array, plain or zstd) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/ingest.h"
#include "datasets/jsonl.h"
#include "datasets/prepare_chat.h"

/* CPU seconds of this process: on a shared machine wall time measures the neighbours too. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct stage_stats {
    long rows, bad;
    double seconds;
    uint64_t tokens;
} stage_stats;

/* stage 0: read only; 1: read + parse; 2: read + parse + encode */
static int run(const char *path, int stage, const v3_encoder *enc, stage_stats *st) {
    v3_jsonl *r;
    v3_err err = {0};
    if (v3_jsonl_open(&r, path, V3_JSONL_AUTO, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    v3_ingest_opts o;
    v3_ingest_opts_default(&o);
    v3_conv c;
    v3_conv_init(&c);
    v3_sample s = {0};
    memset(st, 0, sizeof *st);
    double t0 = cpu_now();
    for (;;) {
        v3_record rec;
        int got;
        if (v3_jsonl_next(r, &rec, &got, &err) || !got) break;
        st->rows++;
        if (stage < 1) continue;
        if (v3_ingest_row(&o, rec.text, rec.len, &c, &err)) {
            st->bad++;
            continue;
        }
        if (stage < 2) continue;
        s.n = 0;
        if (enc->encode(enc->ctx, &c, &s, &err)) st->bad++;
        st->tokens += s.n;
    }
    st->seconds = cpu_now() - t0;
    v3_sample_free(&s);
    v3_conv_free(&c);
    v3_jsonl_close(r);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_prepare_ingest FILE [TOKENIZER_DIR]\n");
        return 2;
    }
    char def[4096];
    snprintf(def, sizeof def, "%s/../shared/data/deepseek-v3", V3_SOURCE_DIR);
    const char *tok = argc > 2 ? argv[2] : def;
    v3_chat_encoder ce;
    v3_encoder enc;
    v3_err err = {0};
    if (v3_chat_encoder_init(&ce, &enc, tok, "v3", 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const char *names[3] = {"read records", "+ parse rows", "+ template + tokenize"};
    double prev = 0;
    for (int stage = 0; stage < 3; stage++) {
        stage_stats st;
        if (run(argv[1], stage, &enc, &st)) return 1;
        printf("%-24s %8ld rows %6.3f CPU s  %9.0f rows/CPU-s  stage cost %7.2f us/row%s", names[stage], st.rows, st.seconds,
               st.rows / st.seconds, 1e6 * (st.seconds - prev) / (double)st.rows, stage == 2 ? "" : "\n");
        if (stage == 2) printf("  (%llu tokens, %.2f M tokens/s)\n", (unsigned long long)st.tokens, st.tokens / st.seconds / 1e6);
        prev = st.seconds;
    }
    v3_chat_encoder_free(&ce);
    return 0;
}
