import ArgumentParser
import Foundation
import Glibc
import Logging
import Milter
import ShareMail

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the milter that Postfix talks to.",
        discussion: """
            Loads the configuration (refusing to start on any error), opens the milter \
            socket and serves Postfix until SIGTERM or SIGINT. Point Postfix's \
            smtpd_milters and non_smtpd_milters at the socket (see postfix-conf/).

            Examples:
              sharemail serve --config /etc/sharemail/sharemail.toml
              sharemail serve --config sharemail.toml --socket inet:8891@127.0.0.1
            """
    )

    @Option(name: .long, help: ArgumentHelp("The TOML configuration file.", valueName: "file"))
    var config: String = "/etc/sharemail/sharemail.toml"

    @Option(name: .long, help: ArgumentHelp("Milter socket (overrides the file's `socket`): unix:/path or inet:port@host.", valueName: "spec"))
    var socket: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        let logger = Logger(label: "sharemail")

        let configuration: Configuration
        do {
            let (loaded, warnings) = try ConfigurationFile.load(config)
            for warning in warnings { logger.warning("\(warning)") }
            configuration = loaded
        } catch {
            logger.critical("refusing to start: the configuration has errors", metadata: ["file": "\(config)"])
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(78)   // EX_CONFIG
        }

        let spec = socket ?? configuration.socket
        let options = Milter.Options(
            name: "sharemail",
            socket: spec,
            actions: [.addHeaders, .changeHeaders, .addRecipients, .deleteRecipients, .changeSender],
            steps: [.connect, .mail, .recipient, .headers],
            // Only RCPT can refuse something; every other step goes on
            // without making Postfix wait for an answer.
            replies: [.recipient],
            macros: [.mail: ["{auth_authen}", "i"], .endOfMessage: ["i"]],
            timeout: 600,
            socketMode: configuration.socketMode.map { mode_t($0) },
            socketOwner: try configuration.socketOwner.map(Self.userID),
            socketGroup: try configuration.socketGroup.map(Self.groupID)
        )
        let policy = PolicyStore(PolicyEngine(configuration: configuration))
        logger.info("starting", metadata: [
            "config": "\(config)", "mailboxes": "\(configuration.mailboxes.count)",
            "staff": "\(configuration.mailboxes.reduce(0) { $0 + $1.staff.count })",
        ])
        do {
            try Milter.run(options, logger: logger) {
                ShareMailSession(policy: policy, logger: logger)
            }
        } catch {
            logger.critical("\(error)")
            throw ExitCode(75)   // EX_TEMPFAIL
        }
        logger.info("stopped")
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

extension Logger.Level: @retroactive ExpressibleByArgument {}
