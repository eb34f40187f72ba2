/* math_verify.c — the public math reward: extraction + normalisation + parsing glued together,
 * and the equivalence rules of math-verify's verify() (numbers, decimals rounded to 6 places,
 * percent, symbols, relations, tuples/intervals/sets, and the string fallback). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewards/math_internal.h"

void v3_math_opts_default(v3_math_opts *o) {
    o->max_input = 65536;
    o->gsm8k_hash = 0;
    o->last_number_fallback = 0;
    o->float_rounding = 6;
}

/* ---- scalar comparison (sympy_numeric_eq + sympy_symbolic_eq + sympy_compare_symbols) ---- */

static int is_number(const v3m_num *a) { /* a sympy Number: no variables, rational or a float */
    return !(a->flags & (V3M_F_VARS | V3M_F_IRR | V3M_F_INF)) && (a->exact || (a->flags & V3M_F_FLOAT));
}
static int is_float(const v3m_num *a) { return is_number(a) && (a->flags & V3M_F_FLOAT); }
/* an Integer, or a percent of an Integer (then the number before the % counts) */
static int is_integer(const v3m_num *a) {
    return is_number(a) && !(a->flags & V3M_F_FLOAT) && a->exact && ((a->flags & V3M_F_PCT) ? a->rq == 1 : a->q == 1);
}
static int64_t int_value(const v3m_num *a) { return (a->flags & V3M_F_PCT) ? a->rp : a->p; }

static int close_rel(double a, double b, double rtol) {
    if (a == b) return 1;
    if (isnan(a) || isnan(b) || isinf(a) || isinf(b)) return 0;
    double m = fmax(fabs(a), fabs(b));
    return fabs(a - b) <= rtol * fmax(m, 1e-300) || fabs(a - b) < 1e-300;
}

static int round_eq(double a, double b, double places) {
    double sc = pow(10.0, places);
    if (isinf(a) || isinf(b) || isnan(a) || isnan(b)) return 0;
    if (fabs(a) * sc > 4e15 || fabs(b) * sc > 4e15) return close_rel(a, b, 1e-15);
    return nearbyint(a * sc) == nearbyint(b * sc);
}

static int same_value(const v3m_num *a, const v3m_num *b) {
    if (a->exact && b->exact) return a->p == b->p && a->q == b->q;
    for (int k = 0; k < V3M_NPTS; k++)
        if (!close_rel(a->v[k], b->v[k], V3M_SYM_RTOL)) return 0;
    return 1;
}

static int num_equal(const v3m_num *g, const v3m_num *p, double places) {
    int gs = (g->flags & V3M_F_SYM) != 0, ps = (p->flags & V3M_F_SYM) != 0;
    /* sympy_compare_symbols: a symbol against a symbol (or a product of symbols) compares
     * names; against anything else, the printed forms ("5" matches \text{5}) */
    if (gs || ps) {
        if (g->name[0] && p->name[0]) return strcmp(g->name, p->name) == 0;
        const v3m_num *sym = gs ? g : p, *oth = gs ? p : g;
        char buf[48];
        if (!oth->exact || (oth->flags & (V3M_F_FLOAT | V3M_F_VARS | V3M_F_IRR | V3M_F_PCT))) return 0;
        if (oth->q == 1) snprintf(buf, sizeof buf, "%lld", (long long)oth->p);
        else snprintf(buf, sizeof buf, "%lld/%lld", (long long)oth->p, (long long)oth->q);
        return strcmp(sym->name, buf) == 0;
    }
    if ((g->flags | p->flags) & V3M_F_OVF) return g->exact && p->exact && g->p == p->p && g->q == p->q;
    if ((g->flags & V3M_F_INF) || (p->flags & V3M_F_INF))
        return !(g->flags & V3M_F_VARS) && !(p->flags & V3M_F_VARS) && g->v[0] == p->v[0];
    if (is_number(g) || is_number(p)) {
        if (is_float(g) || is_float(p)) {
            if ((g->flags | p->flags) & V3M_F_VARS) return 0;
            if (round_eq(g->v[0], p->v[0], places)) return 1;
            return 0;
        }
        if (is_integer(g) && is_integer(p)) return int_value(g) == int_value(p); /* 9% == 9 */
        if (g->exact && p->exact) return g->p == p->p && g->q == p->q;
        /* a rational against an irrational expression: sympy's simplify decides; so do values */
        return same_value(g, p);
    }
    return same_value(g, p);
}

/* ---- structured values ---- */

static int cmp_num(const void *a, const void *b) {
    double x = ((const v3m_num *)a)->v[0], y = ((const v3m_num *)b)->v[0];
    return x < y ? -1 : x > y;
}

