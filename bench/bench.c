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
 *   bench_c e2e ENDPOINT TAG WORKERS MAX_IN_FLIGHT RUNS loop|backlog WINDOW
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
#include <sys/eventfd.h>
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

/* 6. end to end: C client + C workers + C sink in this process, every run
 * going all the way through the control plane (submitted, routed to a
 * worker under its admission limit, handled by a C handler that echoes
 * its input, its result recorded, its status.completed delivered to the
 * sink). WORKERS workers (BlazenAssignmentHandlerVTable, Fixed admission,
 * MAX_IN_FLIGHT each, a connection each) serve the workflow TAG (their
 * node ids start with TAG); one client (the default connections) submits;
 * a subscribe_all sink on a client of its own records each run's
 * status.running and terminal event.
 *
 * `loop`: RUNS runs, at most WINDOW of them open (submitted and not yet
 * seen ending by the sink) at once, refilled in eighths of the window,
 * after a warm-up of the same shape; runs/s over the first submission to
 * the last terminal event. `backlog`: the RUNS runs are submitted (up to
 * 1,000 unacknowledged) before any worker runs, so they are all queued at
 * once, then the workers start; runs/s over the first status.running to
 * the last terminal event, latency from the workers' start.
 *
 * Prints "ready" (workers listed, sink open), waits for "go" on stdin,
 * runs, prints one JSON object. CPU and context switches are the whole
 * process's (client, workers, sink, library threads) from "go" to the
 * last terminal event. */
enum { R_OURS = 1, R_RUNNING = 2, R_TERMINAL = 4, R_FAILED = 8, R_ORDER = 16, R_DUP = 32 };
#define E2E_IDLE_NS (10ull * 1000000000ull) /* no run ended for this long: the rest are lost */
#define E2E_SUBMITS_IN_FLIGHT 1000

typedef struct {
    uint64_t hi, lo; /* the run id; both 0 (no UUID is): an empty slot */
    uint64_t t_submit, t_running, t_done;
    uint32_t flags;
} E2eRun;

static struct {
    pthread_mutex_t lock;
    E2eRun *runs;
    size_t mask, used;
    atomic_int ended;   /* runs seen ending (their first terminal event) */
    atomic_int wake_at; /* the driver, asleep, wants a wake-up once `ended` reaches this */
    atomic_int waiting;
    int efd;
    BlazenFuture **futs;
    uint64_t *t_submit;
} E = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int parse_uuid(const char *s, uint64_t *hi, uint64_t *lo) {
    uint64_t v[2] = {0, 0};
    int n = 0;
    for (; *s && n < 32; s++) {
        int d;
        if (*s >= '0' && *s <= '9') d = *s - '0';
        else if (*s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F') d = *s - 'A' + 10;
        else if (*s == '-') continue;
        else return -1;
        v[n / 16] = v[n / 16] << 4 | (uint64_t)d;
        n++;
    }
    if (n != 32) return -1;
    *hi = v[0];
    *lo = v[1];
    return 0;
}

/* The record of a run, made on first sight; NULL once the table is 3/4
 * full. Called with E.lock held. */
static E2eRun *e2e_find(uint64_t hi, uint64_t lo) {
    size_t i = (size_t)(((hi ^ lo) * 0x9E3779B97F4A7C15ull) >> 20) & E.mask;
    for (;; i = (i + 1) & E.mask) {
        E2eRun *r = &E.runs[i];
        if (r->hi == hi && r->lo == lo) return r;
        if (r->hi == 0 && r->lo == 0) {
            if (E.used >= E.mask / 4 * 3) return NULL;
            E.used++;
            r->hi = hi;
            r->lo = lo;
            return r;
        }
    }
}

static void e2e_reset(int runs) {
    size_t cap = 1024;
    while (cap < (size_t)runs * 4) cap *= 2;
    pthread_mutex_lock(&E.lock);
    free(E.runs);
    E.runs = calloc(cap, sizeof *E.runs);
    E.mask = cap - 1;
    E.used = 0;
    atomic_store(&E.ended, 0);
    pthread_mutex_unlock(&E.lock);
}

static void e2e_ended(void) {
    int c = atomic_fetch_add(&E.ended, 1) + 1;
    if (c >= atomic_load(&E.wake_at) && atomic_exchange(&E.waiting, 0)) {
        uint64_t one = 1;
        if (write(E.efd, &one, sizeof one) < 0) die("write eventfd", NULL);
    }
}

static void e2e_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    (void)ud;
    (void)data;
    (void)ts;
    uint64_t t = now_ns(), hi, lo;
    if (strncmp(type, "status.", 7) != 0) return;
    const char *k = type + 7;
    int running = strcmp(k, "running") == 0;
    int completed = !running && strcmp(k, "completed") == 0;
    int ended = completed || strcmp(k, "failed") == 0 || strcmp(k, "cancelled") == 0;
    if ((!running && !ended) || parse_uuid(run_id, &hi, &lo)) return;
    int newly = 0;
    pthread_mutex_lock(&E.lock);
    E2eRun *r = e2e_find(hi, lo);
    if (r && running) {
        if (r->flags & R_TERMINAL) r->flags |= R_ORDER;
        else if (!(r->flags & R_RUNNING)) {
            r->flags |= R_RUNNING;
            r->t_running = t;
        }
    } else if (r && (r->flags & R_TERMINAL)) {
        r->flags |= R_DUP;
    } else if (r) {
        r->flags |= R_TERMINAL | (completed ? 0 : R_FAILED);
        r->t_done = t;
        newly = 1;
    }
    pthread_mutex_unlock(&E.lock);
    if (newly) e2e_ended();
}

