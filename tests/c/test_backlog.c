/* Backlog: runs queued before any worker can take them, then 1 or 3 Fixed
 * workers (max_in_flight 4) connect behind them. Every run must complete
 * (blazen-controlplane 0.7.0 alone froze a worker that connected behind 64
 * or more queued runs), no worker may ever run more than max_in_flight
 * handler calls at once, and with 3 workers each must get a share. The
 * control plane runs in a child process (forked before the library
 * starts). Prints per case: runs completed, peak in flight vs max, wall
 * time. Under valgrind or ASan (BLAZEN_UNDER_TOOL set) the sizes are 64
 * and 200. */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

enum { MAX_IN_FLIGHT = 4, MAX_WORKERS = 3 };

typedef struct {
    atomic_int current, peak, handled;
} Load;

static atomic_int completed_events, failed_events;

static void on_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    (void)ud;
    (void)run_id;
    (void)data;
    (void)ts;
    if (strcmp(type, "status.completed") == 0) atomic_fetch_add(&completed_events, 1);
    if (strcmp(type, "status.failed") == 0) atomic_fetch_add(&failed_events, 1);
}

static int32_t work(void *ud, const char *run_id, const char *wf, const char *input, char **out_json,
                    BlazenError **out_err) {
    (void)run_id;
    (void)wf;
    (void)out_err;
    Load *l = ud;
    int now = atomic_fetch_add(&l->current, 1) + 1;
    int peak = atomic_load(&l->peak);
    while (now > peak && !atomic_compare_exchange_weak(&l->peak, &peak, now)) {
    }
    t_sleep_ms(1);
    atomic_fetch_add(&l->handled, 1);
    atomic_fetch_sub(&l->current, 1);
    *out_json = blazen_string_alloc(input);
    return 0;
}

static int listed(BlazenControlPlaneClient *c) {
    BlazenWorkerInfoList *l = NULL;
    int n = -1;
    if (blazen_controlplane_client_list_workers_blocking(c, &l, NULL) == 0) n = (int)blazen_worker_info_list_count(l);
    blazen_worker_info_list_free(l);
    return n;
}

/* One case: `runs` queued, then `nworkers` workers connect. */
static void backlog(BlazenControlPlaneClient *client, const char *ep, int runs, int nworkers) {
    char wf[32], caps[96];
    snprintf(wf, sizeof wf, "bl_%d_%d", runs, nworkers);
    snprintf(caps, sizeof caps, "[{\"kind\":\"workflow:%s\",\"version\":0}]", wf);
    char (*ids)[37] = calloc((size_t)runs, 37);
    int accepted = 0;
    for (int i = 0; i < runs; i++) {
        char input[32];
        snprintf(input, sizeof input, "{\"i\":%d}", i);
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_submit_workflow_blocking(client, wf, input, NULL, true, &s, NULL) == 0) {
            char *id = blazen_run_state_snapshot_run_id(s);
            snprintf(ids[accepted++], 37, "%s", id);
            blazen_string_free(id);
        }
        blazen_run_state_snapshot_free(s);
    }
    CHECK(accepted == runs, "%s: %d of %d runs queued", wf, accepted, runs);
    int base = atomic_load(&completed_events);

    double t0 = t_now();
    Load load[MAX_WORKERS];
    BlazenControlPlaneWorker *w[MAX_WORKERS];
    BlazenFuture *running[MAX_WORKERS];
    for (int i = 0; i < nworkers; i++) {
        atomic_init(&load[i].current, 0);
        atomic_init(&load[i].peak, 0);
        atomic_init(&load[i].handled, 0);
        char node[48];
        snprintf(node, sizeof node, "%s-w%d", wf, i);
        BlazenAssignmentHandlerVTable vt = {&load[i], t_drop_ud, work, NULL, NULL};
        w[i] = NULL;
        CHECK(blazen_controlplane_worker_new_blocking(ep, node, caps, NULL, 0, MAX_IN_FLIGHT, vt, &w[i], NULL) == 0,
              "%s: worker %d created", wf, i);
        running[i] = blazen_controlplane_worker_run(w[i]);
    }
    /* No time limit on progress, only on a stall: fail when nothing
     * completes for 60 s. */
    int last = -1, stalled_ms = 0;
    while (atomic_load(&completed_events) - base < runs && stalled_ms < 60000) {
        int now = atomic_load(&completed_events);
        stalled_ms = now == last ? stalled_ms + 10 : 0;
        last = now;
        t_sleep_ms(10);
    }
    double wall = t_now() - t0;

    int completed = 0, by_status[6] = {0};
    for (int i = 0; i < runs; i++) {
        BlazenRunStateSnapshot *s = NULL;
        int st = 5;
        if (blazen_controlplane_client_describe_workflow_blocking(client, ids[i], &s, NULL) == 0)
            st = (int)blazen_run_state_snapshot_status(s);
        if (st == BLAZEN_RUN_STATUS_COMPLETED) completed++;
        by_status[st > 5 ? 5 : st]++;
        blazen_run_state_snapshot_free(s);
    }
    if (completed != runs)
        fprintf(stderr, "  %s: pending %d, running %d, completed %d, failed %d, cancelled %d, unknown %d\n", wf,
                by_status[0], by_status[1], by_status[2], by_status[3], by_status[4], by_status[5]);
    int peak = 0, handled = 0, least = runs;
    char shares[128] = "";
    for (int i = 0; i < nworkers; i++) {
        int p = atomic_load(&load[i].peak), h = atomic_load(&load[i].handled);
        CHECK(p <= MAX_IN_FLIGHT, "%s: worker %d ran %d handlers at once (max_in_flight %d)", wf, i, p, MAX_IN_FLIGHT);
        if (p > peak) peak = p;
        if (h < least) least = h;
        handled += h;
        size_t len = strlen(shares);
        snprintf(shares + len, sizeof shares - len, "%s%d", i ? "/" : "", h);
    }
    CHECK(completed == runs, "%s: %d of %d runs COMPLETED", wf, completed, runs);
    CHECK(handled == runs, "%s: %d handler calls for %d runs", wf, handled, runs);
    if (nworkers > 1) CHECK(least > 0, "%s: every worker got a share (%s)", wf, shares);
    printf("backlog %5d runs, %d worker(s): %5d completed, peak in flight %d (max_in_flight %d), %.2f s, per worker %s\n",
           runs, nworkers, completed, peak, MAX_IN_FLIGHT, wall, shares);
    fflush(stdout);

    for (int i = 0; i < nworkers; i++) {
        blazen_controlplane_worker_shutdown(w[i]);
        blazen_future_wait(running[i]);
        blazen_future_free(running[i]);
        blazen_controlplane_worker_free(w[i]);
    }
    for (int i = 0; i < 500 && listed(client) != 0; i++) t_sleep_ms(10);
    free(ids);
}

