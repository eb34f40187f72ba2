/* utf8.c — UTF-8 validation, lossy repair (maximal-subpart rule) and the GPT-2 byte map. */
#include "datasets/utf8.h"

#include <stdlib.h>
#include <string.h>

int v3_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    int need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte (Unicode Table 3-7) */
    uint32_t c;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
        c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        c = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F; /* excludes the surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        c = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F; /* stops at U+10FFFF */
    } else {
        return -1; /* 80..C1, F5..FF can never start a sequence */
    }
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return 0; /* truncated, but valid so far */
        uint8_t b = s[i];
        uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) return -i; /* the subpart is what was valid before this byte */
        c = (c << 6) | (b & 0x3F);
    }
    *cp = c;
    return need;
}

int v3_utf8_valid(const uint8_t *s, size_t n, size_t *bad_off) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int r = v3_utf8_next(s + i, n - i, &cp);
        if (r <= 0) {
            if (bad_off) *bad_off = i;
            return 0;
        }
        i += (size_t)r;
    }
    return 1;
}

static int grow(char **out, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    char *p = realloc(*out, nc);
    if (!p) return -1;
    *out = p;
    *cap = nc;
    return 0;
}

int v3_utf8_lossy_append(const uint8_t *s, size_t n, char **out, size_t *len, size_t *cap) {
    /* worst case: every byte becomes the 3-byte U+FFFD */
    if (grow(out, cap, *len + 3 * n + 1)) return -1;
    char *o = *out;
    size_t k = *len, i = 0;
    while (i < n) {
        uint32_t cp;
        int r = s[i] < 0x80 ? 1 : v3_utf8_next(s + i, n - i, &cp);
        if (r > 0) {
            memcpy(o + k, s + i, (size_t)r);
            k += (size_t)r;
            i += (size_t)r;
            continue;
        }
        /* ill-formed subpart, or a truncated tail (which is the whole rest of the input) */
        size_t skip = r < 0 ? (size_t)(-r) : n - i;
        memcpy(o + k, "\xEF\xBF\xBD", 3);
        k += 3;
        i += skip;
    }
    o[k] = 0;
    *len = k;
    return 0;
}

int v3_utf8_put(uint32_t cp, uint8_t *buf) {
    if (cp < 0x80) {
        buf[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        buf[0] = (uint8_t)(0xC0 | (cp >> 6));
        buf[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        buf[0] = (uint8_t)(0xE0 | (cp >> 12));
        buf[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    buf[0] = (uint8_t)(0xF0 | (cp >> 18));
    buf[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

void v3_bytelevel_init(v3_bytelevel *bl) {
    /* GPT-2's table: bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF keep their code point; the rest
     * are numbered 256, 257, ... in increasing byte order so every symbol is printable. */
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        bl->byte_to_cp[b] = keep ? (uint32_t)b : (uint32_t)next++;
    }
    for (int i = 0; i < 512; i++) bl->cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bl->cp_to_byte[bl->byte_to_cp[b]] = (int16_t)b;
        bl->sym_len[b] = (uint8_t)v3_utf8_put(bl->byte_to_cp[b], bl->sym[b]);
    }
}

long v3_bytelevel_decode(const v3_bytelevel *bl, const char *s, size_t n, uint8_t *out) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp;
        int r = v3_utf8_next(u + i, n - i, &cp);
        if (r <= 0 || cp >= 512 || bl->cp_to_byte[cp] < 0) return -1;
        out[k++] = (uint8_t)bl->cp_to_byte[cp];
        i += (size_t)r;
    }
    return (long)k;
}
