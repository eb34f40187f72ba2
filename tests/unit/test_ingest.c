/* test_ingest.c — every row format into the one conversation form, field mapping, and the exact
 * reason for each kind of bad row. */
#include <stdlib.h>
#include <string.h>

#include "datasets/ingest.h"
#include "datasets/jsonl.h"
#include "testutil.h"

static int parse(const v3_ingest_opts *o, const char *row, v3_conv *c, v3_err *err) {
    return v3_ingest_row(o, row, strlen(row), c, err);
}

static int msg_is(const v3_conv *c, int i, v3_role role, const char *content) {
    if (i >= c->n_msgs) return 0;
    const v3_msg *m = &c->msgs[i];
    if (m->role != role) return 0;
    if (!content) return m->content == NULL;
    return m->content && strcmp(m->content, content) == 0;
}

static void test_formats(void) {
    v3_ingest_opts o;
    v3_ingest_opts_default(&o);
    v3_conv c;
    v3_conv_init(&c);
    v3_err err = {0};

    /* OpenAI messages with reasoning, tool calls (string and object arguments), tool role, parts */
    CHECK_OK(parse(&o,
                   "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                   "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"A\"},{\"type\":\"text\",\"text\":\"B\"}]},"
                   "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"type\":\"function\",\"function\":"
                   "{\"name\":\"f\",\"arguments\":\"{\\\"x\\\": 1}\"}},{\"function\":{\"name\":\"g\",\"arguments\":{\"y\":[1,2]}}}]},"
                   "{\"role\":\"tool\",\"content\":\"R\"},"
                   "{\"role\":\"assistant\",\"content\":\"done\",\"reasoning_content\":\"think\"}],"
                   "\"tools\":[{\"name\":\"f\"}]}",
                   &c, &err),
             &err);
    CHECK(c.n_msgs == 5, "messages: %d", c.n_msgs);
    CHECK(msg_is(&c, 0, V3_ROLE_SYSTEM, "S") && msg_is(&c, 1, V3_ROLE_USER, "AB") && msg_is(&c, 2, V3_ROLE_ASSISTANT, NULL) &&
              msg_is(&c, 3, V3_ROLE_TOOL, "R") && msg_is(&c, 4, V3_ROLE_ASSISTANT, "done"),
          "messages content");
    if (c.n_msgs == 5) {
        CHECK(c.msgs[2].n_calls == 2 && strcmp(c.msgs[2].calls[0].name, "f") == 0 &&
                  strcmp(c.msgs[2].calls[0].arguments, "{\"x\": 1}") == 0 && strcmp(c.msgs[2].calls[0].type, "function") == 0,
              "first call");
        CHECK(c.msgs[2].n_calls == 2 && strcmp(c.msgs[2].calls[1].arguments, "{\"y\":[1,2]}") == 0,
              "object arguments serialised compactly: %s", c.msgs[2].n_calls == 2 ? c.msgs[2].calls[1].arguments : "");
        CHECK(c.msgs[4].reasoning && strcmp(c.msgs[4].reasoning, "think") == 0, "reasoning_content kept");
        CHECK(c.tools && strcmp(c.tools, "[{\"name\":\"f\"}]") == 0, "tools: %s", c.tools ? c.tools : "(null)");
    }

    /* ShareGPT with function_call / observation and top-level system */
    CHECK_OK(parse(&o,
                   "{\"system\":\"SYS\",\"tools\":\"[]\",\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},"
                   "{\"from\":\"function_call\",\"value\":\"{\\\"name\\\": \\\"s\\\", \\\"arguments\\\": {\\\"a\\\": 1}}\"},"
                   "{\"from\":\"observation\",\"value\":\"{}\"},{\"from\":\"gpt\",\"value\":\"ans\"}]}",
                   &c, &err),
             &err);
    CHECK(c.n_msgs == 5 && msg_is(&c, 0, V3_ROLE_SYSTEM, "SYS") && msg_is(&c, 1, V3_ROLE_USER, "q") &&
              msg_is(&c, 2, V3_ROLE_ASSISTANT, NULL) && msg_is(&c, 3, V3_ROLE_TOOL, "{}") && msg_is(&c, 4, V3_ROLE_ASSISTANT, "ans"),
          "sharegpt: %d msgs", c.n_msgs);
    if (c.n_msgs == 5)
        CHECK(c.msgs[2].n_calls == 1 && strcmp(c.msgs[2].calls[0].name, "s") == 0 &&
                  strcmp(c.msgs[2].calls[0].arguments, "{\"a\":1}") == 0,
              "function_call → tool call");

    /* Alpaca: instruction + "\n" + input, history pairs, system */
    CHECK_OK(parse(&o, "{\"instruction\":\"Do\",\"input\":\"this\",\"output\":\"ok\",\"history\":[[\"h1\",\"a1\"]]}", &c, &err), &err);
    CHECK(c.n_msgs == 4 && msg_is(&c, 0, V3_ROLE_USER, "h1") && msg_is(&c, 1, V3_ROLE_ASSISTANT, "a1") &&
              msg_is(&c, 2, V3_ROLE_USER, "Do\nthis") && msg_is(&c, 3, V3_ROLE_ASSISTANT, "ok"),
          "alpaca");
    CHECK_OK(parse(&o, "{\"instruction\":\"Do\",\"input\":\"\",\"output\":\"ok\"}", &c, &err), &err);
    CHECK(c.n_msgs == 2 && msg_is(&c, 0, V3_ROLE_USER, "Do"), "alpaca empty input");

    /* prompt/completion: strings and TRL conversational lists */
    CHECK_OK(parse(&o, "{\"prompt\":\"P\",\"completion\":\"C\"}", &c, &err), &err);
    CHECK(c.n_msgs == 2 && msg_is(&c, 0, V3_ROLE_USER, "P") && msg_is(&c, 1, V3_ROLE_ASSISTANT, "C"), "prompt/completion");
    CHECK_OK(parse(&o, "{\"prompt\":[{\"role\":\"user\",\"content\":\"P\"}],\"completion\":[{\"role\":\"assistant\",\"content\":\"C\"}]}", &c, &err), &err);
    CHECK(c.n_msgs == 2 && msg_is(&c, 1, V3_ROLE_ASSISTANT, "C"), "conversational prompt/completion");

    /* text */
    CHECK_OK(parse(&o, "{\"text\":\"raw\"}", &c, &err), &err);
    CHECK(c.n_msgs == 1 && msg_is(&c, 0, V3_ROLE_TEXT, "raw"), "text");

    /* field mapping (gsm8k) and think splitting (R1 dumps) */
    v3_ingest_opts g;
    v3_ingest_opts_default(&g);
    char s1[] = "prompt=question", s2[] = "completion=answer", s3[] = "bogus=x";
    CHECK_OK(v3_ingest_map_field(&g, s1, &err), &err);
    CHECK_OK(v3_ingest_map_field(&g, s2, &err), &err);
    CHECK(v3_ingest_map_field(&g, s3, &err) == V3_EUSAGE && strcmp(err.msg, "unknown field key \"bogus\" in a field mapping") == 0,
          "bad mapping: %s", err.msg);
    g.split_think = 1;
    CHECK_OK(parse(&g, "{\"question\":\"Q\",\"answer\":\"<think>\\nR\\n</think>\\n\\nA\"}", &c, &err), &err);
    CHECK(c.n_msgs == 2 && msg_is(&c, 1, V3_ROLE_ASSISTANT, "A") && c.msgs[1].reasoning && strcmp(c.msgs[1].reasoning, "R") == 0,
          "split think");
    v3_conv_free(&c);
}

