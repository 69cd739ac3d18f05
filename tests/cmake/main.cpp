// Built by tests/cmake/CMakeLists.txt against an installed blazen-cabi:
// an embedded control plane, a worker whose handler is C++, a client that
// submits a run and reads its result. Prints "N passed, N failed".
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <blazen.h>

namespace {
int passed = 0, failed = 0;

void check(bool ok, const std::string &what) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        std::fprintf(stderr, "FAIL %s\n", what.c_str());
    }
}

// Takes a library string, returns a copy, frees the original.
std::string take(char *s) {
    std::string out = s ? s : "";
    blazen_string_free(s);
    return out;
}

std::string message(BlazenError *err) {
    std::string m = err ? take(blazen_error_message(err)) : "(no error)";
    blazen_error_free(err);
    return m;
}

struct ServerFree {
    void operator()(BlazenControlPlaneServer *s) const { blazen_controlplane_server_free(s); }
};
struct ClientFree {
    void operator()(BlazenControlPlaneClient *c) const { blazen_controlplane_client_free(c); }
};
struct WorkerFree {
    void operator()(BlazenControlPlaneWorker *w) const { blazen_controlplane_worker_free(w); }
};
struct FutureFree {
    void operator()(BlazenFuture *f) const { blazen_future_free(f); }
};
struct SnapshotFree {
    void operator()(BlazenRunStateSnapshot *s) const { blazen_run_state_snapshot_free(s); }
};

// A log sink routing records into the host's own logger (here: a counter).
std::atomic<int> server_records(0);
void on_log(void *, uint32_t level, const char *target, const char *message) {
    if (level == BLAZEN_LOG_LEVEL_INFO && std::strcmp(target, "blazen_cabi::server") == 0 &&
        std::strstr(message, "embedded control plane started") != nullptr)
        ++server_records;
}

// The worker's handler: answers {"echo": <input>}.
int32_t handle(void *, const char *, const char *, const char *input, char **out_json,
               BlazenError **) {
    std::string out = std::string("{\"echo\":") + input + "}";
    *out_json = blazen_string_alloc(out.c_str());
    return 0;
}
}  // namespace

int main() {
    std::printf("consumer (%s link) of blazen-cabi %s\n", LINK_KIND, BLAZEN_VERSION_STRING);
    check(take(blazen_version()) == BLAZEN_VERSION_STRING, "blazen_version() matches the header");
    check(std::strcmp(FOUND_VERSION, BLAZEN_VERSION_STRING) == 0,
          std::string("find_package found version ") + FOUND_VERSION);

    BlazenError *err = nullptr;
    BlazenLogSinkVTable sink = {nullptr, nullptr, on_log};
    check(blazen_log_set_sink(sink, "blazen_cabi=info", &err) == 0, "log sink set");
    BlazenControlPlaneServer *raw_server = nullptr;
    int32_t rc = blazen_controlplane_server_start_blocking("127.0.0.1:0", &raw_server, &err);
    check(rc == 0, "embedded server starts: " + (rc ? message(err) : ""));
    if (rc != 0) return 1;
    std::unique_ptr<BlazenControlPlaneServer, ServerFree> server(raw_server);
    std::string endpoint = take(blazen_controlplane_server_endpoint(server.get()));

    BlazenAssignmentHandlerVTable vt = {nullptr, nullptr, handle, nullptr, nullptr};
    BlazenControlPlaneWorker *raw_worker = nullptr;
    rc = blazen_controlplane_worker_new_blocking(endpoint.c_str(), "cmake-consumer",
                                                 "[{\"kind\":\"workflow:echo\",\"version\":0}]",
                                                 nullptr, 0, 1, vt, &raw_worker, &err);
    check(rc == 0, "worker connects: " + (rc ? message(err) : ""));
    if (rc != 0) return 1;
    std::unique_ptr<BlazenControlPlaneWorker, WorkerFree> worker(raw_worker);
    std::unique_ptr<BlazenFuture, FutureFree> running(blazen_controlplane_worker_run(worker.get()));

    BlazenControlPlaneClient *raw_client = nullptr;
    rc = blazen_controlplane_client_connect_blocking(endpoint.c_str(), &raw_client, &err);
    check(rc == 0, "client connects: " + (rc ? message(err) : ""));
    if (rc != 0) return 1;
    std::unique_ptr<BlazenControlPlaneClient, ClientFree> client(raw_client);

    BlazenRunStateSnapshot *raw_snap = nullptr;
    rc = blazen_controlplane_client_submit_workflow_blocking(client.get(), "echo", "{\"n\":42}", nullptr,
                                                             true, &raw_snap, &err);
    check(rc == 0, "submit: " + (rc ? message(err) : ""));
    if (rc != 0) return 1;
    std::string run_id = take(blazen_run_state_snapshot_run_id(raw_snap));
    blazen_run_state_snapshot_free(raw_snap);

    // Wait for the run to finish (bounded; the worker answers at once).
    uint32_t status = BLAZEN_RUN_STATUS_PENDING;
    std::string output;
    for (int i = 0; i < 1000; ++i) {
        BlazenRunStateSnapshot *s = nullptr;
        if (blazen_controlplane_client_describe_workflow_blocking(client.get(), run_id.c_str(), &s, &err)) {
            check(false, "describe: " + message(err));
            break;
        }
        std::unique_ptr<BlazenRunStateSnapshot, SnapshotFree> snap(s);
        status = blazen_run_state_snapshot_status(snap.get());
        if (status != BLAZEN_RUN_STATUS_PENDING && status != BLAZEN_RUN_STATUS_RUNNING) {
            output = take(blazen_run_state_snapshot_output_json(snap.get()));
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    check(status == BLAZEN_RUN_STATUS_COMPLETED, "run completed (status " + std::to_string(status) + ")");
    check(output == "{\"echo\":{\"n\":42}}", "run output " + output);

    for (int i = 0; i < 1000 && server_records.load() == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    check(server_records.load() == 1, "the log sink got the server's start record");
    blazen_log_clear_sink();

    blazen_controlplane_worker_shutdown(worker.get());
    blazen_future_wait(running.get());
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
