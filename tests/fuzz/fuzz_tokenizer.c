/* fuzz_tokenizer.c — arbitrary bytes through the DeepSeek-V3 tokenizer. Properties checked:
 *   - strict encode succeeds exactly when the input is valid UTF-8 (else V3_EFORMAT), and then
 *     decode(encode(x)) == x and the ids equal those of the Oniguruma path (V3_TOK_NO_FASTPATH);
 *   - lossy encode always succeeds and decodes to the U+FFFD-repaired input;
 *   - the streaming decoder's chunks are each valid UTF-8 and concatenate to the one-shot decode,
 *     for the encoded ids and for the input reinterpreted as raw ids (arbitrary id sequences).
 * The tokenizer is loaded once, lazily, from $V3_SHARED_DATA or the data folder beside the
 * source tree; this static is the fuzz harness's only state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/tokenizer.h"
#include "datasets/utf8.h"

static v3_tokenizer *g_tok; /* loaded on first use, kept for the process lifetime */

static void die(const char *what) {
    fprintf(stderr, "fuzz_tokenizer: property violated: %s\n", what);
    abort();
}

static const v3_tokenizer *tokenizer(void) {
    if (g_tok) return g_tok;
    char dir[4096];
    const char *d = getenv("V3_SHARED_DATA");
    if (d) snprintf(dir, sizeof dir, "%s/deepseek-v3", d);
    else snprintf(dir, sizeof dir, "%s/../shared/data/deepseek-v3", V3_SOURCE_DIR);
    v3_err err = {0};
    if (v3_tok_load(&g_tok, dir, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    return g_tok;
}

static void check_stream(const v3_tokenizer *tok, const int32_t *ids, size_t n, int skip) {
    char *whole = NULL, *acc = NULL;
    size_t wn = 0, an = 0, acap = 0;
    v3_err err = {0};
    if (v3_tok_decode(tok, ids, n, skip, &whole, &wn, &err)) die("decode of valid ids failed");
    v3_tok_stream st;
    v3_tok_stream_init(&st, tok, skip);
    for (size_t i = 0; i < n; i++) {
        size_t before = an;
        if (v3_tok_stream_push(&st, ids[i], &acc, &an, &acap, &err)) die("stream push failed");
        if (!v3_utf8_valid((const uint8_t *)acc + before, an - before, NULL)) die("stream chunk is not UTF-8");
    }
    if (v3_tok_stream_flush(&st, &acc, &an, &acap, &err)) die("stream flush failed");
    if (an != wn || (wn && memcmp(acc, whole, wn) != 0)) die("stream differs from one-shot decode");
    free(whole);
    free(acc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const v3_tokenizer *tok = tokenizer();
    v3_err err = {0};
    v3_tok_ids ids = {0};
    int valid = v3_utf8_valid(data, size, NULL);
    int rc = v3_tok_encode(tok, (const char *)data, size, 0, &ids, &err);
    if (valid != (rc == 0)) die("strict encode result disagrees with UTF-8 validity");
    if (!valid && (rc != V3_EFORMAT || ids.n != 0)) die("invalid input: wrong error or ids left behind");
    if (valid) {
        /* the hand-written DeepSeek scanner and the Oniguruma regexes must split identically */
        v3_tok_ids slow = {0};
        if (v3_tok_encode(tok, (const char *)data, size, V3_TOK_NO_FASTPATH, &slow, &err)) die("onig path failed");
        if (slow.n != ids.n || (ids.n && memcmp(slow.ids, ids.ids, ids.n * sizeof *ids.ids) != 0))
            die("fast pre-tokenizer differs from the Oniguruma path");
        v3_tok_ids_free(&slow);
        char *back = NULL;
        size_t bn = 0;
        if (v3_tok_decode(tok, ids.ids, ids.n, 0, &back, &bn, &err)) die("decode failed");
        if (bn != size || memcmp(back, data, size) != 0) die("decode(encode(x)) != x");
        free(back);
    }
    ids.n = 0;
    if (v3_tok_encode(tok, (const char *)data, size, V3_TOK_LOSSY, &ids, &err)) die("lossy encode failed");
    char *rep = NULL, *back = NULL;
    size_t rl = 0, rcap = 0, bn = 0;
    if (v3_utf8_lossy_append(data, size, &rep, &rl, &rcap)) die("oom");
    if (v3_tok_decode(tok, ids.ids, ids.n, 0, &back, &bn, &err)) die("decode failed");
    if (bn != rl || (rl && memcmp(back, rep, rl) != 0)) die("lossy round trip differs from repaired input");
    free(rep);
    free(back);
    check_stream(tok, ids.ids, ids.n, 0);

    /* the input as a raw id sequence (3 bytes per id, unused ids skipped) */
    int32_t raw[512];
    size_t nr = 0;
    for (size_t i = 0; i + 3 <= size && nr < 512; i += 3) {
        int32_t id = (int32_t)(((uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2]) %
                               (uint32_t)v3_tok_n_ids(tok));
        if (v3_tok_token_str(tok, id)) raw[nr++] = id;
    }
    check_stream(tok, raw, nr, 0);
    check_stream(tok, raw, nr, 1);
    v3_tok_ids_free(&ids);
    return 0;
}
