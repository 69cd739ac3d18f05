/* The header's version macros agree with each other and with the library
 * that is loaded (blazen_version()). */
#include "harness.h"

#define T_STR2(x) #x
#define T_STR(x) T_STR2(x)

#if !defined(BLAZEN_VERSION_MAJOR) || !defined(BLAZEN_VERSION_MINOR) || \
    !defined(BLAZEN_VERSION_PATCH) || !defined(BLAZEN_VERSION_STRING)
#error "blazen.h must define the BLAZEN_VERSION_* macros"
#endif

/* Usable in preprocessor conditions, as a consumer would. */
#if BLAZEN_VERSION_MAJOR < 0 || BLAZEN_VERSION_MINOR < 0 || BLAZEN_VERSION_PATCH < 0
#error "version numbers are not integers"
#endif

int main(void) {
    char *v = blazen_version();
    CHECK(v != NULL && strcmp(v, BLAZEN_VERSION_STRING) == 0, "blazen_version() \"%s\" == \"%s\"",
          v ? v : "(null)", BLAZEN_VERSION_STRING);

    /* MAJOR.MINOR.PATCH is the start of the string (a pre-release or build
     * suffix may follow). */
    const char *numbers =
        T_STR(BLAZEN_VERSION_MAJOR) "." T_STR(BLAZEN_VERSION_MINOR) "." T_STR(BLAZEN_VERSION_PATCH);
    size_t n = strlen(numbers);
    CHECK(strncmp(BLAZEN_VERSION_STRING, numbers, n) == 0 &&
              (BLAZEN_VERSION_STRING[n] == '\0' || BLAZEN_VERSION_STRING[n] == '-' ||
               BLAZEN_VERSION_STRING[n] == '+'),
          "\"%s\" starts with %s", BLAZEN_VERSION_STRING, numbers);

    unsigned major = 99, minor = 99, patch = 99;
    CHECK(v != NULL && sscanf(v, "%u.%u.%u", &major, &minor, &patch) == 3, "parse \"%s\"", v ? v : "");
    CHECK(major == BLAZEN_VERSION_MAJOR && minor == BLAZEN_VERSION_MINOR && patch == BLAZEN_VERSION_PATCH,
          "%u.%u.%u agrees with the macros", major, minor, patch);
    blazen_string_free(v);
    return t_finish();
}
