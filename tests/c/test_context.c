/* Workers built from options with a handler that gets its run's context:
 * events, a human-in-the-loop round trip answered from a subscription
 * callback, input timeouts, bad options, and a wrong bearer token. */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

static BlazenControlPlaneClient *client;

/* ---- handler with a context -------------------------------------------- */

typedef struct {
    atomic_int drops, handled, ctx_ok, cancelled_seen;
    atomic_uint attempt;
} Handler;

static void h_drop(void *ud) { atomic_fetch_add(&((Handler *)ud)->drops, 1); }

static int32_t h_handle(void *ud, BlazenAssignmentContext *ctx, const char *run_id,
                        const char *workflow, const char *input, char **out_json,
                        BlazenError **out_err) {
    Handler *h = ud;
    (void)input;
    atomic_fetch_add(&h->handled, 1);
    if (t_str_eq(blazen_assignment_context_run_id(ctx), run_id) &&
        !blazen_assignment_context_is_cancelled(ctx))
        atomic_fetch_add(&h->ctx_ok, 1);
    atomic_store(&h->attempt, blazen_assignment_context_attempt(ctx));
    if (blazen_assignment_context_emit_event(ctx, "progress", "{\"step\":1}", out_err) != 0) return 1;
    uint64_t timeout = strcmp(workflow, "ask_briefly") == 0 ? 200 : 20000;
    char *answer = NULL;
    if (blazen_assignment_context_request_input_blocking(ctx, "Approve?", "{\"level\":2}", timeout,
                                                         &answer, out_err) != 0)
        return 1; /* the run fails with the library's error message */
    *out_json = answer; /* a library string: handing it back is allowed */
    return 0;
}

static BlazenContextHandlerVTable h_vtable(Handler *h) {
    BlazenContextHandlerVTable vt = {h, h_drop, h_handle, NULL, NULL};
    return vt;
}

/* ---- the orchestrator's sink answers input requests --------------------- */

typedef struct {
    pthread_mutex_t mu;
    char types[16][32];
    int n;
    atomic_int closes, drops, answered;
} Sink;

static void s_drop(void *ud) { atomic_fetch_add(&((Sink *)ud)->drops, 1); }
static void s_close(void *ud) { atomic_fetch_add(&((Sink *)ud)->closes, 1); }

static void s_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    Sink *s = ud;
    (void)ts;
    pthread_mutex_lock(&s->mu);
    if (s->n < 16) snprintf(s->types[s->n++], sizeof s->types[0], "%s", type);
    pthread_mutex_unlock(&s->mu);
    if (strcmp(type, "input.request") != 0) return;
    char req[64];
    if (!t_request_id(data, req, sizeof req)) return;
    if (blazen_controlplane_client_respond_to_input_blocking(
            client, run_id, req, "{\"approved\":true,\"by\":\"c\"}", NULL) == 0)
        atomic_fetch_add(&s->answered, 1);
}

static int saw(Sink *s, const char *type) {
    pthread_mutex_lock(&s->mu);
    int found = 0;
    for (int i = 0; i < s->n; i++) found |= strcmp(s->types[i], type) == 0;
    pthread_mutex_unlock(&s->mu);
    return found;
}

static BlazenRunStateSnapshot *wait_terminal(const char *run_id) {
    for (int i = 0; i < 2000; i++) {
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(client, run_id, &s, NULL) == 0 &&
            blazen_run_state_snapshot_status(s) >= BLAZEN_RUN_STATUS_COMPLETED)
            return s;
        blazen_run_state_snapshot_free(s);
        t_sleep_ms(10);
    }
    return NULL;
}

static char *submit(const char *wf) {
    BlazenRunStateSnapshot *s = NULL;
    if (blazen_controlplane_client_submit_workflow_blocking(client, wf, "{}", NULL, true, &s, NULL)) return NULL;
    char *id = blazen_run_state_snapshot_run_id(s);
    blazen_run_state_snapshot_free(s);
    return id;
}

