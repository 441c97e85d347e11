import ArgumentParser
import Foundation
import ShareMail
import ShareMailDaemon
import ShareMailStore

struct Lint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a configuration file and list every problem in it.",
        discussion: """
            Reports every error and warning in one run, each with file, line and key: \
            syntax, unknown or missing keys, malformed addresses, duplicate staff \
            addresses or logins, staff names or aliases of one mailbox that match the \
            same way, a staff address that is also a unified or manager address, \
            addresses in domains that no unified address covers. Says where the \
            conversation memory lives: without `state`, in \(DaemonSettings.defaultState); \
            state = "off" turns it off.

            A staff belongs to exactly one mailbox: their mail leaves as that \
            mailbox's unified address, so listing one address under two mailboxes \
            is an error.

            EXIT STATUS
              0 no errors (warnings may be printed), 78 errors, 64 bad usage.

            EXAMPLE
              sharemail lint --config /etc/sharemail/sharemail.toml
            """
    )

    @OptionGroup var configurationFile: ConfigurationFileOption
    var config: String { configurationFile.config }

    func run() throws {
        do {
            let (file, warnings) = try ConfigurationFile.load(config)
            let configuration = file.policy
            for warning in warnings { print(warning) }
            let staff = configuration.mailboxes.reduce(0) { $0 + $1.staff.count }
            print("\(config): conversation memory: \(Self.memory(file.daemon.state))")
            print("\(config): OK: \(configuration.mailboxes.count) mailbox(es), \(staff) staff, \(warnings.count) warning(s)")
        } catch let errors as ConfigurationErrors {
            for problem in errors.problems { print(problem) }
            let count = errors.problems.filter { $0.severity == .error }.count
            throw CommandFailure("\(config): \(count) error(s)", .configurationError, toStandardOutput: true)
        } catch {
            throw CommandFailure("\(error)", .configurationError, toStandardOutput: true)
        }
    }

    static func memory(_ state: String?) -> String {
        guard let state else { return "off" }
        if let location = StoreLocation(state), case .postgres = location { return location.redacted }
        return state == DaemonSettings.defaultState ? "\(state) (the default; state = \"off\" turns it off)" : state
    }
}
