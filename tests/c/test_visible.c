/* Every failure bounded, visible and named (what a new user hit):
 * - subscribing right after submitting misses nothing: 20 human-in-the-loop
 *   runs, each subscribed after its submit, see running, progress,
 *   input.request and completed; a finished run's subscription replays it;
 * - an answer to an input request the run never raised is refused, naming
 *   the request that is awaited;
 * - a run no connected worker can take gets `status.waiting` (also when
 *   the worker serves another version of the workflow);
 * - a run whose worker dies under it again and again (a worker process
 *   exits in `handle`, a supervisor restarts it) is re-run at most
 *   `max_requeues` times, each re-run with its `attempt`, then fails saying
 *   why;
 * - a worker that cannot reach its endpoint fails its run naming the
 *   endpoint and the cause; so does a call on a client whose control plane
 *   went away; RPC errors share one format;
 * - option errors name the key; a table without `handle` is refused. */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

static BlazenControlPlaneClient *client;
static char endpoint_g[64];

/* ---- a worker that asks for input ---------------------------------------- */

static int32_t ask(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *wf,
                   const char *input, char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)run_id;
    (void)wf;
    (void)input;
    if (blazen_assignment_context_emit_event(ctx, "progress", "{\"step\":1}", out_err) != 0) return 1;
    char *answer = NULL;
    if (blazen_assignment_context_request_input_blocking(ctx, "Approve?", "{}", 20000, &answer, out_err) != 0)
        return 1;
    *out_json = answer;
    return 0;
}

/* ---- a sink that records types and answers input requests ---------------- */

typedef struct {
    pthread_mutex_t mu;
    char types[32][32];
    int n;
    int answer; /* answer input requests from the callback */
    char request[64];
    char waiting[256]; /* the data of the last status.waiting */
    atomic_int closes, drops, requests;
} Sink;

static void s_drop(void *ud) { atomic_fetch_add(&((Sink *)ud)->drops, 1); }
static void s_close(void *ud) { atomic_fetch_add(&((Sink *)ud)->closes, 1); }

static void s_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    Sink *s = ud;
    (void)ts;
    pthread_mutex_lock(&s->mu);
    if (s->n < 32) snprintf(s->types[s->n++], sizeof s->types[0], "%s", type);
    if (strcmp(type, "status.waiting") == 0) snprintf(s->waiting, sizeof s->waiting, "%s", data);
    pthread_mutex_unlock(&s->mu);
    if (strcmp(type, "input.request") != 0) return;
    char req[64];
    if (!t_request_id(data, req, sizeof req)) return;
    pthread_mutex_lock(&s->mu);
    snprintf(s->request, sizeof s->request, "%s", req);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->requests, 1);
    if (s->answer) blazen_controlplane_client_respond_to_input_blocking(client, run_id, req, "{\"ok\":true}", NULL);
}

static int saw(Sink *s, const char *type) {
    pthread_mutex_lock(&s->mu);
    int found = 0;
    for (int i = 0; i < s->n; i++) found += strcmp(s->types[i], type) == 0;
    pthread_mutex_unlock(&s->mu);
    return found;
}

static BlazenControlPlaneSubscription *watch(const char *run_id, Sink *s, int answer) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->answer = answer;
    BlazenRunEventSinkVTable vt = {s, s_drop, s_event, s_close, NULL};
    BlazenControlPlaneSubscription *sub = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_client_subscribe_run_events(client, run_id, vt, &sub, &err) != 0) {
        t_err_is(err, 0, NULL);
        return NULL;
    }
    return sub;
}

static char *submit(const char *wf, bool wait, const char *options) {
    BlazenRunStateSnapshot *s = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_client_submit_workflow_with_options_blocking(client, wf, "{}", NULL, wait, options, &s,
                                                                         &err)) {
        t_err_is(err, 0, NULL);
        return NULL;
    }
    char *id = blazen_run_state_snapshot_run_id(s);
    blazen_run_state_snapshot_free(s);
    return id;
}

