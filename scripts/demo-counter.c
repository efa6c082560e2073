/* The demo's program: counts to 30, one number every 0.2 s, then prints "done". */
#include <stdio.h>
#include <unistd.h>
int main(void) {
    for (int i = 1; i <= 30; i++) { printf("%d\n", i); fflush(stdout); usleep(200000); }
    printf("done\n");
    return 0;
}
