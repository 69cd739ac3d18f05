/* The C side of `cargo xtask bench`: each mode runs one workload through
 * the C ABI against the control plane at ENDPOINT and prints one JSON
 * object on stdout. Built with -O2 against the release library.
 *
 *   bench_c describe ENDPOINT RUN_ID CALLS CONNECTIONS
 *   bench_c ping CALLS
 *   bench_c submit ENDPOINT CALLS IN_FLIGHT CONNECTIONS
 *   bench_c submit_queue ENDPOINT CALLS IN_FLIGHT CONNECTIONS
 *   bench_c describe_rate ENDPOINT RUN_IDS_FILE CALLS IN_FLIGHT CONNECTIONS
 *   bench_c describe_rate_queue ENDPOINT RUN_IDS_FILE CALLS IN_FLIGHT CONNECTIONS
 *   bench_c sink ENDPOINT EVENTS
 *   bench_c emit ENDPOINT WORKERS SLOTS
 *   bench_c scale FUTURES [CONNECTIONS]
 *
 * CONNECTIONS is the client's `connections` option. `sink` and `emit` talk
 * to the bench over stdin/stdout (see each mode).
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
#include <sys/epoll.h>
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

/* a client over `connections` connections (the `connections` option) */
static BlazenControlPlaneClient *connect_n(const char *ep, int connections) {
    char opts[64];
    snprintf(opts, sizeof opts, "{\"connections\":%d}", connections);
    BlazenControlPlaneClient *c = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_client_connect_with_options_blocking(ep, opts, &c, &err)) die("connect", err);
    return c;
}