static BlazenRunStateSnapshot *wait_terminal(const char *run_id, int ms) {
    for (int i = 0; i < ms / 10; i++) {
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(client, run_id, &s, NULL) == 0 &&
            blazen_run_state_snapshot_status(s) >= BLAZEN_RUN_STATUS_COMPLETED)
            return s;
        blazen_run_state_snapshot_free(s);
        t_sleep_ms(10);
    }
    return NULL;
}

/* Waits until `n` workers are listed; 0 after 5 s. */
static int wait_workers(size_t n) {
    for (int i = 0; i < 500; i++) {
        BlazenWorkerInfoList *l = NULL;
        size_t got = 0;
        if (blazen_controlplane_client_list_workers_blocking(client, &l, NULL) == 0)
            got = blazen_worker_info_list_count(l);
        blazen_worker_info_list_free(l);
        if (got >= n) return 1;
        t_sleep_ms(10);
    }
    return 0;
}

enum { HITL_RUNS = 20 };

static void test_submit_then_subscribe(void) {
    int complete = 0;
    for (int i = 0; i < HITL_RUNS; i++) {
        char *id = submit("ask", false, NULL);
        Sink s;
        BlazenControlPlaneSubscription *sub = watch(id, &s, 1);
        CHECK(sub != NULL, "subscribe to run %d", i);
        CHECK(t_wait_until(&s.closes, 1, 30000), "run %d ends", i);
        int ok = saw(&s, "status.running") == 1 && saw(&s, "progress") == 1 && saw(&s, "input.request") == 1 &&
                 saw(&s, "status.completed") == 1;
        CHECK(ok, "run %d: running, progress, input.request, completed each seen once (%d events)", i, s.n);
        complete += ok;
        blazen_controlplane_subscription_free(sub);
        CHECK(t_settled(&s.drops, 1), "sink %d dropped once", i);
        if (i == HITL_RUNS - 1) {
            /* A run that has ended: its subscription replays it whole. */
            Sink late;
            sub = watch(id, &late, 0);
            CHECK(t_wait_until(&late.closes, 1, 5000), "the finished run's subscription closes");
            CHECK(saw(&late, "status.running") == 1 && saw(&late, "input.request") == 1 &&
                      saw(&late, "status.completed") == 1,
                  "and replays the run (%d events)", late.n);
            blazen_controlplane_subscription_free(sub);
        }
        blazen_string_free(id);
    }
    printf("submit then subscribe: %d of %d human-in-the-loop runs saw every event\n", complete, HITL_RUNS);
}

/* `started_at_ms` is the submission time; `status.running` says when a
 * worker took the run. */
static uint64_t running_ts;
static void ts_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    (void)ud;
    (void)run_id;
    (void)data;
    if (strcmp(type, "status.running") == 0) running_ts = ts;
}

