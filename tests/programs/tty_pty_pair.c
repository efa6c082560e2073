/* A pseudo-terminal pair the program made itself (posix_openpt, then the slave): unread bytes
 * both ways (a line typed on the master the slave has not read, a partial line, output of the
 * slave the master has not read), the slave's termios and window size, the master's packet
 * mode. After a restart they are all there, and the pair still works both ways. */
#include "files_common.h"
#include <sys/ioctl.h>
#include <termios.h>

int main(void) {
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m)) return 2;
    char name[64];
    strcpy(name, ptsname(m));
    int s = open(name, O_RDWR | O_NOCTTY);
    if (s < 0) return 3;
    struct termios t;
    tcgetattr(s, &t);
    t.c_lflag &= ~ECHO;
    t.c_cc[VERASE] = 'X';
    tcsetattr(s, TCSANOW, &t);
    struct winsize ws = {33, 101, 0, 0};
    ioctl(m, TIOCSWINSZ, &ws);
    write(m, "first line\nsecond", 17);
    write(s, "from the slave\n", 15);
    int one = 1;
    ioctl(m, TIOCPKT, &one);
    ready();

    char b[64];
    int n = read(s, b, sizeof b);
    printf("slave read: '%.*s'\n", n > 0 ? n - 1 : 0, b);
    n = read(m, b, sizeof b);
    /* Packet mode: a status byte first. */
    printf("master read: status %d '%.*s'\n", n > 0 ? b[0] : -1, n > 2 ? n - 3 : 0, b + 1);
    write(m, " part\n", 6);
    n = read(s, b, sizeof b);
    printf("slave read: '%.*s'\n", n > 0 ? n - 1 : 0, b);
    struct termios u;
    tcgetattr(s, &u);
    printf("termios: echo %s, erase %c\n", u.c_lflag & ECHO ? "on" : "off", u.c_cc[VERASE]);
    struct winsize w;
    ioctl(s, TIOCGWINSZ, &w);
    printf("window: %dx%d\n", w.ws_row, w.ws_col);
    printf("same name: %s\n", strcmp(ptsname(m), name) == 0 ? "yes" : "no");
    return finish();
}
