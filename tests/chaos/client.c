/* The chaos run's client, two modes.
 *
 * `chaos_client run ENDPOINT RATE OUT_DIR`: submits run N (input `{"n": N,
 * "ms": M}`, workflow `chaos`, waiting for a worker) RATE times a second
 * on a fixed schedule until SIGTERM, and describes as it goes (RATE times
 * a second: alternately the newest accepted run and a random earlier
 * one). Every accepted submission is appended to OUT_DIR/accepted.txt
 * (`A N RUN_ID SUBMIT_MS ACCEPT_MS`) as soon as its answer arrives, every
 * refused one to refused.txt (`R N SUBMIT_MS TOOK_MS SUBKIND: MESSAGE`),
 * every describe to describes.txt (`D MS RUN_ID STATUS`, or `D MS RUN_ID
 * ERR SUBKIND`). A call that has not answered within 30 s is cancelled and
 * counted (subkind `chaos-timeout`). When calls have failed with
 * ControlPlaneTransport for 5 s on end, a new client handle is connected
 * (and counted; the old one is freed at exit).
 *
 * `chaos_client check ENDPOINT OUT_DIR TIMEOUT_S`: describes every run of
 * OUT_DIR/accepted.txt, again every 500 ms for those not yet terminal,
 * until all are or TIMEOUT_S passes, then writes OUT_DIR/final.txt
 * (`F RUN_ID STATUS COMPLETED_MS TEXT`: STATUS a BLAZEN_RUN_STATUS_* or -1
 * when it could not be described, TEXT the output JSON, the error, or the
 * describe error). */
#include "chaos.h"

#include <poll.h>
#include <stdatomic.h>

enum { CALL_TIMEOUT_MS = 30000, MAX_CLIENTS = 256 };

/* ---- the client handle, replaced after a long transport outage ---------- */

static _Atomic(BlazenControlPlaneClient *) client;
static BlazenControlPlaneClient *retired[MAX_CLIENTS];
static int n_retired, reconnects;
static const char *endpoint;
static atomic_int stop;

static BlazenControlPlaneClient *connect_client(int give_up_ms) {
    uint64_t until = chaos_now_ms() + (uint64_t)give_up_ms;
    for (;;) {
        BlazenControlPlaneClient *c = NULL;
        BlazenError *err = NULL;
        if (blazen_controlplane_client_connect_with_options_blocking(
                endpoint, "{\"connect_timeout_ms\":2000,\"connections\":4}", &c, &err) == 0)
            return c;
        char text[512];
        chaos_err_text(err, text, sizeof text);
        if (chaos_now_ms() > until) {
            fprintf(stderr, "chaos_client: cannot connect: %s\n", text);
            return NULL;
        }
        chaos_sleep_ms(200);
    }
}

/* Waits for `f` at most `ms`; 1 when it finished. */
static int await_future(BlazenFuture *f, int ms) {
    int64_t fd = blazen_future_fd(f);
    if (fd < 0) return blazen_future_wait(f) == 0;
    struct pollfd p = {(int)fd, POLLIN, 0};
    int r;
    while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR) {
    }
    return r > 0;
}

/* Takes the snapshot of future `f` (freed here), or NULL with the error in
 * `*err`, or NULL with `*err` NULL when it gave no answer within
 * CALL_TIMEOUT_MS (then cancelled). */
static BlazenRunStateSnapshot *take_snapshot(BlazenFuture *f, BlazenError **err) {
    BlazenRunStateSnapshot *s = NULL;
    *err = NULL;
    if (!await_future(f, CALL_TIMEOUT_MS)) {
        blazen_future_cancel(f);
        blazen_future_free(f);
        return NULL;
    }
    if (blazen_future_take_run_state_snapshot(f, &s, err) != 0) s = NULL;
    blazen_future_free(f);
    return s;
}

/* ---- run mode ------------------------------------------------------------ */

static pthread_mutex_t ids_mu = PTHREAD_MUTEX_INITIALIZER;
static char (*ids)[37];
static size_t n_ids, cap_ids;
static FILE *accepted_f, *refused_f, *describes_f;
static long describes_ok, describes_failed;
static uint64_t transport_since;

static void remember(const char *id) {
    pthread_mutex_lock(&ids_mu);
    if (n_ids == cap_ids) {
        cap_ids = cap_ids ? cap_ids * 2 : 4096;
        ids = realloc(ids, cap_ids * sizeof *ids);
    }
    snprintf(ids[n_ids++], 37, "%s", id);
    pthread_mutex_unlock(&ids_mu);
}

/* Notes a transport failure (or success) of a call; after 5 s of nothing
 * but transport failures, connects a new client. */
static void note_outcome(int transport_failed) {
    if (!transport_failed) {
        transport_since = 0;
        return;
    }
    uint64_t now = chaos_now_ms();
    if (transport_since == 0) transport_since = now;
    if (now - transport_since < 5000 || n_retired >= MAX_CLIENTS) return;
    BlazenControlPlaneClient *fresh = connect_client(1000);
    if (fresh) {
        retired[n_retired++] = atomic_exchange(&client, fresh);
        reconnects++;
        transport_since = 0;
    }
}

