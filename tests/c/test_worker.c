/* Workers written in C and an orchestrator in the same process, against a
 * real embedded control plane: echo, failure, cancellation, drain,
 * per-run and tag-filtered subscriptions, and user_data ownership. */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- the worker's handler ------------------------------------------- */

typedef struct {
    atomic_int drops, cancels, drains, handled;
    atomic_int cancel_seen_for_block; /* set by on_cancel, read by handle */
} HandlerState;

static void handler_drop(void *ud) { atomic_fetch_add(&((HandlerState *)ud)->drops, 1); }

static int32_t handler_handle(void *ud, const char *run_id, const char *workflow,
                              const char *input, char **out_json, BlazenError **out_err) {
    HandlerState *st = ud;
    (void)run_id;
    atomic_fetch_add(&st->handled, 1);
    if (strcmp(workflow, "fail") == 0) {
        *out_err = blazen_error_from_json(
            "{\"kind\":\"Workflow\",\"message\":\"deliberate failure from C\"}");
        return 1;
    }
    if (strcmp(workflow, "block") == 0) {
        for (int i = 0; i < 2000 && !atomic_load(&st->cancel_seen_for_block); i++) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
        *out_json = blazen_string_alloc("\"unblocked\"");
        return 0;
    }
    *out_json = blazen_string_alloc(input); /* echo, late */
    return 0;
}

static void handler_cancel(void *ud, const char *run_id) {
    HandlerState *st = ud;
    (void)run_id;
    atomic_fetch_add(&st->cancels, 1);
    atomic_store(&st->cancel_seen_for_block, 1);
}

static void handler_drain(void *ud, bool immediate) {
    (void)immediate;
    atomic_fetch_add(&((HandlerState *)ud)->drains, 1);
}

static BlazenAssignmentHandlerVTable handler_vtable(HandlerState *st) {
    BlazenAssignmentHandlerVTable vt = {st, handler_drop, handler_handle, handler_cancel,
                                        handler_drain};
    return vt;
}

/* ---- an event sink ------------------------------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    char types[64][32];
    char runs[64][40];
    int n;
    atomic_int closes, errors, drops, blocking_calls_ok;
    BlazenControlPlaneClient *client; /* used from inside a callback */
} Sink;

static void sink_drop(void *ud) { atomic_fetch_add(&((Sink *)ud)->drops, 1); }

static void sink_event(void *ud, const char *run_id, const char *type, const char *data,
                       uint64_t ts) {
    Sink *s = ud;
    (void)data;
    (void)ts;
    pthread_mutex_lock(&s->mu);
    if (s->n < 64) {
        snprintf(s->types[s->n], sizeof s->types[0], "%s", type);
        snprintf(s->runs[s->n], sizeof s->runs[0], "%s", run_id);
        s->n++;
    }
    pthread_mutex_unlock(&s->mu);
    if (s->client != NULL) {
        /* a callback may call any _blocking entry point */
        BlazenRunStateSnapshot *snap = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(s->client, run_id, &snap, NULL) == 0)
            atomic_fetch_add(&s->blocking_calls_ok, 1);
        blazen_run_state_snapshot_free(snap);
    }
}

static void sink_close(void *ud) { atomic_fetch_add(&((Sink *)ud)->closes, 1); }
static void sink_error(void *ud, const char *msg) {
    (void)msg;
    atomic_fetch_add(&((Sink *)ud)->errors, 1);
}

static BlazenRunEventSinkVTable sink_vtable(Sink *s) {
    pthread_mutex_init(&s->mu, NULL);
    BlazenRunEventSinkVTable vt = {s, sink_drop, sink_event, sink_close, sink_error};
    return vt;
}

/* ---- helpers ------------------------------------------------------------ */

static BlazenControlPlaneClient *client;
static char *endpoint;

