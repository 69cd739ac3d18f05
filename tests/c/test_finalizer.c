/* A garbage-collected host, played in C: a host like the published Ruby
 * gems frees a handle from a finalizer after it may already have freed the
 * handle's callbacks. So once a handle's work has ended, its old callback
 * table is poisoned here (any call aborts the test), and the handle's
 * `_free` must call nothing. Checked for workers (never run, run and shut
 * down, drained, shut down while a handler runs, a second run) and
 * subscriptions (ended, cancelled, freed, freed during a callback), with
 * user_data set and with user_data NULL. This suite runs on every surface. */
#include "harness.h"

#include <pthread.h>

static BlazenControlPlaneClient *client;
static char *endpoint;

/* One host table's state: every callback checks `poisoned` first. */
typedef struct {
    atomic_int poisoned, drops, handled, in_handle, gate, events, closes, in_event;
    atomic_int drop_on_main;
    const char *name;
} Host;

static pthread_t main_thread;

static void guard(Host *h, const char *what) {
    if (atomic_load(&h->poisoned)) {
        fprintf(stderr, "FAIL: %s called on the freed table of %s\n", what, h->name);
        printf("%d passed, %d failed\n", t_passed, t_failed + 1);
        abort();
    }
}

static void h_drop(void *ud) {
    Host *h = ud;
    guard(h, "drop_user_data");
    atomic_store(&h->drop_on_main, pthread_equal(pthread_self(), main_thread));
    atomic_fetch_add(&h->drops, 1);
}

/* drop_user_data of a table whose user_data is NULL: never to be called. */
static void null_drop(void *ud) {
    (void)ud;
    fprintf(stderr, "FAIL: drop_user_data called with NULL user_data\n");
    printf("%d passed, %d failed\n", t_passed, t_failed + 1);
    abort();
}

/* Answers with the input; the workflow "hold" waits for `gate` first. */
static int32_t handle(Host *h, const char *wf, const char *input, char **out_json) {
    guard(h, "handle");
    atomic_fetch_add(&h->handled, 1);
    if (strcmp(wf, "hold") == 0) {
        atomic_store(&h->in_handle, 1);
        while (!atomic_load(&h->gate)) t_sleep_ms(5);
    }
    *out_json = blazen_string_alloc(input);
    return 0;
}

static int32_t w_handle(T_HANDLE_PARAMS) {
    T_UNUSED_CTX();
    (void)run_id;
    (void)out_err;
    return handle(ud, wf, input, out_json);
}

static void w_cancel(void *ud, const char *run_id) {
    (void)run_id;
    guard(ud, "on_cancel");
}

static void w_drain(void *ud, bool immediate) {
    (void)immediate;
    guard(ud, "on_drain");
}

static BlazenControlPlaneWorker *worker(Host *h, const char *node, const char *wf) {
    char caps[128];
    snprintf(caps, sizeof caps, "[{\"kind\":\"workflow:%s\",\"version\":0}]", wf);
    BlazenAssignmentHandlerVTable vt = {h, h_drop, w_handle, w_cancel, w_drain};
    BlazenControlPlaneWorker *w = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_worker_new_blocking(endpoint, node, caps, NULL, 0, 4, T_TOKEN(NULL) vt, &w, &err) != 0)
        t_err_is(err, 0, NULL);
    return w;
}

static void *run_thread(void *arg) {
    BlazenControlPlaneWorker *w = arg;
    Host *h = NULL;
    (void)h;
    return (void *)(intptr_t)blazen_controlplane_worker_run_blocking(w, NULL);
}

static int wait_listed(const char *node) {
    for (int i = 0; i < 500; i++) {
        BlazenWorkerInfoList *l = NULL;
        if (blazen_controlplane_client_list_workers_blocking(client, &l, NULL) == 0) {
            int found = 0;
            for (size_t k = 0; k < blazen_worker_info_list_count(l); k++) {
                BlazenWorkerInfo *wi = blazen_worker_info_list_get(l, k);
                found |= t_str_eq(blazen_worker_info_node_id(wi), node);
                blazen_worker_info_free(wi);
            }
            blazen_worker_info_list_free(l);
            if (found) return 1;
        }
        t_sleep_ms(10);
    }
    return 0;
}

