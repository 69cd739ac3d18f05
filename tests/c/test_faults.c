/* Faults: handlers returning garbage, and the control plane going away
 * while runs are in flight (client calls fail promptly, subscriptions get
 * on_error once, a worker with a bounded retry policy gives up, one that
 * keeps retrying resumes work on a server restarted at the same address). */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- handlers ------------------------------------------------------------ */

static atomic_int drops, served;
static void drop_ud(void *ud) {
    (void)ud;
    atomic_fetch_add(&drops, 1);
}

static int32_t garbage(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *wf,
                       const char *input, char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)run_id;
    (void)out_err;
    atomic_fetch_add(&served, 1);
    if (strcmp(wf, "nonjson") == 0) {
        *out_json = blazen_string_alloc("this is not json");
        return 0;
    }
    if (strcmp(wf, "nonutf8") == 0) {
        *out_json = blazen_string_alloc("\"\xff\xfe\"");
        return 0;
    }
    if (strcmp(wf, "silent") == 0) return 5; /* failure without an error */
    if (strcmp(wf, "hang") == 0) {
        for (int i = 0; i < 1000 && !blazen_assignment_context_is_cancelled(ctx); i++) t_sleep_ms(10);
        return 0;
    }
    *out_json = blazen_string_alloc(input);
    return 0;
}

static BlazenContextHandlerVTable vtable(void) {
    BlazenContextHandlerVTable vt = {(void *)&drops, drop_ud, garbage, NULL, NULL};
    return vt;
}

/* ---- sinks --------------------------------------------------------------- */

typedef struct {
    atomic_int events, closes, errors, drops;
} Sink;
static void s_drop(void *ud) { atomic_fetch_add(&((Sink *)ud)->drops, 1); }
static void s_event(void *ud, const char *r, const char *t, const char *d, uint64_t ts) {
    (void)r;
    (void)t;
    (void)d;
    (void)ts;
    atomic_fetch_add(&((Sink *)ud)->events, 1);
}
static void s_close(void *ud) { atomic_fetch_add(&((Sink *)ud)->closes, 1); }
static void s_error(void *ud, const char *m) {
    (void)m;
    atomic_fetch_add(&((Sink *)ud)->errors, 1);
}
static BlazenRunEventSinkVTable sink_vt(Sink *s) {
    BlazenRunEventSinkVTable vt = {s, s_drop, s_event, s_close, s_error};
    return vt;
}

/* ---- helpers ------------------------------------------------------------- */

static char *submit(BlazenControlPlaneClient *c, const char *wf) {
    BlazenRunStateSnapshot *s = NULL;
    if (blazen_controlplane_client_submit_workflow_blocking(c, wf, "{\"v\":1}", NULL, true, &s, NULL)) return NULL;
    char *id = blazen_run_state_snapshot_run_id(s);
    blazen_run_state_snapshot_free(s);
    return id;
}

static BlazenRunStateSnapshot *wait_terminal(BlazenControlPlaneClient *c, const char *id) {
    for (int i = 0; i < 2000; i++) {
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(c, id, &s, NULL) == 0 &&
            blazen_run_state_snapshot_status(s) >= BLAZEN_RUN_STATUS_COMPLETED)
            return s;
        blazen_run_state_snapshot_free(s);
        t_sleep_ms(10);
    }
    return NULL;
}

/* The handler tables given to worker_new: each is dropped once. */
static int handlers_given;

static BlazenControlPlaneWorker *worker(const char *ep, const char *node, const char *retry) {
    handlers_given++;
    char opts[512];
    snprintf(opts, sizeof opts,
             "{\"capabilities\":[{\"kind\":\"workflow:nonjson\"},{\"kind\":\"workflow:nonutf8\"},"
             "{\"kind\":\"workflow:silent\"},{\"kind\":\"workflow:hang\"},{\"kind\":\"workflow:ok\"}],"
             "\"admission\":{\"mode\":\"Fixed\",\"max_in_flight\":8},\"heartbeat_ms\":200,\"retry\":%s}",
             retry);
    BlazenControlPlaneWorker *w = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_worker_new_with_options_blocking(ep, node, opts, vtable(), &w, &err) != 0) {
        char *m = blazen_error_message(err);
        fprintf(stderr, "worker_new: %s\n", m ? m : "?");
        blazen_string_free(m);
        blazen_error_free(err);
    }
    return w;
}

