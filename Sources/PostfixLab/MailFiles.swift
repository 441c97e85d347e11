import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A delivered message as a file: raw bytes plus its unfolded header fields.
///
/// Deliberately naive (no RFC 2047 decoding, no address parsing): the tests and the sandbox
/// show what went over the wire, and must not share parsing code with the product they check.
package struct MailMessage: Sendable, CustomStringConvertible {
    package struct Field: Sendable {
        package let name: String
        package let value: String  // unfolded, leading whitespace trimmed
    }

    package let path: String
    package let raw: [UInt8]
    package let fields: [Field]

    package init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LabError("cannot read \(path)")
        }
        self.path = path
        self.raw = Array(data)
        var fields: [Field] = []
        var current: (name: String, value: String)?
        for lineBytes in raw.split(separator: 0x0A, omittingEmptySubsequences: false) {
            var line = String(decoding: lineBytes, as: UTF8.self)
            if line.hasSuffix("\r") { line.removeLast() }
            if line.isEmpty { break }  // end of the header section
            if line.first == " " || line.first == "\t" {
                current?.value += line
            } else if let colon = line.firstIndex(of: ":") {
                if let done = current { fields.append(Field(name: done.name, value: Self.trim(done.value))) }
                current = (String(line[..<colon]), String(line[line.index(after: colon)...]))
            }
        }
        if let done = current { fields.append(Field(name: done.name, value: Self.trim(done.value))) }
        self.fields = fields
    }

    /// All values of a header field, name compared case-insensitively.
    package func values(_ name: String) -> [String] {
        fields.filter { $0.name.caseInsensitiveCompare(name) == .orderedSame }.map(\.value)
    }

    package func value(_ name: String) -> String? { values(name).first }

    /// The whole file as text, for "this string must appear nowhere" checks.
    package var text: String { String(decoding: raw, as: UTF8.self) }

    package var description: String {
        let head = text.components(separatedBy: "\n\n").first ?? text
        return "\(path):\n\(head.prefix(3000))"
    }

    private static func trim(_ value: String) -> String {
        String(value.drop(while: { $0 == " " || $0 == "\t" }))
    }
}

/// `smtp-sink` plays the Internet: every message Postfix relays out is dumped to a file that
/// starts with the envelope (X-Mail-Args: <sender>, X-Rcpt-Args: <recipient> …).
package final class Sink: Sendable {
    package struct Message: Sendable, CustomStringConvertible {
        package let file: MailMessage
        package var envelopeSender: String { Sink.firstAddress(file.value("X-Mail-Args") ?? "") }
        package var envelopeRecipients: [String] { file.values("X-Rcpt-Args").map(Sink.firstAddress) }
        package var description: String { file.description }
    }

    package let port: UInt16
    package let dumpDirectory: String
    private let pid: pid_t

    package init(directory: String, port: UInt16) throws {
        self.port = port
        dumpDirectory = directory + "/sink"
        try FileManager.default.createDirectory(atPath: dumpDirectory, withIntermediateDirectories: true)
        chmod(dumpDirectory, 0o777)  // smtp-sink drops to user nobody before it writes
        pid = try Command.spawn(
            ["smtp-sink", "-u", "nobody", "-d", dumpDirectory + "/msg.", "127.0.0.1:\(port)", "100"],
            outputPath: directory + "/smtp-sink.log")
        RunDirectory.recordChild(pid, in: directory)
        guard poll(timeout: .seconds(30), { SMTPClient.canConnect(port: port) }) else {
            Command.terminate(pid)
            throw LabError("smtp-sink does not listen on 127.0.0.1:\(port)")
        }
    }

    package func stop() { Command.terminate(pid) }

    package func messages() throws -> [Message] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dumpDirectory)) ?? []
        return try names.sorted().map { Message(file: try MailMessage(path: dumpDirectory + "/" + $0)) }
    }

    package func clear() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dumpDirectory)) ?? [] {
            unlink(dumpDirectory + "/" + name)
        }
    }

    /// "<a@b> SIZE=1 …" → "a@b"
    fileprivate static func firstAddress(_ args: String) -> String {
        guard let open = args.firstIndex(of: "<"), let close = args[open...].firstIndex(of: ">") else { return args }
        return String(args[args.index(after: open)..<close])
    }
}

/// The Maildirs the `virtual` agent writes: DIR/mail/example.com/<user>/{new,cur}/.
package struct Maildirs: Sendable {
    package let base: String  // virtual_mailbox_base

    package func messages(_ mailbox: String) throws -> [MailMessage] {
        let root = base + "/example.com/" + mailbox
        return try ["new", "cur"].flatMap { sub in
            let names = (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + sub)) ?? []
            return try names.sorted().map { try MailMessage(path: root + "/" + sub + "/" + $0) }
        }
    }

    /// Message count per mailbox, for every known mailbox (zero included).
    package func counts() throws -> [String: Int] {
        var result: [String: Int] = [:]
        for mailbox in PostfixInstance.mailboxes { result[mailbox] = try messages(mailbox).count }
        return result
    }

    package func clear() {
        for mailbox in PostfixInstance.mailboxes {
            for sub in ["new", "cur", "tmp"] {
                let directory = base + "/example.com/" + mailbox + "/" + sub
                for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
                    unlink(directory + "/" + name)
                }
            }
        }
    }
}
