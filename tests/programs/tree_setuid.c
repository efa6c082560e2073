/* A child that changes its user ids (setresuid to nobody; the program runs as root) while its
 * parent counts (zdtm pid00, seccomp_filter, mlock_setuid): the tree's checkpoint is refused in
 * one line naming the process, and the program goes on.
 * Usage: tree_setuid [STEPS=400] [DELAY_MS=20]. Prints "start tree_setuid", "step i" and
 * "result <hex>" (the child's setresuid worked: 1). */
#define _GNU_SOURCE
#include "tree_common.h"

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 400, delay = argc > 2 ? atol(argv[2]) : 20;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("start tree_setuid\n");
    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t child = fork();
    if (child == 0) {
        char ok = setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0;
        xfer(p[1], &ok, 1, 1);
        for (;;)
            sleep_ms(1000);
    }
    char ok = 0;
    xfer(p[0], &ok, 1, 0);
    uint64_t state = ok;
    for (long i = 1; i <= steps; i++) {
        state = mix(state + (uint64_t)i);
        printf("step %ld\n", i);
        sleep_ms(delay);
    }
    end_with_child(child, state);
    return 0;
}
