/* math_expr.c — a small, bounded recursive-descent reader for normalised LaTeX answers.
 * It does not build a tree: each scalar is evaluated on the fly to a v3m_num (exact rational when
 * possible, else doubles at V3M_NPTS sample points for the variables), which is all the
 * comparison needs. Top level adds tuples, intervals, sets and relations. Depth is capped, every
 * loop consumes input, and huge powers saturate to inf instead of looping or overflowing. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewards/math_internal.h"

typedef struct {
    const char *s;
    size_t n, i;
    int depth;
    int err;
    int cplx; /* the answer looks complex (a standalone i, \mathbb{C}, ...): its symbols differ */
} P;

/* ---- exact rationals with overflow checks ---- */

static int64_t gcd64(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) { int64_t t = a % b; a = b; b = t; }
    return a;
}

static int rat_norm(int64_t *p, int64_t *q) {
    if (*q == 0) return 0;
    if (*q < 0) {
        if (*p == INT64_MIN || *q == INT64_MIN) return 0;
        *p = -*p; *q = -*q;
    }
    int64_t g = gcd64(*p, *q);
    if (g > 1) { *p /= g; *q /= g; }
    return 1;
}

static void num_const(v3m_num *r, double v, int64_t p, int64_t q, int exact, unsigned flags) {
    memset(r, 0, sizeof(*r));
    for (int k = 0; k < V3M_NPTS; k++) r->v[k] = v;
    r->p = p; r->q = q; r->exact = exact;
    r->flags = flags;
    if (exact && !rat_norm(&r->p, &r->q)) r->exact = 0;
    r->raw0 = v; r->rp = r->p; r->rq = r->q;
}

/* Value of a variable at sample point k: distinct, positive, irrational-looking. */
static double var_value(const char *name, int k, int cplx) {
    uint64_t h = 1469598103934665603ull + (uint64_t)cplx;
    for (const char *c = name; *c; c++) h = (h ^ (unsigned char)tolower((unsigned char)*c)) * 1099511628211ull;
    h ^= (uint64_t)(k + 1) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
    return 0.7 + (double)(h % 100000) / 37813.0;
}

static void num_var(v3m_num *r, const char *name, int cplx) {
    memset(r, 0, sizeof(*r));
    for (int k = 0; k < V3M_NPTS; k++) r->v[k] = var_value(name, k, cplx);
    r->flags = V3M_F_VARS | V3M_F_SYM;
    size_t L = strlen(name);
    if (L >= V3M_NAME_MAX) L = V3M_NAME_MAX - 1;
    for (size_t i = 0; i < L; i++) r->name[i] = (char)tolower((unsigned char)name[i]);
    r->name[L] = 0;
    r->raw0 = r->v[0];
}

static void fin(v3m_num *r) {
    r->flags &= ~(unsigned)V3M_F_SYM; /* any operation makes it more than one symbol */
    r->raw0 = r->v[0];
    r->rp = r->p; r->rq = r->q;
    for (int k = 0; k < V3M_NPTS; k++)
        if ((isinf(r->v[k]) || isnan(r->v[k])) && !(r->flags & V3M_F_INF)) r->flags |= V3M_F_OVF;
}

static void num_add(v3m_num *a, const v3m_num *b, int sign) {
    for (int k = 0; k < V3M_NPTS; k++) a->v[k] += sign * b->v[k];
    if (a->exact && b->exact) {
        int64_t x, y, z, bp = b->p;
        if (sign < 0) { if (bp == INT64_MIN) a->exact = 0; else bp = -bp; }
        if (a->exact && !__builtin_mul_overflow(a->p, b->q, &x) && !__builtin_mul_overflow(bp, a->q, &y) &&
            !__builtin_add_overflow(x, y, &z) && !__builtin_mul_overflow(a->q, b->q, &y)) {
            a->p = z; a->q = y;
            if (!rat_norm(&a->p, &a->q)) a->exact = 0;
        } else a->exact = 0;
    } else a->exact = 0;
    a->flags |= b->flags;
    a->name[0] = 0;
    fin(a);
}

static void num_mul(v3m_num *a, const v3m_num *b) {
    for (int k = 0; k < V3M_NPTS; k++) a->v[k] *= b->v[k];
    if (a->exact && b->exact) {
        int64_t x, y;
        if (!__builtin_mul_overflow(a->p, b->p, &x) && !__builtin_mul_overflow(a->q, b->q, &y)) {
            a->p = x; a->q = y;
            if (!rat_norm(&a->p, &a->q)) a->exact = 0;
        } else a->exact = 0;
    } else a->exact = 0;
    /* a product of symbols keeps the concatenated name (sympy_compare_symbols reads it) */
    if (a->name[0] && b->name[0] && strlen(a->name) + strlen(b->name) < V3M_NAME_MAX)
        strcat(a->name, b->name);
    else
        a->name[0] = 0;
    a->flags |= b->flags;
    fin(a);
}

static void num_div(v3m_num *a, const v3m_num *b) {
    for (int k = 0; k < V3M_NPTS; k++) a->v[k] /= b->v[k];
    if (a->exact && b->exact && b->p != 0) {
        int64_t x, y;
        if (!__builtin_mul_overflow(a->p, b->q, &x) && !__builtin_mul_overflow(a->q, b->p, &y)) {
            a->p = x; a->q = y;
            if (!rat_norm(&a->p, &a->q)) a->exact = 0;
        } else a->exact = 0;
    } else {
        if (b->exact && b->p == 0) a->flags |= V3M_F_BAD;
        a->exact = 0;
    }
    a->flags |= b->flags;
    a->name[0] = 0;
    fin(a);
}

