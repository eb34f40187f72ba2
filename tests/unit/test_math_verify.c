/* test_math_verify.c — edge cases of the math reward: extraction, equivalence, open-r1 reward
 * semantics, and adversarial inputs (1 MB of '{', deep \frac nesting, 9^9^9^9) that must finish
 * quickly without crashing. Expected verdicts were checked against math-verify 0.9.0. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rewards/math_verify.h"
#include "testutil.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check_extract(const char *text, const char *want, v3_math_extract_kind want_kind) {
    char out[256];
    v3_math_extract_kind k;
    int rc = v3_math_extract(text, strlen(text), out, sizeof out, &k, NULL);
    if (!want) {
        CHECK(rc == -1 && k == V3_MATH_NONE, "extract(%s) found [%s]", text, out);
        return;
    }
    CHECK(rc == 0 && strcmp(out, want) == 0 && k == want_kind, "extract(%s) = [%s] kind %d, want [%s] kind %d",
          text, out, (int)k, want, (int)want_kind);
}

static void check_reward(const char *gold, const char *completion, double want, v3_math_status want_st) {
    v3_math_status st;
    double r = v3_math_accuracy_reward(completion, strlen(completion), gold, strlen(gold), NULL, &st);
    CHECK(r == want && st == want_st, "reward(gold=%s, completion=%s) = %g status %d, want %g status %d", gold,
          completion, r, (int)st, want, (int)want_st);
}

static void check_equal(const char *gold, const char *pred, int want) {
    int got = v3_math_equal(gold, pred, NULL);
    CHECK(got == want, "equal(%s, %s) = %d, want %d", gold, pred, got, want);
}

static void test_extract(void) {
    check_extract("so it is \\boxed{42}.", "42", V3_MATH_BOXED);
    check_extract("first \\boxed{1} then after a long detour we decide \\boxed{2}", "2", V3_MATH_BOXED);
    check_extract("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", V3_MATH_BOXED);
    check_extract("\\[\\boxed{x^{2}+1}\\]", "x^{2}+1", V3_MATH_BOXED);
    check_extract("The answer is $7$.", "7", V3_MATH_ANSWER_WORD);
    check_extract("**Answer:** \\(12\\)", "12", V3_MATH_ANSWER_WORD);
    check_extract("The final answer is $3$. I hope it is correct.", "3", V3_MATH_FINAL_ANSWER);
    check_extract("The answer is 42.", NULL, V3_MATH_NONE); /* no LaTeX: open-r1 finds nothing */
    check_extract("", NULL, V3_MATH_NONE);
    /* optional fallbacks outside math-verify */
    v3_math_opts o;
    v3_math_opts_default(&o);
    o.gsm8k_hash = 1;
    char out[64];
    v3_math_extract_kind k;
    const char *g = "She pays 3 + 4 = 7 dollars.\n#### 1,000";
    CHECK(v3_math_extract(g, strlen(g), out, sizeof out, &k, &o) == 0 && !strcmp(out, "1,000") &&
              k == V3_MATH_GSM8K_HASH, "#### extraction gave [%s]", out);
    o.gsm8k_hash = 0;
    o.last_number_fallback = 1;
    const char *l = "so we get 12 and then -3.5 apples";
    CHECK(v3_math_extract(l, strlen(l), out, sizeof out, &k, &o) == 0 && !strcmp(out, "-3.5") &&
              k == V3_MATH_LAST_NUMBER, "last number gave [%s]", out);
}