static void *describer(void *arg) {
    long period = *(long *)arg;
    unsigned seed = 12345;
    for (long k = 0; !atomic_load(&stop); k++) {
        chaos_sleep_ms(period);
        char id[37];
        pthread_mutex_lock(&ids_mu);
        size_t n = n_ids;
        if (n > 0) snprintf(id, sizeof id, "%s", ids[k % 2 ? (size_t)rand_r(&seed) % n : n - 1]);
        pthread_mutex_unlock(&ids_mu);
        if (n == 0) continue;
        BlazenError *err = NULL;
        BlazenRunStateSnapshot *s =
            take_snapshot(blazen_controlplane_client_describe_workflow(atomic_load(&client), id), &err);
        if (s) {
            fprintf(describes_f, "D %llu %s %u\n", (unsigned long long)chaos_now_ms(), id,
                    blazen_run_state_snapshot_status(s));
            describes_ok++;
        } else {
            char sub[128];
            chaos_subkind(err, sub, sizeof sub);
            fprintf(describes_f, "D %llu %s ERR %s\n", (unsigned long long)chaos_now_ms(), id, sub);
            describes_failed++;
            blazen_error_free(err);
        }
        fflush(describes_f);
        blazen_run_state_snapshot_free(s);
    }
    return NULL;
}

static void *signal_waiter(void *arg) {
    int sig = 0;
    sigwait((sigset_t *)arg, &sig);
    atomic_store(&stop, 1);
    return NULL;
}

static FILE *open_in(const char *dir, const char *name, const char *mode) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, mode);
    if (!f) fprintf(stderr, "chaos_client: %s: %s\n", path, strerror(errno));
    return f;
}

static int run_mode(double rate, const char *dir, sigset_t *set) {
    pthread_t sig_thread;
    pthread_create(&sig_thread, NULL, signal_waiter, set);
    accepted_f = open_in(dir, "accepted.txt", "w");
    refused_f = open_in(dir, "refused.txt", "w");
    describes_f = open_in(dir, "describes.txt", "w");
    if (!accepted_f || !refused_f || !describes_f) return 2;
    atomic_store(&client, connect_client(60000));
    if (!atomic_load(&client)) return 2;
    printf("client: connected\n");
    fflush(stdout);
    long period = rate > 0 ? (long)(1000.0 / rate) : 1000;
    if (period < 1) period = 1;
    pthread_t desc;
    pthread_create(&desc, NULL, describer, &period);
    long submitted = 0, accepted = 0, refused = 0, timeouts = 0;
    uint64_t start = chaos_now_ms();
    for (long n = 0; !atomic_load(&stop); n++) {
        uint64_t due = start + (uint64_t)((double)n * 1000.0 / rate);
        uint64_t now = chaos_now_ms();
        if (due > now) chaos_sleep_ms((long)(due - now));
        if (atomic_load(&stop)) break;
        char input[64];
        snprintf(input, sizeof input, "{\"n\":%ld,\"ms\":%ld}", n, 2 + n % 7);
        uint64_t t0 = chaos_now_ms();
        BlazenError *err = NULL;
        BlazenRunStateSnapshot *s = take_snapshot(
            blazen_controlplane_client_submit_workflow(atomic_load(&client), CHAOS_WORKFLOW, input, NULL, true), &err);
        uint64_t t1 = chaos_now_ms();
        submitted++;
        if (s) {
            char *id = blazen_run_state_snapshot_run_id(s);
            fprintf(accepted_f, "A %ld %s %llu %llu\n", n, id ? id : "?", (unsigned long long)t0,
                    (unsigned long long)t1);
            fflush(accepted_f);
            if (id) remember(id);
            blazen_string_free(id);
            blazen_run_state_snapshot_free(s);
            accepted++;
            note_outcome(0);
        } else {
            char sub[128], text[1024];
            chaos_subkind(err, sub, sizeof sub);
            int timed_out = err == NULL;
            chaos_err_text(err, text, sizeof text);
            fprintf(refused_f, "R %ld %llu %llu %s\n", n, (unsigned long long)t0, (unsigned long long)(t1 - t0),
                    text);
            fflush(refused_f);
            refused++;
            timeouts += timed_out;
            note_outcome(strcmp(sub, BLAZEN_SUBKIND_CONTROL_PLANE_TRANSPORT) == 0);
        }
    }
    pthread_join(desc, NULL);
    printf("client: submitted %ld accepted %ld refused %ld timeouts %ld describes %ld failed %ld reconnects %d\n",
           submitted, accepted, refused, timeouts, describes_ok, describes_failed, reconnects);
    fflush(stdout);
    fclose(accepted_f);
    fclose(refused_f);
    fclose(describes_f);
    blazen_controlplane_client_free(atomic_load(&client));
    for (int i = 0; i < n_retired; i++) blazen_controlplane_client_free(retired[i]);
    free(ids);
    return 0;
}

