/* Logs: the host's sink (levels, filters, replacing, clearing, callbacks
 * that re-enter the library) and BLAZEN_LOG to stderr (child processes). */
#include "harness.h"

/* One sink's observations. Sinks are static so their user_data stays
 * valid whatever the library does with it. */
typedef struct {
    const char *name;
    atomic_int levels[6];     /* records per BLAZEN_LOG_LEVEL_* */
    atomic_int bad;           /* a level out of range or a NULL string */
    atomic_int wrong_level;   /* a known record at another level */
    atomic_int started;       /* "embedded control plane started" (INFO) */
    atomic_int connecting;    /* "connecting to the control plane" (DEBUG) */
    atomic_int session;       /* blazen_cabi::worker "worker session established" (INFO) */
    atomic_int foreign;       /* records of other crates (tonic, h2, hyper, ...) */
    atomic_int other_info;    /* INFO records not from blazen_cabi::server */
    atomic_int localhost;     /* records naming [::1]:1 (see reenter) */
    atomic_int in_callback;
    atomic_int drops;         /* drop_user_data calls */
    atomic_int dropped_inside;/* drop_user_data while a callback ran */
    atomic_int after_drop;    /* callbacks after drop_user_data */
    int mode;                 /* what on_log does besides counting */
    atomic_int step;          /* progress of a re-entering sink */
    atomic_int reenter_ok;    /* its calls into the library behaved */
} Sink;

enum { PLAIN, REENTER, CLEAR_INSIDE };

static void on_log(void *ud, uint32_t level, const char *target, const char *message);

static void on_drop(void *ud) {
    Sink *s = ud;
    if (atomic_load(&s->in_callback) > 0) atomic_fetch_add(&s->dropped_inside, 1);
    atomic_fetch_add(&s->drops, 1);
}

static BlazenLogSinkVTable vt(Sink *s) {
    BlazenLogSinkVTable v = {s, on_drop, on_log};
    return v;
}

static int set_sink(Sink *s, const char *filter) {
    BlazenError *err = NULL;
    int32_t rc = blazen_log_set_sink(vt(s), filter, &err);
    if (rc != 0) t_err_is(err, 0, NULL);
    return rc == 0;
}

/* The sink the re-entering sink installs from inside its callback. */
static Sink after_reenter = {.name = "after_reenter"};
/* Set by the main thread: the endpoint whose "connecting" record tells the
 * re-entering sink to replace itself. */
static char swap_marker[128];
static atomic_int swap_armed;

/* First callback: calls into the library (version, a no-op round trip, a
 * connection that fails, which logs "connecting" on this thread: that
 * record must be dropped, not delivered). A later callback carrying the
 * armed marker replaces the sink from inside the callback. */
static void reenter(Sink *s, const char *message) {
    int step = atomic_load(&s->step);
    if (step == 0) {
        int ok = 1;
        char *v = blazen_version();
        ok &= v != NULL && strcmp(v, BLAZEN_VERSION_STRING) == 0;
        blazen_string_free(v);
        BlazenError *err = NULL;
        ok &= blazen_ping_blocking(&err) == 0;
        BlazenControlPlaneClient *c = NULL;
        int32_t rc = blazen_controlplane_client_connect_with_options_blocking(
            "http://[::1]:1", "{\"connect_timeout_ms\":5000}", &c, &err);
        ok &= rc == -1 && c == NULL;
        blazen_error_free(err);
        blazen_controlplane_client_free(c);
        atomic_store(&s->reenter_ok, ok);
        atomic_store(&s->step, 1);
    } else if (step == 1 && atomic_load(&swap_armed) && strstr(message, swap_marker) != NULL) {
        atomic_store(&s->step, 2);
        BlazenError *err = NULL;
        int32_t rc = blazen_log_set_sink(vt(&after_reenter), "blazen_cabi::server=info", &err);
        if (rc != 0) t_err_is(err, 0, NULL);
        atomic_store(&s->step, rc == 0 ? 3 : -1);
    }
}