static void test_started_at(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t before = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    BlazenRunStateSnapshot *s = NULL;
    CHECK(blazen_controlplane_client_submit_workflow_blocking(client, "nobody-yet", "{}", NULL, true, &s, NULL) == 0,
          "submit a run that waits");
    uint64_t started = blazen_run_state_snapshot_started_at_ms(s);
    CHECK(started >= before && started <= before + 5000, "started_at_ms is the submission time (%llu, %llu)",
          (unsigned long long)started, (unsigned long long)before);
    char *id = blazen_run_state_snapshot_run_id(s);
    blazen_run_state_snapshot_free(s);
    BlazenRunEventSinkVTable vt = {NULL, NULL, ts_event, NULL, NULL};
    BlazenControlPlaneSubscription *sub = NULL;
    CHECK(blazen_controlplane_client_subscribe_run_events(client, id, vt, &sub, NULL) == 0, "subscribed");
    t_sleep_ms(300);
    BlazenContextHandlerVTable hv = {NULL, NULL, ask, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    CHECK(blazen_controlplane_worker_new_with_options_blocking(
              endpoint_g, "late", "{\"capabilities\":[{\"kind\":\"workflow:nobody-yet\"}]}", hv, &w, NULL) == 0,
          "a worker arrives 300 ms later");
    BlazenFuture *run = blazen_controlplane_worker_run(w);
    for (int i = 0; i < 500 && running_ts == 0; i++) t_sleep_ms(10);
    CHECK(running_ts >= started + 250, "status.running is stamped when the worker took it (%llu ms later)",
          (unsigned long long)(running_ts - started));
    BlazenRunStateSnapshot *d = NULL;
    CHECK(blazen_controlplane_client_describe_workflow_blocking(client, id, &d, NULL) == 0 &&
              blazen_run_state_snapshot_started_at_ms(d) == started,
          "and started_at_ms stays the submission time");
    blazen_run_state_snapshot_free(d);
    blazen_controlplane_client_cancel_workflow_blocking(client, id, NULL, NULL);
    blazen_controlplane_subscription_free(sub);
    blazen_controlplane_worker_shutdown(w);
    CHECK(t_await(run, T_BY_WAIT), "worker run returns");
    blazen_future_free(run);
    blazen_controlplane_worker_free(w);
    blazen_string_free(id);
}

static void test_unknown_request_id(void) {
    char *id = submit("ask", false, NULL);
    Sink s;
    BlazenControlPlaneSubscription *sub = watch(id, &s, 0);
    CHECK(t_wait_until(&s.requests, 1, 20000), "the run asks for input");
    char req[64];
    pthread_mutex_lock(&s.mu);
    snprintf(req, sizeof req, "%s", s.request);
    pthread_mutex_unlock(&s.mu);

    BlazenError *err = NULL;
    CHECK(blazen_controlplane_client_respond_to_input_blocking(client, id, "no-such-request", "{}", &err) == -1,
          "an answer to a request never raised is refused");
    char *sub_kind = blazen_error_subkind(err);
    CHECK(t_str_eq(sub_kind, "ControlPlaneNotFound"), "as ControlPlaneNotFound");
    char *m = blazen_error_message(err);
    CHECK(m && strstr(m, "no-such-request") && strstr(m, req), "naming it and the awaited one: %s", m ? m : "?");
    CHECK(m && strncmp(m, "NotFound: ", 10) == 0, "in the one RPC error format: %s", m ? m : "?");
    blazen_string_free(m);
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_PEER, NULL), "PEER");

    CHECK(blazen_controlplane_client_respond_to_input_blocking(client, id, req, "{\"ok\":1}", NULL) == 0,
          "the awaited request is answered");
    err = NULL;
    CHECK(blazen_controlplane_client_respond_to_input_blocking(client, id, req, "{\"ok\":2}", &err) == -1,
          "a second answer to it is refused");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_PEER, "an answer"), "saying none awaits one");
    BlazenRunStateSnapshot *snap = wait_terminal(id, 20000);
    CHECK(snap && t_str_eq(blazen_run_state_snapshot_output_json(snap), "{\"ok\":1}"),
          "the run completes with the first answer");
    blazen_run_state_snapshot_free(snap);
    err = NULL;
    CHECK(blazen_controlplane_client_respond_to_input_blocking(client, id, req, "{\"ok\":3}", &err) == -1,
          "an answer after the run ended is refused");
    sub_kind = blazen_error_subkind(err);
    CHECK(t_str_eq(sub_kind, "ControlPlaneFailedPrecondition"), "as ControlPlaneFailedPrecondition");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_PEER, "has ended"), "saying the run has ended");

    /* Unknown runs: the same format. */
    err = NULL;
    CHECK(blazen_controlplane_client_describe_workflow_blocking(client, "00000000-0000-4000-8000-000000000001",
                                                                &snap, &err) == -1,
          "describe of an unknown run fails");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_PEER, "NotFound: "), "as NotFound: ...");
    blazen_controlplane_subscription_free(sub);
    blazen_string_free(id);
}

