/* fuzz_jsonl.c — libFuzzer target for the record reader (jsonl.h) and row parsing (ingest.h).
 * The first input byte picks the options (layout, forced format, think splitting, a small record
 * cap); the rest is the file, plain or zstd. Every record goes through v3_ingest_row, and every
 * accepted conversation is checked for the promises ingest.h makes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/ingest.h"
#include "datasets/jsonl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    v3_jsonl_layout layout = (v3_jsonl_layout)(sel % 3);
    v3_ingest_opts o;
    v3_ingest_opts_default(&o);
    o.format = (v3_format)((sel >> 2) % 6);
    o.split_think = (sel >> 5) & 1;
    size_t max_record = (sel & 0x40) ? 64 : 0;
    v3_jsonl *r;
    v3_err err;
    if (v3_jsonl_open_mem(&r, data + 1, size - 1, "fuzz", layout, max_record, &err)) return 0;
    v3_conv c;
    v3_conv_init(&c);
    int64_t last_line = 0;
    for (int n = 0; n < 100000; n++) {
        v3_record rec;
        int got;
        if (v3_jsonl_next(r, &rec, &got, &err) || !got) break;
        if (rec.line < last_line || rec.line < 1) abort(); /* line numbers never go back */
        last_line = rec.line;
        if (rec.too_long) continue;
        if (rec.text[rec.len] != 0) abort();
        if (v3_ingest_row(&o, rec.text, rec.len, &c, &err) != V3_OK) {
            if (c.n_msgs != 0 || !err.msg[0]) abort(); /* a bad row leaves nothing and says why */
            continue;
        }
        int asst = 0;
        for (int i = 0; i < c.n_msgs; i++) {
            const v3_msg *m = &c.msgs[i];
            asst += m->role == V3_ROLE_ASSISTANT || m->role == V3_ROLE_TEXT;
            if (!m->content && m->n_calls == 0) abort(); /* every message says something */
            for (int k = 0; k < m->n_calls; k++)
                if (!m->calls[k].name || !m->calls[k].arguments || !m->calls[k].type) abort();
        }
        if (c.n_msgs == 0 || asst == 0) abort();
    }
    v3_conv_free(&c);
    v3_jsonl_close(r);
    return 0;
}