static void on_log(void *ud, uint32_t level, const char *target, const char *message) {
    Sink *s = ud;
    if (atomic_load(&s->drops) > 0) atomic_fetch_add(&s->after_drop, 1);
    atomic_fetch_add(&s->in_callback, 1);
    if (level < 1 || level > 5 || target == NULL || message == NULL) {
        atomic_fetch_add(&s->bad, 1);
    } else {
        atomic_fetch_add(&s->levels[level], 1);
        int server = strcmp(target, "blazen_cabi::server") == 0;
        if (server && strstr(message, "embedded control plane started")) {
            atomic_fetch_add(&s->started, 1);
            if (level != BLAZEN_LOG_LEVEL_INFO) atomic_fetch_add(&s->wrong_level, 1);
        }
        if (strcmp(target, "blazen_cabi::client") == 0 && strstr(message, "connecting to the control plane")) {
            atomic_fetch_add(&s->connecting, 1);
            if (level != BLAZEN_LOG_LEVEL_DEBUG) atomic_fetch_add(&s->wrong_level, 1);
        }
        if (strcmp(target, "blazen_cabi::worker") == 0 && strstr(message, "worker session established")) {
            atomic_fetch_add(&s->session, 1);
            if (level != BLAZEN_LOG_LEVEL_INFO) atomic_fetch_add(&s->wrong_level, 1);
        }
        if (level == BLAZEN_LOG_LEVEL_INFO && !server) atomic_fetch_add(&s->other_info, 1);
        if (strncmp(target, "blazen_cabi", 11) != 0) atomic_fetch_add(&s->foreign, 1);
        if (strstr(message, "[::1]:1")) atomic_fetch_add(&s->localhost, 1);
        if (s->mode == REENTER) reenter(s, message);
        if (s->mode == CLEAR_INSIDE && atomic_exchange(&s->step, 1) == 0) blazen_log_clear_sink();
    }
    atomic_fetch_sub(&s->in_callback, 1);
}

static int32_t echo(void *ud, const char *run_id, const char *wf, const char *input, char **out_json,
                    BlazenError **out_err) {
    (void)ud, (void)run_id, (void)wf, (void)out_err;
    *out_json = blazen_string_alloc(input);
    return 0;
}

/* Something to log: an embedded server, a client connecting to it and,
 * when `worker` is set, a worker session (waited for through `watch`).
 * With `marker` set, arms the re-entering sink's swap before connecting. */
static void activity(int worker, Sink *watch, int marker) {
    BlazenError *err = NULL;
    BlazenControlPlaneServer *server = NULL;
    if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, &err) != 0) {
        CHECK(0, "server start");
        t_err_is(err, 0, NULL);
        return;
    }
    char *endpoint = blazen_controlplane_server_endpoint(server);
    if (marker) {
        snprintf(swap_marker, sizeof swap_marker, "endpoint=%s", endpoint);
        atomic_store(&swap_armed, 1);
    }
    BlazenControlPlaneClient *client = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(endpoint, &client, &err) == 0, "client connects");
    if (worker) {
        BlazenAssignmentHandlerVTable h = {NULL, NULL, echo, NULL, NULL};
        BlazenControlPlaneWorker *w = NULL;
        CHECK(blazen_controlplane_worker_new_blocking(endpoint, "log-worker",
                                                      "[{\"kind\":\"workflow:echo\",\"version\":0}]", NULL, 0,
                                                      1, h, &w, &err) == 0,
              "worker connects");
        BlazenFuture *run = blazen_controlplane_worker_run(w);
        CHECK(t_wait_until(&watch->session, 1, 30000), "%s: a worker session record arrives", watch->name);
        blazen_controlplane_worker_shutdown(w);
        blazen_future_wait(run);
        blazen_future_free(run);
        blazen_controlplane_worker_free(w);
    }
    blazen_controlplane_client_free(client);
    blazen_controlplane_server_free(server);
    blazen_string_free(endpoint);
}

static void check_released(Sink *s) {
    CHECK(t_wait_until(&s->drops, 1, 30000) && atomic_load(&s->drops) == 1,
          "%s: drop_user_data called once (%d)", s->name, atomic_load(&s->drops));
    CHECK(atomic_load(&s->dropped_inside) == 0, "%s: drop_user_data never during a callback", s->name);
    CHECK(atomic_load(&s->after_drop) == 0, "%s: no callback after drop_user_data (%d)", s->name,
          atomic_load(&s->after_drop));
    CHECK(atomic_load(&s->bad) == 0 && atomic_load(&s->wrong_level) == 0,
          "%s: levels in range, known records at their level", s->name);
}

