#define _GNU_SOURCE 1   // sigisemptyset, RTLD_DEFAULT, pthread_setname_np
#include "CMilter.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

_Static_assert(CMILTER_MAX_REPLY_LINES == 32, "smfi_setmlreply takes at most 32 lines");
#if !defined(SMFIF_CHGFROM) || !defined(SMFIP_NR_HDR)
#error "the milter layer needs libmilter with milter protocol 6 (SMFIF_CHGFROM, SMFIP_NR_*)"
#endif

int cmilter_version(void) { return SMFI_VERSION; }

int cmilter_setmlreply(SMFICTX *ctx, const char *rcode, const char *xcode,
                       const char *const *lines, size_t count) {
    if (lines == NULL || count == 0 || count > CMILTER_MAX_REPLY_LINES) return MI_FAILURE;
    const char *l[CMILTER_MAX_REPLY_LINES];
    for (size_t i = 0; i < CMILTER_MAX_REPLY_LINES; i++) l[i] = i < count ? lines[i] : NULL;
    // libmilter stops at the first NULL argument, so spelling out all 32
    // slots sends exactly `count` lines.
    return smfi_setmlreply(ctx, rcode, xcode,
        l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], l[8], l[9], l[10], l[11],
        l[12], l[13], l[14], l[15], l[16], l[17], l[18], l[19], l[20], l[21], l[22],
        l[23], l[24], l[25], l[26], l[27], l[28], l[29], l[30], l[31], (char *)NULL);
}

int cmilter_format_address(const struct sockaddr *address, char *buffer, size_t size, int *port) {
    if (address == NULL || buffer == NULL || size == 0 || port == NULL) return -1;
    switch (address->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)address;
        *port = ntohs(in->sin_port);
        return inet_ntop(AF_INET, &in->sin_addr, buffer, (socklen_t)size) ? 0 : -1;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
        *port = ntohs(in6->sin6_port);
        return inet_ntop(AF_INET6, &in6->sin6_addr, buffer, (socklen_t)size) ? 0 : -1;
    }
    case AF_UNIX:
        if (size < 5) return -1;
        memcpy(buffer, "unix", 5);
        *port = 0;
        return 0;
    default:
        return -1;
    }
}

int cmilter_nodelay_listeners(void) {
    struct rlimit limit;
    int highest = 1024;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536) highest = (int)limit.rlim_cur;
    int count = 0;
    for (int fd = 0; fd < highest; fd++) {
        struct sockaddr_storage address;
        socklen_t length = sizeof address;
        if (getsockname(fd, (struct sockaddr *)&address, &length) != 0) continue;
        if (address.ss_family != AF_INET && address.ss_family != AF_INET6) continue;
        int listening = 0;
        socklen_t size = sizeof listening;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening) continue;
        int on = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0) count++;
    }
    return count;
}

// SIGUSR1 (reload), and with `stop_signals` the ones that stop a milter.
static void signal_set(sigset_t *set, int stop_signals) {
    sigemptyset(set);
    sigaddset(set, SIGUSR1);
    if (stop_signals) {
        sigaddset(set, SIGHUP);
        sigaddset(set, SIGTERM);
        sigaddset(set, SIGINT);
    }
}

int cmilter_block_signals(void) {
    sigset_t set;
    signal_set(&set, 1);
    return pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int cmilter_name_thread(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

// --- Owning the stop signals ---------------------------------------------
//
// smfi_main starts a signal thread that sigwait()s for SIGHUP, SIGTERM and
// SIGINT and answers any of them with "stop now". With Debian's libmilter
// (worker pool) a stop abandons every session at once, so a message in
// flight is deferred instead of finished. To drain first, sharemail must
// be the only one to receive those signals: this file defines sigwait(),
// which the dynamic linker binds libmilter's call to (the executable's
// definition comes before libc's). Once cmilter_take_stop_signals() was
// called, it leaves HUP, TERM and INT out of the set it waits for; a
// caller left with nothing to wait for (libmilter's signal thread) sleeps
// for good. Before that call, and for any other set, it is plain sigwait.

static atomic_bool stop_signals_taken = false;

int cmilter_take_stop_signals(void) {
    // Only if the process's sigwait really is this one: a static link or a
    // linker that did not export it would leave libmilter on libc's.
    if (dlsym(RTLD_DEFAULT, "sigwait") != (void *)&sigwait) return 0;
    atomic_store(&stop_signals_taken, true);
    return 1;
}

static int wait_for(const sigset_t *set) {
    for (;;) {
        int received = sigwaitinfo(set, NULL);
        if (received > 0) return received;
        if (errno != EINTR) return -errno;
    }
}

// Same contract as glibc's: both pointers are declared nonnull in <signal.h>.
int sigwait(const sigset_t *set, int *sig) {
    sigset_t wanted = *set;
    if (atomic_load(&stop_signals_taken)) {
        sigdelset(&wanted, SIGHUP);
        sigdelset(&wanted, SIGTERM);
        sigdelset(&wanted, SIGINT);
        if (sigisemptyset(&wanted)) {
            // libmilter's signal thread: the signals are blocked here, so
            // pause() never returns; the thread ends with the process.
            for (;;) pause();
        }
    }
    int received = wait_for(&wanted);
    if (received < 0) return -received;
    *sig = received;
    return 0;
}

int cmilter_wait_for_signal(int stop_signals) {
    sigset_t set;
    signal_set(&set, stop_signals);
    int received = wait_for(&set);
    return received < 0 ? -1 : received;
}
