/* test_tokenizer_golden.c — every text field of every shared data file, encoded by v3_tok_encode,
 * must give HF `tokenizers`' ids (token count + FNV-1a hash per row, full hash per file, from
 * tests/golden/gen_tokenizer.py), and decode(encode(x)) must give x back. Files are spread over
 * OpenMP threads sharing one tokenizer, which also exercises thread safety (and the word cache).
 * Every 8th row is also encoded through the Oniguruma regexes (V3_TOK_NO_FASTPATH) and must
 * give the same ids as the hand-written scanner. */
#include <jansson.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "common/json_util.h"
#include "datasets/tokenizer.h"
#include "testutil.h"

typedef struct row_exp {
    size_t bytes, ntok;
    uint32_t hash;
} row_exp;

typedef struct file_exp {
    char *rel;
    size_t n_rows;
    uint64_t hash;
    row_exp *rows;
} file_exp;

static uint64_t fnv_ids(const int32_t *ids, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int k = 0; k < 4; k++) h = (h ^ ((v >> (8 * k)) & 0xFF)) * 1099511628211ull;
    }
    return h;
}
#define FNV_OFF 1469598103934665603ull

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[len] = 0;
    *n = (size_t)len;
    return buf;
}


static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n\v\f", s[i])) return 0;
    return 1;
}

/* Rows of one data file, enumerated as gen_tokenizer.py does. NULL on parse failure. */
static json_t *file_rows(const char *path, const char *rel, char *why, size_t why_n) {
    size_t n;
    char *raw = read_file(path, &n);
    if (!raw) {
        snprintf(why, why_n, "cannot read %s", path);
        return NULL;
    }
    json_t *rows = json_array();
    json_error_t je;
    size_t rl = strlen(rel);
    int jsonl = rl > 6 && strcmp(rel + rl - 6, ".jsonl") == 0;
    size_t pos = 0;
    while (pos < n) {
        size_t end = jsonl ? pos : n;
        if (jsonl)
            while (end < n && raw[end] != '\n') end++;
        if (!is_blank(raw + pos, end - pos)) {
            json_t *doc = json_loadb(raw + pos, end - pos, JSON_ALLOW_NUL | JSON_DECODE_ANY, &je);
            if (!doc) {
                snprintf(why, why_n, "%s: %d: %s", rel, je.line, je.text);
                json_decref(rows);
                free(raw);
                return NULL;
            }
            v3_json_collect_strings(doc, rows);
            json_decref(doc);
        }
        pos = end + 1;
    }
    free(raw);
    return rows;
}

static file_exp *load_manifest(const char *path, size_t *n_files) {
    size_t zn;
    char *z = read_file(path, &zn);
    if (!z) return NULL;
    unsigned long long cap = ZSTD_getFrameContentSize(z, zn);
    if (cap == ZSTD_CONTENTSIZE_ERROR || cap == ZSTD_CONTENTSIZE_UNKNOWN) cap = 64u << 20;
    char *txt = malloc(cap + 1);
    size_t tn = ZSTD_decompress(txt, cap, z, zn);
    free(z);
    if (ZSTD_isError(tn)) {
        free(txt);
        return NULL;
    }
    txt[tn] = 0;
    size_t nf = 0, capf = 0;
    file_exp *files = NULL;
    char *save = NULL;
    for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == 'F') {
            if (nf == capf) {
                capf = capf ? 2 * capf : 1024;
                files = realloc(files, capf * sizeof *files);
            }
            file_exp *f = &files[nf++];
            char rel[4096];
            unsigned long long h;
            if (sscanf(line, "F %4095s %zu %llx", rel, &f->n_rows, &h) != 3) return NULL;
            f->rel = strdup(rel);
            f->hash = h;
            f->rows = calloc(f->n_rows + 1, sizeof *f->rows);
            f->n_rows = 0;
        } else {
            file_exp *f = &files[nf - 1];
            row_exp *r = &f->rows[f->n_rows++];
            unsigned h;
            if (sscanf(line, "%zu %zu %x", &r->bytes, &r->ntok, &h) != 3) return NULL;
            r->hash = h;
        }
    }
    free(txt);
    *n_files = nf;
    return files;
}

