/* Errors that say what happened: a malformed endpoint is a VALIDATION
 * error naming `endpoint`; an unreachable one names the endpoint and the
 * cause (refused, DNS, TLS); a worker that gives up names its configured
 * endpoint, not the library's relay; a server-side refusal keeps its code
 * and text with no Rust debug dump, and its subkind matches. */
#include "harness.h"

/* A context handler for workers whose runs never come. */
static int32_t never_called(void *ud, BlazenAssignmentContext *ctx, const char *run_id, const char *wf,
                            const char *input, char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)ctx;
    (void)run_id;
    (void)wf;
    (void)input;
    (void)out_json;
    (void)out_err;
    return 1;
}

#include <ctype.h>
#include <stdatomic.h>

/* True when `s` (freed here) contains `needle`, ignoring case. */
static int has_nocase(char *s, const char *needle) {
    int ok = 0;
    size_t n = strlen(needle);
    for (const char *p = s; p && *p && !ok; p++) {
        size_t i = 0;
        while (i < n && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)needle[i])) i++;
        ok = i == n;
    }
    blazen_string_free(s);
    return ok;
}

/* No Rust debug rendering in a message meant for people. */
static int clean(const char *m) {
    return m && !strstr(m, "source:") && !strstr(m, "Some(") && !strstr(m, "{ kind") && !strstr(m, "tonic");
}

/* Connects to `ep` and expects a PEER error of `subkind` whose message
 * contains `ep` and `cause` (any case). */
static void unreachable(const char *ep, const char *opts, const char *subkind, const char *cause) {
    BlazenControlPlaneClient *c = NULL;
    BlazenError *err = NULL;
    int rc = opts ? blazen_controlplane_client_connect_with_options_blocking(ep, opts, &c, &err)
                  : blazen_controlplane_client_connect_blocking(ep, &c, &err);
    CHECK(rc == -1 && c == NULL, "%s: connect fails", ep);
    char *m = err ? blazen_error_message(err) : NULL;
    CHECK(err && blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER, "%s: PEER", ep);
    CHECK(err && t_str_eq(blazen_error_subkind(err), subkind), "%s: subkind %s", ep, subkind);
    CHECK(m && strstr(m, ep), "%s: message names the endpoint: %s", ep, m ? m : "");
    CHECK(m && has_nocase(blazen_string_alloc(m), cause), "%s: message says %s: %s", ep, cause, m ? m : "");
    CHECK(clean(m), "%s: no debug dump: %s", ep, m ? m : "");
    printf("%s -> [%s] %s\n", ep, subkind, m ? m : "");
    blazen_string_free(m);
    blazen_error_free(err);
    blazen_controlplane_client_free(c);
}

/* Handler tables given to worker_new: each is dropped once. */
static int handlers_given;

static void test_malformed_endpoints(void) {
    const char *malformed[] = {"127.0.0.1:1", "ftp://127.0.0.1:1", "http://", "not a uri"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        BlazenControlPlaneClient *c = NULL;
        BlazenError *err = NULL;
        CHECK(blazen_controlplane_client_connect_blocking(malformed[i], &c, &err) == -1 &&
                  t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "endpoint"),
              "client: %s is a VALIDATION error naming endpoint", malformed[i]);
        BlazenAssignmentHandlerVTable vt = {(void *)&t_drops, t_drop_ud, t_echo, NULL, NULL};
        BlazenControlPlaneWorker *w = NULL;
        err = NULL;
        handlers_given++;
        CHECK(blazen_controlplane_worker_new_blocking(malformed[i], "n", NULL, NULL, 0, 1, vt, &w, &err) == -1 &&
                  t_err_is(err, BLAZEN_ERROR_KIND_VALIDATION, "endpoint"),
              "worker: %s is a VALIDATION error naming endpoint", malformed[i]);
    }
    BlazenControlPlaneClient *c = NULL;
    BlazenError *err = NULL;
    CHECK(blazen_controlplane_client_connect_blocking("127.0.0.1:1", &c, &err) == -1 &&
              t_str_has(blazen_error_message(err), "use \"http://127.0.0.1:1\""),
          "a missing scheme says what to write");
    blazen_error_free(err);
}

static void test_unreachable_endpoints(void) {
    unreachable("http://127.0.0.1:1", NULL, "ControlPlaneTransport", "refused");
    /* glibc's resolver keeps state of its own that valgrind counts as
     * lost once the lookup thread has exited, so not under valgrind. */
    const char *tool = getenv("BLAZEN_UNDER_TOOL");
    if (!tool || strcmp(tool, "valgrind") != 0)
        unreachable("http://no-such-host.invalid:7400", NULL, "ControlPlaneTransport", "dns");
}