static void test_waiting(void) {
    char *id = submit("nobody", true, NULL);
    Sink s;
    BlazenControlPlaneSubscription *sub = watch(id, &s, 0);
    for (int i = 0; i < 500 && !saw(&s, "status.waiting"); i++) t_sleep_ms(10);
    CHECK(saw(&s, "status.waiting") == 1, "a run for a workflow nobody serves: status.waiting");
    pthread_mutex_lock(&s.mu);
    CHECK(strstr(s.waiting, "\"capability\":\"workflow:nobody\"") != NULL, "naming the capability: %s", s.waiting);
    pthread_mutex_unlock(&s.mu);
    blazen_controlplane_client_cancel_workflow_blocking(client, id, NULL, NULL);
    blazen_controlplane_subscription_free(sub);
    blazen_string_free(id);

    /* Served at version 1 only: a plain submission (version 0) waits, and
     * says which versions are served. */
    BlazenContextHandlerVTable vt = {NULL, NULL, ask, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    CHECK(blazen_controlplane_worker_new_with_options_blocking(
              endpoint_g, "v1-worker", "{\"capabilities\":[{\"kind\":\"workflow:thumb\",\"version\":1}]}", vt, &w,
              NULL) == 0,
          "a worker serving thumb v1");
    BlazenFuture *run = blazen_controlplane_worker_run(w);
    CHECK(wait_workers(2), "both workers listed");
    id = submit("thumb", true, NULL);
    sub = watch(id, &s, 0);
    for (int i = 0; i < 500 && !saw(&s, "status.waiting"); i++) t_sleep_ms(10);
    pthread_mutex_lock(&s.mu);
    CHECK(strstr(s.waiting, "\"connected_versions\":[1]") != NULL && strstr(s.waiting, "\"version\":0") != NULL,
          "status.waiting names the asked and the served versions: %s", s.waiting);
    pthread_mutex_unlock(&s.mu);
    blazen_controlplane_client_cancel_workflow_blocking(client, id, NULL, NULL);
    blazen_controlplane_subscription_free(sub);
    blazen_string_free(id);
    char *v1 = submit("thumb", false, "{\"workflow_version\":1}");
    Sink ok;
    sub = watch(v1, &ok, 1);
    CHECK(t_wait_until(&ok.closes, 1, 20000) && saw(&ok, "status.completed") == 1 && saw(&ok, "status.waiting") == 0,
          "submitted at version 1, it runs without waiting");
    blazen_controlplane_subscription_free(sub);
    blazen_string_free(v1);
    blazen_controlplane_worker_shutdown(w);
    CHECK(t_await(run, T_BY_WAIT), "worker run returns");
    blazen_future_free(run);
    blazen_controlplane_worker_free(w);
}

/* ---- a worker that dies in every run, restarted by a supervisor ---------- */

static int attempt_fd = -1;

static int32_t die(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *wf, const char *input,
                   char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)run_id;
    (void)wf;
    (void)input;
    (void)out_json;
    (void)out_err;
    uint8_t a = (uint8_t)blazen_assignment_context_attempt(ctx);
    if (write(attempt_fd, &a, 1) != 1) _exit(3);
    _exit(9); /* the worker process dies with the run in hand */
}

/* The supervisor: forked before the library starts in this process; each
 * worker it starts is a fresh process (the library never ran here). */
static void supervisor(int port_fd) {
    uint16_t port = 0;
    if (read(port_fd, &port, sizeof port) != sizeof port) _exit(1);
    for (int i = 0; i < 6; i++) {
        pid_t w = fork();
        if (w == 0) {
            char ep[64], node[32];
            snprintf(ep, sizeof ep, "http://127.0.0.1:%u", port);
            snprintf(node, sizeof node, "crashy-%d", i);
            BlazenContextHandlerVTable vt = {NULL, NULL, die, NULL, NULL};
            BlazenControlPlaneWorker *worker = NULL;
            if (blazen_controlplane_worker_new_with_options_blocking(
                    ep, node, "{\"capabilities\":[{\"kind\":\"workflow:crash\"}]}", vt, &worker, NULL) != 0)
                _exit(1);
            blazen_controlplane_worker_run_blocking(worker, NULL);
            _exit(0);
        }
        waitpid(w, NULL, 0);
    }
    _exit(0);
}

