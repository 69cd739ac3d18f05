/* The orchestrator client against a real embedded control plane: every
 * operation through its blocking and future entry points, futures awaited
 * three ways, and bad arguments of every kind. */
#include "harness.h"

static BlazenControlPlaneClient *client;
static const char *BAD_UTF8 = "\xff\xfe-not-utf8";

static BlazenRunStateSnapshot *submit_pending(void) {
    BlazenRunStateSnapshot *snap = NULL;
    BlazenError *err = NULL;
    int rc = blazen_controlplane_client_submit_workflow_blocking(
        client, "nobody-runs-this", "{\"n\": 1}", "[\"zone=eu\"]", true, &snap, &err);
    CHECK(rc == 0, "submit with wait_for_worker=true");
    blazen_error_free(err);
    return snap;
}

static void test_errors_and_strings(void) {
    char *v = blazen_version();
    CHECK(v != NULL && strlen(v) > 0, "version");
    blazen_string_free(v);
    CHECK(blazen_init() == 0 && blazen_init() == 0, "init is idempotent");

    char *s = blazen_string_alloc("hello");
    CHECK(t_str_eq(s, "hello"), "string_alloc copies");
    CHECK(blazen_string_alloc(NULL) == NULL, "string_alloc(NULL)");
    blazen_string_free(NULL);
    blazen_string_array_free(NULL, 3);

    CHECK(blazen_error_from_json(NULL) == NULL, "from_json(NULL) is NULL");
    BlazenError *e = blazen_error_from_json(
        "{\"kind\":\"RateLimit\",\"message\":\"slow down\",\"retry_after_ms\":250}");
    CHECK(blazen_error_kind(e) == BLAZEN_ERROR_KIND_RATE_LIMIT, "from_json kind");
    CHECK(t_str_eq(blazen_error_message(e), "slow down"), "from_json message");
    CHECK(blazen_error_retry_after_ms(e) == 250, "retry_after_ms");
    CHECK(blazen_error_subkind(e) == NULL, "no subkind on RateLimit");
    CHECK(blazen_error_elapsed_ms(e) == 0, "elapsed_ms n/a");
    blazen_error_free(e);

    e = blazen_error_from_json(
        "{\"kind\":\"CallerError\",\"message\":\"boom\",\"name\":\"KeyError\","
        "\"properties_json\":\"{\\\"key\\\":\\\"x\\\"}\"}");
    CHECK(blazen_error_kind(e) == BLAZEN_ERROR_KIND_CALLER, "caller kind");
    CHECK(t_str_eq(blazen_error_name(e), "KeyError"), "caller name");
    CHECK(t_str_eq(blazen_error_properties_json(e), "{\"key\":\"x\"}"), "caller props");
    blazen_error_free(e);

    e = blazen_error_from_json("{\"kind\":\"Provider\",\"message\":\"m\",\"status\":503,"
                               "\"provider\":\"p\",\"endpoint\":\"u\",\"request_id\":\"r\","
                               "\"detail\":\"d\",\"subkind\":\"Http\"}");
    CHECK(blazen_error_status(e) == 503, "provider status");
    CHECK(t_str_eq(blazen_error_provider(e), "p") && t_str_eq(blazen_error_endpoint(e), "u") &&
              t_str_eq(blazen_error_request_id(e), "r") && t_str_eq(blazen_error_detail(e), "d") &&
              t_str_eq(blazen_error_subkind(e), "Http"),
          "provider fields");
    blazen_error_free(e);

    CHECK(t_err_is(blazen_error_from_json("{not json"), BLAZEN_ERROR_KIND_INTERNAL, "JSON"),
          "malformed from_json gives INTERNAL");
    CHECK(t_err_is(blazen_error_from_json(BAD_UTF8), BLAZEN_ERROR_KIND_INTERNAL, NULL),
          "non-UTF-8 from_json gives INTERNAL");
    CHECK(t_err_is(blazen_error_from_json("{\"kind\":\"Nope\",\"message\":\"x\"}"),
                   BLAZEN_ERROR_KIND_INTERNAL, "Nope"),
          "unknown kind");
    CHECK(blazen_error_kind(NULL) == 0 && blazen_error_message(NULL) == NULL &&
              blazen_error_retry_after_ms(NULL) == -1,
          "accessors on NULL");
    blazen_error_free(NULL);
}

