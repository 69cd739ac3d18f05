/* The C side of `cargo xtask bench`: each mode runs one workload through
 * the C ABI against the control plane at ENDPOINT and prints one JSON
 * object on stdout. Built with -O2 against the release library.
 *
 *   bench_c describe ENDPOINT RUN_ID CALLS
 *   bench_c ping CALLS
 *   bench_c submit ENDPOINT CALLS IN_FLIGHT
 *   bench_c events ENDPOINT EVENTS
 *   bench_c scale FUTURES
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "blazen.h"
#include "harness.h"

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, BlazenError *err) {
    char *m = err ? blazen_error_message(err) : NULL;
    fprintf(stderr, "bench_c: %s failed: %s\n", what, m ? m : "?");
    exit(1);
}

static BlazenControlPlaneClient *connect_to(const char *ep) {
    BlazenControlPlaneClient *c = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_client_connect_blocking(ep, &c, &err)) die("connect", err);
    return c;
}

/* 1. blocking describe round trips: per-call latency */
static void describe(const char *ep, const char *run_id, int calls) {
    BlazenControlPlaneClient *c = connect_to(ep);
    uint64_t *lat = malloc(sizeof *lat * (size_t)calls);
    for (int i = 0; i < calls / 10; i++) { /* warm-up */
        BlazenRunStateSnapshot *s = NULL;
        blazen_controlplane_client_describe_workflow_blocking(c, run_id, &s, NULL);
        blazen_run_state_snapshot_free(s);
    }
    for (int i = 0; i < calls; i++) {
        BlazenRunStateSnapshot *s = NULL;
        BlazenError *err = NULL;
        uint64_t t0 = now_ns();
        if (blazen_controlplane_client_describe_workflow_blocking(c, run_id, &s, &err)) die("describe", err);
        lat[i] = now_ns() - t0;
        blazen_run_state_snapshot_free(s);
    }
    qsort(lat, (size_t)calls, sizeof *lat, cmp_u64);
    printf("{\"p50_ns\":%llu,\"p99_ns\":%llu,\"calls\":%d}\n", (unsigned long long)lat[calls / 2],
           (unsigned long long)lat[calls * 99 / 100], calls);
    free(lat);
    blazen_controlplane_client_free(c);
}

/* 2. the generated boundary around an operation that does nothing */
static void ping(int calls) {
    blazen_init();
    for (int i = 0; i < calls / 10; i++) blazen_ping_blocking(NULL);
    uint64_t t0 = now_ns();
    for (int i = 0; i < calls; i++) blazen_ping_blocking(NULL);
    uint64_t blocking = now_ns() - t0;
    t0 = now_ns();
    for (int i = 0; i < calls; i++) {
        BlazenFuture *f = blazen_ping();
        blazen_future_wait(f);
        blazen_future_take_unit(f, NULL);
        blazen_future_free(f);
    }
    uint64_t future = now_ns() - t0;
    printf("{\"blocking_ns\":%.1f,\"future_ns\":%.1f,\"calls\":%d}\n", (double)blocking / calls,
           (double)future / calls, calls);
}

