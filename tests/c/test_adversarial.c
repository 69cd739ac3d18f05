/* Every entry point of the stub table, both variants, against every bad
 * value of every parameter: the cases are generated from the table by
 * `cargo xtask test` (target/generated/adversarial_cases.h, one per
 * surface). This suite runs on every surface. */
#include "adversarial.h"

#include "adversarial_cases.h"

/* The cases that run today, less a margin for surfaces with fewer
 * functions; raise it when the table grows. */
#define ADVERSARIAL_FLOOR 240

int main(void) {
    alarm(300);
    BlazenError *err = NULL;
    if (blazen_controlplane_server_start_blocking("127.0.0.1:0", &valid_BlazenControlPlaneServer, &err) != 0)
        return 1;
    char *ep = blazen_controlplane_server_endpoint(valid_BlazenControlPlaneServer);
    CHECK(blazen_controlplane_client_connect_blocking(ep, T_TOKEN(NULL) &valid_BlazenControlPlaneClient, NULL) == 0, "client");
    CHECK(blazen_controlplane_client_submit_workflow_blocking(valid_BlazenControlPlaneClient, "adv", "{}", NULL, true,
                                                              &valid_BlazenRunStateSnapshot, NULL) == 0,
          "snapshot");
    CHECK(blazen_controlplane_client_list_workers_blocking(valid_BlazenControlPlaneClient,
                                                           &valid_BlazenWorkerInfoList, NULL) == 0,
          "list");
    BlazenAssignmentHandlerVTable vt = {NULL, NULL, t_echo, NULL, NULL};
    CHECK(blazen_controlplane_worker_new_blocking(ep, "adv", NULL, NULL, 0, 1, T_TOKEN(NULL) vt, &valid_BlazenControlPlaneWorker,
                                                  NULL) == 0,
          "worker");
    BlazenRunEventSinkVTable sink = {NULL, NULL, NULL, NULL, NULL};
    CHECK(blazen_controlplane_client_subscribe_all(valid_BlazenControlPlaneClient, NULL, sink,
                                                   &valid_BlazenControlPlaneSubscription, NULL) == 0,
          "subscription");
    valid_BlazenError = blazen_error_from_json("{\"kind\":\"Internal\",\"message\":\"m\"}");
    valid_BlazenFuture = blazen_ping();
    valid_BlazenCompletionQueue = blazen_completion_queue_new();
    /* A connected worker, for a BlazenWorkerInfo. */
    BlazenFuture *running = blazen_controlplane_worker_run(valid_BlazenControlPlaneWorker);
    for (int i = 0; i < 500 && valid_BlazenWorkerInfo == NULL; i++) {
        BlazenWorkerInfoList *list = NULL;
        if (blazen_controlplane_client_list_workers_blocking(valid_BlazenControlPlaneClient, &list, NULL) == 0 &&
            blazen_worker_info_list_count(list) > 0) {
            blazen_worker_info_list_free(valid_BlazenWorkerInfoList);
            valid_BlazenWorkerInfoList = list;
            valid_BlazenWorkerInfo = blazen_worker_info_list_get(list, 0);
        } else {
            blazen_worker_info_list_free(list);
            t_sleep_ms(10);
        }
    }
    CHECK(valid_BlazenWorkerInfo != NULL, "a connected worker's info");
    (void)valid_BlazenRunEvent;
    (void)valid_BlazenAssignmentContext;

    int before = t_passed + t_failed;
    run_generated_cases();
    printf("adversarial: %d generated cases run (%d checks), %d skipped for want of a handle\n",
           ADVERSARIAL_CASES - skipped, t_passed + t_failed - before, skipped);
    /* A floor, so that a generator that stops seeing part of the table
     * fails here instead of passing with fewer cases. */
    CHECK(ADVERSARIAL_CASES - skipped >= ADVERSARIAL_FLOOR, "at least %d cases ran (%d)", ADVERSARIAL_FLOOR,
          ADVERSARIAL_CASES - skipped);

    blazen_controlplane_worker_shutdown(valid_BlazenControlPlaneWorker);
    CHECK(blazen_future_wait(running) == 0 && blazen_future_take_unit(running, NULL) == 0, "the worker stops");
    blazen_future_free(running);
    blazen_worker_info_free(valid_BlazenWorkerInfo);
    blazen_future_free(valid_BlazenFuture);
    blazen_completion_queue_free(valid_BlazenCompletionQueue);

    blazen_controlplane_subscription_free(valid_BlazenControlPlaneSubscription);
    blazen_controlplane_worker_free(valid_BlazenControlPlaneWorker);
    blazen_worker_info_list_free(valid_BlazenWorkerInfoList);
    blazen_run_state_snapshot_free(valid_BlazenRunStateSnapshot);
    blazen_error_free(valid_BlazenError);
    blazen_controlplane_client_free(valid_BlazenControlPlaneClient);
    blazen_controlplane_server_free(valid_BlazenControlPlaneServer);
    blazen_string_free(ep);
    return t_finish();
}
