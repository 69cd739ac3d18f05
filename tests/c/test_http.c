/* The embedded control plane's HTTP side and run listing from C: the
 * `http_addr` option and its refusals, `blazen_controlplane_server_http_endpoint`,
 * and, after a known workload (60 runs on 2 workers: 40 completed, 10
 * failed, 10 cancelled), `/metrics` read over a plain socket with every
 * number equal to that workload, the bearer token refused and required
 * on every route, the JSON API, and `blazen_controlplane_server_list_runs`
 * with its paging and bad-input checks. (Prometheus and Chromium read the
 * same side in tests/ruby/test_http.rb.) */
#include "harness.h"

#include <pthread.h>

#define TOKEN "c-suite-token-7f3a"
#define OK_RUNS 40
#define FAILED_RUNS 10
#define CANCELLED_RUNS 10
#define ALL_RUNS (OK_RUNS + FAILED_RUNS + CANCELLED_RUNS)

/* ---- a minimal HTTP/1.1 client ------------------------------------------ */

typedef struct {
    int status;
    char *head; /* status line and headers */
    char *body;
} Resp;

static void resp_free(Resp *r) {
    free(r->head);
    r->head = NULL;
    r->body = NULL;
}

/* GET `path` from 127.0.0.1:`port` with the extra header lines `hdrs`
 * ("" for none; each ending in \r\n). Returns 0, or -1. */
static int http_get(uint16_t port, const char *path, const char *hdrs, Resp *out) {
    memset(out, 0, sizeof *out);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n", path,
                     hdrs);
    if (write(s, req, (size_t)n) != n) {
        close(s);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 + 1 > cap) buf = realloc(buf, cap *= 2);
        ssize_t got = read(s, buf + len, cap - len - 1);
        if (got <= 0) break;
        len += (size_t)got;
    }
    close(s);
    buf[len] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (sep == NULL || sscanf(buf, "HTTP/1.1 %d", &out->status) != 1) {
        free(buf);
        return -1;
    }
    *sep = 0;
    out->head = buf;
    out->body = sep + 4;
    return 0;
}

static const char *bearer = "Authorization: Bearer " TOKEN "\r\n";

/* The sum of the samples of `name` whose labels contain `labels` ("" for
 * any) in a Prometheus text body; -1 when there is none. */
static double metric(const char *body, const char *name, const char *labels) {
    double sum = 0;
    int found = 0;
    size_t nl = strlen(name);
    for (const char *line = body; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (line[0] == '#' || strncmp(line, name, nl) != 0 || (line[nl] != '{' && line[nl] != ' ')) continue;
        const char *end = strchr(line, '\n');
        size_t ll = end ? (size_t)(end - line) : strlen(line);
        char one[512];
        if (ll >= sizeof one) continue;
        memcpy(one, line, ll);
        one[ll] = 0;
        if (labels[0] && strstr(one, labels) == NULL) continue;
        const char *v = strrchr(one, ' ');
        if (v == NULL) continue;
        sum += strtod(v + 1, NULL);
        found = 1;
    }
    return found ? sum : -1;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* The port of an `http://IP:PORT` endpoint. */
static uint16_t port_of(const char *endpoint) {
    const char *c = endpoint ? strrchr(endpoint, ':') : NULL;
    return c ? (uint16_t)atoi(c + 1) : 0;
}

/* ---- the workload ------------------------------------------------------ */

static atomic_int handled;

static int32_t h_handle(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *workflow,
                        const char *input, char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)ctx;
    (void)run_id;
    atomic_fetch_add(&handled, 1);
    if (strcmp(workflow, "boom") == 0) {
        *out_err = blazen_error_from_json("{\"kind\":\"Internal\",\"message\":\"boom <b>bold</b>\"}");
        return 1;
    }
    *out_json = blazen_string_alloc(input);
    return 0;
}

static void *run_thread(void *w) { return (void *)(intptr_t)blazen_controlplane_worker_run_blocking(w, NULL); }

/* The listing as JSON (caller frees), or NULL with `*err` set. */
static char *list(BlazenControlPlaneServer *s, const char *filter, BlazenError **err) {
    char *out = NULL;
    if (blazen_controlplane_server_list_runs(s, filter, &out, err) != 0) return NULL;
    return out;
}

/* Runs in `status` the listing holds (limit 1000). */
static int listed(BlazenControlPlaneServer *s, const char *status) {
    char f[128];
    snprintf(f, sizeof f, "{\"status\":\"%s\",\"limit\":1000}", status);
    char *out = list(s, f, NULL);
    int n = count(out, "\"run_id\"");
    blazen_string_free(out);
    return n;
}

