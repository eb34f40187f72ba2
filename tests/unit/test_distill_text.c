/* test_distill_text.c — the pure text side of distillation: splitting R1 outputs into reasoning and
 * answer (every tag form, cut-off outputs, the three modes of an untagged text), GSM8K references,
 * the dedupe key's normalisation, the key set, the script-fraction language measure and the
 * n-gram repetition ratio, with exact expected values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/distill_metrics.h"
#include "datasets/distill_text.h"
#include "testutil.h"

static void split_case(const char *text, v3_split_mode mode, const char *want_r, const char *want_a,
                       int want_trunc) {
    v3_distill_split_out o;
    CHECK(v3_distill_split(text, strlen(text), mode, &o) == 0, "split %s", text);
    CHECK(!strcmp(o.reasoning, want_r), "reasoning of [%s]: [%s], want [%s]", text, o.reasoning, want_r);
    CHECK(!strcmp(o.answer, want_a), "answer of [%s]: [%s], want [%s]", text, o.answer, want_a);
    CHECK(o.truncated == want_trunc, "truncated of [%s]: %d", text, o.truncated);
    v3_distill_split_free(&o);
}

static void test_split(void) {
    split_case("<think>\nR1 thinks\n</think>\n\nThe answer is 4.", V3_SPLIT_ANSWER, "R1 thinks",
               "The answer is 4.", 0);
    /* API dumps: reasoning + "</think>" + answer, no opening tag */
    split_case("Okay, so 2+2.\n</think>\\boxed{4}", V3_SPLIT_ANSWER, "Okay, so 2+2.", "\\boxed{4}", 0);
    split_case("  \n<think>a</think>b</think>c", V3_SPLIT_ANSWER, "a", "b</think>c", 0);
    /* opened and never closed: cut off */
    split_case("<think>\nlet me see... 17_b = b + 7", V3_SPLIT_ANSWER, "let me see... 17_b = b + 7", "", 1);
    /* OpenThoughts markers, with and without the solution wrapper */
    split_case("<|begin_of_thought|>\n\nthink\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\nsol\n\n"
               "<|end_of_solution|>", V3_SPLIT_ANSWER, "think", "sol", 0);
    split_case("<|begin_of_thought|>t<|end_of_thought|> plain", V3_SPLIT_ANSWER, "t", "plain", 0);
    split_case("<|begin_of_thought|> cut", V3_SPLIT_ANSWER, "cut", "", 1);
    /* no tags: by mode */
    split_case("Just 4.", V3_SPLIT_ANSWER, "", "Just 4.", 0);
    split_case("Okay, so I need... and then", V3_SPLIT_OPEN, "Okay, so I need... and then", "", 1);
    split_case("So the sum is 70.\n\n**Final Answer**\n\\boxed{70}", V3_SPLIT_REASONING,
               "So the sum is 70.", "**Final Answer**\n\\boxed{70}", 0);
    split_case("Long reasoning, no final section", V3_SPLIT_REASONING,
               "Long reasoning, no final section", "", 0);
    split_case("", V3_SPLIT_ANSWER, "", "", 0);
}

static void test_reference(void) {
    char *r = v3_distill_reference("He sprints 3*3=<<3*3=9>>9 times\nSo 9*60=540\n#### 540");
    CHECK(r && !strcmp(r, "540"), "gsm8k reference: %s", r);
    free(r);
    r = v3_distill_reference("  6 - 5i \n");
    CHECK(r && !strcmp(r, "6 - 5i"), "trimmed reference: %s", r);
    free(r);
    r = v3_distill_reference("C# #### not a gsm8k mark");
    CHECK(r && !strcmp(r, "C# #### not a gsm8k mark"), "#### inside a line is kept: %s", r);
    free(r);
}

