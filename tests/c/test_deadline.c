/* Options that do what they say: `deadline_ms` fails a run that is still
 * PENDING or RUNNING when it passes (kind TIMEOUT, the running handler is
 * told to cancel, a late result does not revive the run, and a run that
 * expired in the queue is never handed to a worker); capability kinds must
 * be `workflow:NAME`; a handler that returns 0 but stores an error fails
 * its run with that error; a failed run exposes its error's kind. */
#include "harness.h"

#include <stdatomic.h>

static atomic_int drops, handled, saw_cancel, sleepy_returned, late_handled;

static void drop_ud(void *ud) {
    (void)ud;
    atomic_fetch_add(&drops, 1);
}

static int32_t handler(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *wf, const char *input,
                       char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)run_id;
    atomic_fetch_add(&handled, 1);
    if (strcmp(wf, "sleepy") == 0) {
        /* Runs until told to cancel (at most 10 s), then claims success. */
        for (int i = 0; i < 1000 && !blazen_assignment_context_is_cancelled(ctx); i++) t_sleep_ms(10);
        if (blazen_assignment_context_is_cancelled(ctx)) atomic_fetch_add(&saw_cancel, 1);
        *out_json = blazen_string_alloc("\"finished anyway\"");
        atomic_fetch_add(&sleepy_returned, 1);
        return 0;
    }
    if (strcmp(wf, "late") == 0) atomic_fetch_add(&late_handled, 1);
    if (strcmp(wf, "both") == 0) {
        /* Status 0 with an error: the error wins, the output is freed. */
        *out_json = blazen_string_alloc("{\"ignored\":true}");
        *out_err = blazen_error_from_json("{\"kind\":\"Compute\",\"message\":\"out of memory on the device\"}");
        return 0;
    }
    if (strcmp(wf, "invalid") == 0) {
        *out_err = blazen_error_from_json("{\"kind\":\"Validation\",\"message\":\"input needs a field\"}");
        return 1;
    }
    if (strcmp(wf, "silent") == 0) return 7;
    *out_json = blazen_string_alloc(input);
    return 0;
}

static BlazenRunStateSnapshot *wait_terminal(BlazenControlPlaneClient *c, const char *id) {
    for (int i = 0; i < 3000; i++) {
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(c, id, &s, NULL) == 0 &&
            blazen_run_state_snapshot_status(s) >= BLAZEN_RUN_STATUS_COMPLETED)
            return s;
        blazen_run_state_snapshot_free(s);
        t_sleep_ms(10);
    }
    return NULL;
}

static char *submit(BlazenControlPlaneClient *c, const char *wf, const char *options, bool wait) {
    BlazenRunStateSnapshot *s = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_client_submit_workflow_with_options_blocking(c, wf, "{}", NULL, wait, options, &s, &err)) {
        t_err_is(err, 0, NULL);
        return NULL;
    }
    char *id = blazen_run_state_snapshot_run_id(s);
    blazen_run_state_snapshot_free(s);
    return id;
}

/* Checks a terminal run: FAILED with `kind`, message containing `text`. */
static void check_failed(BlazenControlPlaneClient *c, const char *id, uint32_t kind, const char *text,
                         const char *what) {
    BlazenRunStateSnapshot *s = id ? wait_terminal(c, id) : NULL;
    CHECK(s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_FAILED, "%s: FAILED", what);
    CHECK(s && blazen_run_state_snapshot_error_kind(s) == kind, "%s: error kind %u (got %u)", what, kind,
          s ? blazen_run_state_snapshot_error_kind(s) : 0);
    char *msg = s ? blazen_run_state_snapshot_error(s) : NULL;
    CHECK(msg && strstr(msg, text) && msg[0] != '[', "%s: message has \"%s\" and no kind tag: %s", what, text,
          msg ? msg : "(none)");
    blazen_string_free(msg);
    blazen_run_state_snapshot_free(s);
}

static BlazenControlPlaneWorker *start_worker(const char *ep, const char *node, const char *caps, BlazenFuture **run) {
    char opts[512];
    snprintf(opts, sizeof opts, "{\"capabilities\":%s,\"admission\":{\"mode\":\"Fixed\",\"max_in_flight\":4}}", caps);
    BlazenContextHandlerVTable vt = {(void *)&drops, drop_ud, handler, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_worker_new_with_options_blocking(ep, node, opts, vt, &w, &err) != 0) {
        t_err_is(err, 0, NULL);
        return NULL;
    }
    *run = blazen_controlplane_worker_run(w);
    return w;
}

static int wait_listed(BlazenControlPlaneClient *c, size_t n) {
    for (int i = 0; i < 1000; i++) {
        BlazenWorkerInfoList *l = NULL;
        size_t got = 0;
        if (blazen_controlplane_client_list_workers_blocking(c, &l, NULL) == 0) got = blazen_worker_info_list_count(l);
        blazen_worker_info_list_free(l);
        if (got == n) return 1;
        t_sleep_ms(10);
    }
    return 0;
}

