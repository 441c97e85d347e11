import ArgumentParser
import Foundation
import Glibc
import Logging
import Metrics
import Milter
import Prometheus
import ShareMail
import ShareMailStore

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the milter that Postfix talks to.",
        discussion: """
            Loads the configuration (refusing to start on any error), opens the milter \
            socket and serves Postfix.

            SIGNALS
              SIGUSR1  reload the configuration file. A file with errors is reported
                       and the running configuration kept; each message finishes with
                       the configuration it started with. (The socket, logging,
                       metrics and state settings take effect at the next start.)
              SIGTERM, SIGINT, SIGHUP
                       stop after draining: a message that began before the
                       signal is finished; new mail is deferred (451 4.3.2) and
                       retried by its sender. After drain_timeout_seconds (30)
                       sharemail stops anyway and Postfix defers what is left
                       (milter_default_action = tempfail). A second signal stops
                       at once. Nothing is lost either way.

            EXIT STATUS
              0 stopped, 75 the socket could not be opened, 78 bad configuration.

            EXAMPLES
              sharemail serve --config /etc/sharemail/sharemail.toml
              sharemail serve --config sharemail.toml --socket inet:8891@127.0.0.1 --log-level debug
            """
    )

    @OptionGroup var configurationFile: ConfigurationFileOption
    var config: String { configurationFile.config }

    @Option(name: .long, help: ArgumentHelp("Milter socket (overrides the file's `socket`): unix:/path or inet:port@host.", valueName: "spec"))
    var socket: String?

    @Option(name: .long, help: "Log level (overrides the file's `log_level`): trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level?

    @Option(name: .long, help: ArgumentHelp("Log target (overrides the file's `log`): syslog or stderr.", valueName: "target"))
    var log: String?

    func run() throws {
        // Before any thread exists (libmilter's, NIO's, ours), so that
        // every thread inherits the mask and signals reach only the threads
        // that wait for them.
        try Milter.blockSignals()
        // Stop signals come to us, not to libmilter's signal thread: it would
        // stop at once and abandon the messages in flight.
        let drains = Milter.takeStopSignals()

        let configuration: Configuration
        do {
            let (loaded, warnings) = try ConfigurationFile.load(config)
            configuration = loaded
            for warning in warnings { FileHandle.standardError.write(Data("\(warning)\n".utf8)) }
        } catch {
            FileHandle.standardError.write(Data("sharemail: refusing to start: \(config) has errors:\n\(error)\n".utf8))
            throw ExitCode(78)
        }
        let target = log.flatMap(Configuration.LogTarget.init(rawValue:)) ?? configuration.log
        if let log, Configuration.LogTarget(rawValue: log) == nil { throw ValidationError("--log: use syslog or stderr") }
        let level = logLevel ?? Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            switch target {
            case .syslog: return SyslogLogHandler(level: level)
            case .stderr: return StderrLogHandler(label: label, level: level)
            }
        }
        let logger = Logger(label: "sharemail")

        let metrics = try Self.startMetrics(configuration, logger: logger)


        let spec = socket ?? configuration.socket
        // The body is read only to let bounces follow their thread, which
        // needs the conversation memory; without it the MTA never sends it.
        let readsBody = configuration.state != nil
        let options = Milter.Options(
            name: "sharemail",
            socket: spec,
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
            macros: [.mail: ["{auth_authen}", "{mail_addr}", "i"],
                     .recipient: ["{rcpt_addr}", "{rcpt_mailer}"],
                     .endOfMessage: ["i"]],
            timeout: 600,
            socketMode: configuration.socketMode.map { mode_t($0) },
            socketOwner: try configuration.socketOwner.map(Self.userID),
            socketGroup: try configuration.socketGroup.map(Self.groupID)
        )
        let policy = PolicyStore(PolicyEngine(configuration: configuration))
        let inFlight = InFlight()
        let memory = Self.startMemory(configuration, logger: logger)
        if metrics != nil, let memory {
            memory.startPendingGauges(mailboxes: { policy.snapshot().configuration.mailboxes.map(\.address) })
        }
        if !drains {
            logger.warning("libmilter takes SIGTERM itself here: a stop defers the messages in flight instead of finishing them")
        }
        SignalHandler(reloader: Reloader(path: config, running: configuration, policy: policy, metrics: metrics, logger: logger),
                      inFlight: inFlight, drains: drains, drainTimeout: .seconds(configuration.drainTimeoutSeconds),
                      logger: logger).start()

        logger.info("starting", metadata: [
            "config": "\(config)", "mailboxes": "\(configuration.mailboxes.count)",
            "staff": "\(configuration.mailboxes.reduce(0) { $0 + $1.staff.count })",
            "open_files": "\(Self.raiseOpenFilesLimit())",
        ])
        do {
            try Milter.run(options, logger: logger) {
                ShareMailSession(policy: policy, metrics: metrics, memory: memory, inFlight: inFlight, logger: logger)
            }
        } catch {
            logger.critical("\(error)")
            throw ExitCode(75)
        }
        // Debian's libmilter (worker pool) reads no further command of a
        // session once stopped: a message still counted here is deferred by
        // Postfix (milter_default_action = tempfail) and retried.
        if inFlight.current > 0 {
            logger.warning("stopping with \(inFlight.current) message(s) in flight: Postfix defers them (4xx) and they are retried")
        }
        // Records of finished messages still on their way to the database.
        if let memory, !memory.flush(timeout: .seconds(5)) {
            logger.error("stopping with conversation records not yet written: they are lost")
        }
        logger.info("stopped")
    }

    /// Opens the conversation memory unless `state = "off"`; nil then. A
    /// store that cannot be opened now is retried while mail flows.
    static func startMemory(_ configuration: Configuration, logger: Logger) -> Memory? {
        guard let state = configuration.state, let location = StoreLocation(state) else {
            logger.info("conversation memory is off (state = \"off\"): routing by names only")
            return nil
        }
        let memory = Memory(location: location, timeout: .milliseconds(configuration.stateTimeoutMilliseconds), logger: logger)
        memory.openNow()
        memory.startPruning(retentionDays: configuration.retentionDays)
        return memory
    }

    /// Sets up the Prometheus endpoint when configured; nil otherwise.
    static func startMetrics(_ configuration: Configuration, logger: Logger) throws -> ShareMailMetrics? {
        guard let address = configuration.metrics else { return nil }
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
            throw ExitCode(75)
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

    static func userID(_ name: String) throws -> uid_t {
        guard let entry = getpwnam(name) else { throw ValidationError("socket_owner: no user \"\(name)\"") }
        return entry.pointee.pw_uid
    }

    static func groupID(_ name: String) throws -> gid_t {
        guard let entry = getgrnam(name) else { throw ValidationError("socket_group: no group \"\(name)\"") }
        return entry.pointee.gr_gid
    }
}