static void test_equal(void) {
    check_equal("42", "42", 1);
    check_equal("42", "42.0", 1);
    check_equal("42", "43", 0);
    check_equal("42", "-42", 0);
    check_equal("\\frac{1}{2}", "0.5", 1);
    check_equal("\\frac{1}{2}", "\\dfrac{1}{2}", 1);
    check_equal("\\frac{1}{2}", "\\frac{2}{4}", 1);
    check_equal("\\frac{1}{3}", "0.333333", 1);  /* decimals are rounded to 6 places */
    check_equal("\\frac{1}{3}", "0.333", 0);
    check_equal("\\frac{2}{3}", "\\frac{3}{2}", 0);
    check_equal("1000", "1,000", 1);
    check_equal("1000", "1{,}000", 1);
    check_equal("0.5", "50\\%", 1);
    check_equal("50", "50\\%", 1);
    check_equal("5", "x = 5", 1);
    check_equal("5", "x=6", 0);
    check_equal("18", "\\$18", 1);
    check_equal("18", "18 \\text{ dollars}", 1);
    check_equal("10", "10^\\circ", 1);
    check_equal("5", "5 cm", 1);
    check_equal("12", "12 \\text{ cm}^2", 1);
    check_equal("120", "120 degrees", 1);
    check_equal("p-q", "\\left( p - q \\right)", 0); /* "q )" is the unit "q ." upstream: p - is left */
    check_equal("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty, 2) \\cup (3, \\infty)", 1);
    check_equal("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty, 2) \\cup [3, \\infty)", 0);
    check_equal("1000", "(1,000)", 0);      /* a pair, not a number, unless it is the whole answer */
    check_equal("3 \\pm 2\\sqrt{2}", "\\{3 - 2\\sqrt{2}, 3 + 2\\sqrt{2}\\}", 1);
    check_equal("2\\sqrt{3}", "\\sqrt{12}", 1);
    check_equal("2\\sqrt{3}", "\\sqrt{13}", 0);
    check_equal("\\frac{\\pi}{2}", "1.570796", 1);
    check_equal("\\pi", "3.14", 0);
    check_equal("2\\frac{1}{2}", "\\frac{5}{2}", 1); /* mixed number */
    check_equal("x^2+1", "1+x^2", 1);
    check_equal("x^2+1", "x^2-1", 0);
    check_equal("\\{1,2\\}", "\\{2,1\\}", 1);
    check_equal("(1,2)", "(2,1)", 0);
    check_equal("[0,1)", "[0,1)", 1);
    check_equal("[0,1)", "[0,1]", 0);
    check_equal("(1,2)", "1,2", 1);
    check_equal("\\text{Evelyn}", "\\text{evelyn}", 1);
    check_equal("\\text{(C)}", "C", 1);
    check_equal("\\{1\\pm\\sqrt{5},-2\\}", "\\{-2, 1 - \\sqrt{5}, 1 + \\sqrt{5}\\}", 1);
    check_equal("x \\in [1,2]", "[1,2]", 1);
    check_equal("6", "3!", 1);
    check_equal("1000000", "10^6", 1);
    check_equal("\\frac12", "\\frac{1}{2}", 1); /* gold shorthand is repaired */
}

static void test_reward(void) {
    check_reward("$42$", "so \\boxed{42}", 1.0, V3_MATH_OK);
    check_reward("$42$", "so \\boxed{41}", 0.0, V3_MATH_OK);
    check_reward("$42$", "The answer is 42.", 0.0, V3_MATH_NO_ANSWER);
    check_reward("42", "\\boxed{42}", 0.0, V3_MATH_GOLD_UNPARSED); /* no LaTeX in gold: None */
    check_reward("Since $x=3$, the sum is $\\boxed{7}$.", "\\boxed{7}", 1.0, V3_MATH_OK);
    check_reward("$\\frac 59$", "\\boxed{\\frac 59}", 0.0, V3_MATH_OK); /* pred shorthand fails in latex2sympy */
    check_reward("$3$", "\\boxed{3}\\boxed{4}", 0.0, V3_MATH_OK);        /* adjacent boxes join: {3,4} */
    check_reward("$1+2i$", "\\boxed{1 + 2 i}", 0.0, V3_MATH_OK);          /* complex-looking symbols differ */
    check_reward("$5$", "$x = 2 + 3 = 5$ answer: $x=2+3=5$", 1.0, V3_MATH_OK);
}

