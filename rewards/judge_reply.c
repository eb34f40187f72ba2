/* judge_reply.c — reads an OpenAI chat completion (choices[0].message.content, reasoning_content,
 * finish_reason) with jansson. See judge.h. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "rewards/judge.h"

static char *dup_n(const char *s, size_t n) {
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = 0;
    }
    return c;
}

/* Copies the string member `key` of o into *out (NULL when absent or not a string); -1 when out
 * of memory. */
static int take_string(json_t *o, const char *key, char **out) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!json_is_string(v)) return 0;
    *out = dup_n(json_string_value(v), json_string_length(v));
    return *out ? 0 : -1;
}

int v3_judge_parse_reply(const char *body, size_t len, v3_judge_result *r, v3_err *err) {
    r->content = r->reasoning = r->finish_reason = NULL;
    json_error_t je;
    json_t *j = json_loadb(body ? body : "", body ? len : 0, 0, &je);
    if (!j) return v3_errf(err, V3_EFORMAT, "response is not valid JSON: %s", je.text);
    int rc = V3_OK;
    json_t *choices = json_object_get(j, "choices");
    json_t *c0 = json_array_get(choices, 0);
    json_t *msg = json_object_get(c0, "message");
    json_t *content = json_object_get(msg, "content");
    if (!json_is_object(j)) {
        rc = v3_errf(err, V3_EFORMAT, "response is not a JSON object");
    } else if (!json_is_array(choices) || json_array_size(choices) == 0) {
        json_t *e = json_object_get(json_object_get(j, "error"), "message");
        rc = v3_errf(err, V3_EFORMAT, "response has no choices%s%.200s",
                     json_is_string(e) ? ": " : "", json_is_string(e) ? json_string_value(e) : "");
    } else if (!json_is_string(content)) {
        rc = v3_errf(err, V3_EFORMAT, "response has no choices[0].message.content (%s)",
                     !json_is_object(msg) ? "no message" : content ? "not a string" : "missing");
    } else if (take_string(msg, "content", &r->content) || take_string(msg, "reasoning_content", &r->reasoning) ||
               take_string(c0, "finish_reason", &r->finish_reason)) {
        rc = v3_errf(err, V3_ENOMEM, "out of memory reading a response");
    }
    if (rc != V3_OK) {
        free(r->content);
        free(r->reasoning);
        free(r->finish_reason);
        r->content = r->reasoning = r->finish_reason = NULL;
    }
    json_decref(j);
    return rc;
}
