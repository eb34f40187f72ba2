/* test_tokenizer.c — the DeepSeek-V3 tokenizer on hand-made edge cases (full ids from HF, see
 * tests/golden/gen_tokenizer.py), invalid UTF-8 handling, BOS/EOS and added-token flags,
 * decoding with and without special tokens, the streaming decoder, and load errors. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/tokenizer.h"
#include "datasets/utf8.h"
#include "testutil.h"

static void check_edge_corpus(const v3_tokenizer *tok) {
    char path[4096];
    t_source_path("tests/golden/data/tok_edge.jsonl", path, sizeof path);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int rows = 0, equal = 0;
    v3_err err = {0};
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, JSON_ALLOW_NUL, &je);
        CHECK(o != NULL, "%s:%d: %s", path, rows + 1, je.text);
        if (!o) continue;
        json_t *t = json_object_get(o, "text"), *want = json_object_get(o, "ids");
        const char *txt = json_string_value(t);
        size_t len = json_string_length(t);
        v3_tok_ids ids = {0};
        int rc = v3_tok_encode(tok, txt, len, 0, &ids, &err);
        int same = rc == 0 && ids.n == json_array_size(want);
        for (size_t i = 0; same && i < ids.n; i++)
            same = ids.ids[i] == (int32_t)json_integer_value(json_array_get(want, i));
        CHECK(same, "edge row %d (%.40s): ids differ from HF (got %zu tokens, want %zu)", rows + 1, txt,
              ids.n, json_array_size(want));
        v3_tok_ids slow = {0};
        CHECK_OK(v3_tok_encode(tok, txt, len, V3_TOK_NO_FASTPATH, &slow, &err), &err);
        CHECK(slow.n == ids.n && (ids.n == 0 || memcmp(slow.ids, ids.ids, ids.n * 4) == 0), "edge row %d: Oniguruma path differs",
              rows + 1);
        v3_tok_ids_free(&slow);
        equal += same;
        char *back = NULL;
        size_t bn = 0;
        CHECK_OK(v3_tok_decode(tok, ids.ids, ids.n, 0, &back, &bn, &err), &err);
        CHECK(back && bn == len && memcmp(back, txt, len) == 0, "edge row %d does not round-trip", rows + 1);
        free(back);
        v3_tok_ids_free(&ids);
        json_decref(o);
        rows++;
    }
    free(line);
    fclose(f);
    printf("edge corpus: %d/%d rows equal to HF\n", equal, rows);
    CHECK(rows >= 90, "only %d edge rows", rows);
}

/* Random id sequences decoded by HF (tests/golden/gen_tokenizer.py), with and without special
 * tokens: one-shot decode and the streaming decoder must both give HF's text. */
static void check_decode_golden(const v3_tokenizer *tok) {
    char path[4096];
    t_source_path("tests/golden/data/tok_decode.jsonl", path, sizeof path);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int rows = 0, equal = 0;
    v3_err err = {0};
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, JSON_ALLOW_NUL, NULL);
        CHECK(o != NULL, "%s:%d: bad JSON", path, rows + 1);
        if (!o) continue;
        json_t *a = json_object_get(o, "ids");
        int32_t ids[64];
        size_t n = json_array_size(a);
        for (size_t i = 0; i < n && i < 64; i++) ids[i] = (int32_t)json_integer_value(json_array_get(a, i));
        for (int skip = 0; skip < 2; skip++) {
            json_t *w = json_object_get(o, skip ? "text_skip" : "text");
            char *s = NULL, *acc = NULL;
            size_t sn = 0, an = 0, acap = 0;
            CHECK_OK(v3_tok_decode(tok, ids, n, skip, &s, &sn, &err), &err);
            v3_tok_stream st;
            v3_tok_stream_init(&st, tok, skip);
            for (size_t i = 0; i < n; i++) CHECK_OK(v3_tok_stream_push(&st, ids[i], &acc, &an, &acap, &err), &err);
            CHECK_OK(v3_tok_stream_flush(&st, &acc, &an, &acap, &err), &err);
            size_t wn = json_string_length(w);
            int ok = s && sn == wn && memcmp(s, json_string_value(w), wn) == 0 && an == wn &&
                     (wn == 0 || memcmp(acc, s, wn) == 0);
            CHECK(ok, "decode row %d skip=%d differs from HF", rows + 1, skip);
            equal += ok;
            free(s);
            free(acc);
        }
        json_decref(o);
        rows++;
    }
    free(line);
    fclose(f);
    printf("decode corpus: %d/%d decodes equal to HF (one-shot and streamed)\n", equal, 2 * rows);
    CHECK(rows >= 300, "only %d decode rows", rows);
}

