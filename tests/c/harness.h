/* A tiny test harness for the C consumer suites: CHECK records a result,
 * and each suite ends with "N passed, N failed" (the line CI reads).
 *
 * Named cases: `T_RUN(test_foo)` calls `test_foo()`, `T_RUN_ARGS(test_foo,
 * a, b)` calls `test_foo(a, b)` (both named `foo`: the `test_` prefix is
 * dropped), and `T_CASE("foo") { ... }` runs a block (leave it by its end,
 * not by `break` or `return`). A selected case prints `case SUITE/NAME`
 * before it runs and `case NAME: N passed, N failed` (its own checks)
 * after; one that is not selected prints `case NAME: not selected`.
 * Cases whose parts interleave use T_OPEN, T_PART and T_CLOSE (below).
 * BLAZEN_TEST_CASE selects: comma-separated names or parts of names (each
 * matched against NAME and SUITE/NAME); unset or empty runs every case.
 * A filter that selects no case of the suite fails it. Checks outside the
 * cases (a suite's setup) always run. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blazen.h"

#if defined(__GNUC__)
#define T_UNUSED __attribute__((unused))
#else
#define T_UNUSED
#endif

static int t_passed, t_failed;

/* The argument a 0.6.x-surface build takes where the 0.5.x one takes none
 * (the `bearer_token` of the connect and worker_new functions), so that a
 * suite that runs on every surface spells each call once:
 * `blazen_controlplane_client_connect_blocking(ep, T_TOKEN(NULL) &c, &e)`,
 * `blazen_controlplane_client_connect(ep T_TOKEN_LAST(NULL))`. */
#if BLAZEN_SURFACE == 6
#define T_TOKEN(token) token,
#define T_TOKEN_LAST(token) , token
#else
#define T_TOKEN(token)
#define T_TOKEN_LAST(token)
#endif

/* The parameters of a `BlazenAssignmentHandlerVTable.handle` in the
 * surface's shape; the 0.6.x one also gets `t_ctx`, the run's context
 * (`T_UNUSED_CTX()` silences it where the handler does not use it). */
#if BLAZEN_SURFACE == 6
#define T_HANDLE_PARAMS                                                                        \
    void *ud, const char *run_id, const char *wf, const char *input,                           \
        const BlazenAssignmentContext *t_ctx, char **out_json, BlazenError **out_err
#define T_UNUSED_CTX() (void)t_ctx
#else
#define T_HANDLE_PARAMS                                                                        \
    void *ud, const char *run_id, const char *wf, const char *input, char **out_json,          \
        BlazenError **out_err
#define T_UNUSED_CTX() (void)0
#endif

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) {                                                       \
            t_passed++;                                                   \
        } else {                                                          \
            t_failed++;                                                   \
            fflush(stdout);                                               \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
        }                                                                 \
    } while (0)

/* ---- named cases -------------------------------------------------------- */

#define T_MAX_CASES 64
static const char *t_case_names[T_MAX_CASES];
static int t_cases_seen, t_cases_selected;
static const char *t_case_current;
static int t_case_passed0, t_case_failed0;

/* `client` for ".../tests/c/test_client.c". */
T_UNUSED static const char *t_suite_of(const char *file) {
    static char suite[64];
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (strncmp(base, "test_", 5) == 0) base += 5;
    size_t n = strcspn(base, ".");
    if (n >= sizeof suite) n = sizeof suite - 1;
    memcpy(suite, base, n);
    suite[n] = 0;
    return suite;
}

/* BLAZEN_TEST_CASE, or NULL when it is unset or empty. */
T_UNUSED static const char *t_case_filter(void) {
    const char *f = getenv("BLAZEN_TEST_CASE");
    return f != NULL && *f != 0 ? f : NULL;
}

/* Whether a term of the filter is part of `name` or of `suite/name`. */
T_UNUSED static int t_case_matches(const char *suite, const char *name) {
    const char *f = t_case_filter();
    if (f == NULL) return 1;
    char full[256], term[128];
    snprintf(full, sizeof full, "%s/%s", suite, name);
    while (*f) {
        size_t n = strcspn(f, ",");
        const char *t = f;
        size_t len = n;
        while (len > 0 && *t == ' ') t++, len--;
        while (len > 0 && t[len - 1] == ' ') len--;
        if (len > 0 && len < sizeof term) {
            memcpy(term, t, len);
            term[len] = 0;
            if (strstr(name, term) != NULL || strstr(full, term) != NULL) return 1;
        }
        f += n;
        if (*f == ',') f++;
    }
    return 0;
}

/* Starts the case `name` of the suite in `file`: 1 when it is selected
 * (then `t_case_end` closes it), 0 when not. */
T_UNUSED static int t_case_begin(const char *file, const char *name) {
    const char *suite = t_suite_of(file);
    if (t_cases_seen < T_MAX_CASES) t_case_names[t_cases_seen] = name;
    t_cases_seen++;
    if (!t_case_matches(suite, name)) {
        printf("case %s: not selected\n", name);
        fflush(stdout);
        return 0;
    }
    t_cases_selected++;
    t_case_current = name;
    t_case_passed0 = t_passed;
    t_case_failed0 = t_failed;
    printf("case %s/%s\n", suite, name);
    fflush(stdout);
    return 1;
}

T_UNUSED static void t_case_report(const char *name, int passed, int failed) {
    fflush(stderr);
    printf("case %s: %d passed, %d failed\n", name ? name : "?", passed, failed);
    fflush(stdout);
}

T_UNUSED static void t_case_end(void) {
    t_case_report(t_case_current, t_passed - t_case_passed0, t_failed - t_case_failed0);
    t_case_current = NULL;
}

