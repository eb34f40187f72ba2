/* ingest.h — one data row (a JSON object) → the one internal conversation every format becomes.
 *
 * Formats (v3_format): OpenAI `messages` (role/content, optional reasoning_content, tool_calls,
 * tool role, content as a string, null or a list of {"type":"text","text":...} parts), ShareGPT
 * `conversations` (from/value with human/gpt/system/function_call/observation, plus top-level
 * `system` and `tools`), Alpaca instruction/input/output (optional `system` and `history`),
 * prompt/completion (strings, or message lists as TRL's conversational form), and raw `text`
 * (no template). AUTO picks per row by which fields are present. Field names come from
 * v3_ingest_fields, so data with other key names (gsm8k's question/answer) maps without code.
 *
 * A row that cannot become a usable conversation is a bad row: v3_ingest_row returns V3_EFORMAT
 * with a short reason ("missing field \"output\"") that the caller prefixes with file:line. */
#ifndef V3_INGEST_H
#define V3_INGEST_H

#include <stddef.h>

#include "common/err.h"

typedef enum v3_format {
    V3_FMT_AUTO = 0,
    V3_FMT_MESSAGES,
    V3_FMT_ALPACA,
    V3_FMT_SHAREGPT,
    V3_FMT_PROMPT_COMPLETION,
    V3_FMT_TEXT,
} v3_format;

typedef enum v3_role {
    V3_ROLE_SYSTEM = 0,
    V3_ROLE_USER,
    V3_ROLE_ASSISTANT,
    V3_ROLE_TOOL,
    V3_ROLE_TEXT, /* raw text (format "text"): rendered without a chat template */
} v3_role;

typedef struct v3_tool_call {
    char *type;      /* "function" */
    char *name;
    char *arguments; /* JSON text: kept verbatim when given as a string, else serialised */
} v3_tool_call;

typedef struct v3_msg {
    v3_role role;
    char *content;   /* NULL when absent/null (an assistant turn with only tool calls) */
    char *reasoning; /* assistant reasoning_content (R1), or NULL */
    v3_tool_call *calls;
    int n_calls;
} v3_msg;

typedef struct v3_conv {
    v3_msg *msgs;    /* [n_msgs] */
    int n_msgs, cap;
    char *tools;     /* JSON text of the tool schemas, or NULL */
} v3_conv;

/* The JSON keys each format reads; defaults are the usual names. */
typedef struct v3_ingest_fields {
    const char *messages, *role, *content, *reasoning, *tool_calls; /* messages form */
    const char *conversations, *from, *value;                       /* ShareGPT */
    const char *instruction, *input, *output, *history;             /* Alpaca */
    const char *prompt, *completion;                                /* prompt/completion */
    const char *system, *tools, *text;                              /* shared */
} v3_ingest_fields;

typedef struct v3_ingest_opts {
    v3_format format;
    v3_ingest_fields f;
    /* 1: an assistant content holding "</think>" is split: the text before it (minus a leading
     * "<think>") becomes reasoning, the rest the answer (R1 dumps that store both in one string). */
    int split_think;
} v3_ingest_opts;

void v3_ingest_opts_default(v3_ingest_opts *o);
/* Parses a format name (auto|messages|alpaca|sharegpt|prompt_completion|text); -1 if unknown. */
int v3_format_parse(const char *name);
const char *v3_format_name(v3_format f);
/* Sets one field mapping from "key=jsonname" (key as in v3_ingest_fields). The value pointer is
 * borrowed from spec. Returns V3_OK or V3_EUSAGE. */
int v3_ingest_map_field(v3_ingest_opts *o, char *spec, v3_err *err);

void v3_conv_init(v3_conv *c);
/* Empties c (keeps its allocation for the next row). */
void v3_conv_clear(v3_conv *c);
void v3_conv_free(v3_conv *c);
/* Appends a message; strings are copied (content/reasoning may be NULL). Returns the message or
 * NULL when out of memory. */
v3_msg *v3_conv_add(v3_conv *c, v3_role role, const char *content, const char *reasoning);
const char *v3_role_name(v3_role r);

/* Parses one row text[0..len) into out (cleared first). Bad row: V3_EFORMAT with the reason in
 * err (no file:line; the caller adds it). Every accepted conversation has at least one message,
 * and at least one assistant turn unless it is raw text. */
int v3_ingest_row(const v3_ingest_opts *o, const char *text, size_t len, v3_conv *out, v3_err *err);

#endif