/* Each bad-row kind gives exactly this reason (the pipeline prefixes file:line). */
static void test_bad_rows(void) {
    static const struct { const char *row; const char *reason; } cases[] = {
        {"{\"messages\": [", "invalid JSON: ']' expected near end of file (line 1, column 14 of the row)"},
        {"{\"a\":1} x", "invalid JSON: end of file expected near 'x' (line 1, column 9 of the row)"},
        {"[1,2]", "row is not a JSON object (got array)"},
        {"{\"foo\":1}", "no known fields (expected \"messages\", \"conversations\", \"instruction\", \"prompt\"/\"completion\" or \"text\")"},
        {"{\"instruction\":\"x\",\"output\":5}", "field \"output\" is not a string (got integer)"},
        {"{\"prompt\":\"x\"}", "missing field \"completion\""},
        {"{\"instruction\":\"x\"}", "missing field \"output\""},
        {"{\"messages\":[]}", "empty conversation"},
        {"{\"messages\":{}}", "field \"messages\" is not a list (got object)"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"s\"}]}", "empty conversation"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}", "no assistant message (nothing to train on)"},
        {"{\"messages\":[{\"role\":\"bot\",\"content\":\"q\"}]}", "messages[0]: unknown role \"bot\""},
        {"{\"messages\":[{\"content\":\"q\"}]}", "messages[0]: missing field \"role\""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\"}]}", "messages[1]: missing field \"content\""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":7}]}", "messages[0]: field \"content\" is not a string (got integer)"},
        {"{\"messages\":[3]}", "messages[0]: not an object (got integer)"},
        {"{\"conversations\":[{\"from\":\"human\"}]}", "conversations[0]: missing field \"value\""},
        {"{\"conversations\":[{\"from\":\"function_call\",\"value\":\"nope\"}]}",
         "conversations[0]: function_call value is not JSON: '[' or '{' expected near 'nope'"},
        {"{\"conversations\":[]}", "empty conversation"},
        {"{\"conversations\":[{\"from\":\"function_call\",\"value\":\"[]\"}]}", "conversations[0]: function_call value holds no call"},
        {"{\"text\":\"\"}", "empty text"},
        {"{\"text\":null}", "missing field \"text\""},
    };
    v3_ingest_opts o;
    v3_ingest_opts_default(&o);
    v3_conv c;
    v3_conv_init(&c);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        v3_err err = {0};
        int rc = parse(&o, cases[i].row, &c, &err);
        CHECK(rc == V3_EFORMAT, "case %zu (%s): rc %d", i, cases[i].row, rc);
        CHECK(strcmp(err.msg, cases[i].reason) == 0, "case %zu (%s):\n   got  %s\n   want %s", i, cases[i].row, err.msg,
              cases[i].reason);
        CHECK(c.n_msgs == 0, "case %zu left %d messages", i, c.n_msgs);
    }
    /* a forced format reports the missing field of that format */
    o.format = V3_FMT_ALPACA;
    v3_err err = {0};
    CHECK(parse(&o, "{\"messages\":[]}", &c, &err) == V3_EFORMAT && strcmp(err.msg, "missing field \"instruction\"") == 0,
          "forced alpaca: %s", err.msg);
    v3_conv_free(&c);
}

