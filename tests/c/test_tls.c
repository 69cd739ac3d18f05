/* Mutual TLS end to end: an embedded server serving mTLS from PEM files,
 * clients and a worker connecting with certificates (the reference
 * `_with_mtls` functions and the options form), and refusals for a
 * plaintext client and an untrusted CA. Certificates come from
 * tests/tls/make-certs.sh (BLAZEN_TEST_CERTS names their directory). */
#include "harness.h"

#include <stdatomic.h>

static char dir[512];
static char *path(const char *name) {
    static char buf[8][600];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
    return buf[i];
}

int main(void) {
    alarm(120);
    const char *d = getenv("BLAZEN_TEST_CERTS");
    snprintf(dir, sizeof dir, "%s", d ? d : "target/test-certs");
    char opts[2048];
    snprintf(opts, sizeof opts, "{\"cert_path\":\"%s\",\"key_path\":\"%s\",\"ca_path\":\"%s\"}",
             path("server.pem"), path("server.key"), path("ca.pem"));
    BlazenControlPlaneServer *server = NULL;
    BlazenError *err = NULL;
    CHECK(blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", opts, &server, &err) == 0,
          "mTLS server starts");
    if (server == NULL) {
        char *m = blazen_error_message(err);
        fprintf(stderr, "%s\n", m ? m : "?");
        return t_finish();
    }
    char *ep = blazen_controlplane_server_endpoint(server);
    CHECK(strncmp(ep, "https://127.0.0.1:", 18) == 0, "https endpoint: %s", ep);

    /* the reference mTLS connect, blocking and as a future */
    BlazenControlPlaneClient *c = NULL;
    err = NULL;
    CHECK(blazen_controlplane_client_connect_with_mtls_blocking(ep, path("client.pem"), path("client.key"),
                                                                path("ca.pem"), &c, &err) == 0,
          "mTLS connect");
    blazen_error_free(err);
    BlazenWorkerInfoList *l = NULL;
    CHECK(c && blazen_controlplane_client_list_workers_blocking(c, &l, NULL) == 0, "call over mTLS");
    blazen_worker_info_list_free(l);
    BlazenFuture *f = blazen_controlplane_client_connect_with_mtls(ep, path("client.pem"), path("client.key"),
                                                                   path("ca.pem"));
    BlazenControlPlaneClient *c2 = NULL;
    CHECK(t_await(f, T_BY_FD) && blazen_future_take_controlplane_client(f, &c2, NULL) == 0, "mTLS connect future");
    blazen_future_free(f);
    blazen_controlplane_client_free(c2);

    /* the options form */
    char copts[2048];
    snprintf(copts, sizeof copts, "{\"cert_path\":\"%s\",\"key_path\":\"%s\",\"ca_path\":\"%s\"}",
             path("client.pem"), path("client.key"), path("ca.pem"));
    c2 = NULL;
    l = NULL;
    CHECK(blazen_controlplane_client_connect_with_options_blocking(ep, copts, &c2, NULL) == 0 &&
              blazen_controlplane_client_list_workers_blocking(c2, &l, NULL) == 0,
          "mTLS through connect_with_options");
    blazen_worker_info_list_free(l);
    blazen_controlplane_client_free(c2);

    /* refusals: a client trusting another CA, and plaintext */
    c2 = NULL;
    err = NULL;
    int rc = blazen_controlplane_client_connect_with_mtls_blocking(ep, path("client.pem"), path("client.key"),
                                                                   path("other-ca.pem"), &c2, &err);
    if (rc == 0) rc = blazen_controlplane_client_list_workers_blocking(c2, NULL, &err);
    CHECK(rc == -1 && blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER, "untrusted server certificate refused");
    blazen_error_free(err);
    blazen_controlplane_client_free(c2);
    char plain[128];
    snprintf(plain, sizeof plain, "http://%s", ep + 8);
    c2 = NULL;
    err = NULL;
    rc = blazen_controlplane_client_connect_blocking(plain, &c2, &err);
    if (rc == 0) rc = blazen_controlplane_client_list_workers_blocking(c2, NULL, &err);
    CHECK(rc == -1 && blazen_error_kind(err) == BLAZEN_ERROR_KIND_PEER, "plaintext client refused");
    blazen_error_free(err);
    blazen_controlplane_client_free(c2);

    /* the reference mTLS worker runs a workflow */
    BlazenAssignmentHandlerVTable vt = {(void *)&t_drops, t_drop_ud, t_echo, NULL, NULL};
    BlazenControlPlaneWorker *w = NULL;
    err = NULL;
    CHECK(blazen_controlplane_worker_new_with_mtls_blocking(ep, "tls-worker", "[{\"kind\":\"workflow:tls\",\"version\":0}]",
                                                            NULL, 0, 1, path("client.pem"), path("client.key"),
                                                            path("ca.pem"), vt, &w, &err) == 0,
          "mTLS worker");
    blazen_error_free(err);
    BlazenFuture *run = blazen_controlplane_worker_run(w);
    BlazenRunStateSnapshot *s = NULL;
    CHECK(blazen_controlplane_client_submit_workflow_blocking(c, "tls", "{\"secure\":true}", NULL, true, &s, NULL) == 0,
          "submit over mTLS");
    char *id = blazen_run_state_snapshot_run_id(s);
    blazen_run_state_snapshot_free(s);
    uint32_t st = 0;
    for (int i = 0; i < 2000 && st < BLAZEN_RUN_STATUS_COMPLETED; i++) {
        s = NULL;
        blazen_controlplane_client_describe_workflow_blocking(c, id, &s, NULL);
        st = s ? blazen_run_state_snapshot_status(s) : 0;
        if (st == BLAZEN_RUN_STATUS_COMPLETED)
            CHECK(t_str_eq(blazen_run_state_snapshot_output_json(s), "{\"secure\":true}"), "echoed");
        blazen_run_state_snapshot_free(s);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    CHECK(st == BLAZEN_RUN_STATUS_COMPLETED, "run over mTLS completed (%u)", st);
    blazen_string_free(id);
    blazen_controlplane_worker_shutdown(w);
    blazen_future_wait(run);
    blazen_future_free(run);
    blazen_controlplane_worker_free(w);
    CHECK(t_settled(&t_drops, 1), "worker user_data dropped once");

    blazen_controlplane_client_free(c);
    blazen_controlplane_server_free(server);
    blazen_string_free(ep);
    return t_finish();
}
