/* Beyond the reference surface: per-server bearer tokens, connect and
 * submit options (among them `connections`), respond_to_input arguments,
 * and subscriptions to runs that have already ended. */
#include "harness.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>

typedef struct {
    atomic_int events, closes, errors, drops;
    char last_type[64];
} Sink;

static void s_drop(void *ud) { atomic_fetch_add(&((Sink *)ud)->drops, 1); }
static void s_event(void *ud, const char *r, const char *t, const char *d, uint64_t ts) {
    Sink *s = ud;
    (void)r;
    (void)d;
    (void)ts;
    snprintf(s->last_type, sizeof s->last_type, "%s", t);
    atomic_fetch_add(&s->events, 1);
}
static void s_close(void *ud) { atomic_fetch_add(&((Sink *)ud)->closes, 1); }
static void s_error(void *ud, const char *m) {
    (void)m;
    atomic_fetch_add(&((Sink *)ud)->errors, 1);
}

static BlazenControlPlaneClient *connect_opts(const char *endpoint, const char *opts, BlazenError **err) {
    BlazenControlPlaneClient *c = NULL;
    blazen_controlplane_client_connect_with_options_blocking(endpoint, opts, &c, err);
    return c;
}

static void test_tokens(void) {
    BlazenControlPlaneServer *server = NULL;
    BlazenError *err = NULL;
    CHECK(blazen_controlplane_server_start_with_options_blocking(
              "127.0.0.1:0", "{\"bearer_token\":\"s3cret\"}", &server, &err) == 0,
          "server with a token");
    char *ep = blazen_controlplane_server_endpoint(server);

    const char *bad_tokens[] = {NULL, "{\"bearer_token\":\"wrong\"}"};
    for (int i = 0; i < 2; i++) {
        err = NULL;
        BlazenControlPlaneClient *c = connect_opts(ep, bad_tokens[i], &err);
        CHECK(c != NULL, "connect itself needs no token");
        blazen_error_free(err);
        err = NULL;
        CHECK(blazen_controlplane_client_list_workers_blocking(c, NULL, &err) == -1,
              "call without the right token fails");
        CHECK(t_str_eq(blazen_error_subkind(err), "ControlPlaneUnauthenticated"),
              "subkind Unauthenticated (%d)", i);
        blazen_error_free(err);
        blazen_controlplane_client_free(c);
    }

    BlazenControlPlaneClient *c =
        connect_opts(ep, "{\"bearer_token\":\"s3cret\",\"connect_timeout_ms\":5000}", NULL);
    BlazenWorkerInfoList *l = NULL;
    CHECK(c && blazen_controlplane_client_list_workers_blocking(c, &l, NULL) == 0, "right token works");
    blazen_worker_info_list_free(l);

    /* submit with options */
    BlazenRunStateSnapshot *s1 = NULL, *s2 = NULL;
    const char *opts = "{\"workflow_version\":2,\"idempotency_key\":\"k-1\",\"deadline_ms\":60000,"
                       "\"resource_hint\":{\"vram_mb\":512,\"cpu_cores\":1.5,\"expected_seconds\":3}}";
    CHECK(blazen_controlplane_client_submit_workflow_with_options_blocking(c, "opt", "{}", NULL, true, opts,
                                                                          &s1, NULL) == 0,
          "submit with options");
    CHECK(blazen_run_state_snapshot_status(s1) == BLAZEN_RUN_STATUS_PENDING, "pending");
    BlazenFuture *f = blazen_controlplane_client_submit_workflow_with_options(c, "opt", "{}", NULL, true, NULL);
    CHECK(t_await(f, T_BY_FD) && blazen_future_take_run_state_snapshot(f, &s2, NULL) == 0,
          "submit with NULL options via future");
    blazen_future_free(f);
    blazen_run_state_snapshot_free(s1);
    blazen_run_state_snapshot_free(s2);

    /* an ended run is replayed (it waited for a worker: status.waiting,
     * then its terminal event), then on_close */
    BlazenRunStateSnapshot *p = NULL;
    blazen_controlplane_client_submit_workflow_blocking(c, "opt", "{}", NULL, true, &p, NULL);
    char *id = blazen_run_state_snapshot_run_id(p);
    blazen_run_state_snapshot_free(p);
    blazen_controlplane_client_cancel_workflow_blocking(c, id, NULL, NULL);
    Sink sink = {0};
    BlazenRunEventSinkVTable vt = {&sink, s_drop, s_event, s_close, s_error};
    BlazenControlPlaneSubscription *sub = NULL;
    CHECK(blazen_controlplane_client_subscribe_run_events(c, id, vt, &sub, NULL) == 0,
          "subscribe to an ended run");
    CHECK(t_wait_until(&sink.closes, 1, 20000), "on_close after the terminal event");
    CHECK(atomic_load(&sink.events) == 2 && strcmp(sink.last_type, "status.cancelled") == 0,
          "status.waiting, then the terminal event (%d, %s)", atomic_load(&sink.events), sink.last_type);
    blazen_controlplane_subscription_free(sub);
    CHECK(t_settled(&sink.drops, 1) && atomic_load(&sink.errors) == 0, "sink dropped once");

    /* respond_to_input: arguments are checked, an unknown run is a PEER error */
    err = NULL;
    CHECK(blazen_controlplane_client_respond_to_input_blocking(c, id, "req", "{", &err) == -1 &&
              t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "response_json"),
          "bad response_json");
    err = NULL;
    CHECK(blazen_controlplane_client_respond_to_input_blocking(c, id, NULL, "1", &err) == -1 &&
              t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "request_id"),
          "NULL request_id");
    err = NULL;
    CHECK(blazen_controlplane_client_respond_to_input_blocking(
              c, "00000000-0000-4000-8000-000000000001", "req", "true", &err) == -1 &&
              t_err_is(err, BLAZEN_ERROR_KIND_PEER, NULL),
          "unknown run");
    blazen_string_free(id);

    blazen_controlplane_client_free(c);
    blazen_controlplane_server_free(server);
    blazen_string_free(ep);
}