static Sink bad_filter = {.name = "bad_filter"}, debug_sink = {.name = "debug"},
            narrow = {.name = "error,blazen_cabi::server=info"}, info_default = {.name = "NULL filter"},
            reentrant = {.name = "reentrant", .mode = REENTER},
            clearer = {.name = "clear_inside", .mode = CLEAR_INSIDE}, first = {.name = "first"},
            second = {.name = "second"};

static void test_sink(void) {
    CHECK(BLAZEN_LOG_LEVEL_ERROR == 1 && BLAZEN_LOG_LEVEL_WARN == 2 && BLAZEN_LOG_LEVEL_INFO == 3 &&
              BLAZEN_LOG_LEVEL_DEBUG == 4 && BLAZEN_LOG_LEVEL_TRACE == 5,
          "level constants");

    /* A malformed filter: VALIDATION naming `filter`, user_data released. */
    BlazenError *err = NULL;
    CHECK(blazen_log_set_sink(vt(&bad_filter), "blazen=notalevel", &err) == -1, "bad filter fails");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "`filter`"), "bad filter: VALIDATION naming filter");
    CHECK(atomic_load(&bad_filter.drops) == 1, "bad filter: user_data released at once");

    /* "debug": this library's records and those of the crates under it,
     * each at its level, nothing at TRACE. */
    CHECK(set_sink(&debug_sink, "debug"), "set a debug sink");
    activity(1, &debug_sink, 0);
    CHECK(t_wait_until(&debug_sink.started, 1, 30000), "debug: server start record (INFO)");
    CHECK(t_wait_until(&debug_sink.connecting, 1, 30000), "debug: client connect record (DEBUG)");
    CHECK(atomic_load(&debug_sink.session) >= 1, "debug: the worker session record (INFO)");
    CHECK(atomic_load(&debug_sink.foreign) >= 1, "debug: records of the crates under the library (%d)",
          atomic_load(&debug_sink.foreign));
    CHECK(atomic_load(&debug_sink.levels[BLAZEN_LOG_LEVEL_TRACE]) == 0, "debug: no TRACE records");

    /* Replacing it: the first sink is released once, after its last
     * callback; the new filter applies per target. */
    CHECK(set_sink(&narrow, "error,blazen_cabi::server=info"), "replace with a narrow filter");
    check_released(&debug_sink);
    activity(0, &narrow, 0);
    CHECK(t_wait_until(&narrow.started, 1, 30000), "narrow: the server record passes");
    CHECK(atomic_load(&narrow.levels[BLAZEN_LOG_LEVEL_DEBUG]) == 0 &&
              atomic_load(&narrow.levels[BLAZEN_LOG_LEVEL_TRACE]) == 0,
          "narrow: no DEBUG or TRACE records (%d, %d)", atomic_load(&narrow.levels[4]),
          atomic_load(&narrow.levels[5]));
    CHECK(atomic_load(&narrow.connecting) == 0 && atomic_load(&narrow.other_info) == 0,
          "narrow: nothing from other targets below ERROR");

    /* NULL filter means "info". */
    CHECK(set_sink(&info_default, NULL), "NULL filter");
    check_released(&narrow);
    activity(0, &info_default, 0);
    CHECK(t_wait_until(&info_default.started, 1, 30000), "NULL filter: INFO records pass");
    CHECK(atomic_load(&info_default.levels[BLAZEN_LOG_LEVEL_DEBUG]) == 0, "NULL filter: no DEBUG records");

    /* A callback that re-enters the library, including blazen_log_set_sink. */
    CHECK(set_sink(&reentrant, "blazen_cabi=debug"), "set a re-entering sink");
    check_released(&info_default);
    activity(0, &reentrant, 0);
    CHECK(t_wait_until(&reentrant.step, 1, 60000), "re-entering sink: first callback done");
    CHECK(atomic_load(&reentrant.reenter_ok), "re-entering sink: version, ping and connect behave");
    activity(0, &reentrant, 1);
    CHECK(t_wait_until(&reentrant.step, 3, 60000), "re-entering sink: replaced itself from its callback (%d)",
          atomic_load(&reentrant.step));
    check_released(&reentrant);
    CHECK(atomic_load(&reentrant.localhost) == 0,
          "a record made on the log thread during a callback is dropped (%d)", atomic_load(&reentrant.localhost));
    activity(0, &after_reenter, 0);
    CHECK(t_wait_until(&after_reenter.started, 1, 30000), "the sink set from a callback gets records");
    CHECK(atomic_load(&after_reenter.localhost) == 0, "nor does the next sink get it");

    /* Clearing from inside a callback. */
    CHECK(set_sink(&clearer, "blazen_cabi=info"), "set a sink that clears itself");
    check_released(&after_reenter);
    activity(0, &clearer, 0);
    check_released(&clearer);

    /* Setting twice, then clearing (twice), and a table of NULLs. */
    CHECK(set_sink(&first, "off"), "set first");
    CHECK(set_sink(&second, "off"), "set second");
    check_released(&first);
    blazen_log_clear_sink();
    check_released(&second);
    blazen_log_clear_sink();
    BlazenLogSinkVTable nulls = {NULL, NULL, NULL};
    CHECK(blazen_log_set_sink(nulls, "debug", NULL) == 0, "a table of NULLs is accepted");
    activity(0, &second, 0);
    blazen_log_clear_sink();
    CHECK(atomic_load(&second.drops) == 1 && atomic_load(&clearer.drops) == 1 && atomic_load(&first.drops) == 1,
          "each sink released exactly once");

    /* Nothing reaches a released sink. */
    Sink *all[] = {&debug_sink, &narrow, &info_default, &reentrant, &after_reenter, &clearer, &first, &second};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        CHECK(atomic_load(&all[i]->after_drop) == 0, "%s: no callback after release", all[i]->name);
}

