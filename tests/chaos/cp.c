/* The chaos run's control plane: `chaos_cp BIND OPTIONS_JSON`.
 *
 * Starts the library's embedded control plane on BIND (`127.0.0.1:PORT`)
 * with OPTIONS_JSON (the run gives `store_url`), prints `ready PORT` on
 * stdout once it serves (or `failed MESSAGE` and exits 2), then serves
 * until SIGTERM (a graceful shutdown, exit 0). The run kills it with
 * SIGKILL and starts another on the same address and store. */
#include "chaos.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: chaos_cp BIND OPTIONS_JSON\n");
        return 64;
    }
    sigset_t set;
    chaos_block_signals(&set);
    BlazenControlPlaneServer *server = NULL;
    BlazenError *err = NULL;
    if (blazen_controlplane_server_start_with_options_blocking(argv[1], argv[2], &server, &err) != 0) {
        char text[1024];
        chaos_err_text(err, text, sizeof text);
        printf("failed %s\n", text);
        fflush(stdout);
        return 2;
    }
    printf("ready %u\n", blazen_controlplane_server_port(server));
    fflush(stdout);
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGUSR1) {
    }
    blazen_controlplane_server_shutdown(server);
    blazen_controlplane_server_free(server);
    return 0;
}
