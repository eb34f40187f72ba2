/* distill_text.c — splitting R1 outputs into reasoning and answer, trimming, references. */
#include "datasets/distill_text.h"

#include <stdlib.h>
#include <string.h>

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

char *v3_distill_trim_dup(const char *s, size_t n) {
    size_t a = 0, b = n;
    while (a < b && is_space((unsigned char)s[a])) a++;
    while (b > a && is_space((unsigned char)s[b - 1])) b--;
    char *o = malloc(b - a + 1);
    if (!o) return NULL;
    memcpy(o, s + a, b - a);
    o[b - a] = 0;
    return o;
}

/* First occurrence of needle in s[0..n), or NULL (memmem without relying on its availability). */
static const char *find(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    if (k == 0 || k > n) return NULL;
    for (size_t i = 0; i + k <= n; i++)
        if (s[i] == needle[0] && memcmp(s + i, needle, k) == 0) return s + i;
    return NULL;
}

/* Last occurrence, or NULL. */
static const char *find_last(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    if (k == 0 || k > n) return NULL;
    for (size_t i = n - k + 1; i-- > 0;)
        if (s[i] == needle[0] && memcmp(s + i, needle, k) == 0) return s + i;
    return NULL;
}

static int set_parts(v3_distill_split_out *o, const char *r, size_t rn, const char *a, size_t an) {
    o->reasoning = v3_distill_trim_dup(r, rn);
    o->answer = v3_distill_trim_dup(a, an);
    if (!o->reasoning || !o->answer) {
        v3_distill_split_free(o);
        return -1;
    }
    return 0;
}

/* The answer of an OpenThoughts output, without its <|begin_of_solution|> wrapper. */
static int set_solution_answer(v3_distill_split_out *o, const char *r, size_t rn, const char *a,
                               size_t an) {
    static const char B[] = "<|begin_of_solution|>", E[] = "<|end_of_solution|>";
    const char *b = find(a, an, B);
    if (b) {
        const char *from = b + sizeof B - 1;
        size_t left = an - (size_t)(from - a);
        const char *e = find(from, left, E);
        return set_parts(o, r, rn, from, e ? (size_t)(e - from) : left);
    }
    return set_parts(o, r, rn, a, an);
}

int v3_distill_split(const char *text, size_t len, v3_split_mode mode, v3_distill_split_out *out) {
    static const char OPEN[] = "<think>", CLOSE[] = "</think>";
    static const char OT_OPEN[] = "<|begin_of_thought|>", OT_CLOSE[] = "<|end_of_thought|>";
    static const char FINAL[] = "**Final Answer**";
    memset(out, 0, sizeof *out);
    size_t a = 0;
    while (a < len && is_space((unsigned char)text[a])) a++;
    const char *t = text + a;
    size_t n = len - a;
    /* <think> … </think> (the opening tag is optional) */
    int opened = n >= sizeof OPEN - 1 && memcmp(t, OPEN, sizeof OPEN - 1) == 0;
    const char *body = opened ? t + sizeof OPEN - 1 : t;
    size_t body_n = n - (size_t)(body - t);
    const char *close = find(body, body_n, CLOSE);
    if (close) {
        const char *ans = close + sizeof CLOSE - 1;
        return set_parts(out, body, (size_t)(close - body), ans, body_n - (size_t)(ans - body));
    }
    if (opened) {
        out->truncated = 1;
        return set_parts(out, body, body_n, "", 0);
    }
    /* OpenThoughts' markers */
    const char *ob = find(t, n, OT_OPEN);
    if (ob) {
        const char *from = ob + sizeof OT_OPEN - 1;
        size_t left = n - (size_t)(from - t);
        const char *oe = find(from, left, OT_CLOSE);
        if (!oe) {
            out->truncated = 1;
            return set_parts(out, from, left, "", 0);
        }
        const char *ans = oe + sizeof OT_CLOSE - 1;
        return set_solution_answer(out, from, (size_t)(oe - from), ans, n - (size_t)(ans - t));
    }
    if (mode == V3_SPLIT_ANSWER) return set_parts(out, "", 0, t, n); /* a plain answer */
    if (mode == V3_SPLIT_OPEN) {
        out->truncated = 1;
        return set_parts(out, t, n, "", 0);
    }
    const char *fin = find_last(t, n, FINAL);
    if (fin && fin > t) return set_parts(out, t, (size_t)(fin - t), fin, n - (size_t)(fin - t));
    return set_parts(out, t, n, "", 0);
}

void v3_distill_split_free(v3_distill_split_out *out) {
    free(out->reasoning);
    free(out->answer);
    out->reasoning = out->answer = NULL;
}

char *v3_distill_reference(const char *s) {
    /* GSM8K: the worked solution ends with "#### <answer>" on its own line */
    const char *h = NULL;
    for (const char *p = strstr(s, "####"); p; p = strstr(p + 4, "####"))
        if (p == s || p[-1] == '\n') h = p;
    if (h) return v3_distill_trim_dup(h + 4, strlen(h + 4));
    return v3_distill_trim_dup(s, strlen(s));
}
