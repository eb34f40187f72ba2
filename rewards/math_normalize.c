/* math_normalize.c — turns an extracted LaTeX answer into the canonical string the parser reads,
 * following the rules of latex2sympy2_extended's normalize_latex as math-verify configures it:
 * \boxed content, \left/\right, spacing commands, $ signs, \dfrac, {,} separators, "and"/"or" as
 * commas, percent words, trailing \text units and unit words, and (completions only) the
 * "a = b = c -> c" split. Every pass is a single linear scan into a bounded buffer. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "rewards/math_internal.h"

#define NBUF 8192 /* working size of one answer; longer answers are cut (they are not numbers) */

typedef struct {
    char s[NBUF];
    size_t n;
} sbuf;

static void sb_putn(sbuf *b, const char *p, size_t k) {
    if (b->n + k > NBUF - 1) k = NBUF - 1 - b->n;
    memcpy(b->s + b->n, p, k);
    b->n += k;
    b->s[b->n] = 0;
}
static void sb_puts(sbuf *b, const char *p) { sb_putn(b, p, strlen(p)); }
static void sb_putc(sbuf *b, char c) { sb_putn(b, &c, 1); }

static int starts(const char *s, size_t n, size_t i, const char *lit) {
    size_t k = strlen(lit);
    return i + k <= n && memcmp(s + i, lit, k) == 0;
}
static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* ---- \boxed extraction (extract_boxed_content) ---- */

/* Last occurrence of lit that lies entirely before end, or -1. */
static long rfind(const char *t, size_t end, const char *lit) {
    size_t k = strlen(lit);
    if (end < k) return -1;
    for (size_t i = end - k + 1; i-- > 0;)
        if (memcmp(t + i, lit, k) == 0) return (long)i;
    return -1;
}

static int has_separator(const char *t, size_t a, size_t b) {
    for (size_t i = a; i < b; i++) {
        if (t[i] == ',' || t[i] == ';') return 1;
        int wb = (i == a || !isalnum((unsigned char)t[i - 1]));
        if (!wb) continue;
        size_t k = 0;
        if (i + 3 <= b && memcmp(t + i, "and", 3) == 0) k = 3;
        else if (i + 2 <= b && memcmp(t + i, "or", 2) == 0) k = 2;
        if (k && (i + k == b || !isalnum((unsigned char)t[i + k]) || t[i + k] == '_')) return 1;
    }
    return 0;
}

#define MAX_BOXES 64

size_t v3m_boxed_content(const char *t, size_t n, int mode_last, char *out, size_t cap) {
    size_t ro[MAX_BOXES], rl[MAX_BOXES]; /* results, right to left */
    int nr = 0;
    size_t cur = n, max_pos = n;
    long last_start = -1;
    while (nr < MAX_BOXES) {
        long bi = rfind(t, cur, "\\boxed"), fi = rfind(t, cur, "\\fbox");
        if (bi < 0 && fi < 0) break;
        long st = bi > fi ? bi : fi;
        size_t p = (size_t)st + (bi > fi ? 6 : 5);
        while (p < max_pos && isspace((unsigned char)t[p])) p++;
        if (p >= max_pos) break;
        if (t[p] != '{') {
            if (nr == 0) { ro[nr] = p; rl[nr] = n - p; nr++; }
            break;
        }
        int depth = 1;
        size_t i = p, close = 0;
        while (i + 1 < max_pos) {
            i++;
            if (t[i] == '{') depth++;
            else if (t[i] == '}' && --depth == 0) { close = i; break; }
        }
        if (!close) {
            if (nr == 0) { ro[nr] = p; rl[nr] = n - p; nr++; }
            break;
        }
        size_t a = p + 1, b = close;
        while (a < b && isspace((unsigned char)t[a])) a++;
        while (b > a && isspace((unsigned char)t[b - 1])) b--;
        if (mode_last && last_start >= 0) {
            /* Only boxes close to the later one (or separated by and/or/,) join it. */
            size_t ba = close + 1, bb = (size_t)last_start;
            size_t blen = bb > ba ? bb - ba : 0;
            int same = nr > 0 && rl[nr - 1] == b - a && memcmp(t + ro[nr - 1], t + a, b - a) == 0;
            int ok = blen < 10 || (!same && blen < 70 && has_separator(t, ba, bb));
            if (!ok) break;
        }
        if (!(nr > 0 && rl[nr - 1] == b - a && memcmp(t + ro[nr - 1], t + a, b - a) == 0)) {
            ro[nr] = a; rl[nr] = b - a; nr++;
        }
        last_start = st;
        max_pos = (size_t)st;
        cur = (size_t)st;
    }
    size_t w = 0;
    if (cap == 0) return 0;
    if (nr == 0) {
        w = n < cap - 1 ? n : cap - 1;
        memcpy(out, t, w);
    } else {
        for (int r = nr - 1; r >= 0; r--) {
            if (r != nr - 1 && w < cap - 1) out[w++] = ',';
            size_t k = rl[r] < cap - 1 - w ? rl[r] : cap - 1 - w;
            memcpy(out + w, t + ro[r], k);
            w += k;
        }
    }
    out[w] = 0;
    return w;
}

