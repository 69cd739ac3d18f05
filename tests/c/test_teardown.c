/* Teardown under a host with a global lock, as Ruby's VM lock behaves: the
 * "host" holds one process-wide lock around every call into the library,
 * and every callback takes it before doing anything (re-entrantly on the
 * thread that already holds it, as a Ruby callback on the GVL's own thread
 * does). Under that lock the suite cancels and frees subscriptions while
 * events flow, frees workers (and their run futures) with handlers in
 * progress, frees pending futures, and frees a server and a client with
 * streams open. Every teardown call is timed (it must return within 1 s;
 * the worst is printed), every callback table must see `drop_user_data`
 * exactly once and last, and a worker freed mid-run must not leave its run
 * RUNNING. A library that waits for a callback in teardown hangs here. */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- the host's global lock ------------------------------------------- */

static pthread_mutex_t host_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int host_depth;

static void host_enter(void) {
    if (host_depth++ == 0) pthread_mutex_lock(&host_mu);
}

static void host_leave(void) {
    if (--host_depth == 0) pthread_mutex_unlock(&host_mu);
}

/* Calls into the library the way the host does: holding its lock. */
#define HOST(call)        \
    do {                  \
        host_enter();     \
        call;             \
        host_leave();     \
    } while (0)

/* ---- teardown latency ------------------------------------------------- */

static double worst_latency;
static const char *worst_call = "none";
static int teardown_calls;

/* Runs one teardown call under the host lock and records how long it took. */
#define TEARDOWN(call)                                                   \
    do {                                                                 \
        host_enter();                                                    \
        double t0_ = t_now();                                            \
        call;                                                            \
        double dt_ = t_now() - t0_;                                      \
        host_leave();                                                    \
        teardown_calls++;                                                \
        if (dt_ > worst_latency) {                                       \
            worst_latency = dt_;                                         \
            worst_call = #call;                                          \
        }                                                                \
        CHECK(dt_ < 1.0, "%s returned after %.3f s", #call, dt_);       \
    } while (0)

/* ---- per-vtable bookkeeping ------------------------------------------- */

typedef struct {
    atomic_int drops;      /* drop_user_data calls */
    atomic_int active;     /* callbacks of this table running now */
    atomic_int after_drop; /* callbacks that started after drop_user_data */
    atomic_int not_last;   /* drop_user_data while another callback ran */
    atomic_int events, closes, errors, entered, cancels;
} Track;

static void cb_begin(Track *t) {
    host_enter();
    atomic_fetch_add(&t->active, 1);
    if (atomic_load(&t->drops) > 0) atomic_fetch_add(&t->after_drop, 1);
}

static void cb_end(Track *t) {
    atomic_fetch_sub(&t->active, 1);
    host_leave();
}

static void cb_drop(void *ud) {
    Track *t = ud;
    host_enter();
    if (atomic_load(&t->active) != 0) atomic_fetch_add(&t->not_last, 1);
    atomic_fetch_add(&t->drops, 1);
    host_leave();
}

/* Waits (without the host lock, as a host thread waiting on a condition
 * would) for the table's drop, then checks it was single and last. */
static void check_track(Track *t, const char *what) {
    CHECK(t_settled(&t->drops, 1), "%s: drop_user_data once (%d)", what, atomic_load(&t->drops));
    CHECK(atomic_load(&t->after_drop) == 0, "%s: no callback after drop_user_data", what);
    CHECK(atomic_load(&t->not_last) == 0, "%s: drop_user_data was the last call", what);
}

/* ---- the event sink: slow callbacks that need the host lock ------------ */

static void s_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    Track *t = ud;
    (void)run_id, (void)type, (void)data, (void)ts;
    cb_begin(t);
    atomic_fetch_add(&t->events, 1);
    t_sleep_ms(1); /* host work done while holding its lock */
    cb_end(t);
}

static void s_close(void *ud) {
    Track *t = ud;
    cb_begin(t);
    atomic_fetch_add(&t->closes, 1);
    cb_end(t);
}

static void s_error(void *ud, const char *msg) {
    Track *t = ud;
    (void)msg;
    cb_begin(t);
    atomic_fetch_add(&t->errors, 1);
    cb_end(t);
}

static BlazenRunEventSinkVTable sink_of(Track *t) {
    BlazenRunEventSinkVTable vt = {t, cb_drop, s_event, s_close, s_error};
    return vt;
}

/* ---- the handler: emits events, then works with the lock released ------ */

