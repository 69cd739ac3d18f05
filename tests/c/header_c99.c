/* Compiled with -std=c99 -Wall -Wextra -Werror -pedantic: the header alone. */
#include "blazen.h"

int main(void) {
    char *v = blazen_version();
    blazen_string_free(v);
    return v == NULL;
}
