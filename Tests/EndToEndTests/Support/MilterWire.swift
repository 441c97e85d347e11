import Foundation
import PostfixLab

#if canImport(Glibc)
    import Glibc
#endif

/// The MTA side of the milter protocol, byte by byte, over a unix socket: for what no
/// well-behaved client sends (miltertest refuses steps the milter negotiated away, and has
/// no QUIT_NC) and for raw garbage. Every read gives up after a few seconds.
final class MilterWire {
    /// One packet: command (or reply) byte and its data.
    struct Packet: CustomStringConvertible {
        let command: UInt8
        let data: [UInt8]
        var code: Character { Character(Unicode.Scalar(command)) }
        /// The NUL-separated strings of the data.
        var strings: [String] {
            data.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
        }
        var description: String { "'\(code)' \(strings)" }
    }

    enum Failure: Error, CustomStringConvertible {
        case closed(String), timeout(String), unexpected(String)
        var description: String {
            switch self {
            case .closed(let what): "the milter closed the connection (\(what))"
            case .timeout(let what): "no answer from the milter (\(what))"
            case .unexpected(let what): what
            }
        }
    }

    let fd: Int32
    /// Protocol flags the milter asked for at negotiation (SMFIP_*).
    private(set) var protocolFlags: UInt32 = 0

    // SMFIP_* bits (libmilter/mfdef.h): the steps a milter can skip or answer without a reply.
    static let noConnect: UInt32 = 0x1, noHelo: UInt32 = 0x2, noMail: UInt32 = 0x4, noRcpt: UInt32 = 0x8
    static let noBody: UInt32 = 0x10, noHeaders: UInt32 = 0x20, noEOH: UInt32 = 0x40, noUnknown: UInt32 = 0x100
    static let noData: UInt32 = 0x200
    static let noReplyHeader: UInt32 = 0x80, noReplyConnect: UInt32 = 0x1000, noReplyHelo: UInt32 = 0x2000
    static let noReplyMail: UInt32 = 0x4000, noReplyRcpt: UInt32 = 0x8000, noReplyData: UInt32 = 0x10000
    static let noReplyUnknown: UInt32 = 0x20000, noReplyEOH: UInt32 = 0x40000, noReplyBody: UInt32 = 0x80000