static void test_bad_options(void) {
    BlazenError *err = NULL;
    const char *bad[] = {"{\"bearer_tokn\":\"x\"}", "[1]", "{\"connect_timeout_ms\":\"soon\"}",
                         "{\"cert_path\":\"/a.pem\"}", "{oops"};
    for (int i = 0; i < 5; i++) {
        err = NULL;
        CHECK(connect_opts("http://127.0.0.1:9", bad[i], &err) == NULL &&
                  t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "options_json"),
              "connect options %s refused", bad[i]);
        err = NULL;
        CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", bad[i], NULL, &err) == -1 &&
                  t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "options_json"),
              "server options %s refused", bad[i]);
    }
    err = NULL;
    CHECK(blazen_controlplane_server_start_with_options_blocking(
              "127.0.0.1:0", "{\"cert_path\":\"/no/c.pem\",\"key_path\":\"/no/k.pem\",\"ca_path\":\"/no/ca.pem\"}",
              NULL, &err) == -1,
          "missing PEM files");
    CHECK(t_str_eq(blazen_error_subkind(err), "ControlPlaneTls"), "TLS subkind");
    blazen_error_free(err);
    err = NULL;
    CHECK(blazen_controlplane_client_submit_workflow_with_options_blocking(
              NULL, "w", "{}", NULL, true, "{\"priority\":1}", NULL, &err) == -1 &&
              t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "client"),
          "NULL client checked first");
}

/* `connections`: the range is checked; calls, futures and subscriptions
 * work over every connection; calls about one run keep their order. */