/// Takes the process's signals on a thread of its own (they are blocked
/// everywhere else): SIGUSR1 reloads; SIGTERM, SIGINT and SIGHUP drain, then
/// stop; a second stop signal stops at once.
struct SignalHandler: Sendable {
    let reloader: Reloader
    let inFlight: InFlight
    /// false: libmilter's own signal thread takes the stop signals.
    let drains: Bool
    let drainTimeout: Duration
    let logger: Logger

    func start() {
        let thread = Thread { [self] in
            var stopping = false
            while true {
                switch Milter.waitForSignal(stopSignals: drains) {
                case .reload:
                    reloader.reload()
                case .stop(let name) where !stopping:
                    stopping = true
                    let drain = Thread { [self] in self.drain(after: name) }
                    drain.name = "sharemail-drain"
                    drain.start()
                case .stop(let name):
                    logger.warning("\(name) again: stopping now; \(inFlight.current) message(s) in flight are deferred by Postfix")
                    Milter.stop()
                }
            }
        }
        thread.name = "sharemail-signals"
        thread.start()
    }

    /// Lets no new message begin, waits (bounded) for those in flight, then
    /// stops libmilter: only then, because a stopped libmilter abandons its
    /// sessions.
    func drain(after signal: String) {
        let pending = inFlight.close()
        logger.notice("\(signal): stopping; new mail is deferred", metadata: [
            "in_flight": "\(pending)", "drain_timeout": "\(drainTimeout)",
        ])
        let deadline = ContinuousClock.now + drainTimeout
        while inFlight.current > 0 && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        let left = inFlight.current
        if left > 0 {
            logger.warning("drain timed out: \(left) message(s) still in flight are deferred by Postfix and retried")
        } else if pending > 0 {
            logger.notice("the \(pending) message(s) in flight are finished")
        }
        // The last end of message may still be writing its reply; libmilter
        // lets the worker finish it (the stop is seen between commands) and
        // the listener notices the stop only at its next poll.
        Milter.stop()
    }
}

/// Reloads the configuration (on SIGUSR1).
struct Reloader: Sendable {
    let path: String
    let running: Configuration
    let policy: PolicyStore
    let metrics: ShareMailMetrics?
    let logger: Logger

    func reload() {
        do {
            let (configuration, warnings) = try ConfigurationFile.load(path)
            for warning in warnings { logger.warning("\(warning)") }
            policy.replace(PolicyEngine(configuration: configuration))
            metrics?.reloadsSucceeded.increment()
            logger.notice("configuration reloaded", metadata: [
                "config": "\(path)", "mailboxes": "\(configuration.mailboxes.count)",
                "staff": "\(configuration.mailboxes.reduce(0) { $0 + $1.staff.count })",
            ])
            if configuration.socket != running.socket || configuration.metrics != running.metrics
                || configuration.log != running.log || configuration.socketMode != running.socketMode
                || configuration.socketGroup != running.socketGroup || configuration.socketOwner != running.socketOwner
                || configuration.state != running.state || configuration.retentionDays != running.retentionDays {
                logger.warning("socket, metrics, logging and state settings take effect at the next start")
            }
        } catch {
            metrics?.reloadsFailed.increment()
            logger.error("reload refused: the running configuration stays in force", metadata: [
                "config": "\(path)", "problems": "\("\(error)".replacingOccurrences(of: "\n", with: "; "))",
            ])
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
