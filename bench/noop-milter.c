/*
 * noop-milter: the floor any libmilter filter pays. Every callback answers
 * SMFIS_CONTINUE and does nothing else.
 *
 *   noop-milter SOCKET            all steps, every step answered (no negotiate)
 *   noop-milter -n SOCKET         negotiates steps away as sharemail does:
 *                                 only connect, MAIL, RCPT and headers, and
 *                                 only RCPT waits for a reply
 *   noop-milter -c SOCKET         as -n, and skips connect too (the client's
 *                                 address can come as a macro with MAIL)
 *   noop-milter -f HEX SOCKET     asks for exactly these protocol flags (SMFIP_*,
 *                                 hexadecimal): to find which step costs what
 *   noop-milter -s SOCKET         skips the same steps, but answers every step
 *                                 it takes (no SMFIP_NR_*): one reply per
 *                                 command, so no Nagle/delayed-ACK stall on TCP
 *
 * SOCKET is a libmilter spec: unix:/path or inet:port@127.0.0.1.
 * Build: cc -O2 -o noop-milter noop-milter.c -lmilter -lpthread
 * Used by bench/run; not part of sharemail.
 */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr) { (void)ctx; (void)host; (void)addr; return SMFIS_CONTINUE; }
static sfsistat on_helo(SMFICTX *ctx, char *helo) { (void)ctx; (void)helo; return SMFIS_CONTINUE; }
static sfsistat on_envfrom(SMFICTX *ctx, char **argv) { (void)ctx; (void)argv; return SMFIS_CONTINUE; }
static sfsistat on_envrcpt(SMFICTX *ctx, char **argv) { (void)ctx; (void)argv; return SMFIS_CONTINUE; }
static sfsistat on_header(SMFICTX *ctx, char *name, char *value) { (void)ctx; (void)name; (void)value; return SMFIS_CONTINUE; }
static sfsistat on_eoh(SMFICTX *ctx) { (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t len) { (void)ctx; (void)chunk; (void)len; return SMFIS_CONTINUE; }
static sfsistat on_eom(SMFICTX *ctx) { (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_abort(SMFICTX *ctx) { (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_close(SMFICTX *ctx) { (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_unknown(SMFICTX *ctx, const char *cmd) { (void)ctx; (void)cmd; return SMFIS_CONTINUE; }
static sfsistat on_data(SMFICTX *ctx) { (void)ctx; return SMFIS_CONTINUE; }

/* The same protocol mask sharemail asks for (Sources/sharemail/Serve.swift):
 * steps connect, mail, recipient, headers; replies only at recipient
 * (with -s: a reply at every step). */
static int no_reply = 1;
static int no_connect = 0;
static long exact_flags = -1;

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2, unsigned long f3,
                             unsigned long *pf0, unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    (void)ctx; (void)f0; (void)f2; (void)f3;
    unsigned long wanted = SMFIP_NOHELO | SMFIP_NODATA | SMFIP_NOEOH | SMFIP_NOBODY | SMFIP_NOUNKNOWN;
    if (no_reply) wanted |= SMFIP_NR_CONN | SMFIP_NR_MAIL | SMFIP_NR_HDR;
    if (no_connect) wanted = (wanted & ~SMFIP_NR_CONN) | SMFIP_NOCONNECT;
    if (exact_flags >= 0) wanted = (unsigned long)exact_flags;
    *pf0 = 0;              /* no message changes */
    *pf1 = wanted & f1;    /* only what the MTA offers */
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

int main(int argc, char **argv)
{
    int negotiate = 0;
    int opt;
    while ((opt = getopt(argc, argv, "nscf:")) != -1) {
        if (opt == 'n') negotiate = 1;
        else if (opt == 'c') negotiate = 1, no_connect = 1;
        else if (opt == 'f') negotiate = 1, exact_flags = strtol(optarg, NULL, 16);
        else if (opt == 's') negotiate = 1, no_reply = 0;
        else { fprintf(stderr, "usage: %s [-n|-c|-s|-f HEX] unix:/path|inet:port@host\n", argv[0]); return 64; }
    }
    if (optind != argc - 1) { fprintf(stderr, "usage: %s [-n|-c|-s|-f HEX] unix:/path|inet:port@host\n", argv[0]); return 64; }

    struct smfiDesc desc;
    memset(&desc, 0, sizeof desc);
    desc.xxfi_name = !negotiate ? "noop" : no_connect ? "noop-noconnect" : no_reply ? "noop-negotiate" : "noop-skip";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = 0;
    desc.xxfi_connect = on_connect;
    desc.xxfi_helo = on_helo;
    desc.xxfi_envfrom = on_envfrom;
    desc.xxfi_envrcpt = on_envrcpt;
    desc.xxfi_header = on_header;
    desc.xxfi_eoh = on_eoh;
    desc.xxfi_body = on_body;
    desc.xxfi_eom = on_eom;
    desc.xxfi_abort = on_abort;
    desc.xxfi_close = on_close;
    desc.xxfi_unknown = on_unknown;
    desc.xxfi_data = on_data;
    desc.xxfi_negotiate = negotiate ? on_negotiate : NULL;

    /* Postfix runs as user postfix: let it reach the socket (bench only). */
    umask(0);
    if (smfi_setconn(argv[optind]) != MI_SUCCESS) { fprintf(stderr, "bad socket spec %s\n", argv[optind]); return 64; }
    if (smfi_setbacklog(128)   /* sharemail's default */ != MI_SUCCESS) return 70;
    if (smfi_register(desc) != MI_SUCCESS) { fprintf(stderr, "smfi_register failed\n"); return 70; }
    if (smfi_opensocket(1) != MI_SUCCESS) { fprintf(stderr, "cannot open %s\n", argv[optind]); return 71; }
    return smfi_main() == MI_SUCCESS ? 0 : 70;
}
