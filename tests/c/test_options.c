/* Beyond the reference surface: per-server bearer tokens, connect and
 * submit options, respond_to_input arguments, and subscriptions to runs
 * that have already ended. */
#include "harness.h"

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

    /* an ended run still gives one terminal event, then on_close */
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
    CHECK(t_wait_until(&sink.closes, 1, 20000), "on_close after the snapshot's terminal event");
    CHECK(atomic_load(&sink.events) == 1 && strcmp(sink.last_type, "status.cancelled") == 0,
          "exactly one terminal event (%d, %s)", atomic_load(&sink.events), sink.last_type);
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

int main(void) {
    alarm(120);
    unsetenv("BLAZEN_PEER_TOKEN");
    test_tokens();
    test_bad_options();
    return t_finish();
}
