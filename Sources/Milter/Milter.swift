import CMilter
import Glibc
import Logging
import Synchronization

/// The Swift side of libmilter: negotiation, per-connection sessions, the
/// translation of `Verdict`s and `Modification`s into `smfi_*` calls, and a
/// draining shutdown. It knows nothing of what the filter decides, nor its
/// name: metric names and reply texts come in `Options`.
public enum Milter {
    /// Message changes the filter may make (SMFIF_*). Negotiation fails
    /// loudly when the MTA cannot grant one of them.
    public struct Actions: OptionSet, Sendable {
        public let rawValue: UInt
        public init(rawValue: UInt) { self.rawValue = rawValue }
        public static let addHeaders = Actions(rawValue: UInt(SMFIF_ADDHDRS))
        public static let changeHeaders = Actions(rawValue: UInt(SMFIF_CHGHDRS))
        public static let addRecipients = Actions(rawValue: UInt(SMFIF_ADDRCPT))
        public static let deleteRecipients = Actions(rawValue: UInt(SMFIF_DELRCPT))
        public static let changeSender = Actions(rawValue: UInt(SMFIF_CHGFROM))
    }

    /// The protocol steps a filter can take part in.
    public enum Step: CaseIterable, Hashable, Sendable {
        case connect, helo, mail, recipient, data, headers, endOfHeaders, body, unknown

        /// The flag that asks the MTA not to send this step at all.
        var skipFlag: UInt {
            switch self {
            case .connect: UInt(SMFIP_NOCONNECT)
            case .helo: UInt(SMFIP_NOHELO)
            case .mail: UInt(SMFIP_NOMAIL)
            case .recipient: UInt(SMFIP_NORCPT)
            case .data: UInt(SMFIP_NODATA)
            case .headers: UInt(SMFIP_NOHDRS)
            case .endOfHeaders: UInt(SMFIP_NOEOH)
            case .body: UInt(SMFIP_NOBODY)
            case .unknown: UInt(SMFIP_NOUNKNOWN)
            }
        }
        /// The flag that tells the MTA not to wait for a reply to this step.
        var noReplyFlag: UInt {
            switch self {
            case .connect: UInt(SMFIP_NR_CONN)
            case .helo: UInt(SMFIP_NR_HELO)
            case .mail: UInt(SMFIP_NR_MAIL)
            case .recipient: UInt(SMFIP_NR_RCPT)
            case .data: UInt(SMFIP_NR_DATA)
            case .headers: UInt(SMFIP_NR_HDR)
            case .endOfHeaders: UInt(SMFIP_NR_EOH)
            case .body: UInt(SMFIP_NR_BODY)
            case .unknown: UInt(SMFIP_NR_UNKN)
            }
        }
    }

    /// The stages at which a filter may ask for macros (SMFIM_*).
    public enum MacroStage: Int32, CaseIterable, Hashable, Sendable {
        case connect = 0, helo = 1, mail = 2, recipient = 3, data = 4, endOfMessage = 5, endOfHeaders = 6
    }

    /// The replies the layer sends on its own, in the filter's words.
    public struct FailureReplies: Sendable {
        /// A change the MTA refused at end of message: the message is deferred.
        public var applyFailed: Reply
        /// A message that began after `shutdown` began: deferred, and retried
        /// by its sender once the filter is back.
        public var stopping: Reply

        public init(applyFailed: Reply, stopping: Reply) {
            self.applyFailed = applyFailed
            self.stopping = stopping
        }
    }

    public struct Options: Sendable {
        /// Name for logs and for libmilter.
        public var name: String
        public var socket: SocketSpec
        public var actions: Actions
        /// The steps the filter takes part in; the MTA is asked to skip the rest.
        public var steps: Set<Step>
        /// Of `steps`, those whose answer can change anything (a reject). The
        /// MTA is told not to wait for a reply to the others.
        public var replies: Set<Step>
        /// Macros to request per stage (sets the MTA's macro list).
        public var macros: [MacroStage: [String]]
        /// Seconds libmilter waits on the MTA before giving up a connection.
        public var timeout: Int32
        public var backlog: Int32
        /// Unix socket permissions, applied after the socket is created.
        public var socketMode: mode_t?
        public var socketOwner: uid_t?
        public var socketGroup: gid_t?
        public var failureReplies: FailureReplies
        /// Counter label of milter-level failures, by `kind`: negotiate,
        /// no_session, reply, apply.
        public var errorMetric: String

