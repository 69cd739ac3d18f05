/* What differs between the library's two builds, checked on each: the
 * surface the library reports, the connect and worker_new functions (a
 * bearer_token in the 0.6.x surface), and the handler table (the 0.6.x
 * `handle` gets the run's context after input_json, for events and a
 * human-in-the-loop round trip through
 * `blazen_assignment_context_request_input`, answered with
 * `blazen_controlplane_client_respond_to_input`). This suite runs on every
 * surface. */
#include "harness.h"

#include <pthread.h>

static BlazenControlPlaneClient *client;
static char *endpoint;

#if BLAZEN_SURFACE == 6
#define TOKEN "s3cret"
#define GOOD_TOKEN TOKEN
#define SERVER_OPTIONS "{\"bearer_token\":\"" TOKEN "\"}"
#else
#define GOOD_TOKEN NULL
#define SERVER_OPTIONS NULL
#endif

typedef struct {
    atomic_int drops, handled, ctx_ok, answered;
} Host;

static void h_drop(void *ud) { atomic_fetch_add(&((Host *)ud)->drops, 1); }

/* Emits "progress", asks for input and answers with the answer. */
static int32_t serve(Host *h, const BlazenAssignmentContext *ctx, const char *run_id, char **out_json,
                     BlazenError **out_err) {
    atomic_fetch_add(&h->handled, 1);
    if (t_str_eq(blazen_assignment_context_run_id(ctx), run_id)) atomic_fetch_add(&h->ctx_ok, 1);
    if (blazen_assignment_context_emit_event(ctx, "progress", "{\"step\":1}", out_err) != 0) return 1;
    return blazen_assignment_context_request_input(ctx, "Approve?", "{\"level\":2}", 20000, out_json, out_err);
}

#if BLAZEN_SURFACE == 6
static int32_t h_handle(void *ud, const char *run_id, const char *wf, const char *input,
                        const BlazenAssignmentContext *ctx, char **out_json, BlazenError **out_err) {
    (void)wf;
    (void)input;
    return serve(ud, ctx, run_id, out_json, out_err);
}
#else
static int32_t h_handle(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *wf,
                        const char *input, char **out_json, BlazenError **out_err) {
    (void)wf;
    (void)input;
    return serve(ud, ctx, run_id, out_json, out_err);
}
#endif

/* The worker, made with each surface's own table. */
static BlazenControlPlaneWorker *make_worker(Host *h, const char *token, BlazenError **err) {
    BlazenControlPlaneWorker *w = NULL;
    const char *caps = "[{\"kind\":\"workflow:ask\",\"version\":0}]";
#if BLAZEN_SURFACE == 6
    BlazenAssignmentHandlerVTable vt = {h, h_drop, h_handle, NULL, NULL};
    blazen_controlplane_worker_new_blocking(endpoint, "surface-w", caps, NULL, 0, 2, token, vt, &w, err);
#else
    (void)token;
    BlazenContextHandlerVTable vt = {h, h_drop, h_handle, NULL, NULL};
    blazen_controlplane_worker_new_with_options_blocking(endpoint, "surface-w", "{\"capabilities\":[{\"kind\":\"workflow:ask\"}]}",
                                                         vt, &w, err);
    (void)caps;
#endif
    return w;
}

/* The orchestrator's sink answers input.request. */
static void s_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    Host *h = ud;
    (void)ts;
    if (strcmp(type, "input.request") != 0) return;
    char req[64];
    if (!t_request_id(data, req, sizeof req)) return;
    BlazenFuture *f = blazen_controlplane_client_respond_to_input(client, run_id, req, "{\"approved\":true}");
    BlazenError *err = NULL;
    if (blazen_future_wait(f) == 0 && blazen_future_take_unit(f, &err) == 0) atomic_fetch_add(&h->answered, 1);
    blazen_error_free(err);
    blazen_future_free(f);
}

static void *run_thread(void *arg) {
    return (void *)(intptr_t)blazen_controlplane_worker_run_blocking(arg, NULL);
}