int main(void) {
    char buf[4096], tokdir[4096];
    v3_err err = {0};
    v3_tokenizer *tok = NULL;
    CHECK_OK(v3_tok_load(&tok, t_data_path("deepseek-v3", tokdir, sizeof tokdir), &err), &err);
    if (!tok) return t_finish("test_tokenizer_golden");
    size_t nf = 0;
    file_exp *files = load_manifest(t_source_path("tests/golden/data/tok_rows.txt.zst", buf, sizeof buf), &nf);
    CHECK(files && nf > 12000, "manifest missing or short (%zu files)", nf);
    if (!files) return t_finish("test_tokenizer_golden");

    long rows = 0, rows_equal = 0, files_equal = 0, rt_ok = 0, bad_files = 0, diff_rows = 0, diff_equal = 0;
    long long bytes = 0, toks = 0;
    double t0 = omp_get_wtime();
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : rows, rows_equal, files_equal, rt_ok, bytes, toks, bad_files, diff_rows, diff_equal)
    for (size_t fi = 0; fi < nf; fi++) {
        file_exp *f = &files[fi];
        char path[4096], why[4200];
        t_data_path(f->rel, path, sizeof path);
        json_t *texts = file_rows(path, f->rel, why, sizeof why);
        if (!texts || json_array_size(texts) != f->n_rows) {
#pragma omp critical
            fprintf(stderr, "FAIL %s: %s (rows %zu, expected %zu)\n", f->rel, texts ? "row count" : why,
                    texts ? json_array_size(texts) : 0, f->n_rows);
            bad_files++;
            json_decref(texts);
            continue;
        }
        uint64_t fh = FNV_OFF;
        v3_tok_ids ids = {0};
        v3_err e = {0};
        int all_eq = 1;
        for (size_t r = 0; r < f->n_rows; r++) {
            json_t *s = json_array_get(texts, r);
            const char *txt = json_string_value(s);
            size_t len = json_string_length(s);
            ids.n = 0;
            int rc = v3_tok_encode(tok, txt, len, 0, &ids, &e);
            uint64_t h = fnv_ids(ids.ids, ids.n, FNV_OFF);
            int32_t sep = -1;
            fh = fnv_ids(ids.ids, ids.n, fh);
            fh = fnv_ids(&sep, 1, fh);
            const row_exp *x = &f->rows[r];
            int eq = rc == 0 && len == x->bytes && ids.n == x->ntok && (uint32_t)h == x->hash;
            if (r % 8 == 0) {
                /* every 8th row also through the Oniguruma regexes: same ids as the scanner */
                v3_tok_ids slow = {0};
                int src = v3_tok_encode(tok, txt, len, V3_TOK_NO_FASTPATH, &slow, &e);
                int same = src == 0 && slow.n == ids.n && (ids.n == 0 || memcmp(slow.ids, ids.ids, ids.n * 4) == 0);
                diff_rows++;
                diff_equal += same;
                v3_tok_ids_free(&slow);
            }
            rows++;
            bytes += (long long)len;
            toks += (long long)ids.n;
            if (eq) rows_equal++;
            else {
                all_eq = 0;
#pragma omp critical
                fprintf(stderr, "MISMATCH %s row %zu: rc %d bytes %zu/%zu tokens %zu/%zu hash %08x/%08x\n",
                        f->rel, r, rc, len, x->bytes, ids.n, x->ntok, (uint32_t)h, x->hash);
            }
            char *back = NULL;
            size_t bn = 0;
            if (v3_tok_decode(tok, ids.ids, ids.n, 0, &back, &bn, &e) == 0 && bn == len &&
                memcmp(back, txt, len) == 0)
                rt_ok++;
            else {
#pragma omp critical
                fprintf(stderr, "ROUNDTRIP %s row %zu differs\n", f->rel, r);
            }
            free(back);
        }
        if (all_eq && fh == f->hash) files_equal++;
        else if (all_eq) {
#pragma omp critical
            fprintf(stderr, "MISMATCH %s: file hash %016llx, expected %016llx\n", f->rel,
                    (unsigned long long)fh, (unsigned long long)f->hash);
        }
        v3_tok_ids_free(&ids);
        json_decref(texts);
    }
    double dt = omp_get_wtime() - t0;
    long expected_rows = 0;
    for (size_t i = 0; i < nf; i++) expected_rows += (long)files[i].n_rows;
    printf("golden: %zu files, %ld rows (%lld bytes, %lld tokens) in %.1fs on %d threads\n", nf, rows,
           bytes, toks, dt, omp_get_max_threads());
    printf("golden: rows equal %ld/%ld (%.4f%%), files equal %ld/%zu, decode round trips %ld/%ld\n",
           rows_equal, expected_rows, expected_rows ? 100.0 * rows_equal / expected_rows : 0.0,
           files_equal, nf, rt_ok, rows);
    printf("golden: scanner vs Oniguruma path on every 8th row: %ld/%ld equal\n", diff_equal, diff_rows);
    CHECK(diff_equal == diff_rows, "%ld rows split differently by the scanner and Oniguruma", diff_rows - diff_equal);
    CHECK(bad_files == 0, "%ld files could not be enumerated", bad_files);
    CHECK(rows == expected_rows, "enumerated %ld rows, manifest has %ld", rows, expected_rows);
    CHECK(rows_equal == expected_rows, "%ld rows differ from HF", expected_rows - rows_equal);
    CHECK(files_equal == (long)nf, "%ld files differ from HF", (long)nf - files_equal);
    CHECK(rt_ok == rows, "%ld rows do not decode back to their text", rows - rt_ok);
    for (size_t i = 0; i < nf; i++) {
        free(files[i].rel);
        free(files[i].rows);
    }
    free(files);
    v3_tok_free(tok);
    return t_finish("test_tokenizer_golden");
}
