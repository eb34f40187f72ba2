/* test_lua_config.c — Lua config loading: schema checks, defaults, --set parsing, errors with
 * file:line and suggestions, getters, JSON and Lua dumps (the Lua dump must load back to the same
 * configuration), budgets, and a fail-the-Nth-allocation sweep over the whole loader. */
#include <stdlib.h>
#include <string.h>

#include "lua/config.h"
#include "lua/config_internal.h"
#include "lua/config_schemas.h"
#include "testutil.h"

/* A schema with every type, used instead of the provisional command schemas so that the test does
 * not change when those grow. */
static const v3_cfg_key test_keys[] = {
    {"name", V3_CFG_STRING, NULL, "run name", V3_CFG_REQUIRED, NULL},
    {"mode", V3_CFG_STRING, "fast", "speed", 0, "fast|slow|exact"},
    {"steps", V3_CFG_INT, "10", "steps", 0, NULL},
    {"opt.lr", V3_CFG_NUMBER, "3e-4", "learning rate", 0, NULL},
    {"opt.betas", V3_CFG_NUMBER_LIST, "0.9,0.95", "betas", 0, NULL},
    {"opt.nested.flag", V3_CFG_BOOL, "false", "a flag two sections down", 0, NULL},
    {"files", V3_CFG_STRING_LIST, "", "input files", 0, NULL},
    {"rewards", V3_CFG_LIST, "{}", "reward modules", 0, NULL},
    {"extra", V3_CFG_TABLE, NULL, "open subtree", 0, NULL},
    {NULL, 0, NULL, NULL, 0, NULL},
};
static const v3_cfg_key *const test_parts[] = {test_keys, NULL};
static const v3_cfg_schema test_schema = {"test", test_parts, 0};

static int load(v3_cfg *cfg, const char *src, const char *const *sets, size_t n, v3_err *err) {
    return v3_cfg_load_string(cfg, &test_schema, "cfg.lua", src, strlen(src), sets, n, NULL, err);
}

/* Loads src expecting failure with `code` and a message containing `want`. */
static void expect_error(const char *src, const char *const *sets, size_t n, int code,
                         const char *want) {
    v3_cfg cfg;
    v3_err err = {0};
    int rc = load(&cfg, src, sets, n, &err);
    CHECK(rc == code, "%s: rc %d (want %d): %s", src, rc, code, err.msg);
    CHECK(strstr(err.msg, want) != NULL, "%s: message '%s' lacks '%s'", src, err.msg, want);
    CHECK(cfg.root == NULL && cfg.vals == NULL, "failed load left state");
    if (rc == V3_OK) v3_cfg_free(&cfg);
}

