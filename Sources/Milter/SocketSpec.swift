import Glibc

/// Where a milter listens, typed: parsed once from libmilter's spelling
/// (`unix:/path`, `inet:8891@127.0.0.1`, `inet6:8891@::1`) or from Postfix's
/// (`inet:127.0.0.1:8891`, as in smtpd_milters), and compared across both.
public enum SocketSpec: Hashable, Sendable, CustomStringConvertible {
    case unix(path: String)
    case inet(host: String, port: Int)
    case inet6(host: String, port: Int)

    /// libmilter's spelling, as in a filter's `socket` setting. nil for
    /// anything libmilter would not take.
    public init?(libmilter spec: String) {
        guard let colon = spec.firstIndex(of: ":") else { return nil }
        let kind = spec[..<colon].lowercased()
        let rest = String(spec[spec.index(after: colon)...])
        switch kind {
        case "unix", "local":
            guard !rest.isEmpty else { return nil }
            self = .unix(path: rest)
        case "inet", "inet6":
            let parts = rest.split(separator: "@", maxSplits: 1)
            guard let port = parts.first.flatMap({ Int($0) }), (1...65535).contains(port) else { return nil }
            let host = parts.count > 1 ? String(parts[1]) : "localhost"
            self = kind == "inet" ? .inet(host: host, port: port) : .inet6(host: host, port: port)
        default: return nil
        }
    }

    /// Postfix's spelling, as in smtpd_milters (also `{ inet:h:p, … }`).
    public init?(postfix spec: String) {
        var spec = Substring(spec).trimming(" \t{}")
        if let comma = spec.firstIndex(of: ",") { spec = Substring(spec[..<comma]).trimming(" \t") }
        let (kind, rest) = SocketSpec.split(String(spec))
        switch kind {
        case "unix", "local": self = .unix(path: rest)
        case "inet":
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]) else { return nil }
            let host = rest[..<colon].trimming("[]")
            self = .inet(host: String(host), port: port)
        default: return nil
        }
    }

    /// Postfix's spelling (`unix:/path`, `inet:host:port`): what an admin
    /// writes into main.cf, and how doctor names the socket.
    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .inet(let host, let port), .inet6(let host, let port): "inet:\(host):\(port)"
        }
    }

    /// libmilter's spelling, for `smfi_setconn`.
    public var libmilterSpelling: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .inet(let host, let port): "inet:\(port)@\(host)"
        case .inet6(let host, let port): "inet6:\(port)@\(host)"
        }
    }

    /// The file of a unix socket; nil for TCP.
    public var path: String? {
        if case .unix(let path) = self { return path }
        return nil
    }

    /// A TCP socket rather than a unix one.
    public var isTCP: Bool { path == nil }

    /// Same socket, counting the loopback names as one host.
    public func matches(_ other: SocketSpec) -> Bool {
        switch (self, other) {
        case (.unix(let a), .unix(let b)): return a == b
        case (.unix, _), (_, .unix): return false
        default:
            guard let (h1, p1) = hostAndPort, let (h2, p2) = other.hostAndPort else { return false }
            let loopback: Set<String> = ["localhost", "127.0.0.1", "::1"]
            return p1 == p2 && (h1 == h2 || (loopback.contains(h1) && loopback.contains(h2)))
        }
    }

    private var hostAndPort: (String, Int)? {
        switch self {
        case .unix: nil
        case .inet(let host, let port), .inet6(let host, let port): (host, port)
        }
    }

    private static func split(_ spec: String) -> (String, String) {
        guard let colon = spec.firstIndex(of: ":") else { return ("unix", spec) }
        return (spec[..<colon].lowercased(), String(spec[spec.index(after: colon)...]))
    }

    /// Connects and performs the milter option negotiation, as Postfix does
    /// first on every connection. Returns nil when the filter answered, or
    /// what went wrong.
    public func probe(timeoutSeconds: Int = 5) -> String? {
        let fd: Int32
        switch self {
        case .unix(let path):
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return "socket(): \(String(cString: strerror(errno)))" }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
                close(fd)
                return "socket path too long"
            }
            withUnsafeMutableBytes(of: &address.sun_path) { buffer in
                for (i, byte) in bytes.enumerated() { buffer[i] = byte }
            }
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if result != 0 {
                let e = errno
                close(fd)
                return "cannot connect to \(path): \(String(cString: strerror(e)))"
            }
        case .inet(let host, let port), .inet6(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return "cannot resolve \(host)" }
            defer { freeaddrinfo(list) }
            fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
            guard fd >= 0 else { return "socket(): \(String(cString: strerror(errno)))" }
            if connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) != 0 {
                let e = errno
                close(fd)
                return "cannot connect to \(host):\(port): \(String(cString: strerror(e)))"
            }
        }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        // SMFIC_OPTNEG: length, 'O', version 6, all actions, all protocol steps.
        var packet: [UInt8] = [0, 0, 0, 13, UInt8(ascii: "O")]
        for word: UInt32 in [6, 0x1FF, 0x1F_FFFF] {
            packet += [UInt8(word >> 24), UInt8(word >> 16 & 0xFF), UInt8(word >> 8 & 0xFF), UInt8(word & 0xFF)]
        }
        guard write(fd, packet, packet.count) == packet.count else { return "write failed" }
        let wanted = 5
        var header = [UInt8](repeating: 0, count: wanted)
        var got = 0
        while got < wanted {
            let n = header.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, wanted - got) }
            if n <= 0 { return "no answer to the milter negotiation (not a milter, or it hung)" }
            got += n
        }
        guard header[4] == UInt8(ascii: "O") else { return "answered, but not with a milter negotiation reply" }
        let quit: [UInt8] = [0, 0, 0, 1, UInt8(ascii: "Q")]
        _ = write(fd, quit, quit.count)
        return nil
    }
}

extension StringProtocol {
    /// Without the leading and trailing characters that are in `set`.
    fileprivate func trimming(_ set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
