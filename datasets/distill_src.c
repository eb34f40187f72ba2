/* distill_src.c — records of one import file: JSON Lines / array through the streaming reader,
 * or a whole JSON document whose record list is one of its members (see distill_src.h). */
#include "datasets/distill_src.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/jsonl.h"

#define DEFAULT_MAX_RECORD ((size_t)64 << 20)

struct v3_distill_src {
    char path[1024];
    const char *records; /* borrowed */
    size_t max_record;
    v3_jsonl *r;         /* stream mode; NULL once a document was loaded */
    int doc;             /* 1: reading a document's records */
    int doc_single;      /* the document is one record, not yet returned */
    json_t *doc_root;
    json_t *arr;         /* records being expanded (a document's list, or a member of a line) */
    size_t arr_i;
    int64_t arr_line;    /* line of every element when lines is NULL */
    int64_t *lines;      /* [json_array_size(arr)] start line of each element, or NULL */
    int64_t index;
    int64_t n_read;      /* records read from the stream */
};

int v3_distill_src_open(v3_distill_src **out, const char *path, const char *records,
                        size_t max_record, v3_err *err) {
    v3_distill_src *s = calloc(1, sizeof *s);
    if (!s) return v3_errf(err, V3_ENOMEM, "%s: out of memory", path);
    snprintf(s->path, sizeof s->path, "%s", path);
    s->records = records && records[0] ? records : NULL;
    s->max_record = max_record ? max_record : DEFAULT_MAX_RECORD;
    int rc = v3_jsonl_open(&s->r, path, V3_JSONL_AUTO, s->max_record, err);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return V3_OK;
}

void v3_distill_src_close(v3_distill_src *s) {
    if (!s) return;
    v3_jsonl_close(s->r);
    json_decref(s->arr);
    json_decref(s->doc_root);
    free(s->lines);
    free(s);
}

const char *v3_distill_src_layout(const v3_distill_src *s) {
    if (s->doc) return "document";
    return s->r && v3_jsonl_layout_of(s->r) == V3_JSONL_ARRAY ? "array" : "lines";
}

/* Start line of each element of the array member `member` of the top-level object in t[0..n):
 * a scan that tracks strings and nesting depth. NULL when the count does not come out right. */
static int64_t *member_lines(const char *t, size_t n, const char *member, size_t count) {
    int64_t *lines = malloc((count ? count : 1) * sizeof *lines);
    if (!lines) return NULL;
    size_t k = 0, mlen = strlen(member), str_start = 0;
    int depth = 0, in_str = 0, esc = 0, last_match = 0, in_target = 0, expect = 0;
    int64_t line = 1;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (c == '\n') line++;
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') {
                in_str = 0;
                if (depth == 1)
                    last_match = i - str_start == mlen && memcmp(t + str_start, member, mlen) == 0;
            }
            continue;
        }
        int ws = c == ' ' || c == '\t' || c == '\n' || c == '\r';
        if (in_target && depth == 2 && expect && !ws && c != ']' && c != ',') {
            if (k < count) lines[k] = line;
            k++;
            expect = 0;
        }
        if (c == '"') {
            in_str = 1;
            str_start = i + 1;
        } else if (c == '{' || c == '[') {
            if (c == '[' && depth == 1 && last_match) in_target = expect = 1;
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
            if (in_target && depth == 1) in_target = 0;
        } else if (c == ',' && in_target && depth == 2) {
            expect = 1;
        }
    }
    if (k != count) {
        free(lines);
        return NULL;
    }
    return lines;
}

/* The member of a document that holds its records, or NULL (the document is one record). */
static const char *records_member(const json_t *root, const char *records) {
    if (!json_is_object(root)) return NULL;
    if (records) return json_is_array(json_object_get(root, records)) ? records : NULL;
    const char *found = NULL, *k;
    const json_t *v;
    int n = 0;
    json_object_foreach((json_t *)root, k, v) {
        if (!json_is_array(v) || !json_is_object(json_array_get(v, 0))) continue;
        if (!strcmp(k, "messages") || !strcmp(k, "conversations") || !strcmp(k, "choices")) continue;
        found = k;
        n++;
    }
    return n == 1 ? found : NULL;
}

/* Reads the whole file as one JSON document (through the line reader, so zstd works too). On
 * success the source is switched to document mode; when the file is not one JSON document,
 * returns V3_EFORMAT and leaves the source as it was. */