/* Exact integer root of a rational, when there is one. */
static int rat_root(int64_t p, int64_t q, int64_t deg, int64_t *rp, int64_t *rq) {
    if (p < 0 && deg % 2 == 0) return 0;
    double dp = pow(fabs((double)p), 1.0 / (double)deg), dq = pow((double)q, 1.0 / (double)deg);
    int64_t ip = (int64_t)llround(dp), iq = (int64_t)llround(dq);
    for (int64_t cp = ip - 1; cp <= ip + 1; cp++)
        for (int64_t cq = iq - 1; cq <= iq + 1; cq++) {
            if (cp < 0 || cq <= 0) continue;
            int64_t xp = 1, xq = 1;
            int ok = 1;
            for (int64_t e = 0; e < deg && ok; e++)
                ok = !__builtin_mul_overflow(xp, cp, &xp) && !__builtin_mul_overflow(xq, cq, &xq);
            if (ok && xp == (p < 0 ? -p : p) && xq == q) {
                *rp = p < 0 ? -cp : cp; *rq = cq;
                return 1;
            }
        }
    return 0;
}

static void num_pow(v3m_num *a, const v3m_num *b) {
    for (int k = 0; k < V3M_NPTS; k++) a->v[k] = pow(a->v[k], b->v[k]);
    if (a->exact && b->exact && b->q == 1 && b->p >= -64 && b->p <= 64) {
        int64_t e = b->p < 0 ? -b->p : b->p, xp = 1, xq = 1;
        int ok = 1;
        for (int64_t i = 0; i < e && ok; i++)
            ok = !__builtin_mul_overflow(xp, a->p, &xp) && !__builtin_mul_overflow(xq, a->q, &xq);
        if (ok && b->p < 0) { int64_t t = xp; xp = xq; xq = t; if (xq == 0) ok = 0; }
        if (ok) { a->p = xp; a->q = xq; ok = rat_norm(&a->p, &a->q); }
        a->exact = ok;
    } else if (a->exact && b->exact && b->q > 1 && b->q <= 16 && b->p > 0 && b->p <= 16) {
        int64_t rp, rq;
        if (rat_root(a->p, a->q, b->q, &rp, &rq)) {
            v3m_num base, ex;
            num_const(&base, (double)rp / (double)rq, rp, rq, 1, a->flags);
            num_const(&ex, (double)b->p, b->p, 1, 1, 0);
            *a = base;
            num_pow(a, &ex);
        } else {
            a->exact = 0;
            a->flags |= V3M_F_IRR;
        }
    } else {
        a->exact = 0;
        if (!(b->exact && b->q == 1)) a->flags |= V3M_F_IRR;
    }
    a->flags |= b->flags;
    a->name[0] = 0;
    fin(a);
}

static void num_neg(v3m_num *a) {
    for (int k = 0; k < V3M_NPTS; k++) a->v[k] = -a->v[k];
    if (a->exact) { if (a->p == INT64_MIN) a->exact = 0; else a->p = -a->p; }
    a->name[0] = 0;
    fin(a);
}

/* ---- lexing helpers ---- */

static void skip_ws(P *p) {
    for (;;) {
        while (p->i < p->n && isspace((unsigned char)p->s[p->i])) p->i++;
        /* spacing commands and stray sizing commands are whitespace */
        static const char *const sp[] = {"\\,", "\\;", "\\:", "\\!", "\\quad", "\\qquad", "\\ ",
                                         "\\left.", "\\right.", "\\left", "\\right", "\\big", "\\Big", NULL};
        int hit = 0;
        for (int k = 0; sp[k]; k++) {
            size_t L = strlen(sp[k]);
            if (p->i + L <= p->n && memcmp(p->s + p->i, sp[k], L) == 0) {
                if (isalpha((unsigned char)sp[k][L - 1]) && p->i + L < p->n && isalpha((unsigned char)p->s[p->i + L])) continue;
                p->i += L;
                hit = 1;
                break;
            }
        }
        if (!hit) return;
    }
}

static int peek(P *p) {
    skip_ws(p);
    return p->i < p->n ? (unsigned char)p->s[p->i] : 0;
}

static int lit(P *p, const char *w) {
    skip_ws(p);
    size_t L = strlen(w);
    if (p->i + L > p->n || memcmp(p->s + p->i, w, L) != 0) return 0;
    /* a command must not run on into letters: "\pi" is not "\pix" */
    if (w[0] == '\\' && isalpha((unsigned char)w[L - 1]) && p->i + L < p->n && isalpha((unsigned char)p->s[p->i + L]))
        return 0;
    p->i += L;
    return 1;
}

static void parse_expr(P *p, v3m_num *r);
static void primary(P *p, v3m_num *r);
static void parse_power(P *p, v3m_num *r);