/* Runs this program as a child with BLAZEN_LOG set (or unset) and returns
 * what it wrote to stderr (caller frees), or NULL. */
static char *child_stderr(const char *self, const char *blazen_log) {
    char cmd[1024];
    if (blazen_log)
        snprintf(cmd, sizeof cmd, "BLAZEN_LOG='%s' '%s' --child 2>&1 >/dev/null", blazen_log, self);
    else
        snprintf(cmd, sizeof cmd, "unset BLAZEN_LOG; '%s' --child 2>&1 >/dev/null", self);
    FILE *p = popen(cmd, "r");
    if (p == NULL) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    int status = pclose(p);
    if (buf) buf[len] = '\0';
    if (status != 0) {
        fprintf(stderr, "child (BLAZEN_LOG=%s) exited with %d:\n%s\n", blazen_log ? blazen_log : "unset", status,
                buf ? buf : "");
        free(buf);
        return NULL;
    }
    return buf;
}

/* The child: starts the runtime with a server and a client, logs nothing
 * itself. */
static int child(void) {
    BlazenError *err = NULL;
    BlazenControlPlaneServer *server = NULL;
    if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, &err) != 0) return 2;
    char *endpoint = blazen_controlplane_server_endpoint(server);
    BlazenControlPlaneClient *client = NULL;
    int rc = blazen_controlplane_client_connect_blocking(endpoint, &client, &err) == 0 ? 0 : 3;
    blazen_error_free(err);
    blazen_controlplane_client_free(client);
    blazen_controlplane_server_free(server);
    blazen_string_free(endpoint);
    return rc;
}

static void test_stderr(const char *self) {
    char *out = child_stderr(self, NULL);
    CHECK(out != NULL && out[0] == '\0', "without BLAZEN_LOG nothing goes to stderr (%s)", out ? out : "?");
    free(out);

    out = child_stderr(self, "debug");
    CHECK(out != NULL && strstr(out, "embedded control plane started") && strstr(out, "INFO") &&
              strstr(out, "DEBUG") && strstr(out, "blazen_cabi::client"),
          "BLAZEN_LOG=debug logs INFO and DEBUG records to stderr");
    free(out);

    out = child_stderr(self, "blazen_cabi::server=info");
    CHECK(out != NULL && strstr(out, "embedded control plane started") && !strstr(out, "DEBUG") &&
              !strstr(out, "blazen_cabi::client"),
          "BLAZEN_LOG=blazen_cabi::server=info filters by target and level (%s)", out ? out : "?");
    free(out);

    out = child_stderr(self, "blazen=notalevel");
    CHECK(out != NULL && strstr(out, "BLAZEN_LOG") && !strstr(out, "embedded control plane started"),
          "a malformed BLAZEN_LOG is reported once and logs nothing (%s)", out ? out : "?");
    free(out);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--child") == 0) return child();
    T_RUN_ARGS(test_stderr, argv[0]);
    T_RUN(test_sink);
    return t_finish();
}