/* Every row of the shared demo sets parses, with the role counts SOURCE.md states. */
static void test_shared(void) {
    char path[4096];
    v3_ingest_opts o;
    v3_ingest_opts_default(&o);
    v3_conv c;
    v3_conv_init(&c);
    const char *files[2] = {"sft_llamafactory_demo/alpaca_en_demo.json", "sft_llamafactory_demo/glaive_toolcall_en_demo.json"};
    int want_rows[2] = {999, 300};
    for (int f = 0; f < 2; f++) {
        v3_jsonl *j;
        v3_err err = {0};
        CHECK_OK(v3_jsonl_open(&j, t_data_path(files[f], path, sizeof path), V3_JSONL_AUTO, 0, &err), &err);
        int rows = 0, bad = 0, calls = 0, tools = 0, users = 0;
        for (;;) {
            v3_record rec;
            int got;
            if (v3_jsonl_next(j, &rec, &got, &err) || !got) break;
            rows++;
            if (v3_ingest_row(&o, rec.text, rec.len, &c, &err)) {
                bad++;
                fprintf(stderr, "%s:%lld: %s\n", files[f], (long long)rec.line, err.msg);
                continue;
            }
            for (int i = 0; i < c.n_msgs; i++) {
                calls += c.msgs[i].n_calls;
                tools += c.msgs[i].role == V3_ROLE_TOOL;
                users += c.msgs[i].role == V3_ROLE_USER;
            }
        }
        v3_jsonl_close(j);
        CHECK(rows == want_rows[f] && bad == 0, "%s: %d rows, %d bad", files[f], rows, bad);
        if (f == 1) CHECK(calls == 211 && tools == 211 && users == 746, "glaive: %d calls, %d tool msgs, %d user", calls, tools, users);
    }
    v3_conv_free(&c);
}

int main(void) {
    t_seed("test_ingest"); /* deterministic cases; the seed line keeps the log uniform */
    test_formats();
    test_bad_rows();
    test_shared();
    return t_finish("test_ingest");
}