static int wait_workers(BlazenControlPlaneClient *c, size_t n) {
    for (int i = 0; i < 1000; i++) {
        BlazenWorkerInfoList *l = NULL;
        size_t k = 0;
        if (blazen_controlplane_client_list_workers_blocking(c, &l, NULL) == 0) k = blazen_worker_info_list_count(l);
        blazen_worker_info_list_free(l);
        if (k >= n) return 1;
        t_sleep_ms(10);
    }
    return 0;
}

/* Whether a run of `workflow` submitted now completes. */
static int completes(BlazenControlPlaneClient *c, const char *workflow) {
    char *id = submit(c, workflow);
    BlazenRunStateSnapshot *s = id ? wait_terminal(c, id) : NULL;
    int ok = s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_COMPLETED;
    blazen_run_state_snapshot_free(s);
    blazen_string_free(id);
    return ok;
}

/* ---- tests --------------------------------------------------------------- */

static void test_garbage_outputs(BlazenControlPlaneClient *c, const char *ep) {
    BlazenControlPlaneWorker *w = worker(ep, "garbage-worker", "{\"max_attempts\":3}");
    BlazenFuture *run = blazen_controlplane_worker_run(w);
    CHECK(wait_workers(c, 1), "worker registers");
    const char *wf[] = {"nonjson", "nonutf8", "silent"};
    const char *why[] = {"not JSON", "not UTF-8", "status 5"};
    for (int i = 0; i < 3; i++) {
        char *id = submit(c, wf[i]);
        BlazenRunStateSnapshot *s = wait_terminal(c, id);
        CHECK(s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_FAILED, "%s run FAILED", wf[i]);
        CHECK(t_str_has(blazen_run_state_snapshot_error(s), why[i]), "%s: message says %s", wf[i], why[i]);
        blazen_run_state_snapshot_free(s);
        blazen_string_free(id);
    }
    CHECK(completes(c, "ok"), "the worker keeps serving");
    blazen_controlplane_worker_shutdown(w);
    blazen_future_wait(run);
    blazen_future_free(run);
    blazen_controlplane_worker_free(w);
}

static void test_server_goes_away(void) {
    BlazenControlPlaneServer *server = NULL;
    CHECK(blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) == 0, "server");
    char *ep = blazen_controlplane_server_endpoint(server);
    BlazenControlPlaneClient *c = NULL;
    blazen_controlplane_client_connect_blocking(ep, &c, NULL);

    BlazenControlPlaneWorker *bounded =
        worker(ep, "bounded", "{\"max_attempts\":2,\"initial_backoff_ms\":50,\"max_backoff_ms\":100}");
    BlazenControlPlaneWorker *patient =
        worker(ep, "patient", "{\"max_attempts\":400,\"initial_backoff_ms\":50,\"max_backoff_ms\":100}");
    BlazenFuture *run_b = blazen_controlplane_worker_run(bounded);
    BlazenFuture *run_p = blazen_controlplane_worker_run(patient);
    CHECK(wait_workers(c, 2), "both workers register");

    char *hang = submit(c, "hang");
    Sink run_sink = {0}, all_sink = {0};
    BlazenControlPlaneSubscription *sub_run = NULL, *sub_all = NULL;
    CHECK(blazen_controlplane_client_subscribe_run_events(c, hang, sink_vt(&run_sink), &sub_run, NULL) == 0,
          "subscribe to the in-flight run");
    CHECK(blazen_controlplane_client_subscribe_all(c, NULL, sink_vt(&all_sink), &sub_all, NULL) == 0,
          "subscribe_all");

    double t0 = t_now();
    blazen_controlplane_server_shutdown(server);
    printf("server shut down in %.3f s\n", t_now() - t0);

    /* client calls fail promptly with a PEER error */
    BlazenError *err = NULL;
    t0 = t_now();
    CHECK(blazen_controlplane_client_describe_workflow_blocking(c, hang, NULL, &err) == -1, "describe fails");
    printf("client call failed after %.3f s\n", t_now() - t0);
    CHECK(blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER, "PEER error");
    blazen_error_free(err);

    /* each open subscription gets on_error exactly once */
    CHECK(t_wait_until(&run_sink.errors, 1, 20000) && t_wait_until(&all_sink.errors, 1, 20000),
          "on_error delivered");
    t_sleep_ms(200);
    CHECK(atomic_load(&run_sink.errors) == 1 && atomic_load(&all_sink.errors) == 1 &&
              atomic_load(&run_sink.closes) == 0 && atomic_load(&all_sink.closes) == 0,
          "exactly one terminal call each");

    /* the bounded worker gives up with an error */
    t0 = t_now();
    CHECK(t_await(run_b, T_BY_WAIT), "bounded worker's run ends");
    err = NULL;
    CHECK(blazen_future_take_unit(run_b, &err) == -1 && blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER,
          "bounded worker reports a PEER error");
    printf("bounded worker gave up after %.3f s\n", t_now() - t0);
    blazen_error_free(err);

    /* a server on the same address: the patient worker comes back */
    BlazenControlPlaneServer *again = NULL;
    err = NULL;
    CHECK(blazen_controlplane_server_start_blocking(ep + 7, &again, &err) == 0, "restart on %s", ep + 7);
    blazen_error_free(err);
    BlazenControlPlaneClient *c2 = NULL;
    blazen_controlplane_client_connect_blocking(ep, &c2, NULL);
    CHECK(c2 && wait_workers(c2, 1), "the patient worker reconnected");
    CHECK(c2 && completes(c2, "ok"), "and resumed work");

    blazen_controlplane_subscription_free(sub_run);
    blazen_controlplane_subscription_free(sub_all);
    CHECK(t_settled(&run_sink.drops, 1) && t_settled(&all_sink.drops, 1), "sinks dropped once");
    blazen_controlplane_worker_shutdown(patient);
    blazen_future_wait(run_p);
    blazen_future_free(run_p);
    blazen_future_free(run_b);
    blazen_controlplane_worker_free(patient);
    blazen_controlplane_worker_free(bounded);
    blazen_controlplane_client_free(c2);
    blazen_controlplane_client_free(c);
    blazen_controlplane_server_free(again);
    blazen_controlplane_server_free(server);
    blazen_string_free(hang);
    blazen_string_free(ep);
}

