/* math_internal.h — shared types of the math reward's stages (extract → normalise → parse →
 * compare). Not a public header: only rewards/math_*.c include it. */
#ifndef V3_MATH_INTERNAL_H
#define V3_MATH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "rewards/math_verify.h"

/* Sample points at which expressions with variables are evaluated: two expressions that agree
 * at all of them (to V3M_SYM_RTOL) are taken as symbolically equal, standing in for sympy's
 * simplify(a - b) == 0. */
#define V3M_NPTS 3
#define V3M_SYM_RTOL 1e-9
#define V3M_MAX_ELEMS 16   /* elements of a tuple/set/interval kept; more -> unparsed */
#define V3M_MAX_PARTS 6    /* LaTeX environments joined by "and"/"or"/"," (math-verify: 1 + 5) */
#define V3M_NAME_MAX 48

/* ---- extraction ---- */
typedef struct {
    int n;                                /* parts found (0: nothing extracted) */
    v3_math_extract_kind kind;
    struct {
        size_t off, len;                  /* span of the part's raw LaTeX in the input */
        int boxed_last;                   /* 1: came from the greedy plain \boxed match (boxed="last") */
        int pct;                          /* a percent sign followed the environment */
    } part[V3M_MAX_PARTS];
} v3m_match;

/* gold_mode 1: math-verify's default LatexExtractionConfig (boxed priority 50, plain environments
 * allowed); 0: open-r1's completion config (boxed first, anchors required). */
void v3m_find(const char *t, size_t n, int gold_mode, v3m_match *m);

/* ---- normalisation ---- */
/* normalize_latex: boxed extraction (mode_last: only the last group of \boxed), basic LaTeX
 * cleanup, units; gold_mode adds the "nits" and "malformed operators" fixes, pred mode the
 * last-equation split. Writes at most cap-1 bytes + NUL; returns the length written. */
size_t v3m_normalize(const char *in, size_t n, int mode_last, int gold_mode, char *out, size_t cap);
/* extract_boxed_content alone (mode_last as above); writes into out, returns length. */
size_t v3m_boxed_content(const char *t, size_t n, int mode_last, char *out, size_t cap);

/* ---- values ---- */
enum { V3M_F_FLOAT = 1, V3M_F_VARS = 2, V3M_F_IRR = 4, V3M_F_PCT = 8, V3M_F_BAD = 16, V3M_F_INF = 32,
       V3M_F_OVF = 64, /* a finite value too large for a double: only exact/string equality */
       V3M_F_SYM = 128 /* one symbol (a letter or a \text{...} word), compared by name */ };

typedef struct {
    double v[V3M_NPTS];      /* value at each sample point (pct already applied) */
    double raw0;             /* point-0 value before a top-level percent was applied */
    int64_t p, q;            /* exact rational p/q when exact (q > 0), pct applied */
    int64_t rp, rq;          /* exact value before percent */
    int exact;
    unsigned flags;
    char name[V3M_NAME_MAX]; /* lower-cased word when the scalar is a lone symbol/word, else "" */
} v3m_num;

typedef enum { V3M_SCALAR = 1, V3M_TUPLE, V3M_SET, V3M_INTERVAL, V3M_REL, V3M_UNION, V3M_MATRIX } v3m_kind;

typedef struct {
    v3m_kind kind;
    int n;                      /* elements (TUPLE/SET), 2 for INTERVAL and REL */
    int lopen, ropen;           /* INTERVAL ends */
    int rows, cols;             /* MATRIX shape; elements row-major in el[] */
    unsigned char uopen[V3M_MAX_ELEMS]; /* UNION: interval k is el[2k], el[2k+1], openness bits 1 (left) 2 (right) */
    int rel_op;                 /* REL: '=', '<', '>', 'l' (<=), 'g' (>=), 'n' (!=) */
    int lhs_symbols;            /* REL: left side is only symbols (an assignment like x = 5) */
    int n_rel;                  /* REL: number of chained relations (a = b = c counts 2) */
    v3m_num el[V3M_MAX_ELEMS];  /* REL: el[0] lhs, el[1] rhs */
} v3m_val;

/* Parses a normalised answer. Returns 0 on success, -1 when it is not something we can parse
 * (math-verify then keeps only its string form). Bounded: depth <= V3_MATH_MAX_DEPTH. */
int v3m_parse(const char *s, size_t n, v3m_val *out);

/* math-verify's sympy_expr_eq on parsed values (gold first). */
int v3m_val_equal(const v3m_val *gold, const v3m_val *pred, double float_rounding);

#endif