static void test_values_and_defaults(void) {
    const char *src = "local base = 2\n"
                      "return {\n"
                      "  name = 'run1',\n"
                      "  steps = base * 1e3,\n" /* a float with an integral value */
                      "  opt = { lr = 1, nested = { flag = true } },\n"
                      "  files = { 'a.jsonl', 'b.jsonl' },\n"
                      "  rewards = { { script = 'len.lua', weight = 0.5 }, { script = 'fmt.lua' } },\n"
                      "  extra = { anything = { goes = { 1, 2, 'x' } } },\n"
                      "}\n";
    v3_cfg cfg;
    v3_err err = {0};
    CHECK_OK(load(&cfg, src, NULL, 0, &err), &err);
    int64_t i;
    double d;
    int b;
    const char *s;
    size_t n;
    CHECK_OK(v3_cfg_get_string(&cfg, "name", &s, &err), &err);
    CHECK(!strcmp(s, "run1"), "name %s", s);
    CHECK_OK(v3_cfg_get_int(&cfg, "steps", &i, &err), &err);
    CHECK(i == 2000, "steps %lld", (long long)i);
    CHECK_OK(v3_cfg_get_number(&cfg, "steps", &d, &err), &err); /* integer read as number: ok */
    CHECK_OK(v3_cfg_get_number(&cfg, "opt.lr", &d, &err), &err);
    CHECK(d == 1.0, "lr %g", d);
    CHECK(v3_cfg_get_int(&cfg, "opt.lr", &i, &err) == V3_EINVAL &&
              strstr(err.msg, "'opt.lr' is a number, not a integer"),
          "number read as int: %s", err.msg);
    CHECK_OK(v3_cfg_get_bool(&cfg, "opt.nested.flag", &b, &err), &err);
    CHECK(b == 1, "flag");
    CHECK_OK(v3_cfg_get_string(&cfg, "mode", &s, &err), &err);
    CHECK(!strcmp(s, "fast"), "default mode %s", s);
    CHECK(v3_cfg_origin(&cfg, "mode") == V3_CFG_FROM_DEFAULT, "origin mode");
    CHECK(v3_cfg_origin(&cfg, "name") == V3_CFG_FROM_FILE, "origin name");
    CHECK(v3_cfg_origin(&cfg, "nope") == -1, "origin undeclared");
    CHECK_OK(v3_cfg_get_list_len(&cfg, "opt.betas", &n, &err), &err);
    CHECK(n == 2, "betas n %zu", n);
    CHECK_OK(v3_cfg_get_list_number(&cfg, "opt.betas", 1, &d, &err), &err);
    CHECK(d == 0.95, "beta2 %g", d);
    CHECK(v3_cfg_get_list_number(&cfg, "opt.betas", 2, &d, &err) == V3_ERANGE, "index past end");
    CHECK_OK(v3_cfg_get_list_string(&cfg, "files", 1, &s, &err), &err);
    CHECK(!strcmp(s, "b.jsonl"), "files[1] %s", s);
    CHECK_OK(v3_cfg_get_list_len(&cfg, "rewards", &n, &err), &err);
    CHECK(n == 2, "rewards %zu", n);
    /* open subtrees are reachable by path */
    CHECK_OK(v3_cfg_get_list_len(&cfg, "extra.anything.goes", &n, &err), &err);
    CHECK(n == 3, "goes %zu", n);
    const json_t *j;
    CHECK_OK(v3_cfg_get_json(&cfg, "rewards", &j, &err), &err);
    CHECK(json_is_array(j) && json_real_value(json_object_get(json_array_get(j, 0), "weight")) == 0.5,
          "rewards[0].weight");
    /* getter errors name the key, suggest, and say unset */
    CHECK(v3_cfg_get_number(&cfg, "opt.lrr", &d, &err) == V3_ENOTFOUND &&
              strstr(err.msg, "'opt.lrr' is not declared in schema 'test' (did you mean 'opt.lr'?)"),
          "undeclared: %s", err.msg);
    v3_cfg_free(&cfg);
    v3_cfg_free(&cfg); /* twice is fine */

    CHECK_OK(load(&cfg, "return { name = 'x' }", NULL, 0, &err), &err);
    CHECK(v3_cfg_get_json(&cfg, "extra", &j, &err) == V3_ENOTFOUND && strstr(err.msg, "not set"),
          "unset: %s", err.msg);
    CHECK(v3_cfg_origin(&cfg, "extra") == V3_CFG_UNSET, "unset origin");
    v3_cfg_free(&cfg);
    /* big tables: every pair is copied onto the Lua stack while it is read */
    const char *big = "local t, l = {}, {} for i = 1, 20000 do t['k' .. i] = i; l[i] = {i} end\n"
                      "return { name = 'x', extra = { t = t }, rewards = l }";
    CHECK_OK(load(&cfg, big, NULL, 0, &err), &err);
    CHECK_OK(v3_cfg_get_int(&cfg, "extra.t.k19999", &i, &err), &err);
    CHECK(i == 19999, "big table value %lld", (long long)i);
    CHECK_OK(v3_cfg_get_list_len(&cfg, "rewards", &n, &err), &err);
    CHECK(n == 20000, "big list %zu", n);
    v3_cfg_free(&cfg);
    CHECK_OK(load(&cfg, "return { name = 'x' }", NULL, 0, &err), &err);
    /* exact JSON: schema order, unset keys null, shortest reals */
    char *js = v3_cfg_to_json(&cfg, 0);
    const char *want = "{\"name\": \"x\", \"mode\": \"fast\", \"steps\": 10, \"opt\": {\"lr\": 0.0003, "
                       "\"betas\": [0.9, 0.95], \"nested\": {\"flag\": false}}, \"files\": [], "
                       "\"rewards\": [], \"extra\": null}\n";
    CHECK(js && !strcmp(js, want), "json:\n%s\nwant:\n%s", js ? js : "(null)", want);
    free(js);
    v3_cfg_free(&cfg);
}

