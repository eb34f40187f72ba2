/* fuzz_safetensors.c — libFuzzer target: arbitrary bytes as a .safetensors file (parsed from
 * memory, no copy), then every tensor converted to fp32, FP8 ones with their `_scale_inv` when
 * the file has it. The parser must reject or accept without touching memory outside the buffer;
 * conversion of an accepted file must never read past a tensor's bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    v3_st_file f;
    v3_err err;
    if (v3_st_open_memory(&f, data, size, "fuzz.safetensors", &err) != V3_OK) return 0;
    (void)v3_st_metadata(&f, "format");
    for (int i = 0; i < f.n; i++) {
        const v3_st_tensor *t = &f.t[i];
        if (v3_st_find(&f, t->name) != t) __builtin_trap(); /* lookup must find every name */
        /* numel is bounded by the data region (end - begin == numel * size), except for the
         * zero-byte tensors whose numel is 0 */
        float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *out);
        if (!out) break;
        const v3_st_tensor *s = NULL;
        if (t->dtype == V3_F8_E4M3) {
            char name[512];
            snprintf(name, sizeof name, "%s_scale_inv", t->name);
            s = v3_st_find(&f, name);
        }
        if (v3_st_to_f32(&f, t, &f, s, out, &err) == V3_OK && t->numel > 2)
            (void)v3_st_to_f32_range(&f, t, 1, t->numel - 2, &f, s, out, &err);
        free(out);
    }
    v3_st_close(&f);
    return 0;
}
