// The header from C++11: it compiles, links and works with RAII owners.
#include <cstdio>
#include <memory>
#include <string>

#include "blazen.h"

namespace {
int passed = 0, failed = 0;
void check(bool ok, const char *what) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        std::fprintf(stderr, "FAIL %s\n", what);
    }
}

struct StrFree {
    void operator()(char *s) const { blazen_string_free(s); }
};
using Str = std::unique_ptr<char, StrFree>;
struct ServerFree {
    void operator()(BlazenControlPlaneServer *s) const { blazen_controlplane_server_free(s); }
};
struct ClientFree {
    void operator()(BlazenControlPlaneClient *c) const { blazen_controlplane_client_free(c); }
};
struct ListFree {
    void operator()(BlazenWorkerInfoList *l) const { blazen_worker_info_list_free(l); }
};
}  // namespace

int main() {
    Str version(blazen_version());
    check(version && std::string(version.get()).size() > 0, "version");

    BlazenControlPlaneServer *raw_server = nullptr;
    BlazenError *err = nullptr;
    check(blazen_controlplane_server_start_blocking("127.0.0.1:0", &raw_server, &err) == 0,
          "server starts");
    std::unique_ptr<BlazenControlPlaneServer, ServerFree> server(raw_server);
    Str endpoint(blazen_controlplane_server_endpoint(server.get()));
    check(endpoint && std::string(endpoint.get()).rfind("http://127.0.0.1:", 0) == 0,
          "endpoint");

    BlazenControlPlaneClient *raw_client = nullptr;
#if BLAZEN_SURFACE == 6 /* the 0.6.x surface takes a bearer token (none here) */
    check(blazen_controlplane_client_connect_blocking(endpoint.get(), nullptr, &raw_client, &err) == 0,
#else
    check(blazen_controlplane_client_connect_blocking(endpoint.get(), &raw_client, &err) == 0,
#endif
          "client connects");
    std::unique_ptr<BlazenControlPlaneClient, ClientFree> client(raw_client);

    BlazenWorkerInfoList *raw_list = nullptr;
    check(blazen_controlplane_client_list_workers_blocking(client.get(), &raw_list, &err) == 0,
          "list workers");
    std::unique_ptr<BlazenWorkerInfoList, ListFree> list(raw_list);
    check(blazen_worker_info_list_count(list.get()) == 0, "no workers");

    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
