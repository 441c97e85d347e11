import MailHeaders

/// Finds the Message-IDs a delivery report or auto-reply quotes in its body
/// (the `text/rfc822-headers` or `message/rfc822` part of a bounce carries
/// the original message's headers), so a bounce can follow its thread.
/// Fed chunk by chunk; reads at most `limit` bytes.
public struct BounceScanner: Sendable {
    public private(set) var messageIDs: [String] = []
    private var line: [UInt8] = []
    private var pendingContinuation = false
    private var pending: [UInt8] = []
    private var consumed = 0
    public let limit: Int

    public init(limit: Int = 64 * 1024) {
        self.limit = limit
    }

    /// Is this message worth scanning: a delivery report, or anything with
    /// the null sender.
    public static func wants(sender: EnvelopeAddress, headers: [Header]) -> Bool {
        if sender.isNull { return true }
        return headers.contains { header in
            header.name.caseInsensitiveEquals("Content-Type")
                && String(decoding: header.raw, as: UTF8.self).lowercased().contains("multipart/report")
        }
    }

    /// True while more body is wanted.
    public var wantsMore: Bool { consumed < limit && messageIDs.count < 20 }

    public mutating func feed(_ chunk: some Collection<UInt8>) {
        for byte in chunk {
            guard wantsMore else { return }
            consumed += 1
            if byte == 0x0A {
                finishLine()
            } else if byte != 0x0D, line.count < 2_048 {
                line.append(byte)
            }
        }
    }

    private mutating func finishLine() {
        defer { line.removeAll(keepingCapacity: true) }
        if pendingContinuation {
            pendingContinuation = false
            if line.first == 0x20 || line.first == 0x09 {
                collect(pending + line)
                return
            }
            collect(pending)
        }
        let prefix = Array("message-id:".utf8)
        guard line.count >= prefix.count,
            zip(line.prefix(prefix.count), prefix).allSatisfy({ a, b in a | 0x20 == b | 0x20 || a == b })
        else { return }
        let rest = Array(line.dropFirst(prefix.count))
        if rest.contains(UInt8(ascii: ">")) {
            collect(rest)
        } else {
            pending = rest
            pendingContinuation = true
        }
    }

    private mutating func collect(_ bytes: [UInt8]) {
        for id in MessageIDs.parse(String(decoding: bytes, as: UTF8.self), limit: 5) where !messageIDs.contains(id) {
            messageIDs.append(id)
        }
    }
}