/* A number literal: digits with optional ",ddd" thousands groups and a decimal part. */
static void parse_number(P *p, v3m_num *r) {
    size_t i = p->i;
    int64_t ip = 0;
    int ok = 1;
    while (i < p->n && isdigit((unsigned char)p->s[i])) {
        ok = ok && !__builtin_mul_overflow(ip, 10, &ip) && !__builtin_add_overflow(ip, p->s[i] - '0', &ip);
        i++;
    }
    int64_t q = 1;
    unsigned flags = 0;
    if (i < p->n && p->s[i] == '.' && i + 1 < p->n && isdigit((unsigned char)p->s[i + 1])) {
        flags |= V3M_F_FLOAT;
        i++;
        while (i < p->n && isdigit((unsigned char)p->s[i])) {
            ok = ok && !__builtin_mul_overflow(ip, 10, &ip) && !__builtin_add_overflow(ip, p->s[i] - '0', &ip) &&
                 !__builtin_mul_overflow(q, 10, &q);
            i++;
        }
    }
    /* the double comes from the text itself, so it is right even when the rational overflowed */
    char buf[64];
    size_t L = 0;
    for (size_t k = p->i; k < i && L < sizeof(buf) - 1; k++)
        if (p->s[k] != ',') buf[L++] = p->s[k];
    buf[L] = 0;
    double v = (i - p->i < 60) ? strtod(buf, NULL) : INFINITY;
    p->i = i;
    num_const(r, v, ip, q, ok, flags);
}

/* {expr}: latex2sympy wants braces (\frac12 and \sqrt3 are errors there; the gold side gets
 * them rewritten by the malformed-operator fixes before parsing). */
static void parse_arg(P *p, v3m_num *r) {
    if (peek(p) != '{') { p->err = 1; return; }
    p->i++;
    parse_expr(p, r);
    if (peek(p) != '}') { p->err = 1; return; }
    p->i++;
}

static void apply_fn(const char *name, v3m_num *a) {
    for (int k = 0; k < V3M_NPTS; k++) {
        double x = a->v[k];
        if (!strcmp(name, "sin")) x = sin(x);
        else if (!strcmp(name, "cos")) x = cos(x);
        else if (!strcmp(name, "tan")) x = tan(x);
        else if (!strcmp(name, "cot")) x = 1.0 / tan(x);
        else if (!strcmp(name, "sec")) x = 1.0 / cos(x);
        else if (!strcmp(name, "csc")) x = 1.0 / sin(x);
        else if (!strcmp(name, "ln") || !strcmp(name, "log")) x = log(x);
        else if (!strcmp(name, "exp")) x = exp(x);
        else if (!strcmp(name, "arcsin")) x = asin(x);
        else if (!strcmp(name, "arccos")) x = acos(x);
        else if (!strcmp(name, "arctan")) x = atan(x);
        a->v[k] = x;
    }
    a->exact = 0;
    a->flags |= V3M_F_IRR;
    a->name[0] = 0;
    fin(a);
}

/* Text of a \text{...} group as a number or a lower-cased word. */
static void parse_text(P *p, v3m_num *r) {
    if (peek(p) != '{') { p->err = 1; return; }
    size_t a = ++p->i, depth = 1;
    while (p->i < p->n && depth) {
        if (p->s[p->i] == '{') depth++;
        else if (p->s[p->i] == '}') depth--;
        p->i++;
    }
    if (depth) { p->err = 1; return; }
    size_t b = p->i - 1;
    /* latex2sympy reads \text{...} as one symbol named by its content (so \text{5} only
     * matches 5 through the string comparison); commands inside are an error there */
    while (a < b && isspace((unsigned char)p->s[a])) a++;
    while (b > a && isspace((unsigned char)p->s[b - 1])) b--;
    if (b - a >= 2 && p->s[a] == '(' && p->s[b - 1] == ')') a++, b--;
    char nm[V3M_NAME_MAX];
    size_t L = 0;
    for (size_t k = a; k < b; k++) {
        char c = p->s[k];
        if (c == '\\' || c == '{') { /* only \text{\pi} reads as a command there; the rest errors */
            if (b - a == 3 && memcmp(p->s + a, "\\pi", 3) == 0) num_const(r, M_PI, 0, 1, 0, V3M_F_IRR);
            else p->err = 1;
            return;
        }
        if (L >= V3M_NAME_MAX - 1) { p->err = 1; return; }
        if (!isspace((unsigned char)c)) nm[L++] = (char)tolower((unsigned char)c);
    }
    nm[L] = 0;
    if (!L) { p->err = 1; return; }
    num_var(r, nm, p->cplx);
}

