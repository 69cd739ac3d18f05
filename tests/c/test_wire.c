/* A control plane of an older wire: blazen-controlplane 0.6.76 (envelope
 * version 3), built from crates.io by `cargo xtask test` (tests/oldcp) and
 * run as a child process (BLAZEN_OLDCP names the binary). Connecting a
 * client and running a worker against it must fail at once with one error
 * naming both versions and what to do; nothing may hang (the alarm would
 * end the suite). Then the same calls against this library's own control
 * plane succeed. This suite runs on every surface. */
#include "harness.h"

#include <signal.h>

static int has(BlazenError *err, const char *needle) {
    return err != NULL && t_str_has(blazen_error_message(err), needle);
}

/* Starts the old control plane; returns its pid and fills `endpoint`. */
static pid_t start_old(const char *bin, char *endpoint, size_t len) {
    int out[2];
    if (pipe(out)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[64] = {0};
    size_t n = 0;
    while (n < sizeof line - 1 && read(out[0], line + n, 1) == 1 && line[n] != '\n') n++;
    close(out[0]);
    unsigned port = 0;
    if (sscanf(line, "PORT %u", &port) != 1) return -1;
    snprintf(endpoint, len, "http://127.0.0.1:%u", port);
    /* Wait until it accepts connections. */
    for (int i = 0; i < 500; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
        close(s);
        if (ok) return pid;
        t_sleep_ms(10);
    }
    return pid;
}

static void refused(BlazenError *err, const char *endpoint, const char *what) {
    CHECK(err != NULL && blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER, "%s: a PEER error", what);
    CHECK(err != NULL && t_str_eq(blazen_error_subkind(err), "ControlPlaneFailedPrecondition"),
          "%s: subkind ControlPlaneFailedPrecondition", what);
    CHECK(has(err, "up to version 3") && has(err, "sends version 4"), "%s: names both versions", what);
    CHECK(has(err, "0.6.7 to 0.6.76") && has(err, "0.7.x"), "%s: names the releases", what);
    CHECK(has(err, endpoint), "%s: names the endpoint", what);
    if (err) {
        char *m = blazen_error_message(err);
        printf("  %s: %s\n", what, m ? m : "?");
        blazen_string_free(m);
    }
    blazen_error_free(err);
}

int main(void) {
    alarm(120);
    const char *bin = getenv("BLAZEN_OLDCP");
    CHECK(bin != NULL, "BLAZEN_OLDCP names the old control plane (cargo xtask test sets it)");
    if (bin == NULL) return t_finish();
    char ep[64];
    pid_t old = start_old(bin, ep, sizeof ep);
    CHECK(old > 0, "the 0.6.76 control plane started");
    if (old <= 0) return t_finish();

    BlazenControlPlaneClient *c = NULL;
    BlazenError *err = NULL;
    double t0 = t_now();
    CHECK(blazen_controlplane_client_connect_blocking(ep, T_TOKEN(NULL) &c, &err) == -1 && c == NULL,
          "connect_blocking refuses it");
    refused(err, ep, "connect_blocking");
    printf("  refused after %.3f s\n", t_now() - t0);

    BlazenFuture *f = blazen_controlplane_client_connect(ep T_TOKEN_LAST(NULL));
    err = NULL;
    CHECK(blazen_future_wait(f) == 0 && blazen_future_take_controlplane_client(f, &c, &err) == -1,
          "connect (future) refuses it");
    refused(err, ep, "connect (future)");
    blazen_future_free(f);

    err = NULL;
    CHECK(blazen_controlplane_client_connect_with_options_blocking(ep, "{\"connections\":2}", &c, &err) == -1,
          "connect_with_options refuses it");
    refused(err, ep, "connect_with_options");

    BlazenAssignmentHandlerVTable vt = {NULL, NULL, t_echo, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    CHECK(blazen_controlplane_worker_new_blocking(ep, "old-w", NULL, NULL, 0, 1, T_TOKEN(NULL) vt, &w, NULL) == 0,
          "a worker is made (nothing connects before run)");
    err = NULL;
    t0 = t_now();
    CHECK(blazen_controlplane_worker_run_blocking(w, &err) == -1, "its run fails instead of retrying for ever");
    refused(err, ep, "worker run");
    printf("  the worker's run failed after %.3f s\n", t_now() - t0);
    blazen_controlplane_worker_free(w);

    kill(old, SIGKILL);
    waitpid(old, NULL, 0);

    /* This library's own control plane speaks the same version. */
    BlazenControlPlaneServer *server = NULL;
    CHECK(blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) == 0, "embedded server");
    char *own = blazen_controlplane_server_endpoint(server);
    CHECK(blazen_controlplane_client_connect_blocking(own, T_TOKEN(NULL) &c, NULL) == 0, "connects to a 0.7 one");
    blazen_controlplane_client_free(c);
    blazen_controlplane_server_free(server);
    blazen_string_free(own);
    return t_finish();
}