static void test_workers_and_drain(void) {
    for (int how = -1; how <= T_BY_FD; how++) {
        BlazenWorkerInfoList *list = NULL;
        BlazenError *err = NULL;
        int rc;
        if (how < 0) {
            rc = blazen_controlplane_client_list_workers_blocking(client, &list, &err);
        } else {
            BlazenFuture *f = blazen_controlplane_client_list_workers(client);
            CHECK(t_await(f, (enum t_await)how), "await list by %s", t_await_name(how));
            rc = blazen_future_take_worker_info_list(f, &list, &err);
            blazen_future_free(f);
        }
        CHECK(rc == 0 && list != NULL, "list workers (%d)", how);
        CHECK(blazen_worker_info_list_count(list) == 0, "no workers yet");
        CHECK(blazen_worker_info_list_get(list, 0) == NULL, "get out of range");
        blazen_worker_info_list_free(list);
        blazen_error_free(err);
    }
    BlazenError *err = NULL;
    CHECK(blazen_controlplane_client_drain_worker_blocking(client, "ghost-node", false, &err) == -1,
          "drain of an unknown node fails");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_PEER, "ghost-node"), "drain error is PEER");

    BlazenFuture *f = blazen_controlplane_client_drain_worker(client, "ghost-node", true);
    CHECK(t_await(f, T_BY_FD), "await drain");
    err = NULL;
    CHECK(blazen_future_take_unit(f, &err) == -1, "drain future fails");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_PEER, NULL), "drain future error is PEER");
    blazen_future_free(f);
}

static void test_submit_describe_cancel(void) {
    /* no worker, no waiting: the control plane refuses */
    BlazenRunStateSnapshot *snap = NULL;
    BlazenError *err = NULL;
    int rc = blazen_controlplane_client_submit_workflow_blocking(client, "nobody-runs-this", "{}",
                                                                 NULL, false, &snap, &err);
    CHECK(rc == -1 && snap == NULL, "submit without a worker fails");
    CHECK(blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER, "PEER");
    CHECK(t_str_eq(blazen_error_subkind(err), "ControlPlaneFailedPrecondition"), "subkind");
    blazen_error_free(err);

    snap = submit_pending();
    CHECK(snap != NULL && blazen_run_state_snapshot_status(snap) == BLAZEN_RUN_STATUS_PENDING,
          "pending run");
    char *run_id = blazen_run_state_snapshot_run_id(snap);
    CHECK(run_id != NULL && strlen(run_id) == 36, "run id is a UUID");
    CHECK(blazen_run_state_snapshot_started_at_ms(snap) > 1600000000000ULL, "started_at");
    uint64_t ms = 7;
    int32_t has = 7;
    CHECK(blazen_run_state_snapshot_completed_at_ms(snap, &ms, &has) == 0 && has == 0 && ms == 7,
          "not completed");
    CHECK(blazen_run_state_snapshot_completed_at_ms(NULL, &ms, &has) == -1, "NULL snapshot");
    CHECK(blazen_run_state_snapshot_output_json(snap) == NULL, "no output yet");
    CHECK(blazen_run_state_snapshot_assigned_to(snap) == NULL, "not assigned");
    blazen_run_state_snapshot_free(snap);

    /* describe, every way */
    for (int how = -1; how <= T_BY_FD; how++) {
        BlazenRunStateSnapshot *d = NULL;
        err = NULL;
        if (how < 0) {
            rc = blazen_controlplane_client_describe_workflow_blocking(client, run_id, &d, &err);
        } else {
            BlazenFuture *f = blazen_controlplane_client_describe_workflow(client, run_id);
            CHECK(t_await(f, (enum t_await)how), "await describe by %s", t_await_name(how));
            rc = blazen_future_take_run_state_snapshot(f, &d, &err);
            BlazenError *again = NULL;
            CHECK(blazen_future_take_run_state_snapshot(f, NULL, &again) == -1, "second take");
            CHECK(t_err_is(again, BLAZEN_ERROR_KIND_INTERNAL, "taken"), "second take INTERNAL");
            blazen_future_free(f);
        }
        CHECK(rc == 0, "describe (%d)", how);
        CHECK(t_str_eq(blazen_run_state_snapshot_run_id(d), run_id), "describe: same run");
        CHECK(blazen_run_state_snapshot_status(d) == BLAZEN_RUN_STATUS_PENDING, "still pending");
        blazen_run_state_snapshot_free(d);
        blazen_error_free(err);
    }

    /* describe an unknown run */
    err = NULL;
    CHECK(blazen_controlplane_client_describe_workflow_blocking(
              client, "00000000-0000-4000-8000-000000000000", NULL, &err) == -1,
          "unknown run");
    CHECK(t_str_eq(blazen_error_subkind(err), "ControlPlaneNotFound"), "NotFound subkind");
    blazen_error_free(err);

    /* cancel through the future, awaited by wait */
    BlazenFuture *f = blazen_controlplane_client_cancel_workflow(client, run_id);
    CHECK(t_await(f, T_BY_WAIT), "await cancel");
    BlazenRunStateSnapshot *c = NULL;
    err = NULL;
    CHECK(blazen_future_take_worker_info_list(f, NULL, &err) == -1, "wrong-type take fails");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_INTERNAL, NULL), "wrong-type take is INTERNAL");
    CHECK(blazen_future_take_run_state_snapshot(f, &c, NULL) == 0, "take after wrong type");
    CHECK(blazen_run_state_snapshot_status(c) == BLAZEN_RUN_STATUS_CANCELLED, "cancelled");
    blazen_run_state_snapshot_free(c);
    blazen_future_free(f);

    /* cancel of a second pending run, blocking; submit via future and fd */
    f = blazen_controlplane_client_submit_workflow(client, "nobody-runs-this", "[1,2]", "null", true);
    CHECK(t_await(f, T_BY_FD), "await submit by fd");
    CHECK(blazen_future_take_run_state_snapshot(f, &snap, NULL) == 0, "submit future");
    blazen_future_free(f);
    char *id2 = blazen_run_state_snapshot_run_id(snap);
    blazen_run_state_snapshot_free(snap);
    c = NULL;
    CHECK(blazen_controlplane_client_cancel_workflow_blocking(client, id2, &c, NULL) == 0 &&
              blazen_run_state_snapshot_status(c) == BLAZEN_RUN_STATUS_CANCELLED,
          "blocking cancel");
    blazen_run_state_snapshot_free(c);
    blazen_string_free(id2);
    blazen_string_free(run_id);

    /* futures freed or cancelled while pending */
    for (int i = 0; i < 50; i++) {
        blazen_future_free(
            blazen_controlplane_client_submit_workflow(client, "nobody", "{}", NULL, true));
    }
    f = blazen_controlplane_client_list_workers(client);
    blazen_future_cancel(f);
    CHECK(blazen_future_poll(f) == 1, "cancelled future is ready");
    err = NULL;
    rc = blazen_future_take_worker_info_list(f, NULL, &err);
    CHECK(rc == 0 || blazen_error_kind(err) == BLAZEN_ERROR_KIND_CANCELLED,
          "cancel: either finished first or CANCELLED");
    blazen_error_free(err);
    blazen_future_free(f);
    CHECK(blazen_future_poll(NULL) == -1 && blazen_future_wait(NULL) == -1 &&
              blazen_future_fd(NULL) == -1,
          "future functions on NULL");
    blazen_future_free(NULL);
}

