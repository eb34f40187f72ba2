/* json_util.c — jansson helpers. */
#include "json_util.h"

void v3_json_collect_strings(json_t *v, json_t *out) {
    if (json_is_string(v)) {
        json_array_append(out, v);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) v3_json_collect_strings(x, out);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) v3_json_collect_strings(x, out);
    }
}