static void e2e_sink_error(void *ud, const char *error) {
    (void)ud;
    fprintf(stderr, "bench_c e2e: the subscription failed: %s\n", error);
}

static int32_t e2e_echo(void *ud, const char *run_id, const char *wf, const char *input, char **out_json,
                        BlazenError **out_err) {
    (void)ud;
    (void)run_id;
    (void)wf;
    (void)out_err;
    *out_json = blazen_string_alloc(input);
    return 0;
}

static void e2e_submit(BlazenControlPlaneClient *c, BlazenCompletionQueue *q, const char *tag, int i) {
    char input[32];
    snprintf(input, sizeof input, "{\"i\":%d}", i);
    E.t_submit[i] = now_ns();
    E.futs[i] = blazen_controlplane_client_submit_workflow(c, tag, input, NULL, true);
    blazen_future_notify(E.futs[i], q, (uint64_t)i);
}

/* Takes the acknowledged submissions waiting in `q` (up to 256; waiting
 * up to `wait_ms` for one when > 0); returns how many, failures added to
 * *failed. The driver takes them when it wakes for something else: the
 * window counts runs ended, whether or not their acknowledgement was
 * taken yet. */
static int e2e_acks(BlazenCompletionQueue *q, int *failed, int wait_ms) {
    uint64_t tags[256];
    size_t n = wait_ms > 0 ? blazen_completion_queue_next_blocking(q, tags, 256, wait_ms)
                           : blazen_completion_queue_drain(q, tags, 256);
    for (size_t k = 0; k < n; k++) {
        int i = (int)tags[k];
        BlazenRunStateSnapshot *s = NULL;
        uint64_t hi, lo;
        char *id = NULL;
        if (blazen_future_take_run_state_snapshot(E.futs[i], &s, NULL) ||
            !(id = blazen_run_state_snapshot_run_id(s)) || parse_uuid(id, &hi, &lo)) {
            (*failed)++;
        } else {
            pthread_mutex_lock(&E.lock);
            E2eRun *r = e2e_find(hi, lo);
            if (r) {
                r->t_submit = E.t_submit[i];
                r->flags |= R_OURS;
            } else {
                (*failed)++;
            }
            pthread_mutex_unlock(&E.lock);
        }
        blazen_string_free(id);
        blazen_run_state_snapshot_free(s);
        blazen_future_free(E.futs[i]);
        E.futs[i] = NULL;
    }
    return (int)n;
}

/* Sleeps until `target` runs ended or a second passed. */
static void e2e_sleep(int target) {
    atomic_store(&E.wake_at, target);
    atomic_store(&E.waiting, 1);
    if (atomic_load(&E.ended) < target) {
        struct pollfd p = {.fd = E.efd, .events = POLLIN};
        if (poll(&p, 1, 1000) > 0) {
            uint64_t v;
            if (read(E.efd, &v, sizeof v) < 0) die("read eventfd", NULL);
        }
    }
    atomic_store(&E.waiting, 0);
}

/* Whether to stop waiting: 1 once `target` runs ended, 0 when none did for
 * E2E_IDLE_NS, else -1. */
static int e2e_progress(int target, int *last, uint64_t *since) {
    int done = atomic_load(&E.ended);
    if (done >= target) return 1;
    if (done != *last) {
        *last = done;
        *since = now_ns();
    }
    return now_ns() - *since > E2E_IDLE_NS ? 0 : -1;
}

/* `loop`: runs `n` runs with at most `window` open (submitted and not
 * seen ending), refilled once an eighth of it is free; returns the
 * submission failures once every acknowledgement is taken. */
