/* A daemon that answers at once, for timing the client side of a send (bench/startup.sh):
 * listens on a Unix stream socket, and for each connection reads one frame (its u32 LE size
 * first) and answers status 0 without storing anything. Single-threaded; stops on SIGTERM.
 *   answerd SOCKET */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

static int read_full(int fd, char *buf, size_t n)
{
        size_t got = 0;
        while (got < n) {
                ssize_t r = read(fd, buf + got, n - got);
                if (r <= 0)
                        return -1;
                got += (size_t)r;
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        static char buf[64 * 1024];
        int l;
        if (argc != 2 || strlen(argv[1]) >= sizeof addr.sun_path)
                return 2;
        memcpy(addr.sun_path, argv[1], strlen(argv[1]) + 1);
        signal(SIGPIPE, SIG_IGN);
        l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        unlink(argv[1]);
        if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(l, 64) != 0) {
                perror("answerd");
                return 1;
        }
        for (;;) {
                int32_t ok = 0;
                uint32_t size;
                int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        continue;
                if (read_full(c, (char *)&size, 4) == 0 && size >= 9 && size <= sizeof buf &&
                    read_full(c, buf, size - 4) == 0)
                        (void)!write(c, &ok, 4);
                close(c);
        }
}
