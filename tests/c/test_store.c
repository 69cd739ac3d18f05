/* The control plane on a durable store (option `store_url`), against a real
 * redis-server this suite starts on a free loopback port with its own data
 * directory (append-only file, so a stopped Redis comes back with its
 * data) and stops however the suite ends (atexit, SIGALRM, and
 * PR_SET_PDEATHSIG should the suite itself be killed).
 *
 * Each control plane runs in a child process: this binary re-executed with
 * `--serve BIND OPTIONS FD` (forking a process that already runs the
 * library's threads would copy none of them), killed with SIGKILL.
 *
 * - An unreachable store fails the start with PEER / ControlPlaneStore.
 * - Runs waiting for a worker, runs RUNNING on a worker and finished runs
 *   survive a `kill -9` of the control plane: a new one on the same store
 *   and address completes each waiting run exactly once, every in-flight
 *   run ends terminal (the recovery queues it again as a new attempt),
 *   and finished runs are still described (and expire after
 *   `finished_ttl_ms`).
 * - Redis stopped while the control plane runs: a submission fails with
 *   PEER / ControlPlaneStore; once Redis is back, work resumes.
 * - The 10,000-run load of test_load on the store and in memory, with
 *   both throughputs printed (fewer runs under BLAZEN_UNDER_TOOL). */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

enum { TABLE = 1 << 15, HOLD = 4, QUICK = 5, LOAD_WORKERS = 4 };

/* ---- run table: handler invocations per run id -------------------------- */