static void connects(void) {
    BlazenError *err = NULL;
    BlazenControlPlaneClient *c = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, T_TOKEN(GOOD_TOKEN) &c, &err) == 0, "connect");
    BlazenWorkerInfoList *l = NULL;
    CHECK(blazen_controlplane_client_list_workers_blocking(c, &l, &err) == 0, "a call with the token");
    blazen_worker_info_list_free(l);
    blazen_controlplane_client_free(c);

    BlazenFuture *f = blazen_controlplane_client_connect(endpoint T_TOKEN_LAST(GOOD_TOKEN));
    CHECK(blazen_future_wait(f) == 0 && blazen_future_take_controlplane_client(f, &c, NULL) == 0,
          "connect by future");
    blazen_future_free(f);
    blazen_controlplane_client_free(c);
#if BLAZEN_SURFACE == 6
    c = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, "wrong", &c, &err) == 0, "connect, wrong token");
    CHECK(blazen_controlplane_client_list_workers_blocking(c, &l, &err) == -1 &&
              t_str_eq(blazen_error_subkind(err), "ControlPlaneUnauthenticated"),
          "a wrong token: ControlPlaneUnauthenticated");
    blazen_error_free(err);
    blazen_controlplane_client_free(c);
    err = NULL;
    c = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, "\xff", &c, &err) == -1 &&
              t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "bearer_token"),
          "a non-UTF-8 token is a VALIDATION error naming bearer_token");
    CHECK(c == NULL, "no client on error");
#endif
}

static void round_trip(void) {
    Host h = {0};
    BlazenError *err = NULL;
    BlazenControlPlaneWorker *w = make_worker(&h, GOOD_TOKEN, &err);
    CHECK(w != NULL, "worker");
    pthread_t t;
    pthread_create(&t, NULL, run_thread, w);
    /* `subscribe_all` starts from now: open before the run can ask. */
    Host sink = {0};
    BlazenRunEventSinkVTable vt = {&sink, h_drop, s_event, NULL, NULL};
    BlazenControlPlaneSubscription *sub = NULL;
    CHECK(blazen_controlplane_client_subscribe_all(client, NULL, vt, &sub, NULL) == 0, "subscribe");
    BlazenRunStateSnapshot *s = NULL;
    CHECK(blazen_controlplane_client_submit_workflow_blocking(client, "ask", "{}", NULL, true, &s, NULL) == 0,
          "submit");
    char *id = blazen_run_state_snapshot_run_id(s);
    blazen_run_state_snapshot_free(s);
    uint32_t st = 99;
    char *out = NULL;
    for (int i = 0; i < 2000 && st != BLAZEN_RUN_STATUS_COMPLETED && st != BLAZEN_RUN_STATUS_FAILED; i++) {
        t_sleep_ms(10);
        if (blazen_controlplane_client_describe_workflow_blocking(client, id, &s, NULL) == 0) {
            st = blazen_run_state_snapshot_status(s);
            if (st == BLAZEN_RUN_STATUS_COMPLETED) out = blazen_run_state_snapshot_output_json(s);
            blazen_run_state_snapshot_free(s);
        }
    }
    CHECK(st == BLAZEN_RUN_STATUS_COMPLETED, "the run completed (%u)", st);
    CHECK(out && strstr(out, "\"approved\":true"), "its output is the orchestrator's answer (%s)", out ? out : "");
    blazen_string_free(out);
    CHECK(atomic_load(&h.ctx_ok) >= 1, "handle got its run's context");
    CHECK(atomic_load(&sink.answered) >= 1, "the sink answered input.request");
    blazen_controlplane_subscription_free(sub);
    blazen_controlplane_worker_shutdown(w);
    pthread_join(t, NULL);
    CHECK(atomic_load(&h.drops) == 1, "the worker's table was released when its run ended");
    blazen_controlplane_worker_free(w);
    blazen_string_free(id);
}

int main(void) {
    alarm(300);
    BlazenControlPlaneServer *server = NULL;
    if (blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", SERVER_OPTIONS, &server, NULL) != 0)
        return 1;
    endpoint = blazen_controlplane_server_endpoint(server);
    CHECK(blazen_surface() == BLAZEN_SURFACE, "blazen_surface() %u is the header's %d", blazen_surface(),
          BLAZEN_SURFACE);
    CHECK(BLAZEN_SURFACE == BLAZEN_SURFACE_V0_5 || BLAZEN_SURFACE == BLAZEN_SURFACE_V0_6, "a known surface");
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, T_TOKEN(GOOD_TOKEN) &client, NULL) == 0, "client");
    T_RUN(connects);
    T_RUN(round_trip);
    blazen_controlplane_client_free(client);
    blazen_controlplane_server_free(server);
    blazen_string_free(endpoint);
    return t_finish();
}
