/* The chaos run's subscribers: `chaos_sub ENDPOINT OUT_DIR`.
 *
 * Two `subscribe_all` subscriptions over one client, each appending the
 * `status.*` events it receives to OUT_DIR/events-K.txt (`E MS RUN_ID TYPE
 * DATA_JSON`). A subscription that ends (`on_error`, `on_close`: the
 * control plane restarted; subscriptions do not survive that) is opened
 * again, every 200 ms until that works. SIGTERM ends it; it then prints
 * its counts. */
#include "chaos.h"

#include <stdatomic.h>

enum { SUBS = 2 };

typedef struct {
    FILE *file;
    atomic_int broken;
    atomic_long events;
    BlazenControlPlaneSubscription *sub;
} Sub;

static Sub subs[SUBS];
static atomic_int drops, stop;
static atomic_long errors, closes;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void wake(void) {
    pthread_mutex_lock(&mu);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_drop(void *ud) {
    (void)ud;
    atomic_fetch_add(&drops, 1);
}

static void on_event(void *ud, const char *run_id, const char *type, const char *data, uint64_t ts) {
    (void)ts;
    Sub *s = ud;
    atomic_fetch_add(&s->events, 1);
    if (strncmp(type, "status.", 7) != 0) return;
    fprintf(s->file, "E %llu %s %s %s\n", (unsigned long long)chaos_now_ms(), run_id, type, data ? data : "null");
    fflush(s->file);
}

static void on_close(void *ud) {
    atomic_store(&((Sub *)ud)->broken, 1);
    atomic_fetch_add(&closes, 1);
    wake();
}

static void on_error(void *ud, const char *message) {
    (void)message;
    atomic_store(&((Sub *)ud)->broken, 1);
    atomic_fetch_add(&errors, 1);
    wake();
}

static void *signal_waiter(void *arg) {
    int sig = 0;
    sigwait((sigset_t *)arg, &sig);
    atomic_store(&stop, 1);
    wake();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: chaos_sub ENDPOINT OUT_DIR\n");
        return 64;
    }
    sigset_t set;
    chaos_block_signals(&set);
    pthread_t sig_thread;
    pthread_create(&sig_thread, NULL, signal_waiter, &set);
    for (int k = 0; k < SUBS; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/events-%d.txt", argv[2], k);
        subs[k].file = fopen(path, "w");
        if (!subs[k].file) {
            fprintf(stderr, "chaos_sub: %s: %s\n", path, strerror(errno));
            return 2;
        }
        atomic_store(&subs[k].broken, 1);
    }
    BlazenControlPlaneClient *client = NULL;
    while (!atomic_load(&stop) && blazen_controlplane_client_connect_with_options_blocking(
                                      argv[1], "{\"connect_timeout_ms\":2000,\"connections\":2}", &client, NULL) != 0)
        chaos_sleep_ms(200);
    long opened = 0, failed_opens = 0;
    while (!atomic_load(&stop)) {
        for (int k = 0; k < SUBS; k++) {
            if (!atomic_load(&subs[k].broken)) continue;
            blazen_controlplane_subscription_free(subs[k].sub);
            subs[k].sub = NULL;
            atomic_store(&subs[k].broken, 0);
            BlazenRunEventSinkVTable sink = {&subs[k], on_drop, on_event, on_close, on_error};
            BlazenError *err = NULL;
            if (blazen_controlplane_client_subscribe_all(client, NULL, sink, &subs[k].sub, &err) == 0) {
                opened++;
            } else {
                blazen_error_free(err);
                subs[k].sub = NULL;
                atomic_store(&subs[k].broken, 1);
                failed_opens++;
            }
        }
        pthread_mutex_lock(&mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 200 * 1000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        if (!atomic_load(&stop)) pthread_cond_timedwait(&cv, &mu, &until);
        pthread_mutex_unlock(&mu);
    }
    for (int k = 0; k < SUBS; k++) blazen_controlplane_subscription_free(subs[k].sub);
    /* Every sink made gets drop_user_data once, after its last callback:
     * wait for them before the files close (failed opens dropped too). */
    for (int i = 0; i < 200 && atomic_load(&drops) < opened + failed_opens; i++) chaos_sleep_ms(10);
    long events = 0;
    for (int k = 0; k < SUBS; k++) {
        events += atomic_load(&subs[k].events);
        fclose(subs[k].file);
    }
    printf("subscribers: %d subscriptions opened %ld times (%ld failed opens), %ld events, %ld ended with on_error, "
           "%ld with on_close\n",
           SUBS, opened, failed_opens, events, atomic_load(&errors), atomic_load(&closes));
    blazen_controlplane_client_free(client);
    return 0;
}
