/* ckpt.h — training checkpoints: run_dir/step-N/ holds a loadable Hugging Face model directory
 * (config.json, safetensors, tokenizer files) plus what exact resumption needs: optim.bin (AdamW
 * m, v, step) and trainer_state.json (versioned: step, tokens, data cursor, RNG, guard window).
 *
 * Atomicity: everything is written into step-N.tmp/, then the directory is renamed to step-N; a
 * crash leaves at worst a *.tmp directory, which is never taken for a checkpoint and is removed by
 * the next write. trainer_state.json is written last inside the tmp directory, so a step-N without
 * it is not complete either. */
#ifndef V3_CKPT_H
#define V3_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/err.h"
#include "common/rng.h"
#include "datasets/pack.h"
#include "model/model.h"
#include "trainer/guard.h"
#include "trainer/optim.h"

#define V3_TRAIN_STATE_VERSION 1

typedef struct v3_train_state {
    int64_t step;           /* optimizer steps completed */
    int64_t tokens;         /* non-padding tokens trained on */
    v3_pack_cursor cursor;  /* next training batch */
    v3_rng rng;
    v3_guard guard;         /* window and counters (thresholds come from the config) */
} v3_train_state;

int v3_train_state_save(const v3_train_state *s, const char *path, v3_err *err);
/* Reads into s; guard thresholds already in s are kept. */
int v3_train_state_load(v3_train_state *s, const char *path, v3_err *err);

/* Writes run_dir/step-<state->step> atomically (see above). tok_dir: where tokenizer.json and
 * tokenizer_config.json are copied from (may be NULL). *bytes = size of the weights written. */
int v3_ckpt_write(const char *run_dir, v3_model *m, v3_optim *o, const v3_train_state *st,
                  v3_dtype dtype, const char *tok_dir, int64_t *bytes, v3_err *err);
/* The same, with a trainer's own files: extra (may be NULL) writes them into the not yet renamed
 * checkpoint directory tmp_dir, before trainer_state.json marks it complete. */
typedef int (*v3_ckpt_extra_fn)(void *user, const char *tmp_dir, v3_err *err);
int v3_ckpt_write_ext(const char *run_dir, v3_model *m, v3_optim *o, const v3_train_state *st,
                      v3_dtype dtype, const char *tok_dir, v3_ckpt_extra_fn extra, void *user,
                      int64_t *bytes, v3_err *err);
/* The complete checkpoint with the highest step: *step and path (run_dir/step-N).
 * V3_ENOTFOUND when there is none. */
int v3_ckpt_latest(const char *run_dir, int64_t *step, char *path, size_t n, v3_err *err);
/* Keeps the `keep` newest complete checkpoints (0 = all) and removes stale step-*.tmp dirs. */
int v3_ckpt_prune(const char *run_dir, int keep, v3_err *err);
/* rm -r */
int v3_rmtree(const char *path, v3_err *err);

#endif
