/* strmap.h — string -> int lookup by open addressing, for tensor names (the 671B checkpoint has
 * 91,991 of them, so a linear scan per lookup would be quadratic). Keys are borrowed: the caller
 * keeps them alive and unchanged while the map is in use. */
#ifndef V3_STRMAP_H
#define V3_STRMAP_H

#include <stdint.h>

typedef struct v3_strmap {
    const char **key; /* [cap], NULL = empty slot */
    int *val;         /* [cap] */
    uint32_t cap;     /* power of two, kept at least twice the count */
    uint32_t count;
} v3_strmap;

/* Sizes the map for `expected` keys (it grows past that). Returns 0, or -1 when out of memory. */
int v3_strmap_init(v3_strmap *m, int expected);
void v3_strmap_free(v3_strmap *m);
/* Inserts key -> val. Returns -1 when inserted, the existing value when the key was already
 * present (the map is then unchanged), or -2 when out of memory. */
int v3_strmap_put(v3_strmap *m, const char *key, int val);
/* The value of key, or -1. */
int v3_strmap_get(const v3_strmap *m, const char *key);

#endif
