/* err.c — formatting of status messages. */
#include "err.h"

#include <stdio.h>
#include <string.h>

int v3_verrf(v3_err *err, int code, const char *fmt, va_list ap) {
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int v3_errf(v3_err *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    v3_verrf(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int v3_err_prefix(v3_err *err, const char *fmt, ...) {
    if (!err) return V3_EINVAL;
    char pre[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* truncation is acceptable: the message stays NUL-terminated */
    size_t np = strlen(pre);
    if (np > sizeof err->msg - 3) np = sizeof err->msg - 3;
    memcpy(err->msg, pre, np);
    memcpy(err->msg + np, ": ", 2);
    size_t room = sizeof err->msg - np - 3;
    size_t no = strlen(old);
    if (no > room) no = room;
    memcpy(err->msg + np + 2, old, no);
    err->msg[np + 2 + no] = 0;
    return err->code;
}

const char *v3_strerror(int code) {
    switch (code) {
    case V3_OK: return "ok";
    case V3_EINVAL: return "invalid argument";
    case V3_EIO: return "I/O error";
    case V3_EFORMAT: return "malformed input";
    case V3_ENOMEM: return "out of memory";
    case V3_EUNSUPPORTED: return "unsupported";
    case V3_ERANGE: return "out of range";
    case V3_ENOTFOUND: return "not found";
    case V3_EDEVICE: return "device error";
    case V3_EUSAGE: return "usage error";
    default: return "unknown error";
    }
}
