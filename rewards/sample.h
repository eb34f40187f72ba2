/* sample.h — the reward sample on the wire and the combination of per-function scores.
 *
 * A sample travels to a worker as one JSON object (all fields optional):
 *   {"prompt": str, "messages": [...], "completion": str, "completion_ids": [int...],
 *    "finish_reason": str, "row": {...}, "group": int, "index": int}
 * Prompt and completion texts longer than the host's max_text are cut (at a UTF-8 boundary) and
 * "truncated": true is added, so a script can tell. */
#ifndef V3_REWARDS_SAMPLE_H
#define V3_REWARDS_SAMPLE_H

#include <stddef.h>

#include "common/err.h"
#include "rewards/host.h"

/* Encodes s as compact JSON (malloc'd, *len bytes, NUL-terminated). V3_EFORMAT when messages_json
 * or row_json is not valid JSON of the right kind (array, object), V3_ERANGE when the encoding is
 * longer than max_sample, V3_ENOMEM. */
int v3_reward_sample_encode(const v3_reward_sample *s, size_t max_text, size_t max_sample,
                            char **json, size_t *len, v3_err *err);

/* Fills r->reward, n_scored, n_errors from r->values[0..n_funcs) with TRL's rule:
 * reward = nansum(weight·score); skipped (NaN) scores drop out; all skipped gives 0. */
void v3_reward_combine(v3_reward_result *r, const double *weights, int n_funcs);

#endif