static void test_errors(void) {
    /* unknown keys: line found in the source, nearest key suggested */
    expect_error("return {\n  name = 'x',\n  opt = {\n    lrr = 1,\n  },\n}", NULL, 0, V3_EINVAL,
                 "cfg.lua:4: unknown key 'opt.lrr' (did you mean 'opt.lr'?)");
    expect_error("return { name = 'x', lr = 1 }", NULL, 0, V3_EINVAL,
                 "cfg.lua:1: unknown key 'lr' (did you mean 'opt.lr'?)");
    expect_error("return { name = 'x', zzzz = 1 }", NULL, 0, V3_EINVAL, "unknown key 'zzzz'");
    expect_error("return { name = 'x', optt = { lr = 1 } }", NULL, 0, V3_EINVAL,
                 "unknown key 'optt' (did you mean 'opt'?)");
    /* the same name in another section is skipped when finding the line */
    expect_error("return {\n name = 'x',\n extra = { lr = 1 },\n opt = {\n  lr = 'x',\n },\n}", NULL,
                 0, V3_EINVAL, "cfg.lua:5: key 'opt.lr': expected number, found string \"x\"");
    /* type mismatches name the key, expected and found */
    expect_error("return { name = 1 }", NULL, 0, V3_EINVAL,
                 "key 'name': expected string, found integer 1");
    expect_error("return { name = 'x', steps = 0.5 }", NULL, 0, V3_EINVAL,
                 "key 'steps': expected integer, found number 0.5");
    expect_error("return { name = 'x', opt = 3 }", NULL, 0, V3_EINVAL,
                 "key 'opt': expected table (a section), found integer 3");
    expect_error("return { name = 'x', opt = { nested = { flag = 'yes' } } }", NULL, 0, V3_EINVAL,
                 "key 'opt.nested.flag': expected boolean, found string \"yes\"");
    expect_error("return { name = 'x', opt = { betas = { 0.9, 'b' } } }", NULL, 0, V3_EINVAL,
                 "key 'opt.betas': element 2: expected a finite number, found string \"b\"");
    expect_error("return { name = 'x', opt = { betas = { 0.9, [3] = 1 } } }", NULL, 0, V3_EINVAL,
                 "list with holes");
    expect_error("return { name = 'x', files = 'a.jsonl' }", NULL, 0, V3_EINVAL,
                 "key 'files': expected list of strings, found string");
    expect_error("return { name = 'x', mode = 'fats' }", NULL, 0, V3_EINVAL,
                 "\"fats\" is not one of fast|slow|exact (did you mean 'fast'?)");
    expect_error("return { name = 'x', opt = { lr = 0/0 } }", NULL, 0, V3_EINVAL,
                 "expected a finite number");
    expect_error("return { name = 'x', rewards = { a = 1 } }", NULL, 0, V3_EINVAL,
                 "key 'rewards': expected a list, found a table with named keys");
    expect_error("return { name = 'x', extra = { f = print } }", NULL, 0, V3_EINVAL,
                 "key 'extra.f': a function cannot be stored");
    expect_error("local t = {} t.self = t return { name = 'x', extra = t }", NULL, 0, V3_EINVAL,
                 "nested deeper than 32");
    expect_error("return { name = 'x', extra = { 1, k = 2 } }", NULL, 0, V3_EINVAL,
                 "mixes named keys and list elements");
    expect_error("return { name = 'x', extra = { s = '\\xff' } }", NULL, 0, V3_EINVAL,
                 "not valid UTF-8");
    expect_error("return { ['opt.lr'] = 1, name = 'x' }", NULL, 0, V3_EINVAL,
                 "a key may not contain '.'");
    expect_error("return { 'x' }", NULL, 0, V3_EINVAL, "must have named keys only");
    expect_error("return 5", NULL, 0, V3_EINVAL, "cfg.lua: the config must return a table, got number");
    expect_error("return {}", NULL, 0, V3_EINVAL, "cfg.lua: missing required key 'name' (run name)");
    /* Lua errors keep chunk:line */
    expect_error("return {\n name = 'x' .. nil }", NULL, 0, V3_EINVAL,
                 "cfg.lua:2: attempt to concatenate a nil value");
    expect_error("return {\n name = }", NULL, 0, V3_EFORMAT, "cfg.lua:2: unexpected symbol near '}'");
    expect_error("os.exit(1)", NULL, 0, V3_EINVAL, "attempt to index a nil value (global 'os')");
    /* budgets */
    expect_error("while true do end", NULL, 0, V3_ENOMEM, "cfg.lua: instruction budget of 20000000 exceeded");
    expect_error("local t = {} for i = 1, 1e9 do t[i] = i end", NULL, 0, V3_ENOMEM,
                 "memory cap of 67108864 bytes exceeded");
}

