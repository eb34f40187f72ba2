/* distill_row_internal.h — helpers shared by distill_row.c (traces) and distill_prompt.c (the
 * rest of a row). Not part of the public API. */
#ifndef V3_DISTILL_ROW_INTERNAL_H
#define V3_DISTILL_ROW_INTERNAL_H

#include <jansson.h>

#include "datasets/distill_row.h"

/* A field by exact name, else by dotted path ("response.choices"); NULL when absent. */
const json_t *v3_distill_get(const json_t *row, const char *name);
/* The OpenAI role of a message (role or ShareGPT from: human/gpt/...), or NULL when unknown. */
const char *v3_distill_msg_role(const json_t *m);
/* Its content (content or ShareGPT value), any JSON type, or NULL. */
const json_t *v3_distill_msg_content(const json_t *m);
/* The first n messages of arr as {role, content} objects (roles normalised). */
int v3_distill_messages_from(const json_t *arr, size_t n, json_t **out, v3_err *err);
/* out->messages from the row's prompt fields unless already set; then the system prompt and the
 * prompt text. */
int v3_distill_prompt(const json_t *row, const v3_distill_fields *f, v3_distill_row *out,
                      v3_err *err);
/* Reference answer, original solution, model. */
int v3_distill_meta(const json_t *row, const v3_distill_fields *f, v3_distill_row *out,
                    v3_err *err);
/* The source's correctness flags, per generation (after the generations are known). */
void v3_distill_flags(const json_t *row, const v3_distill_fields *f, v3_distill_row *out);

#endif