static int e2e_loop(BlazenControlPlaneClient *c, BlazenCompletionQueue *q, const char *tag, int n, int window) {
    int issued = 0, acked = 0, failed = 0, last = -1, chunk = window / 8 > 0 ? window / 8 : 1;
    uint64_t since = now_ns();
    for (;;) {
        for (int k; (k = e2e_acks(q, &failed, 0)) > 0;) acked += k;
        int done = atomic_load(&E.ended);
        if (e2e_progress(n - failed, &last, &since) >= 0) break;
        if (issued < n && issued - done - failed <= window - chunk)
            while (issued < n && issued - done - failed < window) e2e_submit(c, q, tag, issued++);
        e2e_sleep(issued < n ? issued - failed - window + chunk : n - failed);
    }
    while (acked < issued) {
        int k = e2e_acks(q, &failed, 30000);
        if (k == 0) die("waiting for submissions", NULL);
        acked += k;
    }
    return failed;
}

/* `backlog`: submits all `n` runs, then starts the workers (`*t_release`)
 * and waits for the runs to end; returns the submission failures. */
static int e2e_backlog(BlazenControlPlaneClient *c, BlazenCompletionQueue *q, const char *tag, int n,
                       BlazenControlPlaneWorker **ws, BlazenFuture **runs, int workers, uint64_t *t_release,
                       double *submit_secs) {
    int issued = 0, acked = 0, failed = 0, last = -1;
    uint64_t t0 = now_ns();
    while (acked < n) {
        while (issued < n && issued - acked < E2E_SUBMITS_IN_FLIGHT) e2e_submit(c, q, tag, issued++);
        int k = e2e_acks(q, &failed, 30000);
        if (k == 0) die("waiting for submissions", NULL);
        acked += k;
    }
    *t_release = now_ns();
    *submit_secs = (double)(*t_release - t0) / 1e9;
    for (int i = 0; i < workers; i++) runs[i] = blazen_controlplane_worker_run(ws[i]);
    uint64_t since = now_ns();
    while (e2e_progress(n - failed, &last, &since) < 0) e2e_sleep(n - failed);
    return failed;
}

static int workers_listed(BlazenControlPlaneClient *c, const char *tag) {
    BlazenWorkerInfoList *l = NULL;
    if (blazen_controlplane_client_list_workers_blocking(c, &l, NULL)) return 0;
    int k = 0;
    for (size_t i = 0; i < blazen_worker_info_list_count(l); i++) {
        BlazenWorkerInfo *w = blazen_worker_info_list_get(l, i);
        char *node = blazen_worker_info_node_id(w);
        k += node && strncmp(node, tag, strlen(tag)) == 0;
        blazen_string_free(node);
        blazen_worker_info_free(w);
    }
    blazen_worker_info_list_free(l);
    return k;
}

static double rusage_cpu_us(const struct rusage *u) {
    return u->ru_utime.tv_sec * 1e6 + u->ru_utime.tv_usec + u->ru_stime.tv_sec * 1e6 + u->ru_stime.tv_usec;
}

