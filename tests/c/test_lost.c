/* Lost workers: the control plane and worker A run in child processes (both
 * forked before the library starts here). A takes three runs and is killed
 * with SIGKILL while their handlers run; each run must be re-queued with a
 * `status.requeued` event {"node_id": "lost-a", "reason": "worker_lost"}
 * and then completed by worker B, already connected in this process. A
 * second worker under B's node id is refused with a clear error, and a
 * worker whose run future is freed leaves the control plane. Prints
 * the time from the kill to the last re-queue event. */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

enum { RUNS = 3 };

static atomic_int requeued, bad_requeue_data, completed, c_requeued;
static double requeued_at;

static void on_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    (void)ud;
    (void)run_id;
    (void)ts;
    if (strcmp(type, "status.completed") == 0) atomic_fetch_add(&completed, 1);
    if (strcmp(type, "status.requeued") != 0) return;
    if (strstr(data, "\"node_id\":\"lost-c\"")) { /* worker C, its run future freed (below) */
        if (strstr(data, "\"reason\":\"worker_lost\"")) atomic_fetch_add(&c_requeued, 1);
        return;
    }
    if (!strstr(data, "\"node_id\":\"lost-a\"") || !strstr(data, "\"reason\":\"worker_lost\"")) {
        fprintf(stderr, "  unexpected status.requeued data: %s\n", data);
        atomic_fetch_add(&bad_requeue_data, 1);
    }
    if (atomic_fetch_add(&requeued, 1) + 1 == RUNS) requeued_at = t_now();
}

/* Worker A's handler: reports that it started, then never returns. */
static int started_fd = -1;
static int32_t stuck(void *ud, const char *run_id, const char *wf, const char *input, char **out_json,
                     BlazenError **out_err) {
    (void)ud;
    (void)run_id;
    (void)wf;
    (void)input;
    (void)out_json;
    (void)out_err;
    char b = 1;
    if (write(started_fd, &b, 1) != 1) _exit(3);
    for (;;) t_sleep_ms(1000);
    return 0;
}

/* Worker C's handler: holds its run until the test lets it go. */
static atomic_int held_started, let_go;
static int32_t held(void *ud, const char *run_id, const char *wf, const char *input, char **out_json,
                    BlazenError **out_err) {
    (void)ud;
    (void)run_id;
    (void)wf;
    (void)input;
    (void)out_err;
    atomic_fetch_add(&held_started, 1);
    while (!atomic_load(&let_go)) t_sleep_ms(5);
    *out_json = blazen_string_alloc("null");
    return 0;
}

