import ArgumentParser
import Foundation
import Logging
import Milter
import ShareMail
import ShareMailDaemon

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
                       metrics, state and timeout settings take effect at the
                       next start; a reload that changes one says so in the log.)
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

        var file: ConfigurationFile
        do {
            let (loaded, warnings) = try ConfigurationFile.load(config)
            file = loaded
            for warning in warnings { FileHandle.standardError.write(Data("\(warning)\n".utf8)) }
        } catch {
            throw CommandFailure("sharemail: refusing to start: \(config) has errors:\n\(error)", .configurationError)
        }
        if let log {
            guard let target = DaemonSettings.LogTarget(rawValue: log) else { throw ValidationError("--log: use syslog or stderr") }
            file.daemon.log = target
        }
        if let logLevel { file.daemon.logLevel = logLevel }
        if let socket {
            guard let spec = SocketSpec(libmilter: socket) else {
                throw ValidationError("--socket: \"\(socket)\" is not a libmilter socket: use unix:/path or inet:port@host")
            }
            file.daemon.socket = spec
        }
        Daemon.bootstrapLogging(file.daemon.log, level: file.daemon.logLevel)
        do {
            try Daemon.serve(Daemon.Launch(path: config, file: file, drains: drains), logger: Logger(label: "sharemail"))
        } catch .badSetting(let problem) {
            throw ValidationError(problem)
        } catch .cannotListen {
            // Already logged, where the admin looks for the daemon's lines.
            throw CommandFailure(nil, .cannotListen)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
