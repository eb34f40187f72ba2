/* ingest.c — row formats (messages, ShareGPT, Alpaca, prompt/completion, text) → v3_conv. */
#include "ingest.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void v3_ingest_opts_default(v3_ingest_opts *o) {
    memset(o, 0, sizeof *o);
    o->format = V3_FMT_AUTO;
    v3_ingest_fields *f = &o->f;
    f->messages = "messages";
    f->role = "role";
    f->content = "content";
    f->reasoning = "reasoning_content";
    f->tool_calls = "tool_calls";
    f->conversations = "conversations";
    f->from = "from";
    f->value = "value";
    f->instruction = "instruction";
    f->input = "input";
    f->output = "output";
    f->history = "history";
    f->prompt = "prompt";
    f->completion = "completion";
    f->system = "system";
    f->tools = "tools";
    f->text = "text";
}

static const char *const format_names[] = {"auto", "messages", "alpaca", "sharegpt",
                                           "prompt_completion", "text"};

int v3_format_parse(const char *name) {
    for (int i = 0; i < (int)(sizeof format_names / sizeof *format_names); i++)
        if (strcmp(name, format_names[i]) == 0) return i;
    return -1;
}

const char *v3_format_name(v3_format f) {
    return (unsigned)f < sizeof format_names / sizeof *format_names ? format_names[f] : "?";
}

int v3_ingest_map_field(v3_ingest_opts *o, char *spec, v3_err *err) {
    char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return v3_errf(err, V3_EUSAGE, "field mapping \"%s\" is not KEY=NAME", spec);
    *eq = 0;
    const char *val = eq + 1;
    v3_ingest_fields *f = &o->f;
    struct { const char *key; const char **slot; } map[] = {
        {"messages", &f->messages}, {"role", &f->role}, {"content", &f->content},
        {"reasoning", &f->reasoning}, {"reasoning_content", &f->reasoning},
        {"tool_calls", &f->tool_calls}, {"conversations", &f->conversations}, {"from", &f->from},
        {"value", &f->value}, {"instruction", &f->instruction}, {"input", &f->input},
        {"output", &f->output}, {"history", &f->history}, {"prompt", &f->prompt},
        {"completion", &f->completion}, {"system", &f->system}, {"tools", &f->tools},
        {"text", &f->text}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcmp(spec, map[i].key) == 0) {
            *map[i].slot = val;
            *eq = '=';
            return V3_OK;
        }
    int rc = v3_errf(err, V3_EUSAGE, "unknown field key \"%s\" in a field mapping", spec);
    *eq = '=';
    return rc;
}

void v3_conv_init(v3_conv *c) { memset(c, 0, sizeof *c); }

static void msg_free(v3_msg *m) {
    free(m->content);
    free(m->reasoning);
    for (int i = 0; i < m->n_calls; i++) {
        free(m->calls[i].type);
        free(m->calls[i].name);
        free(m->calls[i].arguments);
    }
    free(m->calls);
    memset(m, 0, sizeof *m);
}

void v3_conv_clear(v3_conv *c) {
    for (int i = 0; i < c->n_msgs; i++) msg_free(&c->msgs[i]);
    c->n_msgs = 0;
    free(c->tools);
    c->tools = NULL;
}

void v3_conv_free(v3_conv *c) {
    if (!c) return;
    v3_conv_clear(c);
    free(c->msgs);
    memset(c, 0, sizeof *c);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

v3_msg *v3_conv_add(v3_conv *c, v3_role role, const char *content, const char *reasoning) {
    if (c->n_msgs == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        v3_msg *m = realloc(c->msgs, (size_t)cap * sizeof *m);
        if (!m) return NULL;
        c->msgs = m;
        c->cap = cap;
    }
    v3_msg *m = &c->msgs[c->n_msgs];
    memset(m, 0, sizeof *m);
    m->role = role;
    m->content = dup_or_null(content);
    m->reasoning = dup_or_null(reasoning);
    if ((content && !m->content) || (reasoning && !m->reasoning)) {
        msg_free(m);
        return NULL;
    }
    c->n_msgs++;
    return m;
}

const char *v3_role_name(v3_role r) {
    switch (r) {
    case V3_ROLE_SYSTEM: return "system";
    case V3_ROLE_USER: return "user";
    case V3_ROLE_ASSISTANT: return "assistant";
    case V3_ROLE_TOOL: return "tool";
    case V3_ROLE_TEXT: return "text";
    }
    return "?";
}

/* ---- helpers ---- */

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

#define OOM(err) v3_errf(err, V3_ENOMEM, "out of memory")

/* Reads obj[key] as a string. *out = NULL when absent or null and !required. where: a prefix for
 * messages inside lists ("messages[2]: "), or "". */
static int get_str(const json_t *obj, const char *key, int required, const char **out,
                   const char *where, v3_err *err) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required) return v3_errf(err, V3_EFORMAT, "%smissing field \"%s\"", where, key);
        return V3_OK;
    }
    if (!json_is_string(v))
        return v3_errf(err, V3_EFORMAT, "%sfield \"%s\" is not a string (got %s)", where, key, type_name(v));
    *out = json_string_value(v);
    return V3_OK;
}

