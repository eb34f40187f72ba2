/* pretok_deepseek.c — DeepSeek-V3's three pre-tokenizer regexes as a direct scanner.
 * Each Split stage works on each piece of the previous stage as its own subject string, exactly
 * like HF (so lookahead and "end of input" are the piece's end). */
#include "datasets/pretok_deepseek.h"

#include <oniguruma.h>
#include <stdlib.h>
#include <string.h>

const char *const v3_pretok_ds_patterns[3] = {
    "\\p{N}{1,3}",
    "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-\xE3\x83\xBF]+",
    ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
     " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"), /* one string, split for width */
};

enum { C_L = 1, C_N = 2, C_M = 4, C_P = 8, C_S = 16, C_WS = 32, C_CJK = 64 };

#define N_CP 0x110000

struct v3_pretok_ds {
    uint8_t cls[N_CP]; /* class bits of every code point */
};

static int add_class(v3_pretok_ds *ds, OnigCtype ctype, uint8_t bit) {
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    OnigCodePoint sb_out = 0;
    const OnigCodePoint *ranges = NULL;
    if (ONIGENC_GET_CTYPE_CODE_RANGE(enc, ctype, &sb_out, &ranges) != 0 || !ranges) {
        /* no range table for this class: ask code point by code point (slow, rare) */
        for (OnigCodePoint c = 0; c < N_CP; c++)
            if (ONIGENC_IS_CODE_CTYPE(enc, c, ctype)) ds->cls[c] |= bit;
        return 0;
    }
    for (OnigCodePoint c = 0; c < sb_out && c < N_CP; c++)
        if (ONIGENC_IS_CODE_CTYPE(enc, c, ctype)) ds->cls[c] |= bit;
    OnigCodePoint n = ranges[0];
    for (OnigCodePoint k = 0; k < n; k++) {
        OnigCodePoint lo = ranges[1 + 2 * k], hi = ranges[2 + 2 * k];
        if (lo < sb_out) lo = sb_out;
        for (OnigCodePoint c = lo; c <= hi && c < N_CP; c++) ds->cls[c] |= bit;
    }
    return 0;
}

int v3_pretok_ds_init(v3_pretok_ds **out, v3_err *err) {
    v3_pretok_ds *ds = calloc(1, sizeof *ds);
    if (!ds) return v3_errf(err, V3_ENOMEM, "%s:%d: out of memory", __FILE__, __LINE__);
    static const struct {
        const char *name;
        uint8_t bit;
    } props[] = {{"L", C_L}, {"N", C_N}, {"M", C_M}, {"P", C_P}, {"S", C_S}};
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
        OnigUChar *p = (OnigUChar *)props[i].name;
        int ctype = ONIGENC_PROPERTY_NAME_TO_CTYPE(enc, p, p + strlen(props[i].name));
        if (ctype < 0) {
            free(ds);
            return v3_errf(err, V3_EUNSUPPORTED, "oniguruma has no Unicode property %s", props[i].name);
        }
        add_class(ds, (OnigCtype)ctype, props[i].bit);
    }
    add_class(ds, ONIGENC_CTYPE_SPACE, C_WS); /* what \s means for a UTF-8 regex */
    for (uint32_t c = 0x4E00; c <= 0x9FA5; c++) ds->cls[c] |= C_CJK;
    for (uint32_t c = 0x3040; c <= 0x30FF; c++) ds->cls[c] |= C_CJK;
    *out = ds;
    return V3_OK;
}

void v3_pretok_ds_free(v3_pretok_ds *ds) { free(ds); }

/* Decodes the (valid) UTF-8 character at s[i]; returns its code point, *len its byte count. */
static inline uint32_t cp_at(const uint8_t *s, size_t i, int *len) {
    uint8_t b = s[i];
    if (b < 0x80) {
        *len = 1;
        return b;
    }
    if (b < 0xE0) {
        *len = 2;
        return ((uint32_t)(b & 0x1F) << 6) | (s[i + 1] & 0x3F);
    }
    if (b < 0xF0) {
        *len = 3;
        return ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) |
           ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
}

