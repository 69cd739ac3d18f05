/* Load: 10,000 runs across 4 C workers while a subscribe_all watcher
 * counts terminal events. Every run must end COMPLETED, the watcher must
 * see each run's terminal event exactly once, and the process's resident
 * memory after the load must be within 10% of where it was after a
 * warm-up batch. The control plane runs in a child process (forked before
 * the library starts), so the memory measured is the library's side:
 * client, workers, watcher. Under valgrind or ASan (BLAZEN_UNDER_TOOL set)
 * the load is smaller and memory is not judged. */
#include "harness.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

enum { WARMUP = 1000, WORKERS = 4, TABLE = 1 << 15 };

static char ids[TABLE][37];
static atomic_int terminal_seen[TABLE];
static atomic_int completed_seen, other_terminal, unknown_runs, total_terminal;

static unsigned hash(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Open addressing; ids are only inserted by the main thread before the
 * watcher can see their events. */
static int slot_of(const char *id, int insert) {
    unsigned i = hash(id) & (TABLE - 1);
    for (int probes = 0; probes < TABLE; probes++, i = (i + 1) & (TABLE - 1)) {
        if (ids[i][0] == 0) {
            if (!insert) return -1;
            snprintf(ids[i], sizeof ids[i], "%s", id);
            return (int)i;
        }
        if (strcmp(ids[i], id) == 0) return (int)i;
    }
    return -1;
}

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    (void)ud;
    (void)data;
    (void)ts;
    int completed = strcmp(type, "status.completed") == 0;
    if (!completed && strcmp(type, "status.failed") != 0 && strcmp(type, "status.cancelled") != 0) return;
    pthread_mutex_lock(&table_mu);
    int slot = slot_of(run_id, 1);
    pthread_mutex_unlock(&table_mu);
    if (slot < 0) {
        atomic_fetch_add(&unknown_runs, 1);
        return;
    }
    atomic_fetch_add(&terminal_seen[slot], 1);
    atomic_fetch_add(completed ? &completed_seen : &other_terminal, 1);
    atomic_fetch_add(&total_terminal, 1);
}

/* Submits `n` runs, recording their ids; returns how many were accepted. */
static int submit_batch(BlazenControlPlaneClient *c, int n, char (*out)[37]) {
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char input[32];
        snprintf(input, sizeof input, "{\"i\":%d}", i);
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_submit_workflow_blocking(c, "load", input, NULL, false, &s, NULL) == 0) {
            char *id = blazen_run_state_snapshot_run_id(s);
            pthread_mutex_lock(&table_mu);
            slot_of(id, 1);
            pthread_mutex_unlock(&table_mu);
            if (out) snprintf(out[ok], 37, "%s", id);
            blazen_string_free(id);
            ok++;
        }
        blazen_run_state_snapshot_free(s);
    }
    return ok;
}

static int wait_terminal(int n, int ms) {
    for (int i = 0; i < ms / 10 && atomic_load(&total_terminal) < n; i++) t_sleep_ms(10);
    return atomic_load(&total_terminal) >= n;
}

int main(void) {
    alarm(600);
    const int under_tool = getenv("BLAZEN_UNDER_TOOL") != NULL;
    const int runs = under_tool ? 500 : 10000;
    TControlPlane cp;
    if (t_fork_control_plane(&cp)) return 1;
    const char *ep = cp.endpoint;

    BlazenControlPlaneClient *client = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(ep, &client, NULL) == 0, "connect");
    BlazenControlPlaneWorker *w[WORKERS];
    BlazenFuture *running[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        char node[32];
        snprintf(node, sizeof node, "load-%d", i);
        BlazenAssignmentHandlerVTable vt = {(void *)&t_drops, t_drop_ud, t_echo, NULL, NULL};
        CHECK(blazen_controlplane_worker_new_blocking(ep, node, "[{\"kind\":\"workflow:load\",\"version\":0}]", NULL,
                                                      0, 16, vt, &w[i], NULL) == 0,
              "worker %d", i);
        running[i] = blazen_controlplane_worker_run(w[i]);
    }
    for (int i = 0; i < 1000; i++) {
        BlazenWorkerInfoList *l = NULL;
        size_t n = 0;
        if (blazen_controlplane_client_list_workers_blocking(client, &l, NULL) == 0) n = blazen_worker_info_list_count(l);
        blazen_worker_info_list_free(l);
        if (n == WORKERS) break;
        t_sleep_ms(10);
    }
    BlazenRunEventSinkVTable sink = {NULL, NULL, on_event, NULL, NULL};
    BlazenControlPlaneSubscription *watcher = NULL;
    CHECK(blazen_controlplane_client_subscribe_all(client, NULL, sink, &watcher, NULL) == 0, "watcher");

    int warm = submit_batch(client, WARMUP, NULL);
    CHECK(warm == WARMUP && wait_terminal(WARMUP, 60000), "warm-up batch done (%d)", atomic_load(&total_terminal));
    malloc_trim(0);
    long rss_warm = t_rss_kib();

    double t0 = t_now();
    char (*load_ids)[37] = calloc((size_t)runs, 37);
    int accepted = submit_batch(client, runs, load_ids);
    CHECK(accepted == runs, "%d of %d runs accepted", accepted, runs);
    CHECK(wait_terminal(WARMUP + runs, 300000), "watcher saw %d terminal events", atomic_load(&total_terminal));
    double took = t_now() - t0;
    t_sleep_ms(300); /* a duplicate would arrive now */

    int once = 0, completed = 0;
    for (int i = 0; i < TABLE; i++)
        if (ids[i][0] && atomic_load(&terminal_seen[i]) == 1) once++;
    for (int i = 0; i < runs; i += runs / 100) {
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(client, load_ids[i], &s, NULL) == 0 &&
            blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_COMPLETED)
            completed++;
        blazen_run_state_snapshot_free(s);
    }
    CHECK(once == WARMUP + runs, "every run's terminal event seen exactly once (%d)", once);
    CHECK(atomic_load(&completed_seen) == WARMUP + runs && atomic_load(&other_terminal) == 0,
          "every terminal event is status.completed (%d completed, %d other)", atomic_load(&completed_seen),
          atomic_load(&other_terminal));
    CHECK(completed == 100, "described sample of 100 runs all COMPLETED (%d)", completed);
    CHECK(atomic_load(&unknown_runs) == 0, "no events for unknown runs");

    malloc_trim(0);
    long rss_after = t_rss_kib();
    printf("load: %d runs in %.2f s (%.0f runs/s) over %d workers; RSS %ld KiB after warm-up, %ld KiB after load (%+.1f%%)\n",
           runs, took, runs / took, WORKERS, rss_warm, rss_after, 100.0 * (rss_after - rss_warm) / rss_warm);
    if (!under_tool)
        CHECK(rss_after <= rss_warm * 1.10, "resident memory within 10%% of the warm-up level");

    blazen_controlplane_subscription_free(watcher);
    for (int i = 0; i < WORKERS; i++) {
        blazen_controlplane_worker_shutdown(w[i]);
        blazen_future_wait(running[i]);
        blazen_future_free(running[i]);
        blazen_controlplane_worker_free(w[i]);
    }
    CHECK(t_settled(&t_drops, WORKERS), "every worker's user_data dropped once");
    blazen_controlplane_client_free(client);
    free(load_ids);
    CHECK(t_stop_control_plane(&cp), "server process exited cleanly");
    return t_finish();
}
