/* test_distill_config.c — the `distill` config schema: defaults without a file, the example
 * config examples/distill_r1.lua, --set overrides, verify.scripts entries, and the errors of
 * unknown keys, bad values and unknown built-in verifiers. */
#include <stdio.h>
#include <string.h>

#include "datasets/distill_config.h"
#include "lua/config_schemas.h"
#include "testutil.h"

static void test_defaults(void) {
    v3_distill_config c;
    v3_err err = {0};
    CHECK(v3_cfg_schema_find("distill") != NULL, "schema registered");
    CHECK_OK(v3_distill_config_load(&c, NULL, NULL, 0, &err), &err);
    v3_distill_import_opts io;
    v3_distill_import_opts_default(&io);
    CHECK_OK(v3_distill_config_import(&c, &io, &err), &err);
    CHECK(io.form == V3_DISTILL_AUTO && !io.records && !io.source_model && !io.starts_in_reasoning &&
          io.max_record == ((size_t)64 << 20) && io.config_json == c.json, "import defaults");
    v3_distill_verify_opts vo = {0};
    CHECK_OK(v3_distill_config_verify(&c, &vo, &err), &err);
    CHECK(vo.host.n_scripts == 0 && vo.host.n_workers == 2 && vo.host.timeout_ms == 2000 &&
          vo.pass_score == 1.0, "verify defaults");
    const char *names[8];
    int n = 0;
    CHECK_OK(v3_distill_config_builtins(&c, names, 8, &n, &err), &err);
    CHECK(n == 2 && !strcmp(names[0], "math") && !strcmp(names[1], "r1_format"), "builtins %d", n);
    v3_distill_filter_opts fo, def;
    v3_distill_filter_opts_default(&def);
    v3_distill_filter_opts_default(&fo);
    CHECK_OK(v3_distill_config_filter(&c, &fo, &err), &err);
    CHECK(!strcmp(fo.correct, def.correct) && fo.min_score == def.min_score &&
          fo.require_complete == def.require_complete && fo.require_answer == def.require_answer &&
          !strcmp(fo.language, def.language) && fo.min_language_fraction == def.min_language_fraction &&
          fo.ngram == def.ngram && fo.max_repetition == def.max_repetition && fo.per_prompt == 0 &&
          fo.pick == V3_PICK_SHORTEST && fo.max_tokens == 0, "the schema's defaults are the library's");
    v3_distill_export_opts eo = {0};
    CHECK_OK(v3_distill_config_export(&c, &eo, &err), &err);
    CHECK(eo.form == V3_EXPORT_R1 && !eo.system_prompt && !eo.inline_reasoning && !eo.original_skip,
          "export defaults");
    CHECK(v3_distill_config_tokenizer(&c) == NULL, "no tokenizer dir by default");
    v3_distill_config_free(&c);
}