/* ---- basic LaTeX cleanup ---- */

static const char *const left_delims[] = {"\\{", "{", "\\|", "|", "[", "(", "\\rbracl", "\\lgroup",
    "\\lbrace", "\\lbrack", "\\vert", "\\lvert", "\\lceil", "\\lfloor", "\\langle", "\\llcorner",
    "\\ulcorner", NULL};
static const char *const right_delims[] = {"\\}", "}", "\\|", "|", "]", ")", "\\rbrack", "\\rgroup",
    "\\rbrace", "\\vert", "\\rvert", "\\rceil", "\\rfloor", "\\rangle", "\\lrcorner", "\\urcorner",
    NULL};

static int delim_follows(const char *s, size_t n, size_t i, const char *const *list) {
    for (int k = 0; list[k]; k++)
        if (starts(s, n, i, list[k])) return 1;
    return 0;
}

/* \left( -> (, \mright] -> ], and the to_remove set: \mathrm{th}, "\!" + spaces, empty \text{},
 * \$, $, unescaped quotes, \displaystyle. */
static void pass_remove(const char *s, size_t n, sbuf *o) {
    o->n = 0;
    o->s[0] = 0;
    for (size_t i = 0; i < n;) {
        if (starts(s, n, i, "\\mathrm{T}")) { sb_putc(o, 'T'); i += 10; continue; }
        if (starts(s, n, i, "\\mathrm{d}")) { sb_putc(o, 'd'); i += 10; continue; }
        if (starts(s, n, i, "{\\rm d}")) { sb_putc(o, 'd'); i += 7; continue; }
        size_t k = starts(s, n, i, "\\left") ? 5 : starts(s, n, i, "\\mleft") ? 6 : 0;
        if (k && delim_follows(s, n, i + k, left_delims)) { i += k; continue; }
        k = starts(s, n, i, "\\right") ? 6 : starts(s, n, i, "\\mright") ? 7 : 0;
        if (k && delim_follows(s, n, i + k, right_delims)) { i += k; continue; }
        if (starts(s, n, i, "\\mathrm{th}")) { i += 11; continue; }
        if (starts(s, n, i, "\\!")) {
            i += 2;
            while (i < n && isspace((unsigned char)s[i])) i++;
            continue;
        }
        if (starts(s, n, i, "\\text")) {
            size_t j = i + 5;
            while (j < n && isspace((unsigned char)s[j])) j++;
            if (j < n && s[j] == '{') {
                size_t m = j + 1;
                while (m < n && isspace((unsigned char)s[m])) m++;
                if (m < n && s[m] == '}') { i = m + 1; continue; }
            }
        }
        if (starts(s, n, i, "\\$")) { i += 2; continue; }
        if (s[i] == '$') { i++; continue; }
        if ((s[i] == '"' || s[i] == '\'') && !(i > 0 && s[i - 1] == '\\')) { i++; continue; }
        if (starts(s, n, i, "\\displaystyle")) { i += 13; continue; }
        sb_putc(o, s[i]);
        i++;
    }
}