static void test_requeue_cap(pid_t sup, int port_fd, int attempts_fd, uint16_t port) {
    char *id = submit("crash", true, NULL);
    Sink s;
    BlazenControlPlaneSubscription *sub = watch(id, &s, 0);
    CHECK(write(port_fd, &port, sizeof port) == sizeof port, "supervisor told the port");
    BlazenRunStateSnapshot *snap = wait_terminal(id, 60000);
    CHECK(snap && blazen_run_state_snapshot_status(snap) == BLAZEN_RUN_STATUS_FAILED, "the run FAILED");
    CHECK(snap && blazen_run_state_snapshot_error_kind(snap) == BLAZEN_ERROR_KIND_WORKFLOW, "WORKFLOW");
    char *e = snap ? blazen_run_state_snapshot_error(snap) : NULL;
    CHECK(e && strstr(e, "lost its worker 3 times") && strstr(e, "max_requeues (2)"), "saying why: %s",
          e ? e : "?");
    blazen_string_free(e);
    blazen_run_state_snapshot_free(snap);
    CHECK(t_wait_until(&s.closes, 1, 5000), "the subscription closes");
    CHECK(saw(&s, "status.requeued") == 2, "re-queued twice (%d)", saw(&s, "status.requeued"));
    uint8_t seen[8];
    ssize_t n = 0;
    for (int i = 0; i < 300 && n < 3; i++) {
        ssize_t got = read(attempts_fd, seen + n, sizeof seen - (size_t)n);
        if (got > 0) n += got;
        else t_sleep_ms(10);
    }
    CHECK(n == 3 && seen[0] == 0 && seen[1] == 1 && seen[2] == 2, "handled 3 times, attempts 0, 1, 2 (%zd runs)",
          n);
    printf("poison run: %zd runs (attempts %u..%u), then FAILED\n", n, n ? seen[0] : 0, n ? seen[n - 1] : 0);
    blazen_controlplane_subscription_free(sub);
    blazen_string_free(id);
    kill(-sup, SIGKILL);
    waitpid(sup, NULL, 0);
}

/* ---- unreachable endpoints, options ---------------------------------------- */

static void test_unreachable(void) {
    BlazenContextHandlerVTable vt = {NULL, NULL, ask, NULL, NULL};
    const char *cases[] = {"{}", "{\"retry\":{\"max_attempts\":2,\"initial_backoff_ms\":10}}"};
    for (int i = 0; i < 2; i++) {
        BlazenControlPlaneWorker *w = NULL;
        CHECK(blazen_controlplane_worker_new_with_options_blocking("http://127.0.0.1:1", "lost", cases[i], vt, &w,
                                                                   NULL) == 0,
              "a worker for a closed port");
        BlazenError *err = NULL;
        double t0 = t_now();
        CHECK(blazen_controlplane_worker_run_blocking(w, &err) == -1, "its run fails (%s)", cases[i]);
        char *m = blazen_error_message(err);
        CHECK(m && strstr(m, "127.0.0.1:1") && strstr(m, "refused"), "naming endpoint and cause: %s", m ? m : "?");
        printf("worker at a closed port, options %s: failed after %.1f s: %s\n", cases[i], t_now() - t0, m ? m : "?");
        blazen_string_free(m);
        CHECK(t_err_is(err, BLAZEN_ERROR_KIND_PEER, NULL), "PEER");
        blazen_controlplane_worker_free(w);
    }

    /* A client whose control plane goes away. */
    BlazenControlPlaneServer *gone = NULL;
    CHECK(blazen_controlplane_server_start_blocking("127.0.0.1:0", &gone, NULL) == 0, "a second server");
    char *ep = blazen_controlplane_server_endpoint(gone);
    BlazenControlPlaneClient *c = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(ep, &c, NULL) == 0, "connected");
    blazen_controlplane_server_free(gone);
    BlazenError *err = NULL;
    BlazenWorkerInfoList *l = NULL;
    CHECK(blazen_controlplane_client_list_workers_blocking(c, &l, &err) == -1, "a call after it stopped fails");
    char *m = blazen_error_message(err);
    CHECK(m && strstr(m, ep) && strstr(m, "refused"), "naming endpoint and cause: %s", m ? m : "?");
    blazen_string_free(m);
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_PEER, NULL), "PEER");
    blazen_controlplane_client_free(c);
    blazen_string_free(ep);
}

