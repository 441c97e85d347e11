import Glibc
import Logging

/// swift-log to syslog, facility mail and ident "sharemail": sharemail's
/// lines land in mail.log beside Postfix's, so `grep QUEUEID` shows both.
/// Each line is the message, then `key=value` metadata sorted by key, with
/// control characters escaped (`LogText`).
struct SyslogLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    /// openlog keeps the ident pointer: it must live as long as the process.
    private static let opened: Void = {
        openlog(strdup("sharemail"), LOG_PID | LOG_NDELAY, LOG_MAIL)
    }()

    init(level: Logger.Level) {
        logLevel = level
        _ = Self.opened
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        // Escaped (LogText): a client's line feed must not start a line of its own.
        let text = LogText.line(event, handlerMetadata: metadata)
        text.withCString { cText in
            withVaList([cText]) { vsyslog(Self.priority(event.level), "%s", $0) }
        }
    }

    static func priority(_ level: Logger.Level) -> Int32 {
        switch level {
        case .trace, .debug: LOG_DEBUG
        case .info: LOG_INFO
        case .notice: LOG_NOTICE
        case .warning: LOG_WARNING
        case .error: LOG_ERR
        case .critical: LOG_CRIT
        }
    }
}