static int list_equal(const v3m_num *g, int gn, const v3m_num *p, int pn, int sort_g, int sort_p, double places) {
    if (gn != pn) return 0;
    v3m_num *a = malloc(sizeof(v3m_num) * (size_t)(2 * gn + 1));
    if (!a) return 0;
    v3m_num *b = a + gn;
    memcpy(a, g, sizeof(v3m_num) * (size_t)gn);
    memcpy(b, p, sizeof(v3m_num) * (size_t)pn);
    if (sort_g) qsort(a, (size_t)gn, sizeof(v3m_num), cmp_num);
    if (sort_p) qsort(b, (size_t)pn, sizeof(v3m_num), cmp_num);
    int ok = 1;
    for (int i = 0; i < gn && ok; i++) ok = num_equal(&a[i], &b[i], places);
    free(a);
    return ok;
}

static int sets_equal(const v3m_val *g, const v3m_val *p, double places) {
    v3m_val gs = *g, ps = *p;
    if (gs.kind == V3M_SCALAR) gs.kind = V3M_SET;
    if (ps.kind == V3M_SCALAR) ps.kind = V3M_SET;
    if (gs.kind == V3M_INTERVAL && ps.kind == V3M_INTERVAL)
        return gs.lopen == ps.lopen && gs.ropen == ps.ropen && num_equal(&gs.el[0], &ps.el[0], places) &&
               num_equal(&gs.el[1], &ps.el[1], places);
    int gl = gs.kind == V3M_SET || gs.kind == V3M_TUPLE, pl = ps.kind == V3M_SET || ps.kind == V3M_TUPLE;
    if (gl && pl) {
        if (gs.kind == V3M_SET) return list_equal(gs.el, gs.n, ps.el, ps.n, 1, 1, places);
        if (ps.kind == V3M_SET) return list_equal(gs.el, gs.n, ps.el, ps.n, 0, 0, places); /* as written */
        return list_equal(gs.el, gs.n, ps.el, ps.n, 0, 0, places);
    }
    /* (1,2) is read as an open interval; it may still match the pair 1,2 */
    if (gs.kind == V3M_INTERVAL && pl && gs.lopen && gs.ropen && ps.n == 2)
        return list_equal(gs.el, 2, ps.el, 2, 0, 0, places);
    if (ps.kind == V3M_INTERVAL && gl && ps.lopen && ps.ropen && gs.n == 2)
        return list_equal(gs.el, 2, ps.el, 2, gs.kind == V3M_SET, gs.kind == V3M_SET, places);
    return 0;
}

int v3m_val_equal(const v3m_val *gold, const v3m_val *pred, double places) {
    v3m_val g = *gold, p = *pred;
    int g_eq = g.kind == V3M_REL && g.rel_op == '=';
    int p_eq = p.kind == V3M_REL && p.rel_op == '=';
    int g_assign = g_eq && g.lhs_symbols;
    /* follow the gold's format: "x = 5" against 5 compares 5 with 5 */
    if (p_eq && !g_eq) {
        p.kind = V3M_SCALAR; p.n = 1; p.el[0] = p.el[1];
    } else if (g_assign && !p_eq) {
        g.kind = V3M_SCALAR; g.n = 1; g.el[0] = g.el[1];
    }
    if (g.kind == V3M_REL && p.kind == V3M_REL) {
        if (g.rel_op != p.rel_op) return 0;
        return (num_equal(&g.el[0], &p.el[0], places) && num_equal(&g.el[1], &p.el[1], places)) ||
               (g.rel_op == '=' && num_equal(&g.el[0], &p.el[1], places) && num_equal(&g.el[1], &p.el[0], places));
    }
    if (g.kind == V3M_REL || p.kind == V3M_REL) return 0;
    if (g.kind == V3M_MATRIX || p.kind == V3M_MATRIX) { /* same shape, equal elements */
        if (g.kind != p.kind || g.rows != p.rows || g.cols != p.cols) return 0;
        for (int k = 0; k < g.n; k++)
            if (!num_equal(&g.el[k], &p.el[k], places)) return 0;
        return 1;
    }
    if (g.kind == V3M_UNION || p.kind == V3M_UNION) { /* same intervals, in order of their starts */
        if (g.kind != p.kind || g.n != p.n) return 0;
        for (int k = 0; k < g.n / 2; k++)
            if (g.uopen[k] != p.uopen[k] || !num_equal(&g.el[2 * k], &p.el[2 * k], places) ||
                !num_equal(&g.el[2 * k + 1], &p.el[2 * k + 1], places))
                return 0;
        return 1;
    }
    if (g.kind != V3M_SCALAR || p.kind != V3M_SCALAR) return sets_equal(&g, &p, places);
    return num_equal(&g.el[0], &p.el[0], places);
}

