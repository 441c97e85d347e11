import Glibc

/// Why the milter could not start or serve.
public enum MilterError: Error, Equatable, CustomStringConvertible {
    case alreadyRunning
    case setConnection(String)
    case setTimeout
    case setBacklog
    case register
    case openSocket(String)
    case socketPermissions(String, Int32)
    case main
    case signals(Int32)

    public var description: String {
        switch self {
        case .alreadyRunning: "the milter is already running in this process"
        case .setConnection(let spec): "libmilter rejected the socket spec \"\(spec)\" (expected unix:/path or inet:port@host)"
        case .setTimeout: "libmilter rejected the timeout"
        case .setBacklog: "libmilter rejected the listen backlog"
        case .register: "libmilter refused to register the filter"
        case .openSocket(let spec): "cannot open milter socket \(spec) (in use, bad path, or no permission)"
        case .socketPermissions(let path, let code): "cannot set owner/mode of \(path): \(String(cString: strerror(code)))"
        case .main: "libmilter's main loop failed"
        case .signals(let code): "cannot block signals: \(String(cString: strerror(code)))"
        }
    }
}
