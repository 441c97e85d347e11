import Logging
import Milter
import ShareMail

/// The daemon's own settings: where it listens, logs, exports metrics and
/// keeps its memory, and its timeouts. Read once at start: a reload replaces
/// the policy (`Configuration`) only, and says which of these it left as they
/// were (`restartKeys(changedFrom:)`).
public struct DaemonSettings: Sendable, Hashable {
    /// Where libmilter listens.
    public var socket = SocketSpec.unix(path: "/run/sharemail/milter.sock")
    /// Unix socket permissions (octal mode, owner and group names).
    public var socketMode: UInt32?
    public var socketOwner: String?
    public var socketGroup: String?
    /// Where the daemon logs: syslog (facility mail, so lines sit beside
    /// Postfix's in mail.log) or standard error (journald under systemd).
    public var log = LogTarget.stderr
    public var logLevel = Logger.Level.info
    /// Prometheus endpoint ("127.0.0.1:9325"); nil: no metrics.
    public var metrics: HostPort?
    /// Conversation memory: a SQLite file path or a postgresql:// URL; nil:
    /// route by names only (`state = "off"`).
    public var state: String? = DaemonSettings.defaultState
    /// How long the memory keeps sent messages and the audit trail.
    public var retentionDays = 365
    /// The longest the store lookups of one message may delay it before
    /// sharemail routes without memory.
    public var stateTimeoutMilliseconds = 200
    /// On SIGTERM, how long messages in flight may take to finish before
    /// sharemail stops anyway (Postfix then defers what is left).
    public var drainTimeoutSeconds = 30

    public enum LogTarget: String, Sendable { case stderr, syslog }

    /// Every default is the property's initial value above.
    public init() {}

    /// The memory of a file without `state`: the unit's StateDirectory.
    public static let defaultState = "/var/lib/sharemail/state.sqlite"
    /// The `state` value that turns the memory off.
    public static let stateOff = "off"

    /// Each key of the file that sets a daemon setting, and whether two
    /// settings agree on it. Every one needs a restart to take effect; the
    /// unknown-key check and the reload's warning both come from this table.
    static let keys: [(name: String, same: @Sendable (DaemonSettings, DaemonSettings) -> Bool)] = [
        ("socket", { $0.socket == $1.socket }),
        ("socket_mode", { $0.socketMode == $1.socketMode }),
        ("socket_owner", { $0.socketOwner == $1.socketOwner }),
        ("socket_group", { $0.socketGroup == $1.socketGroup }),
        ("log", { $0.log == $1.log }),
        ("log_level", { $0.logLevel == $1.logLevel }),
        ("metrics", { $0.metrics == $1.metrics }),
        ("state", { $0.state == $1.state }),
        ("retention_days", { $0.retentionDays == $1.retentionDays }),
        ("state_timeout_ms", { $0.stateTimeoutMilliseconds == $1.stateTimeoutMilliseconds }),
        ("drain_timeout_seconds", { $0.drainTimeoutSeconds == $1.drainTimeoutSeconds }),
    ]

    /// The keys whose value differs from `running`'s: a reload cannot apply them.
    public func restartKeys(changedFrom running: DaemonSettings) -> [String] {
        Self.keys.filter { !$0.same(self, running) }.map(\.name)
    }

    /// Reads the daemon's keys of a configuration file; a bad value is a
    /// problem of the file, and the default stands in for it.
    static func read(_ reader: inout ConfigurationReader) -> DaemonSettings {
        var settings = DaemonSettings()
        if let text = reader.string("socket") {
            if let socket = SocketSpec(libmilter: text) {
                settings.socket = socket
            } else {
                reader.problem("socket", "\"\(text)\" is not a libmilter socket: use unix:/path or inet:port@host")
            }
        }
        if let text = reader.string("socket_mode") {
            if let value = UInt32(text, radix: 8), value <= 0o777 {
                settings.socketMode = value
            } else {
                reader.problem("socket_mode", "\"\(text)\" is not an octal file mode such as \"0660\"")
            }
        }
        settings.socketOwner = reader.string("socket_owner")
        settings.socketGroup = reader.string("socket_group")
        if let text = reader.string("log") {
            if let target = LogTarget(rawValue: text) {
                settings.log = target
            } else {
                reader.problem("log", "\"\(text)\" is not a log target: use \"syslog\" or \"stderr\"")
            }
        }
        if let text = reader.string("log_level") {
            if let level = Logger.Level(rawValue: text) {
                settings.logLevel = level
            } else {
                let levels = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
                reader.problem("log_level", "\"\(text)\" is not a level: use one of \(levels)")
            }
        }
        // No key: the memory lives in the default file; "off" turns it off.
        if let state = reader.string("state") {
            if state == stateOff {
                settings.state = nil
            } else if state.isEmpty || !(state.hasPrefix("/") || state.hasPrefix("postgres://") || state.hasPrefix("postgresql://")) {
                reader.problem("state", "\"\(state)\" is neither an absolute SQLite file path, a postgresql:// URL nor \"off\"")
            } else {
                settings.state = state
            }
        }
        if let days = reader.int("retention_days", range: 1...36_500) { settings.retentionDays = days }
        if let timeout = reader.int("state_timeout_ms", range: 1...10_000) { settings.stateTimeoutMilliseconds = timeout }
        if let timeout = reader.int("drain_timeout_seconds", range: 0...3_600) { settings.drainTimeoutSeconds = timeout }
        if let text = reader.string("metrics") {
            settings.metrics = HostPort(text)
            if settings.metrics == nil { reader.problem("metrics", "\"\(text)\" is not an address and port such as \"127.0.0.1:9325\"") }
        }
        return settings
    }
}