int main(void) {
    alarm(900);
    const int under_tool = getenv("BLAZEN_UNDER_TOOL") != NULL;
    const int full[] = {64, 1000, 10000}, small[] = {64, 200};
    const int *sizes = under_tool ? small : full;
    const int nsizes = under_tool ? 2 : 3;
    TControlPlane cp;
    if (t_fork_control_plane(&cp)) return 1;
    const char *ep = cp.endpoint;

    BlazenControlPlaneClient *client = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(ep, &client, NULL) == 0, "connect");
    BlazenRunEventSinkVTable sink = {NULL, NULL, on_event, NULL, NULL};
    BlazenControlPlaneSubscription *watcher = NULL;
    CHECK(blazen_controlplane_client_subscribe_all(client, NULL, sink, &watcher, NULL) == 0, "watcher");

    /* BLAZEN_BACKLOG_CASE=RUNSxWORKERS (e.g. 1000x3) runs that case only. */
    const char *only = getenv("BLAZEN_BACKLOG_CASE");
    int only_runs = 0, only_workers = 0;
    if (only && sscanf(only, "%dx%d", &only_runs, &only_workers) != 2) only_runs = 0;
    int workers = 0;
    if (only_runs > 0 && only_workers >= 1 && only_workers <= MAX_WORKERS) {
        backlog(client, ep, only_runs, only_workers);
        workers += only_workers;
    } else {
        /* A case per size and number of workers: 1000x3 is 1000 runs over
         * 3 workers. */
        static char names[8][32];
        int k = 0;
        for (int s = 0; s < nsizes; s++)
            for (int n = 1; n <= MAX_WORKERS; n += 2, k++) {
                snprintf(names[k % 8], sizeof names[k % 8], "%dx%d", sizes[s], n);
                T_CASE(names[k % 8]) {
                    backlog(client, ep, sizes[s], n);
                    workers += n;
                }
            }
    }
    CHECK(atomic_load(&failed_events) == 0, "no run failed (%d)", atomic_load(&failed_events));
    CHECK(t_settled(&t_drops, workers), "every worker's user_data dropped once");

    blazen_controlplane_subscription_free(watcher);
    blazen_controlplane_client_free(client);
    CHECK(t_stop_control_plane(&cp), "server process exited cleanly");
    return t_finish();
}