/* ---- one side: extract, normalise, parse ---- */

typedef struct {
    int found;          /* an answer was extracted */
    int parsed;         /* and parsed */
    v3m_val val;
    char str[V3_MATH_ANSWER_MAX]; /* the normalised string math-verify keeps as fallback */
} side;

static void merge_sets(v3m_val *acc, const v3m_val *x, int *ok) {
    if (x->kind == V3M_SET) {
        for (int i = 0; i < x->n; i++) {
            if (acc->n >= V3M_MAX_ELEMS) { *ok = 0; return; }
            acc->el[acc->n++] = x->el[i];
        }
    } else if (x->kind == V3M_SCALAR) {
        if (acc->n >= V3M_MAX_ELEMS) { *ok = 0; return; }
        acc->el[acc->n++] = x->el[0];
    } else {
        *ok = 0;
    }
}

static void apply_pct(v3m_val *v) {
    if (v->kind != V3M_SCALAR) return;
    v3m_num *a = &v->el[0];
    if (a->flags & V3M_F_PCT) return;
    a->raw0 = a->v[0]; a->rp = a->p; a->rq = a->q;
    for (int k = 0; k < V3M_NPTS; k++) a->v[k] /= 100.0;
    if (a->exact) {
        if (__builtin_mul_overflow(a->q, 100, &a->q)) a->exact = 0;
        else {
            int64_t x = a->p, y = a->q, t;
            while (y) { t = x % y; x = y; y = t; }
            if (x < 0) x = -x;
            if (x > 1) { a->p /= x; a->q /= x; }
        }
    }
    a->name[0] = 0;
    a->flags |= V3M_F_PCT;
}

static void read_side(const char *t, size_t n, int gold_mode, side *sd) {
    v3m_match m;
    memset(sd, 0, sizeof(*sd));
    v3m_find(t, n, gold_mode, &m);
    if (m.n == 0) return;
    sd->found = 1;
    char buf[V3M_MAX_PARTS][V3_MATH_ANSWER_MAX];
    v3m_val vals[V3M_MAX_PARTS];
    int all_ok = 1, first_ok = 0;
    for (int i = 0; i < m.n; i++) {
        size_t L = v3m_normalize(t + m.part[i].off, m.part[i].len, m.part[i].boxed_last, gold_mode, buf[i],
                                 V3_MATH_ANSWER_MAX);
        int ok = v3m_parse(buf[i], L, &vals[i]) == 0;
        if (ok && m.part[i].pct) apply_pct(&vals[i]);
        if (i == 0) first_ok = ok;
        all_ok = all_ok && ok;
    }
    if (m.n > 1 && all_ok) {
        /* several environments joined by and/or/, form one set; the string joins with " and " */
        v3m_val acc;
        memset(&acc, 0, sizeof(acc));
        acc.kind = V3M_SET;
        int ok = 1;
        for (int i = 0; i < m.n && ok; i++) merge_sets(&acc, &vals[i], &ok);
        size_t w = 0;
        for (int i = 0; i < m.n; i++) {
            size_t L = strlen(buf[i]);
            if (i && w + 5 < sizeof(sd->str)) { memcpy(sd->str + w, " and ", 5); w += 5; }
            if (w + L >= sizeof(sd->str)) L = sizeof(sd->str) - 1 - w;
            memcpy(sd->str + w, buf[i], L);
            w += L;
        }
        sd->str[w] = 0;
        if (ok) { sd->parsed = 1; sd->val = acc; }
        return;
    }
    strcpy(sd->str, buf[0]);
    if (first_ok) { sd->parsed = 1; sd->val = vals[0]; }
}

static void trimmed(const char *s, const char **a, size_t *n) {
    size_t i = 0, e = strlen(s);
    while (i < e && isspace((unsigned char)s[i])) i++;
    while (e > i && isspace((unsigned char)s[e - 1])) e--;
    *a = s + i;
    *n = e - i;
}

static int sides_equal(const side *g, const side *p, double places) {
    if (g->parsed && p->parsed && v3m_val_equal(&g->val, &p->val, places)) return 1;
    /* math-verify also keeps both normalised strings; equal non-empty strings verify */
    const char *a, *b;
    size_t an, bn;
    trimmed(g->str, &a, &an);
    trimmed(p->str, &b, &bn);
    return an > 0 && an == bn && memcmp(a, b, an) == 0;
}

/* ---- public API ---- */