/* draining an unknown worker: NotFound in subkind and message */
static void test_drain_unknown_worker(BlazenControlPlaneClient *c) {
    BlazenError *err = NULL;
    CHECK(blazen_controlplane_client_drain_worker_blocking(c, "nobody", false, &err) == -1, "drain unknown worker");
    char *m = err ? blazen_error_message(err) : NULL;
    CHECK(err && t_str_eq(blazen_error_subkind(err), "ControlPlaneNotFound"), "subkind NotFound");
    CHECK(m && strstr(m, "NotFound") && strstr(m, "nobody") && !strstr(m, "transport"),
          "message says NotFound and names the worker: %s", m ? m : "");
    CHECK(clean(m), "no debug dump: %s", m ? m : "");
    blazen_string_free(m);
    blazen_error_free(err);
}

/* a worker that gives up names the configured endpoint (of a server that
 * has shut down: its port is closed) and the cause */
static void test_worker_gives_up(const char *ep, uint16_t port) {
    BlazenContextHandlerVTable vt = {(void *)&t_drops, t_drop_ud, never_called, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    handlers_given++;
    CHECK(blazen_controlplane_worker_new_with_options_blocking(
              ep, "gives-up",
              "{\"capabilities\":[{\"kind\":\"workflow:x\"}],\"retry\":{\"max_attempts\":1,\"initial_backoff_ms\":10}}", vt,
              &w, NULL) == 0,
          "worker created");
    BlazenError *err = NULL;
    CHECK(blazen_controlplane_worker_run_blocking(w, &err) == -1, "worker gives up (port %u closed)", port);
    char *m = err ? blazen_error_message(err) : NULL;
    CHECK(err && t_str_eq(blazen_error_subkind(err), "ControlPlaneTransport"), "transport subkind");
    CHECK(m && strstr(m, ep) && has_nocase(blazen_string_alloc(m), "refused"),
          "names %s and the cause: %s", ep, m ? m : "");
    printf("worker -> %s\n", m ? m : "");
    blazen_string_free(m);
    blazen_error_free(err);
    blazen_controlplane_worker_free(w);
}

static void test_tls(void) {
    const char *certs = getenv("BLAZEN_TEST_CERTS");
    if (certs) {
        char opts[1024], tls_ep[64];
        snprintf(opts, sizeof opts,
                 "{\"cert_path\":\"%s/server.pem\",\"key_path\":\"%s/server.key\",\"ca_path\":\"%s/ca.pem\"}", certs,
                 certs, certs);
        BlazenControlPlaneServer *tls = NULL;
        CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", opts, &tls, NULL) == 0,
              "TLS server");
        snprintf(tls_ep, sizeof tls_ep, "https://127.0.0.1:%u", blazen_controlplane_server_port(tls));
        /* a client that trusts another CA */
        snprintf(opts, sizeof opts,
                 "{\"cert_path\":\"%s/client.pem\",\"key_path\":\"%s/client.key\",\"ca_path\":\"%s/other-ca.pem\"}",
                 certs, certs, certs);
        unreachable(tls_ep, opts, "ControlPlaneTls", "certificate");
        blazen_controlplane_server_free(tls);
    } else {
        printf("TLS case skipped: BLAZEN_TEST_CERTS is not set\n");
    }
}

int main(void) {
    alarm(240);
    T_RUN(test_malformed_endpoints);
    T_RUN(test_unreachable_endpoints);

    /* ---- a server to talk to, then shut down ------------------------------ */
    BlazenControlPlaneServer *server = NULL;
    CHECK(blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, NULL) == 0, "server");
    char *ep = blazen_controlplane_server_endpoint(server);
    BlazenControlPlaneClient *c = NULL;
    CHECK(blazen_controlplane_client_connect_blocking(ep, &c, NULL) == 0, "connect");
    T_RUN_ARGS(test_drain_unknown_worker, c);
    uint16_t port = blazen_controlplane_server_port(server);
    blazen_controlplane_client_free(c);
    blazen_controlplane_server_shutdown(server);
    blazen_controlplane_server_free(server);
    T_RUN_ARGS(test_worker_gives_up, ep, port);

    T_RUN(test_tls);

    CHECK(t_settled(&t_drops, handlers_given), "every refused or finished worker's user_data dropped once (%d of %d)",
          atomic_load(&t_drops), handlers_given);
    blazen_string_free(ep);
    return t_finish();
}
