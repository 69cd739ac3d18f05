/* A handler output over the transport limit is no poison pill: its run
 * fails at once with a VALIDATION error naming the size and
 * BLAZEN_MAX_OUTPUT_BYTES, and the worker stays connected and serves the
 * next run; an output just under the limit goes through. This suite runs
 * on every surface. */
#include "harness.h"

#include <pthread.h>

static atomic_int handled;

static int32_t answer(const char *wf, const char *input, char **out_json) {
    atomic_fetch_add(&handled, 1);
    size_t n = 0;
    if (strcmp(wf, "huge") == 0) n = 5u * 1024 * 1024;
    if (strcmp(wf, "at_limit") == 0) n = BLAZEN_MAX_OUTPUT_BYTES - 2;
    if (n == 0) {
        *out_json = blazen_string_alloc(input);
        return 0;
    }
    /* A JSON string of n - 2 characters between its quotes: n bytes. */
    char *text = malloc(n + 1);
    memset(text, 'x', n);
    text[0] = '"';
    text[n - 1] = '"';
    text[n] = 0;
    *out_json = blazen_string_alloc(text);
    free(text);
    return 0;
}

static int32_t h_handle(T_HANDLE_PARAMS) {
    T_UNUSED_CTX();
    (void)ud;
    (void)run_id;
    (void)out_err;
    return answer(wf, input, out_json);
}

static void *run_thread(void *w) { return (void *)(intptr_t)blazen_controlplane_worker_run_blocking(w, NULL); }

/* Runs submitted by `finish`. */
static int submitted;

static BlazenRunStateSnapshot *finish(BlazenControlPlaneClient *c, const char *wf) {
    submitted++;
    BlazenRunStateSnapshot *s = NULL;
    if (blazen_controlplane_client_submit_workflow_blocking(c, wf, "{\"n\":1}", NULL, true, &s, NULL) != 0)
        return NULL;
    char *id = blazen_run_state_snapshot_run_id(s);
    for (int i = 0; i < 3000; i++) {
        uint32_t st = blazen_run_state_snapshot_status(s);
        if (st != BLAZEN_RUN_STATUS_PENDING && st != BLAZEN_RUN_STATUS_RUNNING) break;
        blazen_run_state_snapshot_free(s);
        s = NULL;
        t_sleep_ms(10);
        if (blazen_controlplane_client_describe_workflow_blocking(c, id, &s, NULL) != 0) break;
    }
    blazen_string_free(id);
    return s;
}

int main(void) {
    alarm(300);
    BlazenControlPlaneServer *server = NULL;
    if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) != 0) return 1;
    char *ep = blazen_controlplane_server_endpoint(server);
    BlazenControlPlaneClient *c = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(ep, T_TOKEN(NULL) &c, NULL) == 0, "client");
    const char *caps = "[{\"kind\":\"workflow:huge\",\"version\":0},{\"kind\":\"workflow:small\",\"version\":0},"
                       "{\"kind\":\"workflow:at_limit\",\"version\":0}]";
    BlazenAssignmentHandlerVTable vt = {NULL, NULL, h_handle, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    CHECK(blazen_controlplane_worker_new_blocking(ep, "limits", caps, NULL, 0, 2, T_TOKEN(NULL) vt, &w, NULL) == 0,
          "worker");
    pthread_t t;
    pthread_create(&t, NULL, run_thread, w);

    T_CASE("over_limit") {
        int before = atomic_load(&handled);
        BlazenRunStateSnapshot *s = finish(c, "huge");
        CHECK(s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_FAILED, "the 5 MB output's run FAILED");
        CHECK(s && blazen_run_state_snapshot_error_kind(s) == BLAZEN_ERROR_KIND_VALIDATION, "a VALIDATION error");
        char *e = s ? blazen_run_state_snapshot_error(s) : NULL;
        CHECK(e && strstr(e, "5242880 bytes") && strstr(e, "4128768-byte limit"), "naming the size and the limit: %s",
              e ? e : "");
        blazen_string_free(e);
        blazen_run_state_snapshot_free(s);
        CHECK(atomic_load(&handled) - before == 1, "handled once, not re-queued (%d)", atomic_load(&handled) - before);
    }

    T_CASE("next_run") {
        BlazenRunStateSnapshot *s = finish(c, "small");
        CHECK(s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_COMPLETED,
              "the worker serves the next run");
        blazen_run_state_snapshot_free(s);
    }

    T_CASE("at_limit") {
        BlazenRunStateSnapshot *s = finish(c, "at_limit");
        CHECK(s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_COMPLETED,
              "an output of BLAZEN_MAX_OUTPUT_BYTES goes through (%u)", s ? blazen_run_state_snapshot_status(s) : 99);
        blazen_run_state_snapshot_free(s);
    }
    CHECK(atomic_load(&handled) == submitted, "%d runs, %d handle calls", submitted, atomic_load(&handled));

    blazen_controlplane_worker_shutdown(w);
    pthread_join(t, NULL);
    blazen_controlplane_worker_free(w);
    blazen_controlplane_client_free(c);
    blazen_controlplane_server_free(server);
    blazen_string_free(ep);
    return t_finish();
}
