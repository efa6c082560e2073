/* Output files written three ways (write(2) at an offset, O_APPEND, stdio-buffered), an input
 * file read in steps and a directory read with readdir, over STEPS steps, one progress line per
 * step on stdout. The output files must end byte-identical to an uninterrupted run's whatever
 * step a checkpoint was taken at and however far the program got before it was killed. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STEPS 300

int main(void) {
    int plain = open("out_plain.txt", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int app = open("out_append.txt", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    FILE *buffered = fopen("out_stdio.txt", "w");
    int in = open("input.txt", O_RDONLY);
    DIR *dir = opendir("dir");
    if (plain < 0 || app < 0 || !buffered || in < 0 || !dir) return 2;
    setvbuf(buffered, NULL, _IOFBF, 1 << 16);
    long insum = 0, entries = 0;
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (int i = 0; i < STEPS; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "step %d plain\n", i);
        write(plain, line, n);
        n = snprintf(line, sizeof line, "step %d append\n", i);
        write(app, line, n);
        fprintf(buffered, "step %d stdio %*s\n", i, i % 50, "");
        unsigned char c;
        if (read(in, &c, 1) == 1) insum += c * (i + 1);
        if (i % 10 == 0 && readdir(dir)) entries++;
        printf("step %d\n", i);
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    while (readdir(dir)) entries++;
    fclose(buffered);
    printf("input sum %ld, dir entries %ld\ndone\n", insum, entries);
    return 0;
}
