/* A full-screen-like program on a terminal (stdin/stdout, and /dev/tty opened as well): raw
 * mode, a SIGWINCH handler. After READY it reads keys one by one; the test then either resizes
 * the terminal (an uninterrupted run) or checkpoints, kills and restarts it on another terminal
 * of that size. Either way the program must see: its raw mode still set, a SIGWINCH, the new
 * window size, the keys typed, and its /dev/tty still writing to the terminal it is on. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t winch;

static void on_winch(int s) {
    (void)s;
    winch = 1;
}

int main(void) {
    struct sigaction sa = {.sa_handler = on_winch};
    sigaction(SIGWINCH, &sa, NULL);
    int tty = open("/dev/tty", O_RDWR);
    struct termios t;
    if (tcgetattr(0, &t)) return 2;
    cfmakeraw(&t);
    tcsetattr(0, TCSANOW, &t);
    printf("READY\r\n");
    fflush(stdout);
    char keys[8];
    int n = 0;
    while (n < 4) {
        int r = read(0, keys + n, 4 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 3;
        n += r;
    }
    struct termios u;
    tcgetattr(0, &u);
    struct winsize w;
    ioctl(0, TIOCGWINSZ, &w);
    printf("keys: %.4s\r\n", keys);
    printf("raw: %s\r\n", (u.c_lflag & (ICANON | ECHO)) == 0 && (u.c_oflag & OPOST) == 0 ? "yes" : "no");
    printf("winch: %s, window %dx%d\r\n", winch ? "yes" : "no", w.ws_row, w.ws_col);
    fflush(stdout);
    if (tty >= 0) dprintf(tty, "via /dev/tty\r\n");
    /* Leave the terminal as a shell wants it. */
    t.c_lflag |= ICANON | ECHO;
    t.c_oflag |= OPOST;
    tcsetattr(0, TCSANOW, &t);
    printf("done\n");
    return 0;
}
