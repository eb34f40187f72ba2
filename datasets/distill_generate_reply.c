/* distill_generate_reply.c — a teacher's answer → reasoning, final answer and provenance: the
 * split (as `distill import` splits a response) and the reading of an HTTP chat completion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/distill_generate_internal.h"
#include "datasets/distill_text.h"

void v3_dgen_reply_free(v3_dgen_reply *r) {
    free(r->reasoning);
    free(r->answer);
    free(r->error);
    json_decref(r->prov);
    memset(r, 0, sizeof *r);
}

int v3_dgen_split(const char *reasoning, const char *content, int starts_in_reasoning,
                  int finish_length, v3_dgen_reply *r, v3_err *err) {
    const char *c = content ? content : "";
    v3_distill_split_out sp = {0};
    if (reasoning && reasoning[strspn(reasoning, " \t\r\n")]) {
        sp.reasoning = v3_distill_trim_dup(reasoning, strlen(reasoning));
        sp.answer = v3_distill_trim_dup(c, strlen(c));
        if (!sp.reasoning || !sp.answer) {
            v3_distill_split_free(&sp);
            return v3_errf(err, V3_ENOMEM, "out of memory");
        }
    } else if (v3_distill_split(c, strlen(c), starts_in_reasoning ? V3_SPLIT_OPEN : V3_SPLIT_ANSWER,
                                &sp)) {
        return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    r->reasoning = sp.reasoning;
    r->answer = sp.answer;
    r->truncated = sp.truncated || finish_length;
    return V3_OK;
}

static int64_t usage_count(const json_t *usage, const char *name) {
    const json_t *v = json_object_get(usage, name);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : -1;
}

int v3_dgen_http_reply(const v3_judge_result *jr, v3_dgen_reply *r, v3_err *err) {
    r->attempts = jr->attempts;
    r->retries = jr->attempts > 1 ? jr->attempts - 1 : 0;
    r->prompt_tokens = r->completion_tokens = -1;
    if (!jr->ok) { /* the judge's error names the status or the network failure and the attempts */
        r->error = strdup(jr->error ? jr->error : "the request was not sent");
        return r->error ? V3_OK : v3_errf(err, V3_ENOMEM, "out of memory");
    }
    /* what the judge does not keep: the message's `reasoning` (vLLM, OpenRouter), usage, id, model */
    json_t *body = json_loadb(jr->body ? jr->body : "", jr->body ? jr->body_len : 0, 0, NULL);
    const json_t *c0 = json_array_get(json_object_get(body, "choices"), 0);
    const json_t *msg = json_object_get(c0, "message");
    const char *reasoning = jr->reasoning;
    if (!reasoning) reasoning = json_string_value(json_object_get(msg, "reasoning"));
    const char *fin = jr->finish_reason;
    int rc = v3_dgen_split(reasoning, jr->content, 0, fin && !strcmp(fin, "length"), r, err);
    if (rc) {
        json_decref(body);
        return rc;
    }
    r->ok = 1;
    r->prov = json_object();
    if (!r->prov) {
        json_decref(body);
        return v3_errf(err, V3_ENOMEM, "out of memory");
    }
    if (fin) json_object_set_new(r->prov, "finish_reason", json_string(fin));
    const json_t *id = json_object_get(body, "id"), *model = json_object_get(body, "model");
    const json_t *usage = json_object_get(body, "usage");
    if (json_is_string(id)) json_object_set(r->prov, "id", (json_t *)id);
    if (json_is_string(model)) json_object_set(r->prov, "response_model", (json_t *)model);
    if (json_is_object(usage)) {
        json_object_set(r->prov, "usage", (json_t *)usage);
        r->prompt_tokens = usage_count(usage, "prompt_tokens");
        r->completion_tokens = usage_count(usage, "completion_tokens");
    }
    json_object_set_new(r->prov, "attempts", json_integer(jr->attempts));
    json_object_set_new(r->prov, "elapsed_ms", json_real(jr->elapsed_ms));
    json_decref(body);
    return V3_OK;
}
