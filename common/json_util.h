/* json_util.h — small jansson helpers shared across modules, tests and benchmarks. */
#ifndef V3_JSON_UTIL_H
#define V3_JSON_UTIL_H

#include <jansson.h>

/* Appends every string value inside v (recursively, in document order: arrays by index,
 * objects by key order as parsed) to the array out. */
void v3_json_collect_strings(json_t *v, json_t *out);

#endif