static const char *tail(const char *t, size_t *len, const v3_math_opts *o) {
    if (*len > o->max_input) {
        t += *len - o->max_input;
        *len = o->max_input;
    }
    return t;
}

double v3_math_accuracy_reward(const char *completion, size_t clen, const char *gold, size_t glen,
                               const v3_math_opts *opts, v3_math_status *status) {
    v3_math_opts d;
    if (!opts) { v3_math_opts_default(&d); opts = &d; }
    side *sd = malloc(2 * sizeof(side));
    if (!sd) { if (status) *status = V3_MATH_NO_ANSWER; return 0.0; }
    gold = tail(gold, &glen, opts);
    completion = tail(completion, &clen, opts);
    read_side(gold, glen, 1, &sd[0]);
    if (!sd[0].found) {
        free(sd);
        if (status) *status = V3_MATH_GOLD_UNPARSED;
        return 0.0;
    }
    read_side(completion, clen, 0, &sd[1]);
    double r = 0.0;
    if (!sd[1].found) {
        if (status) *status = V3_MATH_NO_ANSWER;
    } else {
        if (status) *status = V3_MATH_OK;
        r = sides_equal(&sd[0], &sd[1], opts->float_rounding) ? 1.0 : 0.0;
    }
    free(sd);
    return r;
}

int v3_math_equal(const char *gold, const char *pred, const v3_math_opts *opts) {
    v3_math_opts d;
    if (!opts) { v3_math_opts_default(&d); opts = &d; }
    side *sd = malloc(2 * sizeof(side));
    if (!sd) return 0;
    const char *in[2] = {gold, pred};
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(in[k]);
        const char *t = tail(in[k], &n, opts);
        memset(&sd[k], 0, sizeof(side));
        v3m_normalize(t, n, 0, k == 0, sd[k].str, sizeof(sd[k].str));
        sd[k].found = 1;
        sd[k].parsed = v3m_parse(sd[k].str, strlen(sd[k].str), &sd[k].val) == 0;
    }
    int r = sides_equal(&sd[0], &sd[1], opts->float_rounding);
    free(sd);
    return r;
}

/* "#### N" (GSM8K) and last-number fallbacks: outside math-verify, only when asked for. */
static int hash_answer(const char *t, size_t n, size_t *off, size_t *len) {
    for (size_t i = n; i-- > 0;) {
        if (i + 4 <= n && memcmp(t + i, "####", 4) == 0) {
            size_t a = i + 4;
            while (a < n && isspace((unsigned char)t[a])) a++;
            size_t b = a;
            while (b < n && t[b] != '\n') b++;
            while (b > a && isspace((unsigned char)t[b - 1])) b--;
            if (b > a) { *off = a; *len = b - a; return 1; }
        }
    }
    return 0;
}

static int last_number(const char *t, size_t n, size_t *off, size_t *len) {
    for (size_t i = n; i-- > 0;) {
        if (!isdigit((unsigned char)t[i])) continue;
        size_t b = i + 1, a = i;
        while (a > 0 && (isdigit((unsigned char)t[a - 1]) || t[a - 1] == '.' || t[a - 1] == ',')) a--;
        while (a < b && !isdigit((unsigned char)t[a])) a++;
        if (a > 0 && t[a - 1] == '-') a--;
        *off = a; *len = b - a;
        return 1;
    }
    return 0;
}

int v3_math_extract(const char *text, size_t len, char *out, size_t out_size, v3_math_extract_kind *kind,
                    const v3_math_opts *opts) {
    v3_math_opts d;
    if (!opts) { v3_math_opts_default(&d); opts = &d; }
    if (out_size) out[0] = 0;
    if (kind) *kind = V3_MATH_NONE;
    text = tail(text, &len, opts);
    v3m_match m;
    v3m_find(text, len, 0, &m);
    size_t off = 0, n = 0;
    v3_math_extract_kind k = V3_MATH_NONE;
    if (m.n > 0) {
        k = m.kind;
        if (m.part[0].boxed_last) {
            if (out_size) v3m_boxed_content(text + m.part[0].off, m.part[0].len, 1, out, out_size);
            if (kind) *kind = k;
            return 0;
        }
        off = m.part[0].off;
        n = m.part[0].len;
    } else if (opts->gsm8k_hash && hash_answer(text, len, &off, &n)) {
        k = V3_MATH_GSM8K_HASH;
    } else if (opts->last_number_fallback && last_number(text, len, &off, &n)) {
        k = V3_MATH_LAST_NUMBER;
    } else {
        return -1;
    }
    if (out_size) {
        if (n > out_size - 1) n = out_size - 1;
        memcpy(out, text + off, n);
        out[n] = 0;
    }
    if (kind) *kind = k;
    return 0;
}