static size_t worker_count(void) {
    BlazenWorkerInfoList *l = NULL;
    if (blazen_controlplane_client_list_workers_blocking(client, &l, NULL) != 0) return 0;
    size_t n = blazen_worker_info_list_count(l);
    blazen_worker_info_list_free(l);
    return n;
}

static int wait_workers(size_t n) {
    for (int i = 0; i < 1000 && worker_count() < n; i++) t_sleep_ms(10);
    return worker_count() >= n;
}

static char *submit(const char *wf, const char *input, bool wait) {
    BlazenRunStateSnapshot *s = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_client_submit_workflow_blocking(client, wf, input, NULL, wait, &s, &err) != 0) {
        char *m = blazen_error_message(err);
        fprintf(stderr, "submit %s failed: %s\n", wf, m ? m : "?");
        blazen_string_free(m);
        blazen_error_free(err);
        return NULL;
    }
    char *id = blazen_run_state_snapshot_run_id(s);
    blazen_run_state_snapshot_free(s);
    return id;
}

/* Describes `run_id` until its status is terminal (or 20 s pass). */
static BlazenRunStateSnapshot *wait_terminal(const char *run_id) {
    for (int i = 0; i < 2000; i++) {
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(client, run_id, &s, NULL) == 0) {
            uint32_t st = blazen_run_state_snapshot_status(s);
            if (st >= BLAZEN_RUN_STATUS_COMPLETED) return s;
        }
        blazen_run_state_snapshot_free(s);
        t_sleep_ms(10);
    }
    return NULL;
}

static uint32_t status_now(const char *run_id) {
    BlazenRunStateSnapshot *s = NULL;
    blazen_controlplane_client_describe_workflow_blocking(client, run_id, &s, NULL);
    uint32_t st = s ? blazen_run_state_snapshot_status(s) : 99;
    blazen_run_state_snapshot_free(s);
    return st;
}

typedef struct {
    BlazenControlPlaneWorker *worker;
    int rc;
} RunArg;

static void *run_blocking_thread(void *p) {
    RunArg *a = p;
    BlazenError *err = NULL;
    a->rc = blazen_controlplane_worker_run_blocking(a->worker, &err);
    blazen_error_free(err);
    return NULL;
}

/* ---- tests -------------------------------------------------------------- */