static void primary(P *p, v3m_num *r) {
    int c = peek(p);
    if (++p->depth > V3_MATH_MAX_DEPTH) { p->err = 1; p->depth--; return; }
    if (isdigit(c) || (c == '.' && p->i + 1 < p->n && isdigit((unsigned char)p->s[p->i + 1]))) {
        parse_number(p, r);
        if (p->i < p->n && p->s[p->i] == '_') { /* 52_8: latex2sympy drops the base */
            p->i++;
            if (p->i < p->n && p->s[p->i] == '{') {
                while (p->i < p->n && p->s[p->i] != '}') p->i++;
                if (p->i < p->n) p->i++;
            } else if (p->i < p->n) p->i++;
        }
    } else if (c == '(' || c == '[' || c == '{') {
        int close = c == '(' ? ')' : c == '[' ? ']' : '}';
        p->i++;
        parse_expr(p, r);
        if (peek(p) != close) p->err = 1;
        else p->i++;
    } else if (lit(p, "\\{")) {
        parse_expr(p, r);
        if (!lit(p, "\\}")) p->err = 1;
    } else if (lit(p, "\\frac") || lit(p, "\\over")) {
        v3m_num d;
        parse_arg(p, r);
        if (!p->err) parse_arg(p, &d);
        if (!p->err) num_div(r, &d);
    } else if (lit(p, "\\sqrt")) {
        v3m_num e;
        num_const(&e, 0.5, 1, 2, 1, 0);
        if (peek(p) == '[') {
            v3m_num deg;
            p->i++;
            parse_expr(p, &deg);
            if (peek(p) != ']') p->err = 1;
            else p->i++;
            if (!p->err) {
                v3m_num one;
                num_const(&one, 1, 1, 1, 1, 0);
                num_div(&one, &deg);
                e = one;
            }
        }
        if (!p->err) parse_arg(p, r);
        if (!p->err) num_pow(r, &e);
    } else if (lit(p, "\\pi") || lit(p, "\xcf\x80")) { /* \pi or a UTF-8 pi */
        num_const(r, M_PI, 0, 1, 0, V3M_F_IRR);
    } else if (lit(p, "\\infty")) {
        num_const(r, INFINITY, 0, 1, 0, V3M_F_INF);
    } else if (lit(p, "\\text") || lit(p, "\\mbox") || lit(p, "\\operatorname")) {
        parse_text(p, r);
    } else if (c == '\\') {
        static const char *const fns[] = {"arcsin", "arccos", "arctan", "sin", "cos", "tan", "cot", "sec", "csc", "ln",
                                          "log", "exp", NULL};
        int done = 0;
        for (int k = 0; fns[k] && !done; k++) {
            char cmd[16] = "\\";
            strcat(cmd, fns[k]);
            if (lit(p, cmd)) {
                v3m_num a;
                if (peek(p) == '(') { p->i++; parse_expr(p, &a); if (peek(p) != ')') p->err = 1; else p->i++; }
                else if (peek(p) == '{') parse_arg(p, &a);
                else parse_power(p, &a);
                if (!p->err) { apply_fn(fns[k], &a); *r = a; }
                done = 1;
            }
        }
        if (!done) p->err = 1; /* unknown command: math-verify keeps the string only */
    } else if (isalpha(c)) {
        char nm[V3M_NAME_MAX];
        nm[0] = (char)c;
        nm[1] = 0;
        p->i++;
        /* x_1, x_{12}: a subscripted variable is one symbol */
        if (p->i < p->n && p->s[p->i] == '_') {
            size_t L = 1;
            p->i++;
            if (p->i < p->n && p->s[p->i] == '{') {
                p->i++;
                while (p->i < p->n && p->s[p->i] != '}' && L < V3M_NAME_MAX - 1) nm[L++] = p->s[p->i++];
                if (p->i < p->n) p->i++;
            } else if (p->i < p->n) nm[L++] = p->s[p->i++];
            nm[L] = 0;
        }
        if (c == 'e' && !nm[1]) { num_const(r, M_E, 0, 1, 0, V3M_F_IRR); strcpy(r->name, "e"); }
        else num_var(r, nm, p->cplx);
    } else {
        p->err = 1;
    }
    p->depth--;
}

/* postfix: ^exp (right associative), ^\circ (dropped), ! */
static void parse_power(P *p, v3m_num *r) {
    primary(p, r);
    while (!p->err) {
        int c = peek(p);
        if (c == '^') {
            p->i++;
            if (lit(p, "\\circ") || lit(p, "{\\circ}")) {
                if (peek(p) == '^') { /* 145^\circ^{1} is a double superscript; ^\circ^\circ is fine */
                    size_t save = p->i++;
                    int circ = lit(p, "\\circ") || lit(p, "{\\circ}");
                    p->i = save;
                    if (!circ) { p->err = 1; return; }
                }
                continue;
            }
            v3m_num e;
            if (peek(p) == '{') parse_arg(p, &e);
            else if (isdigit(peek(p))) { num_const(&e, p->s[p->i] - '0', p->s[p->i] - '0', 1, 1, 0); p->i++; }
            else {
                if (++p->depth > V3_MATH_MAX_DEPTH) { p->err = 1; return; }
                parse_power(p, &e);
                p->depth--;
            }
            if (!p->err) num_pow(r, &e);
        } else if (c == '!') {
            p->i++;
            if (!(r->exact && r->q == 1 && r->p >= 0 && r->p <= 20)) { p->err = 1; return; }
            int64_t f = 1;
            for (int64_t k = 2; k <= r->p; k++) f *= k;
            num_const(r, (double)f, f, 1, 1, r->flags & V3M_F_FLOAT);
        } else if (lit(p, "\\circ")) {
            continue;
        } else {
            return;
        }
    }
}

static int starts_primary(P *p) {
    int c = peek(p);
    if (!c) return 0;
    if (isalnum(c) || c == '(' || c == '.' || c == 0xcf) return 1;
    if (c == '{' ) return 1;
    if (c == '\\') {
        static const char *const ok[] = {"\\frac", "\\sqrt", "\\pi", "\\infty", "\\text", "\\mbox", "\\sin", "\\cos",
                                         "\\tan", "\\cot", "\\sec", "\\csc", "\\ln", "\\log", "\\exp", "\\arc", "\\operatorname", "\\over", NULL};
        for (int k = 0; ok[k]; k++)
            if (p->i + strlen(ok[k]) <= p->n && memcmp(p->s + p->i, ok[k], strlen(ok[k])) == 0) return 1;
    }
    return 0;
}

static void parse_unary(P *p, v3m_num *r) {
    if (++p->depth > V3_MATH_MAX_DEPTH) { p->err = 1; p->depth--; return; }
    if (peek(p) == '-') { p->i++; parse_unary(p, r); if (!p->err) num_neg(r); }
    else if (peek(p) == '+') { p->i++; parse_unary(p, r); }
    else parse_power(p, r);
    p->depth--;
}

