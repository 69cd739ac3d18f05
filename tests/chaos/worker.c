/* A chaos worker: `chaos_worker ENDPOINT NODE_ID LOG_PATH MAX_IN_FLIGHT`.
 *
 * Serves workflow `chaos` through the library's worker (Fixed admission,
 * MAX_IN_FLIGHT at once, a `retry` policy that keeps reconnecting for
 * ever, so it rides out a control plane restart and a broken link). The
 * handler takes input `{"n": N, "ms": M}`, appends `S RUN_ID PID ATTEMPT
 * MS N` to LOG_PATH as it starts, sleeps M ms, appends `E RUN_ID PID
 * ATTEMPT MS` and returns the string `chaos_expected(N)`. Each line is one
 * write(2) to a file opened O_APPEND, so a `kill -9` leaves every line
 * written whole (the kernel has it) and lines of concurrent handlers never
 * mix. SIGTERM shuts the worker down (exit 0); a run that ends by itself
 * (the retry policy gave up) exits 3 with the error on stderr. */
#include "chaos.h"

#include <fcntl.h>
#include <sys/types.h>

static int log_fd = -1;

static void log_line(const char *line) {
    size_t len = strlen(line);
    if (write(log_fd, line, len) != (ssize_t)len) {
        fprintf(stderr, "chaos_worker: log write failed: %s\n", strerror(errno));
    }
}

static int32_t handle(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *wf, const char *input,
                      char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)wf;
    (void)out_err;
    long n = chaos_field(input, "n", -1);
    long ms = chaos_field(input, "ms", 3);
    unsigned attempt = blazen_assignment_context_attempt(ctx);
    char line[160];
    snprintf(line, sizeof line, "S %s %ld %u %llu %ld\n", run_id, (long)getpid(), attempt,
             (unsigned long long)chaos_now_ms(), n);
    log_line(line);
    chaos_sleep_ms(ms);
    char out[64];
    chaos_expected(n, out, sizeof out);
    *out_json = blazen_string_alloc(out);
    snprintf(line, sizeof line, "E %s %ld %u %llu\n", run_id, (long)getpid(), attempt,
             (unsigned long long)chaos_now_ms());
    log_line(line);
    return 0;
}

static BlazenFuture *run_future;

static void *await_run(void *arg) {
    (void)arg;
    blazen_future_wait(run_future);
    kill(getpid(), SIGUSR1);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: chaos_worker ENDPOINT NODE_ID LOG_PATH MAX_IN_FLIGHT\n");
        return 64;
    }
    sigset_t set;
    chaos_block_signals(&set);
    log_fd = open(argv[3], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "chaos_worker: %s: %s\n", argv[3], strerror(errno));
        return 2;
    }
    char opts[512];
    snprintf(opts, sizeof opts,
             "{\"capabilities\":[{\"kind\":\"workflow:" CHAOS_WORKFLOW "\",\"version\":0}],"
             "\"admission\":{\"mode\":\"Fixed\",\"max_in_flight\":%d},"
             "\"retry\":{\"initial_backoff_ms\":50,\"max_backoff_ms\":500}}",
             atoi(argv[4]) > 0 ? atoi(argv[4]) : 1);
    BlazenContextHandlerVTable vt = {NULL, NULL, handle, NULL, NULL};
    BlazenControlPlaneWorker *worker = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_worker_new_with_options_blocking(argv[1], argv[2], opts, vt, &worker, &err) != 0) {
        char text[1024];
        chaos_err_text(err, text, sizeof text);
        fprintf(stderr, "chaos_worker %s: %s\n", argv[2], text);
        return 2;
    }
    run_future = blazen_controlplane_worker_run(worker);
    pthread_t waiter;
    pthread_create(&waiter, NULL, await_run, NULL);
    int sig = 0;
    sigwait(&set, &sig);
    int code = 0;
    if (sig != SIGUSR1) blazen_controlplane_worker_shutdown(worker);
    pthread_join(waiter, NULL);
    if (blazen_future_take_unit(run_future, &err) != 0) {
        char text[1024];
        chaos_err_text(err, text, sizeof text);
        fprintf(stderr, "chaos_worker %s: the run ended: %s\n", argv[2], text);
        code = 3;
    } else if (sig == SIGUSR1) {
        fprintf(stderr, "chaos_worker %s: the run ended by itself\n", argv[2]);
        code = 3;
    }
    blazen_future_free(run_future);
    blazen_controlplane_worker_free(worker);
    close(log_fd);
    return code;
}