static void test_overrides(void) {
    const char *src = "return { name = 'x', extra = { keep = 1 } }";
    const char *sets[] = {
        "name=a=b",                 /* everything after the first '=' */
        "mode=slow",
        "steps=1e3",
        "opt.lr=0.5",
        "opt.betas= 0.8 , 0.85",
        "opt.nested.flag=true",
        "files={'a,b', 'c'}",
        "rewards={{script='len.lua'}}",
        "extra.deep.n=3",
        "extra.deep.s=hello",
        "extra.deep.f=2.5",
        "extra.deep.t={1, 2}",
        "opt.lr=0.25",              /* later --set wins */
    };
    v3_cfg cfg;
    v3_err err = {0};
    CHECK_OK(load(&cfg, src, sets, sizeof sets / sizeof sets[0], &err), &err);
    char *js = v3_cfg_to_json(&cfg, 0);
    const char *want = "{\"name\": \"a=b\", \"mode\": \"slow\", \"steps\": 1000, \"opt\": {\"lr\": 0.25, "
                       "\"betas\": [0.8, 0.85], \"nested\": {\"flag\": true}}, \"files\": [\"a,b\", "
                       "\"c\"], \"rewards\": [{\"script\": \"len.lua\"}], \"extra\": {\"keep\": 1, "
                       "\"deep\": {\"n\": 3, \"s\": \"hello\", \"f\": 2.5, \"t\": [1, 2]}}}\n";
    CHECK(js && !strcmp(js, want), "json:\n%s\nwant:\n%s", js ? js : "(null)", want);
    free(js);
    CHECK(v3_cfg_origin(&cfg, "opt.lr") == V3_CFG_FROM_SET, "origin set");
    CHECK(v3_cfg_origin(&cfg, "extra") == V3_CFG_FROM_SET, "origin open set");
    v3_cfg_free(&cfg);

    const char *one[1];
#define SET_ERR(s, want)                                                        \
    do {                                                                        \
        one[0] = s;                                                             \
        expect_error("return { name = 'x' }", one, 1, V3_EUSAGE, want);         \
    } while (0)
    SET_ERR("opt.lrr=1", "--set: unknown key 'opt.lrr' (did you mean 'opt.lr'?)");
    SET_ERR("lr=1", "(did you mean 'opt.lr'?)");
    SET_ERR("opt.lr", "--set expects KEY=VALUE");
    SET_ERR("=1", "--set expects KEY=VALUE");
    SET_ERR("opt=1", "'opt' is a section");
    SET_ERR("steps=1.5", "--set steps: expected integer, found \"1.5\"");
    SET_ERR("steps=", "expected integer");
    SET_ERR("opt.lr=fast", "--set opt.lr: expected number, found \"fast\"");
    SET_ERR("opt.lr=nan", "expected number");
    SET_ERR("opt.nested.flag=yes", "expected boolean (true or false), found \"yes\"");
    SET_ERR("opt.betas=0.9,x", "expected a list of numbers, found item \"x\"");
    SET_ERR("opt.betas={0.9, 'x'}", "element 2: expected a finite number");
    SET_ERR("rewards=len.lua", "expected a Lua table literal");
    SET_ERR("rewards={", "bad Lua literal: rewards:1:");
    SET_ERR("mode=quick", "\"quick\" is not one of fast|slow|exact");
    /* below an open subtree, a scalar cannot become a table */
    const char *two[] = {"extra.a=1", "extra.a.b=2"};
    expect_error("return { name = 'x' }", two, 2, V3_EUSAGE, "'extra.a' is already a value");
    /* a runaway literal is a budget error, not a hang */
    one[0] = "rewards={(function() while true do end end)()}";
    v3_cfg c2;
    int rc = load(&c2, "return { name = 'x' }", one, 1, &err);
    CHECK(rc == V3_ENOMEM && strstr(err.msg, "instruction budget"), "literal loop rc %d: %s", rc,
          err.msg);
    if (rc == V3_OK) v3_cfg_free(&c2);
#undef SET_ERR
}