static int32_t h_handle(void *ud, BlazenAssignmentContext *ctx, const char *run_id,
                        const char *workflow, const char *input, char **out_json,
                        BlazenError **out_err) {
    Track *t = ud;
    (void)run_id, (void)input;
    cb_begin(t);
    atomic_fetch_add(&t->entered, 1);
    cb_end(t);
    int steps = strcmp(workflow, "chatty") == 0 ? 400 : 300;
    for (int i = 0; i < steps; i++) {
        int stop = 0;
        cb_begin(t); /* the host calls the library holding its lock */
        if (blazen_assignment_context_is_cancelled(ctx)) stop = 1;
        else if (strcmp(workflow, "chatty") == 0 &&
                 blazen_assignment_context_emit_event(ctx, "tick", "{\"n\":1}", NULL) != 0)
            stop = 1;
        cb_end(t);
        if (stop) break;
        t_sleep_ms(2); /* lock released, like Ruby sleeping */
    }
    cb_begin(t);
    *out_json = blazen_string_alloc("\"late\"");
    (void)out_err;
    cb_end(t);
    return 0;
}

static void h_cancel(void *ud, const char *run_id) {
    Track *t = ud;
    (void)run_id;
    cb_begin(t);
    atomic_fetch_add(&t->cancels, 1);
    cb_end(t);
}

static void h_drain(void *ud, bool immediate) {
    Track *t = ud;
    (void)immediate;
    cb_begin(t);
    cb_end(t);
}

static BlazenContextHandlerVTable handler_of(Track *t) {
    BlazenContextHandlerVTable vt = {t, cb_drop, h_handle, h_cancel, h_drain};
    return vt;
}

/* ---- shared fixtures --------------------------------------------------- */

static BlazenControlPlaneServer *server;
static BlazenControlPlaneClient *client;
static char *endpoint;

static BlazenControlPlaneWorker *start_worker(const char *node, const char *caps, Track *t,
                                              BlazenFuture **run) {
    char opts[256];
    snprintf(opts, sizeof opts, "{\"capabilities\":%s,\"admission\":{\"mode\":\"Fixed\",\"max_in_flight\":4}}", caps);
    BlazenControlPlaneWorker *w = NULL;
    int rc;
    HOST(rc = blazen_controlplane_worker_new_with_options_blocking(endpoint, node, opts, handler_of(t), &w, NULL));
    if (rc != 0) return NULL;
    HOST(*run = blazen_controlplane_worker_run(w));
    return w;
}

static char *submit(const char *workflow) {
    BlazenRunStateSnapshot *snap = NULL;
    char *id = NULL;
    BlazenError *err = NULL;
    int rc;
    HOST(rc = blazen_controlplane_client_submit_workflow_blocking(client, workflow, "{}", NULL, true, &snap, &err));
    if (rc != 0) {
        CHECK(0, "submit %s", workflow);
        HOST(blazen_error_free(err));
        return NULL;
    }
    HOST(id = blazen_run_state_snapshot_run_id(snap); blazen_run_state_snapshot_free(snap));
    return id;
}

static uint32_t status_of(const char *run_id) {
    BlazenRunStateSnapshot *snap = NULL;
    uint32_t st = 99;
    HOST(if (blazen_controlplane_client_describe_workflow_blocking(client, run_id, &snap, NULL) == 0)
             st = blazen_run_state_snapshot_status(snap);
         blazen_run_state_snapshot_free(snap));
    return st;
}

/* ---- scenarios --------------------------------------------------------- */

/* Subscriptions cancelled and freed while a worker's events flow into
 * callbacks that need the lock the freeing thread holds. */