static void test_bad_arguments(void) {
    BlazenError *err = NULL;
    BlazenRunStateSnapshot *snap = NULL;
#define BAD(call, param)                                                     \
    do {                                                                     \
        err = NULL;                                                          \
        CHECK((call) == -1, "%s fails", #call);                              \
        CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, param), "%s", #call); \
    } while (0)
    BAD(blazen_controlplane_client_connect_blocking(NULL, NULL, &err), "endpoint");
    BAD(blazen_controlplane_client_connect_blocking(BAD_UTF8, NULL, &err), "endpoint");
    BAD(blazen_controlplane_client_submit_workflow_blocking(NULL, "w", "{}", NULL, true, &snap, &err),
        "client");
    BAD(blazen_controlplane_client_submit_workflow_blocking(client, NULL, "{}", NULL, true, &snap, &err),
        "workflow_name");
    BAD(blazen_controlplane_client_submit_workflow_blocking(client, BAD_UTF8, "{}", NULL, true, &snap, &err),
        "workflow_name");
    BAD(blazen_controlplane_client_submit_workflow_blocking(client, "w", "{oops", NULL, true, &snap, &err),
        "input_json");
    BAD(blazen_controlplane_client_submit_workflow_blocking(client, "w", NULL, NULL, true, &snap, &err),
        "input_json");
    BAD(blazen_controlplane_client_submit_workflow_blocking(client, "w", "{}", "{\"a\":1}", true, &snap, &err),
        "required_tags_json");
    BAD(blazen_controlplane_client_submit_workflow_blocking(client, "w", "{}", "[1]", true, &snap, &err),
        "required_tags_json");
    BAD(blazen_controlplane_client_describe_workflow_blocking(client, "not-a-uuid", &snap, &err),
        "run_id");
    BAD(blazen_controlplane_client_describe_workflow_blocking(client, NULL, &snap, &err), "run_id");
    BAD(blazen_controlplane_client_cancel_workflow_blocking(client, "1234", &snap, &err), "run_id");
    BAD(blazen_controlplane_client_list_workers_blocking(NULL, NULL, &err), "client");
    BAD(blazen_controlplane_client_drain_worker_blocking(client, BAD_UTF8, false, &err), "node_id");
    BAD(blazen_controlplane_server_start_blocking("not an address", NULL, &err), "bind_addr");
    CHECK(snap == NULL, "no snapshot written on failure");

    /* the future variant: an already-failed future that says why */
    BlazenFuture *f = blazen_controlplane_client_describe_workflow(client, "zzz");
    CHECK(f != NULL && blazen_future_poll(f) == 1, "bad-input future is ready at once");
    err = NULL;
    CHECK(blazen_future_take_run_state_snapshot(f, &snap, &err) == -1, "bad-input future fails");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "run_id"), "names run_id");
    blazen_future_free(f);
    f = blazen_controlplane_client_submit_workflow(client, "w", "{", NULL, false);
    CHECK(t_await(f, T_BY_FD), "fd of a failed future is readable");
    err = NULL;
    CHECK(blazen_future_take_run_state_snapshot(f, NULL, &err) == -1 &&
              t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "input_json"),
          "future names input_json");
    blazen_future_free(f);
    f = blazen_controlplane_client_connect(NULL);
    err = NULL;
    CHECK(blazen_future_take_controlplane_client(f, NULL, &err) == -1 &&
              t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "endpoint"),
          "connect future names endpoint");
    blazen_future_free(f);

    /* accessors on NULL handles give neutral values */
    CHECK(blazen_run_state_snapshot_run_id(NULL) == NULL, "NULL snapshot run_id");
    CHECK(blazen_worker_info_list_count(NULL) == 0, "NULL list count");
    CHECK(blazen_worker_info_node_id(NULL) == NULL, "NULL info");
    blazen_run_state_snapshot_free(NULL);
    blazen_worker_info_list_free(NULL);
    blazen_controlplane_client_free(NULL);
