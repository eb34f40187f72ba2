/* blob.h — the little-endian array layouts the run store keeps in BLOB columns.
 * A blob has no header: its element count is its length / 4, so `length(token_ids)/4` in SQL is the
 * number of tokens. Token ids are uint32 LE; logprobs are IEEE-754 binary32 LE. The same bytes are
 * written on every host, so a run.db copied between machines reads the same (docs/store.md). */
#ifndef V3_BLOB_H
#define V3_BLOB_H

#include <stddef.h>
#include <stdint.h>

/* dst: [4*n] bytes; src: [n] */
void v3_blob_put_u32(uint8_t *dst, const uint32_t *src, size_t n);
void v3_blob_put_f32(uint8_t *dst, const float *src, size_t n);
/* dst: [n]; src: [4*n] bytes (any alignment) */
void v3_blob_get_u32(uint32_t *dst, const uint8_t *src, size_t n);
void v3_blob_get_f32(float *dst, const uint8_t *src, size_t n);

#endif