        public init(
            name: String, socket: SocketSpec, actions: Actions, steps: Set<Step>, replies: Set<Step>,
            macros: [MacroStage: [String]] = [:], timeout: Int32 = 30, backlog: Int32 = 128,
            socketMode: mode_t? = nil, socketOwner: uid_t? = nil, socketGroup: gid_t? = nil,
            failureReplies: FailureReplies, errorMetric: String
        ) {
            self.name = name
            self.socket = socket
            self.actions = actions
            self.steps = steps
            self.replies = replies
            self.macros = macros
            self.timeout = timeout
            self.backlog = backlog
            self.socketMode = socketMode
            self.socketOwner = socketOwner
            self.socketGroup = socketGroup
            self.failureReplies = failureReplies
            self.errorMetric = errorMetric
        }

        /// A TCP socket (inet:, inet6:) rather than a unix one.
        var isTCP: Bool { socket.isTCP }

        /// The steps and replies asked of the MTA: `steps` and `replies`, and
        /// on TCP also DATA with a reply. Measured with a no-op C milter on
        /// TCP (bench/, flags 0x53D2 vs 0x51D2): skipping DATA, or taking it
        /// without a reply, lets Postfix write RCPT's successor and the first
        /// headers back to back, and the second write waits on Nagle for the
        /// filter's delayed ACK: 411 msg/s instead of 590. On a unix socket
        /// there is no such stall, and skipping DATA is cheaper.
        var negotiated: (steps: Set<Step>, replies: Set<Step>) {
            guard isTCP, !steps.contains(.data) else { return (steps, replies) }
            return (steps.union([.data]), replies.union([.data]))
        }
    }

    /// Everything a callback needs, fixed for the life of the process.
    struct Registration: Sendable {
        let options: Options
        let logger: Logger
        let makeSession: @Sendable () -> any MilterSession
    }

    /// libmilter is a process-wide singleton, so its registration is too.
    static let registration = Mutex<Registration?>(nil)

    /// The messages of every connection, for `shutdown`.
    static let gate = MessageGate()

    /// Messages between MAIL FROM and their end now.
    public static var messagesInFlight: Int { gate.current }

    /// The protocol flags (SMFIP_*) agreed at negotiation, for a session that
    /// begins with CONNECT and no OPTNEG: sendmail ends a session with
    /// QUIT_NC and starts the next one on the same socket that way, after
    /// close has released our connection state. libmilter keeps the flags it
    /// agreed per context but shows them to no callback.
    ///
    /// Remembered process-wide rather than per context: a table keyed by
    /// context would outlive its contexts (libmilter has no destroy hook, so
    /// nothing could remove an entry). The flags depend only on the
    /// registration, fixed for the process, and on the steps the MTA offers
    /// to skip, the same for every connection of one MTA (the "no reply"
    /// options libmilter offers whatever the MTA, and answers in the
    /// milter's place where the MTA lacks them); so they are this context's
    /// flags as long as every negotiation agreed the same. Once two negotiations
    /// agreed different flags (two kinds of MTA on one socket) the value is
    /// `Self.mixedFlags`, and such a session is deferred: guessed flags could
    /// leave the MTA waiting for a reply that never comes.
    static let negotiatedFlags = Atomic<UInt>(noFlagsYet)
    static let noFlagsYet = UInt.max
    static let mixedFlags = UInt.max - 1