/* 1. blocking describe round trips: per-call latency */
static void describe(const char *ep, const char *run_id, int calls, int connections) {
    BlazenControlPlaneClient *c = connect_n(ep, connections);
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

/* 3. IN_FLIGHT futures outstanding; each finished one is replaced by the
 * next call. With `ids` the calls describe those runs in turn, otherwise
 * they submit. The host learns which finished either through one
 * completion queue (`use_queue`: each future registered with its slot as
 * the tag, finished ones taken in batches) or with epoll(7) on each
 * future's descriptor (as a host with many would without the queue;
 * poll(2) over a thousand descriptors costs more than the calls). */
static BlazenFuture *next_call(BlazenControlPlaneClient *c, char **ids, int n_ids, int i) {
    if (ids) return blazen_controlplane_client_describe_workflow(c, ids[i % n_ids]);
    return blazen_controlplane_client_submit_workflow(c, "bench-submit", "{}", NULL, true);
}

typedef struct {
    BlazenCompletionQueue *q; /* NULL: epoll on the descriptors */
    int efd;
} Waiter;

static void watch(Waiter *w, BlazenFuture *f, int slot) {
    if (w->q) {
        blazen_future_notify(f, w->q, (uint64_t)slot);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
    if (epoll_ctl(w->efd, EPOLL_CTL_ADD, (int)blazen_future_fd(f), &ev)) die("epoll_ctl", NULL);
}

/* Waits for finished futures; writes up to 256 slots, returns how many. */
static int finished(Waiter *w, int *slots) {
    if (w->q) {
        uint64_t tags[256];
        size_t n = blazen_completion_queue_next_blocking(w->q, tags, 256, 30000);
        if (n == 0) die("blazen_completion_queue_next_blocking", NULL);
        for (size_t k = 0; k < n; k++) slots[k] = (int)tags[k];
        return (int)n;
    }
    struct epoll_event evs[256];
    int n = epoll_wait(w->efd, evs, 256, 30000);
    if (n <= 0) die("epoll_wait", NULL);
    for (int k = 0; k < n; k++) slots[k] = (int)evs[k].data.u32;
    return n;
}

static void rate(const char *ep, char **ids, int n_ids, int calls, int in_flight, int connections, int use_queue) {
    BlazenControlPlaneClient *c = connect_n(ep, connections);
    Waiter w = {use_queue ? blazen_completion_queue_new() : NULL, use_queue ? -1 : epoll_create1(EPOLL_CLOEXEC)};
    BlazenFuture **futs = calloc((size_t)in_flight, sizeof *futs);
    int slots[256];
    int issued = 0, done = 0, failed = 0;
    uint64_t t0 = now_ns();
    for (int i = 0; i < in_flight && issued < calls; i++, issued++) {
        futs[i] = next_call(c, ids, n_ids, issued);
        watch(&w, futs[i], i);
    }
    while (done < calls) {
        int n = finished(&w, slots);
        for (int k = 0; k < n; k++) {
            int i = slots[k];
            BlazenRunStateSnapshot *s = NULL;
            if (blazen_future_take_run_state_snapshot(futs[i], &s, NULL)) failed++;
            blazen_run_state_snapshot_free(s);
            blazen_future_free(futs[i]); /* closes its descriptor, which leaves the epoll set */
            futs[i] = NULL;
            done++;
            if (issued < calls) {
                futs[i] = next_call(c, ids, n_ids, issued++);
                watch(&w, futs[i], i);
            }
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    struct timespec cpu;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
    double host_us = (cpu.tv_sec * 1e9 + cpu.tv_nsec) / 1e3 / calls;
    printf("{\"per_s\":%.1f,\"runs_per_s\":%.1f,\"calls\":%d,\"in_flight\":%d,\"connections\":%d,"
           "\"failed\":%d,\"host_thread_cpu_us_per_call\":%.2f}\n",
           calls / secs, calls / secs, calls, in_flight, connections, failed, host_us);
    if (w.q) blazen_completion_queue_free(w.q);
    else close(w.efd);
    free(futs);
    blazen_controlplane_client_free(c);
}

/* reads one run id a line from `path` */
static char **read_ids(const char *path, int *n) {
    FILE *f = fopen(path, "r");
    if (!f) die("open the run id file", NULL);
    int cap = 1024;
    char **ids = malloc(sizeof *ids * (size_t)cap);
    char line[128];
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        if (*n == cap) ids = realloc(ids, sizeof *ids * (size_t)(cap *= 2));
        ids[(*n)++] = strdup(line);
    }
    fclose(f);
    if (*n == 0) die("read run ids", NULL);
    return ids;
}

/* 4a. a C sink counting the ticks of every run: prints "ready" once
 * subscribed, then the result once EVENTS ticks came or none for a second */
static atomic_int ticks;
static atomic_ullong first_tick_ns, last_tick_ns;

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

static void sink(const char *ep, int n) {
    BlazenControlPlaneClient *c = connect_n(ep, 1);
    BlazenRunEventSinkVTable vt = {NULL, NULL, count_tick, NULL, NULL};
    BlazenControlPlaneSubscription *sub = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_client_subscribe_all(c, NULL, vt, &sub, &err)) die("subscribe", err);
    printf("ready\n");
    fflush(stdout);
    /* up to 60 s for the first tick, then until all came or a second passed without one */
    for (int i = 0; i < 6000 && atomic_load(&ticks) == 0; i++) usleep(10000);
    int last = -1;
    for (int idle = 0; atomic_load(&ticks) < n && idle < 100; idle++) {
        usleep(10000);
        if (atomic_load(&ticks) != last) idle = 0;
        last = atomic_load(&ticks);
    }
    double secs = (double)(atomic_load(&last_tick_ns) - atomic_load(&first_tick_ns)) / 1e9;
    int got = atomic_load(&ticks);
    printf("{\"delivered\":%d,\"lost\":%d,\"events_per_s\":%.1f}\n", got, n - got, secs > 0 ? got / secs : 0.0);
    fflush(stdout);
    blazen_controlplane_subscription_free(sub);
    blazen_controlplane_client_free(c);
}

/* 4b. the source: WORKERS workers (a connection each), SLOTS runs at once
 * on each, every run emitting its share of ticks as fast as it can. Prints
 * "ready" once the workers are registered; then for each line "go N" on
 * stdin runs one burst of N ticks and prints its emission rate. */
static atomic_int emitted, runs_done;
static atomic_ullong first_emit_ns, last_emit_ns;

static int32_t burst(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *wf,
                     const char *input, char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)run_id;
    (void)wf;
    (void)out_json;
    int n = 0;
    if (sscanf(input, "{\"n\":%d", &n) != 1) n = 0;
    unsigned long long zero = 0;
    atomic_compare_exchange_strong(&first_emit_ns, &zero, now_ns());
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = blazen_assignment_context_emit_event(ctx, "tick", "{}", out_err) ? 1 : 0;
        if (rc == 0) atomic_fetch_add(&emitted, 1);
    }
    atomic_store(&last_emit_ns, now_ns());
    atomic_fetch_add(&runs_done, 1);
    return rc;
}