/* Length of "\s*" + "{\s*,\s*}" at i, or 0. */
static size_t brace_comma(const char *s, size_t n, size_t i) {
    size_t j = i;
    while (j < n && isspace((unsigned char)s[j])) j++;
    if (j >= n || s[j] != '{') return 0;
    j++;
    while (j < n && isspace((unsigned char)s[j])) j++;
    if (j >= n || s[j] != ',') return 0;
    j++;
    while (j < n && isspace((unsigned char)s[j])) j++;
    if (j >= n || s[j] != '}') return 0;
    return j + 1 - i;
}

/* ",?\s*(and|or)" not inside a word, at i; returns length or 0. */
static size_t and_or(const char *s, size_t n, size_t i) {
    if (i > 0 && is_alpha(s[i - 1])) return 0;
    size_t j = i;
    if (j < n && s[j] == ',') j++;
    while (j < n && isspace((unsigned char)s[j])) j++;
    size_t k = starts(s, n, j, "and") ? 3 : starts(s, n, j, "or") ? 2 : 0;
    if (!k) return 0;
    if (j == i && i > 0 && is_alpha(s[i - 1])) return 0;
    if (j + k < n && is_alpha(s[j + k])) return 0;
    return j + k - i;
}

/* ",?\s*\text{\s*(and|or)\s*}" at i. */
static size_t and_or_text(const char *s, size_t n, size_t i) {
    size_t j = i;
    if (j < n && s[j] == ',') j++;
    while (j < n && isspace((unsigned char)s[j])) j++;
    if (!starts(s, n, j, "\\text{")) return 0;
    j += 6;
    while (j < n && isspace((unsigned char)s[j])) j++;
    size_t k = starts(s, n, j, "and") ? 3 : starts(s, n, j, "or") ? 2 : 0;
    if (!k) return 0;
    j += k;
    while (j < n && isspace((unsigned char)s[j])) j++;
    if (j >= n || s[j] != '}') return 0;
    return j + 1 - i;
}

/* "\s*\bWORD\b" at i (the word must not be glued to letters/digits/_). */
static size_t spaced_word(const char *s, size_t n, size_t i, const char *w) {
    size_t j = i;
    while (j < n && isspace((unsigned char)s[j])) j++;
    size_t k = strlen(w);
    if (!starts(s, n, j, w)) return 0;
    if (j > 0 && (isalnum((unsigned char)s[j - 1]) || s[j - 1] == '_')) return 0;
    if (j + k < n && (isalnum((unsigned char)s[j + k]) || s[j + k] == '_')) return 0;
    return j + k - i;
}

/* The to_replace alternation: at each position the first rule (in math-verify's order) that
 * matches is applied. */