static int get_array(const json_t *obj, const char *key, json_t **out, v3_err *err) {
    json_t *v = json_object_get(obj, key);
    if (!v) return v3_errf(err, V3_EFORMAT, "missing field \"%s\"", key);
    if (!json_is_array(v))
        return v3_errf(err, V3_EFORMAT, "field \"%s\" is not a list (got %s)", key, type_name(v));
    *out = v;
    return V3_OK;
}

/* JSON value → text: strings verbatim, anything else compact-serialised in key order. */
static char *json_text(const json_t *v) {
    if (json_is_string(v)) return strdup(json_string_value(v));
    return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
}

static int add_call(v3_msg *m, const char *type, const char *name, const json_t *args) {
    v3_tool_call *c = realloc(m->calls, (size_t)(m->n_calls + 1) * sizeof *c);
    if (!c) return -1;
    m->calls = c;
    v3_tool_call *t = &c[m->n_calls];
    t->type = strdup(type ? type : "function");
    t->name = strdup(name);
    t->arguments = args ? json_text(args) : strdup("{}");
    m->n_calls++;
    if (!t->type || !t->name || !t->arguments) return -1;
    return 0;
}

/* One tool call object: OpenAI {"type","function":{"name","arguments"}} or flat {"name","arguments"}. */
static int parse_call(v3_msg *m, const json_t *c, const char *where, int j, v3_err *err) {
    if (!json_is_object(c))
        return v3_errf(err, V3_EFORMAT, "%stool call %d is not an object (got %s)", where, j, type_name(c));
    const json_t *fn = json_object_get(c, "function");
    const json_t *src = json_is_object(fn) ? fn : c;
    const json_t *name = json_object_get(src, "name");
    if (!json_is_string(name)) return v3_errf(err, V3_EFORMAT, "%stool call %d has no string \"name\"", where, j);
    const json_t *type = json_object_get(c, "type");
    const json_t *args = json_object_get(src, "arguments");
    if (!args) args = json_object_get(src, "parameters");
    if (add_call(m, json_is_string(type) ? json_string_value(type) : NULL, json_string_value(name), args))
        return OOM(err);
    return V3_OK;
}

/* content: string, null/absent, or a list of parts whose "text" strings are concatenated. */
static int get_content(const json_t *obj, const char *key, char **out, const char *where, v3_err *err) {
    *out = NULL;
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return V3_OK;
    if (json_is_string(v)) {
        if (!(*out = strdup(json_string_value(v)))) return OOM(err);
        return V3_OK;
    }
    if (!json_is_array(v))
        return v3_errf(err, V3_EFORMAT, "%sfield \"%s\" is not a string (got %s)", where, key, type_name(v));
    size_t n = 0, i;
    json_t *part;
    json_array_foreach(v, i, part) {
        const json_t *t = json_is_object(part) ? json_object_get(part, "text") : NULL;
        if (!json_is_string(t))
            return v3_errf(err, V3_EFORMAT, "%sfield \"%s\" part %zu has no string \"text\"", where, key, i);
        n += json_string_length(t);
    }
    char *s = malloc(n + 1);
    if (!s) return OOM(err);
    n = 0;
    json_array_foreach(v, i, part) {
        const json_t *t = json_object_get(part, "text");
        memcpy(s + n, json_string_value(t), json_string_length(t));
        n += json_string_length(t);
    }
    s[n] = 0;
    *out = s;
    return V3_OK;
}

