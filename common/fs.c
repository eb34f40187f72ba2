/* fs.c — filesystem helpers (POSIX). */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int v3_mkdirs(const char *path, v3_err *err) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return v3_errf(err, V3_EINVAL, "bad directory path \"%s\"", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return v3_errf(err, V3_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
        buf[i] = c;
    }
    if (!v3_dir_exists(path)) return v3_errf(err, V3_EIO, "%s: exists and is not a directory", path);
    return V3_OK;
}

int v3_copy_file(const char *src, const char *dst, v3_err *err) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", dst, (int)getpid()) >= sizeof tmp)
        return v3_errf(err, V3_EINVAL, "%s: path too long", dst);
    int in = open(src, O_RDONLY);
    if (in < 0) return v3_errf(err, V3_EIO, "%s: cannot open: %s", src, strerror(errno));
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) {
        close(in);
        return v3_errf(err, V3_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    char buf[1 << 16];
    int rc = V3_OK;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r == 0) break;
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = v3_errf(err, V3_EIO, "%s: read failed: %s", src, strerror(errno));
            break;
        }
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                rc = v3_errf(err, V3_EIO, "%s: write failed: %s", tmp, strerror(errno));
                break;
            }
            off += w;
        }
        if (rc) break;
    }
    close(in);
    if (!rc && fsync(out) != 0) rc = v3_errf(err, V3_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(out) != 0 && !rc) rc = v3_errf(err, V3_EIO, "%s: close failed", tmp);
    if (!rc && rename(tmp, dst) != 0)
        rc = v3_errf(err, V3_EIO, "%s: rename failed: %s", dst, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

int v3_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int v3_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int64_t v3_file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    return (int64_t)st.st_size;
}

int v3_read_file(const char *path, char **out, size_t *len, size_t max_bytes, v3_err *err) {
    int64_t n = v3_file_size(path);
    if (n < 0) return v3_errf(err, V3_EIO, "%s: cannot open (missing or not a regular file)", path);
    if ((uint64_t)n > max_bytes)
        return v3_errf(err, V3_EFORMAT, "%s: too large (%lld bytes, limit %zu)", path, (long long)n,
                       max_bytes);
    FILE *f = fopen(path, "rb");
    if (!f) return v3_errf(err, V3_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return v3_errf(err, V3_ENOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(buf);
        return v3_errf(err, V3_EIO, "%s: short read", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = (size_t)n;
    return V3_OK;
}