static inline int is_ascii_punct(uint32_t c) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
           (c >= 0x7B && c <= 0x7E);
}
static inline int is_ascii_alpha(uint32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

/* End of the run of characters whose class has any of `bits`, starting at i. */
static inline size_t run_end(const v3_pretok_ds *ds, const uint8_t *s, size_t n, size_t i, uint8_t bits) {
    while (i < n) {
        int l;
        uint32_t c = cp_at(s, i, &l);
        if (!(ds->cls[c] & bits)) break;
        i += (size_t)l;
    }
    return i;
}

/* Regex 3 tried at position i of s[0..n): the end of the match, or 0 when no alternative
 * matches here (a match is never empty, so 0 is unambiguous). */
static size_t match3(const v3_pretok_ds *ds, const uint8_t *s, size_t n, size_t i) {
    int l1;
    uint32_t c = cp_at(s, i, &l1);
    uint8_t k = ds->cls[c];
    size_t j = i + (size_t)l1;
    /* 1. [ASCII punctuation][A-Za-z]+ */
    if (is_ascii_punct(c) && j < n && is_ascii_alpha(s[j])) {
        while (j < n && is_ascii_alpha(s[j])) j++;
        return j;
    }
    /* 2. [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ : take the optional character when a letter or
     *    mark follows it, else backtrack to a run starting here */
    if (c != '\r' && c != '\n' && !(k & (C_L | C_P | C_S)) && j < n) {
        int l2;
        uint32_t c2 = cp_at(s, j, &l2);
        if (ds->cls[c2] & (C_L | C_M)) return run_end(ds, s, n, j, C_L | C_M);
    }
    if (k & (C_L | C_M)) return run_end(ds, s, n, i, C_L | C_M);
    /* 3. ' '?[\p{P}\p{S}]+[\r\n]* */
    size_t ps = (size_t)-1;
    if (c == ' ' && j < n) {
        int l2;
        if (ds->cls[cp_at(s, j, &l2)] & (C_P | C_S)) ps = j;
    } else if (k & (C_P | C_S)) {
        ps = i;
    }
    if (ps != (size_t)-1) {
        size_t e = run_end(ds, s, n, ps, C_P | C_S);
        while (e < n && (s[e] == '\r' || s[e] == '\n')) e++;
        return e;
    }
    if (!(k & C_WS)) return 0;
    /* whitespace run [i, w) */
    size_t w = i, last_nl_end = 0, last_start = i;
    int chars = 0;
    while (w < n) {
        int l;
        uint32_t cw = cp_at(s, w, &l);
        if (!(ds->cls[cw] & C_WS)) break;
        last_start = w;
        w += (size_t)l;
        chars++;
        if (cw == '\r' || cw == '\n') last_nl_end = w;
    }
    /* 4. \s*[\r\n]+ : backtracking ends the match right after the run's last CR/LF */
    if (last_nl_end) return last_nl_end;
    /* 5. \s+(?!\S) : the whole run at the end of the subject, else all but its last char */
    if (w == n) return w;
    if (chars >= 2) return last_start;
    /* 6. \s+ */
    return w;
}

static int stage3(const v3_pretok_ds *ds, const uint8_t *s, size_t n, v3_piece_fn fn, void *ctx) {
    size_t pos = 0, gap = 0;
    int rc;
    while (pos < n) {
        size_t e = match3(ds, s, n, pos);
        if (e) {
            if (gap < pos && (rc = fn(ctx, (const char *)s + gap, pos - gap))) return rc;
            if ((rc = fn(ctx, (const char *)s + pos, e - pos))) return rc;
            pos = gap = e;
        } else {
            int l;
            cp_at(s, pos, &l);
            pos += (size_t)l;
        }
    }
    return gap < n ? fn(ctx, (const char *)s + gap, n - gap) : 0;
}

/* Stage 2: runs of [一-龥぀-ゟ゠-ヿ] isolated; every piece goes on to stage 3. */
static int stage2(const v3_pretok_ds *ds, const uint8_t *s, size_t n, v3_piece_fn fn, void *ctx) {
    size_t pos = 0, start = 0;
    int in_run = -1, rc;
    while (pos < n) {
        int l;
        uint32_t c = cp_at(s, pos, &l);
        int cjk = (ds->cls[c] & C_CJK) != 0;
        if (cjk != in_run) {
            if (pos > start && (rc = stage3(ds, s + start, pos - start, fn, ctx))) return rc;
            start = pos;
            in_run = cjk;
        }
        pos += (size_t)l;
    }
    return n > start ? stage3(ds, s + start, n - start, fn, ctx) : 0;
}

int v3_pretok_ds_split(const v3_pretok_ds *ds, const char *text, size_t n, v3_piece_fn fn, void *ctx) {
    /* Stage 1: \p{N}{1,3} isolated — runs of numbers cut into chunks of three characters. */
    const uint8_t *s = (const uint8_t *)text;
    size_t pos = 0, start = 0;
    int rc;
    while (pos < n) {
        int l;
        uint32_t c = cp_at(s, pos, &l);
        if (!(ds->cls[c] & C_N)) {
            pos += (size_t)l;
            continue;
        }
        if (pos > start && (rc = stage2(ds, s + start, pos - start, fn, ctx))) return rc;
        size_t e = pos + (size_t)l;
        for (int k = 1; k < 3 && e < n; k++) {
            int l2;
            uint32_t c2 = cp_at(s, e, &l2);
            if (!(ds->cls[c2] & C_N)) break;
            e += (size_t)l2;
        }
        if ((rc = stage2(ds, s + pos, e - pos, fn, ctx))) return rc;
        pos = start = e;
    }
    return n > start ? stage2(ds, s + start, n - start, fn, ctx) : 0;
}
