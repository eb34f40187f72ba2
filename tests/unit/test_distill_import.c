/* test_distill_import.c — `distill import` on small inline files: every row form (OpenAI messages
 * and responses with reasoning_content, inline <think>, OpenR1 / OpenThoughts / LIMO / s1 rows,
 * Misguided-Attention-style documents with lists of generations), explicit field mappings, zstd,
 * duplicates (within a file, across whitespace, across imports), malformed rows reported as
 * file:line: reason and counted, provenance, source labels as verdicts. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "datasets/distill.h"
#include "datasets/store.h"
#include "testutil.h"

static char dir[512];

static const char *write_file(const char *name, const char *text) {
    static char path[8][1024];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 1024, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

static int64_t sql_i64(const char *db_path, const char *sql) {
    v3_store *s = NULL;
    v3_err err = {0};
    int64_t v = -999;
    if (v3_store_open(&s, db_path, V3_STORE_READ, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return v;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(v3_store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "sql failed: %s: %s\n", sql, sqlite3_errmsg(v3_store_db(s)));
    sqlite3_finalize(st);
    v3_store_close(s, NULL);
    return v;
}

/* The first column of the first row as text (caller frees), or NULL. */
static char *sql_text(const char *db_path, const char *sql) {
    v3_store *s = NULL;
    v3_err err = {0};
    char *v = NULL;
    if (v3_store_open(&s, db_path, V3_STORE_READ, &err)) return NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(v3_store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    v3_store_close(s, NULL);
    return v;
}

#define CHECK_TEXT(db, sql, want)                                                   \
    do {                                                                            \
        char *got_ = sql_text(db, sql);                                             \
        CHECK(got_ && !strcmp(got_, want), "%s: got [%s], want [%s]", sql,          \
              got_ ? got_ : "(null)", want);                                        \
        free(got_);                                                                 \
    } while (0)

/* Imports files into a fresh db; the log goes to a buffer the caller frees. */
static int import(const char *db, const char *const *files, int n, v3_distill_import_opts *o,
                  v3_distill_import_stats *st, char **log) {
    size_t len = 0;
    FILE *mem = open_memstream(log, &len);
    o->log = mem;
    v3_err err = {0};
    int rc = v3_distill_import(db, files, n, o, st, &err);
    fclose(mem);
    if (rc) fprintf(stderr, "import: %s\n", err.msg);
    return rc;
}

static void test_messages_and_responses(void) {
    char db[600];
    snprintf(db, sizeof db, "%s/msgs.db", dir);
    const char *f = write_file("msgs.jsonl",
        /* OpenAI messages, reasoning in reasoning_content */
        "{\"messages\": [{\"role\": \"system\", \"content\": \"be careful\"}, {\"role\": \"user\", "
        "\"content\": \"What is 2+2?\"}, {\"role\": \"assistant\", \"reasoning_content\": \"2 and 2 "
        "make 4.\", \"content\": \"\\\\boxed{4}\"}], \"answer\": \"4\"}\n"
        /* messages with inline <think> */
        "{\"messages\": [{\"role\": \"user\", \"content\": \"What is 3+3?\"}, {\"role\": "
        "\"assistant\", \"content\": \"<think>\\n3 and 3 make 6.\\n</think>\\n\\n6\"}]}\n"
        /* OpenThoughts: system + ShareGPT conversations with thought markers */
        "{\"system\": \"Think first.\", \"conversations\": [{\"from\": \"user\", \"value\": \"Name "
        "a prime.\"}, {\"from\": \"assistant\", \"value\": \"<|begin_of_thought|>\\n\\n2 is prime."
        "\\n\\n<|end_of_thought|>\\n\\n<|begin_of_solution|>\\n\\n2\\n\\n<|end_of_solution|>\"}]}\n"
        /* an OpenAI chat completion with two choices, the second cut off by max_tokens */
        "{\"request\": {\"messages\": [{\"role\": \"user\", \"content\": \"What is 5*5?\"}]}, "
        "\"response\": {\"model\": \"deepseek-reasoner\", \"choices\": [{\"message\": {\"role\": "
        "\"assistant\", \"reasoning_content\": \"5 fives.\", \"content\": \"25\"}, \"finish_reason\": "
        "\"stop\"}, {\"message\": {\"role\": \"assistant\", \"reasoning_content\": \"Let me count "
        "5, 10,\", \"content\": \"\"}, \"finish_reason\": \"length\"}]}}\n"
        /* a flat completion object: prompt messages beside the choices */
        "{\"model\": \"deepseek-r1\", \"messages\": [{\"role\": \"user\", \"content\": \"What is "
        "7-2?\"}], \"choices\": [{\"message\": {\"content\": \"<think>7 minus 2</think>5\"}}]}\n");
    v3_distill_import_opts o;
    v3_distill_import_opts_default(&o);
    o.source_model = "deepseek-r1";
    v3_distill_import_stats st;
    char *log = NULL;
    CHECK(import(db, &f, 1, &o, &st, &log) == 0, "import");
    CHECK(st.rows == 5 && st.bad_rows == 0 && st.traces == 6 && st.added == 6 && st.truncated == 1 &&
          st.prompts == 5, "rows %lld bad %lld traces %lld added %lld truncated %lld prompts %lld",
          (long long)st.rows, (long long)st.bad_rows, (long long)st.traces, (long long)st.added,
          (long long)st.truncated, (long long)st.prompts);
    CHECK(log && !log[0], "no complaints: %s", log);
    free(log);
    CHECK_TEXT(db, "SELECT reasoning || '|' || answer FROM traces WHERE id = 1", "2 and 2 make 4.|\\boxed{4}");
    CHECK_TEXT(db, "SELECT p.messages FROM traces t JOIN prompts p ON p.id = t.prompt_id WHERE t.id = 1",
               "[{\"role\":\"system\",\"content\":\"be careful\"},{\"role\":\"user\",\"content\":\"What is 2+2?\"}]");
    CHECK_TEXT(db, "SELECT p.fields FROM traces t JOIN prompts p ON p.id = t.prompt_id WHERE t.id = 1",
               "{\"answer\":\"4\"}");
    CHECK_TEXT(db, "SELECT reasoning || '|' || answer FROM traces WHERE id = 2", "3 and 3 make 6.|6");
    CHECK_TEXT(db, "SELECT reasoning || '|' || answer FROM traces WHERE id = 3", "2 is prime.|2");
    CHECK_TEXT(db, "SELECT p.messages FROM traces t JOIN prompts p ON p.id = t.prompt_id WHERE t.id = 3",
               "[{\"role\":\"system\",\"content\":\"Think first.\"},{\"role\":\"user\",\"content\":\"Name a prime.\"}]");
    CHECK_TEXT(db, "SELECT source_model || '|' || answer || '|' || truncated FROM traces WHERE id = 4",
               "deepseek-reasoner|25|0");
    CHECK_TEXT(db, "SELECT reasoning || '|' || truncated || '|' || json_extract(provenance, '$.generation') "
               "FROM traces WHERE id = 5", "Let me count 5, 10,|1|1");
    CHECK_TEXT(db, "SELECT p.text || '|' || t.reasoning || '|' || t.answer || '|' || t.source_model "
               "FROM traces t JOIN prompts p ON p.id = t.prompt_id WHERE t.id = 6",
               "What is 7-2?|7 minus 2|5|deepseek-r1");
    CHECK_TEXT(db, "SELECT json_extract(provenance, '$.form') || json_extract(provenance, '$.line') "
               "FROM traces WHERE id = 3", "messages3");
    CHECK_TEXT(db, "SELECT group_concat(json_extract(provenance, '$.form'), ',') FROM traces",
               "messages,messages,messages,response,response,response");
    CHECK(sql_i64(db, "SELECT count(*) FROM runs WHERE command = 'distill import' AND status = "
                      "'completed'") == 1, "the import is a completed run");
    CHECK(sql_i64(db, "SELECT count(*) FROM traces WHERE run_id = 1 AND key IS NOT NULL") == 6,
          "traces belong to the run and have keys");
}

static void test_dataset_rows(void) {
    char db[600];
    snprintf(db, sizeof db, "%s/rows.db", dir);
    const char *f = write_file("rows.jsonl",
        /* OpenR1-Math: several generations with correctness flags */
        "{\"problem\": \"Find x if 2x = 8.\", \"solution\": \"Divide: x = 4.\", \"answer\": \"4\", "
        "\"generations\": [\"<think>\\n2x=8 so x=4\\n</think>\\n\\n\\\\boxed{4}\", \"<think>\\nx=3?\\n"
        "</think>\\n\\n\\\\boxed{3}\"], \"correctness_math_verify\": [true, false]}\n"
        /* LIMO: the solution is the reasoning, ending in a final answer section */
        "{\"question\": \"What is 10/2?\", \"solution\": \"Half of ten is five.\\n\\n**Final Answer**"
        "\\n\\\\boxed{5}\", \"answer\": \"5\"}\n"
        /* s1K: thinking_trajectories + attempt, reference in solution */
        "{\"question\": \"What is 9-4?\", \"solution\": \"9-4 = \\\\boxed{5}\", \"thinking_trajectories\": "
        "[\"Nine minus four.\"], \"attempt\": \"The answer is 5.\", \"cot_type\": \"math\"}\n"
        /* MiP-Overthinking dump: reasoning + </think> + answer in an oddly named field, GSM8K reference */
        "{\"question\": \"James runs 3 sprints of 60 m. Total?\", \"answer\": \"3*60=180\\n#### 180\", "
        "\"deepseek-reasoner (question)\": \"3 times 60.</think>He runs 180 meters.\"}\n"
        /* AIME probing rows: completion + is_correct */
        "{\"id\": \"0\", \"instruction\": \"Sum of bases?\", \"answer\": \"70\", \"completion\": "
        "\"<think>\\nbases 21 and 49\\n</think>\\n\\n\\\\boxed{70}\", \"is_correct\": true}\n"
        /* flat reasoning_content/content with eval_result 2 (wrong) */
        "{\"prompt\": \"Capital of France?\", \"reasoning_content\": \"It is Paris.\", \"content\": "
        "\"Paris\", \"eval_result\": 2, \"llm\": \"deepseek-r1-0528\"}\n");
    v3_distill_import_opts o;
    v3_distill_import_opts_default(&o);
    v3_distill_import_stats st;
    char *log = NULL;
    CHECK(import(db, &f, 1, &o, &st, &log) == 0, "import");
    CHECK(st.rows == 6 && st.bad_rows == 0 && st.added == 7 && st.labelled == 4,
          "rows %lld bad %lld added %lld labelled %lld: %s", (long long)st.rows,
          (long long)st.bad_rows, (long long)st.added, (long long)st.labelled, log);
    free(log);
    CHECK_TEXT(db, "SELECT group_concat(v.passed, ',') FROM verdicts v WHERE verifier = 'source'",
               "1,0,1,0");
    CHECK_TEXT(db, "SELECT group_concat(DISTINCT v.detail) FROM verdicts v WHERE trace_id <= 2",
               "correctness_math_verify");
    CHECK_TEXT(db, "SELECT reasoning || '|' || answer FROM traces WHERE id = 2", "x=3?|\\boxed{3}");
    CHECK(sql_i64(db, "SELECT count(DISTINCT prompt_id) FROM traces WHERE id <= 2") == 1,
          "two generations, one prompt");
    CHECK_TEXT(db, "SELECT reasoning || '|' || answer || '|' || json_extract(provenance, '$.form') "
               "FROM traces WHERE id = 3", "Half of ten is five.|**Final Answer**\n\\boxed{5}|solution");
    CHECK_TEXT(db, "SELECT reasoning || '|' || answer || '|' || json_extract(p.fields, '$.answer') "
               "FROM traces t JOIN prompts p ON p.id = t.prompt_id WHERE t.id = 4",
               "Nine minus four.|The answer is 5.|9-4 = \\boxed{5}");
    CHECK_TEXT(db, "SELECT t.reasoning || '|' || t.answer || '|' || p.fields FROM traces t JOIN "
               "prompts p ON p.id = t.prompt_id WHERE t.id = 5",
               "3 times 60.|He runs 180 meters.|{\"answer\":\"180\",\"solution\":\"3*60=180\\n#### 180\"}");
    CHECK_TEXT(db, "SELECT p.text || '|' || t.answer FROM traces t JOIN prompts p ON p.id = t.prompt_id "
               "WHERE t.id = 6", "Sum of bases?|\\boxed{70}");
    CHECK_TEXT(db, "SELECT source_model || '|' || json_extract(provenance, '$.form') FROM traces "
               "WHERE id = 7", "deepseek-r1-0528|pair");
    CHECK_TEXT(db, "SELECT source_model FROM traces WHERE id = 6", "unknown");
}

static void test_mapping_document_zstd(void) {
    char db[600];
    snprintf(db, sizeof db, "%s/doc.db", dir);
    /* a pretty-printed document: records in "results", lists of outputs with their thinking */
    const char *doc = write_file("doc.json",
        "{\n"
        "  \"results\": [\n"
        "    {\n"
        "      \"prompt_id\": \"monty\",\n"
        "      \"prompt\": \"Three doors, one donkey. Switch?\",\n"
        "      \"llm\": \"deepseek-r1\",\n"
        "      \"output\": [\"Stick.\", \"Switch.\"],\n"
        "      \"thinking\": [\"Two cars...\", \"Classic Monty Hall...\"]\n"
        "    },\n"
        "\n"
        "    {\"prompt\": \"Dead people on the track?\", \"llm\": \"deepseek-r1\", \"output\": [\"No.\"], "
        "\"thinking\": [\"They are dead.\"]}\n"
        "  ]\n"
        "}\n");
    /* explicit mapping: odd field names */
    const char *mapped = write_file("mapped.jsonl",
        "{\"q\": \"What is 1+1?\", \"gen\": \"<think>one and one</think>2\", \"gold\": \"2\", "
        "\"ok\": \"yes\"}\n");
    /* zstd-compressed JSONL */
    const char *plain = "{\"prompt\": \"What is 4+4?\", \"completion\": \"<think>4+4</think>8\"}\n";
    char zpath[600];
    snprintf(zpath, sizeof zpath, "%s/z.jsonl.zst", dir);
    size_t cap = ZSTD_compressBound(strlen(plain));
    void *z = malloc(cap);
    size_t zn = ZSTD_compress(z, cap, plain, strlen(plain), 3);
    FILE *zf = fopen(zpath, "wb");
    fwrite(z, 1, zn, zf);
    fclose(zf);
    free(z);

    v3_distill_import_opts o;
    v3_distill_import_opts_default(&o);
    v3_distill_import_stats st;
    char *log = NULL;
    const char *files[] = {doc, zpath};
    CHECK(import(db, files, 2, &o, &st, &log) == 0, "import document + zstd");
    CHECK(st.files == 2 && st.rows == 3 && st.added == 4 && st.bad_rows == 0,
          "files %lld rows %lld added %lld bad %lld: %s", (long long)st.files, (long long)st.rows,
          (long long)st.added, (long long)st.bad_rows, log);
    free(log);
    CHECK_TEXT(db, "SELECT group_concat(json_extract(provenance, '$.line'), ',') FROM traces "
               "WHERE provenance LIKE '%doc.json%'", "3,3,11");
    CHECK_TEXT(db, "SELECT reasoning || '|' || answer FROM traces WHERE id = 2", "Classic Monty Hall...|Switch.");
    CHECK_TEXT(db, "SELECT reasoning || '|' || answer FROM traces WHERE id = 4", "4+4|8");

    /* the same odd row without a mapping is bad (its trace is found by its tag, its prompt is
     * not); with a mapping it is read */
    snprintf(db, sizeof db, "%s/mapped.db", dir);
    CHECK(import(db, &mapped, 1, &o, &st, &log) == 0, "import unmapped");
    CHECK(st.bad_rows == 1 && st.added == 0, "unmapped: bad %lld", (long long)st.bad_rows);
    CHECK(log && strstr(log, "mapped.jsonl:1: no prompt found"), "log: %s", log);
    free(log);
    char spec[4][32] = {"prompt=q", "text=gen", "reference=gold", "correct=ok"};
    for (int i = 0; i < 4; i++) {
        v3_err err = {0};
        CHECK_OK(v3_distill_map_field(&o.fields, spec[i], &err), &err);
    }
    v3_err err = {0};
    char badspec[] = "nonsense=x";
    CHECK(v3_distill_map_field(&o.fields, badspec, &err) == V3_EUSAGE && strstr(err.msg, "nonsense"),
          "unknown mapping key: %s", err.msg);
    CHECK(import(db, &mapped, 1, &o, &st, &log) == 0, "import mapped");
    CHECK(st.bad_rows == 0 && st.added == 1 && st.labelled == 1, "mapped: added %lld: %s",
          (long long)st.added, log);
    free(log);
    CHECK_TEXT(db, "SELECT t.reasoning || '|' || t.answer || '|' || p.fields FROM traces t JOIN "
               "prompts p ON p.id = t.prompt_id", "one and one|2|{\"answer\":\"2\"}");
}

static void test_duplicates_and_bad_rows(void) {
    char db[600];
    snprintf(db, sizeof db, "%s/dup.db", dir);
    const char *f = write_file("dup.jsonl",
        "{\"prompt\": \"What is 2+2?\", \"completion\": \"<think>two and two</think>4\"}\n"
        "{\"prompt\": \"What is 2+2?\", \"completion\": \"<think>two and two</think>4\"}\n"
        "{\"prompt\": \"What is  2+2? \", \"completion\": \"<think>\\ntwo  and\\ntwo\\n</think>\\n\\n4\"}\n"
        "{\"prompt\": \"What is 2+2?\", \"completion\": \"<think>two plus two</think>4\"}\n"
        "{\"prompt\": \"What is 2+2?\", \"completion\": \n"
        "[1, 2]\n"
        "\n"
        "{\"prompt\": \"No trace here\", \"answer\": \"4\"}\n"
        "{\"completion\": \"<think>no prompt</think>4\"}\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", "
        "\"content\": 5}]}\n"
        "{\"prompt\": \"Empty?\", \"completion\": \"   \"}\n");
    v3_distill_import_opts o;
    v3_distill_import_opts_default(&o);
    v3_distill_import_stats st;
    char *log = NULL;
    CHECK(import(db, &f, 1, &o, &st, &log) == 0, "import");
    CHECK(st.rows == 10 && st.bad_rows == 5 && st.traces == 5 && st.added == 2 &&
          st.duplicates == 2 && st.empty == 1 && st.prompts == 1,
          "rows %lld bad %lld traces %lld added %lld dup %lld empty %lld prompts %lld",
          (long long)st.rows, (long long)st.bad_rows, (long long)st.traces, (long long)st.added,
          (long long)st.duplicates, (long long)st.empty, (long long)st.prompts);
    const char *want[] = {"dup.jsonl:5: invalid JSON", "dup.jsonl:6: a row must be a JSON object",
                          "dup.jsonl:8: no reasoning trace found",
                          "dup.jsonl:9: no prompt found",
                          "dup.jsonl:10: the final assistant content is not a string"};
    for (int i = 0; i < 5; i++) CHECK(log && strstr(log, want[i]), "log lacks \"%s\": %s", want[i], log);
    free(log);
    CHECK(sql_i64(db, "SELECT count(*) FROM traces") == 2, "two traces stored");
    /* importing the same file again adds nothing: every trace is a duplicate of a stored one */
    CHECK(import(db, &f, 1, &o, &st, &log) == 0, "import again");
    CHECK(st.added == 0 && st.duplicates == 4, "again: added %lld dup %lld", (long long)st.added,
          (long long)st.duplicates);
    free(log);
    CHECK(sql_i64(db, "SELECT count(*) FROM traces") == 2 && sql_i64(db, "SELECT count(*) FROM runs") == 2,
          "still two traces, two runs");
    /* a missing file fails the import, naming it */
    v3_err err = {0};
    const char *missing = "/nonexistent/x.jsonl";
    o.log = stderr;
    int rc = v3_distill_import(db, &missing, 1, &o, &st, &err);
    CHECK(rc != 0 && strstr(err.msg, "/nonexistent/x.jsonl"), "missing file: %s", err.msg);
    CHECK(sql_i64(db, "SELECT count(*) FROM runs WHERE status = 'failed'") == 1, "failed run recorded");
}

int main(void) {
    t_tmpdir(dir, sizeof dir);
    test_messages_and_responses();
    test_dataset_rows();
    test_mapping_document_zstd();
    test_duplicates_and_bad_rows();
    return t_finish("test_distill_import");
}
