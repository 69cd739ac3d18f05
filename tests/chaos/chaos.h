/* Shared helpers of the chaos run's C programs (cp.c, worker.c, client.c,
 * subscriber.c): clocks, sleeping, error text, and the signal set each
 * program blocks before its first library call and takes with sigwait
 * (the header's advice: no library call from a signal handler).
 *
 * `cargo xtask chaos` (xtask/src/chaos.rs) builds and drives them. */
#ifndef BLAZEN_CHAOS_H
#define BLAZEN_CHAOS_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blazen.h"

/* The workflow every chaos run is of. */
#define CHAOS_WORKFLOW "chaos"

/* Wall-clock milliseconds (comparable with the control plane's
 * `completed_at_ms`, which is wall clock on the same machine). */
static inline uint64_t chaos_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void chaos_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The output a correct handler gives for run number `n`: a JSON string. */
static inline void chaos_expected(long n, char *buf, size_t len) {
    snprintf(buf, len, "\"chaos-%ld-%ld\"", n, (n * n) % 9973);
}

/* The number after `"key":` in `json` (the flat objects these programs
 * make), or `fallback`. */
static inline long chaos_field(const char *json, const char *key, long fallback) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = json ? strstr(json, pat) : NULL;
    return p ? strtol(p + strlen(pat), NULL, 10) : fallback;
}

/* "SUBKIND: message" of `err` (or "KIND n: message" without a subkind),
 * newlines folded, into `buf`; frees `err`. NULL stands for a call that
 * gave no answer in time (client.c). */
static inline void chaos_err_text(BlazenError *err, char *buf, size_t len) {
    if (err == NULL) {
        snprintf(buf, len, "chaos-timeout: no answer in time");
        return;
    }
    char *sub = blazen_error_subkind(err);
    char *msg = blazen_error_message(err);
    if (sub && *sub)
        snprintf(buf, len, "%s: %s", sub, msg ? msg : "");
    else
        snprintf(buf, len, "kind%u: %s", blazen_error_kind(err), msg ? msg : "");
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    blazen_string_free(sub);
    blazen_string_free(msg);
    blazen_error_free(err);
}

/* The subkind of `err` alone ("-" without one, "chaos-timeout" for NULL)
 * into `buf`; `err` kept. */
static inline void chaos_subkind(const BlazenError *err, char *buf, size_t len) {
    char *sub = err ? blazen_error_subkind(err) : NULL;
    snprintf(buf, len, "%s", sub && *sub ? sub : err ? "-" : "chaos-timeout");
    blazen_string_free(sub);
}

/* Blocks SIGTERM, SIGINT and SIGUSR1 in the calling thread (call before
 * the first library call and before any thread starts: every thread
 * inherits it); `set` receives them for sigwait. */
static inline void chaos_block_signals(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

#endif /* BLAZEN_CHAOS_H */