static void emit(const char *ep, int workers, int slots) {
    BlazenControlPlaneClient *c = connect_n(ep, 1);
    BlazenControlPlaneWorker **ws = calloc((size_t)workers, sizeof *ws);
    BlazenFuture **runs = calloc((size_t)workers, sizeof *runs);
    char opts[256];
    snprintf(opts, sizeof opts,
             "{\"capabilities\":[{\"kind\":\"workflow:bench-burst\"}],"
             "\"admission\":{\"mode\":\"Fixed\",\"max_in_flight\":%d}}",
             slots);
    for (int i = 0; i < workers; i++) {
        char node[32];
        snprintf(node, sizeof node, "bench-burst-%d", i);
        BlazenContextHandlerVTable vt = {NULL, NULL, burst, NULL, NULL};
        BlazenError *err = NULL;
        if (blazen_controlplane_worker_new_with_options_blocking(ep, node, opts, vt, &ws[i], &err)) die("worker", err);
        runs[i] = blazen_controlplane_worker_run(ws[i]);
    }
    for (int i = 0; i < 1000; i++) {
        BlazenWorkerInfoList *l = NULL;
        blazen_controlplane_client_list_workers_blocking(c, &l, NULL);
        size_t k = blazen_worker_info_list_count(l);
        blazen_worker_info_list_free(l);
        if ((int)k >= workers) break;
        usleep(10000);
    }
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        int n = 0;
        if (sscanf(line, "go %d", &n) != 1) break;
        int nruns = workers * slots, per = n / nruns;
        atomic_store(&emitted, 0);
        atomic_store(&runs_done, 0);
        atomic_store(&first_emit_ns, 0);
        char input[32];
        snprintf(input, sizeof input, "{\"n\":%d}", per);
        BlazenFuture **subs = calloc((size_t)nruns, sizeof *subs);
        for (int i = 0; i < nruns; i++)
            subs[i] = blazen_controlplane_client_submit_workflow(c, "bench-burst", input, NULL, false);
        for (int i = 0; i < nruns; i++) {
            BlazenError *err = NULL;
            blazen_future_wait(subs[i]);
            if (blazen_future_take_run_state_snapshot(subs[i], NULL, &err)) die("submit", err);
            blazen_future_free(subs[i]);
        }
        free(subs);
        for (int i = 0; i < 6000 && atomic_load(&runs_done) < nruns; i++) usleep(10000);
        double secs = (double)(atomic_load(&last_emit_ns) - atomic_load(&first_emit_ns)) / 1e9;
        int e = atomic_load(&emitted);
        printf("{\"emitted\":%d,\"runs\":%d,\"events_per_s\":%.1f}\n", e, nruns, secs > 0 ? e / secs : 0.0);
        fflush(stdout);
    }
    for (int i = 0; i < workers; i++) blazen_controlplane_worker_shutdown(ws[i]);
    for (int i = 0; i < workers; i++) {
        blazen_future_wait(runs[i]);
        blazen_future_free(runs[i]);
        blazen_controlplane_worker_free(ws[i]);
    }
    free(ws);
    free(runs);
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

static void scale(int n, int connections) {
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = 1024;
    setrlimit(RLIMIT_NOFILE, &lim);
    char ep[64];
    int s = t_silent_listener(ep, sizeof ep);
    if (s < 0) die("listen", NULL);
    BlazenControlPlaneClient *c = connections > 0 ? connect_n(ep, connections) : connect_to(ep);
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
    if (argc >= 6 && strcmp(argv[1], "describe") == 0) describe(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
    else if (argc >= 3 && strcmp(argv[1], "ping") == 0) ping(atoi(argv[2]));
    else if (argc >= 6 && (strcmp(argv[1], "submit") == 0 || strcmp(argv[1], "submit_queue") == 0))
        rate(argv[2], NULL, 0, atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), argv[1][6] != 0);
    else if (argc >= 7 && (strcmp(argv[1], "describe_rate") == 0 || strcmp(argv[1], "describe_rate_queue") == 0)) {
        int n_ids = 0;
        char **ids = read_ids(argv[3], &n_ids);
        rate(argv[2], ids, n_ids, atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), argv[1][13] != 0);
    } else if (argc >= 4 && strcmp(argv[1], "sink") == 0) sink(argv[2], atoi(argv[3]));
    else if (argc >= 5 && strcmp(argv[1], "emit") == 0) emit(argv[2], atoi(argv[3]), atoi(argv[4]));
    else if (argc >= 3 && strcmp(argv[1], "scale") == 0) scale(atoi(argv[2]), argc >= 4 ? atoi(argv[3]) : 0);
    else {
        fprintf(stderr, "usage: see the comment at the top of bench/bench.c\n");
        return 2;
    }
    return 0;
}