/* A case whose parts interleave with other cases' parts (the rounds of
 * test_teardown): `TCase c = {.name = "name"}; T_OPEN(&c);` prints its first line
 * (or `not selected`), each `T_PART(&c, code);` runs when it is selected
 * and counts its checks, and `T_CLOSE(&c);` prints its counts. */
typedef struct {
    const char *name;
    int on, passed, failed;
} TCase;

#define T_OPEN(c) t_case_open(__FILE__, c)
T_UNUSED static int t_case_open(const char *file, TCase *c) {
    c->on = t_case_begin(file, c->name);
    c->passed = c->failed = 0;
    t_case_current = NULL;
    return c->on;
}

#define T_PART(c, ...)                                 \
    do {                                               \
        if ((c)->on) {                                 \
            int t_p_ = t_passed, t_f_ = t_failed;      \
            __VA_ARGS__;                               \
            (c)->passed += t_passed - t_p_;            \
            (c)->failed += t_failed - t_f_;            \
        }                                              \
    } while (0)

#define T_CLOSE(c) t_case_close(c)
T_UNUSED static void t_case_close(TCase *c) {
    if (c->on) t_case_report(c->name, c->passed, c->failed);
}

/* The name of a case run by T_RUN: the function's name without `test_`. */
#define T_CASE_NAME(fn) (strncmp(#fn, "test_", 5) == 0 ? &(#fn)[5] : #fn)

#define T_RUN(fn)                                          \
    do {                                                   \
        if (t_case_begin(__FILE__, T_CASE_NAME(fn))) {     \
            fn();                                          \
            t_case_end();                                  \
        }                                                  \
    } while (0)

#define T_RUN_ARGS(fn, ...)                                \
    do {                                                   \
        if (t_case_begin(__FILE__, T_CASE_NAME(fn))) {     \
            fn(__VA_ARGS__);                               \
            t_case_end();                                  \
        }                                                  \
    } while (0)

#define T_CASE(name) \
    for (int t_case_once_ = t_case_begin(__FILE__, name); t_case_once_; t_case_once_ = (t_case_end(), 0))

/* Ends the suite with the line CI reads, the last line of its output. A
 * BLAZEN_TEST_CASE that selected none of its cases is a failure. */
T_UNUSED static int t_finish(void) {
    const char *f = t_case_filter();
    if (f != NULL && t_cases_selected == 0) {
        t_failed++;
        fflush(stdout);
        fprintf(stderr, "FAIL BLAZEN_TEST_CASE=\"%s\" selects none of the %d cases of this suite", f, t_cases_seen);
        for (int i = 0; i < t_cases_seen && i < T_MAX_CASES; i++)
            fprintf(stderr, "%s%s", i == 0 ? ": " : ", ", t_case_names[i]);
        fprintf(stderr, "\n");
    }
    fflush(stderr);
    printf("%d passed, %d failed\n", t_passed, t_failed);
    fflush(stdout);
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

/* An embedded control plane in a child process of its own, forked before
 * this process first uses the library (a forked child must not inherit a
 * started runtime). It serves until `t_stop_control_plane` closes `done`;
 * a process forked after it must close `done` too. */
typedef struct {
    pid_t pid;
    int done;
    uint16_t port;
    char endpoint[64];
} TControlPlane;

/* Forks the child and waits for its port. Returns 0, or -1. */
T_UNUSED static int t_fork_control_plane(TControlPlane *cp) {
    int port_pipe[2], done_pipe[2];
    if (pipe(port_pipe)) return -1;
    if (pipe(done_pipe)) {
        close(port_pipe[0]);
        close(port_pipe[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(port_pipe[0]);
        close(done_pipe[1]);
        BlazenControlPlaneServer *server = NULL;
        if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) != 0) _exit(1);
        uint16_t port = blazen_controlplane_server_port(server);
        if (write(port_pipe[1], &port, sizeof port) != sizeof port) _exit(1);
        char b;
        while (read(done_pipe[0], &b, 1) > 0) {
        }
        blazen_controlplane_server_free(server);
        _exit(0);
    }
    close(port_pipe[1]);
    close(done_pipe[0]);
    cp->pid = pid;
    cp->done = done_pipe[1];
    cp->port = 0;
    ssize_t got = pid < 0 ? -1 : read(port_pipe[0], &cp->port, sizeof cp->port);
    close(port_pipe[0]);
    if (got != (ssize_t)sizeof cp->port) return -1;
    snprintf(cp->endpoint, sizeof cp->endpoint, "http://127.0.0.1:%u", cp->port);
    return 0;
}

/* Stops the child; returns 1 when it exited cleanly. */
T_UNUSED static int t_stop_control_plane(TControlPlane *cp) {
    close(cp->done);
    int status = 0;
    return waitpid(cp->pid, &status, 0) == cp->pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A worker's `drop_user_data` that counts its calls in `t_drops`. */
T_UNUSED static atomic_int t_drops;
T_UNUSED static void t_drop_ud(void *ud) {
    (void)ud;
    atomic_fetch_add(&t_drops, 1);
}

/* A handler that answers with its input. */
T_UNUSED static int32_t t_echo(T_HANDLE_PARAMS) {
    T_UNUSED_CTX();
    (void)ud;
    (void)run_id;
    (void)wf;
    (void)out_err;
    *out_json = blazen_string_alloc(input);
    return 0;
}

/* Copies the `request_id` of an `input.request` event's data into `out`;
 * returns 1 when there was one. */
T_UNUSED static int t_request_id(const char *data, char *out, size_t len) {
    const char *p = strstr(data, "\"request_id\":\"");
    if (p == NULL || len == 0) return 0;
    p += 14;
    size_t i = 0;
    for (; i < len - 1 && p[i] && p[i] != '"'; i++) out[i] = p[i];
    out[i] = 0;
    return 1;
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
