/* test_math_golden.c — our math reward against math-verify's verdicts (TRL/open-r1
 * accuracy_reward) on the labelled pairs of tests/golden/data/math_pairs.jsonl.zst (made by
 * tests/golden/gen_math_pairs.py). Prints the agreement rate and every disagreement; fails below
 * 99% agreement or with fewer than 2,000 pairs. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/jsonl.h"
#include "rewards/math_verify.h"
#include "testutil.h"

int main(void) {
    char path[4096];
    t_source_path("tests/golden/data/math_pairs.jsonl.zst", path, sizeof path);
    /* V3_MATH_PAIRS points the same check at another labelled file (e.g. full-length traces) */
    const char *alt = getenv("V3_MATH_PAIRS");
    if (alt && *alt) snprintf(path, sizeof path, "%s", alt);
    v3_err err = {0};
    v3_jsonl *r = NULL;
    CHECK_OK(v3_jsonl_open(&r, path, V3_JSONL_LINES, 0, &err), &err);
    if (!r) return t_finish("test_math_golden");
    v3_math_opts o;
    v3_math_opts_default(&o);
    long n = 0, agree = 0, by_label[3] = {0, 0, 0}, dis_label[3] = {0, 0, 0};
    for (;;) {
        v3_record rec;
        int got = 0;
        if (v3_jsonl_next(r, &rec, &got, &err) != V3_OK) {
            CHECK(0, "%s", err.msg);
            break;
        }
        if (!got) break;
        json_error_t je;
        json_t *row = json_loadb(rec.text, rec.len, 0, &je);
        CHECK(row != NULL, "line %lld: %s", (long long)rec.line, je.text);
        if (!row) continue;
        const char *gold = json_string_value(json_object_get(row, "gold"));
        const char *comp = json_string_value(json_object_get(row, "completion"));
        const char *src = json_string_value(json_object_get(row, "src"));
        json_t *lab = json_object_get(row, "label");
        CHECK(gold && comp && src && lab, "line %lld: missing fields", (long long)rec.line);
        if (!(gold && comp && src && lab)) { json_decref(row); continue; }
        int want = json_is_null(lab) ? 2 : (json_number_value(lab) > 0.5 ? 1 : 0);
        v3_math_status st;
        double rw = v3_math_accuracy_reward(comp, strlen(comp), gold, strlen(gold), &o, &st);
        int got_l = st == V3_MATH_GOLD_UNPARSED ? 2 : (rw > 0.5 ? 1 : 0);
        n++;
        by_label[want]++;
        if (got_l == want) agree++;
        else {
            dis_label[want]++;
            static const char *nm[3] = {"0", "1", "None"};
            char out[256];
            v3_math_extract_kind k;
            v3_math_extract(comp, strlen(comp), out, sizeof out, &k, NULL);
            size_t cl = strlen(comp);
            fprintf(stderr, "DISAGREE id=%lld src=%s want=%s got=%s gold=%.80s extracted=%.80s completion_tail=%.120s\n",
                    (long long)json_integer_value(json_object_get(row, "id")), src, nm[want], nm[got_l], gold, out,
                    cl > 120 ? comp + cl - 120 : comp);
        }
        json_decref(row);
    }
    v3_jsonl_close(r);
    double rate = n ? (double)agree / (double)n : 0.0;
    printf("math golden: %ld pairs (label 1: %ld, 0: %ld, None: %ld), agreement %.2f%% (%ld disagreements: "
           "%ld on label 1, %ld on label 0, %ld on None)\n",
           n, by_label[1], by_label[0], by_label[2], 100.0 * rate, n - agree, dis_label[1], dis_label[0],
           dis_label[2]);
    CHECK(n >= 2000, "only %ld pairs", n);
    CHECK(rate >= 0.99, "agreement %.4f below 0.99", rate);
    return t_finish("test_math_golden");
}