static void pass_replace(const char *s, size_t n, sbuf *o) {
    o->n = 0;
    o->s[0] = 0;
    for (size_t i = 0; i < n;) {
        size_t k;
        if (starts(s, n, i, "\\mathrm") || starts(s, n, i, "\\mathit") || starts(s, n, i, "\\mathbf")) {
            sb_puts(o, "\\text"); i += 7; continue;
        }
        if (starts(s, n, i, "\\textnormal")) { sb_puts(o, "\\text"); i += 11; continue; }
        if (starts(s, n, i, "\\textbf") || starts(s, n, i, "\\textit") || starts(s, n, i, "\\textrm")) {
            sb_puts(o, "\\text"); i += 7; continue;
        }
        if (starts(s, n, i, "\\dfrac") || starts(s, n, i, "\\tfrac") || starts(s, n, i, "\\cfrac")) {
            sb_puts(o, "\\frac"); i += 6; continue;
        }
        if (isspace((unsigned char)s[i]) && i + 1 < n && s[i + 1] == '.') { sb_puts(o, " 0."); i += 2; continue; }
        if (starts(s, n, i, "{.")) { sb_puts(o, "{0."); i += 2; continue; }
        if (starts(s, n, i, "~=")) { sb_puts(o, "\\approx"); i += 2; continue; }
        if ((k = brace_comma(s, n, i))) { sb_putc(o, ','); i += k; continue; }
        if ((k = and_or(s, n, i))) { sb_putc(o, ','); i += k; continue; }
        if ((k = and_or_text(s, n, i))) { sb_putc(o, ','); i += k; continue; }
        if (s[i] == '\\' && i + 1 < n && isspace((unsigned char)s[i + 1]) && !(i > 0 && s[i - 1] == '\\')) {
            sb_putc(o, ' '); i += 2; continue;
        }
        if (starts(s, n, i, "infinity")) { sb_puts(o, "\\infty"); i += 8; continue; }
        if (starts(s, n, i, ",\\ldots")) { sb_putc(o, ' '); i += 7; continue; }
        if (starts(s, n, i, "\\ldots")) { sb_putc(o, ' '); i += 6; continue; }
        if ((k = spaced_word(s, n, i, "percentage"))) { sb_puts(o, "\\%"); i += k; continue; }
        if (starts(s, n, i, "\\text{percentage}")) { sb_putc(o, '%'); i += 17; continue; }
        if ((k = spaced_word(s, n, i, "percent"))) { sb_puts(o, "\\%"); i += k; continue; }
        if (starts(s, n, i, "\\text{percent}")) { sb_putc(o, '%'); i += 14; continue; }
        if ((k = spaced_word(s, n, i, "pct"))) { sb_puts(o, "\\%"); i += k; continue; }
        if (starts(s, n, i, "\\text{pct}")) { sb_putc(o, '%'); i += 10; continue; }
        if (starts(s, n, i, "inf") && !(i > 0 && s[i - 1] == '\\') && !starts(s, n, i, "infinity")) {
            sb_puts(o, "\\infty"); i += 3; continue;
        }
        if (starts(s, n, i, " sqrt")) { sb_puts(o, "\\sqrt"); i += 5; continue; }
        char c = s[i];
        sb_putc(o, (c == '\n' || c == '\t') ? ' ' : c);
        i++;
    }
}

/* "\\cmd" -> "\cmd" unless the answer is a matrix (where \\ separates rows). */
static void pass_double_backslash(sbuf *b) {
    if (strstr(b->s, "matrix")) return;
    size_t w = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->s[i] == '\\' && i + 2 < b->n + 1 && b->s[i + 1] == '\\' && is_alpha(b->s[i + 2])) continue;
        b->s[w++] = b->s[i];
    }
    b->n = w;
    b->s[w] = 0;
}

/* ---- units ---- */

static const char *const unit_words[] = {"integerpoint", "feet", "sue", "digit", "pound", "meal",
    "edge", "student", "children ticket", "multiple", "east", "degree", "mph", "kmph", "ft",
    "m square", " m east", "sq m", "deg", "mile", "q .", "monkey", "prime", "ratio",
    "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab", "way",
    "west", "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "h", "no change", "men",
    "soldier", "pie", "bc", "excess", "st", "inches", "noon", "cent", "by", "gal", "kmh", "c",
    "acre", "rise", "a . m", "th", "π r 2", "sq", "mark", "l", "toy", "coin", "sq . m", "gallon",
    "° f", "profit", "minw", "yr", "women", "am", "pm", "hr", "cu cm", "square", "v â € ™", "are",
    "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm", "number", "day", "hour", "minute", "min",
    "second", "man", "woman", "sec", "cube", "mt", "sq inch", "mp", "∏ cm ³", "hectare", "more",
    "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm", "apple",
    "liter", "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface",
    "litre", "pi sq m", "s .", "metre", "meter", "inch", NULL};

/* Does the word w (a regex upstream: "." matches any character) occupy s[u, u + strlen(w))? */
static int unit_at(const char *s, size_t u, size_t e, const char *w) {
    size_t L = strlen(w);
    if (u + L > e) return 0;
    for (size_t c = 0; c < L; c++)
        if (w[c] != '.' && w[c] != s[u + c]) return 0;
    return 1;
}