static int role_of(const char *r) {
    static const struct { const char *name; v3_role role; } roles[] = {
        {"system", V3_ROLE_SYSTEM},       {"developer", V3_ROLE_SYSTEM},
        {"user", V3_ROLE_USER},           {"human", V3_ROLE_USER},
        {"assistant", V3_ROLE_ASSISTANT}, {"gpt", V3_ROLE_ASSISTANT},
        {"model", V3_ROLE_ASSISTANT},     {"tool", V3_ROLE_TOOL},
        {"observation", V3_ROLE_TOOL},    {"function", V3_ROLE_TOOL},
        {"ipython", V3_ROLE_TOOL}};
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        if (strcmp(r, roles[i].name) == 0) return (int)roles[i].role;
    return -1;
}

/* ---- formats ---- */

static int parse_messages(const v3_ingest_opts *o, const json_t *arr, const char *key, v3_conv *c, v3_err *err) {
    const v3_ingest_fields *f = &o->f;
    size_t i;
    json_t *m;
    char where[96];
    json_array_foreach(arr, i, m) {
        snprintf(where, sizeof where, "%s[%zu]: ", key, i);
        if (!json_is_object(m)) return v3_errf(err, V3_EFORMAT, "%.80snot an object (got %s)", where, type_name(m));
        const char *role;
        int rc = get_str(m, f->role, 1, &role, where, err);
        if (rc) return rc;
        int r = role_of(role);
        if (r < 0) return v3_errf(err, V3_EFORMAT, "%.80sunknown role \"%.60s\"", where, role);
        char *content;
        if ((rc = get_content(m, f->content, &content, where, err))) return rc;
        const char *reasoning = NULL;
        if (r == V3_ROLE_ASSISTANT && (rc = get_str(m, f->reasoning, 0, &reasoning, where, err))) {
            free(content);
            return rc;
        }
        v3_msg *msg = v3_conv_add(c, (v3_role)r, NULL, reasoning);
        if (!msg) {
            free(content);
            return OOM(err);
        }
        msg->content = content;
        json_t *calls = json_object_get(m, f->tool_calls);
        if (calls && !json_is_null(calls)) {
            if (r != V3_ROLE_ASSISTANT)
                return v3_errf(err, V3_EFORMAT, "%.80s\"%s\" on a %s message", where, f->tool_calls, role);
            if (!json_is_array(calls))
                return v3_errf(err, V3_EFORMAT, "%.80sfield \"%s\" is not a list (got %s)", where, f->tool_calls, type_name(calls));
            size_t j;
            json_t *call;
            json_array_foreach(calls, j, call) if ((rc = parse_call(msg, call, where, (int)j, err))) return rc;
        }
        if (!msg->content && msg->n_calls == 0)
            return v3_errf(err, V3_EFORMAT, "%.80smissing field \"%s\"", where, f->content);
    }
    return V3_OK;
}

static int add_system(const v3_ingest_opts *o, const json_t *row, v3_conv *c, v3_err *err) {
    const char *sys;
    int rc = get_str(row, o->f.system, 0, &sys, "", err);
    if (rc) return rc;
    if (sys && *sys && !v3_conv_add(c, V3_ROLE_SYSTEM, sys, NULL)) return OOM(err);
    return V3_OK;
}

static int add_tools(const v3_ingest_opts *o, const json_t *row, v3_conv *c, v3_err *err) {
    const json_t *t = json_object_get(row, o->f.tools);
    if (!t || json_is_null(t)) return V3_OK;
    if (json_is_string(t) && json_string_length(t) == 0) return V3_OK;
    if (!json_is_string(t) && !json_is_array(t))
        return v3_errf(err, V3_EFORMAT, "field \"%s\" is not a string or list (got %s)", o->f.tools, type_name(t));
    if (!(c->tools = json_text(t))) return OOM(err);
    return V3_OK;
}