/* Dump as Lua, load it back, and compare the JSON of both. */
static void check_round_trip(const v3_cfg_schema *schema, const char *src, const char *const *sets,
                             size_t n) {
    v3_cfg a, b;
    v3_err err = {0};
    CHECK_OK(v3_cfg_load_string(&a, schema, "a.lua", src, strlen(src), sets, n, NULL, &err), &err);
    if (err.code) return;
    char *lua = v3_cfg_to_lua(&a);
    CHECK(lua != NULL, "to_lua");
    CHECK_OK(v3_cfg_load_string(&b, schema, "dump.lua", lua, strlen(lua), NULL, 0, NULL, &err), &err);
    if (!err.code) {
        char *ja = v3_cfg_to_json(&a, 2), *jb = v3_cfg_to_json(&b, 2);
        CHECK(ja && jb && !strcmp(ja, jb), "round trip differs:\n%s\n--- vs ---\n%s\n--- lua ---\n%s",
              ja, jb, lua);
        free(ja);
        free(jb);
        v3_cfg_free(&b);
    } else {
        fprintf(stderr, "%s\n", lua);
    }
    free(lua);
    v3_cfg_free(&a);
}

static void test_dumps(void) {
    const char *src = "return { name = 'we\"ird\\n\\1name\\\\', steps = -9223372036854775807 - 1,\n"
                      "  opt = { lr = 0.1 + 0.2, betas = { 1e-300, 2^53 } },\n"
                      "  extra = { ['not an ident'] = { ['end'] = true, x = -0.0 }, e = {} },\n"
                      "  rewards = { { script = 'r.lua', opts = { 1, 2.5, 'three' } } } }";
    check_round_trip(&test_schema, src, NULL, 0);
    const char *sets[] = {"data.train=x.jsonl", "model.dir=m"};
    check_round_trip(&v3_cfg_schema_sft, "return {}", sets, 2);
    check_round_trip(&v3_cfg_schema_generic, "return { a = { b = { 1, 2 } }, c = 'd' }", NULL, 0);

    v3_cfg cfg;
    v3_err err = {0};
    CHECK_OK(load(&cfg, "return { name = 'x', opt = { lr = 1e-5 } }", NULL, 0, &err), &err);
    char *lua = v3_cfg_to_lua(&cfg);
    CHECK(lua && strstr(lua, "    lr = 1e-05, -- learning rate [number: file]\n"), "lua dump:\n%s", lua ? lua : "");
    CHECK(lua && strstr(lua, "  extra = nil, -- open subtree [table: unset]\n"), "lua dump nil:\n%s", lua ? lua : "");
    CHECK(lua && strstr(lua, "  steps = 10, -- steps [integer: default]\n"), "lua dump default:\n%s", lua ? lua : "");
    free(lua);
    v3_cfg_free(&cfg);
}