static void subscriptions_mid_stream(int round, Track *ht) {
    (void)ht;
    char *run = submit("chatty");
    if (run == NULL) return;
    Track per_run = {0}, all = {0};
    BlazenControlPlaneSubscription *a = NULL, *b = NULL;
    int rc1, rc2;
    HOST(rc1 = blazen_controlplane_client_subscribe_run_events(client, run, sink_of(&per_run), &a, NULL));
    HOST(rc2 = blazen_controlplane_client_subscribe_all(client, NULL, sink_of(&all), &b, NULL));
    CHECK(rc1 == 0 && rc2 == 0, "round %d: subscriptions open", round);
    t_wait_until(&per_run.events, 2 + round % 3, 5000);
    t_wait_until(&all.events, 1 + round % 2, 5000);
    /* Alternate: cancel then free, free alone, free the all-runs one first. */
    if (round % 3 == 0) {
        TEARDOWN(blazen_controlplane_subscription_cancel(a));
        TEARDOWN(blazen_controlplane_subscription_free(a));
        TEARDOWN(blazen_controlplane_subscription_free(b));
    } else if (round % 3 == 1) {
        TEARDOWN(blazen_controlplane_subscription_free(b));
        TEARDOWN(blazen_controlplane_subscription_free(a));
    } else {
        TEARDOWN(blazen_controlplane_subscription_cancel(b));
        TEARDOWN(blazen_controlplane_subscription_free(a));
        TEARDOWN(blazen_controlplane_subscription_free(b));
    }
    check_track(&per_run, "per-run sink");
    check_track(&all, "all-runs sink");
    CHECK(atomic_load(&per_run.closes) + atomic_load(&per_run.errors) <= 1, "at most one terminal call");
    HOST(blazen_controlplane_client_cancel_workflow_blocking(client, run, NULL, NULL));
    blazen_string_free(run);
}

/* A worker freed (with or without shutdown first, its run future freed
 * before or after) while its handler is in progress. */
static void worker_mid_handler(int round) {
    Track t = {0};
    char node[64], caps[96], wf[32];
    snprintf(node, sizeof node, "teardown-%d", round);
    snprintf(wf, sizeof wf, "slow%d", round);
    snprintf(caps, sizeof caps, "[{\"kind\":\"workflow:%s\",\"version\":0}]", wf);
    BlazenFuture *run = NULL;
    BlazenControlPlaneWorker *w = start_worker(node, caps, &t, &run);
    CHECK(w != NULL, "round %d: worker", round);
    if (w == NULL) return;
    char *id = NULL;
    for (int i = 0; i < 500 && id == NULL; i++) {
        BlazenRunStateSnapshot *snap = NULL;
        int rc;
        /* Refused until the worker has registered (a run queued before the
         * worker's session starts can miss its first drain in 0.7.0). */
        HOST(rc = blazen_controlplane_client_submit_workflow_blocking(client, wf, "{}", NULL, false, &snap, NULL));
        if (rc == 0) HOST(id = blazen_run_state_snapshot_run_id(snap); blazen_run_state_snapshot_free(snap));
        else t_sleep_ms(5);
    }
    CHECK(id != NULL, "round %d: submitted", round);
    CHECK(t_wait_until(&t.entered, 1, 10000), "round %d: handler entered", round);
    switch (round % 4) {
    case 0:
        TEARDOWN(blazen_controlplane_worker_free(w));
        TEARDOWN(blazen_future_free(run));
        break;
    case 1:
        TEARDOWN(blazen_future_free(run));
        TEARDOWN(blazen_controlplane_worker_free(w));
        break;
    case 2:
        TEARDOWN(blazen_controlplane_worker_shutdown(w));
        TEARDOWN(blazen_controlplane_worker_free(w));
        TEARDOWN(blazen_future_free(run));
        break;
    default:
        TEARDOWN(blazen_future_cancel(run));
        TEARDOWN(blazen_controlplane_worker_shutdown(w));
        TEARDOWN(blazen_future_free(run));
        TEARDOWN(blazen_controlplane_worker_free(w));
        break;
    }
    check_track(&t, "worker handler");
    if (id != NULL) {
        /* The run is re-queued or failed by the control plane, never left
         * RUNNING on a worker that is gone. */
        uint32_t st = BLAZEN_RUN_STATUS_RUNNING;
        for (int i = 0; i < 500 && st == BLAZEN_RUN_STATUS_RUNNING; i++) {
            st = status_of(id);
            if (st == BLAZEN_RUN_STATUS_RUNNING) t_sleep_ms(10);
        }
        CHECK(st != BLAZEN_RUN_STATUS_RUNNING && st != 99, "round %d: run not stuck RUNNING (%u)", round, st);
        HOST(blazen_controlplane_client_cancel_workflow_blocking(client, id, NULL, NULL));
        blazen_string_free(id);
    }
}

/* Futures freed under the lock while their calls are in flight. */
static void pending_futures(int round) {
    BlazenFuture *f[16];
    HOST(for (int i = 0; i < 16; i++) f[i] = i % 2 ? blazen_controlplane_client_list_workers(client)
                                                   : blazen_controlplane_client_connect(endpoint));
    for (int i = 0; i < 16; i++) {
        if (i % 4 == round % 4) TEARDOWN(blazen_future_cancel(f[i]));
        TEARDOWN(blazen_future_free(f[i]));
    }
}