static void e2e(const char *ep, const char *tag, int workers, int slots, int n, const char *mode, int window) {
    int backlog = strcmp(mode, "backlog") == 0;
    E.efd = eventfd(0, EFD_CLOEXEC);
    E.futs = calloc((size_t)n, sizeof *E.futs);
    E.t_submit = calloc((size_t)n, sizeof *E.t_submit);
    BlazenControlPlaneClient *c = connect_to(ep);
    BlazenControlPlaneClient *sc = connect_n(ep, 1);
    BlazenCompletionQueue *q = blazen_completion_queue_new();
    BlazenRunEventSinkVTable sink_vt = {NULL, NULL, e2e_event, NULL, e2e_sink_error};
    BlazenControlPlaneSubscription *sub = NULL;
    BlazenError *err = NULL;
    e2e_reset(n);
    if (blazen_controlplane_client_subscribe_all(sc, NULL, sink_vt, &sub, &err)) die("subscribe_all", err);
    BlazenControlPlaneWorker **ws = calloc((size_t)workers, sizeof *ws);
    BlazenFuture **runs = calloc((size_t)workers, sizeof *runs);
    char caps[256];
    snprintf(caps, sizeof caps, "[{\"kind\":\"workflow:%s\",\"version\":0}]", tag);
    for (int i = 0; i < workers; i++) {
        char node[160];
        snprintf(node, sizeof node, "%s-%d", tag, i);
        BlazenAssignmentHandlerVTable vt = {NULL, NULL, e2e_echo, NULL, NULL};
        if (blazen_controlplane_worker_new_blocking(ep, node, caps, "{}", BLAZEN_ADMISSION_FIXED, (uint64_t)slots, vt,
                                                    &ws[i], &err))
            die("worker_new", err);
    }
    if (!backlog) {
        for (int i = 0; i < workers; i++) runs[i] = blazen_controlplane_worker_run(ws[i]);
        for (int i = 0; i < 1000 && workers_listed(c, tag) < workers; i++) usleep(10000);
        int warm = n / 20 > 2 * window ? n / 20 : 2 * window;
        if (e2e_loop(c, q, tag, warm < n ? warm : n, window)) die("warm-up submissions", NULL);
        usleep(100000);
        e2e_reset(n);
    }
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin) || strncmp(line, "go", 2) != 0) die("waiting for go", NULL);

    struct rusage u0, u1;
    getrusage(RUSAGE_SELF, &u0);
    uint64_t t0 = now_ns(), t_release = 0;
    double submit_secs = 0;
    int failed = backlog ? e2e_backlog(c, q, tag, n, ws, runs, workers, &t_release, &submit_secs)
                         : e2e_loop(c, q, tag, n, window);
    getrusage(RUSAGE_SELF, &u1);
    usleep(200000); /* late events (a status.running after the end) */

    pthread_mutex_lock(&E.lock);
    uint64_t *lat = malloc(sizeof *lat * (size_t)n), *run = malloc(sizeof *run * (size_t)n);
    int n_lat = 0, n_run = 0, ours = 0, ooo = 0, dup = 0, failed_runs = 0, lost = failed;
    uint64_t first_running = UINT64_MAX, last_done = 0;
    for (size_t i = 0; i <= E.mask; i++) {
        E2eRun *r = &E.runs[i];
        if (!(r->flags & R_OURS)) continue;
        ours++;
        if (r->flags & R_ORDER) ooo++;
        if (r->flags & R_DUP) dup++;
        if (r->flags & R_RUNNING && r->t_running < first_running) first_running = r->t_running;
        if (!(r->flags & R_TERMINAL)) {
            lost++;
            continue;
        }
        if (r->flags & R_FAILED) failed_runs++;
        if (r->t_done > last_done) last_done = r->t_done;
        uint64_t from = r->t_submit > t_release ? r->t_submit : t_release;
        lat[n_lat++] = r->t_done - from;
        if (r->flags & R_RUNNING && r->t_running <= r->t_done) run[n_run++] = r->t_done - r->t_running;
    }
    int foreign = (int)E.used - ours;
    pthread_mutex_unlock(&E.lock);
    qsort(lat, (size_t)n_lat, sizeof *lat, cmp_u64);
    qsort(run, (size_t)n_run, sizeof *run, cmp_u64);
    uint64_t from = backlog ? first_running : t0;
    double secs = last_done > from ? (double)(last_done - from) / 1e9 : 0;
    double per = n > 0 ? 1.0 / n : 0;
    printf("{\"runs\":%d,\"completed\":%d,\"runs_per_s\":%.1f,\"secs\":%.3f,\"submit_secs\":%.3f,"
           "\"latency_p50_ns\":%llu,\"latency_p99_ns\":%llu,\"running_to_done_p50_ns\":%llu,"
           "\"running_to_done_p99_ns\":%llu,\"cpu_us_per_run\":%.2f,\"vcsw_per_run\":%.3f,\"ivcsw_per_run\":%.3f,"
           "\"out_of_order\":%d,\"lost\":%d,\"failed\":%d,\"duplicate_terminal\":%d,\"submit_failed\":%d,"
           "\"foreign_runs\":%d}\n",
           n, n_lat, secs > 0 ? n_lat / secs : 0.0, secs, submit_secs,
           (unsigned long long)(n_lat ? lat[n_lat / 2] : 0), (unsigned long long)(n_lat ? lat[n_lat * 99 / 100] : 0),
           (unsigned long long)(n_run ? run[n_run / 2] : 0), (unsigned long long)(n_run ? run[n_run * 99 / 100] : 0),
           (rusage_cpu_us(&u1) - rusage_cpu_us(&u0)) * per, (double)(u1.ru_nvcsw - u0.ru_nvcsw) * per,
           (double)(u1.ru_nivcsw - u0.ru_nivcsw) * per, ooo, lost, failed_runs, dup, failed, foreign);
    fflush(stdout);
    free(lat);
    free(run);
    blazen_controlplane_subscription_free(sub);
    for (int i = 0; i < workers; i++) blazen_controlplane_worker_shutdown(ws[i]);
    for (int i = 0; i < workers; i++) {
        if (runs[i]) {
            blazen_future_wait(runs[i]);
            blazen_future_free(runs[i]);
        }
        blazen_controlplane_worker_free(ws[i]);
    }
    free(ws);
    free(runs);
    blazen_completion_queue_free(q);
    blazen_controlplane_client_free(sc);
    blazen_controlplane_client_free(c);
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
    else if (argc >= 9 && strcmp(argv[1], "e2e") == 0)
        e2e(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), argv[7], atoi(argv[8]));
    else if (argc >= 3 && strcmp(argv[1], "scale") == 0) scale(atoi(argv[2]), argc >= 4 ? atoi(argv[3]) : 0);
    else {
        fprintf(stderr, "usage: see the comment at the top of bench/bench.c\n");
        return 2;
    }
    return 0;
}
