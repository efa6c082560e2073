/* attr_seccomp.c with a TSYNC filter for every thread (see there). */
#define TSYNC
#include "attr_seccomp.c"