static char *submit(const char *wf, uint32_t *status) {
    BlazenRunStateSnapshot *s = NULL;
    if (blazen_controlplane_client_submit_workflow_blocking(client, wf, "{\"n\":1}", NULL, true, &s, NULL) != 0)
        return NULL;
    char *id = blazen_run_state_snapshot_run_id(s);
    if (status) *status = blazen_run_state_snapshot_status(s);
    blazen_run_state_snapshot_free(s);
    return id;
}

static uint32_t wait_status(const char *run_id, uint32_t want) {
    uint32_t st = 99;
    for (int i = 0; i < 1000 && st != want; i++) {
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(client, run_id, &s, NULL) == 0) {
            st = blazen_run_state_snapshot_status(s);
            blazen_run_state_snapshot_free(s);
        }
        if (st != want) t_sleep_ms(10);
    }
    return st;
}

/* ---- workers -------------------------------------------------------------- */

static void never_run(void) {
    Host h = {.name = "a worker never run"};
    BlazenControlPlaneWorker *w = worker(&h, "never-run", "fin_a");
    CHECK(w != NULL, "worker");
    blazen_controlplane_worker_free(w);
    CHECK(atomic_load(&h.drops) == 1 && atomic_load(&h.drop_on_main),
          "a worker never run releases its table in its free, on the freeing thread (%d)", atomic_load(&h.drops));
    atomic_store(&h.poisoned, 1);

    /* The published gems' tables: user_data NULL, drop_user_data set. */
    BlazenAssignmentHandlerVTable vt = {NULL, null_drop, w_handle, NULL, NULL};
    BlazenControlPlaneWorker *n = NULL;
    CHECK(blazen_controlplane_worker_new_blocking(endpoint, "never-run-null", NULL, NULL, 0, 1, T_TOKEN(NULL) vt, &n,
                                                  NULL) == 0,
          "worker with NULL user_data");
    blazen_controlplane_worker_shutdown(n);
    blazen_controlplane_worker_free(n);
    CHECK(1, "NULL user_data: no drop_user_data from shutdown and free");
}

static void run_then_shutdown(void) {
    Host h = {.name = "a worker shut down"};
    BlazenControlPlaneWorker *w = worker(&h, "fin-shutdown", "fin_b");
    pthread_t t;
    pthread_create(&t, NULL, run_thread, w);
    CHECK(wait_listed("fin-shutdown"), "worker registered");
    char *id = submit("fin_b", NULL);
    CHECK(id && wait_status(id, BLAZEN_RUN_STATUS_COMPLETED) == BLAZEN_RUN_STATUS_COMPLETED, "run completed");
    blazen_string_free(id);
    blazen_controlplane_worker_shutdown(w);
    void *rc = NULL;
    pthread_join(t, &rc);
    CHECK((intptr_t)rc == 0, "run_blocking returned 0 after shutdown");
    CHECK(atomic_load(&h.drops) == 1 && !atomic_load(&h.drop_on_main),
          "the table was released before run_blocking returned, on a library thread (%d)", atomic_load(&h.drops));
    atomic_store(&h.poisoned, 1);
    blazen_controlplane_worker_shutdown(w);
    blazen_controlplane_worker_free(w);
    BlazenError *err = NULL;
    CHECK(1, "shutdown and free after the run ended call nothing");
    (void)err;
}

