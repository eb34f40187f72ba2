/* distill_generate_config.c — the generate.* keys of a distill config → the options of
 * `distill generate` (datasets/distill_generate.h). */
#include <string.h>

#include "datasets/distill_generate.h"

static const char *str_or_null(const v3_cfg *cfg, const char *key) {
    const char *s = NULL;
    if (v3_cfg_get_string(cfg, key, &s, NULL) != V3_OK || !s || !s[0]) return NULL;
    return s;
}

int v3_distill_config_generate(v3_distill_config *c, v3_distill_generate_opts *o, v3_err *err) {
    const v3_cfg *cfg = &c->cfg;
    int64_t n = 0, max_tokens = 0, in_flight = 0, retries = 0, seed = 0;
    int rc;
    if ((rc = v3_cfg_get_int(cfg, "generate.n", &n, err)) ||
        (rc = v3_cfg_get_int(cfg, "generate.max_tokens", &max_tokens, err)) ||
        (rc = v3_cfg_get_int(cfg, "generate.max_in_flight", &in_flight, err)) ||
        (rc = v3_cfg_get_int(cfg, "generate.retries", &retries, err)) ||
        (rc = v3_cfg_get_int(cfg, "generate.seed", &seed, err)) ||
        (rc = v3_cfg_get_number(cfg, "generate.temperature", &o->temperature, err)) ||
        (rc = v3_cfg_get_number(cfg, "generate.top_p", &o->top_p, err)) ||
        (rc = v3_cfg_get_number(cfg, "generate.timeout", &o->timeout_s, err)))
        return rc;
    if (n < 1 || n > 1 << 20 || max_tokens < 0 || in_flight < 1 || in_flight > 1024 ||
        retries < 0 || retries > 100 || seed < 0)
        return v3_errf(err, V3_EINVAL, "%s: generate.n must be 1..1048576, generate.max_tokens >= 0, "
                       "generate.max_in_flight 1..1024, generate.retries 0..100 and generate.seed "
                       ">= 0", cfg->source);
    if (!(o->temperature >= 0) || !(o->top_p > 0 && o->top_p <= 1) || !(o->timeout_s > 0))
        return v3_errf(err, V3_EINVAL, "%s: generate.temperature must be >= 0, generate.top_p in "
                       "(0, 1] and generate.timeout > 0", cfg->source);
    o->n = (int)n;
    o->max_tokens = max_tokens;
    o->max_in_flight = (int)in_flight;
    o->retries = (int)retries;
    o->seed = (uint64_t)seed;
    o->prompts = str_or_null(cfg, "generate.prompts");
    o->url = str_or_null(cfg, "generate.url");
    o->model = str_or_null(cfg, "generate.model");
    o->model_dir = str_or_null(cfg, "generate.model_dir");
    o->key_env = str_or_null(cfg, "generate.key_env");
    o->system_prompt = str_or_null(cfg, "generate.system_prompt");
    o->tokenizer_dir = v3_distill_config_tokenizer(c);
    o->config_json = c->json;
    return V3_OK;
}
