/* test_chat.c — chat templates against transformers' rendering of DeepSeek's Jinja templates
 * (tests/golden/gen_chat.py): rendered string and ids equal for v3 and r1, the loss mask
 * decodes to the assistant text, the prompt is a token prefix of the full conversation, and
 * bad messages fail with an error naming the message. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "datasets/chat.h"
#include "testutil.h"

/* Whole-file zstd decompression with streaming, so frames without a stored size work too. */
static char *read_zst(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    size_t cap = 1 << 20, len = 0;
    char *txt = malloc(cap + 1), in[1 << 16];
    size_t got, bad = 0;
    while (!bad && (got = fread(in, 1, sizeof in, f)) > 0) {
        ZSTD_inBuffer ib = {in, got, 0};
        while (ib.pos < ib.size) {
            if (len == cap) txt = realloc(txt, (cap *= 2) + 1);
            ZSTD_outBuffer ob = {txt + len, cap - len, 0};
            size_t r = ZSTD_decompressStream(dc, &ob, &ib);
            len += ob.pos;
            if (ZSTD_isError(r)) {
                bad = 1;
                break;
            }
        }
    }
    fclose(f);
    ZSTD_freeDCtx(dc);
    if (bad) {
        free(txt);
        return NULL;
    }
    txt[len] = 0;
    *n = len;
    return txt;
}

static int ids_equal(const v3_tok_ids *a, json_t *want) {
    if (a->n != json_array_size(want)) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->ids[i] != (int32_t)json_integer_value(json_array_get(want, i))) return 0;
    return 1;
}

/* The prompt (all messages but the last, with the generation prompt) must be a token prefix of
 * the whole conversation when the last message is an assistant answer. For keep-reasoning the
 * prompt is rendered with the R1 template, the one used at inference. */
static int prefix_ok(const v3_tokenizer *tok, json_t *msgs, const v3_chat_opts *o, const v3_chat_out *full,
                     v3_err *err) {
    json_t *head = json_array();
    for (size_t i = 0; i + 1 < json_array_size(msgs); i++) json_array_append(head, json_array_get(msgs, i));
    v3_chat_opts po = *o;
    po.add_generation_prompt = 1;
    /* the inference-time prompt of a keep-reasoning sample is R1's (history stripped) */
    if (po.tmpl == V3_CHAT_R1_KEEP_REASONING) po.tmpl = V3_CHAT_R1;
    v3_chat_out p = {0};
    int ok = v3_chat_render(tok, head, &po, &p, err) == 0 && p.ids.n <= full->ids.n &&
             (p.ids.n == 0 || memcmp(p.ids.ids, full->ids.ids, p.ids.n * sizeof(int32_t)) == 0);
    v3_chat_out_free(&p);
    json_decref(head);
    return ok;
}

static void check_golden(const v3_tokenizer *tok) {
    char path[4096];
    size_t n;
    char *txt = read_zst(t_source_path("tests/golden/data/chat_golden.jsonl.zst", path, sizeof path), &n);
    CHECK(txt != NULL, "cannot read %s", path);
    if (!txt) return;
    int rows = 0, text_eq = 0, ids_eq = 0, masks_checked = 0, masks_eq = 0, prefixes = 0, prefix_eq = 0;
    int keep_rows = 0, keep_ids_eq = 0;
    v3_chat_out out = {0};
    char *save = NULL;
    for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *row = json_loads(line, 0, &je);
        CHECK(row != NULL, "golden row %d: %s", rows + 1, je.text);
        if (!row) continue;
        const char *name = json_string_value(json_object_get(row, "name"));
        const char *tname = json_string_value(json_object_get(row, "template"));
        v3_chat_opts o = {.tmpl = v3_chat_template_parse(tname),
                          .add_generation_prompt = json_is_true(json_object_get(row, "add_generation_prompt")),
                          .mask_last_only = json_is_true(json_object_get(row, "mask_last_only"))};
        json_t *msgs = json_object_get(row, "messages");
        v3_err err = {0};
        int rc = v3_chat_render(tok, msgs, &o, &out, &err);
        CHECK(rc == 0, "%s/%s: %s", name, tname, err.msg);
        rows++;
        json_t *want = json_object_get(row, "rendered");
        int teq = rc == 0 && out.text_len == json_string_length(want) &&
                  memcmp(out.text, json_string_value(want), out.text_len) == 0;
        CHECK(teq, "%s/%s gen=%d: rendered text differs\n  got:  %.300s\n  want: %.300s", name, tname,
              o.add_generation_prompt, out.text, json_string_value(want));
        text_eq += teq;
        int ieq = rc == 0 && ids_equal(&out.ids, json_object_get(row, "ids"));
        if (o.tmpl == V3_CHAT_R1_KEEP_REASONING) {
            /* whole-string HF encode may differ only where chat.h says: reasoning that starts with
             * punctuation, a symbol or a newline right after "<think>\n" */
            keep_rows++;
            keep_ids_eq += ieq;
            if (!ieq) {
                printf("r1-keep-reasoning ids differ from HF whole-string encode: %s (expected boundary case)\n", name);
                CHECK(strcmp(name, "reasoning_starts_with_newline") == 0, "%s: unexpected keep-mode id difference", name);
            }
        } else {
            CHECK(ieq, "%s/%s gen=%d: ids differ from HF (%zu vs %zu)", name, tname, o.add_generation_prompt,
                  out.ids.n, json_array_size(json_object_get(row, "ids")));
            ids_eq += ieq;
        }
        json_t *mt = json_object_get(row, "masked_text");
        if (rc == 0 && json_is_string(mt)) {
            /* decode only the masked tokens: must be exactly the assistant-produced text */
            int32_t *sel = malloc((out.ids.n + 1) * sizeof *sel);
            size_t k = 0;
            for (size_t i = 0; i < out.ids.n; i++)
                if (out.mask[i]) sel[k++] = out.ids.ids[i];
            char *s = NULL;
            size_t sn = 0;
            CHECK_OK(v3_tok_decode(tok, sel, k, 0, &s, &sn, &err), &err);
            int meq = s && sn == json_string_length(mt) && memcmp(s, json_string_value(mt), sn) == 0;
            CHECK(meq, "%s/%s last_only=%d: masked tokens decode to\n  %.200s\nwant\n  %.200s", name, tname,
                  o.mask_last_only, s, json_string_value(mt));
            masks_checked++;
            masks_eq += meq;
            free(s);
            free(sel);
        }
        /* prefix property where the template makes it hold: V3 always; keep mode for its
         * reasoning turn (R1 proper strips the final answer, so its prompt is not a prefix) */
        json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
        const char *lrole = json_string_value(json_object_get(last, "role"));
        int last_answer = lrole && strcmp(lrole, "assistant") == 0 && json_is_string(json_object_get(last, "content")) &&
                          !json_object_get(last, "tool_calls");
        int want_prefix = rc == 0 && !o.add_generation_prompt && last_answer &&
                          (o.tmpl == V3_CHAT_V3 ||
                           (o.tmpl == V3_CHAT_R1_KEEP_REASONING && json_is_string(json_object_get(last, "reasoning_content"))));
        if (want_prefix) {
            /* after tool outputs the V3 prompt ends in <｜tool▁outputs▁end｜>, also a prefix */
            int pok = prefix_ok(tok, msgs, &o, &out, &err);
            CHECK(pok, "%s/%s: the prompt is not a token prefix of the conversation", name, tname);
            prefixes++;
            prefix_eq += pok;
        }
        json_decref(row);
    }
    v3_chat_out_free(&out);
    free(txt);
    printf("chat golden: %d rows; rendered equal %d/%d; ids equal to HF %d/%d (v3+r1), r1-keep-reasoning "
           "ids equal to HF whole-string encode %d/%d; masks %d/%d; prompt-prefix %d/%d\n",
           rows, text_eq, rows, ids_eq, rows - keep_rows, keep_ids_eq, keep_rows, masks_eq, masks_checked,
           prefix_eq, prefixes);
    CHECK(rows >= 300, "only %d golden rows", rows);
    CHECK(masks_checked > 250 && prefixes > 30, "coverage: %d masks, %d prefixes", masks_checked, prefixes);
}