static int parse_sharegpt(const v3_ingest_opts *o, const json_t *row, v3_conv *c, v3_err *err) {
    const v3_ingest_fields *f = &o->f;
    json_t *arr;
    int rc;
    if ((rc = get_array(row, f->conversations, &arr, err))) return rc;
    if ((rc = add_system(o, row, c, err)) || (rc = add_tools(o, row, c, err))) return rc;
    size_t i;
    json_t *m;
    char where[96];
    json_array_foreach(arr, i, m) {
        snprintf(where, sizeof where, "%s[%zu]: ", f->conversations, i);
        if (!json_is_object(m)) return v3_errf(err, V3_EFORMAT, "%.80snot an object (got %s)", where, type_name(m));
        const char *from, *value;
        if ((rc = get_str(m, f->from, 1, &from, where, err))) return rc;
        if ((rc = get_str(m, f->value, 1, &value, where, err))) return rc;
        if (strcmp(from, "function_call") == 0) {
            /* LLaMA-Factory stores the call as JSON text: {"name", "arguments"} or a list of them. */
            json_error_t je;
            json_t *v = json_loads(value, 0, &je);
            if (!v) return v3_errf(err, V3_EFORMAT, "%.80sfunction_call value is not JSON: %.200s", where, je.text);
            v3_msg *msg = v3_conv_add(c, V3_ROLE_ASSISTANT, NULL, NULL);
            if (!msg) {
                json_decref(v);
                return OOM(err);
            }
            if (json_is_array(v)) {
                size_t j;
                json_t *call;
                json_array_foreach(v, j, call) if ((rc = parse_call(msg, call, where, (int)j, err))) break;
            } else {
                rc = parse_call(msg, v, where, 0, err);
            }
            json_decref(v);
            if (rc) return rc;
            if (msg->n_calls == 0) return v3_errf(err, V3_EFORMAT, "%.80sfunction_call value holds no call", where);
            continue;
        }
        int r = role_of(from);
        if (r < 0) return v3_errf(err, V3_EFORMAT, "%.80sunknown role \"%.60s\"", where, from);
        if (!v3_conv_add(c, (v3_role)r, value, NULL)) return OOM(err);
    }
    return V3_OK;
}

static int parse_alpaca(const v3_ingest_opts *o, const json_t *row, v3_conv *c, v3_err *err) {
    const v3_ingest_fields *f = &o->f;
    const char *ins, *in, *out;
    int rc;
    if ((rc = get_str(row, f->instruction, 1, &ins, "", err)) || (rc = get_str(row, f->input, 0, &in, "", err)) ||
        (rc = get_str(row, f->output, 1, &out, "", err)))
        return rc;
    if ((rc = add_system(o, row, c, err))) return rc;
    json_t *hist = json_object_get(row, f->history);
    if (hist && !json_is_null(hist)) {
        if (!json_is_array(hist))
            return v3_errf(err, V3_EFORMAT, "field \"%s\" is not a list (got %s)", f->history, type_name(hist));
        size_t i;
        json_t *pair;
        json_array_foreach(hist, i, pair) {
            json_t *q = json_array_get(pair, 0), *a = json_array_get(pair, 1);
            if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_string(q) || !json_is_string(a))
                return v3_errf(err, V3_EFORMAT, "%s[%zu]: not a [question, answer] pair of strings", f->history, i);
            if (!v3_conv_add(c, V3_ROLE_USER, json_string_value(q), NULL) ||
                !v3_conv_add(c, V3_ROLE_ASSISTANT, json_string_value(a), NULL))
                return OOM(err);
        }
    }
    /* LLaMA-Factory joins instruction and a non-empty input with one newline. */
    size_t ni = strlen(ins), nn = in ? strlen(in) : 0;
    char *q = malloc(ni + nn + 2);
    if (!q) return OOM(err);
    memcpy(q, ins, ni);
    if (nn) {
        q[ni] = '\n';
        memcpy(q + ni + 1, in, nn + 1);
    } else {
        q[ni] = 0;
    }
    v3_msg *m = v3_conv_add(c, V3_ROLE_USER, NULL, NULL);
    if (!m) {
        free(q);
        return OOM(err);
    }
    m->content = q;
    if (!v3_conv_add(c, V3_ROLE_ASSISTANT, out, NULL)) return OOM(err);
    return V3_OK;
}

static int parse_prompt_completion(const v3_ingest_opts *o, const json_t *row, v3_conv *c, v3_err *err) {
    const v3_ingest_fields *f = &o->f;
    int rc;
    if ((rc = add_system(o, row, c, err))) return rc;
    const char *keys[2] = {f->prompt, f->completion};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(row, keys[k]);
        if (!v || json_is_null(v)) return v3_errf(err, V3_EFORMAT, "missing field \"%s\"", keys[k]);
        if (json_is_array(v)) { /* TRL's conversational prompt/completion */
            if ((rc = parse_messages(o, v, keys[k], c, err))) return rc;
        } else if (json_is_string(v)) {
            if (!v3_conv_add(c, k ? V3_ROLE_ASSISTANT : V3_ROLE_USER, json_string_value(v), NULL)) return OOM(err);
        } else {
            return v3_errf(err, V3_EFORMAT, "field \"%s\" is not a string (got %s)", keys[k], type_name(v));
        }
    }
    return V3_OK;
}