static void parse_term(P *p, v3m_num *r) {
    size_t t0 = p->i;
    parse_unary(p, r);
    /* a mixed number: 2\frac{1}{2} is 2 + 1/2 when both parts are integer literals */
    while (!p->err) {
        v3m_num b;
        if (lit(p, "\\cdot") || lit(p, "\\times") || lit(p, "*") || lit(p, "\\ast")) {
            parse_unary(p, &b);
            if (!p->err) num_mul(r, &b);
        } else if (lit(p, "\\div") || lit(p, "/")) {
            parse_unary(p, &b);
            if (!p->err) num_div(r, &b);
        } else if (starts_primary(p)) {
            size_t b0 = p->i;
            int lhs_int = r->exact && r->q == 1 && !(r->flags & (V3M_F_FLOAT | V3M_F_VARS | V3M_F_IRR));
            int is_frac = p->i + 5 <= p->n && memcmp(p->s + p->i, "\\frac", 5) == 0;
            int digits_only = 1;
            for (size_t k = t0; k < b0; k++)
                if (!isdigit((unsigned char)p->s[k]) && !isspace((unsigned char)p->s[k])) digits_only = 0;
            parse_power(p, &b);
            if (p->err) break;
            if (lhs_int && is_frac && digits_only && b.exact && !(b.flags & V3M_F_VARS)) num_add(r, &b, 1);
            else num_mul(r, &b);
        } else {
            break;
        }
    }
}

static void parse_expr(P *p, v3m_num *r) {
    if (++p->depth > V3_MATH_MAX_DEPTH) { p->err = 1; p->depth--; return; }
    parse_term(p, r);
    while (!p->err) {
        v3m_num b;
        if (peek(p) == '+') { p->i++; parse_term(p, &b); if (!p->err) num_add(r, &b, 1); }
        else if (peek(p) == '-') { p->i++; parse_term(p, &b); if (!p->err) num_add(r, &b, -1); }
        else break;
    }
    p->depth--;
}

/* A whole scalar (with an optional trailing percent) occupying s[a, b). */
static int parse_scalar(const char *s, size_t a, size_t b, v3m_num *r, int cplx) {
    P p = {s, b, a, 0, 0, cplx};
    int pct = 0;
    /* trailing \% or % */
    size_t e = b;
    while (e > a && isspace((unsigned char)s[e - 1])) e--;
    if (e > a && s[e - 1] == '%') {
        pct = 1;
        e--;
        if (e > a && s[e - 1] == '\\') e--;
        p.n = e;
        /* 90^\circ\% and 4210_{5}\% do not parse upstream (40_9\% does) */
        size_t f = e;
        while (f > a && isspace((unsigned char)s[f - 1])) f--;
        if (f - a >= 5 && memcmp(s + f - 5, "\\circ", 5) == 0) return -1;
        if (f > a && s[f - 1] == '}') {
            size_t g = f - 1;
            int d = 0;
            while (g > a) {
                if (s[g] == '}') d++;
                else if (s[g] == '{' && --d == 0) break;
                g--;
            }
            if (g > a && s[g - 1] == '_') return -1;
        }
    }
    if (peek(&p) == 0) return -1;
    parse_expr(&p, r);
    if (p.err || peek(&p) != 0) return -1;
    if (r->flags & V3M_F_BAD) return -1;
    if (pct) {
        v3m_num h;
        double raw = r->v[0];
        int64_t rp = r->p, rq = r->q;
        num_const(&h, 100, 100, 1, 1, 0);
        num_div(r, &h);
        r->raw0 = raw; r->rp = rp; r->rq = rq;
        /* -3\% is Mul(-1, 3, 1/100) in sympy, not a percent atom */
        if (raw >= 0) r->flags |= V3M_F_PCT;
    }
    return 0;
}

/* Split s[a,b) at top-level commas; returns count or -1 (too many / unbalanced). */
static int split_commas(const char *s, size_t a, size_t b, size_t *st, size_t *en, int max) {
    int depth = 0, k = 0;
    size_t cur = a;
    for (size_t i = a; i < b; i++) {
        char c = s[i];
        if (c == '(' || c == '[' || c == '{') depth++;
        else if (c == ')' || c == ']' || c == '}') depth--;
        else if (c == ',' && depth == 0 && !(i > a && s[i - 1] == '\\')) { /* "\," is a space */
            if (k >= max) return -1;
            st[k] = cur; en[k] = i; k++;
            cur = i + 1;
        }
        if (depth < 0) return -1;
    }
    if (k >= max) return -1;
    st[k] = cur; en[k] = b; k++;
    return k;
}

/* Index of the bracket that closes the one at a, or (size_t)-1. Any closer closes any opener. */
static size_t match_close(const char *s, size_t a, size_t b) {
    int depth = 0;
    for (size_t i = a; i < b; i++) {
        char c = s[i];
        if (c == '(' || c == '[' || c == '{') depth++;
        else if (c == ')' || c == ']' || c == '}') {
            if (--depth == 0) return i;
        }
    }
    return (size_t)-1;
}

/* First occurrence of lit in s[a,b) outside any brackets, or NULL. */
static const char *top_level(const char *s, size_t a, size_t b, const char *lit) {
    size_t L = strlen(lit);
    int depth = 0;
    for (size_t i = a; i < b; i++) {
        char c = s[i];
        if (c == '(' || c == '[' || c == '{') depth++;
        else if (c == ')' || c == ']' || c == '}') depth--;
        else if (depth == 0 && i + L <= b && memcmp(s + i, lit, L) == 0) return s + i;
    }
    return NULL;
}