static void test_off_by_default(void) {
    BlazenControlPlaneServer *s = NULL;
    CHECK(blazen_controlplane_server_start_blocking("127.0.0.1:0", &s, NULL) == 0, "start");
    CHECK(blazen_controlplane_server_http_endpoint(s) == NULL, "no HTTP side without http_addr");
    CHECK(blazen_controlplane_server_http_endpoint(NULL) == NULL, "NULL server: NULL");
    char *out = list(s, NULL, NULL);
    CHECK(out && strstr(out, "\"runs\":[]") && strstr(out, "\"next_cursor\":null"), "an empty listing: %s",
          out ? out : "NULL");
    blazen_string_free(out);
    blazen_controlplane_server_free(s);
}

static void test_bad_options(void) {
    BlazenControlPlaneServer *s = NULL;
    BlazenError *err = NULL;
    CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", "{\"http_addr\":\"nope\"}", &s,
                                                                &err) != 0 &&
              s == NULL,
          "a bad http_addr fails the start");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "http_addr"), "VALIDATION naming http_addr");
    err = NULL;
    CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", "{\"http_addr\":5}", &s, &err) != 0,
          "a number is refused");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "http_addr"), "VALIDATION naming http_addr");
    /* A port already taken. */
    char ep[64];
    int taken = t_silent_listener(ep, sizeof ep);
    char opts[128];
    snprintf(opts, sizeof opts, "{\"http_addr\":\"127.0.0.1:%u\"}", port_of(ep));
    err = NULL;
    CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", opts, &s, &err) != 0,
          "a taken port fails the start");
    CHECK(t_err_is(err, BLAZEN_ERROR_KIND_PEER, "cannot bind the HTTP side"), "PEER, naming the HTTP side");
    close(taken);
}

