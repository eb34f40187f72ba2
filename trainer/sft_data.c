/* sft_data.c — SFT data on first use: raw JSONL conversations are prepared into token shards in
 * the run directory (datasets/prepare.h) once and reused on later runs and resumes; a directory
 * that already holds a prepared dataset (manifest.json) is used as is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "datasets/tokenizer.h"
#include "datasets/ingest.h"
#include "datasets/prepare.h"
#include "datasets/prepare_chat.h"
#include "trainer/sft.h"

static int has_manifest(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    return v3_dir_exists(dir) && v3_file_exists(p);
}

/* Prepares inputs into out (unless a dataset is already there). */
static int prepare(const v3_sft_opts *o, const char *const *inputs, int n, const char *out,
                   double eval_fraction, v3_err *err) {
    if (has_manifest(out)) return V3_OK;
    v3_prepare_opts po;
    v3_prepare_opts_default(&po);
    po.inputs = inputs;
    po.n_inputs = n;
    po.out_dir = out;
    po.mask_last = o->mask_last;
    po.max_len = o->seq_len;
    po.eval_fraction = eval_fraction;
    po.seed = o->seed;
    po.jobs = 2;
    po.template_name = o->template_name;
    po.log = o->log;
    po.progress_tty = o->tty;
    int f = v3_format_parse(o->format ? o->format : "auto");
    if (f < 0) return v3_errf(err, V3_EINVAL, "unknown data.format '%s'", o->format);
    po.ingest.format = (v3_format)f;
    /* v3_ingest_map_field borrows from its (mutable) argument: keep the copies until the end */
    char **specs = calloc((size_t)o->n_fields + 1, sizeof *specs);
    int rc = specs ? V3_OK : v3_errf(err, V3_ENOMEM, "out of memory");
    for (int i = 0; i < o->n_fields && !rc; i++) {
        specs[i] = strdup(o->fields[i]);
        if (!specs[i]) rc = v3_errf(err, V3_ENOMEM, "out of memory");
        else if (v3_ingest_map_field(&po.ingest, specs[i], err)) rc = V3_EINVAL;
    }
    char tb[4200];
    v3_chat_encoder ce;
    v3_encoder enc;
    const char *td = v3_tok_find_dir(o->tokenizer_dir, o->model_dir, tb, sizeof tb);
    if (!rc) rc = v3_chat_encoder_init(&ce, &enc, td, o->template_name, o->mask_last, err);
    if (!rc) {
        v3_prepare_stats st;
        rc = v3_prepare_run(&po, &enc, &st, err);
        v3_chat_encoder_free(&ce);
        if (!rc && o->log)
            fprintf(o->log, "prepared %s: %llu docs (train %llu, eval %llu), %llu tokens, %llu bad rows\n",
                    out, (unsigned long long)st.docs, (unsigned long long)st.docs_train,
                    (unsigned long long)st.docs_eval, (unsigned long long)st.tokens,
                    (unsigned long long)st.bad_rows);
    }
    for (int i = 0; i < o->n_fields && specs; i++) free(specs[i]);
    free(specs);
    return rc;
}

int v3_sft_prepare_data(const v3_sft_opts *o, char *train_dir, size_t n1, char *eval_dir, size_t n2,
                        const char **eval_split, v3_err *err) {
    int rc;
    eval_dir[0] = 0;
    *eval_split = "eval";
    if (o->n_train < 1) return v3_errf(err, V3_EINVAL, "data.train: no input");
    double frac = o->n_eval > 0 ? 0.0 : o->eval_fraction;
    if (o->n_train == 1 && has_manifest(o->train[0])) {
        snprintf(train_dir, n1, "%s", o->train[0]);
    } else {
        snprintf(train_dir, n1, "%s/data", o->run_dir);
        if ((rc = prepare(o, o->train, o->n_train, train_dir, frac, err))) return rc;
    }
    if (o->n_eval > 0) {
        /* separate eval files: everything in their one prepared dir is the eval set */
        *eval_split = "train";
        if (o->n_eval == 1 && has_manifest(o->eval[0])) {
            snprintf(eval_dir, n2, "%s", o->eval[0]);
            *eval_split = NULL;
            return V3_OK;
        }
        snprintf(eval_dir, n2, "%s/data-eval", o->run_dir);
        return prepare(o, o->eval, o->n_eval, eval_dir, 0.0, err);
    }
    if (frac > 0) snprintf(eval_dir, n2, "%s", train_dir);
    return V3_OK;
}
