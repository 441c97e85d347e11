import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One SMTP reply: the code and the text of every line ("250-a", "250 b" → ["a", "b"]).
package struct SMTPReply: Sendable, CustomStringConvertible {
    package let code: Int
    package let lines: [String]
    package var text: String { lines.joined(separator: "\n") }
    package var isPositive: Bool { (200..<400).contains(code) }
    package var description: String { lines.map { "\(code) \($0)" }.joined(separator: " | ") }
}

/// A blocking SMTP client over a plain socket: just enough to say what a mail client says
/// and to hand every reply back, so callers can check 250, 451 or 550 themselves.
///
/// Every read and write has a 30-second socket timeout; a silent server fails the caller
/// instead of hanging it.
package final class SMTPClient {
    private let fd: Int32
    private var buffer: [UInt8] = []
    package private(set) var transcript: [String] = []  // "C: …" / "S: …", for failure messages

    package init(port: UInt16, timeoutSeconds: Int = 30) throws {
        fd = try connectLoopback(port: port, timeoutSeconds: timeoutSeconds)
    }

    deinit { close(fd) }

    /// True when something accepts TCP connections on 127.0.0.1:`port`.
    package static func canConnect(port: UInt16) -> Bool {
        guard let fd = try? connectLoopback(port: port, timeoutSeconds: 2) else { return false }
        close(fd)
        return true
    }

    // MARK: Commands

    package func greeting() throws -> SMTPReply { try readReply() }

    package func command(_ line: String) throws -> SMTPReply {
        try send(Array((line + "\r\n").utf8), logAs: "C: " + line)
        return try readReply()
    }

    package func ehlo(_ name: String) throws -> SMTPReply { try command("EHLO " + name) }

    /// XCLIENT makes Postfix forget the real client and re-greet; the caller must EHLO again.
    package func xclient(_ attributes: String) throws -> SMTPReply { try command("XCLIENT " + attributes) }

    /// `address` is put in angle brackets, unless it already starts with one: then it is sent
    /// as written, with whatever ESMTP parameters follow (`<a@b> ENVID=x`).
    package func mailFrom(_ address: String) throws -> SMTPReply { try command("MAIL FROM:" + Self.path(address)) }

    package func rcptTo(_ address: String) throws -> SMTPReply { try command("RCPT TO:" + Self.path(address)) }

    private static func path(_ address: String) -> String { address.hasPrefix("<") ? address : "<\(address)>" }

    /// DATA, then the message (LF or CRLF line ends, raw bytes allowed) with dot-stuffing.
    /// Returns the 354 refusal if DATA is refused, else the reply to the final dot.
    package func data(_ message: [UInt8]) throws -> SMTPReply {
        let go = try command("DATA")
        guard go.code == 354 else { return go }
        try send(Self.wire(message) + Array(".\r\n".utf8), logAs: "C: <message, \(message.count) bytes>\nC: .")
        return try readReply()
    }

    /// The message as it goes after DATA: CRLF line ends, dot-stuffed, without the final dot.
    package static func wire(_ message: [UInt8]) -> [UInt8] {
        var wire: [UInt8] = []
        wire.reserveCapacity(message.count + message.count / 40 + 8)
        for var line in message.split(separator: 0x0A, omittingEmptySubsequences: false).dropLast(message.last == 0x0A ? 1 : 0) {
            if line.last == 0x0D { line = line.dropLast() }
            if line.first == 0x2E { wire.append(0x2E) }  // dot-stuffing
            wire += line
            wire += [0x0D, 0x0A]
        }
        return wire
    }

    // MARK: Step by step (the fault tests: a DATA phase cut in two, "was the dot sent?")

    /// Writes bytes as they are, without waiting for a reply (part of a DATA phase, say).
    package func write(_ bytes: [UInt8], logAs: String? = nil) throws {
        try send(bytes, logAs: logAs ?? "C: <\(bytes.count) bytes>")
    }

    /// Reads the next reply (the one to the final dot, after `write`).
    package func reply() throws -> SMTPReply { try readReply() }

    package func quit() {
        _ = try? command("QUIT")
    }

    // MARK: Wire

    private func send(_ bytes: [UInt8], logAs: String) throws {
        transcript.append(logAs)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw LabError("SMTP write failed: \(String(cString: strerror(errno)))") }
            offset += written
        }
    }

    /// Reads lines until one whose 4th character is a space (the last line of a reply).
    private func readReply() throws -> SMTPReply {
        var code = 0
        var lines: [String] = []
        while true {
            let line = try readLine()
            transcript.append("S: " + line)
            guard line.count >= 3, let parsed = Int(line.prefix(3)) else {
                throw LabError("malformed SMTP reply line: \(line)")
            }
            code = parsed
            lines.append(String(line.dropFirst(4)))
            if line.count == 3 || line[line.index(line.startIndex, offsetBy: 3)] == " " { break }
        }
        return SMTPReply(code: code, lines: lines)
    }

    private func readLine() throws -> String {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                var line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                if line.last == 0x0D { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { throw LabError("the SMTP server closed the connection\n" + transcript.joined(separator: "\n")) }
            if count < 0 {
                throw LabError("SMTP read failed (\(String(cString: strerror(errno)))), after:\n" + transcript.joined(separator: "\n"))
            }
            buffer += chunk[..<count]
        }
    }
}