static void test_options(const char *ep) {
    struct {
        const char *json, *names;
    } conn[] = {{"{\"connections\":\"4\"}", "`connections`: invalid type: string"},
                {"{\"connect_timeout_ms\":-1}", "`connect_timeout_ms`"}};
    for (int i = 0; i < 2; i++) {
        BlazenControlPlaneClient *c = NULL;
        BlazenError *err = NULL;
        CHECK(blazen_controlplane_client_connect_with_options_blocking(ep, conn[i].json, &c, &err) == -1,
              "%s refused", conn[i].json);
        CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, conn[i].names), "naming %s", conn[i].names);
    }
    BlazenError *err = NULL;
    CHECK(blazen_controlplane_client_submit_workflow_with_options_blocking(client, "x", "{}", NULL, false,
                                                                           "{\"deadline_ms\":-1}", NULL, &err) == -1,
          "deadline_ms -1 refused");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "`deadline_ms`: invalid value"), "naming deadline_ms");

    atomic_int drops = 0;
    struct {
        const char *json, *names;
    } worker[] = {{"{\"capabilities\":[\"workflow:a\"]}", "`capabilities[0]`"},
                  {"{\"admission\":{\"mode\":\"Fixed\",\"max_in_flight\":0}}", "at least 1"},
                  {"{\"retry\":{\"max_attempts\":\"3\"}}", "`retry.max_attempts`"}};
    for (int i = 0; i < 3; i++) {
        BlazenContextHandlerVTable vt = {&drops, t_drop_ud, ask, NULL, NULL};
        BlazenControlPlaneWorker *w = NULL;
        err = NULL;
        CHECK(blazen_controlplane_worker_new_with_options_blocking(ep, "w", worker[i].json, vt, &w, &err) == -1,
              "%s refused", worker[i].json);
        CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, worker[i].names), "naming %s", worker[i].names);
    }
    BlazenContextHandlerVTable no_handle = {&drops, t_drop_ud, NULL, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    err = NULL;
    CHECK(blazen_controlplane_worker_new_with_options_blocking(ep, "w", NULL, no_handle, &w, &err) == -1 && !w,
          "a table without handle is refused");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "`handle`"), "naming handle");
}

int main(void) {
    alarm(300);
    int port_pipe[2], attempt_pipe[2];
    if (pipe(port_pipe) || pipe(attempt_pipe)) return 1;
    pid_t sup = fork();
    if (sup == 0) {
        setpgid(0, 0);
        close(port_pipe[1]);
        close(attempt_pipe[0]);
        attempt_fd = attempt_pipe[1];
        supervisor(port_pipe[0]);
    }
    setpgid(sup, sup);
    close(port_pipe[0]);
    close(attempt_pipe[1]);
    fcntl(attempt_pipe[0], F_SETFL, O_NONBLOCK);

    BlazenControlPlaneServer *server = NULL;
    CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", "{\"max_requeues\":2}", &server,
                                                                 NULL) == 0,
          "server with max_requeues 2");
    char *ep = blazen_controlplane_server_endpoint(server);
    snprintf(endpoint_g, sizeof endpoint_g, "%s", ep);
    CHECK(blazen_controlplane_client_connect_blocking(ep, &client, NULL) == 0, "connect");

    BlazenContextHandlerVTable vt = {NULL, NULL, ask, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    CHECK(blazen_controlplane_worker_new_with_options_blocking(
              ep, "asker", "{\"capabilities\":[{\"kind\":\"workflow:ask\"}],\"admission\":{\"mode\":\"Fixed\",\"max_in_flight\":4}}",
              vt, &w, NULL) == 0,
          "worker");
    BlazenFuture *run = blazen_controlplane_worker_run(w);
    CHECK(wait_workers(1), "the worker is listed");

    T_RUN(test_submit_then_subscribe);
    T_RUN(test_unknown_request_id);
    T_RUN(test_started_at);
    T_RUN(test_waiting);
    T_RUN_ARGS(test_requeue_cap, sup, port_pipe[1], attempt_pipe[0], blazen_controlplane_server_port(server));
    T_RUN_ARGS(test_options, ep);
    T_RUN(test_unreachable);

    blazen_controlplane_worker_shutdown(w);
    CHECK(t_await(run, T_BY_WAIT), "worker run returns");
    blazen_future_free(run);
    blazen_controlplane_worker_free(w);
    blazen_controlplane_client_free(client);
    blazen_string_free(ep);
    blazen_controlplane_server_free(server);
    return t_finish();
}
