import Foundation
import PostfixLab

#if canImport(Glibc)
    import Glibc
#endif

/// Reads delivered headers the way a customer's mail client shows them: every
/// RFC 2047 encoded word decoded. Written here on purpose, with Foundation's
/// base64 and glibc's iconv, sharing no code with the product it checks.
enum HeaderReading {
    /// Every header field of `message`, unfolded, encoded words decoded, one per line.
    static func decodedHeaders(_ message: MailMessage) -> String {
        message.fields.map { "\($0.name): \(decode($0.value))" }.joined(separator: "\n")
    }

    /// `=?charset?B|Q?text?=` words decoded; white space between two words dropped.
    static func decode(_ value: String) -> String {
        let u = Array(value.utf8)
        var out: [UInt8] = []
        var pendingSpace: [UInt8] = []
        var lastWasWord = false
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "="), i + 1 < u.count, u[i + 1] == UInt8(ascii: "?"),
                let (end, text) = word(u, at: i)
            {
                if !lastWasWord { out += pendingSpace }
                pendingSpace = []
                out += text
                lastWasWord = true
                i = end
            } else if u[i] == 0x20 || u[i] == 0x09 {
                pendingSpace.append(u[i])
                i += 1
            } else {
                out += pendingSpace
                pendingSpace = []
                out.append(u[i])
                lastWasWord = false
                i += 1
            }
        }
        out += pendingSpace
        return String(decoding: out, as: UTF8.self)
    }

    /// One encoded word at `start`: where it ends and its text as UTF-8.
    private static func word(_ u: [UInt8], at start: Int) -> (Int, [UInt8])? {
        let parts = u[(start + 2)...].split(separator: UInt8(ascii: "?"), maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 4, parts[3].first == UInt8(ascii: "="),
            let charset = String(bytes: parts[0], encoding: .ascii), parts[1].count == 1
        else { return nil }
        let payload = Array(parts[2])
        guard !payload.contains(0x20) else { return nil }
        let end = parts[3].startIndex + 1
        var bytes: [UInt8]
        switch parts[1].first! | 0x20 {
        case UInt8(ascii: "b"):
            var text = String(decoding: payload, as: UTF8.self)
            while text.count % 4 != 0 { text += "=" }
            guard let data = Data(base64Encoded: text) else { return nil }
            bytes = Array(data)
        case UInt8(ascii: "q"):
            bytes = []
            var k = 0
            while k < payload.count {
                if payload[k] == UInt8(ascii: "_") {
                    bytes.append(0x20)
                } else if payload[k] == UInt8(ascii: "="), k + 2 < payload.count,
                    let b = UInt8(String(decoding: payload[(k + 1)...(k + 2)], as: UTF8.self), radix: 16)
                {
                    bytes.append(b)
                    k += 2
                } else {
                    bytes.append(payload[k])
                }
                k += 1
            }
        default:
            return nil
        }
        guard let text = iconvToUTF8(bytes, from: charset) else { return nil }
        return (end, text)
    }

    static func iconvToUTF8(_ bytes: [UInt8], from charset: String) -> [UInt8]? {
        let name = charset.split(separator: "*").first.map(String.init) ?? charset
        guard let cd = iconv_open("UTF-8", name), Int(bitPattern: cd) != -1 else { return nil }
        defer { iconv_close(cd) }
        var input = bytes.map { CChar(bitPattern: $0) }
        var output = [CChar](repeating: 0, count: bytes.count * 4 + 16)
        let produced: Int? = input.withUnsafeMutableBufferPointer { inBuf in
            output.withUnsafeMutableBufferPointer { outBuf in
                var inPtr = inBuf.baseAddress
                var inLeft = inBuf.count
                var outPtr = outBuf.baseAddress
                var outLeft = outBuf.count
                guard iconv(cd, &inPtr, &inLeft, &outPtr, &outLeft) != -1, inLeft == 0 else { return nil }
                return outBuf.count - outLeft
            }
        }
        guard let produced else { return nil }
        return output[..<produced].map { UInt8(bitPattern: $0) }
    }

    /// Where `text` still spells the staff's local part as an address: "zhangsan"
    /// followed (after an optional closing quote, +extension and white space) by "@".
    static func staffAddressLeaks(_ text: String, local: String = "zhangsan") -> [String] {
        let lower = Array(text.lowercased().utf8)
        let needle = Array(local.utf8)
        var leaks: [String] = []
        var i = 0
        while i + needle.count <= lower.count {
            guard Array(lower[i..<(i + needle.count)]) == needle else {
                i += 1
                continue
            }
            var j = i + needle.count
            if j < lower.count, lower[j] == UInt8(ascii: "\"") { j += 1 }
            if j < lower.count, lower[j] == UInt8(ascii: "+") {
                while j < lower.count, lower[j] != UInt8(ascii: "@"), lower[j] > 0x20, lower[j] != UInt8(ascii: ">") { j += 1 }
            }
            while j < lower.count, [0x20, 0x09, 0x0D, 0x0A].contains(lower[j]) { j += 1 }
            if j < lower.count, lower[j] == UInt8(ascii: "@") || lower[j] == UInt8(ascii: "=") && lower[(j + 1)...].starts(with: Array("example.com".utf8)) {
                leaks.append(String(decoding: lower[max(0, i - 20)..<min(lower.count, j + 20)], as: UTF8.self))
            }
            i += needle.count
        }
        return leaks
    }
}