/* `max_attempts` bounds failures in a row: a worker whose control plane
 * goes away and comes back three times, each time after it reconnected,
 * is still serving under "max_attempts": 2. */
static void test_losses_in_a_row(void) {
    BlazenControlPlaneServer *server = NULL;
    CHECK(blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) == 0, "server");
    char *ep = blazen_controlplane_server_endpoint(server);
    BlazenControlPlaneWorker *w =
        worker(ep, "steady", "{\"max_attempts\":2,\"initial_backoff_ms\":2000,\"max_backoff_ms\":2000}");
    BlazenFuture *run = blazen_controlplane_worker_run(w);
    for (int round = 1; round <= 3; round++) {
        BlazenControlPlaneClient *c = NULL;
        blazen_controlplane_client_connect_blocking(ep, &c, NULL);
        CHECK(c && wait_workers(c, 1), "round %d: the worker is connected", round);
        blazen_controlplane_client_free(c);
        blazen_controlplane_server_free(server);
        server = NULL;
        BlazenError *err = NULL;
        CHECK(blazen_controlplane_server_start_blocking(ep + 7, &server, &err) == 0, "round %d: restart", round);
        blazen_error_free(err);
    }
    BlazenControlPlaneClient *c = NULL;
    blazen_controlplane_client_connect_blocking(ep, &c, NULL);
    CHECK(c && wait_workers(c, 1), "after three losses the worker is back");
    CHECK(blazen_future_poll(run) == 0, "and its run goes on");
    CHECK(c && completes(c, "ok"), "and serving");
    blazen_controlplane_worker_shutdown(w);
    blazen_future_wait(run);
    blazen_future_free(run);
    blazen_controlplane_worker_free(w);
    blazen_controlplane_client_free(c);
    blazen_controlplane_server_free(server);
    blazen_string_free(ep);
}

int main(void) {
    alarm(240);
    BlazenControlPlaneServer *server = NULL;
    if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) != 0) return 1;
    char *ep = blazen_controlplane_server_endpoint(server);
    BlazenControlPlaneClient *c = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(ep, &c, NULL) == 0, "connect");
    T_RUN_ARGS(test_garbage_outputs, c, ep);
    blazen_controlplane_client_free(c);
    blazen_controlplane_server_free(server);
    blazen_string_free(ep);

    T_RUN(test_server_goes_away);
    T_RUN(test_losses_in_a_row);
    CHECK(t_settled(&drops, handlers_given), "every handler's user_data dropped once (%d of %d)", atomic_load(&drops),
          handlers_given);
    return t_finish();
}