static void test_connections(void) {
    BlazenError *err = NULL;
    const char *bad[] = {"{\"connections\":0}", "{\"connections\":65}", "{\"connections\":-1}",
                         "{\"connections\":\"4\"}", "{\"connections\":1.5}", "{\"connections\":1000}"};
    for (int i = 0; i < 6; i++) {
        err = NULL;
        CHECK(connect_opts("http://127.0.0.1:9", bad[i], &err) == NULL &&
                  t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "options_json"),
              "connections %s refused", bad[i]);
    }
    err = NULL;
    BlazenFuture *bf = blazen_controlplane_client_connect_with_options("http://127.0.0.1:9", "{\"connections\":0}");
    CHECK(blazen_future_poll(bf) == 1 && blazen_future_take_controlplane_client(bf, NULL, &err) == -1 &&
              t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "options_json"),
          "a future-returning connect fails at once on a bad count");
    blazen_future_free(bf);

    BlazenControlPlaneServer *server = NULL;
    CHECK(blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) == 0, "server");
    char *ep = blazen_controlplane_server_endpoint(server);
    const char *good[] = {"{\"connections\":1}", "{\"connections\":3}", "{\"connections\":64}", NULL};
    for (int g = 0; g < 4; g++) {
        err = NULL;
        BlazenControlPlaneClient *c = connect_opts(ep, good[g], &err);
        CHECK(c != NULL, "connect with %s", good[g] ? good[g] : "NULL (the default count)");
        blazen_error_free(err);
        if (c == NULL) continue;

        /* many calls at once, spread over the connections */
        enum { RUNS = 24 };
        BlazenFuture *subs[RUNS], *lists[RUNS];
        for (int i = 0; i < RUNS; i++) {
            subs[i] = blazen_controlplane_client_submit_workflow(c, "conn", "{}", NULL, true);
            lists[i] = blazen_controlplane_client_list_workers(c);
        }
        char *ids[RUNS] = {0};
        int ok = 0;
        for (int i = 0; i < RUNS; i++) {
            BlazenRunStateSnapshot *s = NULL;
            ok += t_await(subs[i], i % 2 ? T_BY_FD : T_BY_WAIT) &&
                  blazen_future_take_run_state_snapshot(subs[i], &s, NULL) == 0 &&
                  (ids[i] = blazen_run_state_snapshot_run_id(s)) != NULL;
            blazen_run_state_snapshot_free(s);
            blazen_future_free(subs[i]);
            ok += t_await(lists[i], T_BY_WAIT) && blazen_future_take_worker_info_list(lists[i], NULL, NULL) == 0;
            blazen_future_free(lists[i]);
        }
        CHECK(ok == 2 * RUNS, "%d of %d concurrent calls succeeded (%s)", ok, 2 * RUNS, good[g] ? good[g] : "NULL");

        /* per run: cancel then describe, made back to back without waiting;
         * the describe must see the cancel */
        BlazenFuture *cancels[RUNS], *describes[RUNS];
        for (int i = 0; i < RUNS; i++) {
            cancels[i] = blazen_controlplane_client_cancel_workflow(c, ids[i]);
            describes[i] = blazen_controlplane_client_describe_workflow(c, ids[i]);
        }
        int ordered = 0;
        for (int i = 0; i < RUNS; i++) {
            BlazenRunStateSnapshot *s = NULL;
            blazen_future_wait(describes[i]);
            if (blazen_future_take_run_state_snapshot(describes[i], &s, NULL) == 0 &&
                blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_CANCELLED)
                ordered++;
            blazen_run_state_snapshot_free(s);
            blazen_future_wait(cancels[i]);
            blazen_future_free(cancels[i]);
            blazen_future_free(describes[i]);
        }
        CHECK(ordered == RUNS, "describe after cancel saw CANCELLED for %d of %d runs (%s)", ordered, RUNS,
              good[g] ? good[g] : "NULL");

        /* blocking calls and subscriptions on the same client */
        BlazenRunStateSnapshot *s = NULL;
        CHECK(blazen_controlplane_client_describe_workflow_blocking(c, ids[0], &s, NULL) == 0 &&
                  blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_CANCELLED,
              "blocking describe");
        blazen_run_state_snapshot_free(s);
        Sink sinks[3] = {0};
        BlazenControlPlaneSubscription *subsn[3] = {0};
        for (int i = 0; i < 3; i++) {
            BlazenRunEventSinkVTable vt = {&sinks[i], s_drop, s_event, s_close, s_error};
            int rc = i < 2 ? blazen_controlplane_client_subscribe_all(c, NULL, vt, &subsn[i], NULL)
                           : blazen_controlplane_client_subscribe_run_events(c, ids[1], vt, &subsn[i], NULL);
            CHECK(rc == 0, "subscription %d opens", i);
        }
        CHECK(t_wait_until(&sinks[2].closes, 1, 20000), "the ended run's subscription closes");
        BlazenRunStateSnapshot *p = NULL;
        CHECK(blazen_controlplane_client_submit_workflow_blocking(c, "conn", "{}", NULL, true, &p, NULL) == 0,
              "submit while subscribed");
        char *pid = blazen_run_state_snapshot_run_id(p);
        blazen_run_state_snapshot_free(p);
        blazen_controlplane_client_cancel_workflow_blocking(c, pid, NULL, NULL);
        CHECK(t_wait_until(&sinks[0].events, 1, 20000) && t_wait_until(&sinks[1].events, 1, 20000),
              "both subscribe_all streams get the new run's events");
        blazen_string_free(pid);
        for (int i = 0; i < 3; i++) blazen_controlplane_subscription_free(subsn[i]);
        for (int i = 0; i < 3; i++) CHECK(t_settled(&sinks[i].drops, 1), "sink %d dropped once", i);
        for (int i = 0; i < RUNS; i++) blazen_string_free(ids[i]);
        blazen_controlplane_client_free(c);
    }
    blazen_controlplane_server_free(server);
    blazen_string_free(ep);
}

