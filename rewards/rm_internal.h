/* rm_internal.h — what the reward model's files share (rm.c loads, rm_input.c builds sequences,
 * rm_score.c packs and scores). Not part of the public API (rewards/rm.h). */
#ifndef V3_REWARDS_RM_INTERNAL_H
#define V3_REWARDS_RM_INTERNAL_H

#include "datasets/chat.h"
#include "model/model.h"
#include "rewards/rm.h"

#define V3_RM_TEMPLATE_RAW (-1) /* tmpl: prompt + completion encoded as one text */

struct v3_rm {
    v3_config cfg;
    v3_model m;
    int have_model;
    v3_tokenizer *tok;
    v3_reward_func_info info;
    int tmpl;             /* v3_chat_template, or V3_RM_TEMPLATE_RAW */
    int label, num_labels, pad_id;
    int64_t max_tokens;
    /* packing buffers (host) [max_tokens] */
    int32_t *tokens, *positions, *doc_start, *out_rows;
    float *scores;        /* [max_tokens * num_labels] */
};

#endif