static void test_adversarial(void) {
    const size_t MB = 1 << 20;
    char *buf = malloc(MB + 64);
    CHECK(buf != NULL, "malloc");
    if (!buf) return;
    double t0 = now_s();
    v3_math_opts o;
    v3_math_opts_default(&o);
    o.max_input = 2 * MB; /* look at all of it */
    v3_math_status st;

    memset(buf, '{', MB);
    buf[MB] = 0;
    v3_math_accuracy_reward(buf, MB, "$1$", 3, &o, &st);
    memcpy(buf, "\\boxed", 6);
    v3_math_accuracy_reward(buf, MB, "$1$", 3, &o, &st);
    v3_math_equal(buf, buf, &o);

    memset(buf, '$', MB);
    v3_math_accuracy_reward(buf, MB, buf, MB, &o, &st);
    for (size_t i = 0; i + 2 <= MB; i += 2) memcpy(buf + i, "\\[", 2);
    v3_math_accuracy_reward(buf, MB, buf, MB, &o, &st);
    for (size_t i = 0; i + 2 <= MB; i += 2) memcpy(buf + i, "\\(", 2);
    v3_math_accuracy_reward(buf, MB, buf, MB, &o, &st);
    for (size_t i = 0; i + 3 <= MB; i += 3) memcpy(buf + i, " [a", 3);
    v3_math_accuracy_reward(buf, MB, buf, MB, &o, &st);
    for (size_t i = 0; i + 7 <= MB; i += 7) memcpy(buf + i, "answer$", 7);
    v3_math_accuracy_reward(buf, MB, buf, MB, &o, &st);
    for (size_t i = 0; i + 6 <= MB; i += 6) memcpy(buf + i, "answer", 6);
    v3_math_accuracy_reward(buf, MB, "$1$", 3, &o, &st);
    for (size_t i = 0; i + 8 <= MB; i += 8) memcpy(buf + i, "\\boxed{}", 8);
    v3_math_accuracy_reward(buf, MB, "$1$", 3, &o, &st);

    /* deep \frac nesting: refused past the depth cap, never a stack overflow */
    size_t n = 0;
    memcpy(buf + n, "\\boxed{", 7), n += 7;
    for (int i = 0; i < 20000; i++) memcpy(buf + n, "\\frac{1}{", 9), n += 9;
    buf[n++] = '2';
    for (int i = 0; i < 20000; i++) buf[n++] = '}';
    buf[n++] = '}';
    buf[n] = 0;
    double r = v3_math_accuracy_reward(buf, n, "$1$", 3, &o, &st);
    CHECK(r == 0.0, "deep frac reward %g", r);
    char deep[200];
    strcpy(deep, "\\frac{1}{\\frac{1}{\\frac{1}{2}}}");
    check_equal("\\frac{1}{2}", deep, 1); /* shallow nesting still works */

    /* huge powers saturate instead of looping or overflowing */
    check_equal("9^9^9^9", "9^{9^{9^{9}}}", 0); /* both infinite: sympy cannot compare either */
    check_equal("2^{10}", "1024", 1);
    check_equal("10^{400}", "10^{401}", 0);
    check_reward("$1$", "\\boxed{9^9^9^9^9^9^9^9}", 0.0, V3_MATH_OK);
    check_reward("$1$", "\\boxed{99999999999999999999999999999999!}", 0.0, V3_MATH_OK);
    check_reward("$1$", "\\boxed{((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))}", 0.0, V3_MATH_OK);

    /* a random byte soup */
    uint64_t seed = t_seed("test_math_verify");
    v3_rng rng;
    v3_rng_seed(&rng, seed);
    static const char alpha[] = "{}()[]$\\boxed frac sqrt 0123456789,.=^_%answer:";
    for (int it = 0; it < 50; it++) {
        size_t len = 1 + (size_t)(v3_rng_u64(&rng) % 4096);
        for (size_t i = 0; i < len; i++) buf[i] = alpha[v3_rng_u64(&rng) % (sizeof alpha - 1)];
        buf[len] = 0;
        v3_math_accuracy_reward(buf, len, buf, len, &o, &st);
        v3_math_equal(buf, buf, &o);
    }
    double dt = now_s() - t0;
    CHECK(dt < 10.0, "adversarial inputs took %.2f s", dt);
    printf("adversarial inputs: %.3f s\n", dt);
    free(buf);
}

int main(void) {
    test_extract();
    test_equal();
    test_reward();
    test_adversarial();
    return t_finish("test_math_verify");
}