/* Worker A's child: waits for the port, then serves until killed. */
static void worker_a(int port_pipe) {
    uint16_t port = 0;
    if (read(port_pipe, &port, sizeof port) != sizeof port) _exit(1);
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%u", port);
    BlazenAssignmentHandlerVTable vt = {NULL, NULL, stuck, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    if (blazen_controlplane_worker_new_blocking(ep, "lost-a", "[{\"kind\":\"workflow:slow\",\"version\":0}]", NULL, 0, 4,
                                                vt, &w, NULL) != 0)
        _exit(1);
    blazen_controlplane_worker_run_blocking(w, NULL);
    _exit(0);
}

static int listed(BlazenControlPlaneClient *c, const char *node) {
    BlazenWorkerInfoList *l = NULL;
    int found = 0;
    if (blazen_controlplane_client_list_workers_blocking(c, &l, NULL) == 0)
        for (size_t i = 0; i < blazen_worker_info_list_count(l); i++) {
            BlazenWorkerInfo *info = blazen_worker_info_list_get(l, i);
            if (t_str_eq(blazen_worker_info_node_id(info), node)) found++;
            blazen_worker_info_free(info);
        }
    blazen_worker_info_list_free(l);
    return found;
}

static int wait_listed(BlazenControlPlaneClient *c, const char *node, int want) {
    for (int i = 0; i < 3000; i++) {
        if (listed(c, node) == want) return 1;
        t_sleep_ms(10);
    }
    return 0;
}

int main(void) {
    alarm(300);
    int a_pipe[2], started_pipe[2];
    if (pipe(a_pipe) || pipe(started_pipe)) return 1;
    TControlPlane cp;
    if (t_fork_control_plane(&cp)) return 1;
    const char *ep = cp.endpoint;
    uint16_t port = cp.port;
    pid_t a = fork();
    if (a == 0) {
        close(a_pipe[1]);
        close(started_pipe[0]);
        close(cp.done);
        started_fd = started_pipe[1];
        worker_a(a_pipe[0]);
    }
    close(a_pipe[0]);
    close(started_pipe[1]);

    BlazenControlPlaneClient *client = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(ep, &client, NULL) == 0, "connect");
    BlazenRunEventSinkVTable sink = {NULL, NULL, on_event, NULL, NULL};
    BlazenControlPlaneSubscription *watcher = NULL;
    CHECK(blazen_controlplane_client_subscribe_all(client, NULL, sink, &watcher, NULL) == 0, "watcher");

    /* Worker A (its own process) takes three runs and hangs in them. */
    CHECK(write(a_pipe[1], &port, sizeof port) == sizeof port, "port sent to worker A");
    CHECK(wait_listed(client, "lost-a", 1), "worker A listed");
    char ids[RUNS][37];
    for (int i = 0; i < RUNS; i++) {
        BlazenRunStateSnapshot *s = NULL;
        CHECK(blazen_controlplane_client_submit_workflow_blocking(client, "slow", "{}", NULL, false, &s, NULL) == 0,
              "submit %d", i);
        char *id = blazen_run_state_snapshot_run_id(s);
        snprintf(ids[i], sizeof ids[i], "%s", id ? id : "");
        blazen_string_free(id);
        blazen_run_state_snapshot_free(s);
    }
    int started = 0;
    char b;
    while (started < RUNS && read(started_pipe[0], &b, 1) == 1) started++;
    CHECK(started == RUNS, "worker A started %d handlers", started);

    /* Worker B connects with nothing queued, so it gets nothing yet. */
    BlazenAssignmentHandlerVTable vt = {(void *)&t_drops, t_drop_ud, t_echo, NULL, NULL};
    BlazenControlPlaneWorker *wb = NULL;
    CHECK(blazen_controlplane_worker_new_blocking(ep, "lost-b", "[{\"kind\":\"workflow:slow\",\"version\":0}]", NULL, 0,
                                                  4, vt, &wb, NULL) == 0,
          "worker B");
    BlazenFuture *running_b = blazen_controlplane_worker_run(wb);
    CHECK(wait_listed(client, "lost-b", 1), "worker B listed");
    CHECK(atomic_load(&completed) == 0, "nothing completed before the kill");

    double killed_at = t_now();
    kill(a, SIGKILL);
    waitpid(a, NULL, 0);
    CHECK(t_wait_until(&requeued, RUNS, 60000), "%d of %d runs re-queued with an event", atomic_load(&requeued), RUNS);
    CHECK(atomic_load(&bad_requeue_data) == 0, "every status.requeued names the node and the reason");
    CHECK(wait_listed(client, "lost-a", 0), "worker A no longer listed");
    CHECK(t_wait_until(&completed, RUNS, 60000), "%d of %d re-queued runs completed", atomic_load(&completed), RUNS);
    int on_b = 0;
    for (int i = 0; i < RUNS; i++) {
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(client, ids[i], &s, NULL) == 0 &&
            blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_COMPLETED &&
            t_str_eq(blazen_run_state_snapshot_assigned_to(s), "lost-b"))
            on_b++;
        blazen_run_state_snapshot_free(s);
    }
    CHECK(on_b == RUNS, "%d of %d runs COMPLETED on worker B", on_b, RUNS);
    printf("lost worker: %d runs re-queued %.0f ms after kill -9 (status.requeued), completed by another worker\n",
           RUNS, (requeued_at - killed_at) * 1000.0);

    /* A second worker under B's node id is refused, and B stays. */
    BlazenAssignmentHandlerVTable vt2 = {(void *)&t_drops, t_drop_ud, t_echo, NULL, NULL};
    BlazenControlPlaneWorker *dup = NULL;
    CHECK(blazen_controlplane_worker_new_blocking(ep, "lost-b", "[{\"kind\":\"workflow:slow\",\"version\":0}]", NULL, 0,
                                                  4, vt2, &dup, NULL) == 0,
          "duplicate worker created");
    BlazenError *err = NULL;
    CHECK(blazen_controlplane_worker_run_blocking(dup, &err) == -1, "duplicate node id refused");
    CHECK(err && blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER &&
              t_str_eq(blazen_error_subkind(err), "ControlPlaneAlreadyExists"),
          "refusal is PEER / ControlPlaneAlreadyExists");
    char *msg = err ? blazen_error_message(err) : NULL;
    CHECK(msg && strstr(msg, "lost-b") && strstr(msg, ep), "message names node id and endpoint: %s", msg ? msg : "");
    blazen_string_free(msg);
    blazen_error_free(err);
    blazen_controlplane_worker_free(dup);
    CHECK(listed(client, "lost-b") == 1, "worker B still listed once");

    /* A worker whose run future is freed (it is not shut down) leaves the
     * control plane too, while its handler still holds a run: its session
     * ends with the future, and the run goes back to the queue. */
    BlazenAssignmentHandlerVTable vt3 = {(void *)&t_drops, t_drop_ud, held, NULL, NULL};
    BlazenControlPlaneWorker *wc = NULL;
    CHECK(blazen_controlplane_worker_new_blocking(ep, "lost-c", "[{\"kind\":\"workflow:other\",\"version\":0}]", NULL,
                                                  0, 1, vt3, &wc, NULL) == 0,
          "worker C");
    BlazenFuture *running_c = blazen_controlplane_worker_run(wc);
    CHECK(wait_listed(client, "lost-c", 1), "worker C listed");
    BlazenRunStateSnapshot *held_run = NULL;
    CHECK(blazen_controlplane_client_submit_workflow_blocking(client, "other", "{}", NULL, false, &held_run, NULL) == 0,
          "submit a run to worker C");
    char *held_id = blazen_run_state_snapshot_run_id(held_run);
    blazen_run_state_snapshot_free(held_run);
    CHECK(t_wait_until(&held_started, 1, 30000), "worker C's handler holds the run");
    blazen_future_free(running_c);
    CHECK(wait_listed(client, "lost-c", 0), "worker C, its run future freed mid-run, no longer listed");
    int back = 0;
    for (int i = 0; i < 3000 && !back; i++) {
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(client, held_id, &s, NULL) == 0)
            back = blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_PENDING;
        blazen_run_state_snapshot_free(s);
        if (!back) t_sleep_ms(10);
    }
    CHECK(back, "its run is PENDING again, with its handler still running");
    CHECK(t_wait_until(&c_requeued, 1, 30000), "with a status.requeued naming lost-c, reason worker_lost");
    atomic_store(&let_go, 1);
    blazen_string_free(held_id);
    blazen_controlplane_worker_free(wc);

    blazen_controlplane_worker_shutdown(wb);
    blazen_future_wait(running_b);
    blazen_future_free(running_b);
    blazen_controlplane_worker_free(wb);
    CHECK(t_settled(&t_drops, 3), "the three workers' user_data dropped once each");
    blazen_controlplane_subscription_free(watcher);
    blazen_controlplane_client_free(client);
    CHECK(t_stop_control_plane(&cp), "server process exited cleanly");
    return t_finish();
}