static void test_human_in_the_loop(const char *endpoint) {
    char *ask = submit("ask");
    Sink sink = {0};
    pthread_mutex_init(&sink.mu, NULL);
    BlazenRunEventSinkVTable svt = {&sink, s_drop, s_event, s_close, NULL};
    BlazenControlPlaneSubscription *sub = NULL;
    CHECK(blazen_controlplane_client_subscribe_run_events(client, ask, svt, &sub, NULL) == 0, "subscribe");

    Handler h = {0};
    BlazenControlPlaneWorker *w = NULL;
    BlazenError *err = NULL;
    const char *opts =
        "{\"capabilities\":[{\"kind\":\"workflow:ask\"},{\"kind\":\"workflow:ask_briefly\",\"version\":0}],"
        "\"tags\":{\"team\":\"c\"},\"labels\":{\"suite\":\"context\"},"
        "\"admission\":{\"mode\":\"Fixed\",\"max_in_flight\":2},\"heartbeat_ms\":500,"
        "\"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":50,\"max_backoff_ms\":200}}";
    CHECK(blazen_controlplane_worker_new_with_options_blocking(endpoint, "ctx-worker", opts, h_vtable(&h),
                                                               &w, &err) == 0,
          "worker from options");
    blazen_error_free(err);
    BlazenFuture *run = blazen_controlplane_worker_run(w);

    CHECK(t_wait_until(&sink.closes, 1, 20000), "the asked run ends");
    CHECK(atomic_load(&sink.answered) == 1, "input.request answered from the callback");
    CHECK(saw(&sink, "status.running") && saw(&sink, "progress") && saw(&sink, "input.request") &&
              saw(&sink, "status.completed"),
          "running, progress, input.request, completed seen");
    BlazenRunStateSnapshot *s = wait_terminal(ask);
    CHECK(s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_COMPLETED, "COMPLETED");
    CHECK(t_str_eq(blazen_run_state_snapshot_output_json(s), "{\"approved\":true,\"by\":\"c\"}"),
          "the run's output is the answer");
    blazen_run_state_snapshot_free(s);
    CHECK(atomic_load(&h.ctx_ok) == 1, "context run id matches, not cancelled");
    printf("attempt reported by the context: %u\n", atomic_load(&h.attempt));
    blazen_controlplane_subscription_free(sub);
    CHECK(t_settled(&sink.drops, 1), "sink dropped once");

    /* nobody answers: request_input times out and the run fails saying so */
    char *brief = submit("ask_briefly");
    s = wait_terminal(brief);
    CHECK(s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_FAILED, "unanswered run FAILED");
    CHECK(t_str_has(blazen_run_state_snapshot_error(s), "timed out"), "with the timeout's message");
    CHECK(t_str_has(blazen_run_state_snapshot_error(s), "(200 ms)"), "naming the limit");
    CHECK(blazen_run_state_snapshot_error_kind(s) == BLAZEN_ERROR_KIND_TIMEOUT, "of kind TIMEOUT (%u)",
          blazen_run_state_snapshot_error_kind(s));
    blazen_run_state_snapshot_free(s);

    blazen_controlplane_worker_shutdown(w);
    CHECK(t_await(run, T_BY_WAIT) && blazen_future_take_unit(run, NULL) == 0, "run returns 0");
    blazen_future_free(run);
    blazen_controlplane_worker_free(w);
    CHECK(t_settled(&h.drops, 1), "handler dropped once");
    blazen_string_free(ask);
    blazen_string_free(brief);
}

static void test_bad_options_and_context(const char *endpoint) {
    Handler h = {0};
    const char *bad[] = {"{\"capabilitys\":[]}", "{\"admission\":{\"mode\":\"Turbo\"}}",
                         "{\"retry\":{\"max_attempts\":-1}}", "{\"tags\":{\"a\":1}}",
                         "{\"cert_path\":\"/x.pem\"}", "[]"};
    for (int i = 0; i < 6; i++) {
        BlazenControlPlaneWorker *w = NULL;
        BlazenError *err = NULL;
        CHECK(blazen_controlplane_worker_new_with_options_blocking(endpoint, "bad", bad[i], h_vtable(&h), &w,
                                                                   &err) == -1 &&
                  w == NULL,
              "options %s refused", bad[i]);
        CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "options_json"), "names options_json (%s)", bad[i]);
    }
    CHECK(atomic_load(&h.drops) == 6, "user_data dropped once per refused call");

    BlazenError *err = NULL;
    CHECK(blazen_assignment_context_emit_event(NULL, "x", "{}", &err) == -1 &&
              t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "ctx"),
          "emit_event on NULL");
    CHECK(blazen_assignment_context_run_id(NULL) == NULL && !blazen_assignment_context_is_cancelled(NULL) &&
              blazen_assignment_context_attempt(NULL) == 0,
          "context accessors on NULL");
    char *out = (char *)1;
    err = NULL;
    CHECK(blazen_assignment_context_request_input_blocking(NULL, "p", "{}", 1, &out, &err) == -1 &&
              out == (char *)1 && t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "ctx"),
          "request_input on NULL leaves out_json alone");
}

