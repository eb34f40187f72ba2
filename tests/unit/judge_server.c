/* judge_server.c — see judge_server.h. Included by the one test (and benchmark) that uses it. */
#include "judge_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct js_conn {
    judge_server *s;
    int fd, slot;
} js_conn;

static void js_sleep_ms(judge_server *s, int ms) {
    for (int t = 0; t < ms; t += 10) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) return;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static int js_send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int js_respond(int fd, int status, const char *reason, const char *extra_headers,
                      const char *body) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: keep-alive\r\n%s\r\n",
                     status, reason, strlen(body), extra_headers ? extra_headers : "");
    if (js_send_all(fd, head, (size_t)n) || js_send_all(fd, body, strlen(body))) return -1;
    return 0;
}

/* Reads one request: its headers into hdr (NUL-terminated, cut to hcap), its body into *body
 * (malloc'd). 0 ok, -1 on EOF or error. buf[0..*have) carries bytes read past a request. */
static int js_read_request(int fd, char *buf, size_t cap, size_t *have, char *hdr, size_t hcap,
                           char **body) {
    char *end = NULL;
    for (;;) {
        buf[*have] = 0;
        end = strstr(buf, "\r\n\r\n");
        if (end) break;
        if (*have + 1 >= cap) return -1;
        ssize_t k = recv(fd, buf + *have, cap - 1 - *have, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        *have += (size_t)k;
    }
    size_t hlen = (size_t)(end - buf) + 4;
    size_t hk = hlen - 2 < hcap - 1 ? hlen - 2 : hcap - 1; /* keeps the last header's CRLF */
    memcpy(hdr, buf, hk);
    hdr[hk] = 0;
    long clen = 0;
    for (char *p = hdr; p; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL)
        if (strncasecmp(p, "content-length:", 15) == 0) clen = strtol(p + 15, NULL, 10);
    if (clen < 0 || clen > (64 << 20)) return -1;
    if (strcasestr(hdr, "\r\nexpect: 100-continue")) js_send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    char *b = malloc((size_t)clen + 1);
    if (!b) return -1;
    size_t got = *have - hlen < (size_t)clen ? *have - hlen : (size_t)clen;
    memcpy(b, buf + hlen, got);
    size_t used = hlen + got;
    memmove(buf, buf + used, *have - used);
    *have -= used;
    while (got < (size_t)clen) {
        ssize_t k = recv(fd, b + got, (size_t)clen - got, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            free(b);
            return -1;
        }
        got += (size_t)k;
    }
    b[clen] = 0;
    *body = b;
    return 0;
}

static void js_word(const char *body, const char *key, char *out, size_t n) {
    out[0] = 0;
    const char *p = strstr(body, key);
    if (!p) return;
    p += strlen(key);
    size_t k = 0;
    while (k + 1 < n && ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) out[k++] = *p++;
    out[k] = 0;
}

static void js_ok_body(char *out, size_t n, int id, int reason, int score) {
    char content[128];
    if (score) snprintf(content, sizeof content, "Looks right. SCORE: %d", id % 11);
    else snprintf(content, sizeof content, "I cannot decide.");
    char rc[96] = "";
    if (reason) snprintf(rc, sizeof rc, ",\"reasoning_content\":\"thinking about %d\"", id);
    snprintf(out, n,
             "{\"id\":\"chatcmpl-%d\",\"object\":\"chat.completion\",\"created\":0,\"model\":\"test\","
             "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"%s\"%s},"
             "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,"
             "\"total_tokens\":2}}",
             id, content, rc);
}

/* Answers one request; returns -1 when the connection is to be closed. */
static int js_answer(judge_server *s, int fd, const char *hdr, const char *body) {
    char mode[32], idw[16], sleepw[16];
    js_word(body, "case_mode=", mode, sizeof mode);
    js_word(body, "case_id=", idw, sizeof idw);
    js_word(body, "case_sleep=", sleepw, sizeof sleepw);
    int id = idw[0] ? atoi(idw) % JS_MAX_IDS : 0;
    if (!mode[0]) snprintf(mode, sizeof mode, "ok");
    char want[300];
    snprintf(want, sizeof want, "\r\nAuthorization: Bearer %s\r\n", s->expect_key);
    int auth_ok = !s->expect_key[0] || strstr(hdr, want) != NULL;
    pthread_mutex_lock(&s->mu);
    s->requests++;
    if (!auth_ok) s->bad_auth++;
    if (strstr(body, "\"model\":\"judge-model\"")) s->with_model++;
    int hit = ++s->hits[id];
    if (++s->active > s->max_active) s->max_active = s->active;
    pthread_mutex_unlock(&s->mu);
    int rc = 0;
    char out[1024];
    if (sleepw[0]) js_sleep_ms(s, atoi(sleepw));
    if (!auth_ok) {
        rc = js_respond(fd, 401, "Unauthorized", NULL,
                        "{\"error\":{\"message\":\"Incorrect API key provided\",\"type\":\"invalid_request_error\"}}");
    } else if (!strcmp(mode, "slow") || (!strcmp(mode, "slowonce") && hit == 1)) {
        js_sleep_ms(s, s->slow_ms);
        js_ok_body(out, sizeof out, id, 0, 1);
        rc = js_respond(fd, 200, "OK", NULL, out);
    } else if (!strcmp(mode, "always500") || (!strcmp(mode, "fail500") && hit == 1)) {
        rc = js_respond(fd, 500, "Internal Server Error", NULL, "{\"error\":{\"message\":\"overloaded\"}}");
    } else if (!strcmp(mode, "ratelimit") && hit == 1) {
        rc = js_respond(fd, 429, "Too Many Requests", "Retry-After: 1\r\n",
                        "{\"error\":{\"message\":\"rate limited\"}}");
    } else if (!strcmp(mode, "ratelimitms") && hit == 1) {
        rc = js_respond(fd, 429, "Too Many Requests", "retry-after-ms: 300\r\n",
                        "{\"error\":{\"message\":\"rate limited\"}}");
    } else if (!strcmp(mode, "drop") || (!strcmp(mode, "droponce") && hit == 1)) {
        rc = -1;
    } else if (!strcmp(mode, "garbage")) {
        rc = js_respond(fd, 200, "OK", NULL, "this is {not json");
    } else if (!strcmp(mode, "nochoices")) {
        rc = js_respond(fd, 200, "OK", NULL, "{\"id\":\"x\",\"object\":\"chat.completion\"}");
    } else if (!strcmp(mode, "bad400")) {
        rc = js_respond(fd, 400, "Bad Request", NULL,
                        "{\"error\":{\"message\":\"The model does not exist\",\"type\":\"invalid_request_error\"}}");
    } else {
        js_ok_body(out, sizeof out, id, !strcmp(mode, "reason"), strcmp(mode, "noscore") != 0);
        rc = js_respond(fd, 200, "OK", NULL, out);
    }
    pthread_mutex_lock(&s->mu);
    s->active--;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void *js_conn_main(void *arg) {
    js_conn *c = arg;
    judge_server *s = c->s;
    size_t cap = 1 << 16, hcap = 1 << 14;
    char *buf = malloc(cap), *hdr = malloc(hcap);
    size_t have = 0;
    while (buf && hdr) {
        char *body = NULL;
        if (js_read_request(c->fd, buf, cap, &have, hdr, hcap, &body) != 0) break;
        int rc = s->answer(s, c->fd, hdr, body);
        free(body);
        if (rc != 0) break;
    }
    free(buf);
    free(hdr);
    pthread_mutex_lock(&s->mu);
    s->conn_fds[c->slot] = -1;
    s->conns--;
    close(c->fd);
    s->handlers--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free(c);
    return NULL;
}

static void *js_accept_main(void *arg) {
    judge_server *s = arg;
    for (;;) {
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break; /* shut down */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        js_conn *c = malloc(sizeof *c);
        pthread_mutex_lock(&s->mu);
        int slot = -1;
        for (int i = 0; i < JS_MAX_CONNS && slot < 0; i++)
            if (s->conn_fds[i] < 0) slot = i;
        if (!c || slot < 0 || s->stop) {
            pthread_mutex_unlock(&s->mu);
            close(fd);
            free(c);
            continue;
        }
        s->conn_fds[slot] = fd;
        if (++s->conns > s->max_conns) s->max_conns = s->conns;
        s->handlers++;
        pthread_mutex_unlock(&s->mu);
        *c = (js_conn){s, fd, slot};
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, js_conn_main, c) != 0) {
            pthread_mutex_lock(&s->mu);
            s->conn_fds[slot] = -1;
            s->conns--;
            s->handlers--;
            pthread_mutex_unlock(&s->mu);
            close(fd);
            free(c);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

int js_start(judge_server *s, const char *expect_key, int slow_ms) {
    return js_start_with(s, expect_key, slow_ms, js_answer);
}

int js_start_with(judge_server *s, const char *expect_key, int slow_ms, js_answer_fn answer) {
    memset(s, 0, sizeof *s);
    s->answer = answer;
    for (int i = 0; i < JS_MAX_CONNS; i++) s->conn_fds[i] = -1;
    snprintf(s->expect_key, sizeof s->expect_key, "%s", expect_key ? expect_key : "");
    s->slow_ms = slow_ms;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 256) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) != 0) {
        close(s->fd);
        return -1;
    }
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->accept_thread, NULL, js_accept_main, s) != 0) {
        close(s->fd);
        return -1;
    }
    return 0;
}

void js_stop(judge_server *s) {
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    for (int i = 0; i < JS_MAX_CONNS; i++)
        if (s->conn_fds[i] >= 0) shutdown(s->conn_fds[i], SHUT_RDWR);
    pthread_mutex_unlock(&s->mu);
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->accept_thread, NULL);
    close(s->fd);
    pthread_mutex_lock(&s->mu);
    while (s->handlers > 0) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

void js_reset_counts(judge_server *s) {
    pthread_mutex_lock(&s->mu);
    s->max_conns = s->conns;
    s->max_active = s->active;
    s->requests = s->bad_auth = s->with_model = 0;
    memset(s->hits, 0, sizeof s->hits);
    pthread_mutex_unlock(&s->mu);
}