static int add_elem(v3m_val *out, const v3m_num *x, v3m_kind kind) {
    if (kind == V3M_SET) { /* a FiniteSet keeps one copy of equal elements (2 - b and -b + 2 too) */
        for (int j = 0; j < out->n; j++) {
            const v3m_num *y = &out->el[j];
            if ((y->flags ^ x->flags) & (V3M_F_FLOAT | V3M_F_SYM)) continue;
            if (y->exact && x->exact) {
                if (y->p == x->p && y->q == x->q) return 0;
                continue;
            }
            if (y->name[0] || x->name[0]) {
                if (!strcmp(y->name, x->name)) return 0;
                continue;
            }
            int same = 1;
            for (int k = 0; k < V3M_NPTS && same; k++)
                same = y->v[k] == x->v[k] || fabs(y->v[k] - x->v[k]) <= 1e-12 * fmax(fabs(y->v[k]), fabs(x->v[k]));
            if (same) return 0;
        }
    }
    if (out->n >= V3M_MAX_ELEMS) return -1;
    out->el[out->n++] = *x;
    return 0;
}

/* Elements of s[a,b) split at top-level commas; in a set, "a \pm b" gives a + b and a - b. */
static int parse_list(const char *s, size_t a, size_t b, v3m_val *out, v3m_kind kind, int cplx) {
    size_t st[V3M_MAX_ELEMS], en[V3M_MAX_ELEMS];
    int k = split_commas(s, a, b, st, en, V3M_MAX_ELEMS);
    if (k < 0) return -1;
    out->kind = kind;
    out->n = 0;
    for (int i = 0; i < k; i++) {
        v3m_num x;
        const char *pm = kind == V3M_SET ? top_level(s, st[i], en[i], "\\pm") : NULL;
        if (pm && en[i] - st[i] < 1024) {
            char buf[1024];
            size_t L = en[i] - st[i], at = (size_t)(pm - (s + st[i]));
            for (int sign = 0; sign < 2; sign++) {
                memcpy(buf, s + st[i], at);
                buf[at] = sign ? '-' : '+';
                memcpy(buf + at + 1, pm + 3, L - at - 3);
                if (parse_scalar(buf, 0, L - 2, &x, cplx) || add_elem(out, &x, kind)) return -1;
            }
            continue;
        }
        if (parse_scalar(s, st[i], en[i], &x, cplx) || add_elem(out, &x, kind)) return -1;
    }
    return 0;
}

static int is_ws(char c) { return isspace((unsigned char)c); }

static int depth_ok(int budget) { return budget > 0; }

/* Is s[a,b) one number written with thousands separators (-?d{1,3}(,ddd)+(.d+)?)? latex2sympy
 * reads those only when they are the whole answer: (1,000) is a pair and 1,000+1 a set. */
static int whole_thousands(const char *s, size_t a, size_t b) {
    size_t i = a, d;
    if (i < b && s[i] == '-') i++;
    d = i;
    while (i < b && isdigit((unsigned char)s[i])) i++;
    if (i == d || i - d > 3) return 0;
    int groups = 0;
    while (i + 4 <= b && s[i] == ',' && isdigit((unsigned char)s[i + 1]) && isdigit((unsigned char)s[i + 2]) &&
           isdigit((unsigned char)s[i + 3]))
        i += 4, groups++;
    if (!groups) return 0;
    if (i < b && s[i] == '.') {
        i++;
        d = i;
        while (i < b && isdigit((unsigned char)s[i])) i++;
        if (i == d) return 0;
    }
    return i == b;
}

