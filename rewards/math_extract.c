/* math_extract.c — finds where the final answer is in a text, the way math-verify's LaTeX
 * extraction does: patterns grouped by priority (boxed, "final answer ... is", "answer:",
 * "answer", plain LaTeX environments), within a group the match that ends rightmost wins.
 * Instead of regular expressions it scans by hand, with a step budget so that adversarial text
 * (megabytes of "$" or "\[" without a closer) costs bounded time. */
#include <ctype.h>
#include <string.h>

#include "rewards/math_internal.h"

#define ENV_SCAN_MAX 8192      /* longest environment content considered */
#define STEP_BUDGET (1u << 23) /* character steps per text; past it the search stops */

typedef struct {
    const char *t;
    size_t n;
    unsigned long steps;
} scan;

typedef struct {
    size_t start, end;      /* whole match [start, end) */
    size_t in_off, in_len;  /* content of the environment */
    int pct;
} env_hit;

static int spent(scan *s, size_t k) {
    s->steps += k;
    return s->steps > STEP_BUDGET;
}

static int is_sp(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* "-?\d+([.,]\d+)?" at i; returns end or 0. */
static size_t simple_number(const char *t, size_t n, size_t i) {
    size_t j = i;
    if (j < n && t[j] == '-') j++;
    size_t d = j;
    while (j < n && isdigit((unsigned char)t[j])) j++;
    if (j == d) return 0;
    if (j + 1 < n && (t[j] == '.' || t[j] == ',') && isdigit((unsigned char)t[j + 1])) {
        j++;
        while (j < n && isdigit((unsigned char)t[j])) j++;
    }
    return j;
}

/* One LaTeX environment starting exactly at i (math-verify's alternatives, in its order). */
static int env_at(scan *s, size_t i, int plain_ctx, env_hit *h) {
    const char *t = s->t;
    size_t n = s->n;
    char prev = i > 0 ? t[i - 1] : 0;
    size_t lim;
    if (i >= n) return 0;
    /* $$ ... $$ */
    if (t[i] == '$' && i + 1 < n && t[i + 1] == '$' && prev != '\\') {
        lim = n < i + 2 + ENV_SCAN_MAX ? n : i + 2 + ENV_SCAN_MAX;
        for (size_t j = i + 3; j + 1 < lim + 1 && j + 1 < n; j++) {
            if (spent(s, 1)) return 0;
            if (t[j] == '$' && t[j + 1] == '$' && t[j - 1] != '\\') {
                h->in_off = i + 2; h->in_len = j - i - 2; h->end = j + 2;
                spent(s, j - i);
                goto found;
            }
        }
        spent(s, lim - i);
    }
    /* \[ ... \] */
    if (t[i] == '\\' && i + 1 < n && t[i + 1] == '[' && prev != '\\') {
        lim = n < i + 2 + ENV_SCAN_MAX ? n : i + 2 + ENV_SCAN_MAX;
        for (size_t j = i + 3; j + 1 < n && j < lim; j++) {
            if (spent(s, 1)) return 0;
            if (t[j] == '\\' && t[j + 1] == ']') {
                spent(s, j - i);
                if (t[j - 1] == '\\') break;
                h->in_off = i + 2; h->in_len = j - i - 2; h->end = j + 2;
                goto found;
            }
        }
        spent(s, lim - i);
    }
    /* $ ... $ on one line, not after a backslash or a digit */
    if (t[i] == '$' && prev != '\\' && !isdigit((unsigned char)prev)) {
        for (size_t j = i + 1; j < n && j < i + 1 + ENV_SCAN_MAX; j++) {
            if (spent(s, 1)) return 0;
            if (t[j] == '\n') break;
            if (t[j] == '$') {
                if (t[j - 1] == '\\' && j - 1 > i) continue; /* "\$" is content */
                if (j == i + 1) break;
                h->in_off = i + 1; h->in_len = j - i - 1; h->end = j + 1;
                spent(s, j - i);
                goto found;
            }
        }
    }
    /* \( ... \) on one line */
    if (t[i] == '\\' && i + 1 < n && t[i + 1] == '(' && prev != '\\') {
        for (size_t j = i + 2; j + 1 < n && j < i + 2 + ENV_SCAN_MAX; j++) {
            if (spent(s, 1)) return 0;
            if (t[j] == '\n') break;
            if (t[j] == '\\' && t[j + 1] == ')') {
                if (j == i + 2) break;
                h->in_off = i + 2; h->in_len = j - i - 2; h->end = j + 2;
                spent(s, j - i);
                goto found;
            }
        }
    }
    /* " [ ... ] " */
    if (is_sp(t[i]) && i + 1 < n && t[i + 1] == '[') {
        for (size_t j = i + 2; j < n && j < i + 2 + ENV_SCAN_MAX; j++) {
            if (spent(s, 1)) return 0;
            if (t[j] == '\n' || t[j] == '[') break;
            if (t[j] == ']') {
                if (j == i + 2 || j + 1 >= n || !is_sp(t[j + 1])) break;
                h->in_off = i + 2; h->in_len = j - i - 2; h->end = j + 2;
                spent(s, j - i);
                goto found;
            }
        }
    }
    /* -?\frac{number}{number} (plain extraction only) */
    if (plain_ctx) {
        size_t j = i;
        if (j < n && t[j] == '-') j++;
        if (j + 6 <= n && memcmp(t + j, "\\frac{", 6) == 0) {
            size_t a = simple_number(t, n, j + 6);
            if (a && a + 1 < n && t[a] == '}' && t[a + 1] == '{') {
                size_t b = simple_number(t, n, a + 2);
                if (b && b < n && t[b] == '}') {
                    h->in_off = i; h->in_len = b + 1 - i; h->end = b + 1;
                    goto found;
                }
            }
        }
    }
    return 0;
found:
    h->start = i;
    h->pct = 0;
    {
        size_t j = h->end;
        while (j < n && is_sp(t[j])) j++;
        size_t k = 0;
        if (j < n && t[j] == '%') k = 1;
        else if (j + 1 < n && t[j] == '\\' && t[j + 1] == '%') k = 2;
        else if (j + 7 <= n && (t[j] == 'P' || t[j] == 'p') && memcmp(t + j + 1, "ercent", 6) == 0) k = 7;
        else if (j + 3 <= n && (t[j] == 'P' || t[j] == 'p') && memcmp(t + j + 1, "ct", 2) == 0) k = 3;
        if (k) h->pct = 1;
        h->end = j + k; /* the greedy \s* is part of the match even without a percent sign */
    }
    return 1;
}

/* After an environment ending at end: "\s*(,?and|,?or|,)\s*" then another environment.
 * Returns 1 and fills h when there is one. */
static int next_env(scan *s, size_t end, int plain_ctx, env_hit *h) {
    const char *t = s->t;
    size_t j = end;
    while (j < s->n && is_sp(t[j])) j++;
    size_t c = j, sep = 0;
    if (c < s->n && t[c] == ',') c++;
    if (c + 3 <= s->n && memcmp(t + c, "and", 3) == 0) sep = c + 3;
    else if (c + 2 <= s->n && memcmp(t + c, "or", 2) == 0) sep = c + 2;
    else if (j < s->n && t[j] == ',') sep = j + 1;
    if (!sep) return 0;
    size_t q = sep;
    while (q < s->n && is_sp(t[q])) q++;
    /* an environment that itself starts with whitespace (" [") may take back the last one */
    return env_at(s, q, plain_ctx, h) || (q > sep && env_at(s, q - 1, plain_ctx, h));
}

/* ENV followed by up to 5 more joined by ",", "and", "or"; *end_out is where the match ends. */
static int env_group_at(scan *s, size_t i, int plain_ctx, v3m_match *m, size_t *end_out) {
    env_hit h;
    if (!env_at(s, i, plain_ctx, &h)) return 0;
    m->n = 1;
    m->part[0].off = h.in_off;
    m->part[0].len = h.in_len;
    m->part[0].pct = h.pct;
    m->part[0].boxed_last = 0;
    size_t end = h.end;
    for (int k = 1; k < V3M_MAX_PARTS; k++) {
        if (!next_env(s, end, plain_ctx, &h)) break;
        m->part[k].off = h.in_off;
        m->part[k].len = h.in_len;
        m->part[k].pct = h.pct;
        m->part[k].boxed_last = 0;
        m->n = k + 1;
        end = h.end;
    }
    *end_out = end;
    return 1;
}

typedef struct {
    int found;
    size_t start, end;
    v3m_match m;
} best;

static void consider(best *b, size_t start, size_t end, const v3m_match *m) {
    /* rightmost end first, then leftmost start */
    if (!b->found || end > b->end || (end == b->end && start < b->start)) {
        b->found = 1;
        b->start = start;
        b->end = end;
        b->m = *m;
    }
}

static int ieq(const char *t, size_t n, size_t i, const char *lit) {
    size_t k = strlen(lit);
    if (i + k > n) return 0;
    for (size_t j = 0; j < k; j++)
        if (tolower((unsigned char)t[i + j]) != lit[j]) return 0;
    return 1;
}

/* "answer" + (":" if colon) + .{0,50}? + ENV-group, all non-overlapping matches. */
static void find_answer_word(scan *s, int colon, int plain_ctx, best *b) {
    size_t pos = 0;
    while (pos + 6 <= s->n && s->steps <= STEP_BUDGET) {
        size_t a = pos;
        while (a + 6 <= s->n && !ieq(s->t, s->n, a, "answer")) a++;
        spent(s, a - pos + 1);
        if (a + 6 > s->n) break;
        size_t g0 = a + 6;
        if (colon) {
            if (g0 >= s->n || s->t[g0] != ':') { pos = a + 1; continue; }
            g0++;
        }
        int hit = 0;
        for (size_t g = g0; g <= g0 + 50 && g < s->n; g++) {
            v3m_match m;
            if (spent(s, 1)) return;
            size_t e;
            if (env_group_at(s, g, plain_ctx, &m, &e)) {
                m.kind = V3_MATH_ANSWER_WORD;
                consider(b, a, e, &m);
                pos = e > a ? e : a + 1;
                hit = 1;
                break;
            }
        }
        if (!hit) pos = a + 1;
    }
}

/* "final answer" .{0,100}? \s+ "is" ":"? \s* ENV-group */
static void find_final_answer(scan *s, int plain_ctx, best *b) {
    size_t pos = 0;
    const char *t = s->t;
    while (pos + 12 <= s->n && s->steps <= STEP_BUDGET) {
        size_t a = pos;
        while (a + 12 <= s->n && !ieq(t, s->n, a, "final answer")) a++;
        spent(s, a - pos + 1);
        if (a + 12 > s->n) break;
        int hit = 0;
        for (size_t g = a + 12; g <= a + 112 && g < s->n && !hit; g++) {
            if (spent(s, 1)) return;
            if (!is_sp(t[g])) continue;
            size_t j = g;
            while (j < s->n && is_sp(t[j])) j++;
            if (!(j + 2 <= s->n && t[j] == 'i' && t[j + 1] == 's')) continue;
            j += 2;
            if (j < s->n && t[j] == ':') j++;
            while (j < s->n && is_sp(t[j])) j++;
            v3m_match m;
            size_t e;
            if (env_group_at(s, j, plain_ctx, &m, &e) ||
                (j > 0 && is_sp(t[j - 1]) && env_group_at(s, j - 1, plain_ctx, &m, &e))) {
                m.kind = V3_MATH_FINAL_ANSWER;
                consider(b, a, e, &m);
                pos = e;
                hit = 1;
            }
        }
        if (!hit) pos = a + 1;
    }
}

/* The greedy plain "\boxed{.+}" match: from the first "\boxed{" to the last '}' of the text. */
static void find_boxed(scan *s, best *b) {
    const char *p = memmem(s->t, s->n, "\\boxed{", 7);
    if (!p) return;
    size_t st = (size_t)(p - s->t);
    size_t e = s->n;
    while (e > st + 8 && s->t[e - 1] != '}') e--;
    spent(s, s->n - e);
    if (e <= st + 8) return; /* ".+" needs one character before the closing brace */
    v3m_match m;
    m.n = 1;
    m.kind = V3_MATH_BOXED;
    m.part[0].off = st;
    m.part[0].len = e - st;
    m.part[0].boxed_last = 1;
    m.part[0].pct = 0;
    consider(b, st, e, &m);
}

/* Plain environments anywhere (gold parsing only). */
static void find_plain_env(scan *s, best *b) {
    size_t pos = 0;
    while (pos < s->n && s->steps <= STEP_BUDGET) {
        v3m_match m;
        spent(s, 1);
        char c = s->t[pos];
        size_t e;
        if ((c == '$' || c == '\\' || is_sp(c) || c == '-') && env_group_at(s, pos, 1, &m, &e)) {
            m.kind = V3_MATH_LATEX_ENV;
            consider(b, pos, e, &m);
            pos = e > pos ? e : pos + 1;
        } else {
            pos++;
        }
    }
}

void v3m_find(const char *t, size_t n, int gold_mode, v3m_match *m) {
    scan s = {t, n, 0};
    best b;
    memset(m, 0, sizeof(*m));
    /* Priority groups, best first. Completions: boxed (0), final answer (50), answer: (100),
     * answer (200). Golds: final answer + boxed (50), answer: (100), answer (200), plain (300). */
    b.found = 0;
    if (gold_mode) {
        find_final_answer(&s, 1, &b);
        find_boxed(&s, &b);
    } else {
        find_boxed(&s, &b);
        if (!b.found) find_final_answer(&s, 1, &b);
    }
    if (!b.found) find_answer_word(&s, 1, 1, &b);
    if (!b.found) find_answer_word(&s, 0, 1, &b);
    if (!b.found && gold_mode) find_plain_env(&s, &b);
    if (b.found) *m = b.m;
}
