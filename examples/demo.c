/* The whole story in one C program: an embedded control plane, a worker
 * written in C, an orchestrator submitting runs, the live event stream,
 * and the final snapshots. Run with `cargo xtask demo`. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "blazen.h"

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void die(const char *what, BlazenError *err) {
    char *m = blazen_error_message(err);
    char *sub = blazen_error_subkind(err);
    fprintf(stderr, "%s failed: %s%s%s\n", what, m ? m : "?", sub ? " / " : "", sub ? sub : "");
    blazen_string_free(m);
    blazen_string_free(sub);
    blazen_error_free(err);
    exit(1);
}

/* The worker: "shout" upper-cases the "text" field of its input. */
static int32_t handle(void *ud, const char *run_id, const char *workflow, const char *input,
                      char **out_json, BlazenError **out_err) {
    (void)ud;
    (void)workflow;
    const char *text = strstr(input, "\"text\":\"");
    if (text == NULL) {
        *out_err = blazen_error_from_json(
            "{\"kind\":\"Validation\",\"message\":\"input needs a \\\"text\\\" field\"}");
        return 1;
    }
    text += 8;
    char out[256] = "{\"shouted\":\"";
    size_t n = strlen(out);
    for (; *text && *text != '"' && n < sizeof out - 4; text++)
        out[n++] = (char)((*text >= 'a' && *text <= 'z') ? *text - 32 : *text);
    strcpy(out + n, "\"}");
    printf("  [worker] run %.8s: %s -> %s\n", run_id, input, out);
    *out_json = blazen_string_alloc(out);
    return 0;
}

static atomic_int terminal_events;

static void on_event(void *ud, const char *run_id, const char *type, const char *data,
                     uint64_t ts) {
    (void)ud;
    (void)ts;
    printf("  [events] %.8s %-16s %s\n", run_id, type, data);
    if (strncmp(type, "status.completed", 16) == 0 || strncmp(type, "status.failed", 13) == 0)
        atomic_fetch_add(&terminal_events, 1);
}

static const char *status_name(uint32_t s) {
    static const char *names[] = {"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"};
    return s <= 4 ? names[s] : "?";
}

int main(void) {
    BlazenError *err = NULL;
    char *version = blazen_version();
    printf("blazen-cabi %s\n", version);
    blazen_string_free(version);

    BlazenControlPlaneServer *server = NULL;
    if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &server, &err)) die("server start", err);
    char *endpoint = blazen_controlplane_server_endpoint(server);
    printf("embedded control plane listening on %s\n", endpoint);

    BlazenAssignmentHandlerVTable vt = {NULL, NULL, handle, NULL, NULL};
    BlazenControlPlaneWorker *worker = NULL;
    if (blazen_controlplane_worker_new_blocking(endpoint, "demo-worker",
                                                "[{\"kind\":\"workflow:shout\",\"version\":0}]",
                                                "{\"site\":\"demo\"}", 0, 4, vt, &worker, &err))
        die("worker_new", err);
    BlazenFuture *running = blazen_controlplane_worker_run(worker);

    BlazenControlPlaneClient *client = NULL;
    if (blazen_controlplane_client_connect_blocking(endpoint, &client, &err)) die("connect", err);

    BlazenWorkerInfoList *list = NULL;
    for (int i = 0; i < 500; i++) {
        blazen_worker_info_list_free(list);
        list = NULL;
        if (blazen_controlplane_client_list_workers_blocking(client, &list, &err)) die("list", err);
        if (blazen_worker_info_list_count(list) > 0) break;
        sleep_ms(10);
    }
    printf("workers connected: %zu\n", (size_t)blazen_worker_info_list_count(list));
    for (uintptr_t i = 0; i < blazen_worker_info_list_count(list); i++) {
        BlazenWorkerInfo *w = blazen_worker_info_list_get(list, i);
        char *id = blazen_worker_info_node_id(w), *caps = blazen_worker_info_capabilities_json(w),
             *adm = blazen_worker_info_admission_json(w);
        printf("  %s caps=%s admission=%s\n", id, caps, adm);
        blazen_string_free(id);
        blazen_string_free(caps);
        blazen_string_free(adm);
        blazen_worker_info_free(w);
    }
    blazen_worker_info_list_free(list);

    BlazenRunEventSinkVTable sink = {NULL, NULL, on_event, NULL, NULL};
    BlazenControlPlaneSubscription *sub = NULL;
    if (blazen_controlplane_client_subscribe_all(client, NULL, sink, &sub, &err)) die("subscribe", err);

    const char *inputs[] = {"{\"text\":\"hello\"}", "{\"text\":\"from c\"}",
                            "{\"text\":\"blazen\"}", "{\"oops\":1}"};
    enum { RUNS = 4 };
    char *ids[RUNS];
    printf("submitting %d runs\n", RUNS);
    for (int i = 0; i < RUNS; i++) {
        BlazenFuture *f = blazen_controlplane_client_submit_workflow(client, "shout", inputs[i], NULL, false);
        blazen_future_wait(f);
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_future_take_run_state_snapshot(f, &s, &err)) die("submit", err);
        blazen_future_free(f);
        ids[i] = blazen_run_state_snapshot_run_id(s);
        printf("  submitted %s (%s)\n", ids[i], status_name(blazen_run_state_snapshot_status(s)));
        blazen_run_state_snapshot_free(s);
    }
    for (int i = 0; i < 500 && atomic_load(&terminal_events) < RUNS; i++) sleep_ms(10);

    printf("final snapshots:\n");
    for (int i = 0; i < RUNS; i++) {
        BlazenRunStateSnapshot *s = NULL;
        if (blazen_controlplane_client_describe_workflow_blocking(client, ids[i], &s, &err)) die("describe", err);
        char *out = blazen_run_state_snapshot_output_json(s), *error = blazen_run_state_snapshot_error(s),
             *who = blazen_run_state_snapshot_assigned_to(s);
        printf("  %.8s %-9s on %s %s%s\n", ids[i], status_name(blazen_run_state_snapshot_status(s)),
               who ? who : "-", out ? out : "", error ? error : "");
        blazen_string_free(out);
        blazen_string_free(error);
        blazen_string_free(who);
        blazen_run_state_snapshot_free(s);
        blazen_string_free(ids[i]);
    }

    blazen_controlplane_subscription_free(sub);
    blazen_controlplane_worker_shutdown(worker);
    blazen_future_wait(running);
    blazen_future_free(running);
    blazen_controlplane_worker_free(worker);
    blazen_controlplane_client_free(client);
    blazen_controlplane_server_free(server);
    blazen_string_free(endpoint);
    printf("done\n");
    return 0;
}
