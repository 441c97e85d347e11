/*
 * nodelay.so: LD_PRELOAD shim for the benchmark only. Sets TCP_NODELAY on
 * every TCP socket before listen(); Linux copies it to the accepted sockets.
 * It shows what a milter gains on an inet socket when its small writes
 * (replies, and the header/recipient changes sent back to back at end of
 * message) are not held back by Nagle's algorithm waiting for a delayed ACK.
 * Build: cc -O2 -shared -fPIC -o nodelay.so nodelay.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int listen(int fd, int backlog)
{
    static int (*real_listen)(int, int);
    if (!real_listen) real_listen = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
    int domain = 0;
    socklen_t len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && (domain == AF_INET || domain == AF_INET6)) {
        int on = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    }
    return real_listen(fd, backlog);
}