static void test_new_failures_release_user_data(void) {
    HandlerState st = {0};
    BlazenControlPlaneWorker *w = NULL;
    BlazenError *err = NULL;
    const char *caps = "[{\"kind\":\"workflow:echo\",\"version\":0}]";
#define NEW_FAILS(expr, kind, param, drops_after)                                  \
    do {                                                                           \
        err = NULL;                                                                \
        CHECK((expr) == -1 && w == NULL, "%s fails", #expr);                       \
        CHECK(t_err_is(err, kind, param), "%s error", #expr);                      \
        CHECK(atomic_load(&st.drops) == drops_after, "user_data dropped once (%s)", #expr); \
    } while (0)
    NEW_FAILS(blazen_controlplane_worker_new_blocking("not a uri", "n", caps, NULL, 0, 1,
                                                      handler_vtable(&st), &w, &err),
              BLAZEN_ERROR_KIND_VALIDATION, "endpoint", 1);
    NEW_FAILS(blazen_controlplane_worker_new_blocking(endpoint, "n", "[{\"kind\":3}]", NULL, 0, 1,
                                                      handler_vtable(&st), &w, &err),
              BLAZEN_ERROR_KIND_VALIDATION, "capabilities_json", 2);
    NEW_FAILS(blazen_controlplane_worker_new_blocking(endpoint, "n", caps, "{\"a\":1}", 0, 1,
                                                      handler_vtable(&st), &w, &err),
              BLAZEN_ERROR_KIND_VALIDATION, "tags_json", 3);
    NEW_FAILS(blazen_controlplane_worker_new_blocking(endpoint, "n", caps, NULL, 7, 1,
                                                      handler_vtable(&st), &w, &err),
              BLAZEN_ERROR_KIND_VALIDATION, "admission_mode", 4);
    NEW_FAILS(blazen_controlplane_worker_new_blocking(endpoint, NULL, caps, NULL, 0, 1,
                                                      handler_vtable(&st), &w, &err),
              BLAZEN_ERROR_KIND_VALIDATION, "node_id", 5);
    NEW_FAILS(blazen_controlplane_worker_new_with_mtls_blocking(
                  endpoint, "n", caps, NULL, 0, 1, "/nonexistent/cert.pem", "/nonexistent/key.pem",
                  "/nonexistent/ca.pem", handler_vtable(&st), &w, &err),
              BLAZEN_ERROR_KIND_PEER, NULL, 6);
#undef NEW_FAILS

    /* a worker made and freed without running releases user_data too */
    CHECK(blazen_controlplane_worker_new_blocking(endpoint, "never-run", caps, NULL, 2, 0,
                                                  handler_vtable(&st), &w, NULL) == 0,
          "worker_new");
    blazen_controlplane_worker_free(w);
    CHECK(t_settled(&st.drops, 7), "free without run drops user_data");
    blazen_controlplane_worker_free(NULL);
    blazen_controlplane_worker_shutdown(NULL);

    /* subscriptions refused before opening release the sink */
    Sink s = {0};
    BlazenControlPlaneSubscription *sub = NULL;
    err = NULL;
    CHECK(blazen_controlplane_client_subscribe_run_events(client, "bad", sink_vtable(&s), &sub, &err) == -1,
          "subscribe with a bad run id");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "run_id"), "names run_id");
    err = NULL;
    CHECK(blazen_controlplane_client_subscribe_all(NULL, NULL, sink_vtable(&s), &sub, &err) == -1,
          "subscribe_all with NULL client");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "client"), "names client");
    err = NULL;
    CHECK(blazen_controlplane_client_subscribe_all(client, "[3]", sink_vtable(&s), &sub, &err) == -1,
          "subscribe_all with bad tags");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "required_tags_json"), "names tags");
    CHECK(atomic_load(&s.drops) == 3 && sub == NULL, "sink dropped once per failed call");
    blazen_controlplane_subscription_free(NULL);
    blazen_controlplane_subscription_cancel(NULL);
}

