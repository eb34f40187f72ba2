/* distill_metrics.c — script fractions (language consistency) and n-gram repetition. */
#include "datasets/distill_metrics.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/utf8.h"

static const char *const NAMES[V3_SCRIPT_COUNT] = {"latin", "cyrillic", "greek", "arabic", "hebrew",
                                                   "devanagari", "thai", "hangul", "cjk", "other"};

int v3_script_parse(const char *name) {
    for (int i = 0; i < V3_SCRIPT_COUNT; i++)
        if (!strcmp(name, NAMES[i])) return i;
    return -1;
}

const char *v3_script_name(int script) {
    return script >= 0 && script < V3_SCRIPT_COUNT ? NAMES[script] : "none";
}

v3_script v3_script_of(unsigned cp) {
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z')) return V3_SCRIPT_LATIN;
    if (cp < 0xC0) return V3_SCRIPT_NONE; /* ASCII and Latin-1 signs */
    if (cp == 0xD7 || cp == 0xF7) return V3_SCRIPT_NONE; /* × ÷ */
    if (cp <= 0x24F || (cp >= 0x1E00 && cp <= 0x1EFF)) return V3_SCRIPT_LATIN;
    if (cp >= 0x250 && cp <= 0x36F) return V3_SCRIPT_NONE; /* IPA, modifiers, combining marks */
    if (cp >= 0x370 && cp <= 0x3FF) return V3_SCRIPT_GREEK;
    if (cp >= 0x400 && cp <= 0x52F) return V3_SCRIPT_CYRILLIC;
    if (cp >= 0x590 && cp <= 0x5FF) return V3_SCRIPT_HEBREW;
    if ((cp >= 0x600 && cp <= 0x6FF) || (cp >= 0x750 && cp <= 0x77F)) return V3_SCRIPT_ARABIC;
    if (cp >= 0x900 && cp <= 0x97F) return V3_SCRIPT_DEVANAGARI;
    if (cp >= 0xE00 && cp <= 0xE7F) return V3_SCRIPT_THAI;
    if ((cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0xAC00 && cp <= 0xD7AF) ||
        (cp >= 0x3130 && cp <= 0x318F))
        return V3_SCRIPT_HANGUL;
    if ((cp >= 0x3040 && cp <= 0x30FF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
        (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xF900 && cp <= 0xFAFF) ||
        (cp >= 0x20000 && cp <= 0x2FA1F))
        return V3_SCRIPT_CJK;
    if (cp >= 0x1F00 && cp <= 0x1FFF) return V3_SCRIPT_GREEK;
    /* punctuation, symbols, arrows, math operators, box drawing, CJK punctuation, full-width
     * forms' ASCII, emoji: no script */
    if ((cp >= 0x2000 && cp <= 0x2BFF) || (cp >= 0x3000 && cp <= 0x303F) ||
        (cp >= 0xFE00 && cp <= 0xFE6F) || (cp >= 0xFF00 && cp <= 0xFF20) ||
        (cp >= 0x1D400 && cp <= 0x1D7FF) || (cp >= 0x1F000 && cp <= 0x1FAFF) || cp == 0xFEFF ||
        cp == 0xFFFD)
        return V3_SCRIPT_NONE;
    if (cp >= 0xFF21 && cp <= 0xFF5A) return V3_SCRIPT_LATIN; /* full-width letters */
    return V3_SCRIPT_OTHER;
}

size_t v3_script_counts(const char *s, size_t n, size_t *counts) {
    memset(counts, 0, V3_SCRIPT_COUNT * sizeof *counts);
    size_t total = 0, i = 0;
    const uint8_t *p = (const uint8_t *)s;
    while (i < n) {
        uint32_t cp = 0;
        int k = v3_utf8_next(p + i, n - i, &cp);
        v3_script sc;
        if (k > 0) {
            sc = v3_script_of(cp);
            i += (size_t)k;
        } else {
            sc = V3_SCRIPT_OTHER;
            i += k < 0 ? (size_t)-k : n - i;
        }
        if (sc != V3_SCRIPT_NONE) {
            counts[sc]++;
            total++;
        }
    }
    return total;
}

int v3_script_dominant(const size_t *counts) {
    int best = V3_SCRIPT_NONE;
    size_t most = 0;
    for (int i = 0; i < V3_SCRIPT_COUNT; i++) {
        if (i == V3_SCRIPT_GREEK) continue;
        if (counts[i] > most) {
            most = counts[i];
            best = i;
        }
    }
    return best;
}

double v3_script_fraction(const size_t *counts, int script, size_t min_letters) {
    size_t total = 0;
    for (int i = 0; i < V3_SCRIPT_COUNT; i++)
        if (i != V3_SCRIPT_GREEK || script == V3_SCRIPT_GREEK) total += counts[i];
    if (total < min_letters || total == 0) return 1.0;
    if (script < 0 || script >= V3_SCRIPT_COUNT) return 0.0;
    return (double)counts[script] / (double)total;
}

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* FNV-1a of one word, mixed into the running hash of an n-gram window. */
static uint64_t word_hash(const char *w, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)w[i];
        h *= 1099511628211ull;
    }
    return h;
}

double v3_repetition_ratio(const char *s, size_t len, int n) {
    if (n < 1) n = 1;
    size_t cap_words = 64, nw = 0;
    uint64_t *words = malloc(cap_words * sizeof *words);
    if (!words) return -1;
    for (size_t i = 0; i < len;) {
        while (i < len && is_space((unsigned char)s[i])) i++;
        size_t a = i;
        while (i < len && !is_space((unsigned char)s[i])) i++;
        if (i == a) break;
        if (nw == cap_words) {
            uint64_t *nwp = realloc(words, 2 * cap_words * sizeof *nwp);
            if (!nwp) {
                free(words);
                return -1;
            }
            words = nwp;
            cap_words *= 2;
        }
        words[nw++] = word_hash(s + a, i - a);
    }
    if (nw < (size_t)n) {
        free(words);
        return 0.0;
    }
    size_t total = nw - (size_t)n + 1, cap = 16, distinct = 0;
    while (cap < 2 * total) cap *= 2;
    uint64_t *set = calloc(cap, sizeof *set);
    if (!set) {
        free(words);
        return -1;
    }
    for (size_t i = 0; i < total; i++) {
        uint64_t h = 0x9E3779B97F4A7C15ull;
        for (int k = 0; k < n; k++) h = (h ^ words[i + (size_t)k]) * 0x100000001B3ull + (uint64_t)k;
        if (!h) h = 1;
        size_t j = (size_t)(h ^ h >> 31) & (cap - 1);
        while (set[j] && set[j] != h) j = (j + 1) & (cap - 1);
        if (!set[j]) {
            set[j] = h;
            distinct++;
        }
    }
    free(set);
    free(words);
    return 1.0 - (double)distinct / (double)total;
}