    /// Records the flags one negotiation agreed (see `negotiatedFlags`).
    static func recordNegotiated(_ flags: UInt) {
        var current = negotiatedFlags.load(ordering: .relaxed)
        while current != flags && current != mixedFlags {
            let next = current == noFlagsYet ? flags : mixedFlags
            let (exchanged, original) = negotiatedFlags.compareExchange(
                expected: current, desired: next, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    /// The flags of a session that began without negotiation on its own;
    /// nil when no single answer is known.
    static var flagsWithoutNegotiation: UInt? {
        let flags = negotiatedFlags.load(ordering: .relaxed)
        return flags == noFlagsYet || flags == mixedFlags ? nil : flags
    }

    /// Registers the filter, opens the socket and serves until `stop()` or a
    /// stop signal. Can run once per process (a libmilter limit).
    public static func run(
        _ options: Options, logger: Logger,
        makeSession: @escaping @Sendable () -> any MilterSession
    ) throws(MilterError) {
        let registered = registration.withLock { current -> Bool in
            if current != nil { return false }
            current = Registration(options: options, logger: logger, makeSession: makeSession)
            return true
        }
        guard registered else { throw .alreadyRunning }

        try check(smfi_setconn(strdup(options.socket.libmilterSpelling)), .setConnection(options.socket.libmilterSpelling))
        try check(smfi_settimeout(options.timeout), .setTimeout)
        try check(smfi_setbacklog(options.backlog), .setBacklog)

        var description = smfiDesc()
        description.xxfi_name = strdup(options.name)
        description.xxfi_version = cmilter_version()
        description.xxfi_flags = options.actions.rawValue | UInt(SMFIF_SETSYMLIST)
        description.xxfi_connect = milterConnect
        description.xxfi_envfrom = milterMailFrom
        description.xxfi_envrcpt = milterRecipient
        description.xxfi_data = milterData
        description.xxfi_header = milterHeader
        description.xxfi_body = milterBody
        description.xxfi_eom = milterEndOfMessage
        description.xxfi_abort = milterAbort
        description.xxfi_close = milterClose
        description.xxfi_negotiate = milterNegotiate
        try check(smfi_register(description), .register)

        // true: remove a stale unix socket left by a crashed earlier run.
        try check(smfi_opensocket(1), .openSocket(options.socket.libmilterSpelling))
        try applySocketPermissions(options)
        if options.isTCP {
            // Measured: without it a TCP milter conversation stalls on
            // delayed ACKs (202 → 366 msg/s with it). Called outside the log
            // statement: a log message is an autoclosure, not evaluated
            // below its level (that hid this call at level info).
            let count = cmilter_nodelay_listeners()
            logger.debug("TCP_NODELAY set on \(count) listening socket(s)")
        }

        logger.info("listening", metadata: ["socket": "\(options.socket.libmilterSpelling)"])
        try check(smfi_main(), .main)
    }

    /// Asks `run` to return at once: a stopped libmilter reads no further
    /// command, so messages in flight are left to the MTA's default action.
    public static func stop() {
        _ = smfi_stop()
    }

    /// Stops after draining (go-milter's `Shutdown`, swift-service-lifecycle's
    /// graceful shutdown): no message may begin from now on (the layer
    /// defers it with `FailureReplies.stopping`), those in flight get up to
    /// `timeout` to finish, then `report` hears how many messages were in
    /// flight when it began and how many are left, and libmilter stops.
    /// (`report` runs before the stop: once stopped, `run` returns and the
    /// process may end.)
    public static func shutdown(timeout: Duration, report: (_ inFlight: Int, _ left: Int) -> Void = { _, _ in }) {
        let inFlight = gate.close()
        let deadline = ContinuousClock.now + timeout
        while gate.current > 0 && ContinuousClock.now < deadline {
            usleep(20_000)
        }
        report(inFlight, gate.current)
        // The last end of message may still be writing its reply; libmilter
        // lets the worker finish it (the stop is seen between commands) and
        // the listener notices the stop only at its next poll.
        stop()
    }

    private static func check(_ status: Int32, _ error: MilterError) throws(MilterError) {
        if status != MI_SUCCESS { throw error }
    }

    private static func applySocketPermissions(_ options: Options) throws(MilterError) {
        guard let path = options.socket.path else { return }
        if options.socketOwner != nil || options.socketGroup != nil {
            let owner = options.socketOwner ?? uid_t.max  // (uid_t)-1: leave as is
            let group = options.socketGroup ?? gid_t.max
            if chown(path, owner, group) != 0 { throw .socketPermissions(path, errno) }
        }
        if let mode = options.socketMode, chmod(path, mode) != 0 {
            throw .socketPermissions(path, errno)
        }
    }
}

extension Milter {
    /// Blocks the signals libmilter's own signal thread waits for (HUP, TERM,
    /// INT) and SIGUSR1 in the calling thread. Call it first thing in main,
    /// before any thread exists, so every thread inherits the mask and the
    /// signals reach only the threads that wait for them.
    public static func blockSignals() throws(MilterError) {
        let status = cmilter_block_signals()
        if status != 0 { throw .signals(status) }
    }

    /// Keeps SIGHUP, SIGTERM and SIGINT from libmilter's signal thread, which
    /// would stop at once and abandon every message in flight (Debian's
    /// libmilter reads nothing more of a session once stopped). The caller
    /// then takes them with `waitForSignal(stopSignals: true)` and calls
    /// `stop()` when it is ready. Call after `blockSignals()`, before `run`.
    /// False when this process's libmilter cannot be kept from them (it
    /// would not call the CMilter shim's `sigwait`): libmilter stops on them
    /// as before.
    public static func takeStopSignals() -> Bool {
        cmilter_take_stop_signals() == 1
    }

    /// A signal for the process, waited for on the caller's thread.
    public enum Signal: Sendable, Equatable {
        /// SIGUSR1.
        case reload
        /// SIGTERM, SIGINT or SIGHUP (only after `takeStopSignals()`).
        case stop(name: String)
    }

    /// Blocks until SIGUSR1 arrives, or with `stopSignals` also SIGTERM,
    /// SIGINT or SIGHUP. The signals must be blocked (`blockSignals()`).
    public static func waitForSignal(stopSignals: Bool) -> Signal {
        while true {
            switch cmilter_wait_for_signal(stopSignals ? 1 : 0) {
            case SIGUSR1: return .reload
            case SIGTERM: return .stop(name: "SIGTERM")
            case SIGINT: return .stop(name: "SIGINT")
            case SIGHUP: return .stop(name: "SIGHUP")
            default: continue  // an error (EINTR is retried in C): wait again
            }
        }
    }
}
