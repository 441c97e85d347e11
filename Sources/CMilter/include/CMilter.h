// CMilter: the C side of sharemail's libmilter binding.
//
// Swift imports libmilter's API directly through this header. The few
// functions below exist only where Swift cannot call libmilter as it is:
//   - smfi_setmlreply is variadic (Swift cannot call C variadics);
//   - SMFI_VERSION and struct smfiDesc's layout are taken from the header
//     actually compiled against, not guessed in Swift;
//   - formatting a struct sockaddr needs inet_ntop on a union of families;
//   - pthread_setname_np is a GNU extension Swift's Glibc module leaves out.
#ifndef CMILTER_H
#define CMILTER_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

/// The most reply lines libmilter accepts in one multi-line reply.
#define CMILTER_MAX_REPLY_LINES 32

/// The SMFI_VERSION this binary was compiled against (for smfiDesc.xxfi_version).
int cmilter_version(void);

/// Fixed-arity front end for the variadic smfi_setmlreply.
/// `lines` holds `count` NUL-terminated lines (1 ≤ count ≤ 32). Lines must
/// already be safe for the wire (no CR/LF, `%` doubled): see Reply.swift.
/// Returns MI_SUCCESS or MI_FAILURE (also for a count out of range).
int cmilter_setmlreply(SMFICTX *ctx, const char *rcode, const char *xcode,
                       const char *const *lines, size_t count);

/// Writes the numeric form of `address` (IPv4 or IPv6, "unix" for AF_UNIX)
/// into `buffer` and its port into `port` (0 for AF_UNIX; Postfix also sends
/// port 0 for mail submitted with the sendmail command). Returns 0 on
/// success, -1 when the family is unknown, a pointer is NULL or the buffer
/// is too small.
int cmilter_format_address(const struct sockaddr *address, char *buffer, size_t size, int *port);

/// Sets TCP_NODELAY on every listening TCP socket of the process (libmilter
/// does not expose its own). Sockets accepted later inherit it, so the small
/// packets of a milter conversation are not held back by Nagle's algorithm
/// waiting for the MTA's delayed ACK. Returns how many sockets it set.
int cmilter_nodelay_listeners(void);

/// Blocks SIGHUP, SIGTERM, SIGINT and SIGUSR1 in the calling thread, so that
/// every thread started later inherits the mask and only libmilter's signal
/// thread (or our own sigwait thread) receives them. Returns 0 or an errno.
int cmilter_block_signals(void);

/// From now on, SIGHUP, SIGTERM and SIGINT reach only cmilter_wait_for_signal,
/// never libmilter's own signal thread (which would stop at once and abandon
/// messages in flight). Works by sharemail's sigwait() standing in for libc's
/// in libmilter's calls: see shim.c. Call before smfi_main. Returns 1, or 0
/// (and changes nothing) when libmilter would not call this sigwait.
int cmilter_take_stop_signals(void);

/// Waits until SIGUSR1 arrives, or with `stop_signals` also SIGHUP, SIGTERM or
/// SIGINT (all blocked: cmilter_block_signals), and returns its number; -1 on
/// error. Never waits through this file's sigwait.
int cmilter_wait_for_signal(int stop_signals);

/// Names the calling thread (what `top -H`, `ps -L` and perf show; Linux
/// keeps at most 15 bytes). Returns 0, or ERANGE for a longer name.
int cmilter_name_thread(const char *name);

#endif
