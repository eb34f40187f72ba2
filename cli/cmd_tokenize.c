/* cmd_tokenize.c — `v3tune tokenize`: JSONL text or chat rows on stdin -> token ids on stdout.
 * A bad row is reported as "<stdin>:LINE: reason" on stderr and skipped, so one malformed row
 * does not lose a whole file; the exit status is 1 at the end if any row failed. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "datasets/chat.h"
#include "datasets/tokenizer.h"

static void help(void) {
    printf("usage: v3tune tokenize [--tokenizer DIR] [--chat] [--template v3|r1|r1-keep-reasoning]\n"
           "                       [--no-bos] [--generation-prompt] [--mask-last-only]\n\n"
           "Reads JSONL rows on stdin and writes one JSON object per row on stdout.\n"
           "  text mode (default):  {\"text\": \"...\"}        -> {\"ids\": [...]}\n"
           "      a BOS is prepended when tokenizer_config.json says add_bos_token (DeepSeek-V3: yes);\n"
           "      added-token strings such as <｜User｜> in the text become their ids, as in HF.\n"
           "  --chat:               {\"messages\": [...]}     -> {\"ids\": [...], \"mask\": [...]}\n"
           "      rendered with the chat template (--template, default v3); mask 1 marks tokens that\n"
           "      carry the loss (assistant content and its closing <｜end▁of▁sentence｜>).\n\n"
           "options:\n"
           "  --tokenizer DIR       folder with tokenizer.json and tokenizer_config.json\n"
           "                        (default: $V3_TOKENIZER_DIR, else ../shared/data/deepseek-v3)\n"
           "  --chat                rows hold \"messages\" (role/content/tool_calls/reasoning_content)\n"
           "  --template NAME       v3 (default), r1, or r1-keep-reasoning (keeps the final\n"
           "                        assistant's reasoning_content as <think>\\n...\\n</think>\\n\\n)\n"
           "  --no-bos              do not prepend the BOS token\n"
           "  --generation-prompt   chat: end with the assistant generation prompt\n"
           "  --mask-last-only      chat: mask only the last assistant message\n\n"
           "Blank lines are skipped. A row that is not valid JSON, lacks the field, or cannot be\n"
           "rendered is reported as \"<stdin>:LINE: reason\" on stderr and skipped.\n"
           "exit status: 0 all rows written, 1 some row failed (or the tokenizer could not be\n"
           "loaded), 2 usage error.\n");
}

static void write_ints(FILE *out, const char *key, const int32_t *ids, const uint8_t *mask, size_t n) {
    fprintf(out, "\"%s\": [", key);
    for (size_t i = 0; i < n; i++) fprintf(out, i ? ",%d" : "%d", ids ? ids[i] : (int)mask[i]);
    fputc(']', out);
}

static int is_blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\r\n", *s)) return 0;
    return 1;
}

int v3_cmd_tokenize(int argc, char **argv) {
    if (v3_cli_wants_help(argc, argv)) {
        help();
        return V3_EXIT_OK;
    }
    char dirbuf[4096];
    const char *dir = NULL;
    int chat = 0, no_bos = 0, gen = 0, last_only = 0, tmpl = V3_CHAT_V3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--tokenizer") == 0 || strcmp(a, "--template") == 0) {
            if (i + 1 >= argc) return v3_cli_usage_error("tokenize", "%s needs a value", a);
            const char *v = argv[++i];
            if (strcmp(a, "--tokenizer") == 0) {
                dir = v;
            } else if ((tmpl = v3_chat_template_parse(v)) < 0) {
                return v3_cli_usage_error("tokenize", "unknown template \"%s\" (v3, r1, r1-keep-reasoning)", v);
            }
        } else if (strcmp(a, "--chat") == 0) {
            chat = 1;
        } else if (strcmp(a, "--no-bos") == 0) {
            no_bos = 1;
        } else if (strcmp(a, "--generation-prompt") == 0) {
            gen = 1;
        } else if (strcmp(a, "--mask-last-only") == 0) {
            last_only = 1;
        } else {
            return v3_cli_usage_error("tokenize", "unknown argument \"%s\"", a);
        }
    }
    if (!dir) dir = v3_cli_default_tokenizer_dir(dirbuf, sizeof dirbuf);

    v3_err err = {0};
    v3_tokenizer *tok = NULL;
    if (v3_tok_load(&tok, dir, &err)) return v3_cli_fail("tokenize", "%s", err.msg);

    v3_chat_opts opts = {.tmpl = (v3_chat_template)tmpl, .add_generation_prompt = gen,
                         .mask_last_only = last_only, .no_bos = no_bos};
    v3_chat_out co = {0};
    v3_tok_ids ids = {0};
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0, failed = 0, written = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        if (is_blank(line)) continue;
        json_error_t je;
        json_t *row = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, &je);
        const char *why = NULL;
        char whybuf[1200];
        if (!row) {
            snprintf(whybuf, sizeof whybuf, "invalid JSON at column %d: %s", je.column, je.text);
            why = whybuf;
        } else if (!chat) {
            json_t *t = json_object_get(row, "text");
            if (!json_is_string(t)) {
                why = json_object_get(row, "messages") ? "no string \"text\" field (chat rows need --chat)"
                                                        : "no string \"text\" field";
            } else {
                ids.n = 0;
                int flags = no_bos ? 0 : V3_TOK_DEFAULT_BOS;
                if (v3_tok_encode(tok, json_string_value(t), json_string_length(t), flags, &ids, &err)) {
                    why = err.msg;
                } else {
                    fputc('{', stdout);
                    write_ints(stdout, "ids", ids.ids, NULL, ids.n);
                    fputs("}\n", stdout);
                }
            }
        } else {
            json_t *m = json_object_get(row, "messages");
            if (!json_is_array(m)) {
                why = "no \"messages\" array";
            } else if (v3_chat_render(tok, m, &opts, &co, &err)) {
                why = err.msg;
            } else {
                fputc('{', stdout);
                write_ints(stdout, "ids", co.ids.ids, NULL, co.ids.n);
                fputs(", ", stdout);
                write_ints(stdout, "mask", NULL, co.mask, co.ids.n);
                fputs("}\n", stdout);
            }
        }
        if (why) {
            fprintf(stderr, "<stdin>:%ld: %s\n", lineno, why);
            failed++;
        } else {
            written++;
        }
        json_decref(row);
    }
    free(line);
    v3_tok_ids_free(&ids);
    v3_chat_out_free(&co);
    v3_tok_free(tok);
    if (fflush(stdout) != 0 || ferror(stdout)) return v3_cli_fail("tokenize", "writing stdout failed");
    if (failed) {
        fprintf(stderr, "v3tune tokenize: %ld of %ld rows failed (skipped)\n", failed, failed + written);
        return V3_EXIT_FAIL;
    }
    return V3_EXIT_OK;
}