static void test_example_and_sets(void) {
    char path[1024];
    t_source_path("examples/distill_r1.lua", path, sizeof path);
    const char *sets[] = {"filter.per_prompt=3", "filter.pick=random", "export.form=original",
                          "import.fields=prompt=q,text=gen", "verify.scripts={'a/x.lua', "
                          "{script='b/y.lua', weight=2.5, name='acc'}}"};
    v3_distill_config c;
    v3_err err = {0};
    CHECK_OK(v3_distill_config_load(&c, path, sets, 5, &err), &err);
    v3_distill_filter_opts fo;
    v3_distill_filter_opts_default(&fo);
    CHECK_OK(v3_distill_config_filter(&c, &fo, &err), &err);
    CHECK(fo.per_prompt == 3 && fo.pick == V3_PICK_RANDOM && fo.max_tokens == 16384 &&
          fo.min_tokens == 32, "filter from the example + sets");
    v3_distill_export_opts eo = {0};
    CHECK_OK(v3_distill_config_export(&c, &eo, &err), &err);
    CHECK(eo.form == V3_EXPORT_ORIGINAL && eo.system_prompt && strstr(eo.system_prompt, "step by step"),
          "export from the example");
    v3_distill_import_opts io;
    v3_distill_import_opts_default(&io);
    CHECK_OK(v3_distill_config_import(&c, &io, &err), &err);
    CHECK(io.fields.prompt && !strcmp(io.fields.prompt, "q") && io.fields.text &&
          !strcmp(io.fields.text, "gen") && !strcmp(io.source_model, "deepseek-r1"), "field mappings");
    v3_distill_verify_opts vo = {0};
    CHECK_OK(v3_distill_config_verify(&c, &vo, &err), &err);
    CHECK(vo.host.n_scripts == 2 && !strcmp(vo.host.scripts[0].path, "a/x.lua") &&
          !vo.host.scripts[0].has_weight && !strcmp(vo.host.scripts[1].path, "b/y.lua") &&
          vo.host.scripts[1].has_weight && vo.host.scripts[1].weight == 2.5 &&
          !strcmp(vo.host.scripts[1].name, "acc"), "verify.scripts");
    CHECK(strstr(c.json, "\"per_prompt\": 3") || strstr(c.json, "\"per_prompt\":3"),
          "resolved JSON: %s", c.json);
    v3_distill_config_free(&c);
}

static void test_errors(void) {
    v3_distill_config c;
    v3_err err = {0};
    const char *bad_key[] = {"filter.nokey=1"};
    CHECK(v3_distill_config_load(&c, NULL, bad_key, 1, &err) == V3_EUSAGE &&
          strstr(err.msg, "filter.nokey"), "unknown --set key: %s", err.msg);
    const char *bad_choice[] = {"filter.pick=longest"};
    CHECK(v3_distill_config_load(&c, NULL, bad_choice, 1, &err) == V3_EUSAGE, "bad choice: %s", err.msg);
    const char *bad_builtin[] = {"verify.builtin=math,nope"};
    CHECK_OK(v3_distill_config_load(&c, NULL, bad_builtin, 1, &err), &err);
    const char *names[8];
    int n = 0;
    CHECK(v3_distill_config_builtins(&c, names, 8, &n, &err) == V3_EINVAL && strstr(err.msg, "nope"),
          "unknown builtin: %s", err.msg);
    v3_distill_config_free(&c);
    const char *bad_field[] = {"import.fields=frob=x"};
    CHECK_OK(v3_distill_config_load(&c, NULL, bad_field, 1, &err), &err);
    v3_distill_import_opts io;
    v3_distill_import_opts_default(&io);
    CHECK(v3_distill_config_import(&c, &io, &err) == V3_EINVAL && strstr(err.msg, "frob"),
          "bad mapping: %s", err.msg);
    v3_distill_config_free(&c);
    const char *bad_bounds[] = {"filter.min_tokens=100", "filter.max_tokens=10"};
    CHECK_OK(v3_distill_config_load(&c, NULL, bad_bounds, 2, &err), &err);
    v3_distill_filter_opts fo;
    v3_distill_filter_opts_default(&fo);
    CHECK(v3_distill_config_filter(&c, &fo, &err) == V3_EINVAL && strstr(err.msg, "min_tokens"),
          "min > max: %s", err.msg);
    v3_distill_config_free(&c);
    const char *bad_script[] = {"verify.scripts={ {weight = 1} }"};
    CHECK_OK(v3_distill_config_load(&c, NULL, bad_script, 1, &err), &err);
    v3_distill_verify_opts vo = {0};
    CHECK(v3_distill_config_verify(&c, &vo, &err) == V3_EINVAL && strstr(err.msg, "verify.scripts[1]"),
          "script entry without a path: %s", err.msg);
    v3_distill_config_free(&c);
}

int main(void) {
    test_defaults();
    test_example_and_sets();
    test_errors();
    return t_finish("test_distill_config");
}