/* math-verify's units_regex, "([digit}\s])\s*UNIT(s|es)?\s*$" -> "\1": the unit must end the text,
 * and the match that starts leftmost wins. Returns the new length, or n when nothing matches.
 * Work is (number of words) x (word length), whatever the text. */
static size_t strip_unit_word(const char *s, size_t n) {
    size_t e = n;
    while (e > 0 && isspace((unsigned char)s[e - 1])) e--;
    size_t best = n;
    for (int k = 0; unit_words[k]; k++) {
        size_t L = strlen(unit_words[k]);
        for (size_t suf = 0; suf <= 2; suf++) { /* "", "s", "es" */
            if (suf == 1 && !(e >= 1 && s[e - 1] == 's')) continue;
            if (suf == 2 && !(e >= 2 && s[e - 2] == 'e' && s[e - 1] == 's')) continue;
            if (e < L + suf) continue;
            size_t u = e - suf - L;
            if (!unit_at(s, u, e - suf, unit_words[k])) continue;
            size_t j = u;
            while (j > 0 && isspace((unsigned char)s[j - 1])) j--;
            size_t keep;
            if (j > 0 && (isdigit((unsigned char)s[j - 1]) || s[j - 1] == '}')) keep = j;  /* \1 = that char */
            else if (j < u) keep = j + 1;                                                /* \1 = a space */
            else continue;
            if (keep < best) best = keep;
        }
    }
    return best;
}

static void trim(sbuf *b) {
    size_t a = 0, e = b->n;
    while (a < e && isspace((unsigned char)b->s[a])) a++;
    while (e > a && isspace((unsigned char)b->s[e - 1])) e--;
    memmove(b->s, b->s + a, e - a);
    b->n = e - a;
    b->s[b->n] = 0;
}

static void pass_units(sbuf *b) {
    /* A trailing \text{...} or \mbox{...} (optionally ^d) is a unit: drop from the first such
     * command that runs to the end, unless that would leave nothing. */
    for (size_t i = 0; i < b->n; i++) {
        size_t k = starts(b->s, b->n, i, "\\text{") ? 6 : starts(b->s, b->n, i, "\\mbox{") ? 6 : 0;
        if (!k) continue;
        size_t e = b->n;
        if (e >= 2 && b->s[e - 2] == '^' && isdigit((unsigned char)b->s[e - 1])) e -= 2;
        else if (e >= 4 && b->s[e - 1] == '}' && b->s[e - 4] == '{' && b->s[e - 3] == '^' &&
                 isdigit((unsigned char)b->s[e - 2])) e -= 4;
        /* the lazy ".*?}" must end at a '}' at e-1 with no newline before (newlines are gone) */
        if (e > i + k && b->s[e - 1] == '}') {
            size_t keep = i;
            while (keep > 0 && isspace((unsigned char)b->s[keep - 1])) keep--;
            if (keep > 0) { b->n = keep; b->s[keep] = 0; }
        }
        break;
    }
    for (int rep = 0; rep < 2; rep++) {
        size_t k = strip_unit_word(b->s, b->n);
        if (k < b->n && k > 0) {
            b->n = k;
            b->s[k] = 0;
        }
    }
}

/* a = b = c -> c (completions only), when there is no ',' or ';'. */
static void pass_last_eq(sbuf *b) {
    if (strchr(b->s, ',') || strchr(b->s, ';')) return;
    int parts = 1;
    size_t last = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->s[i] != '=') continue;
        char p = i ? b->s[i - 1] : 0;
        if (p == '\\' || p == '<' || p == '!' || p == '>') continue;
        parts++;
        last = i + 1;
    }
    if (parts > 2) {
        memmove(b->s, b->s + last, b->n - last);
        b->n -= last;
        b->s[b->n] = 0;
    }
}

/* Gold side only: latex2sympy needs braces, so math-verify rewrites \frac12, \frac{270}7,
 * \frac 5{9}, \sqrt2 into braced forms first (its "malformed operators" fixes). */
