/* Guard pages (MADV_GUARD_INSTALL, as newer glibc puts at the end of thread stacks): in private
 * anonymous memory, in a private file mapping, and at the low end of a thread's stack, with data
 * around them. Prints READY, waits for "go", then for each page whether a write to it faults
 * and whether its data is intact; the thread prints the same for its stack guard. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#define PG 4096
#define PAGES 8

static sigjmp_buf jb;
static volatile sig_atomic_t armed;
static int dir;

static void on_segv(int s) {
    (void)s;
    if (armed) siglongjmp(jb, 1);
    _exit(3);
}

/* Whether writing to p faults (the fault is caught and nothing is written). */
static int faults(volatile char *p) {
    int f = 0;
    armed = 1;
    if (sigsetjmp(jb, 1)) f = 1;
    else *p = 'x';
    armed = 0;
    return f;
}

static void wait_go(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (faccessat(dir, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
}

/* Pages 1, 2 and 5 are guarded; the others hold data. */
static int guarded(int i) { return i == 1 || i == 2 || i == 5; }

static void fill(char *p) {
    for (int i = 0; i < PAGES; i++)
        if (!guarded(i)) memset(p + i * PG, 'a' + i, PG);
}

static void install(const char *what, char *p) {
    for (int i = 0; i < PAGES; i++)
        if (guarded(i) && madvise(p + i * PG, PG, MADV_GUARD_INSTALL)) {
            printf("%s: no guard pages here\n", what);
            exit(0);
        }
}

static void report(const char *what, char *p) {
    for (int i = 0; i < PAGES; i++) {
        int ok = 1;
        if (!guarded(i))
            for (int k = 0; k < PG; k++) ok &= p[i * PG + k] == 'a' + i || (k == 0 && p[i * PG] == 'x');
        printf("%s page %d: %s%s\n", what, i, faults(p + i * PG) ? "faults" : "writable", guarded(i) ? "" : ok ? ", data intact" : ", data CHANGED");
    }
}

static void *worker(void *arg) {
    (void)arg;
    /* The lowest page of this thread's stack (glibc put no guard: guardsize 0). */
    pthread_attr_t a;
    void *stack;
    size_t size;
    pthread_getattr_np(pthread_self(), &a);
    pthread_attr_getstack(&a, &stack, &size);
    madvise(stack, PG, MADV_GUARD_INSTALL);
    wait_go();
    printf("thread stack guard: %s\n", faults((char *)stack) ? "faults" : "writable");
    printf("thread stack above it: %s\n", faults((char *)stack + PG) ? "faults" : "writable");
    return NULL;
}

int main(void) {
    dir = open(".", O_RDONLY | O_DIRECTORY);
    struct sigaction sa = {0};
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);

    char *anon = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    fill(anon);
    install("anonymous", anon);

    int fd = open("guarded.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
    char page[PG];
    for (int i = 0; i < PAGES; i++) {
        memset(page, 'a' + i, PG);
        if (write(fd, page, PG) != PG) return 2;
    }
    char *file = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    file[3 * PG] = 'x'; /* one page copied on write */
    install("file", file);

    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setguardsize(&a, 0);
    pthread_t t;
    pthread_create(&t, &a, worker, NULL);

    printf("READY\n");
    fflush(stdout);
    wait_go();
    pthread_join(t, NULL);
    report("anonymous", anon);
    report("file", file);
    return 0;
}
