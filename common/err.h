/* err.h — status codes and the error message that travels with them.
 * Every fallible function returns an int status (V3_OK on success) and, on failure, fills a
 * caller-owned v3_err with a message that names the file, tensor, key or line at fault. */
#ifndef V3_ERR_H
#define V3_ERR_H

#include <stdarg.h>

enum {
    V3_OK = 0,
    V3_EINVAL = 1,      /* bad argument or bad configuration value */
    V3_EIO = 2,         /* open/read/write/mmap failed */
    V3_EFORMAT = 3,     /* malformed file content (JSON, safetensors header, shard) */
    V3_ENOMEM = 4,      /* allocation failed or a budget was exceeded */
    V3_EUNSUPPORTED = 5,/* a valid input that v3tune does not handle */
    V3_ERANGE = 6,      /* value out of range, offsets outside a file, shape mismatch */
    V3_ENOTFOUND = 7,   /* missing tensor, key or file */
    V3_EDEVICE = 8,     /* backend (CUDA, cuBLAS, NCCL) failure */
    V3_EUSAGE = 9,      /* command-line misuse: the CLI maps it to exit code 2 */
};

typedef struct v3_err {
    int code;
    char msg[1024];
} v3_err;

/* Fills err (may be NULL) with a formatted message and returns code, so callers write
 * `return v3_errf(err, V3_EFORMAT, "%s: bad header", path);`. */
int v3_errf(v3_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int v3_verrf(v3_err *err, int code, const char *fmt, va_list ap);

/* Prepends "prefix: " to an existing message (adds context while unwinding). Returns err->code. */
int v3_err_prefix(v3_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *v3_strerror(int code);

#endif