/* 3. submissions with IN_FLIGHT futures outstanding, awaited with poll(2) */
static void submit(const char *ep, int calls, int in_flight) {
    BlazenControlPlaneClient *c = connect_to(ep);
    BlazenFuture **futs = calloc((size_t)in_flight, sizeof *futs);
    struct pollfd *pfd = calloc((size_t)in_flight, sizeof *pfd);
    int issued = 0, done = 0, failed = 0;
    uint64_t t0 = now_ns();
    for (int i = 0; i < in_flight && issued < calls; i++, issued++) {
        futs[i] = blazen_controlplane_client_submit_workflow(c, "bench-submit", "{}", NULL, true);
        pfd[i].fd = (int)blazen_future_fd(futs[i]);
        pfd[i].events = POLLIN;
    }
    while (done < calls) {
        if (poll(pfd, (nfds_t)in_flight, 30000) <= 0) die("poll", NULL);
        for (int i = 0; i < in_flight; i++) {
            if (futs[i] == NULL || !(pfd[i].revents & POLLIN)) continue;
            BlazenRunStateSnapshot *s = NULL;
            if (blazen_future_take_run_state_snapshot(futs[i], &s, NULL)) failed++;
            blazen_run_state_snapshot_free(s);
            blazen_future_free(futs[i]);
            futs[i] = NULL;
            pfd[i].fd = -1;
            pfd[i].revents = 0;
            done++;
            if (issued < calls) {
                futs[i] = blazen_controlplane_client_submit_workflow(c, "bench-submit", "{}", NULL, true);
                pfd[i].fd = (int)blazen_future_fd(futs[i]);
                issued++;
            }
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("{\"runs_per_s\":%.1f,\"calls\":%d,\"in_flight\":%d,\"failed\":%d}\n", calls / secs, calls, in_flight,
           failed);
    free(futs);
    free(pfd);
    blazen_controlplane_client_free(c);
}

/* 4. a worker emits EVENTS ticks as fast as it can; a C sink counts them */
static int burst_events;
static atomic_int ticks;
static atomic_ullong first_tick_ns, last_tick_ns;

static int32_t burst(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *wf,
                     const char *input, char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)run_id;
    (void)wf;
    (void)input;
    (void)out_json;
    for (int i = 0; i < burst_events; i++)
        if (blazen_assignment_context_emit_event(ctx, "tick", "{}", out_err)) return 1;
    return 0;
}

static void count_tick(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    (void)ud;
    (void)run_id;
    (void)data;
    (void)ts;
    if (strcmp(type, "tick") != 0) return;
    uint64_t t = now_ns();
    unsigned long long zero = 0;
    atomic_compare_exchange_strong(&first_tick_ns, &zero, t);
    atomic_store(&last_tick_ns, t);
    atomic_fetch_add(&ticks, 1);
}

static void events(const char *ep, int n) {
    burst_events = n;
    BlazenControlPlaneClient *c = connect_to(ep);
    BlazenContextHandlerVTable vt = {NULL, NULL, burst, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_worker_new_with_options_blocking(
            ep, "bench-burst", "{\"capabilities\":[{\"kind\":\"workflow:bench-burst\"}]}", vt, &w, &err))
        die("worker", err);
    BlazenFuture *run = blazen_controlplane_worker_run(w);
    for (int i = 0; i < 1000; i++) {
        BlazenWorkerInfoList *l = NULL;
        blazen_controlplane_client_list_workers_blocking(c, &l, NULL);
        size_t k = blazen_worker_info_list_count(l);
        blazen_worker_info_list_free(l);
        if (k > 0) break;
        usleep(10000);
    }
    BlazenRunEventSinkVTable sink = {NULL, NULL, count_tick, NULL, NULL};
    BlazenControlPlaneSubscription *sub = NULL;
    if (blazen_controlplane_client_subscribe_all(c, NULL, sink, &sub, &err)) die("subscribe", err);
    /* the native consumer subscribes when it reads this line */
    printf("ready\n");
    fflush(stdout);
    char go[8];
    if (fgets(go, sizeof go, stdin) == NULL) die("waiting for go", NULL);
    BlazenRunStateSnapshot *s = NULL;
    if (blazen_controlplane_client_submit_workflow_blocking(c, "bench-burst", "{}", NULL, false, &s, &err))
        die("submit", err);
    blazen_run_state_snapshot_free(s);
    /* wait until every tick arrived or nothing came for two seconds */
    int last = -1;
    for (int idle = 0; atomic_load(&ticks) < n && idle < 200; idle++) {
        usleep(10000);
        if (atomic_load(&ticks) != last) idle = 0;
        last = atomic_load(&ticks);
    }
    double secs = (double)(atomic_load(&last_tick_ns) - atomic_load(&first_tick_ns)) / 1e9;
    int got = atomic_load(&ticks);
    printf("{\"delivered\":%d,\"lost\":%d,\"events_per_s\":%.1f}\n", got, n - got, secs > 0 ? got / secs : 0.0);
    fflush(stdout);
    blazen_controlplane_subscription_free(sub);
    blazen_controlplane_worker_shutdown(w);
    blazen_future_wait(run);
    blazen_future_free(run);
    blazen_controlplane_worker_free(w);
    blazen_controlplane_client_free(c);
}

/* 5. pending futures against a server that never answers */
static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d)) n++;
    if (d) closedir(d);
    return n - 3;
}

static void scale(int n) {
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = 1024;
    setrlimit(RLIMIT_NOFILE, &lim);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16) || getsockname(s, (struct sockaddr *)&a, &l))
        die("listen", NULL);
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", ntohs(a.sin_port));
    BlazenControlPlaneClient *c = connect_to(ep);
    /* warm the runtime's threads and allocator before measuring */
    BlazenFuture *warm = blazen_controlplane_client_list_workers(c);
    usleep(100000);
    int fds0 = open_fds();
    long rss0 = t_rss_kib();
    BlazenFuture **futs = calloc((size_t)n, sizeof *futs);
    for (int i = 0; i < n; i++) futs[i] = blazen_controlplane_client_list_workers(c);
    usleep(200000);
    int pending = 0;
    for (int i = 0; i < n; i++) pending += blazen_future_poll(futs[i]) == 0;
    int fds = open_fds() - fds0;
    long rss = t_rss_kib() - rss0;
    printf("{\"futures\":%d,\"pending\":%d,\"extra_fds\":%d,\"bytes_per_future\":%.1f}\n", n, pending, fds,
           rss * 1024.0 / n);
    for (int i = 0; i < n; i++) blazen_future_free(futs[i]);
    blazen_future_free(warm);
    free(futs);
    blazen_controlplane_client_free(c);
    close(s);
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "describe") == 0) describe(argv[2], argv[3], atoi(argv[4]));
    else if (argc >= 3 && strcmp(argv[1], "ping") == 0) ping(atoi(argv[2]));
    else if (argc >= 5 && strcmp(argv[1], "submit") == 0) submit(argv[2], atoi(argv[3]), atoi(argv[4]));
    else if (argc >= 4 && strcmp(argv[1], "events") == 0) events(argv[2], atoi(argv[3]));
    else if (argc >= 3 && strcmp(argv[1], "scale") == 0) scale(atoi(argv[2]));
    else {
        fprintf(stderr, "usage: see the comment at the top of bench/bench.c\n");
        return 2;
    }
    return 0;
}
