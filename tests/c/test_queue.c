/* The completion queue: many futures reporting to one place. Every
 * registered future's tag arrives exactly once, when it finishes (at once
 * for a finished one); the queue's descriptor is readable exactly while
 * tags wait; freeing a future withdraws its tag; freeing the queue wakes a
 * blocked waiter and leaves its futures usable; NULLs are refused. */
#include "harness.h"

#include <pthread.h>

static int readable(int64_t fd) {
    struct pollfd p = {.fd = (int)fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}


typedef struct {
    BlazenCompletionQueue *q;
    atomic_int *seen; /* per tag */
    atomic_int *total;
    int want;
} Drainer;

static void *drainer(void *p) {
    Drainer *d = p;
    uint64_t tags[16];
    while (atomic_load(d->total) < d->want) {
        size_t n = blazen_completion_queue_next_blocking(d->q, tags, 16, 100);
        for (size_t k = 0; k < n; k++) {
            atomic_fetch_add(&d->seen[tags[k]], 1);
            atomic_fetch_add(d->total, 1);
        }
    }
    return NULL;
}

typedef struct {
    BlazenCompletionQueue *q;
    atomic_int returned;
    size_t got;
} Sleeper;

static void *sleeper(void *p) {
    Sleeper *s = p;
    uint64_t tag;
    s->got = blazen_completion_queue_next_blocking(s->q, &tag, 1, -1);
    atomic_store(&s->returned, 1);
    return NULL;
}

int main(void) {
    alarm(300);
    uint64_t tags[1024];

    /* NULLs */
    BlazenCompletionQueue *q = blazen_completion_queue_new();
    CHECK(q != NULL, "a queue");
    BlazenFuture *bad = blazen_controlplane_client_describe_workflow(NULL, "x");
    CHECK(blazen_future_notify(NULL, q, 1) == -1, "NULL future refused");
    CHECK(blazen_future_notify(bad, NULL, 1) == -1, "NULL queue refused");
    CHECK(blazen_completion_queue_drain(NULL, tags, 4) == 0, "drain of NULL");
    CHECK(blazen_completion_queue_drain(q, NULL, 4) == 0, "drain into NULL");
    CHECK(blazen_completion_queue_next_blocking(NULL, tags, 4, -1) == 0, "wait on NULL returns at once");
    CHECK(blazen_completion_queue_next_blocking(q, NULL, 4, -1) == 0, "wait into NULL returns at once");
    CHECK(blazen_completion_queue_next_blocking(q, tags, 0, -1) == 0, "wait for 0 tags returns at once");
    CHECK(blazen_completion_queue_fd(NULL) == -1, "fd of NULL");
    blazen_completion_queue_free(NULL);

    /* an empty queue: nothing to take, the descriptor quiet, a timeout */
    int64_t qfd = blazen_completion_queue_fd(q);
    CHECK(qfd >= 0, "a descriptor");
    CHECK(blazen_completion_queue_fd(q) == qfd, "the same descriptor twice");
    CHECK(!readable(qfd), "empty: not readable");
    CHECK(blazen_completion_queue_drain(q, tags, 4) == 0, "empty: nothing drained");
    CHECK(blazen_completion_queue_next_blocking(q, tags, 4, 0) == 0, "empty: no wait with timeout 0");
    CHECK(blazen_completion_queue_next_blocking(q, tags, 4, 30) == 0, "empty: timeout gives 0");

    /* a finished future reports at once; freeing it withdraws the tag */
    CHECK(blazen_future_poll(bad) == 1, "a bad-argument future is finished");
    CHECK(blazen_future_notify(bad, q, 77) == 0, "register a finished future");
    CHECK(readable(qfd), "a waiting tag makes the descriptor readable");
    blazen_future_free(bad);
    CHECK(!readable(qfd), "freeing the future withdrew its tag");
    CHECK(blazen_completion_queue_drain(q, tags, 4) == 0, "nothing left to drain");

    BlazenFuture *bad2 = blazen_controlplane_client_describe_workflow(NULL, "x");
    CHECK(blazen_future_notify(bad2, q, 5) == 0 && blazen_future_notify(bad2, q, 6) == 0, "registered twice");
    CHECK(blazen_completion_queue_next_blocking(q, tags, 1, INT64_MAX) == 1 && tags[0] == 5,
          "oldest first, even with the longest timeout");
    CHECK(readable(qfd), "still readable while one waits");
    CHECK(blazen_completion_queue_drain(q, tags, 4) == 1 && tags[0] == 6, "then the second");
    CHECK(!readable(qfd), "drained: quiet again");
    BlazenError *err = NULL;
    CHECK(blazen_future_take_run_state_snapshot(bad2, NULL, &err) == -1 &&
              blazen_error_kind(err) == BLAZEN_ERROR_KIND_VALIDATION,
          "the future's own result is still there");
    blazen_error_free(err);
    blazen_future_free(bad2);

    /* a real control plane: 600 submissions over two queues, drained by
     * 3 threads blocked on the first and through the descriptor of the
     * second */
    BlazenControlPlaneServer *server = NULL;
    CHECK(blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) == 0, "server");
    char *ep = blazen_controlplane_server_endpoint(server);
    BlazenControlPlaneClient *c = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(ep, &c, NULL) == 0, "connect");
    enum { N = 600 };
    static atomic_int seen[N], seen2[N];
    atomic_int total = 0;
    BlazenCompletionQueue *q2 = blazen_completion_queue_new();
    Drainer d = {q, seen, &total, N};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, drainer, &d);
    BlazenFuture **futs = calloc(N, sizeof *futs);
    for (int i = 0; i < N; i++) {
        futs[i] = blazen_controlplane_client_submit_workflow(c, "queued", "{}", NULL, true);
        CHECK(blazen_future_notify(futs[i], q, (uint64_t)i) == 0, "register %d", i);
        CHECK(blazen_future_notify(futs[i], q2, (uint64_t)i) == 0, "register %d on the second queue", i);
    }
    int64_t q2fd = blazen_completion_queue_fd(q2);
    int got2 = 0;
    for (int spins = 0; got2 < N && spins < 3000; spins++) {
        struct pollfd p = {.fd = (int)q2fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1) continue;
        size_t n = blazen_completion_queue_drain(q2, tags, 1024);
        CHECK(n > 0, "a readable descriptor has tags");
        for (size_t k = 0; k < n; k++) {
            CHECK(blazen_future_poll(futs[tags[k]]) == 1, "future %d finished when its tag came", (int)tags[k]);
            atomic_fetch_add(&seen2[tags[k]], 1);
            got2++;
        }
    }
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    int once = 0, once2 = 0, ok = 0;
    for (int i = 0; i < N; i++) {
        once += atomic_load(&seen[i]) == 1;
        once2 += atomic_load(&seen2[i]) == 1;
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_future_take_run_state_snapshot(futs[i], &s, NULL) == 0 &&
            blazen_run_state_snapshot_status(s) == BLAZEN_RUN_STATUS_PENDING)
            ok++;
        blazen_run_state_snapshot_free(s);
        blazen_future_free(futs[i]);
    }
    CHECK(atomic_load(&total) == N && once == N, "3 blocked threads: %d tags, %d exactly once", atomic_load(&total),
          once);
    CHECK(got2 == N && once2 == N, "through the descriptor: %d tags, %d exactly once", got2, once2);
    CHECK(ok == N, "%d of %d submissions succeeded", ok, N);
    CHECK(!readable(qfd) && !readable(q2fd), "both queues quiet at the end");

    /* pending futures: freed ones never report, cancelled ones do */
    char silent[64];
    int listener = t_silent_listener(silent, sizeof silent);
    BlazenControlPlaneClient *sc = NULL;
    CHECK(listener >= 0 && blazen_controlplane_client_connect_blocking(silent, &sc, NULL) == 0,
          "a client of a silent server");
    for (int i = 0; i < 100; i++) {
        futs[i] = blazen_controlplane_client_list_workers(sc);
        blazen_future_notify(futs[i], q2, (uint64_t)i);
    }
    for (int i = 0; i < 100; i += 2) blazen_future_free(futs[i]);
    for (int i = 1; i < 100; i += 2) blazen_future_cancel(futs[i]);
    size_t n = blazen_completion_queue_next_blocking(q2, tags, 1024, 5000);
    int odd = 1;
    for (size_t k = 0; k < n; k++) odd &= (tags[k] % 2) == 1;
    CHECK(n == 50 && odd, "%zu tags, all of cancelled futures", n);
    for (int i = 1; i < 100; i += 2) {
        CHECK(blazen_future_take_worker_info_list(futs[i], NULL, &err) == -1 &&
                  blazen_error_kind(err) == BLAZEN_ERROR_KIND_CANCELLED,
              "cancelled %d", i);
        blazen_error_free(err);
        err = NULL;
    }
    for (int i = 1; i < 100; i += 2) blazen_future_free(futs[i]);

    /* freeing a queue wakes a thread blocked on it without a limit, and
     * futures registered on it still finish and can be taken */
    BlazenFuture *late = blazen_controlplane_client_list_workers(sc);
    CHECK(blazen_future_notify(late, q2, 1) == 0, "register on the queue about to go");
    Sleeper s = {q2, 0, 99};
    pthread_t st;
    pthread_create(&st, NULL, sleeper, &s);
    t_sleep_ms(300);
    CHECK(atomic_load(&s.returned) == 0, "the waiter sleeps");
    blazen_completion_queue_free(q2);
    pthread_join(st, NULL);
    CHECK(s.got == 0, "freeing the queue woke the waiter with 0");
    blazen_future_cancel(late);
    CHECK(blazen_future_take_worker_info_list(late, NULL, &err) == -1 &&
              blazen_error_kind(err) == BLAZEN_ERROR_KIND_CANCELLED,
          "a future of a freed queue still works");
    blazen_error_free(err);
    blazen_future_free(late);

    free(futs);
    blazen_controlplane_client_free(sc);
    close(listener);
    blazen_completion_queue_free(q);
    blazen_controlplane_client_free(c);
    blazen_controlplane_server_free(server);
    blazen_string_free(ep);
    return t_finish();
}