static int parse_text(const v3_ingest_opts *o, const json_t *row, v3_conv *c, v3_err *err) {
    const char *t;
    int rc = get_str(row, o->f.text, 1, &t, "", err);
    if (rc) return rc;
    if (!*t) return v3_errf(err, V3_EFORMAT, "empty text");
    if (!v3_conv_add(c, V3_ROLE_TEXT, t, NULL)) return OOM(err);
    return V3_OK;
}

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* "<think>R</think>A" in one assistant string → reasoning R, content A. */
static int split_think(v3_conv *c, v3_err *err) {
    for (int i = 0; i < c->n_msgs; i++) {
        v3_msg *m = &c->msgs[i];
        if (m->role != V3_ROLE_ASSISTANT || m->reasoning || !m->content) continue;
        char *end = strstr(m->content, "</think>");
        if (!end) continue;
        /* the template writes its own newlines around the reasoning, so trim both parts */
        char *r = m->content, *re = end, *a = end + 8;
        while (r < end && is_space(*r)) r++;
        if (strncmp(r, "<think>", 7) == 0 && r + 7 <= end) r += 7;
        while (r < end && is_space(*r)) r++;
        while (re > r && is_space(re[-1])) re--;
        while (is_space(*a)) a++;
        char *reason = strndup(r, (size_t)(re - r));
        char *ans = strdup(a);
        if (!reason || !ans) {
            free(reason);
            free(ans);
            return OOM(err);
        }
        free(m->content);
        m->content = ans;
        m->reasoning = reason;
    }
    return V3_OK;
}

static v3_format detect(const v3_ingest_opts *o, const json_t *row) {
    const v3_ingest_fields *f = &o->f;
    if (json_object_get(row, f->messages)) return V3_FMT_MESSAGES;
    if (json_object_get(row, f->conversations)) return V3_FMT_SHAREGPT;
    if (json_object_get(row, f->instruction)) return V3_FMT_ALPACA;
    if (json_object_get(row, f->prompt) || json_object_get(row, f->completion)) return V3_FMT_PROMPT_COMPLETION;
    if (json_object_get(row, f->text)) return V3_FMT_TEXT;
    return V3_FMT_AUTO;
}

int v3_ingest_row(const v3_ingest_opts *o, const char *text, size_t len, v3_conv *out, v3_err *err) {
    v3_conv_clear(out);
    json_error_t je;
    json_t *row = json_loadb(text, len, 0, &je);
    if (!row) return v3_errf(err, V3_EFORMAT, "invalid JSON: %.200s (line %d, column %d of the row)", je.text, je.line, je.column);
    int rc = V3_OK;
    if (!json_is_object(row)) {
        rc = v3_errf(err, V3_EFORMAT, "row is not a JSON object (got %s)", type_name(row));
        goto done;
    }
    v3_format fmt = o->format != V3_FMT_AUTO ? o->format : detect(o, row);
    switch (fmt) {
    case V3_FMT_MESSAGES: {
        json_t *arr;
        if (!(rc = get_array(row, o->f.messages, &arr, err))) rc = parse_messages(o, arr, o->f.messages, out, err);
        if (!rc) rc = add_tools(o, row, out, err);
        break;
    }
    case V3_FMT_SHAREGPT: rc = parse_sharegpt(o, row, out, err); break;
    case V3_FMT_ALPACA: rc = parse_alpaca(o, row, out, err); break;
    case V3_FMT_PROMPT_COMPLETION: rc = parse_prompt_completion(o, row, out, err); break;
    case V3_FMT_TEXT: rc = parse_text(o, row, out, err); break;
    default:
        rc = v3_errf(err, V3_EFORMAT, "no known fields (expected \"%s\", \"%s\", \"%s\", \"%s\"/\"%s\" or \"%s\")",
                     o->f.messages, o->f.conversations, o->f.instruction, o->f.prompt, o->f.completion, o->f.text);
    }
    if (rc) goto done;
    if (o->split_think && (rc = split_think(out, err))) goto done;
    int n_asst = 0, n_body = 0;
    for (int i = 0; i < out->n_msgs; i++) {
        n_asst += out->msgs[i].role == V3_ROLE_ASSISTANT || out->msgs[i].role == V3_ROLE_TEXT;
        n_body += out->msgs[i].role != V3_ROLE_SYSTEM;
    }
    if (n_body == 0) rc = v3_errf(err, V3_EFORMAT, "empty conversation");
    else if (n_asst == 0) rc = v3_errf(err, V3_EFORMAT, "no assistant message (nothing to train on)");
done:
    json_decref(row);
    if (rc) v3_conv_clear(out);
    return rc;
}
