import ArgumentParser

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