static json_t *parse(const char *s) {
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    if (!j) fprintf(stderr, "bad test json: %s\n", je.text);
    return j;
}

static void check_errors_and_options(const v3_tokenizer *tok) {
    v3_chat_out out = {0};
    v3_err err = {0};
    v3_chat_opts o = {0};
    json_t *m = parse("{\"role\": \"user\"}");
    CHECK(v3_chat_render(tok, m, &o, &out, &err) == V3_EINVAL, "non-array rejected");
    json_decref(m);
    m = parse("[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": null}]");
    CHECK(v3_chat_render(tok, m, &o, &out, &err) == V3_EINVAL && strstr(err.msg, "messages[1]"), "null user: %s",
          err.msg);
    json_decref(m);
    m = parse("[{\"content\": \"a\"}]");
    CHECK(v3_chat_render(tok, m, &o, &out, &err) == V3_EINVAL && strstr(err.msg, "messages[0]"), "no role: %s",
          err.msg);
    json_decref(m);
    m = parse("[{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", "
              "\"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1}}}]}]");
    CHECK(v3_chat_render(tok, m, &o, &out, &err) == V3_EINVAL && strstr(err.msg, "tool_calls[0]"),
          "object arguments: %s", err.msg);
    json_decref(m);

    /* no_bos, and the V3 layout on the spec's example */
    m = parse("[{\"role\": \"system\", \"content\": \"SYS\"}, {\"role\": \"user\", \"content\": \"Hi\"},"
              " {\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"role\": \"user\", \"content\": \"Q\"}]");
    o.add_generation_prompt = 1;
    CHECK_OK(v3_chat_render(tok, m, &o, &out, &err), &err);
    CHECK(strcmp(out.text, "<｜begin▁of▁sentence｜>SYS<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜>"
                           "<｜User｜>Q<｜Assistant｜>") == 0, "spec example: %s", out.text);
    size_t with_bos = out.ids.n;
    o.no_bos = 1;
    CHECK_OK(v3_chat_render(tok, m, &o, &out, &err), &err);
    CHECK(out.ids.n == with_bos - 1 && out.ids.ids[0] != 0, "no_bos drops exactly the BOS");
    /* mask: Hello! + <｜end▁of▁sentence｜> only */
    size_t masked = 0;
    for (size_t i = 0; i < out.ids.n; i++) masked += out.mask[i];
    CHECK(masked >= 2 && out.mask[out.ids.n - 1] == 0, "mask covers the answer, not the generation prompt");
    json_decref(m);
    CHECK(v3_chat_template_parse("r1-keep-reasoning") == V3_CHAT_R1_KEEP_REASONING &&
          v3_chat_template_parse("v4") == -1, "template names");
    v3_chat_out_free(&out);
}

int main(void) {
    char dir[4096];
    v3_err err = {0};
    v3_tokenizer *tok = NULL;
    CHECK_OK(v3_tok_load(&tok, t_data_path("deepseek-v3", dir, sizeof dir), &err), &err);
    if (!tok) return t_finish("test_chat");
    check_golden(tok);
    check_errors_and_options(tok);
    v3_tok_free(tok);
    return t_finish("test_chat");
}