static int parse_top(const char *s, size_t n, v3m_val *out, int cplx, int depth_budget) {
    size_t a = 0, b = n;
    memset(out, 0, sizeof(*out));
    while (a < b && is_ws(s[a])) a++;
    while (b > a && is_ws(s[b - 1])) b--;
    /* spacing commands at either end, and a leading unary '+' (before a scalar or a matrix), do
     * not change the answer */
    int plus = 0;
    for (int changed = 1; changed && a < b;) {
        static const char *const sp[] = {"\\,", "\\;", "\\:", "\\!", "\\quad", "\\qquad", NULL};
        changed = 0;
        for (int k = 0; sp[k]; k++) {
            size_t L = strlen(sp[k]);
            if (b - a >= L && memcmp(s + b - L, sp[k], L) == 0) { b -= L; changed = 1; }
            else if (b - a >= L && memcmp(s + a, sp[k], L) == 0) { a += L; changed = 1; }
        }
        if (a < b && s[a] == '+') { a++; changed = 1; plus = 1; }
        while (a < b && is_ws(s[a])) a++;
        while (b > a && is_ws(s[b - 1])) b--;
    }
    /* +(1,2), +[0,1), +\{1\} do not parse upstream; +5, +1 \pm \sqrt{2}, +\begin{pmatrix} do */
    if (plus && a < b && (s[a] == '(' || s[a] == '[' || (s[a] == '\\' && a + 1 < b && s[a + 1] == '{'))) return -1;
    if (a == b) return -1;
    if (whole_thousands(s, a, b)) {
        char buf[64];
        size_t L = 0;
        for (size_t i = a; i < b && L < sizeof buf - 1; i++)
            if (s[i] != ',') buf[L++] = s[i];
        out->kind = V3M_SCALAR;
        out->n = 1;
        return parse_scalar(buf, 0, L, &out->el[0], cplx);
    }
    /* relations at top level: lhs op rhs (chains keep the first lhs and the last rhs) */
    {
        int depth = 0;
        size_t op_at[8], op_len[8];
        int ops[8], nop = 0;
        for (size_t i = a; i < b && nop < 8; i++) {
            char c = s[i];
            if (c == '(' || c == '[' || c == '{') { depth++; continue; }
            if (c == ')' || c == ']' || c == '}') { depth--; continue; }
            if (depth) continue;
            static const struct { const char *w; int op; } R[] = {{"\\leq", 'l'}, {"\\le", 'l'}, {"\\geq", 'g'},
                {"\\ge", 'g'}, {"\\neq", 'n'}, {"\\ne", 'n'}, {"\\lt", '<'}, {"\\gt", '>'}, {"\\in", 'i'},
                {"<=", 'l'}, {">=", 'g'}, {"=", '='}, {"<", '<'}, {">", '>'}, {NULL, 0}};
            for (int k = 0; R[k].w; k++) {
                size_t L = strlen(R[k].w);
                if (i + L <= b && memcmp(s + i, R[k].w, L) == 0 &&
                    !(R[k].w[0] == '\\' && i + L < b && isalpha((unsigned char)s[i + L]))) {
                    op_at[nop] = i; op_len[nop] = L; ops[nop] = R[k].op; nop++;
                    i += L - 1;
                    break;
                }
            }
        }
        if (nop > 0) {
            if (ops[0] == 'i') { /* "x \in S": the answer is S (only after a plain symbol) */
                v3m_num l;
                if (parse_scalar(s, a, op_at[0], &l, cplx) || !(l.flags & V3M_F_SYM)) return -1;
                return parse_top(s + op_at[0] + op_len[0], b - op_at[0] - op_len[0], out, cplx, depth_budget - 1);
            }
            v3m_num l, r;
            if (parse_scalar(s, a, op_at[0], &l, cplx)) return -1;
            if (parse_scalar(s, op_at[nop - 1] + op_len[nop - 1], b, &r, cplx)) {
                /* "x = (2, 4)", "y = 1 \pm \sqrt{2}": a symbol set to a tuple/set; the gold
                 * format rules would unwrap it to its right-hand side, so return that */
                if (nop == 1 && ops[0] == '=' && (l.flags & V3M_F_SYM) && depth_ok(depth_budget) &&
                    parse_top(s + op_at[0] + 1, b - op_at[0] - 1, out, cplx, depth_budget - 1) == 0 &&
                    out->kind != V3M_SCALAR && out->kind != V3M_REL)
                    return 0;
                return -1;
            }
            out->kind = V3M_REL;
            out->n = 2;
            out->rel_op = ops[0];
            out->n_rel = nop;
            out->el[0] = l;
            out->el[1] = r;
            out->lhs_symbols = l.name[0] != 0 && (l.flags & V3M_F_VARS) && !(l.flags & V3M_F_IRR);
            return 0;
        }
    }
    /* \begin{pmatrix} a & b \\ c & d \end{pmatrix} (also bmatrix, matrix); a trailing ^\circ is dropped */
    {
        static const char *const envs[] = {"pmatrix", "bmatrix", "matrix", NULL};
        size_t e = b;
        if (e - a > 6 && memcmp(s + e - 6, "^\\circ", 6) == 0) e -= 6;
        else if (e - a > 8 && memcmp(s + e - 8, "^{\\circ}", 8) == 0) e -= 8;
        for (int k = 0; envs[k]; k++) {
            char open[32], close[32];
            snprintf(open, sizeof open, "\\begin{%s}", envs[k]);
            snprintf(close, sizeof close, "\\end{%s}", envs[k]);
            size_t lo = strlen(open), lc = strlen(close);
            if (e - a < lo + lc || memcmp(s + a, open, lo) != 0 || memcmp(s + e - lc, close, lc) != 0) continue;
            size_t ca = a + lo, cb = e - lc;
            out->kind = V3M_MATRIX;
            out->n = 0;
            out->rows = 0;
            out->cols = 0;
            size_t r0 = ca;
            while (r0 <= cb) {
                const char *rs = top_level(s, r0, cb, "\\\\");
                size_t r1 = rs ? (size_t)(rs - s) : cb;
                size_t t0 = r0, t1 = r1;
                while (t0 < t1 && is_ws(s[t0])) t0++;
                if (t0 == t1 && !rs) break; /* a trailing \\ */
                int cols = 0;
                size_t c0 = r0;
                for (;;) {
                    const char *cs = top_level(s, c0, r1, "&");
                    size_t c1 = cs ? (size_t)(cs - s) : r1;
                    v3m_num x;
                    if (out->n >= V3M_MAX_ELEMS || parse_scalar(s, c0, c1, &x, cplx)) return -1;
                    out->el[out->n++] = x;
                    cols++;
                    if (!cs) break;
                    c0 = c1 + 1;
                }
                if (out->rows && cols != out->cols) return -1;
                out->cols = cols;
                out->rows++;
                if (!rs) break;
                r0 = r1 + 2;
            }
            return out->rows ? 0 : -1;
        }
    }
    /* (a,b) \cup [c,d): a union of intervals */
    if (top_level(s, a, b, "\\cup") && depth_ok(depth_budget)) {
        out->kind = V3M_UNION;
        out->n = 0;
        size_t cur = a;
        while (cur < b) {
            const char *u = top_level(s, cur, b, "\\cup");
            size_t e = u ? (size_t)(u - s) : b;
            v3m_val iv;
            if (out->n + 2 > V3M_MAX_ELEMS || parse_top(s + cur, e - cur, &iv, cplx, depth_budget - 1) ||
                iv.kind != V3M_INTERVAL)
                return -1;
            out->uopen[out->n / 2] = (unsigned char)(iv.lopen | (iv.ropen << 1));
            out->el[out->n++] = iv.el[0];
            out->el[out->n++] = iv.el[1];
            cur = u ? e + 4 : b;
        }
        return 0;
    }
    /* {...}: a plain group around the whole answer */
    if (s[a] == '{' && match_close(s, a, b) == b - 1 && depth_ok(depth_budget)) {
        if (whole_thousands(s, a + 1, b - 1)) return parse_list(s, a + 1, b - 1, out, V3M_SET, cplx); /* {58,500} */
        if (parse_top(s + a + 1, b - a - 2, out, cplx, depth_budget - 1)) return -1;
        /* but {(2,4)} does not read as the interval in latex2sympy */
        return out->kind == V3M_INTERVAL || out->kind == V3M_TUPLE ? -1 : 0;
    }
    /* \{ ... \} is a set */
    if (b - a >= 4 && s[a] == '\\' && s[a + 1] == '{' && s[b - 2] == '\\' && s[b - 1] == '}') {
        return parse_list(s, a + 2, b - 2, out, V3M_SET, cplx);
    }
    /* (a, b), [a, b), ... : tuple or interval when the opener closes at the end */
    if ((s[a] == '(' || s[a] == '[') && (s[b - 1] == ')' || s[b - 1] == ']') && match_close(s, a, b) == b - 1) {
        v3m_val t;
        /* (3 \pm 2\sqrt{2}), ((a,b) \cup (c,d)), (\begin{pmatrix}..): parentheses around something without a top-level comma */
        if (s[a] == '(' && s[b - 1] == ')' && depth_ok(depth_budget) && !top_level(s, a + 1, b - 1, ",") &&
            (top_level(s, a + 1, b - 1, "\\pm") || top_level(s, a + 1, b - 1, "\\cup") ||
             top_level(s, a + 1, b - 1, "\\begin{")))
            return parse_top(s + a + 1, b - a - 2, out, cplx, depth_budget - 1);
        /* ((2,4)): redundant outer parentheses around a tuple or interval */
        if (s[a] == '(' && s[b - 1] == ')' && depth_ok(depth_budget)) {
            size_t ia = a + 1, ib = b - 1;
            while (ia < ib && is_ws(s[ia])) ia++;
            while (ib > ia && is_ws(s[ib - 1])) ib--;
            if (ib - ia >= 2 && (s[ia] == '(' || s[ia] == '[') && (s[ib - 1] == ')' || s[ib - 1] == ']') &&
                match_close(s, ia, ib) == ib - 1)
                return parse_top(s + ia, ib - ia, out, cplx, depth_budget - 1);
        }
        if (!top_level(s, a + 1, b - 1, ",")) {
            /* (x), [x], [(8,-2)]: one element in brackets is that element */
            if (!((s[a] == '(') == (s[b - 1] == ')')) || !depth_ok(depth_budget)) return -1;
            if (top_level(s, a + 1, b - 1, "\\in")) return -1; /* [x \in S] is not S upstream */
            return parse_top(s + a + 1, b - a - 2, out, cplx, depth_budget - 1);
        }
        if (parse_list(s, a + 1, b - 1, &t, V3M_TUPLE, cplx)) return -1;
        int numeric = !(t.el[0].flags & V3M_F_VARS) && !(t.el[1].flags & V3M_F_VARS);
        if (t.n == 2 && numeric && t.el[0].v[0] < t.el[1].v[0]) {
            *out = t;
            out->kind = V3M_INTERVAL;
            out->lopen = s[a] == '(';
            out->ropen = s[b - 1] == ')';
            return 0;
        }
        if (t.n == 2 && (s[a] != '(' || s[b - 1] != ')')) return -1; /* [b, a] with b > a: not an interval */
        *out = t;
        return 0;
    }
    {
        size_t st[V3M_MAX_ELEMS], en[V3M_MAX_ELEMS];
        int k = split_commas(s, a, b, st, en, V3M_MAX_ELEMS);
        if (k < 0) return -1;
        if (k > 1 || top_level(s, a, b, "\\pm")) return parse_list(s, a, b, out, V3M_SET, cplx);
    }
    out->kind = V3M_SCALAR;
    out->n = 1;
    return parse_scalar(s, a, b, &out->el[0], cplx);
}

/* math-verify's should_treat_as_complex: such answers get complex symbols, so their variables
 * never equal those of a real-looking answer. */
static int looks_complex(const char *s, size_t n) {
    static const char *const pats[] = {"\\mathbb{C}", "\\text{i}", "\\mathrm{i}", "\\det", "\\operatorname{tr}",
        "\\operatorname{rank}", "\\text{rank}", "\\arg{", "\\Re{", "\\Im{", "\\operatorname{Re}",
        "\\operatorname{Im}", "\\text{Re}", "\\text{Im}", "\\imath", NULL};
    for (int k = 0; pats[k]; k++)
        if (memmem(s, n, pats[k], strlen(pats[k]))) return 1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != 'i') continue;
        int wb_after = i + 1 >= n || !(isalnum((unsigned char)s[i + 1]) || s[i + 1] == '_');
        if (!wb_after) continue;
        if (i == 0 || !(isalnum((unsigned char)s[i - 1]) || s[i - 1] == '_')) return 1; /* \bi\b */
        if (i >= 1 && s[i - 1] == '\\') return 1;                                        /* \i */
    }
    return 0;
}

int v3m_parse(const char *s, size_t n, v3m_val *out) { return parse_top(s, n, out, looks_complex(s, n), 8); }