/* ---- check mode ---------------------------------------------------------- */

typedef struct {
    char id[37];
    int status; /* BLAZEN_RUN_STATUS_*, -1 not described */
    unsigned long long completed_ms;
    char *text;
} Final;

static Final *finals;
static size_t n_finals;
enum { CHECKERS = 4 };

static int terminal(int st) {
    return st == BLAZEN_RUN_STATUS_COMPLETED || st == BLAZEN_RUN_STATUS_FAILED || st == BLAZEN_RUN_STATUS_CANCELLED;
}

static void describe_into(Final *f) {
    BlazenError *err = NULL;
    BlazenRunStateSnapshot *s =
        take_snapshot(blazen_controlplane_client_describe_workflow(atomic_load(&client), f->id), &err);
    free(f->text);
    f->text = NULL;
    if (!s) {
        char text[1024];
        chaos_err_text(err, text, sizeof text);
        f->status = -1;
        f->text = strdup(text);
        return;
    }
    f->status = (int)blazen_run_state_snapshot_status(s);
    uint64_t at = 0;
    int32_t has = 0;
    blazen_run_state_snapshot_completed_at_ms(s, &at, &has);
    f->completed_ms = has ? (unsigned long long)at : 0;
    char *t = f->status == BLAZEN_RUN_STATUS_COMPLETED ? blazen_run_state_snapshot_output_json(s)
                                                       : blazen_run_state_snapshot_error(s);
    f->text = strdup(t ? t : "-");
    for (char *c = f->text; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    blazen_string_free(t);
    blazen_run_state_snapshot_free(s);
}

static void *checker(void *arg) {
    size_t part = (size_t)(uintptr_t)arg;
    for (size_t i = part; i < n_finals; i += CHECKERS)
        if (!terminal(finals[i].status)) describe_into(&finals[i]);
    return NULL;
}

static int check_mode(const char *dir, long timeout_s) {
    FILE *in = open_in(dir, "accepted.txt", "r");
    if (!in) return 2;
    size_t cap = 4096;
    finals = calloc(cap, sizeof *finals);
    char line[512];
    while (fgets(line, sizeof line, in)) {
        char id[37];
        long n;
        if (sscanf(line, "A %ld %36s", &n, id) != 2) continue;
        if (n_finals == cap) {
            cap *= 2;
            finals = realloc(finals, cap * sizeof *finals);
        }
        memset(&finals[n_finals], 0, sizeof *finals);
        snprintf(finals[n_finals].id, sizeof finals[n_finals].id, "%s", id);
        finals[n_finals++].status = -1;
    }
    fclose(in);
    atomic_store(&client, connect_client((int)timeout_s * 1000));
    if (!atomic_load(&client)) return 2;
    uint64_t start = chaos_now_ms(), until = start + (uint64_t)timeout_s * 1000u;
    int passes = 0;
    size_t done = 0;
    for (;;) {
        pthread_t t[CHECKERS];
        for (uintptr_t k = 0; k < CHECKERS; k++) pthread_create(&t[k], NULL, checker, (void *)k);
        for (int k = 0; k < CHECKERS; k++) pthread_join(t[k], NULL);
        passes++;
        done = 0;
        for (size_t i = 0; i < n_finals; i++) done += terminal(finals[i].status);
        printf("check: pass %d after %.1f s: %zu of %zu runs terminal\n", passes,
               (double)(chaos_now_ms() - start) / 1000.0, done, n_finals);
        fflush(stdout);
        if (done == n_finals || chaos_now_ms() > until) break;
        chaos_sleep_ms(500);
    }
    FILE *out = open_in(dir, "final.txt", "w");
    if (!out) return 2;
    for (size_t i = 0; i < n_finals; i++) {
        fprintf(out, "F %s %d %llu %s\n", finals[i].id, finals[i].status, finals[i].completed_ms,
                finals[i].text ? finals[i].text : "-");
        free(finals[i].text);
    }
    fclose(out);
    printf("check: %zu of %zu accepted runs terminal after %.1f s\n", done, n_finals,
           (double)(chaos_now_ms() - start) / 1000.0);
    free(finals);
    blazen_controlplane_client_free(atomic_load(&client));
    return 0;
}

int main(int argc, char **argv) {
    sigset_t set;
    chaos_block_signals(&set);
    if (argc == 5 && strcmp(argv[1], "run") == 0) {
        endpoint = argv[2];
        return run_mode(atof(argv[3]), argv[4], &set);
    }
    if (argc == 5 && strcmp(argv[1], "check") == 0) {
        endpoint = argv[2];
        return check_mode(argv[3], atol(argv[4]));
    }
    fprintf(stderr, "usage: chaos_client run ENDPOINT RATE OUT_DIR | check ENDPOINT OUT_DIR TIMEOUT_S\n");
    return 64;
}
