/* test_sha256.c — SHA-256 against the FIPS 180-4 / NIST example vectors, and streaming in
 * random pieces against the one-shot digest. */
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "testutil.h"

static void check_vec(const void *msg, size_t n, const char *want) {
    uint8_t d[32];
    char hex[65];
    v3_sha256(msg, n, d);
    v3_sha256_hex(d, hex);
    CHECK(strcmp(hex, want) == 0, "len %zu: got %s want %s", n, hex, want);
}

int main(void) {
    check_vec("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_vec("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_vec(m448, strlen(m448), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_vec(m896, strlen(m896), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* one million 'a': crosses many blocks */
    size_t n = 1000000;
    char *a = malloc(n);
    memset(a, 'a', n);
    check_vec(a, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* lengths around the padding boundary (55, 56, 63, 64 bytes of 'a'), as given by Python hashlib */
    check_vec(a, 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    check_vec(a, 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    check_vec(a, 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");

    /* streaming in random pieces equals one shot */
    v3_rng r;
    v3_rng_seed(&r, t_seed("test_sha256"));
    for (size_t i = 0; i < n; i++) a[i] = (char)v3_rng_u64(&r);
    uint8_t one[32], two[32];
    v3_sha256(a, n, one);
    for (int trial = 0; trial < 5; trial++) {
        v3_sha256_ctx s;
        v3_sha256_init(&s);
        size_t off = 0;
        while (off < n) {
            size_t k = (size_t)v3_rng_below(&r, 200);
            if (k > n - off) k = n - off;
            v3_sha256_update(&s, a + off, k);
            off += k;
        }
        v3_sha256_final(&s, two);
        CHECK(memcmp(one, two, 32) == 0, "streamed digest differs (trial %d)", trial);
    }
    free(a);
    return t_finish("test_sha256");
}
