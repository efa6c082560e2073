/* A program that cleans up on SIGHUP, as vim does (it removes its swap file): its handler creates
 * the file given as its argument and exits. It prints "step N" every 50 ms until killed.
 *
 *   hup_marker MARKER [files|raw]
 *
 * With "files" it first makes a child that shares its fd table (the clone system call with
 * CLONE_FILES, going on like a forked child), which has the handler too and sleeps until killed:
 * a handler of that child that runs writes the marker as well. With "raw" it installs its
 * handler with the rt_sigaction system call itself (as Go programs do), which no library hook
 * sees. Each step it reads its handler back with sigaction and says so if it is not its own.
 *
 * Natively, when it leads its terminal's session and is killed with SIGKILL, its handler never
 * runs. Under ckpt-run the outer process leads the session instead; SIGKILL of the outer process
 * must end the program as abruptly, without the hangup the kernel sends the foreground process
 * group when a session leader dies. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *marker;

static void on_hup(int sig) {
    (void)sig;
    int fd = open(marker, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) close(fd);
    _exit(1);
}

/* The kernel's struct sigaction on x86-64. */
struct ksigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};
#define KSA_RESTORER 0x04000000UL

/* on_hup for SIGHUP by the system call, with libc's signal restorer (x86-64 needs one): the one
 * its sigaction put in the kernel for another signal. */
static int install_raw(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_hup;
    struct ksigaction k;
    memset(&k, 0, sizeof k);
    if (sigaction(SIGURG, &sa, NULL) != 0 || syscall(SYS_rt_sigaction, SIGURG, NULL, &k, 8) != 0)
        return -1;
    signal(SIGURG, SIG_DFL);
    k.handler = on_hup;
    k.flags = KSA_RESTORER;
    k.mask = 0;
    return syscall(SYS_rt_sigaction, SIGHUP, &k, NULL, 8) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    int raw = argc == 3 && !strcmp(argv[2], "raw");
    if (argc != 2 && (argc != 3 || (strcmp(argv[2], "files") && !raw))) {
        fprintf(stderr, "usage: hup_marker MARKER [files|raw]\n");
        return 2;
    }
    marker = argv[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_hup;
    if (raw) {
        if (install_raw() != 0) {
            perror("rt_sigaction");
            return 1;
        }
    } else {
        sigaction(SIGHUP, &sa, NULL);
    }
    struct timespec t = {0, 50000000};
    if (argc == 3 && !raw) {
        long child = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
        if (child < 0) {
            perror("clone");
            return 1;
        }
        if (child == 0)
            for (;;)
                nanosleep(&t, NULL);
    }
    for (unsigned long i = 1;; i++) {
        printf("step %lu\n", i);
        struct sigaction now;
        if (sigaction(SIGHUP, NULL, &now) != 0 || now.sa_handler != on_hup || (now.sa_flags & SA_SIGINFO))
            printf("the SIGHUP handler reads back as %p (flags %#x)\n", (void *)now.sa_handler, (unsigned)now.sa_flags);
        fflush(stdout);
        nanosleep(&t, NULL);
    }
}
