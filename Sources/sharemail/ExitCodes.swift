import ArgumentParser
import Foundation

// The exit statuses of sharemail's commands, by name (sysexits.h where one fits).
extension ExitCode {
    /// Check: the message would not be accepted; doctor: problems found.
    static let notAccepted = ExitCode(1)
    static let problemsFound = ExitCode(1)
    /// EX_USAGE: bad usage or an unknown staff.
    static let usage = ExitCode(64)
    /// EX_DATAERR: the message to check cannot be read.
    static let dataError = ExitCode(65)
    /// EX_NOINPUT: no conversation memory yet.
    static let noInput = ExitCode(66)
    /// EX_UNAVAILABLE: the conversation memory cannot be reached.
    static let unavailable = ExitCode(69)
    /// EX_TEMPFAIL: serve cannot open its socket or metrics endpoint.
    static let cannotListen = ExitCode(75)
    /// EX_CONFIG: the configuration file has errors.
    static let configurationError = ExitCode(78)
}

/// The one error a command throws when it fails: what to tell the admin,
/// where, and the exit status. `Sharemail.main` writes the message and exits
/// with the code (ArgumentParser alone would print "Error: …" and exit 1).
struct CommandFailure: Error, CustomStringConvertible {
    /// What went wrong, one or more lines; nil when the output already said it.
    var message: String?
    var code: ExitCode
    /// Standard output (lint and doctor report there), else standard error.
    var toStandardOutput = false

    init(_ message: String?, _ code: ExitCode, toStandardOutput: Bool = false) {
        self.message = message
        self.code = code
        self.toStandardOutput = toStandardOutput
    }

    var description: String { message ?? "exit \(code.rawValue)" }

    func report() {
        guard let message else { return }
        if toStandardOutput {
            print(message)
        } else {
            FileHandle.standardError.write(Data("\(message)\n".utf8))
        }
    }
}