/* A server and a client freed (no shutdown first) while a subscription
 * streams through them and a worker is connected. */
static void server_and_client(int round) {
    BlazenControlPlaneServer *s = NULL;
    BlazenControlPlaneClient *c = NULL;
    char *ep = NULL;
    int rc;
    HOST(rc = blazen_controlplane_server_start_blocking("127.0.0.1:0", &s, NULL));
    CHECK(rc == 0, "round %d: second server", round);
    if (rc != 0) return;
    HOST(ep = blazen_controlplane_server_endpoint(s));
    HOST(rc = blazen_controlplane_client_connect_blocking(ep, &c, NULL));
    Track sink = {0}, ht = {0};
    BlazenControlPlaneSubscription *sub = NULL;
    HOST(blazen_controlplane_client_subscribe_all(c, NULL, sink_of(&sink), &sub, NULL));
    BlazenControlPlaneWorker *w = NULL;
    BlazenFuture *run = NULL;
    HOST(blazen_controlplane_worker_new_with_options_blocking(
        ep, "doomed", "{\"retry\":{\"max_attempts\":1}}", handler_of(&ht), &w, NULL));
    HOST(run = blazen_controlplane_worker_run(w));
    if (round % 2) {
        TEARDOWN(blazen_controlplane_server_free(s));
        TEARDOWN(blazen_controlplane_client_free(c));
    } else {
        TEARDOWN(blazen_controlplane_client_free(c));
        TEARDOWN(blazen_controlplane_server_free(s));
    }
    TEARDOWN(blazen_controlplane_subscription_free(sub));
    TEARDOWN(blazen_controlplane_worker_free(w));
    TEARDOWN(blazen_future_free(run));
    check_track(&sink, "sink of a freed server");
    check_track(&ht, "handler of a freed server");
    blazen_string_free(ep);
}

int main(void) {
    const char *tool = getenv("BLAZEN_UNDER_TOOL");
    int rounds = tool == NULL ? 300 : strcmp(tool, "valgrind") == 0 ? 30 : 150;
    if (getenv("BLAZEN_TEARDOWN_ROUNDS")) rounds = atoi(getenv("BLAZEN_TEARDOWN_ROUNDS"));
    int rc;
    HOST(rc = blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL));
    if (rc != 0) return 1;
    HOST(endpoint = blazen_controlplane_server_endpoint(server));
    HOST(rc = blazen_controlplane_client_connect_blocking(endpoint, &client, NULL));
    if (rc != 0) return 1;

    /* One long-lived worker emits the events the subscriptions see. */
    Track chatty = {0};
    BlazenFuture *chatty_run = NULL;
    BlazenControlPlaneWorker *chatty_w =
        start_worker("chatty", "[{\"kind\":\"workflow:chatty\",\"version\":0}]", &chatty, &chatty_run);
    CHECK(chatty_w != NULL, "events worker");

    /* Four cases whose rounds interleave, as they always have: each is
     * selected on its own, its checks counted across the rounds. */
    TCase subs = {.name = "subscriptions_mid_stream"}, workers = {.name = "worker_mid_handler"},
          futures = {.name = "pending_futures"}, servers = {.name = "server_and_client"};
    T_OPEN(&subs);
    T_OPEN(&workers);
    T_OPEN(&futures);
    T_OPEN(&servers);
    double t0 = t_now();
    for (int r = 0; r < rounds; r++) {
        T_PART(&subs, subscriptions_mid_stream(r, &chatty));
        T_PART(&workers, worker_mid_handler(r));
        T_PART(&futures, pending_futures(r));
        if (r % 25 == 0) T_PART(&servers, server_and_client(r));
    }
    T_CLOSE(&subs);
    T_CLOSE(&workers);
    T_CLOSE(&futures);
    T_CLOSE(&servers);
    TEARDOWN(blazen_controlplane_worker_free(chatty_w));
    TEARDOWN(blazen_future_free(chatty_run));
    check_track(&chatty, "events worker");
    TEARDOWN(blazen_controlplane_client_free(client));
    TEARDOWN(blazen_controlplane_server_free(server));
    blazen_string_free(endpoint);
    printf("teardown: %d rounds, %d teardown calls under the host lock in %.1f s; worst %.3f ms (%s)\n",
           rounds, teardown_calls, t_now() - t0, worst_latency * 1000.0, worst_call);
    return t_finish();
}