    init(socketPath: String, timeoutSeconds: Int = 10) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LabError("socket(AF_UNIX) failed: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes.prefix(raw.count - 1))
            raw[min(bytes.count, raw.count - 1)] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw LabError("cannot connect to \(socketPath): \(reason)")
        }
    }

    deinit { Glibc.close(fd) }

    // MARK: Bytes

    /// Writes raw bytes; false when the milter already closed the connection.
    @discardableResult
    func writeRaw(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }

    func send(_ command: Character, _ data: [UInt8] = []) throws {
        let length = UInt32(data.count + 1).bigEndian
        let header = withUnsafeBytes(of: length) { Array($0) } + [command.asciiValue!]
        guard writeRaw(header + data) else { throw Failure.closed("writing '\(command)'") }
    }

    private func read(_ count: Int, _ what: String) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, 0) }
            if got < 0 && errno == EINTR { continue }
            if got < 0 { throw Failure.timeout(what) }
            if got == 0 { throw Failure.closed(what) }
            offset += got
        }
        return buffer
    }

    func readPacket(_ what: String) throws -> Packet {
        let header = try read(5, what)
        let length = Int(UInt32(header[0]) << 24 | UInt32(header[1]) << 16 | UInt32(header[2]) << 8 | UInt32(header[3]))
        guard length >= 1, length < 1 << 24 else { throw Failure.unexpected("\(what): packet length \(length)") }
        return Packet(command: header[4], data: try read(length - 1, what))
    }

    /// True when the milter closed its end (a read sees end of file) within `seconds`.
    func closedByMilter(within seconds: Int) -> Bool {
        var pollfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&pollfd, 1, Int32(seconds * 1000)) > 0 else { return false }
        var byte: UInt8 = 0
        while true {
            let got = recv(fd, &byte, 1, 0)
            if got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN) { return true }
            if got > 0 { continue }  // something was still queued: read on to the end
            return false
        }
    }

    /// A reply that arrives within `milliseconds`, or nil if none does.
    func pendingReply(within milliseconds: Int32, _ what: String) throws -> Packet? {
        var pollfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&pollfd, 1, milliseconds) > 0 else { return nil }
        return try readPacket(what)
    }

    // MARK: Steps, as Postfix sends them

    static func strings(_ values: [String]) -> [UInt8] { values.flatMap { Array($0.utf8) + [0] } }

    /// Every protocol option (SMFIP_*) Postfix 3.7 offers.
    static let allProtocolOptions: UInt32 = 0x1FFFFF

    /// OPTNEG offering protocol version 6, every action and `protocolOptions` (by default
    /// what Postfix 3.7 offers); records what the milter asked for.
    func negotiate(protocolOptions: UInt32 = allProtocolOptions) throws {
        func be(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
        try send("O", be(6) + be(0x1FF) + be(protocolOptions))
        let reply = try readPacket("OPTNEG")
        guard reply.code == "O", reply.data.count >= 12 else { throw Failure.unexpected("OPTNEG answered with \(reply)") }
        protocolFlags = reply.data[8..<12].reduce(0) { $0 << 8 | UInt32($1) }
    }

    func macros(_ stage: Character, _ pairs: [(String, String)]) throws {
        try send("D", [stage.asciiValue!] + Self.strings(pairs.flatMap { [$0.0, $0.1] }))
    }

    /// Sends a step and returns the milter's reply, or nil when the step was negotiated
    /// without reply (`noReply` among the flags).
    func step(_ command: Character, _ data: [UInt8], noReply: UInt32, _ what: String) throws -> Packet? {
        try send(command, data)
        if protocolFlags & noReply != 0 { return nil }
        return try readPacket(what)
    }

    @discardableResult
    func connect(ip: String, port: UInt16, hostname: String) throws -> Packet? {
        try macros("C", [("j", "mx.example.com"), ("{daemon_name}", "smtpd"), ("{client_addr}", ip), ("{client_name}", hostname)])
        let data = Self.strings([hostname]) + [Character("4").asciiValue!, UInt8(port >> 8), UInt8(port & 0xFF)] + Self.strings([ip])
        return try step("C", data, noReply: Self.noReplyConnect, "CONNECT")
    }

    @discardableResult
    func mail(_ sender: String, queueID: String, login: String? = nil) throws -> Packet? {
        var pairs = [("{mail_addr}", sender), ("i", queueID)]
        if let login { pairs.append(("{auth_authen}", login)) }
        try macros("M", pairs)
        return try step("M", Self.strings(["<\(sender)>"]), noReply: Self.noReplyMail, "MAIL FROM:<\(sender)>")
    }

    func rcpt(_ recipient: String) throws -> Packet? {
        let host = String(recipient.split(separator: "@").last ?? "")
        try macros(
            "R",
            [
                ("{rcpt_addr}", recipient), ("{rcpt_host}", host),
                ("{rcpt_mailer}", host == "example.com" ? "virtual" : "smtp"),
            ])
        return try step("R", Self.strings(["<\(recipient)>"]), noReply: Self.noReplyRcpt, "RCPT TO:<\(recipient)>")
    }

    func header(_ name: String, _ value: String) throws {
        _ = try step("L", Self.strings([name, value]), noReply: Self.noReplyHeader, "header \(name)")
    }

    /// End of message: the modifications, then the final reply.
    func endOfMessage(queueID: String) throws -> (changes: [Packet], final: Packet) {
        try macros("E", [("i", queueID)])
        try send("E")
        var changes: [Packet] = []
        while true {
            let packet = try readPacket("end of message \(queueID)")
            switch packet.code {
            case "p": continue  // progress
            case "c", "a", "r", "t", "d", "y": return (changes, packet)
            default: changes.append(packet)
            }
        }
    }
}
