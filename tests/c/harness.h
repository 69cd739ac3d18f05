/* A tiny test harness for the C consumer suites: CHECK records a result,
 * and each suite ends with "N passed, N failed" (the line CI reads). */
#ifndef BLAZEN_TEST_HARNESS_H
#define BLAZEN_TEST_HARNESS_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "blazen.h"

#if defined(__GNUC__)
#define T_UNUSED __attribute__((unused))
#else
#define T_UNUSED
#endif

static int t_passed, t_failed;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) {                                                       \
            t_passed++;                                                   \
        } else {                                                          \
            t_failed++;                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
        }                                                                 \
    } while (0)

T_UNUSED static int t_finish(void) {
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed == 0 ? 0 : 1;
}

/* A loopback listener that completes TCP handshakes (its backlog) and
 * never speaks: calls to it stay pending. Writes its http:// endpoint into
 * `endpoint`; returns the socket, or -1. */
T_UNUSED static int t_silent_listener(char *endpoint, size_t len) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64) ||
        getsockname(s, (struct sockaddr *)&a, &l)) {
        if (s >= 0) close(s);
        return -1;
    }
    snprintf(endpoint, len, "http://127.0.0.1:%d", ntohs(a.sin_port));
    return s;
}

/* Takes a string from the library, compares it with `want`, frees it. */
T_UNUSED static int t_str_eq(char *got, const char *want) {
    int ok = got != NULL && want != NULL && strcmp(got, want) == 0;
    if (got == NULL && want == NULL) ok = 1;
    blazen_string_free(got);
    return ok;
}

/* True when `s` (library-owned, freed here) contains `needle`. */
T_UNUSED static int t_str_has(char *s, const char *needle) {
    int ok = s != NULL && strstr(s, needle) != NULL;
    blazen_string_free(s);
    return ok;
}

/* Checks that `err` is of `kind` and that its message names `param`;
 * frees it. */
T_UNUSED static int t_err_is(BlazenError *err, uint32_t kind, const char *param) {
    int ok = err != NULL && blazen_error_kind(err) == kind;
    if (ok && param != NULL) ok = t_str_has(blazen_error_message(err), param);
    if (!ok && err != NULL) {
        char *m = blazen_error_message(err);
        fprintf(stderr, "  (error kind %u: %s)\n", blazen_error_kind(err), m ? m : "?");
        blazen_string_free(m);
    }
    blazen_error_free(err);
    return ok;
}

/* The three ways to await a future. */
enum t_await { T_BY_POLL, T_BY_WAIT, T_BY_FD };

T_UNUSED static int t_await(BlazenFuture *f, enum t_await how) {
    if (how == T_BY_WAIT) return blazen_future_wait(f) == 0;
    if (how == T_BY_FD) {
        int64_t fd = blazen_future_fd(f);
        if (fd < 0) return 0;
        struct pollfd p = {(int)fd, POLLIN, 0};
        while (poll(&p, 1, 30000) == 0) {
        }
        return (p.revents & POLLIN) && blazen_future_poll(f) == 1;
    }
    for (int i = 0; i < 300000; i++) {
        if (blazen_future_poll(f) == 1) return 1;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

T_UNUSED static const char *t_await_name(enum t_await how) {
    return how == T_BY_POLL ? "poll" : how == T_BY_WAIT ? "wait" : "fd";
}

T_UNUSED static double t_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

T_UNUSED static void t_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to `ms` for `*v` to reach `at_least`; true when it did. */
T_UNUSED static int t_wait_until(atomic_int *v, int at_least, int ms) {
    for (int i = 0; i < ms / 10 && atomic_load(v) < at_least; i++) t_sleep_ms(10);
    return atomic_load(v) >= at_least;
}

/* For counters the library bumps from its own threads after a teardown
 * call has returned (drop_user_data comes last, on a library thread): waits
 * up to 10 s for `*v` to reach `want`, then a moment more, and is true when
 * it is exactly `want` (so a second drop still fails). */
T_UNUSED static int t_settled(atomic_int *v, int want) {
    t_wait_until(v, want, 10000);
    t_sleep_ms(20);
    return atomic_load(v) == want;
}

/* This process's resident memory in KiB (-1 when unknown). */
T_UNUSED static long t_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

#endif