int main(void) {
    alarm(300);
    BlazenControlPlaneServer *server = NULL;
    CHECK(blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) == 0, "server");
    char *ep = blazen_controlplane_server_endpoint(server);
    BlazenControlPlaneClient *client = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(ep, &client, NULL) == 0, "connect");

    /* Handler tables given to worker_new: each is dropped once. */
    int tables = 0;
    T_CASE("capability_kinds") {
        BlazenAssignmentHandlerVTable plain = {(void *)&drops, drop_ud, NULL, NULL, NULL};
        BlazenError *err = NULL;
        BlazenControlPlaneWorker *bad = NULL;
        tables++;
        CHECK(blazen_controlplane_worker_new_blocking(ep, "bad", "[{\"kind\":\"echo\",\"version\":0}]", NULL, 0, 1,
                                                      plain, &bad, &err) == -1 &&
                  t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "capabilities_json"),
              "a kind without workflow: is a VALIDATION error naming capabilities_json");
        err = NULL;
        BlazenContextHandlerVTable ctxvt = {(void *)&drops, drop_ud, handler, NULL, NULL};
        tables++;
        CHECK(blazen_controlplane_worker_new_with_options_blocking(
                  ep, "bad", "{\"capabilities\":[{\"kind\":\"workflow:\"}]}", ctxvt, &bad, &err) == -1 &&
                  t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "options_json"),
              "an empty workflow name is a VALIDATION error naming options_json");
        CHECK(t_settled(&drops, 2), "both refused workers' user_data dropped once");
    }

    /* ---- a deadline that passes while PENDING (before and after the
     * worker starts) ------------------------------------------------------ */
    char *pending = NULL, *fresh = NULL, *sleepy = NULL, *both = NULL, *invalid = NULL, *silent = NULL;
    TCase while_pending = {.name = "deadline_while_pending"};
    T_OPEN(&while_pending);
    T_PART(&while_pending, {
        pending = submit(client, "late", "{\"deadline_ms\":300}", true);
        CHECK(pending != NULL, "late run queued");
        check_failed(client, pending, BLAZEN_ERROR_KIND_TIMEOUT, "deadline_ms (300) passed while it was PENDING",
                     "pending past its deadline");
    });

    BlazenFuture *running = NULL;
    tables++;
    BlazenControlPlaneWorker *w = start_worker(
        ep, "deadline-w",
        "[{\"kind\":\"workflow:late\"},{\"kind\":\"workflow:sleepy\"},{\"kind\":\"workflow:both\"},"
        "{\"kind\":\"workflow:invalid\"},{\"kind\":\"workflow:silent\"},{\"kind\":\"workflow:echo\"}]",
        &running);
    CHECK(w && wait_listed(client, 1), "worker listed");
    T_PART(&while_pending, {
        /* A fresh run of the same workflow completes, so the queue has been
         * drained past the expired one, which must still be FAILED and must
         * never have reached the handler. */
        fresh = submit(client, "late", NULL, true);
        BlazenRunStateSnapshot *s = fresh ? wait_terminal(client, fresh) : NULL;
        CHECK(s && blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_COMPLETED, "fresh late run COMPLETED");
        CHECK(s && blazen_run_state_snapshot_error_kind(s) == 0, "a completed run has no error kind");
        blazen_run_state_snapshot_free(s);
        t_sleep_ms(300);
        check_failed(client, pending, BLAZEN_ERROR_KIND_TIMEOUT, "PENDING", "expired run after a worker came");
        CHECK(atomic_load(&late_handled) == 1, "the expired run never reached the handler (%d calls)",
              atomic_load(&late_handled));
    });
    T_CLOSE(&while_pending);

    T_CASE("deadline_while_running") {
        sleepy = submit(client, "sleepy", "{\"deadline_ms\":500}", false);
        /* The control plane's timer (from submission) and the worker's own
         * (from receipt) both run; either may report first. */
        check_failed(client, sleepy, BLAZEN_ERROR_KIND_TIMEOUT, "deadline", "running past its deadline");
        CHECK(t_wait_until(&sleepy_returned, 1, 15000), "the handler returned");
        CHECK(atomic_load(&saw_cancel) == 1, "the handler saw its run cancelled");
        t_sleep_ms(300); /* its late "success" would land now */
        check_failed(client, sleepy, BLAZEN_ERROR_KIND_TIMEOUT, "deadline", "late result ignored");
    }

    T_CASE("handler_results") {
        both = submit(client, "both", NULL, false);
        check_failed(client, both, BLAZEN_ERROR_KIND_COMPUTE, "out of memory on the device",
                     "status 0 with an error: the error wins");
        invalid = submit(client, "invalid", NULL, false);
        check_failed(client, invalid, BLAZEN_ERROR_KIND_VALIDATION, "input needs a field", "handler's own kind");
        silent = submit(client, "silent", NULL, false);
        check_failed(client, silent, BLAZEN_ERROR_KIND_WORKFLOW, "status 7", "failure without an error");
    }

    blazen_controlplane_worker_shutdown(w);
    blazen_future_wait(running);
    blazen_future_free(running);
    blazen_controlplane_worker_free(w);
    CHECK(t_settled(&drops, tables), "worker's user_data dropped once");
    char *ids[] = {pending, fresh, sleepy, both, invalid, silent};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) blazen_string_free(ids[i]);
    blazen_controlplane_client_free(client);
    blazen_string_free(ep);
    blazen_controlplane_server_shutdown(server);
    blazen_controlplane_server_free(server);
    return t_finish();
}