static void test_wrong_token(void) {
    BlazenControlPlaneServer *locked = NULL;
    CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", "{\"bearer_token\":\"right\"}",
                                                                 &locked, NULL) == 0,
          "server with a token");
    char *ep = blazen_controlplane_server_endpoint(locked);
    Handler h = {0};
    BlazenControlPlaneWorker *w = NULL;
    CHECK(blazen_controlplane_worker_new_with_options_blocking(
              ep, "intruder", "{\"bearer_token\":\"wrong\",\"retry\":{\"max_attempts\":1}}", h_vtable(&h), &w,
              NULL) == 0,
          "worker with a wrong token");
    BlazenError *err = NULL;
    double t0 = t_now();
    CHECK(blazen_controlplane_worker_run_blocking(w, &err) == -1, "run fails");
    printf("wrong-token worker failed after %.3f s\n", t_now() - t0);
    CHECK(t_str_eq(blazen_error_subkind(err), "ControlPlaneUnauthenticated"), "Unauthenticated subkind");
    blazen_error_free(err);
    blazen_controlplane_worker_free(w);
    CHECK(t_settled(&h.drops, 1), "dropped once");

    /* without a retry policy (the crate's default retries forever) a
     * rejected token still fails run at once instead of hanging */
    w = NULL;
    CHECK(blazen_controlplane_worker_new_with_options_blocking(ep, "stubborn", "{\"bearer_token\":\"wrong\"}",
                                                               h_vtable(&h), &w, NULL) == 0,
          "worker with a wrong token and default retries");
    err = NULL;
    CHECK(blazen_controlplane_worker_run_blocking(w, &err) == -1, "run fails without retrying");
    CHECK(t_str_eq(blazen_error_subkind(err), "ControlPlaneUnauthenticated"), "Unauthenticated subkind again");
    blazen_error_free(err);
    blazen_controlplane_worker_free(w);
    CHECK(t_settled(&h.drops, 2), "dropped once more");

    w = NULL;
    CHECK(blazen_controlplane_worker_new_with_options_blocking(
              ep, "member", "{\"bearer_token\":\"right\",\"capabilities\":[{\"kind\":\"workflow:z\"}]}",
              h_vtable(&h), &w, NULL) == 0,
          "worker with the right token");
    BlazenFuture *run = blazen_controlplane_worker_run(w);
    BlazenControlPlaneClient *c = NULL;
    blazen_controlplane_client_connect_with_options_blocking(ep, "{\"bearer_token\":\"right\"}", &c, NULL);
    size_t n = 0;
    for (int i = 0; i < 500 && n == 0; i++) {
        BlazenWorkerInfoList *l = NULL;
        if (blazen_controlplane_client_list_workers_blocking(c, &l, NULL) == 0) n = blazen_worker_info_list_count(l);
        blazen_worker_info_list_free(l);
        if (n == 0) t_sleep_ms(10);
    }
    CHECK(n == 1, "the right token registers");
    CHECK(atomic_load(&h.drops) == 2, "nothing dropped while running");
    blazen_controlplane_worker_shutdown(w);
    blazen_future_wait(run);
    blazen_future_free(run);
    blazen_controlplane_worker_free(w);
    blazen_controlplane_client_free(c);
    blazen_controlplane_server_free(locked);
    blazen_string_free(ep);
}

int main(void) {
    alarm(180);
    unsetenv("BLAZEN_PEER_TOKEN");
    BlazenControlPlaneServer *server = NULL;
    if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) != 0) return 1;
    char *endpoint = blazen_controlplane_server_endpoint(server);
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, &client, NULL) == 0, "connect");
    T_RUN_ARGS(test_human_in_the_loop, endpoint);
    T_RUN_ARGS(test_bad_options_and_context, endpoint);
    T_RUN(test_wrong_token);
    blazen_controlplane_client_free(client);
    blazen_controlplane_server_free(server);
    blazen_string_free(endpoint);
    return t_finish();
}