#undef BAD
}

static void test_unreachable(void) {
    /* a port nobody listens on: refused promptly, reported as transport */
    BlazenControlPlaneClient *c = NULL;
    BlazenError *err = NULL;
    double t0 = t_now();
    int rc = blazen_controlplane_client_connect_blocking("http://127.0.0.1:9", &c, &err);
    double took = t_now() - t0;
    CHECK(rc == -1 && c == NULL, "unreachable endpoint fails");
    CHECK(blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER, "PEER");
    CHECK(t_str_eq(blazen_error_subkind(err), "ControlPlaneTransport"), "transport subkind");
    blazen_error_free(err);
    printf("unreachable endpoint failed after %.3f s\n", took);

    BlazenFuture *f = blazen_controlplane_client_connect("http://127.0.0.1:9");
    CHECK(t_await(f, T_BY_WAIT), "connect future resolves");
    err = NULL;
    CHECK(blazen_future_take_controlplane_client(f, &c, &err) == -1, "connect future fails");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_PEER, NULL), "PEER from future");
    blazen_future_free(f);
}

int main(void) {
    alarm(240); /* a hang is a failure, not a stuck CI run */
    BlazenControlPlaneServer *server = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, &err) != 0) {
        char *m = blazen_error_message(err);
        fprintf(stderr, "cannot start the embedded server: %s\n", m ? m : "?");
        return 1;
    }
    char *endpoint = blazen_controlplane_server_endpoint(server);
    CHECK(endpoint != NULL && strncmp(endpoint, "http://127.0.0.1:", 17) == 0, "endpoint");
    CHECK(blazen_controlplane_server_port(server) > 0, "port");

    BlazenFuture *f = blazen_controlplane_client_connect(endpoint);
    CHECK(t_await(f, T_BY_POLL), "await connect by poll");
    CHECK(blazen_future_take_controlplane_client(f, &client, NULL) == 0 && client != NULL,
          "connect future");
    blazen_future_free(f);
    BlazenControlPlaneClient *second = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, &second, NULL) == 0, "connect");
    blazen_controlplane_client_free(second);

    T_RUN(test_errors_and_strings);
    T_RUN(test_workers_and_drain);
    T_RUN(test_submit_describe_cancel);
    T_RUN(test_bad_arguments);
    T_RUN(test_unreachable);

    blazen_controlplane_client_free(client);
    blazen_controlplane_server_shutdown(server);
    blazen_controlplane_server_shutdown(server);
    BlazenControlPlaneClient *late = NULL;
    err = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, &late, &err) == -1,
          "connect after shutdown fails");
    blazen_error_free(err);
    blazen_controlplane_server_free(server);
    blazen_string_free(endpoint);
    CHECK(blazen_shutdown() == 0 && blazen_shutdown() == 0, "shutdown is idempotent");
    return t_finish();
}