static void test_schema_checks(void) {
    static const v3_cfg_key dup[] = {{"a.b", V3_CFG_INT, NULL, "", 0, NULL},
                                     {"a.b", V3_CFG_INT, NULL, "", 0, NULL},
                                     {NULL, 0, NULL, NULL, 0, NULL}};
    static const v3_cfg_key below[] = {{"a", V3_CFG_TABLE, NULL, "", 0, NULL},
                                       {"a.b", V3_CFG_INT, NULL, "", 0, NULL},
                                       {NULL, 0, NULL, NULL, 0, NULL}};
    static const v3_cfg_key badpath[] = {{"a..b", V3_CFG_INT, NULL, "", 0, NULL},
                                         {NULL, 0, NULL, NULL, 0, NULL}};
    static const v3_cfg_key baddef[] = {{"n", V3_CFG_INT, "ten", "", 0, NULL},
                                        {NULL, 0, NULL, NULL, 0, NULL}};
    struct {
        const v3_cfg_key *keys;
        const char *want;
    } cases[] = {{dup, "key 'a.b' declared twice"},
                 {below, "key 'a.b' is declared below key 'a'"},
                 {badpath, "bad key path 'a..b'"},
                 {baddef, "schema 'bad': default of 'n': expected integer, found \"ten\""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const v3_cfg_key *parts[] = {cases[i].keys, NULL};
        v3_cfg_schema s = {"bad", parts, 0};
        v3_cfg cfg;
        v3_err err = {0};
        int rc = v3_cfg_load_string(&cfg, &s, "c.lua", "return {}", 9, NULL, 0, NULL, &err);
        CHECK(rc == V3_EINVAL && strstr(err.msg, cases[i].want), "case %zu: rc %d %s", i, rc, err.msg);
    }
    /* the provisional command schemas are well formed and their defaults parse */
    const char *sets[] = {"model.dir=m", "data.train=t", "data.prompts=p"};
    for (const char *const *n = v3_cfg_schema_names(); *n; n++) {
        v3_cfg cfg;
        v3_err err = {0};
        const v3_cfg_schema *s = v3_cfg_schema_find(*n);
        CHECK(s != NULL, "schema %s", *n);
        int rc = v3_cfg_load_string(&cfg, s, "c.lua", "return {}", 9, sets, s->open ? 0 : 2, NULL, &err);
        if (!strcmp(*n, "grpo")) { /* grpo needs data.prompts, not data.train */
            CHECK(rc == V3_EUSAGE, "grpo with data.train: %s", err.msg);
            rc = v3_cfg_load_string(&cfg, s, "c.lua", "return {}", 9, (const char *[]){sets[0], sets[2]},
                                    2, NULL, &err);
        }
        CHECK(rc == V3_OK, "schema %s: %s", *n, err.msg);
        if (rc == V3_OK) v3_cfg_free(&cfg);
    }
    CHECK(v3_cfg_schema_find("nope") == NULL, "unknown schema");
    /* suggestions */
    char near[64];
    const v3_cfg_key *keys[] = {&test_keys[3], &test_keys[4], &test_keys[2]};
    v3_cfg_suggest(keys, 3, "opt.lrr", near, sizeof near);
    CHECK(!strcmp(near, "opt.lr"), "suggest %s", near);
    v3_cfg_suggest(keys, 3, "completely.different", near, sizeof near);
    CHECK(near[0] == 0, "no suggestion expected, got %s", near);
    CHECK(v3_cfg_edit_distance("kitten", 6, "sitting", 7) == 3, "levenshtein");
    CHECK(v3_cfg_edit_distance("fats", 4, "fast", 4) == 1, "transposition");
}

/* ---- the fail-the-Nth-allocation sweep ---- */

/* jansson's allocator is process-wide and takes no user pointer, so the test points it at the
 * current sweep's counter through this one test-local variable. */
static v3_alloc_fault *g_fault;
static void *t_json_malloc(size_t n) { return v3_fault_malloc(g_fault, n); }
static void t_json_free(void *p) { free(p); }

static void test_fault_sweep(void) {
    const char *src = "local seq = 1024\n"
                      "return { name = 'sweep', steps = seq, opt = { betas = { 0.8, 0.9 } },\n"
                      "  files = { 'a', 'b' }, rewards = { { script = 'x.lua', w = { 1, 2 } } },\n"
                      "  extra = { k = 'v' } }";
    const char *sets[] = {"opt.lr=1e-3", "rewards={{script='y.lua'}}", "extra.n.m=2", "mode=slow"};
    size_t n_sets = sizeof sets / sizeof sets[0];
    v3_err err = {0};
    v3_cfg cfg;
    CHECK_OK(load(&cfg, src, sets, n_sets, &err), &err);
    char *want = v3_cfg_to_json(&cfg, 0);
    v3_cfg_free(&cfg);
    json_set_alloc_funcs(t_json_malloc, t_json_free);
    for (int persist = 0; persist <= 1; persist++) {
        int64_t nth, failures = 0;
        for (nth = 1; nth < 200000; nth++) {
            v3_alloc_fault fault = {.fail_at = nth, .persist = persist};
            v3_cfg_opts opts = {.limits = {.fault = &fault}};
            g_fault = &fault;
            int rc = v3_cfg_load_string(&cfg, &test_schema, "cfg.lua", src, strlen(src), sets,
                                        n_sets, &opts, &err);
            g_fault = NULL;
            if (rc == V3_OK) {
                char *got = v3_cfg_to_json(&cfg, 0);
                /* a one-shot failure may be absorbed (Lua retries after a collection): the result
                 * must then be exactly right */
                CHECK(got && want && !strcmp(got, want), "nth %lld persist %d: wrong result %s",
                      (long long)nth, persist, got);
                free(got);
                v3_cfg_free(&cfg);
            } else {
                failures++;
                CHECK(rc == V3_ENOMEM, "nth %lld persist %d: rc %d: %s", (long long)nth, persist, rc,
                      err.msg);
                CHECK(cfg.root == NULL && cfg.vals == NULL, "state left after failure");
            }
            if (fault.failed == 0) break; /* the load never reached allocation N: sweep complete */
        }
        printf("fault sweep (persist %d): %lld allocations, %lld clean failures\n", persist,
               (long long)nth - 1, (long long)failures);
        CHECK(nth > 200 && nth < 200000, "sweep covered %lld allocations", (long long)nth);
        CHECK(failures > 0, "no failure was reported");
    }
    json_set_alloc_funcs(malloc, free);
    free(want);
}

int main(void) {
    test_values_and_defaults();
    test_errors();
    test_overrides();
    test_dumps();
    test_schema_checks();
    test_fault_sweep();
    return t_finish("test_lua_config");
}
