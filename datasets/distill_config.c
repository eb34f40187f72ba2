/* distill_config.c — the "distill" config schema's keys → the options of each stage. */
#include "datasets/distill_config.h"

#include <stdlib.h>
#include <string.h>

#include "lua/config_schemas.h"

int v3_distill_config_load(v3_distill_config *c, const char *path, const char *const *sets,
                           size_t n_sets, v3_err *err) {
    memset(c, 0, sizeof *c);
    const v3_cfg_schema *schema = v3_cfg_schema_find("distill");
    if (!schema) return v3_errf(err, V3_EUNSUPPORTED, "this build has no distill config schema");
    int rc = path ? v3_cfg_load_file(&c->cfg, schema, path, sets, n_sets, NULL, err)
                  : v3_cfg_load_string(&c->cfg, schema, "(defaults)", "return {}", 9, sets, n_sets,
                                       NULL, err);
    if (rc) return rc;
    if (!(c->json = v3_cfg_to_json(&c->cfg, 0))) {
        v3_cfg_free(&c->cfg);
        return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    return V3_OK;
}

void v3_distill_config_free(v3_distill_config *c) {
    v3_cfg_free(&c->cfg);
    free(c->json);
    for (int i = 0; i < c->n_fields; i++) free(c->fields[i]);
    for (int i = 0; i < c->n_scripts; i++) {
        free(c->script_paths[i]);
        free(c->script_names[i]);
    }
    memset(c, 0, sizeof *c);
}

static const char *str_or_null(const v3_cfg *cfg, const char *key) {
    const char *s = NULL;
    if (v3_cfg_get_string(cfg, key, &s, NULL) != V3_OK || !s || !s[0]) return NULL;
    return s;
}

int v3_distill_config_import(v3_distill_config *c, v3_distill_import_opts *o, v3_err *err) {
    const v3_cfg *cfg = &c->cfg;
    const char *form = str_or_null(cfg, "import.form");
    int64_t max_record = 0;
    size_t n = 0;
    int rc;
    if (form && v3_distill_form_parse(form) >= 0) o->form = (v3_distill_form)v3_distill_form_parse(form);
    if ((rc = v3_cfg_get_int(cfg, "import.max_record", &max_record, err)) ||
        (rc = v3_cfg_get_bool(cfg, "import.starts_in_reasoning", &o->starts_in_reasoning, err)))
        return rc;
    if (max_record < 2) return v3_errf(err, V3_EINVAL, "%s: import.max_record must be at least 2",
                                       cfg->source);
    o->max_record = (size_t)max_record;
    o->records = str_or_null(cfg, "import.records");
    o->source_model = str_or_null(cfg, "import.source_model");
    o->config_json = c->json;
    if ((rc = v3_cfg_get_list_len(cfg, "import.fields", &n, err))) return rc;
    for (size_t i = 0; i < n; i++) {
        const char *spec = NULL;
        if ((rc = v3_cfg_get_list_string(cfg, "import.fields", i, &spec, err))) return rc;
        if (c->n_fields == V3_DISTILL_MAX_FIELDS)
            return v3_errf(err, V3_EINVAL, "%s: import.fields: at most %d mappings", cfg->source,
                           V3_DISTILL_MAX_FIELDS);
        char *copy = strdup(spec);
        if (!copy) return v3_errf(err, V3_ENOMEM, "out of memory");
        c->fields[c->n_fields++] = copy;
        if ((rc = v3_distill_map_field(&o->fields, copy, err))) {
            v3_err_prefix(err, "%s: import.fields", cfg->source);
            return V3_EINVAL;
        }
    }
    return V3_OK;
}

/* One entry of verify.scripts: "x.lua" or {script = "x.lua", weight = 2, name = "acc"}. */
static int add_script(v3_distill_config *c, const json_t *e, size_t i, v3_err *err) {
    if (c->n_scripts == V3_REWARD_MAX_FUNCS)
        return v3_errf(err, V3_EINVAL, "%s: verify.scripts: at most %d scripts", c->cfg.source,
                       V3_REWARD_MAX_FUNCS);
    const json_t *path = json_is_string(e) ? e : json_object_get(e, "script");
    const json_t *w = json_object_get(e, "weight"), *name = json_object_get(e, "name");
    if (!json_is_string(path) || (w && !json_is_number(w)) || (name && !json_is_string(name)))
        return v3_errf(err, V3_EINVAL, "%s: verify.scripts[%zu]: expected \"file.lua\" or "
                       "{script = \"file.lua\", weight = number, name = string}", c->cfg.source, i + 1);
    int k = c->n_scripts;
    v3_reward_script *s = &c->scripts[k];
    memset(s, 0, sizeof *s);
    if (!(c->script_paths[k] = strdup(json_string_value(path))) ||
        (name && !(c->script_names[k] = strdup(json_string_value(name)))))
        return v3_errf(err, V3_ENOMEM, "out of memory");
    c->n_scripts++;
    s->path = c->script_paths[k];
    s->name = c->script_names[k];
    if (w) {
        s->weight = json_number_value(w);
        s->has_weight = 1;
    }
    return V3_OK;
}

int v3_distill_config_verify(v3_distill_config *c, v3_distill_verify_opts *o, v3_err *err) {
    const v3_cfg *cfg = &c->cfg;
    const json_t *list = NULL;
    int64_t jobs = 0, timeout = 0;
    int rc;
    if ((rc = v3_cfg_get_json(cfg, "verify.scripts", &list, err)) ||
        (rc = v3_cfg_get_int(cfg, "verify.jobs", &jobs, err)) ||
        (rc = v3_cfg_get_int(cfg, "verify.timeout_ms", &timeout, err)) ||
        (rc = v3_cfg_get_number(cfg, "verify.pass_score", &o->pass_score, err)))
        return rc;
    if (jobs < 1 || jobs > 256 || timeout < 1)
        return v3_errf(err, V3_EINVAL, "%s: verify.jobs must be 1..256 and verify.timeout_ms >= 1",
                       cfg->source);
    o->host.n_workers = (int)jobs;
    o->host.timeout_ms = timeout;
    o->config_json = c->json;
    if (json_is_array(list)) {
        size_t i;
        const json_t *e;
        json_array_foreach(list, i, e) {
            if ((rc = add_script(c, e, i, err))) return rc;
        }
    }
    o->host.scripts = c->scripts;
    o->host.n_scripts = c->n_scripts;
    return V3_OK;
}

int v3_distill_config_builtins(const v3_distill_config *c, const char **names, int max, int *n,
                               v3_err *err) {
    size_t len = 0;
    int rc = v3_cfg_get_list_len(&c->cfg, "verify.builtin", &len, err);
    if (rc) return rc;
    *n = 0;
    for (size_t i = 0; i < len; i++) {
        const char *s = NULL;
        if ((rc = v3_cfg_get_list_string(&c->cfg, "verify.builtin", i, &s, err))) return rc;
        if (!v3_distill_builtin_source(s))
            return v3_errf(err, V3_EINVAL, "%s: verify.builtin: no built-in verifier \"%s\" "
                           "(math, r1_format)", c->cfg.source, s);
        if (*n == max) return v3_errf(err, V3_EINVAL, "%s: verify.builtin: too many", c->cfg.source);
        names[(*n)++] = s;
    }
    return V3_OK;
}

int v3_distill_config_filter(v3_distill_config *c, v3_distill_filter_opts *o, v3_err *err) {
    const v3_cfg *cfg = &c->cfg;
    int64_t min_t = 0, max_t = 0, ngram = 0, per = 0, seed = 0, threads = 0;
    int rc;
    if ((rc = v3_cfg_get_number(cfg, "filter.min_score", &o->min_score, err)) ||
        (rc = v3_cfg_get_bool(cfg, "filter.keep_unverified", &o->keep_unverified, err)) ||
        (rc = v3_cfg_get_bool(cfg, "filter.require_complete", &o->require_complete, err)) ||
        (rc = v3_cfg_get_bool(cfg, "filter.require_answer", &o->require_answer, err)) ||
        (rc = v3_cfg_get_int(cfg, "filter.min_tokens", &min_t, err)) ||
        (rc = v3_cfg_get_int(cfg, "filter.max_tokens", &max_t, err)) ||
        (rc = v3_cfg_get_number(cfg, "filter.min_language_fraction", &o->min_language_fraction, err)) ||
        (rc = v3_cfg_get_int(cfg, "filter.ngram", &ngram, err)) ||
        (rc = v3_cfg_get_number(cfg, "filter.max_repetition", &o->max_repetition, err)) ||
        (rc = v3_cfg_get_int(cfg, "filter.per_prompt", &per, err)) ||
        (rc = v3_cfg_get_int(cfg, "filter.seed", &seed, err)) ||
        (rc = v3_cfg_get_int(cfg, "filter.threads", &threads, err)))
        return rc;
    if (min_t < 0 || max_t < 0 || (max_t > 0 && min_t > max_t))
        return v3_errf(err, V3_EINVAL, "%s: filter.min_tokens/max_tokens: need 0 <= min <= max "
                       "(0 = no bound)", cfg->source);
    if (ngram < 1 || ngram > 64 || per < 0 || threads < 1 || threads > 16)
        return v3_errf(err, V3_EINVAL, "%s: filter.ngram must be 1..64, filter.per_prompt >= 0, "
                       "filter.threads 1..16", cfg->source);
    o->correct = str_or_null(cfg, "filter.correct");
    o->language = str_or_null(cfg, "filter.language");
    o->min_tokens = min_t;
    o->max_tokens = max_t;
    o->ngram = (int)ngram;
    o->per_prompt = (int)per;
    o->seed = (uint64_t)seed;
    o->threads = (int)threads;
    const char *pick = str_or_null(cfg, "filter.pick");
    o->pick = pick && !strcmp(pick, "random") ? V3_PICK_RANDOM : V3_PICK_SHORTEST;
    o->config_json = c->json;
    return V3_OK;
}

int v3_distill_config_export(v3_distill_config *c, v3_distill_export_opts *o, v3_err *err) {
    const v3_cfg *cfg = &c->cfg;
    const char *form = str_or_null(cfg, "export.form");
    const char *reasoning = str_or_null(cfg, "export.reasoning");
    const char *fallback = str_or_null(cfg, "export.original_fallback");
    o->form = form && !strcmp(form, "original") ? V3_EXPORT_ORIGINAL : V3_EXPORT_R1;
    o->system_prompt = str_or_null(cfg, "export.system_prompt");
    o->inline_reasoning = reasoning && !strcmp(reasoning, "inline");
    o->original_skip = fallback && !strcmp(fallback, "skip");
    (void)err;
    return V3_OK;
}

const char *v3_distill_config_tokenizer(const v3_distill_config *c) {
    return str_or_null(&c->cfg, "tokenizer.dir");
}
