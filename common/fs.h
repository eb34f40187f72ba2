/* fs.h — small filesystem helpers: recursive mkdir, atomic whole-file copy, existence checks. */
#ifndef V3_FS_H
#define V3_FS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* mkdir -p; succeeds if the directory already exists. */
int v3_mkdirs(const char *path, v3_err *err);
/* Copies src to dst through a temporary file renamed into place (never a partial dst). */
int v3_copy_file(const char *src, const char *dst, v3_err *err);
int v3_file_exists(const char *path);
int v3_dir_exists(const char *path);
/* Size of a regular file in bytes, or -1. */
int64_t v3_file_size(const char *path);
/* Reads a whole (small) file into a NUL-terminated malloc'd buffer; *len may be NULL. */
int v3_read_file(const char *path, char **out, size_t *len, size_t max_bytes, v3_err *err);

#endif