static void test_workflows(void) {
    HandlerState eu = {0}, us = {0};
    const char *caps_eu = "[{\"kind\":\"workflow:echo\",\"version\":0},"
                          "{\"kind\":\"workflow:fail\",\"version\":0},"
                          "{\"kind\":\"workflow:block\",\"version\":0}]";
    BlazenControlPlaneWorker *a = NULL, *b = NULL;
    CHECK(blazen_controlplane_worker_new_blocking(endpoint, "worker-eu", caps_eu, "{\"zone\":\"eu\"}",
                                                  0, 4, handler_vtable(&eu), &a, NULL) == 0,
          "worker eu");
    BlazenFuture *run_a = blazen_controlplane_worker_run(a);
    CHECK(wait_workers(1), "worker eu registers");

    BlazenWorkerInfoList *list = NULL;
    blazen_controlplane_client_list_workers_blocking(client, &list, NULL);
    BlazenWorkerInfo *info = blazen_worker_info_list_get(list, 0);
    blazen_worker_info_list_free(list); /* the copy outlives the list */
    CHECK(t_str_eq(blazen_worker_info_node_id(info), "worker-eu"), "node id");
    CHECK(t_str_has(blazen_worker_info_capabilities_json(info), "\"workflow:echo\""), "caps");
    CHECK(t_str_eq(blazen_worker_info_tags_json(info), "{\"zone\":\"eu\"}"), "tags");
    CHECK(t_str_has(blazen_worker_info_admission_json(info), "\"mode\":\"Fixed\"") , "admission");
    CHECK(blazen_worker_info_connected_at_ms(info) > 0, "connected_at");
    blazen_worker_info_free(info);

    Sink all = {0};
    BlazenControlPlaneSubscription *sub_all = NULL;
    CHECK(blazen_controlplane_client_subscribe_all(client, "[\"zone=us\"]", sink_vtable(&all),
                                                   &sub_all, NULL) == 0,
          "subscribe_all zone=us");

    /* N echo runs complete with their own input as output */
    enum { N = 8 };
    char *ids[N];
    char inputs[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(inputs[i], sizeof inputs[i], "{\"i\":%d}", i);
        ids[i] = submit("echo", inputs[i], false);
    }
    int completed = 0;
    for (int i = 0; i < N; i++) {
        BlazenRunStateSnapshot *s = ids[i] ? wait_terminal(ids[i]) : NULL;
        if (s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_COMPLETED &&
            t_str_eq(blazen_run_state_snapshot_output_json(s), inputs[i]))
            completed++;
        CHECK(s && t_str_eq(blazen_run_state_snapshot_assigned_to(s), "worker-eu"), "assigned");
        blazen_run_state_snapshot_free(s);
        blazen_string_free(ids[i]);
    }
    CHECK(completed == N, "%d of %d echo runs completed with their input", completed, N);

    /* a failing handler fails its run with the error's message */
    char *fail_id = submit("fail", "{}", false);
    BlazenRunStateSnapshot *s = wait_terminal(fail_id);
    CHECK(s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_FAILED, "FAILED");
    CHECK(t_str_has(blazen_run_state_snapshot_error(s), "deliberate failure from C"), "message");
    blazen_run_state_snapshot_free(s);
    blazen_string_free(fail_id);

    /* cancelling an in-flight run: CANCELLED, and on_cancel is seen */
    char *block_id = submit("block", "{}", false);
    for (int i = 0; i < 1000 && status_now(block_id) != BLAZEN_RUN_STATUS_RUNNING; i++) t_sleep_ms(10);
    BlazenRunStateSnapshot *c = NULL;
    CHECK(blazen_controlplane_client_cancel_workflow_blocking(client, block_id, &c, NULL) == 0,
          "cancel in-flight run");
    blazen_run_state_snapshot_free(c);
    s = wait_terminal(block_id);
    CHECK(s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_CANCELLED, "CANCELLED");
    blazen_run_state_snapshot_free(s);
    CHECK(t_wait_until(&eu.cancels, 1, 10000), "on_cancel seen");
    blazen_string_free(block_id);

    /* a per-run subscription sees status.waiting (no worker serves "late"
     * yet), status.running, then status.completed */
    char *late_id = submit("late", "{\"late\":true}", true);
    Sink run_sink = {0};
    run_sink.client = client;
    BlazenControlPlaneSubscription *sub_run = NULL;
    CHECK(blazen_controlplane_client_subscribe_run_events(client, late_id, sink_vtable(&run_sink),
                                                          &sub_run, NULL) == 0,
          "subscribe to the late run");
    CHECK(blazen_controlplane_worker_new_blocking(endpoint, "worker-us",
                                                  "[{\"kind\":\"workflow:late\",\"version\":0}]",
                                                  "{\"zone\":\"us\"}", 0, 0,
                                                  handler_vtable(&us), &b, NULL) == 0,
          "worker us");
    RunArg arg_b = {b, 99};
    pthread_t tb;
    pthread_create(&tb, NULL, run_blocking_thread, &arg_b);
    CHECK(t_wait_until(&run_sink.closes, 1, 20000), "per-run subscription closes");
    pthread_mutex_lock(&run_sink.mu);
    CHECK(run_sink.n >= 3 && strcmp(run_sink.types[0], "status.waiting") == 0 &&
              strcmp(run_sink.types[1], "status.running") == 0 &&
              strcmp(run_sink.types[run_sink.n - 1], "status.completed") == 0,
          "waiting, running, then completed (%d events, first %s)", run_sink.n,
          run_sink.n ? run_sink.types[0] : "-");
    pthread_mutex_unlock(&run_sink.mu);
    CHECK(atomic_load(&run_sink.errors) == 0 && atomic_load(&run_sink.closes) == 1, "one close");
    CHECK(atomic_load(&run_sink.blocking_calls_ok) >= 1, "blocking call from a callback");
    blazen_controlplane_subscription_free(sub_run);
    CHECK(t_settled(&run_sink.drops, 1), "run sink dropped once");

    /* subscribe_all saw the us-worker's run and nothing of the eu worker's */
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&all.mu);
        int done = all.n > 0 && strcmp(all.types[all.n - 1], "status.completed") == 0;
        pthread_mutex_unlock(&all.mu);
        if (done) break;
        t_sleep_ms(10);
    }
    pthread_mutex_lock(&all.mu);
    int only_late = all.n > 0;
    for (int i = 0; i < all.n; i++) only_late &= strcmp(all.runs[i], late_id) == 0;
    CHECK(only_late, "tag filter: %d events, all of the zone=us run", all.n);
    pthread_mutex_unlock(&all.mu);
    blazen_controlplane_subscription_cancel(sub_all);
    blazen_controlplane_subscription_cancel(sub_all);
    blazen_controlplane_subscription_free(sub_all);
    CHECK(t_settled(&all.drops, 1) && atomic_load(&all.closes) == 0 &&
              atomic_load(&all.errors) == 0,
          "cancelled subscription: no terminal call, sink dropped once");
    blazen_string_free(late_id);

    /* a drain reaches on_drain and ends run_blocking with 0 */
    CHECK(blazen_controlplane_client_drain_worker_blocking(client, "worker-us", false, NULL) == 0,
          "drain worker-us");
    CHECK(t_wait_until(&us.drains, 1, 10000), "on_drain seen");
    pthread_join(tb, NULL);
    CHECK(arg_b.rc == 0, "run_blocking returned 0 after the drain (%d)", arg_b.rc);
    blazen_controlplane_worker_free(b);
    CHECK(t_settled(&us.drops, 1), "us user_data dropped once");

    /* a second run is refused; shutdown ends the first */
    BlazenError *err = NULL;
    CHECK(blazen_controlplane_worker_run_blocking(a, &err) == -1, "second run refused");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "worker"), "second run error");
    blazen_controlplane_worker_shutdown(a);
    CHECK(t_await(run_a, T_BY_FD), "run future resolves after shutdown");
    CHECK(blazen_future_take_unit(run_a, NULL) == 0, "run returned 0");
    blazen_future_free(run_a);
    blazen_controlplane_worker_free(a);
    CHECK(t_settled(&eu.drops, 1), "eu user_data dropped once");
    CHECK(atomic_load(&eu.handled) == N + 2, "eu handled %d", atomic_load(&eu.handled));

    /* stopped workers leave the control plane: no longer listed, and a
     * submission that needs them is refused instead of hanging */
    for (int i = 0; i < 1000 && worker_count() > 0; i++) t_sleep_ms(10);
    CHECK(worker_count() == 0, "stopped workers are no longer listed");
    BlazenRunStateSnapshot *gone = NULL;
    err = NULL;
    CHECK(blazen_controlplane_client_submit_workflow_blocking(client, "echo", "{}", NULL, false, &gone, &err) == -1,
          "no run is given to a stopped worker");
    CHECK(t_str_eq(blazen_error_subkind(err), "ControlPlaneFailedPrecondition"), "refused: no worker");
    blazen_error_free(err);
}

int main(void) {
    alarm(240);
    BlazenControlPlaneServer *server = NULL;
    if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) != 0) {
        fprintf(stderr, "cannot start the embedded server\n");
        return 1;
    }
    endpoint = blazen_controlplane_server_endpoint(server);
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, &client, NULL) == 0, "connect");

    T_RUN(test_new_failures_release_user_data);
    T_RUN(test_workflows);

    blazen_controlplane_client_free(client);
    blazen_controlplane_server_free(server);
    blazen_string_free(endpoint);
    return t_finish();
}