static char ids[TABLE][37];
static atomic_int calls[TABLE];
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned hash(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static int slot_of(const char *id) {
    pthread_mutex_lock(&table_mu);
    unsigned i = hash(id) & (TABLE - 1);
    int found = -1;
    for (int probes = 0; probes < TABLE; probes++, i = (i + 1) & (TABLE - 1)) {
        if (ids[i][0] == 0) {
            snprintf(ids[i], sizeof ids[i], "%s", id);
            found = (int)i;
            break;
        }
        if (strcmp(ids[i], id) == 0) {
            found = (int)i;
            break;
        }
    }
    pthread_mutex_unlock(&table_mu);
    return found;
}

static int calls_of(const char *id) {
    int s = slot_of(id);
    return s < 0 ? -1 : atomic_load(&calls[s]);
}

/* ---- processes: redis-server and control planes -------------------------- */

static pid_t redis_pid = -1, cp_pid = -1;
static int redis_port;
static char redis_dir[128];
static const char *self_path;

static void stop_pid(pid_t *pid, int sig) {
    if (*pid > 0) {
        kill(*pid, sig);
        waitpid(*pid, NULL, 0);
        *pid = -1;
    }
}

static void cleanup(void) {
    stop_pid(&cp_pid, SIGKILL);
    stop_pid(&redis_pid, SIGKILL);
    if (redis_dir[0]) {
        pid_t rm = fork();
        if (rm == 0) {
            execlp("rm", "rm", "-rf", redis_dir, (char *)NULL);
            _exit(127);
        }
        if (rm > 0) waitpid(rm, NULL, 0);
        redis_dir[0] = 0;
    }
}

static void on_alarm(int sig) {
    (void)sig;
    if (cp_pid > 0) kill(cp_pid, SIGKILL);
    if (redis_pid > 0) kill(redis_pid, SIGKILL);
    static const char msg[] = "test_store: timed out\n";
    if (write(2, msg, sizeof msg - 1)) {
    }
    _exit(1);
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* True once redis answers PING on its port. */
static int redis_pings(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)redis_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char buf[16] = {0};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && write(fd, "PING\r\n", 6) == 6 &&
             read(fd, buf, sizeof buf - 1) > 0 && strncmp(buf, "+PONG", 5) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static int redis_start(void) {
    char port[16], log[160];
    snprintf(port, sizeof port, "%d", redis_port);
    snprintf(log, sizeof log, "%s/redis.log", redis_dir);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", redis_dir, "--save",
               "", "--appendonly", "yes", "--logfile", log, "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    redis_pid = pid;
    for (int i = 0; i < 1000; i++) {
        if (redis_pings()) return 1;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            redis_pid = -1;
            return 0;
        }
        t_sleep_ms(10);
    }
    return 0;
}

/* Starts a control plane child bound to `bind` with `opts`; returns its
 * port (0 when it failed to start). */
static uint16_t cp_start(const char *bind, const char *opts) {
    int p[2];
    if (pipe(p)) return 0;
    char fd[16];
    snprintf(fd, sizeof fd, "%d", p[1]);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        execl(self_path, self_path, "--serve", bind, opts, fd, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    cp_pid = pid;
    uint16_t port = 0;
    if (read(p[0], &port, sizeof port) != sizeof port) port = 0;
    close(p[0]);
    return port;
}

/* The child: serves until killed. */
static int serve(const char *bind, const char *opts, int fd) {
    BlazenControlPlaneServer *server = NULL;
    BlazenError *err = NULL;
    uint16_t port = 0;
    if (blazen_controlplane_server_start_with_options_blocking(bind, opts, &server, &err) != 0) {
        char *m = blazen_error_message(err);
        fprintf(stderr, "control plane child: %s\n", m ? m : "?");
        blazen_string_free(m);
        blazen_error_free(err);
    } else {
        port = blazen_controlplane_server_port(server);
    }
    if (write(fd, &port, sizeof port) != sizeof port) _exit(1);
    if (port == 0) _exit(2);
    for (;;) pause();
}

/* ---- workers --------------------------------------------------------------- */

static atomic_int gate_open, hold_started, rerun_calls;
static atomic_int first_call_set;
static double first_call_at;
static atomic_int load_done;

static int32_t handle(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *wf, const char *input,
                      char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)out_err;
    int slot = slot_of(run_id);
    if (slot >= 0) atomic_fetch_add(&calls[slot], 1);
    if (blazen_assignment_context_attempt(ctx) > 0) atomic_fetch_add(&rerun_calls, 1);
    if (strcmp(wf, "st") == 0 && !atomic_exchange(&first_call_set, 1)) first_call_at = t_now();
    if (strcmp(wf, "hold") == 0) {
        atomic_fetch_add(&hold_started, 1);
        while (!atomic_load(&gate_open)) t_sleep_ms(10);
    }
    if (strcmp(wf, "load") == 0) atomic_fetch_add(&load_done, 1);
    *out_json = blazen_string_alloc(input);
    return 0;
}

static BlazenControlPlaneWorker *worker(const char *ep, const char *node, const char *caps, int max) {
    char opts[512];
    snprintf(opts, sizeof opts,
             "{\"capabilities\":%s,\"admission\":{\"mode\":\"Fixed\",\"max_in_flight\":%d},"
             "\"retry\":{\"initial_backoff_ms\":50,\"max_backoff_ms\":300}}",
             caps, max);
    BlazenContextHandlerVTable vt = {NULL, NULL, handle, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_worker_new_with_options_blocking(ep, node, opts, vt, &w, &err) != 0) {
        t_err_is(err, 0, NULL);
        return NULL;
    }
    return w;
}

static void worker_stop(BlazenControlPlaneWorker *w, BlazenFuture *f) {
    if (!w) return;
    blazen_controlplane_worker_shutdown(w);
    blazen_future_wait(f);
    blazen_future_free(f);
    blazen_controlplane_worker_free(w);
}

/* ---- client helpers ------------------------------------------------------- */

static int submit(BlazenControlPlaneClient *c, const char *wf, int i, char out[37], BlazenError **err) {
    char input[32];
    snprintf(input, sizeof input, "{\"i\":%d}", i);
    BlazenRunStateSnapshot *s = NULL;
    int ok = blazen_controlplane_client_submit_workflow_blocking(c, wf, input, NULL, true, &s, err) == 0;
    if (ok) {
        char *id = blazen_run_state_snapshot_run_id(s);
        snprintf(out, 37, "%s", id ? id : "");
        slot_of(out);
        blazen_string_free(id);
    }
    blazen_run_state_snapshot_free(s);
    return ok;
}

/* The run's status, or -1 when it cannot be described. */
static int status_of(BlazenControlPlaneClient *c, const char *id) {
    BlazenRunStateSnapshot *s = NULL;
    int st = -1;
    if (blazen_controlplane_client_describe_workflow_blocking(c, id, &s, NULL) == 0)
        st = (int)blazen_run_state_snapshot_status(s);
    blazen_run_state_snapshot_free(s);
    return st;
}

static int terminal(int st) {
    return st == BLAZEN_RUN_STATUS_COMPLETED || st == BLAZEN_RUN_STATUS_FAILED || st == BLAZEN_RUN_STATUS_CANCELLED;
}

/* Waits up to `ms` for every run in `list` to be terminal. */
static int wait_terminal(BlazenControlPlaneClient *c, char (*list)[37], int n, int ms) {
    for (int t = 0; t < ms / 50; t++) {
        int done = 0;
        for (int i = 0; i < n; i++) done += terminal(status_of(c, list[i]));
        if (done == n) return 1;
        t_sleep_ms(50);
    }
    return 0;
}

static BlazenControlPlaneClient *client_for(uint16_t port) {
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%u", port);
    BlazenControlPlaneClient *c = NULL;
    if (blazen_controlplane_client_connect_blocking(ep, &c, NULL) != 0) return NULL;
    return c;
}

/* ---- the load -------------------------------------------------------------- */

/* Runs `runs` submissions of workflow "load" through 4 workers of 16 slots
 * on a fresh control plane with `opts`; returns runs/s (0 on failure). */
static double load(const char *opts, int runs, const char *what) {
    uint16_t port = cp_start("127.0.0.1:0", opts);
    CHECK(port != 0, "%s: control plane started", what);
    if (!port) return 0;
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%u", port);
    BlazenControlPlaneClient *c = client_for(port);
    BlazenControlPlaneWorker *w[LOAD_WORKERS];
    BlazenFuture *f[LOAD_WORKERS];
    for (int i = 0; i < LOAD_WORKERS; i++) {
        char node[32];
        snprintf(node, sizeof node, "load-%d", i);
        w[i] = worker(ep, node, "[{\"kind\":\"workflow:load\",\"version\":0}]", 16);
        f[i] = w[i] ? blazen_controlplane_worker_run(w[i]) : NULL;
    }
    char (*list)[37] = calloc((size_t)runs, 37);
    atomic_store(&load_done, 0);
    double t0 = t_now();
    int accepted = 0;
    for (int i = 0; i < runs; i++) accepted += submit(c, "load", i, list[accepted], NULL);
    CHECK(accepted == runs, "%s: %d of %d runs accepted", what, accepted, runs);
    /* Every handler has run once the counter reaches `runs`; the results
     * are then recorded by the control plane. */
    t_wait_until(&load_done, runs, 600000);
    int done = wait_terminal(c, list + runs - 1, 1, 60000);
    double took = t_now() - t0;
    int once = 0, completed = 0;
    for (int i = 0; i < runs; i++) once += calls_of(list[i]) == 1;
    for (int i = 0; i < runs; i += runs / 100 > 0 ? runs / 100 : 1)
        completed += status_of(c, list[i]) == BLAZEN_RUN_STATUS_COMPLETED;
    int sampled = (runs + (runs / 100 > 0 ? runs / 100 : 1) - 1) / (runs / 100 > 0 ? runs / 100 : 1);
    CHECK(done && once == runs, "%s: every run handled exactly once (%d of %d)", what, once, runs);
    CHECK(completed == sampled, "%s: described sample all COMPLETED (%d of %d)", what, completed, sampled);
    for (int i = 0; i < LOAD_WORKERS; i++) worker_stop(w[i], f[i]);
    blazen_controlplane_client_free(c);
    free(list);
    stop_pid(&cp_pid, SIGKILL);
    return done ? runs / took : 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--serve") == 0) return serve(argv[2], argv[3], atoi(argv[4]));
    self_path = argv[0];
    signal(SIGALRM, on_alarm);
    alarm(900);
    atexit(cleanup);
    const int under_tool = getenv("BLAZEN_UNDER_TOOL") != NULL;
    const int waiting = under_tool ? 20 : 200;
    const int load_runs = under_tool ? 300 : 10000;

    snprintf(redis_dir, sizeof redis_dir, "/tmp/blazen-test-redis-XXXXXX");
    if (!mkdtemp(redis_dir)) {
        redis_dir[0] = 0;
        CHECK(0, "data directory");
        return t_finish();
    }
    redis_port = free_port();
    CHECK(redis_start(), "redis-server started on 127.0.0.1:%d", redis_port);
    if (redis_pid < 0) return t_finish();
    char url[64], opts[160];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", redis_port);
    snprintf(opts, sizeof opts, "{\"store_url\":\"%s\"}", url);

    /* ---- options and an unreachable store ---- */
    {
        BlazenControlPlaneServer *s = NULL;
        BlazenError *err = NULL;
        CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", "{\"store_url\":\"http://x\"}", &s,
                                                                   &err) == -1 &&
                  t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "store_url"),
              "a store_url that is not redis:// is a VALIDATION error");
        err = NULL;
        CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", "{\"finished_ttl_ms\":1000}", &s,
                                                                   &err) == -1 &&
                  t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "store_url"),
              "finished_ttl_ms without store_url is a VALIDATION error");
        err = NULL;
        char dead[160], target[64];
        int dead_port = free_port();
        snprintf(target, sizeof target, "127.0.0.1:%d", dead_port);
        snprintf(dead, sizeof dead, "{\"store_url\":\"redis://%s/0\"}", target);
        double t0 = t_now();
        int rc = blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", dead, &s, &err);
        double took = t_now() - t0;
        CHECK(rc == -1 && s == NULL, "a control plane on an unreachable store does not start");
        CHECK(err && blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER &&
                  t_str_eq(blazen_error_subkind(err), "ControlPlaneStore"),
              "PEER / ControlPlaneStore");
        CHECK(err && t_str_has(blazen_error_message(err), target), "the error names the store");
        blazen_error_free(err);
        printf("unreachable store: start failed after %.2f s\n", took);
    }

    /* ---- control plane 1: runs waiting, runs in flight, runs finished ---- */
    uint16_t port = cp_start("127.0.0.1:0", opts);
    CHECK(port != 0, "control plane 1 started on the store");
    if (!port) return t_finish();
    char bind[64], ep[64];
    snprintf(bind, sizeof bind, "127.0.0.1:%u", port);
    snprintf(ep, sizeof ep, "http://127.0.0.1:%u", port);
    BlazenControlPlaneClient *c = client_for(port);
    CHECK(c != NULL, "client");
    BlazenControlPlaneWorker *w1 = worker(
        ep, "store-w1", "[{\"kind\":\"workflow:hold\",\"version\":0},{\"kind\":\"workflow:quick\",\"version\":0}]", 8);
    BlazenFuture *f1 = blazen_controlplane_worker_run(w1);

    char quick[QUICK][37], hold[HOLD][37];
    char (*wait_ids)[37] = calloc((size_t)waiting, 37);
    int ok = 0;
    for (int i = 0; i < QUICK; i++) ok += submit(c, "quick", i, quick[i], NULL);
    CHECK(ok == QUICK && wait_terminal(c, quick, QUICK, 60000), "%d quick runs finished before the kill", QUICK);
    ok = 0;
    for (int i = 0; i < HOLD; i++) ok += submit(c, "hold", i, hold[i], NULL);
    CHECK(ok == HOLD && t_wait_until(&hold_started, HOLD, 60000), "%d runs RUNNING on a worker at the kill",
          atomic_load(&hold_started));
    ok = 0;
    for (int i = 0; i < waiting; i++) ok += submit(c, "st", i, wait_ids[ok], NULL);
    CHECK(ok == waiting, "%d of %d runs submitted that wait for a worker", ok, waiting);
    CHECK(status_of(c, wait_ids[0]) == BLAZEN_RUN_STATUS_PENDING, "they are PENDING");
    blazen_controlplane_client_free(c);

    /* ---- kill -9, control plane 2 on the same store and address ---- */
    stop_pid(&cp_pid, SIGKILL);
    double restart_at = t_now();
    uint16_t port2 = cp_start(bind, opts);
    double ready_at = t_now();
    CHECK(port2 == port, "control plane 2 started on the same address");
    c = client_for(port);
    atomic_store(&gate_open, 1);
    BlazenControlPlaneWorker *w2 = worker(ep, "store-w2", "[{\"kind\":\"workflow:st\",\"version\":0}]", 8);
    BlazenFuture *f2 = blazen_controlplane_worker_run(w2);

    int all = wait_terminal(c, wait_ids, waiting, 120000);
    t_sleep_ms(300); /* a duplicate would arrive now */
    int completed = 0, once = 0, lost = 0;
    for (int i = 0; i < waiting; i++) {
        int st = status_of(c, wait_ids[i]);
        completed += st == BLAZEN_RUN_STATUS_COMPLETED;
        lost += st < 0;
        once += calls_of(wait_ids[i]) == 1;
    }
    CHECK(all && completed == waiting, "every waiting run COMPLETED after the restart (%d of %d)", completed, waiting);
    CHECK(once == waiting, "each handled exactly once (%d of %d)", once, waiting);
    CHECK(lost == 0, "none lost (%d not described)", lost);
    printf("restart: %d runs submitted, %d completed, %d lost; control plane 2 ready %.0f ms after the kill, first "
           "assignment %.0f ms after it\n",
           waiting, completed, lost, (ready_at - restart_at) * 1000.0,
           atomic_load(&first_call_set) ? (first_call_at - restart_at) * 1000.0 : -1.0);

    CHECK(wait_terminal(c, hold, HOLD, 120000), "every run in flight at the kill ended terminal");
    int hold_completed = 0, hold_failed = 0;
    for (int i = 0; i < HOLD; i++) {
        int st = status_of(c, hold[i]);
        hold_completed += st == BLAZEN_RUN_STATUS_COMPLETED;
        hold_failed += st == BLAZEN_RUN_STATUS_FAILED;
    }
    CHECK(hold_completed + hold_failed == HOLD, "none RUNNING or lost (%d completed, %d failed)", hold_completed,
          hold_failed);
    printf("in flight at the kill: %d runs, %d completed and %d failed after the restart; %d handler calls were "
           "re-runs (attempt > 0)\n",
           HOLD, hold_completed, hold_failed, atomic_load(&rerun_calls));
    int described = 0, quick_once = 0;
    for (int i = 0; i < QUICK; i++) {
        described += status_of(c, quick[i]) == BLAZEN_RUN_STATUS_COMPLETED;
        quick_once += calls_of(quick[i]) == 1;
    }
    CHECK(described == QUICK, "runs finished before the kill are described after it (%d of %d)", described, QUICK);
    CHECK(quick_once == QUICK, "and were not run again (%d of %d)", quick_once, QUICK);
    blazen_controlplane_client_free(c);

    /* ---- finished_ttl_ms: a finished run expires from the store ---- */
    stop_pid(&cp_pid, SIGKILL);
    char ttl_opts[192];
    snprintf(ttl_opts, sizeof ttl_opts, "{\"store_url\":\"%s\",\"finished_ttl_ms\":1000}", url);
    CHECK(cp_start(bind, ttl_opts) == port, "control plane 3 (finished_ttl_ms 1000)");
    c = client_for(port);
    char brief[37] = "";
    CHECK(submit(c, "quick", 0, brief, NULL) && wait_terminal(c, &brief, 1, 60000), "a run finished");
    blazen_controlplane_client_free(c);
    stop_pid(&cp_pid, SIGKILL);
    CHECK(cp_start(bind, ttl_opts) == port, "control plane 4 (finished_ttl_ms 1000)");
    c = client_for(port);
    int gone = 0;
    for (int i = 0; i < 600 && !gone; i++) {
        BlazenRunStateSnapshot *s = NULL;
        BlazenError *err = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(c, brief, &s, &err) != 0) {
            char *sub = blazen_error_subkind(err);
            gone = sub && strcmp(sub, "ControlPlaneNotFound") == 0;
            blazen_string_free(sub);
        }
        blazen_run_state_snapshot_free(s);
        blazen_error_free(err);
        if (!gone) t_sleep_ms(50);
    }
    CHECK(gone, "the run is gone from the store after its TTL (NOT_FOUND)");
    CHECK(status_of(c, quick[0]) == BLAZEN_RUN_STATUS_COMPLETED,
          "a run finished under the default TTL (one hour) is still described");

    /* ---- Redis stopped while the control plane runs ---- */
    stop_pid(&redis_pid, SIGTERM);
    char refused[37] = "";
    BlazenError *err = NULL;
    CHECK(!submit(c, "st", 0, refused, &err), "a submission while Redis is down fails");
    CHECK(err && blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER &&
              t_str_eq(blazen_error_subkind(err), "ControlPlaneStore"),
          "with PEER / ControlPlaneStore");
    CHECK(err && t_str_has(blazen_error_message(err), url + 8), "naming the store");
    if (err) {
        char *m = blazen_error_message(err);
        printf("Redis down: %s\n", m ? m : "");
        blazen_string_free(m);
    }
    blazen_error_free(err);
    {
        BlazenRunStateSnapshot *s = NULL;
        BlazenError *derr = NULL;
        CHECK(blazen_controlplane_client_describe_workflow_blocking(c, wait_ids[0], &s, &derr) == -1 && derr &&
                  t_str_eq(blazen_error_subkind(derr), "ControlPlaneStore"),
              "describing a run only the store knows fails with PEER / ControlPlaneStore");
        blazen_run_state_snapshot_free(s);
        blazen_error_free(derr);
    }
    CHECK(redis_start(), "redis-server started again on the same port and data");
    char after[37] = "";
    int resumed = 0;
    for (int i = 0; i < 200 && !resumed; i++) {
        resumed = submit(c, "st", 1, after, NULL);
        if (!resumed) t_sleep_ms(50);
    }
    CHECK(resumed, "submissions are accepted again once Redis is back");
    CHECK(resumed && wait_terminal(c, &after, 1, 60000) && status_of(c, after) == BLAZEN_RUN_STATUS_COMPLETED,
          "and the run completes");
    blazen_controlplane_client_free(c);
    worker_stop(w1, f1);
    worker_stop(w2, f2);
    stop_pid(&cp_pid, SIGKILL);
    free(wait_ids);

    /* ---- the load, in memory and on the store ---- */
    double mem = load("{}", load_runs, "in memory");
    double stored = load(opts, load_runs, "on the store");
    printf("load: %d runs over %d workers: in memory %.0f runs/s, on the store %.0f runs/s (%.0f%%)\n", load_runs,
           LOAD_WORKERS, mem, stored, mem > 0 ? 100.0 * stored / mem : 0.0);

    cleanup();
    return t_finish();
}