static void test_key(void) {
    const char *p1[] = {"user", "What is  2+2?"}, *p2[] = {"user", "  What is 2+2?\n"};
    const char *p3[] = {"system", "be brief", "user", "What is 2+2?"};
    uint64_t a = v3_distill_key(p1, 2, "think\n\nhard", "4");
    CHECK(a != 0, "key is never 0");
    CHECK(a == v3_distill_key(p2, 2, " think hard ", "4\n"), "whitespace is normalised");
    CHECK(a != v3_distill_key(p1, 2, "think hard", "5"), "another answer is another trace");
    CHECK(a != v3_distill_key(p1, 2, "think", "hard 4"), "the reasoning/answer boundary counts");
    CHECK(a != v3_distill_key(p3, 4, "think hard", "4"), "a system prompt is part of the prompt");
    CHECK(a != v3_distill_key(p1, 2, "Think hard", "4"), "case is kept");

    v3_keyset s;
    v3_keyset_init(&s);
    int ok = 1;
    for (uint64_t k = 1; k <= 5000; k++) ok &= v3_keyset_add(&s, k * 0x9E3779B97F4A7C15ull) == 1;
    for (uint64_t k = 1; k <= 5000; k++) ok &= v3_keyset_add(&s, k * 0x9E3779B97F4A7C15ull) == 0;
    CHECK(ok && s.n == 5000, "key set: %zu keys", s.n);
    CHECK(v3_keyset_has(&s, 3 * 0x9E3779B97F4A7C15ull) && !v3_keyset_has(&s, 12345),
          "membership");
    CHECK(v3_keyset_add(&s, 0) == 0 && !v3_keyset_has(&s, 0), "0 is never a key");
    v3_keyset_free(&s);
}

static void test_language(void) {
    size_t c[V3_SCRIPT_COUNT];
    /* 7 Latin letters, 4 Han, 1 Greek (left out of fractions); digits, punctuation, spaces: none */
    const char *mixed = "Let x = 3, so 2x + π = 6; 所以答案";
    size_t total = v3_script_counts(mixed, strlen(mixed), c);
    CHECK(c[V3_SCRIPT_LATIN] == 7 && c[V3_SCRIPT_CJK] == 4 && c[V3_SCRIPT_GREEK] == 1 && total == 12,
          "counts: latin %zu cjk %zu greek %zu total %zu", c[V3_SCRIPT_LATIN], c[V3_SCRIPT_CJK],
          c[V3_SCRIPT_GREEK], total);
    CHECK(fabs(v3_script_fraction(c, V3_SCRIPT_LATIN, 1) - 7.0 / 11.0) < 1e-12, "latin fraction %g",
          v3_script_fraction(c, V3_SCRIPT_LATIN, 1));
    CHECK(v3_script_fraction(c, V3_SCRIPT_LATIN, 20) == 1.0, "too short to judge");
    CHECK(v3_script_dominant(c) == V3_SCRIPT_LATIN, "dominant latin");
    const char *ru = "Пусть x равно трём";
    v3_script_counts(ru, strlen(ru), c);
    CHECK(c[V3_SCRIPT_CYRILLIC] == 14 && c[V3_SCRIPT_LATIN] == 1 &&
          v3_script_dominant(c) == V3_SCRIPT_CYRILLIC, "cyrillic %zu", c[V3_SCRIPT_CYRILLIC]);
    const char *ko = "답은 사입니다 and";
    v3_script_counts(ko, strlen(ko), c);
    CHECK(c[V3_SCRIPT_HANGUL] == 6 && c[V3_SCRIPT_LATIN] == 3, "hangul %zu", c[V3_SCRIPT_HANGUL]);
    CHECK(v3_script_parse("cjk") == V3_SCRIPT_CJK && v3_script_parse("klingon") == -1, "names");
    const char *bad = "ab\xff\xfe";
    v3_script_counts(bad, strlen(bad), c);
    CHECK(c[V3_SCRIPT_OTHER] == 2 && c[V3_SCRIPT_LATIN] == 2, "invalid bytes: other %zu",
          c[V3_SCRIPT_OTHER]);
}

static void test_repetition(void) {
    CHECK(v3_repetition_ratio("a b c d e f", 11, 2) == 0.0, "no repeat");
    /* "a b a b a b": bigrams ab ba ab ba ab = 5, distinct 2 -> 1 - 2/5 */
    CHECK(fabs(v3_repetition_ratio("a b a b a b", 11, 2) - 0.6) < 1e-12, "loop %g",
          v3_repetition_ratio("a b a b a b", 11, 2));
    CHECK(v3_repetition_ratio("a b", 3, 4) == 0.0, "shorter than n");
    CHECK(v3_repetition_ratio("", 0, 1) == 0.0, "empty");
    /* 200 copies of one 8-word sentence: 1593 8-grams, 8 distinct */
    char *loop = malloc(200 * 48 + 1);
    loop[0] = 0;
    for (int i = 0; i < 200; i++) strcat(loop, "Wait, let me check that again from here. ");
    double r = v3_repetition_ratio(loop, strlen(loop), 8);
    CHECK(fabs(r - (1.0 - 8.0 / 1593.0)) < 1e-12, "looping trace %g", r);
    free(loop);
}

int main(void) {
    test_split();
    test_reference();
    test_key();
    test_language();
    test_repetition();
    return t_finish("test_distill_text");
}