static void drained_by_future(void) {
    Host h = {.name = "a drained worker"};
    BlazenControlPlaneWorker *w = worker(&h, "fin-drain", "fin_c");
    BlazenFuture *f = blazen_controlplane_worker_run(w);
    CHECK(wait_listed("fin-drain"), "worker registered");
    char *id = submit("fin_c", NULL);
    CHECK(id && wait_status(id, BLAZEN_RUN_STATUS_COMPLETED) == BLAZEN_RUN_STATUS_COMPLETED, "run completed");
    blazen_string_free(id);
    CHECK(blazen_controlplane_client_drain_worker_blocking(client, "fin-drain", false, NULL) == 0, "drain");
    CHECK(blazen_future_wait(f) == 0, "the run's future completes after the drain");
    CHECK(atomic_load(&h.drops) == 1, "the table was released before the run's future completed (%d)",
          atomic_load(&h.drops));
    atomic_store(&h.poisoned, 1);
    BlazenError *err = NULL;
    blazen_future_take_unit(f, &err);
    blazen_error_free(err);
    blazen_future_free(f);
    /* A second run calls nothing either. */
    err = NULL;
    CHECK(blazen_controlplane_worker_run_blocking(w, &err) == -1 &&
              t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "already been run"),
          "a second run is a VALIDATION error");
    blazen_controlplane_worker_free(w);
}

static void shutdown_during_handle(void) {
    Host h = {.name = "a worker shut down during handle"};
    BlazenControlPlaneWorker *w = worker(&h, "fin-hold", "hold");
    pthread_t t;
    pthread_create(&t, NULL, run_thread, w);
    CHECK(wait_listed("fin-hold"), "worker registered");
    char *id = submit("hold", NULL);
    CHECK(t_wait_until(&h.in_handle, 1, 20000), "handle is running");
    /* The host holds what handle needs (gate) while it tears down: nothing
     * may wait for the handler. */
    blazen_controlplane_worker_shutdown(w);
    void *rc = NULL;
    pthread_join(t, &rc);
    CHECK(atomic_load(&h.drops) == 0, "the table is still held by the handle call in flight");
    blazen_controlplane_worker_free(w);
    CHECK(atomic_load(&h.drops) == 0, "free did not release a table a callback holds");
    atomic_store(&h.gate, 1);
    CHECK(t_settled(&h.drops, 1) && !atomic_load(&h.drop_on_main),
          "released right after handle returned, on its library thread");
    atomic_store(&h.poisoned, 1);
    t_sleep_ms(50);
    blazen_string_free(id);
}

/* ---- subscriptions ------------------------------------------------------- */

static void s_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    Host *h = ud;
    (void)run_id;
    (void)type;
    (void)data;
    (void)ts;
    guard(h, "on_event");
    atomic_fetch_add(&h->events, 1);
    if (atomic_load(&h->gate) == 0 && strcmp(h->name, "a subscription freed during on_event") == 0) {
        atomic_store(&h->in_event, 1);
        while (!atomic_load(&h->gate)) t_sleep_ms(5);
    }
}

static void s_close(void *ud) {
    guard(ud, "on_close");
    atomic_fetch_add(&((Host *)ud)->closes, 1);
}

static void s_error(void *ud, const char *m) {
    (void)m;
    guard(ud, "on_error");
}

static BlazenControlPlaneSubscription *subscribe(Host *h, const char *run_id) {
    BlazenRunEventSinkVTable vt = {h, h_drop, s_event, s_close, s_error};
    BlazenControlPlaneSubscription *s = NULL;
    int32_t rc = run_id ? blazen_controlplane_client_subscribe_run_events(client, run_id, vt, &s, NULL)
                        : blazen_controlplane_client_subscribe_all(client, NULL, vt, &s, NULL);
    return rc == 0 ? s : NULL;
}

static void subscription_ended(void) {
    Host h = {.name = "an ended subscription"};
    Host wh = {.name = "its worker"};
    BlazenControlPlaneWorker *w = worker(&wh, "fin-sub", "fin_d");
    pthread_t t;
    pthread_create(&t, NULL, run_thread, w);
    CHECK(wait_listed("fin-sub"), "worker registered");
    char *id = submit("fin_d", NULL);
    BlazenControlPlaneSubscription *s = subscribe(&h, id);
    CHECK(s != NULL, "subscribed");
    CHECK(t_wait_until(&h.closes, 1, 20000), "on_close after the run's end");
    CHECK(t_settled(&h.drops, 1) && !atomic_load(&h.drop_on_main),
          "the sink was released after on_close, on the event thread");
    atomic_store(&h.poisoned, 1);
    blazen_controlplane_subscription_cancel(s);
    blazen_controlplane_subscription_free(s);
    blazen_controlplane_worker_shutdown(w);
    pthread_join(t, NULL);
    atomic_store(&wh.poisoned, 1);
    blazen_controlplane_worker_free(w);
    blazen_string_free(id);
}