/* Threads named `blazen-cp`: a control plane's own. */
static int control_plane_threads(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], name[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(name, sizeof name, f) && strcmp(name, "blazen-cp\n") == 0) n++;
        fclose(f);
    }
    if (d) closedir(d);
    return n;
}

/* `threads`: the range is checked; a control plane runs on as many threads
 * of its own as it says (by default one per CPU, at least one), and serves
 * from them. */
static void test_server_threads(void) {
    BlazenError *err = NULL;
    const char *bad[] = {"{\"threads\":0}", "{\"threads\":257}", "{\"threads\":-1}", "{\"threads\":\"2\"}",
                         "{\"threads\":1.5}"};
    for (int i = 0; i < 5; i++) {
        err = NULL;
        CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", bad[i], NULL, &err) == -1 &&
                  t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "options_json"),
              "server options %s refused", bad[i]);
    }
    const char *opts[] = {NULL, "{\"threads\":3}", "{\"threads\":1}"};
    int want[] = {0, 3, 1}; /* 0: at least one */
    for (int i = 0; i < 3; i++) {
        /* The threads of servers freed earlier are let go without waiting
         * for them: they end soon after. */
        int left = 0;
        for (int t = 0; t < 500 && (left = control_plane_threads()) > 0; t++) t_sleep_ms(10);
        CHECK(left == 0, "the threads of freed control planes end (%d left)", left);
        BlazenControlPlaneServer *server = NULL;
        CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", opts[i], &server, NULL) == 0,
              "server with %s", opts[i] ? opts[i] : "no options");
        if (!server) continue;
        /* A thread is named once it has started running: give the last
         * ones a moment. More than asked for never becomes fewer. */
        int n = control_plane_threads();
        for (int t = 0; t < 500 && (want[i] ? n < want[i] : n < 1); t++) {
            t_sleep_ms(10);
            n = control_plane_threads();
        }
        CHECK(want[i] ? n == want[i] : n >= 1, "%d threads of its own (%d)", want[i], n);
        char *ep = blazen_controlplane_server_endpoint(server);
        BlazenControlPlaneClient *c = connect_opts(ep, NULL, NULL);
        BlazenWorkerInfoList *l = NULL;
        CHECK(c && blazen_controlplane_client_list_workers_blocking(c, &l, NULL) == 0, "it serves");
        blazen_worker_info_list_free(l);
        blazen_controlplane_client_free(c);
        blazen_controlplane_server_shutdown(server);
        blazen_controlplane_server_free(server);
        blazen_string_free(ep);
    }
    int left = 0;
    for (int t = 0; t < 500 && (left = control_plane_threads()) > 0; t++) t_sleep_ms(10);
    CHECK(left == 0, "its threads end once it is freed (%d left)", left);
}

int main(void) {
    /* A guard against hangs, not a time limit: valgrind runs ~50x slower. */
    alarm(getenv("BLAZEN_UNDER_TOOL") ? 900 : 120);
    unsetenv("BLAZEN_PEER_TOKEN");
    T_RUN(test_tokens);
    T_RUN(test_bad_options);
    T_RUN(test_connections);
    T_RUN(test_server_threads);
    return t_finish();
}