static int load_document(v3_distill_src *s, v3_err *err) {
    v3_jsonl *r = NULL;
    size_t cap_max = s->max_record * 32 > ((size_t)1 << 30) ? s->max_record * 32 : (size_t)1 << 30;
    int rc = v3_jsonl_open(&r, s->path, V3_JSONL_LINES, s->max_record, err);
    if (rc) return rc;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int64_t line = 1;
    v3_record rec;
    int got;
    while ((rc = v3_jsonl_next(r, &rec, &got, err)) == V3_OK && got) {
        if (rec.too_long) {
            rc = v3_errf(err, V3_EFORMAT, "%s:%lld: line longer than %zu bytes", s->path,
                         (long long)rec.line, s->max_record);
            break;
        }
        size_t gap = rec.line > line ? (size_t)(rec.line - line) : 0;
        if (len + gap + rec.len + 2 > cap_max) {
            rc = v3_errf(err, V3_ERANGE, "%s: a JSON document larger than %zu bytes", s->path, cap_max);
            break;
        }
        if (len + gap + rec.len + 2 > cap) {
            size_t nc = cap ? cap : 1 << 16;
            while (nc < len + gap + rec.len + 2) nc *= 2;
            char *nb = realloc(buf, nc);
            if (!nb) {
                rc = v3_errf(err, V3_ENOMEM, "%s: out of memory reading the document", s->path);
                break;
            }
            buf = nb;
            cap = nc;
        }
        memset(buf + len, '\n', gap); /* keep line numbers: blank lines are not records */
        len += gap;
        memcpy(buf + len, rec.text, rec.len);
        len += rec.len;
        buf[len++] = '\n';
        line = rec.line + 1;
    }
    v3_jsonl_close(r);
    if (rc) {
        free(buf);
        return rc;
    }
    json_error_t je;
    json_t *root = buf ? json_loadb(buf, len, 0, &je) : NULL;
    if (!root) {
        free(buf);
        return V3_EFORMAT;
    }
    const char *member = records_member(root, s->records);
    if (member) {
        s->arr = json_incref(json_object_get(root, member));
        s->lines = member_lines(buf, len, member, json_array_size(s->arr));
        s->arr_i = 0;
        s->arr_line = 1;
    } else {
        s->doc_single = 1;
    }
    free(buf);
    s->doc_root = root;
    s->doc = 1;
    v3_jsonl_close(s->r);
    s->r = NULL;
    return V3_OK;
}

/* Expands `arr` one element at a time. Returns 1 with *obj set, 0 when exhausted. */
static int next_elem(v3_distill_src *s, json_t **obj, int64_t *line) {
    if (!s->arr) return 0;
    if (s->arr_i < json_array_size(s->arr)) {
        *obj = json_incref(json_array_get(s->arr, s->arr_i));
        *line = s->lines ? s->lines[s->arr_i] : s->arr_line;
        s->arr_i++;
        return 1;
    }
    json_decref(s->arr);
    s->arr = NULL;
    free(s->lines);
    s->lines = NULL;
    return 0;
}

int v3_distill_src_next(v3_distill_src *s, json_t **obj, int64_t *line, int64_t *index, char *why,
                        size_t wn, int *got, v3_err *err) {
    *obj = NULL;
    why[0] = 0;
    *got = 1;
    for (;;) {
        if (next_elem(s, obj, line)) break;
        if (s->doc) {
            if (!s->doc_single) {
                *got = 0;
                return V3_OK;
            }
            s->doc_single = 0;
            *obj = json_incref(s->doc_root);
            *line = 1;
            break;
        }
        v3_record rec;
        int have = 0;
        int rc = v3_jsonl_next(s->r, &rec, &have, err);
        if (rc) return rc;
        if (!have) {
            *got = 0;
            return V3_OK;
        }
        int first = s->n_read++ == 0;
        *line = rec.line;
        if (rec.too_long) {
            snprintf(why, wn, "record longer than %zu bytes (skipped)", s->max_record);
            break;
        }
        json_error_t je;
        json_t *o = json_loadb(rec.text, rec.len, 0, &je);
        if (!o) {
            /* a pretty-printed document: its first line alone is not JSON */
            const char *p = rec.text + strspn(rec.text, " \t\r\n");
            if (first && *p == '{' && v3_jsonl_layout_of(s->r) == V3_JSONL_LINES) {
                v3_err derr = {0};
                int k = load_document(s, &derr);
                if (k == V3_OK) continue;
                if (k != V3_EFORMAT) {
                    if (err) *err = derr;
                    return k;
                }
            }
            snprintf(why, wn, "invalid JSON: %s (column %d)", je.text, je.column);
            break;
        }
        const json_t *inner = s->records && json_is_object(o) ? json_object_get(o, s->records) : NULL;
        if (json_is_array(inner)) {
            s->arr = json_incref((json_t *)inner);
            s->arr_i = 0;
            s->arr_line = rec.line;
            json_decref(o);
            continue;
        }
        *obj = o;
        break;
    }
    *index = s->index++;
    return V3_OK;
}