static void subscription_cancelled_or_freed(void) {
    Host c = {.name = "a cancelled subscription"};
    BlazenControlPlaneSubscription *s = subscribe(&c, NULL);
    CHECK(s != NULL, "subscribed");
    blazen_controlplane_subscription_cancel(s);
    CHECK(atomic_load(&c.drops) == 1 && atomic_load(&c.drop_on_main),
          "cancel released the sink before it returned, on the calling thread (%d)", atomic_load(&c.drops));
    atomic_store(&c.poisoned, 1);
    blazen_controlplane_subscription_cancel(s);
    blazen_controlplane_subscription_free(s);

    Host f = {.name = "a freed subscription"};
    s = subscribe(&f, NULL);
    CHECK(s != NULL, "subscribed");
    blazen_controlplane_subscription_free(s);
    CHECK(atomic_load(&f.drops) == 1 && atomic_load(&f.drop_on_main),
          "free released the sink before it returned (%d)", atomic_load(&f.drops));
    atomic_store(&f.poisoned, 1);

    BlazenRunEventSinkVTable vt = {NULL, null_drop, NULL, NULL, NULL};
    BlazenControlPlaneSubscription *n = NULL;
    CHECK(blazen_controlplane_client_subscribe_all(client, NULL, vt, &n, NULL) == 0, "NULL user_data sink");
    blazen_controlplane_subscription_free(n);
    CHECK(1, "NULL user_data: no drop_user_data from free");
}

static void subscription_freed_during_event(void) {
    Host h = {.name = "a subscription freed during on_event"};
    Host wh = {.name = "its worker"};
    BlazenControlPlaneSubscription *s = subscribe(&h, NULL);
    BlazenControlPlaneWorker *w = worker(&wh, "fin-ev", "fin_e");
    pthread_t t;
    pthread_create(&t, NULL, run_thread, w);
    CHECK(wait_listed("fin-ev"), "worker registered");
    char *id = submit("fin_e", NULL);
    CHECK(t_wait_until(&h.in_event, 1, 20000), "on_event is being delivered");
    blazen_controlplane_subscription_free(s);
    CHECK(atomic_load(&h.drops) == 0, "free did not release a sink a callback holds");
    int seen = atomic_load(&h.events);
    atomic_store(&h.gate, 1);
    CHECK(t_settled(&h.drops, 1) && !atomic_load(&h.drop_on_main),
          "released right after the callback, on the event thread");
    atomic_store(&h.poisoned, 1);
    CHECK(atomic_load(&h.events) == seen, "no callback started after free returned");
    blazen_controlplane_worker_shutdown(w);
    pthread_join(t, NULL);
    atomic_store(&wh.poisoned, 1);
    blazen_controlplane_worker_free(w);
    blazen_string_free(id);
}

int main(void) {
    alarm(600);
    main_thread = pthread_self();
    BlazenControlPlaneServer *server = NULL;
    if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) != 0) return 1;
    endpoint = blazen_controlplane_server_endpoint(server);
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, T_TOKEN(NULL) &client, NULL) == 0, "client");
    CHECK(blazen_surface() == BLAZEN_SURFACE, "the library's surface is the header's (%u)", blazen_surface());

    T_RUN(never_run);
    T_RUN(run_then_shutdown);
    T_RUN(drained_by_future);
    T_RUN(shutdown_during_handle);
    T_RUN(subscription_ended);
    T_RUN(subscription_cancelled_or_freed);
    T_RUN(subscription_freed_during_event);

    blazen_controlplane_client_free(client);
    blazen_controlplane_server_free(server);
    blazen_string_free(endpoint);
    return t_finish();
}
