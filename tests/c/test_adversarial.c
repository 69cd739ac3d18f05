/* Every entry point of the stub table, both variants, against every bad
 * value of every parameter: the cases are generated from the table by
 * `cargo xtask test` (target/generated/adversarial_cases.h, one per
 * surface). This suite runs on every surface. */
#include "adversarial.h"

#include "adversarial_cases.h"

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
    (void)valid_BlazenWorkerInfo;
    (void)valid_BlazenRunEvent;
    (void)valid_BlazenAssignmentContext;

    int before = t_passed + t_failed;
    run_generated_cases();
    printf("adversarial: %d generated cases run (%d checks), %d skipped for want of a handle\n",
           ADVERSARIAL_CASES - skipped, t_passed + t_failed - before, skipped);

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