static void pass_malformed(sbuf *b) {
    sbuf o;
    const char *s = b->s;
    size_t n = b->n;
    o.n = 0;
    o.s[0] = 0;
    for (size_t i = 0; i < n;) {
        if (starts(s, n, i, "\\frac")) {
            size_t j = i + 5;
            if (j < n && s[j] == ' ') j++;
            /* \frac{A}d -> \frac{A}{d}: the first '}' that is followed by a digit */
            if (j < n && s[j] == '{') {
                size_t c = j + 1;
                for (; c < n; c++) {
                    if (s[c] != '}') continue;
                    size_t d = c + 1;
                    if (d < n && s[d] == ' ') d++;
                    if (d < n && isdigit((unsigned char)s[d])) {
                        sb_puts(&o, "\\frac{");
                        sb_putn(&o, s + j + 1, c - j - 1);
                        sb_puts(&o, "}{");
                        sb_putc(&o, s[d]);
                        sb_putc(&o, '}');
                        i = d + 1;
                        goto next;
                    }
                }
            } else if (j < n && isdigit((unsigned char)s[j])) {
                size_t d = j + 1;
                if (d < n && s[d] == ' ') d++;
                if (d < n && isdigit((unsigned char)s[d])) { /* \frac 59 / \frac5 123 */
                    size_t e = d;
                    while (e < n && isdigit((unsigned char)s[e])) e++;
                    sb_puts(&o, "\\frac{");
                    sb_putc(&o, s[j]);
                    sb_puts(&o, "}{");
                    sb_putn(&o, s + d, e - d);
                    sb_putc(&o, '}');
                    i = e;
                    goto next;
                }
                if (d < n && s[d] == '{') { /* \frac5{9} */
                    sb_puts(&o, "\\frac{");
                    sb_putc(&o, s[j]);
                    sb_putc(&o, '}');
                    i = d;
                    goto next;
                }
            } else if (j + 1 < n && !isspace((unsigned char)s[j]) && s[j] != '\\') { /* \fracab */
                sb_puts(&o, "\\frac{");
                sb_putc(&o, s[j]);
                sb_puts(&o, "}");
                if (s[j + 1] != '{') { sb_putc(&o, '{'); sb_putc(&o, s[j + 1]); sb_putc(&o, '}'); i = j + 2; }
                else i = j + 1;
                goto next;
            }
        }
        if (starts(s, n, i, "\\sqrt")) {
            size_t j = i + 5;
            while (j < n && s[j] == ' ') j++;
            if (j < n && s[j] != '{' && s[j] != '[' && s[j] != '\\') {
                sb_puts(&o, "\\sqrt{");
                sb_putc(&o, s[j]);
                sb_putc(&o, '}');
                i = j + 1;
                goto next;
            }
        }
        sb_putc(&o, s[i]);
        i++;
    next:;
    }
    *b = o;
}

size_t v3m_normalize(const char *in, size_t n, int mode_last, int gold_mode, char *out, size_t cap) {
    sbuf a, b;
    if (n > NBUF - 1) n = NBUF - 1;
    a.n = 0;
    if (memmem(in, n, "\\boxed", 6) || memmem(in, n, "\\fbox", 5))
        a.n = v3m_boxed_content(in, n, mode_last, a.s, NBUF);
    else {
        memcpy(a.s, in, n);
        a.n = n;
        a.s[n] = 0;
    }
    pass_remove(a.s, a.n, &b);
    pass_replace(b.s, b.n, &a);
    pass_double_backslash(&a);
    if (!gold_mode) pass_last_eq(&a);
    trim(&a);
    {
        sbuf c = a;
        pass_units(&c);
        trim(&c);
        if (c.n > 0) a = c;
    }
    if (gold_mode) {
        if (a.n > 0 && a.s[0] == '.') {
            memmove(a.s + 1, a.s, a.n + 1 < NBUF ? a.n + 1 : NBUF - 1);
            a.s[0] = '0';
            if (a.n < NBUF - 1) a.n++;
            a.s[a.n] = 0;
        }
        pass_malformed(&a);
    }
    trim(&a);
    size_t w = a.n < cap - 1 ? a.n : cap - 1;
    memcpy(out, a.s, w);
    out[w] = 0;
    return w;
}