int main(void) {
    alarm(300);
    T_RUN(test_off_by_default);
    T_RUN(test_bad_options);

    BlazenControlPlaneServer *server = NULL;
    if (blazen_controlplane_server_start_with_options_blocking(
            "127.0.0.1:0", "{\"bearer_token\":\"" TOKEN "\",\"http_addr\":\"127.0.0.1:0\"}", &server, NULL) != 0)
        return 1;
    char *ep = blazen_controlplane_server_endpoint(server);
    char *http = blazen_controlplane_server_http_endpoint(server);
    uint16_t hp = port_of(http);
    CHECK(http && strncmp(http, "http://127.0.0.1:", 17) == 0 && hp != 0 && hp != blazen_controlplane_server_port(server),
          "an HTTP endpoint of its own: %s", http ? http : "NULL");

    BlazenControlPlaneClient *c = NULL;
    CHECK(blazen_controlplane_client_connect_with_options_blocking(ep, "{\"bearer_token\":\"" TOKEN "\"}", &c, NULL) ==
              0,
          "client");
    const char *wopts = "{\"capabilities\":[{\"kind\":\"workflow:ok\"},{\"kind\":\"workflow:boom\"}],"
                        "\"admission\":{\"mode\":\"Fixed\",\"max_in_flight\":4},\"bearer_token\":\"" TOKEN "\"}";
    BlazenControlPlaneWorker *w[2] = {NULL, NULL};
    pthread_t t[2];
    const char *nodes[2] = {"c-a", "c-b"};
    for (int i = 0; i < 2; i++) {
        BlazenContextHandlerVTable vt = {NULL, NULL, h_handle, NULL, NULL};
        CHECK(blazen_controlplane_worker_new_with_options_blocking(ep, nodes[i], wopts, vt, &w[i], NULL) == 0,
              "worker %s", nodes[i]);
        pthread_create(&t[i], NULL, run_thread, w[i]);
    }

    T_CASE("workload") {
        BlazenWorkerInfoList *l = NULL;
        for (int i = 0; i < 500; i++) {
            size_t n = 0;
            if (blazen_controlplane_client_list_workers_blocking(c, &l, NULL) == 0) {
                n = blazen_worker_info_list_count(l);
                blazen_worker_info_list_free(l);
            }
            if (n == 2) break;
            t_sleep_ms(10);
        }
        char *parked[CANCELLED_RUNS];
        int ok = 1;
        for (int i = 0; i < ALL_RUNS; i++) {
            const char *wf = i < OK_RUNS ? "ok" : i < OK_RUNS + FAILED_RUNS ? "boom" : "parked";
            BlazenRunStateSnapshot *s = NULL;
            ok &= blazen_controlplane_client_submit_workflow_blocking(c, wf, "{\"n\":1}", NULL, true, &s, NULL) == 0;
            if (i >= OK_RUNS + FAILED_RUNS) parked[i - OK_RUNS - FAILED_RUNS] = blazen_run_state_snapshot_run_id(s);
            blazen_run_state_snapshot_free(s);
        }
        CHECK(ok, "%d submissions", ALL_RUNS);
        for (int i = 0; i < CANCELLED_RUNS; i++) {
            BlazenRunStateSnapshot *s = NULL;
            blazen_controlplane_client_cancel_workflow_blocking(c, parked[i], &s, NULL);
            blazen_run_state_snapshot_free(s);
            blazen_string_free(parked[i]);
        }
        int done = 0;
        for (int i = 0; i < 3000 && !done; i++) {
            done = listed(server, "completed") == OK_RUNS && listed(server, "failed") == FAILED_RUNS &&
                   listed(server, "cancelled") == CANCELLED_RUNS;
            if (!done) t_sleep_ms(10);
        }
        CHECK(done, "the listing shows %d completed, %d failed, %d cancelled", OK_RUNS, FAILED_RUNS, CANCELLED_RUNS);
        CHECK(atomic_load(&handled) == OK_RUNS + FAILED_RUNS, "%d handled", atomic_load(&handled));
    }

    T_CASE("metrics") {
        Resp r;
        CHECK(http_get(hp, "/metrics", bearer, &r) == 0 && r.status == 200, "GET /metrics: %d", r.status);
        if (r.body) {
            const char *b = r.body;
            CHECK(metric(b, "blazen_runs_submitted_total", "") == ALL_RUNS, "submitted");
            CHECK(metric(b, "blazen_runs_completed_total", "workflow=\"ok\"") == OK_RUNS, "completed");
            CHECK(metric(b, "blazen_runs_failed_total", "workflow=\"boom\"") == FAILED_RUNS, "failed");
            CHECK(metric(b, "blazen_runs_cancelled_total", "workflow=\"parked\"") == CANCELLED_RUNS, "cancelled");
            CHECK(metric(b, "blazen_runs_requeued_total", "") == 0, "none re-queued");
            CHECK(metric(b, "blazen_runs_pending", "") == 0 && metric(b, "blazen_runs_running", "") == 0,
                  "nothing pending or running");
            CHECK(metric(b, "blazen_workers_connected", "") == 2, "2 workers");
            CHECK(metric(b, "blazen_worker_max_in_flight", "node_id=\"c-a\"") == 4, "c-a's max");
            CHECK(metric(b, "blazen_worker_in_flight", "") == 0, "nothing in flight");
            CHECK(metric(b, "blazen_run_duration_seconds_count", "") == OK_RUNS + FAILED_RUNS, "durations");
            CHECK(metric(b, "blazen_run_queue_seconds_bucket", "le=\"+Inf\"") == OK_RUNS + FAILED_RUNS,
                  "queue latencies");
            CHECK(metric(b, "blazen_events_dropped_total", "") == 0, "no event dropped");
            CHECK(metric(b, "process_resident_memory_bytes", "") > 0, "process basics");
            CHECK(strstr(r.head, "text/plain; version=0.0.4") != NULL, "the text format's content type");
        }
        resp_free(&r);
    }

    T_CASE("token") {
        const char *routes[] = {"/", "/metrics", "/healthz", "/readyz", "/api/overview", "/api/runs", "/dashboard.js"};
        const char *wrong[] = {"", "Authorization: Bearer nope\r\n", "Cookie: blazen_token=nope\r\n",
                               "Authorization: " TOKEN "\r\n"};
        for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
            for (size_t j = 0; j < sizeof wrong / sizeof *wrong; j++) {
                Resp r;
                CHECK(http_get(hp, routes[i], wrong[j], &r) == 0 && r.status == 401, "%s refused (%zu): %d",
                      routes[i], j, r.status);
                CHECK(r.body && strstr(r.body, TOKEN) == NULL, "the refusal never shows the token");
                resp_free(&r);
            }
            Resp r;
            CHECK(http_get(hp, routes[i], bearer, &r) == 0 && r.status == 200, "%s with the token: %d", routes[i],
                  r.status);
            CHECK(r.head && strstr(r.head, "content-security-policy: default-src 'none'"), "%s has the CSP",
                  routes[i]);
            resp_free(&r);
        }
        Resp r;
        CHECK(http_get(hp, "/healthz", "Cookie: blazen_token=" TOKEN "\r\n", &r) == 0 && r.status == 200 &&
                  strcmp(r.body, "ok\n") == 0,
              "the cookie works too");
        resp_free(&r);
        CHECK(http_get(hp, "/?token=" TOKEN, "", &r) == 0 && r.status == 303 &&
                  strstr(r.head, "set-cookie: blazen_token=" TOKEN "; Path=/; HttpOnly; SameSite=Strict"),
              "/?token= sets the cookie");
        resp_free(&r);
    }

    T_CASE("api") {
        Resp r;
        CHECK(http_get(hp, "/api/runs?status=failed&limit=1000", bearer, &r) == 0 && r.status == 200, "failed runs");
        CHECK(r.body && count(r.body, "\"run_id\"") == FAILED_RUNS, "%d of them", FAILED_RUNS);
        char id[37] = {0};
        const char *p = r.body ? strstr(r.body, "\"run_id\":\"") : NULL;
        if (p) memcpy(id, p + 10, 36);
        resp_free(&r);
        char path[128];
        snprintf(path, sizeof path, "/api/runs/%s", id);
        CHECK(http_get(hp, path, bearer, &r) == 0 && r.status == 200, "one run");
        CHECK(r.body && strstr(r.body, "\"event_type\":\"status.failed\"") && strstr(r.body, "boom <b>bold</b>"),
              "its events, the error as JSON text");
        resp_free(&r);
        CHECK(http_get(hp, "/api/runs?limit=abc", bearer, &r) == 0 && r.status == 400 &&
                  strstr(r.body, "`limit` must be"),
              "a bad limit is a 400 saying why");
        resp_free(&r);
        CHECK(http_get(hp, "/api/workers", bearer, &r) == 0 && r.status == 200 && count(r.body, "\"node_id\"") == 2,
              "the workers");
        resp_free(&r);
    }

    T_CASE("list_runs") {
        /* Every run once, newest first, 7 at a time. */
        int seen = 0, pages = 0;
        long long last_seq = -1;
        int ordered = 1;
        char filter[96] = "{\"limit\":7}";
        for (;;) {
            char *out = list(server, filter, NULL);
            if (out == NULL) break;
            pages++;
            seen += count(out, "\"run_id\"");
            for (const char *q = strstr(out, "\"seq\":"); q; q = strstr(q + 1, "\"seq\":")) {
                long long seq = atoll(q + 6);
                if (last_seq >= 0 && seq >= last_seq) ordered = 0;
                last_seq = seq;
            }
            const char *nc = strstr(out, "\"next_cursor\":");
            long long next = (nc && nc[14] != 'n') ? atoll(nc + 14) : -1;
            blazen_string_free(out);
            if (next < 0) break;
            snprintf(filter, sizeof filter, "{\"limit\":7,\"before\":%lld}", next);
        }
        CHECK(seen == ALL_RUNS && pages == (ALL_RUNS + 6) / 7, "%d runs in %d pages", seen, pages);
        CHECK(ordered, "newest first");
        CHECK(listed(server, "COMPLETED") == OK_RUNS, "status in any case");
        char *out = list(server, "{\"workflow\":\"boom\",\"status\":null}", NULL);
        CHECK(count(out, "\"workflow\":\"boom\"") == FAILED_RUNS && count(out, "\"run_id\"") == FAILED_RUNS,
              "by workflow");
        CHECK(strstr(out, "\"error\":\"") != NULL, "with the error");
        blazen_string_free(out);

        const char *bad[] = {"[]", "\"x\"", "{\"status\":\"done\"}", "{\"status\":1}", "{\"limit\":0}",
                             "{\"limit\":1001}", "{\"limit\":\"5\"}", "{\"before\":-1}", "{\"page\":1}", "not json",
                             "{\"workflow\":[]}"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            BlazenError *err = NULL;
            char *o = (char *)1;
            CHECK(blazen_controlplane_server_list_runs(server, bad[i], &o, &err) == -1, "%s refused", bad[i]);
            CHECK(o == (char *)1 || o == NULL, "no output for %s", bad[i]);
            CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "filter_json"), "VALIDATION naming filter_json: %s",
                  bad[i]);
        }
        BlazenError *err = NULL;
        CHECK(blazen_controlplane_server_list_runs(NULL, NULL, NULL, &err) == -1, "a NULL server is refused");
        CHECK(t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "server"), "naming server");
        CHECK(blazen_controlplane_server_list_runs(server, NULL, NULL, NULL) == 0, "NULL out-pointers are allowed");
    }

    for (int i = 0; i < 2; i++) blazen_controlplane_worker_shutdown(w[i]);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        blazen_controlplane_worker_free(w[i]);
    }
    blazen_controlplane_client_free(c);
    blazen_controlplane_server_shutdown(server);
    T_CASE("stopped") {
        Resp r;
        /* Refused, or (should another process have taken the port) not ours. */
        int answered = http_get(hp, "/healthz", bearer, &r) == 0 && r.status == 200;
        CHECK(!answered, "the HTTP side stops with the server");
        resp_free(&r);
    }
    blazen_controlplane_server_free(server);
    blazen_string_free(ep);
    blazen_string_free(http);
    return t_finish();
}
