/* Checks for the generated adversarial cases (target/generated/
 * adversarial_cases.h): every bad argument must give a VALIDATION error
 * naming the parameter (status and future entry points) or the documented
 * neutral result (entry points without an error slot), release any
 * callback table's user_data exactly once, and never crash. The tables
 * carry a non-NULL user_data: the library passes NULL to no
 * drop_user_data. */
#ifndef BLAZEN_ADVERSARIAL_H
#define BLAZEN_ADVERSARIAL_H

#include "harness.h"

static const char *BAD_UTF8 = "\xff\xfe\xfd";
static const char *current_case;
static int skipped, vt_made, vt_dropped;

/* A valid handle of each type the table uses, or NULL when the suite cannot
 * make one outside a callback (then cases that need it are skipped). */
static BlazenControlPlaneClient *valid_BlazenControlPlaneClient;
static BlazenControlPlaneServer *valid_BlazenControlPlaneServer;
static BlazenControlPlaneWorker *valid_BlazenControlPlaneWorker;
static BlazenControlPlaneSubscription *valid_BlazenControlPlaneSubscription;
static BlazenRunStateSnapshot *valid_BlazenRunStateSnapshot;
static BlazenWorkerInfoList *valid_BlazenWorkerInfoList;
static BlazenWorkerInfo *valid_BlazenWorkerInfo;
static BlazenRunEvent *valid_BlazenRunEvent;
static BlazenError *valid_BlazenError;
static BlazenAssignmentContext *valid_BlazenAssignmentContext;
static BlazenFuture *valid_BlazenFuture;
static BlazenCompletionQueue *valid_BlazenCompletionQueue;
#define VALID(T) (valid_##T)

/* The handle types a suite cannot make outside a callback, each with why;
 * a case skipped for want of any other handle fails the suite. */
static const char *const SKIPPABLE[][2] = {
    {"BlazenRunEvent", "no function of this library returns one"},
    {"BlazenAssignmentContext", "one exists only during a handler call"},
};

/* A generated case that needs a handle the suite has not got: printed,
 * counted, and a failure unless every type it needs is in SKIPPABLE. */
static void skip_case(const char *label, const char *needs) {
    int allowed = 0;
    for (size_t i = 0; i < sizeof SKIPPABLE / sizeof SKIPPABLE[0]; i++) {
        if (strstr(needs, SKIPPABLE[i][0]) != NULL) {
            allowed = 1;
            printf("skipped %s: needs a %s, and %s\n", label, SKIPPABLE[i][0], SKIPPABLE[i][1]);
        }
    }
    CHECK(allowed, "%s: skipped, needs a valid %s the suite did not make", label, needs);
    skipped++;
}

static void vt_drop(void *ud) {
    (void)ud;
    vt_dropped++;
}
static BlazenAssignmentHandlerVTable vt_BlazenAssignmentHandlerVTable(void) {
    BlazenAssignmentHandlerVTable v = {&vt_made, vt_drop, NULL, NULL, NULL};
    vt_made++;
    return v;
}
static BlazenContextHandlerVTable vt_BlazenContextHandlerVTable(void) {
    BlazenContextHandlerVTable v = {&vt_made, vt_drop, NULL, NULL, NULL};
    vt_made++;
    return v;
}
static BlazenRunEventSinkVTable vt_BlazenRunEventSinkVTable(void) {
    BlazenRunEventSinkVTable v = {&vt_made, vt_drop, NULL, NULL, NULL};
    vt_made++;
    return v;
}

static BlazenLogSinkVTable vt_BlazenLogSinkVTable(void) {
    BlazenLogSinkVTable v = {&vt_made, vt_drop, NULL};
    vt_made++;
    return v;
}

#define CASE_BEGIN(label) (current_case = (label))
#define CASE_END() CHECK(vt_made == vt_dropped, "%s: user_data released once (%d made, %d dropped)", \
                         current_case, vt_made, vt_dropped)
#define CHECK_NEUTRAL(cond) CHECK(cond, "%s: neutral result", current_case)

static int names_param(BlazenError *err, const char *param) {
    char *m = blazen_error_message(err);
    char quoted[128];
    snprintf(quoted, sizeof quoted, "`%s`", param);
    int ok = m != NULL && strstr(m, quoted) != NULL;
    blazen_string_free(m);
    return ok;
}

static void expect_status(int32_t rc, BlazenError *err, int out_untouched, const char *param,
                          const char *label) {
    CHECK(rc == -1, "%s: returns -1 (%d)", label, rc);
    CHECK(err != NULL && blazen_error_kind(err) == BLAZEN_ERROR_KIND_VALIDATION, "%s: VALIDATION (%u)",
          label, err ? blazen_error_kind(err) : 0);
    CHECK(err != NULL && names_param(err, param), "%s: message names `%s`", label, param);
    CHECK(out_untouched, "%s: result slot untouched", label);
    blazen_error_free(err);
}

static void expect_future(BlazenFuture *f, const char *param, const char *label) {
    CHECK(f != NULL && blazen_future_poll(f) == 1, "%s: an already-failed future", label);
    BlazenError *err = NULL;
    int32_t rc = blazen_future_take_unit(f, &err);
    expect_status(rc, err, 1, param, label);
    blazen_future_free(f);
}

#endif
