import Foundation
import Glibc
import Logging
import Metrics
import Milter
import Prometheus
import ShareMail
import ShareMailStore

/// `sharemail serve` without its command line: logging, metrics, memory,
/// signals and the milter, wired together; it returns when the milter has
/// stopped.
public enum Daemon {
    /// Why the daemon could not serve.
    public enum Failure: Error, CustomStringConvertible {
        /// The milter socket or the metrics endpoint could not be opened.
        case cannotListen(String)
        /// A setting names something this host lacks (a user, a group).
        case badSetting(String)

        public var description: String {
            switch self {
            case .cannotListen(let text), .badSetting(let text): text
            }
        }
    }

    /// How `serve` was asked to run: the file and the command line's overrides.
    public struct Launch: Sendable {
        public var path: String
        public var file: ConfigurationFile
        /// The stop signals drain (`Milter.takeStopSignals()` succeeded).
        public var drains: Bool

        public init(path: String, file: ConfigurationFile, drains: Bool) {
            self.path = path
            self.file = file
            self.drains = drains
        }
    }

    /// Sets up the process's logging (once, before any logger is made).
    public static func bootstrapLogging(_ target: DaemonSettings.LogTarget, level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            switch target {
            case .syslog: return SyslogLogHandler(level: level)
            case .stderr: return StderrLogHandler(label: label, level: level)
            }
        }
    }

    /// What the milter layer says in sharemail's words.
    static let failureReplies = Milter.FailureReplies(
        applyFailed: Reply(
            code: 451, enhancedCode: "4.3.0",
            text: "Temporary failure applying the shared-mailbox policy; try again later"),
        stopping: Reply(code: 451, enhancedCode: "4.3.2", text: "sharemail is restarting; try again later"))

    /// The milter options for these settings.
    static func milterOptions(_ settings: DaemonSettings) throws(Failure) -> Milter.Options {
        // The body is read only to let bounces follow their thread, which
        // needs the conversation memory; without it the MTA never sends it.
        let readsBody = settings.state != nil
        return Milter.Options(
            name: "sharemail",
            socket: settings.socket,
            actions: [.addHeaders, .changeHeaders, .addRecipients, .deleteRecipients, .changeSender],
            steps: readsBody ? [.connect, .mail, .recipient, .headers, .body] : [.connect, .mail, .recipient, .headers],
            // Only RCPT can refuse something; every other step goes on
            // without making Postfix wait. The body too: a reply there would
            // let sharemail say "skip the rest", but every message would wait
            // one more round trip to spare Postfix a few writes.
            replies: [.recipient],
            // Postfix's own resolution of each address ({mail_addr},
            // {rcpt_addr}): sharemail classifies what Postfix will deliver to,
            // never the raw command. Asked for here, so main.cf's
            // milter_*_macros cannot leave them out.
            macros: [
                .mail: ["{auth_authen}", "{mail_addr}", "i"],
                .recipient: ["{rcpt_addr}", "{rcpt_mailer}"],
                .endOfMessage: ["i"],
            ],
            timeout: 600,
            socketMode: settings.socketMode.map { mode_t($0) },
            socketOwner: try settings.socketOwner.map(userID),
            socketGroup: try settings.socketGroup.map(groupID),
            failureReplies: failureReplies,
            errorMetric: "sharemail_milter_errors_total")
    }

    /// Serves until a stop signal (drained) or a second one (at once).
    public static func serve(_ launch: Launch, logger: Logger) throws(Failure) {
        let settings = launch.file.daemon
        let metrics = try startMetrics(settings, logger: logger)
        let options = try milterOptions(settings)
        let policy = PolicyStore(PolicyEngine(configuration: launch.file.policy))
        let memory = startMemory(settings, logger: logger)
        if metrics != nil, let memory {
            memory.startPendingGauges(mailboxes: { policy.snapshot().configuration.mailboxes.map(\.address) })
        }
        if !launch.drains {
            logger.warning("libmilter takes SIGTERM itself here: a stop defers the messages in flight instead of finishing them")
        }
        SignalHandler(
            reloader: Reloader(path: launch.path, running: settings, policy: policy, metrics: metrics, logger: logger),
            drains: launch.drains, drainTimeout: .seconds(settings.drainTimeoutSeconds), logger: logger
        ).start()

        let mailboxes = launch.file.policy.mailboxes
        logger.info(
            "starting",
            metadata: [
                "config": "\(launch.path)", "mailboxes": "\(mailboxes.count)",
                "staff": "\(mailboxes.reduce(0) { $0 + $1.staff.count })",
                "open_files": "\(raiseOpenFilesLimit())",
            ])
        do {
            try Milter.run(options, logger: logger) {
                ShareMailSession(policy: policy, metrics: metrics, memory: memory, logger: logger)
            }
        } catch {
            logger.critical("\(error)")
            throw .cannotListen("\(error)")
        }
        // Debian's libmilter (worker pool) reads no further command of a
        // session once stopped: a message still counted here is deferred by
        // Postfix (milter_default_action = tempfail) and retried.
        let left = Milter.messagesInFlight
        if left > 0 {
            logger.warning("stopping with \(left) message(s) in flight: Postfix defers them (4xx) and they are retried")
        }
        // Records of finished messages still on their way to the database.
        if let memory, !memory.flush(timeout: .seconds(5)) {
            logger.error("stopping with conversation records not yet written: they are lost")
        }
        logger.info("stopped")
    }

    /// Opens the conversation memory unless `state = "off"`; nil then. A
    /// store that cannot be opened now is retried while mail flows.
    static func startMemory(_ settings: DaemonSettings, logger: Logger) -> Memory? {
        guard let state = settings.state, let location = StoreLocation(state) else {
            logger.info("conversation memory is off (state = \"off\"): routing by names only")
            return nil
        }
        let memory = Memory(location: location, timeout: .milliseconds(settings.stateTimeoutMilliseconds), logger: logger)
        memory.openNow()
        memory.startPruning(retentionDays: settings.retentionDays)
        return memory
    }

    /// Sets up the Prometheus endpoint when configured; nil otherwise.
    static func startMetrics(_ settings: DaemonSettings, logger: Logger) throws(Failure) -> ShareMailMetrics? {
        guard let address = settings.metrics else { return nil }
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Decisions take microseconds: the default buckets start at 5 ms.
        factory.durationHistogramBuckets["sharemail_decision_seconds"] = [
            .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250),
            .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10),
            .milliseconds(50), .milliseconds(250),
        ]
        MetricsSystem.bootstrap(factory)
        do {
            _ = try MetricsServer.start(host: address.host, port: address.port, registry: registry, logger: logger)
        } catch {
            logger.critical("cannot serve metrics on \(address): \(error)")
            throw .cannotListen("cannot serve metrics on \(address): \(error)")
        }
        logger.info("metrics on http://\(address)/metrics")
        return ShareMailMetrics()
    }

    /// Raises the soft limit on descriptors to the hard one and returns it: every milter
    /// connection, SQLite file and metrics client takes one, and running out means 451s.
    /// (The shipped unit sets both to 65536; a shell's soft limit is often 1024.)
    static func raiseOpenFilesLimit() -> rlim_t {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return raised.rlim_cur }
        }
        return limit.rlim_cur
    }

    static func userID(_ name: String) throws(Failure) -> uid_t {
        guard let entry = getpwnam(name) else { throw .badSetting("socket_owner: no user \"\(name)\"") }
        return entry.pointee.pw_uid
    }

    static func groupID(_ name: String) throws(Failure) -> gid_t {
        guard let entry = getgrnam(name) else { throw .badSetting("socket_group: no group \"\(name)\"") }
        return entry.pointee.gr_gid
    }
}
