/* utf8.h — UTF-8 validation, lossy repair and the GPT-2 byte-level symbol map.
 * Shared by the tokenizer (input validation, ByteLevel pre-tokenizer and decoder) and the
 * streaming decoder. Invalid sequences are judged by the Unicode "maximal subpart" rule, the
 * one Rust's String::from_utf8_lossy (and so HF tokenizers' ByteLevel decoder) applies: each
 * maximal ill-formed subpart becomes exactly one U+FFFD. */
#ifndef V3_UTF8_H
#define V3_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Result of looking at the sequence starting at s[0] (n > 0 bytes available):
 *   > 0   a valid scalar of that many bytes (*cp set);
 *   < 0   an ill-formed subpart of -ret bytes (one U+FFFD stands for it);
 *   0     the bytes are a truncated but so-far valid prefix: more input may complete it. */
int v3_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);

/* V3_OK-style check: returns 1 when s[0..n) is valid UTF-8, else 0 with *bad_off = byte offset
 * of the first invalid or truncated sequence. */
int v3_utf8_valid(const uint8_t *s, size_t n, size_t *bad_off);

/* Appends the lossy repair of s[0..n) to *out (realloc-ed; *len and *cap updated); a truncated tail
 * counts as ill-formed. Returns 0, or -1 when memory runs out. */
int v3_utf8_lossy_append(const uint8_t *s, size_t n, char **out, size_t *len, size_t *cap);

/* Encodes cp as UTF-8 into buf (>= 4 bytes); returns the byte count. */
int v3_utf8_put(uint32_t cp, uint8_t *buf);

/* The GPT-2 byte <-> unicode symbol table: printable Latin-1 bytes map to themselves, the other
 * 68 bytes to U+0100.. in byte order. cp_to_byte covers U+0000..U+01FF, -1 = not a symbol. */
typedef struct v3_bytelevel {
    uint32_t byte_to_cp[256];
    int16_t cp_to_byte[512];
    uint8_t sym[256][2];   /* UTF-8 of each byte's symbol (all are 1 or 2 bytes) */
    uint8_t sym_len[256];
} v3_bytelevel;

void v3_bytelevel_init(v3_bytelevel *bl);

/* Maps a byte-level symbol string (UTF-8) back to raw bytes into out (capacity >= n). Returns the
 * byte count, or -1 when some character is not a byte-level symbol (HF then keeps the token's
 * own UTF-8 bytes). */
long v3_bytelevel_decode(const v3_bytelevel *bl, const char *s, size_t n, uint8_t *out);

#endif
