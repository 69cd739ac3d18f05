/* 100,000 pending futures under a 1024-descriptor limit: a stalled control
 * plane (a socket that accepts and never answers) keeps every call
 * pending; descriptors are made only for futures that ask for one. Then
 * cancel and free them all, and check several threads can wait on one
 * future. */
#include "harness.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

/* Open descriptors of this process; with `eventfds_only`, just eventfds
 * (the kind a future makes). */
static int count_fds(int eventfds_only) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    if (d == NULL) return -1;
    while ((e = readdir(d)) != NULL) {
        char path[300], target[64] = {0};
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        if (e->d_name[0] == '.') continue;
        if (!eventfds_only || (readlink(path, target, sizeof target - 1) > 0 && strstr(target, "eventfd")))
            n++;
    }
    closedir(d);
    return n;
}

static int open_fds(void) { return count_fds(1); }


typedef struct {
    BlazenFuture *f;
    atomic_int *returned;
} Waiter;

static void *waiter(void *p) {
    Waiter *w = p;
    if (blazen_future_wait(w->f) == 0) atomic_fetch_add(w->returned, 1);
    return NULL;
}

int main(void) {
    alarm(600);
    const char *n_env = getenv("BLAZEN_SCALE_FUTURES");
    /* Under valgrind the calls are ~50x slower: creating 100,000 futures
     * there outlasts the HTTP/2 keepalive against the silent server, which
     * then fails the one call in flight on each connection before the
     * count is taken. */
    const char *tool = getenv("BLAZEN_UNDER_TOOL");
    int n = n_env ? atoi(n_env) : tool && strcmp(tool, "valgrind") == 0 ? 2000 : 100000;
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = 1024;
    CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0, "descriptor limit lowered to 1024");

    char endpoint[64];
    int listener = t_silent_listener(endpoint, sizeof endpoint);
    CHECK(listener >= 0, "silent listener");
    BlazenControlPlaneClient *client = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, &client, NULL) == 0, "connect");

    int fds_before = open_fds(), all_before = count_fds(0);
    long rss_before = t_rss_kib();
    BlazenFuture **futs = calloc((size_t)n, sizeof *futs);
    for (int i = 0; i < n; i++) futs[i] = blazen_controlplane_client_list_workers(client);
    int pending = 0;
    for (int i = 0; i < n; i++) pending += blazen_future_poll(futs[i]) == 0;
    int fds_held = count_fds(0) - all_before;
    long rss_held = t_rss_kib() - rss_before;
    CHECK(pending == n, "%d of %d futures pending at once", pending, n);
    CHECK(fds_held < 64, "%d extra descriptors for %d pending futures", fds_held, n);
    printf("%d pending futures: %d extra descriptors, %.0f bytes of resident memory each\n", n,
           fds_held, rss_held * 1024.0 / n);

    /* descriptors come only on request, and one per asking future */
    for (int i = 0; i < 100; i++) CHECK(blazen_future_fd(futs[i]) >= 0, "fd %d", i);
    CHECK(blazen_future_fd(futs[0]) == blazen_future_fd(futs[0]), "the same descriptor twice");
    CHECK(open_fds() - fds_before == 100, "100 eventfds for 100 askers");

    /* several threads wait on one future; cancelling wakes them all */
    atomic_int returned = 0;
    pthread_t th[8];
    Waiter w = {futs[0], &returned};
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, waiter, &w);
    blazen_future_cancel(futs[0]);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    CHECK(atomic_load(&returned) == 8, "all 8 waiters returned");

    /* cancel half, free everything */
    int cancelled = 0;
    for (int i = 0; i < n; i += 2) {
        blazen_future_cancel(futs[i]);
        BlazenError *err = NULL;
        if (blazen_future_take_worker_info_list(futs[i], NULL, &err) == -1 &&
            blazen_error_kind(err) == BLAZEN_ERROR_KIND_CANCELLED)
            cancelled++;
        blazen_error_free(err);
    }
    CHECK(cancelled == (n + 1) / 2, "%d cancelled futures report CANCELLED", cancelled);
    for (int i = 0; i < n; i++) blazen_future_free(futs[i]);
    free(futs);
    CHECK(open_fds() == fds_before, "every future's descriptor closed");
    blazen_controlplane_client_free(client);
    close(listener);

    /* and the library still works */
    BlazenControlPlaneServer *server = NULL;
    CHECK(blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) == 0, "server");
    char *ep = blazen_controlplane_server_endpoint(server);
    BlazenControlPlaneClient *c = NULL;
    BlazenWorkerInfoList *l = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(ep, &c, NULL) == 0 &&
              blazen_controlplane_client_list_workers_blocking(c, &l, NULL) == 0,
          "calls succeed afterwards");
    blazen_worker_info_list_free(l);
    blazen_controlplane_client_free(c);
    blazen_controlplane_server_free(server);
    blazen_string_free(ep);
    return t_finish();
}