static void check_invalid_utf8(const v3_tokenizer *tok) {
    static const struct {
        const char *s;
        size_t n, bad;
        const char *repaired;
    } cases[] = {
        {"ab\xff", 3, 2, "ab\xEF\xBF\xBD"},
        {"a\xc3", 2, 1, "a\xEF\xBF\xBD"},                          /* truncated at the end */
        {"\xed\xa0\x80x", 4, 0, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDx"}, /* a surrogate: 3 subparts */
        {"\xf0\x9f\x98!", 4, 0, "\xEF\xBF\xBD!"},                  /* 3-byte maximal subpart */
        {"\xc0\xaf", 2, 0, "\xEF\xBF\xBD\xEF\xBF\xBD"},            /* overlong */
        {"ok \xe4\xb8\xad\x80", 7, 6, "ok \xe4\xb8\xad\xEF\xBF\xBD"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        v3_err err = {0};
        v3_tok_ids ids = {0}, want = {0};
        int rc = v3_tok_encode(tok, cases[i].s, cases[i].n, 0, &ids, &err);
        char expect[64];
        snprintf(expect, sizeof expect, "byte offset %zu", cases[i].bad);
        CHECK(rc == V3_EFORMAT && strstr(err.msg, expect), "case %zu: rc %d msg '%s'", i, rc, err.msg);
        CHECK(ids.n == 0, "case %zu: failed encode left %zu ids", i, ids.n);
        /* LOSSY: the same ids as encoding the U+FFFD-repaired text */
        CHECK_OK(v3_tok_encode(tok, cases[i].s, cases[i].n, V3_TOK_LOSSY, &ids, &err), &err);
        CHECK_OK(v3_tok_encode(tok, cases[i].repaired, strlen(cases[i].repaired), 0, &want, &err), &err);
        int same = ids.n == want.n && ids.n > 0 && memcmp(ids.ids, want.ids, ids.n * 4) == 0;
        CHECK(same, "case %zu: lossy encode differs from encoding the repaired text", i);
        v3_tok_ids_free(&ids);
        v3_tok_ids_free(&want);
    }
}

static void check_flags_and_queries(const v3_tokenizer *tok) {
    v3_err err = {0};
    CHECK(v3_tok_n_ids(tok) == 128815, "n_ids %d", v3_tok_n_ids(tok));
    CHECK(v3_tok_bos_id(tok) == 0 && v3_tok_eos_id(tok) == 1, "bos %d eos %d", v3_tok_bos_id(tok),
          v3_tok_eos_id(tok));
    CHECK(v3_tok_add_bos_default(tok) == 1, "add_bos_token should be true");
    CHECK(v3_tok_token_id(tok, "<｜User｜>") == 128803, "User id %d", v3_tok_token_id(tok, "<｜User｜>"));
    CHECK(v3_tok_token_id(tok, "<｜tool▁sep｜>") == 128814, "tool_sep id");
    CHECK(v3_tok_is_special(tok, 0) && v3_tok_is_special(tok, 128805) && !v3_tok_is_special(tok, 128803),
          "special flags");
    CHECK(v3_tok_is_added(tok, 128803) && !v3_tok_is_added(tok, 1000), "added flags");
    CHECK(v3_tok_chat_template(tok) && strstr(v3_tok_chat_template(tok), "is_first"), "chat_template kept");
    CHECK(v3_tok_token_str(tok, 128900) == NULL, "unused id has no string");

    v3_tok_ids a = {0}, b = {0};
    CHECK_OK(v3_tok_encode(tok, "Hello", 5, V3_TOK_ADD_BOS | V3_TOK_ADD_EOS, &a, &err), &err);
    CHECK_OK(v3_tok_encode(tok, "Hello", 5, 0, &b, &err), &err);
    CHECK(a.n == b.n + 2 && a.ids[0] == 0 && a.ids[a.n - 1] == 1 && memcmp(a.ids + 1, b.ids, b.n * 4) == 0,
          "BOS/EOS flags");
    a.n = 0;
    CHECK_OK(v3_tok_encode(tok, "Hello", 5, V3_TOK_DEFAULT_BOS, &a, &err), &err);
    CHECK(a.n == b.n + 1 && a.ids[0] == 0, "DEFAULT_BOS follows add_bos_token=true, add_eos_token=false");

    /* added tokens: matched in text by default, plain text with V3_TOK_NO_ADDED */
    const char *t = "x<｜User｜>y";
    a.n = b.n = 0;
    CHECK_OK(v3_tok_encode(tok, t, strlen(t), 0, &a, &err), &err);
    CHECK_OK(v3_tok_encode(tok, t, strlen(t), V3_TOK_NO_ADDED, &b, &err), &err);
    int has = 0;
    for (size_t i = 0; i < a.n; i++) has |= a.ids[i] == 128803;
    CHECK(has && a.n == 3, "added token matched (%zu ids)", a.n);
    has = 0;
    for (size_t i = 0; i < b.n; i++) has |= b.ids[i] >= 128000;
    CHECK(!has && b.n > 3, "NO_ADDED encodes the token string as text");
    char *s = NULL;
    size_t n = 0;
    CHECK_OK(v3_tok_decode(tok, b.ids, b.n, 0, &s, &n, &err), &err);
    CHECK(s && strcmp(s, t) == 0, "NO_ADDED round trip");
    free(s);

    /* decode with/without specials: BOS/EOS are special, <｜User｜> is not */
    int32_t ids[] = {0, 128803, 1, 128805};
    CHECK_OK(v3_tok_decode(tok, ids, 4, 0, &s, &n, &err), &err);
    CHECK(s && strcmp(s, "<｜begin▁of▁sentence｜><｜User｜><｜end▁of▁sentence｜><|EOT|>") == 0, "decode all: %s", s);
    free(s);
    CHECK_OK(v3_tok_decode(tok, ids, 4, 1, &s, &n, &err), &err);
    CHECK(s && strcmp(s, "<｜User｜>") == 0, "decode skip special: %s", s);
    free(s);
    int32_t bad[] = {5, 128900};
    CHECK(v3_tok_decode(tok, bad, 2, 0, &s, &n, &err) == V3_ERANGE && strstr(err.msg, "128900"),
          "unknown id rejected: %s", err.msg);
    v3_tok_ids_free(&a);
    v3_tok_ids_free(&b);
}

/* Random id sequences (byte tokens that split UTF-8 characters included): the streamed pieces
 * are each valid UTF-8 and concatenate to the one-shot decode. */
static void check_stream(const v3_tokenizer *tok, uint64_t seed) {
    v3_rng rng;
    v3_rng_seed(&rng, seed);
    v3_err err = {0};
    int n_ids = v3_tok_n_ids(tok), bad_chunks = 0, mismatches = 0;
    for (int trial = 0; trial < 300; trial++) {
        int32_t ids[64];
        int n = 1 + (int)(v3_rng_uniform(&rng) * 63);
        for (int i = 0; i < n; i++) {
            int32_t id;
            do {
                double u = v3_rng_uniform(&rng);
                /* favour single-byte tokens (ids of the 256 byte symbols) to split characters */
                id = u < 0.5 ? (int32_t)(v3_rng_uniform(&rng) * 128000) : (int32_t)(v3_rng_uniform(&rng) * n_ids);
                if (u < 0.3) {
                    char sym[3];
                    int b = 0x80 + (int)(v3_rng_uniform(&rng) * 128);
                    v3_bytelevel bl;
                    v3_bytelevel_init(&bl);
                    memcpy(sym, bl.sym[b], bl.sym_len[b]);
                    sym[bl.sym_len[b]] = 0;
                    id = v3_tok_token_id(tok, sym);
                }
            } while (!v3_tok_token_str(tok, id));
            ids[i] = id;
        }
        for (int skip = 0; skip < 2; skip++) {
            char *whole = NULL, *acc = NULL;
            size_t wn = 0, an = 0, acap = 0;
            CHECK_OK(v3_tok_decode(tok, ids, (size_t)n, skip, &whole, &wn, &err), &err);
            v3_tok_stream st;
            v3_tok_stream_init(&st, tok, skip);
            for (int i = 0; i < n; i++) {
                size_t before = an;
                CHECK_OK(v3_tok_stream_push(&st, ids[i], &acc, &an, &acap, &err), &err);
                if (!v3_utf8_valid((const uint8_t *)acc + before, an - before, NULL)) bad_chunks++;
            }
            CHECK_OK(v3_tok_stream_flush(&st, &acc, &an, &acap, &err), &err);
            if (!(an == wn && (wn == 0 || memcmp(acc, whole, wn) == 0))) mismatches++;
            free(whole);
            free(acc);
        }
    }
    CHECK(bad_chunks == 0, "%d streamed chunks were not valid UTF-8", bad_chunks);
    CHECK(mismatches == 0, "%d streams differ from the one-shot decode", mismatches);

    /* a 4-byte emoji fed byte by byte is held back until complete */
    v3_tok_ids e = {0};
    CHECK_OK(v3_tok_encode(tok, "\xF0\x9F\xA6\x99", 4, 0, &e, &err), &err); /* U+1F999, rare */
    v3_tok_stream st;
    v3_tok_stream_init(&st, tok, 0);
    char *acc = NULL;
    size_t an = 0, acap = 0;
    v3_bytelevel bl;
    v3_bytelevel_init(&bl);
    const uint8_t *emoji = (const uint8_t *)"\xF0\x9F\xA6\x99";
    for (int i = 0; i < 4; i++) {
        char sym[3];
        memcpy(sym, bl.sym[emoji[i]], bl.sym_len[emoji[i]]);
        sym[bl.sym_len[emoji[i]]] = 0;
        CHECK_OK(v3_tok_stream_push(&st, v3_tok_token_id(tok, sym), &acc, &an, &acap, &err), &err);
        CHECK(an == (i < 3 ? 0u : 4u), "after byte %d: %zu bytes out", i, an);
    }
    CHECK(acc && memcmp(acc, emoji, 4) == 0, "emoji streamed whole");
    free(acc);
    v3_tok_ids_free(&e);
}

/* The hand-written DeepSeek scanner against the Oniguruma regexes on random strings drawn from
 * characters that sit on the regexes' class boundaries (letters, marks, digits of several
 * scripts, CJK/kana, punctuation, symbols, every kind of whitespace, CR/LF, format chars). */
static void check_scanner_vs_onig(const v3_tokenizer *tok, uint64_t seed) {
    static const char *const palette[] = {
        " ", "  ", "\n", "\r", "\r\n", "\t", "\v", "\f", "a", "Z", "q", "é", "ß", "1", "7", "٣", "१", "²",
        "Ⅻ", "中", "龥", "ア", "ひ", "ー", "한", "!", "$", "-", ".", "'", "_", "\\", "[", "{", "~", "«", "。",
        "，", "😀", "❤", "\xEF\xB8\x8F", "\xCC\x81", "\xE2\x80\x8D", "\xC2\xA0", "\xE3\x80\x80",
        "\xE2\x80\xA8", "\xC2\x85", "\xE2\x80\x8B", "\xEF\xBB\xBF", "\x01", "ǅ", "ʰ", "ـ", "∑",
    };
    const size_t np = sizeof palette / sizeof palette[0];
    v3_rng rng;
    v3_rng_seed(&rng, seed ^ 0x5ca11e5ull);
    v3_err err = {0};
    int differ = 0;
    for (int trial = 0; trial < 3000; trial++) {
        char buf[512];
        size_t n = 0;
        int len = 1 + (int)v3_rng_below(&rng, 24);
        for (int k = 0; k < len; k++) {
            const char *p = palette[v3_rng_below(&rng, np)];
            size_t pl = strlen(p);
            memcpy(buf + n, p, pl);
            n += pl;
        }
        v3_tok_ids fast = {0}, slow = {0};
        CHECK_OK(v3_tok_encode(tok, buf, n, 0, &fast, &err), &err);
        CHECK_OK(v3_tok_encode(tok, buf, n, V3_TOK_NO_FASTPATH, &slow, &err), &err);
        if (fast.n != slow.n || (fast.n && memcmp(fast.ids, slow.ids, fast.n * 4) != 0)) {
            if (differ++ < 5) fprintf(stderr, "scanner/onig differ on \"%.*s\"\n", (int)n, buf);
        }
        v3_tok_ids_free(&fast);
        v3_tok_ids_free(&slow);
    }
    CHECK(differ == 0, "%d of 3000 random strings split differently by the scanner and Oniguruma", differ);
}

static void check_load_errors(void) {
    v3_err err = {0};
    v3_tokenizer *tok = NULL;
    CHECK(v3_tok_load(&tok, "/nonexistent-v3-dir", &err) == V3_EIO && strstr(err.msg, "tokenizer.json"),
          "missing dir: %s", err.msg);
    char dir[4096], p[4200];
    t_tmpdir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \n \"merges\": [", f);
    fclose(f);
    CHECK(v3_tok_load(&tok, dir, &err) == V3_EFORMAT && strstr(err.msg, "tokenizer.json:"), "truncated json: %s",
          err.msg);
    f = fopen(p, "w");
    fputs("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", f);
    fclose(f);
    CHECK(v3_tok_load(&tok, dir, &err) == V3_EUNSUPPORTED && strstr(err.msg, "Unigram"), "unigram: %s", err.msg);
    f = fopen(p, "w");
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]},"
          " \"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", f);
    fclose(f);
    CHECK(v3_tok_load(&tok, dir, &err) == V3_EFORMAT && strstr(err.msg, "merge 0"), "bad merge: %s", err.msg);
    CHECK(tok == NULL, "out-parameter untouched on failure");
    remove(p);
    remove(dir);
}

int main(void) {
    uint64_t seed = t_seed("test_tokenizer");
    char dir[4096];
    v3_err err = {0};
    v3_tokenizer *tok = NULL;
    CHECK_OK(v3_tok_load(&tok, t_data_path("deepseek-v3", dir, sizeof dir), &err), &err);
    if (!tok) return t_finish("test_tokenizer");
    check_edge_corpus(tok);
    check_decode_golden(tok);
    check_invalid_utf8(tok);
    check_flags_and_queries(tok);
    check_stream(tok, seed);
    check_scanner_vs_onig(tok, seed);
    check_load_errors();
    v3_tok_free(tok);
    return t_finish("test_tokenizer");
}
