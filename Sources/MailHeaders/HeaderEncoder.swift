// Writing header values that every client decodes back to exactly the same name.

public enum HeaderEncoder {
    /// One mailbox for a header:
    /// - `Zhangsan <sales@example.com>`: atom phrase when the name is only atext and spaces;
    /// - `"Zhang, San" <sales@example.com>`: quoted string when the name has specials;
    /// - `=?UTF-8?B?5byg5LiJ?= <sales@example.com>`: non-ASCII as RFC 2047 UTF-8 words
    ///   (B or Q, whichever is shorter; each word ≤ 75 chars; split on character boundaries);
    /// - `"张三" <sales@example.com>`: raw UTF-8 in quotes when `smtpUTF8` is true;
    /// - `<sales@example.com>`: no (or an empty) display name.
    /// Whitespace runs in the name are collapsed to one space and trimmed, as readers do.
    public static func mailbox(displayName: String?, address: String, smtpUTF8: Bool) -> String {
        // An address never legitimately holds controls; CR/LF would inject header lines.
        let addr = String(String.UnicodeScalarView(address.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }))
        guard let displayName, let name = collapse(displayName) else { return "<\(addr)>" }
        return phrase(name, smtpUTF8: smtpUTF8) + " <" + addr + ">"
    }

    /// The phrase for an already collapsed, non-empty name.
    static func phrase(_ name: String, smtpUTF8: Bool) -> String {
        var ascii = true
        var atoms = true
        var controls = false
        for s in name.unicodeScalars {
            let v = s.value
            if v < 0x20 || v == 0x7F || (0x80...0x9F).contains(v) { controls = true }
            if v >= 0x80 { ascii = false }
            if !(v == 0x20 || (v < 0x80 && isAtext(UInt8(v)))) { atoms = false }
        }
        // "=?" would be read back as an encoded word; controls can't be quoted.
        let looksEncoded = name.contains("=?")
        if controls || looksEncoded || (!ascii && !smtpUTF8) {
            return encodedWords(name)
        }
        if atoms { return name }
        return quoted(name)
    }

    static func quoted(_ name: String) -> String {
        var out = "\""
        for c in name.unicodeScalars {
            if c == "\"" || c == "\\" { out.unicodeScalars.append("\\") }
            out.unicodeScalars.append(c)
        }
        out += "\""
        return out
    }

    /// RFC 5322 atext.
    static func isAtext(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-/=?^_`{|}~".utf8.contains(b)
        }
    }

    /// ASCII whitespace runs → one space, trimmed; nil if nothing is left.
    static func collapse(_ s: String) -> String? {
        AddressParser.collapsed(Array(s.utf8))
    }

    // MARK: - RFC 2047

    private static let maxWord = 75
    private static let overhead = "=?UTF-8?B??=".utf8.count  // same for Q

    /// The name as space-separated UTF-8 encoded words, B or Q, whichever is shorter.
    static func encodedWords(_ name: String) -> String {
        let b = words(name, encoding: "B")
        let q = words(name, encoding: "Q")
        let bLen = b.reduce(0) { $0 + $1.utf8.count }
        let qLen = q.reduce(0) { $0 + $1.utf8.count }
        return (qLen <= bLen ? q : b).joined(separator: " ")
    }

    /// Q bytes allowed literally in a phrase (RFC 2047 5(3)).
    private static func qLiteral(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "!"), UInt8(ascii: "*"),
            UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "/"):
            return true
        default:
            return false
        }
    }

    private static func encodedLength(_ bytes: Int, q: [UInt8]?) -> Int {
        if let q {
            return q.reduce(0) { $0 + ($1 == 0x20 || qLiteral($1) ? 1 : 3) }
        }
        return (bytes + 2) / 3 * 4
    }

    /// Split into units that never cut a character (grapheme cluster), falling back to
    /// Unicode scalars only for a cluster too long for one word.
    private static func words(_ name: String, encoding: String) -> [String] {
        let isQ = encoding == "Q"
        let budget = maxWord - overhead
        var words: [String] = []
        var current: [UInt8] = []

        func cost(_ bytes: [UInt8]) -> Int {
            isQ ? encodedLength(bytes.count, q: bytes) : encodedLength(bytes.count, q: nil)
        }
        func emit() {
            guard !current.isEmpty else { return }
            words.append("=?UTF-8?\(encoding)?" + encode(current, q: isQ) + "?=")
            current = []
        }
        func add(_ unit: [UInt8]) {
            if cost(current + unit) > budget { emit() }
            current += unit
        }

        for ch in name {
            let bytes = Array(String(ch).utf8)
            if cost(bytes) <= budget {
                add(bytes)
            } else {
                for s in ch.unicodeScalars { add(Array(String(s).utf8)) }
            }
        }
        emit()
        return words
    }

    /// B or Q payload of an encoded word (Q with the phrase-safe literals, so it is
    /// valid in every header context).
    static func encode(_ bytes: [UInt8], q: Bool) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        if q {
            for b in bytes {
                if b == 0x20 {
                    out.append(UInt8(ascii: "_"))
                } else if qLiteral(b) {
                    out.append(b)
                } else {
                    out += [UInt8(ascii: "="), hex[Int(b >> 4)], hex[Int(b & 15)]]
                }
            }
        } else {
            let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
            var i = 0
            while i < bytes.count {
                let n = min(3, bytes.count - i)
                let v = UInt32(bytes[i]) << 16 | (n > 1 ? UInt32(bytes[i + 1]) << 8 : 0) | (n > 2 ? UInt32(bytes[i + 2]) : 0)
                out.append(alphabet[Int(v >> 18 & 63)])
                out.append(alphabet[Int(v >> 12 & 63)])
                out.append(n > 1 ? alphabet[Int(v >> 6 & 63)] : UInt8(ascii: "="))
                out.append(n > 2 ? alphabet[Int(v & 63)] : UInt8(ascii: "="))
                i += 3
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: - Folding

    /// Fold a header value so lines stay ≤ 78 bytes counting "Name: ", breaking only at
    /// whitespace outside quoted strings; each break replaces one whitespace character with
    /// "\n\t" (Postfix wants LF from milters). Existing folds are unfolded first, stray
    /// CR/LF become spaces. A value with no foldable point is left long.
    public static func fold(name: String, value: String) -> String {
        let limit = 78
        var u = Array(HeaderDecoder.unfold(value).utf8)
        for i in u.indices where u[i] == 0x0D || u[i] == 0x0A { u[i] = 0x20 }

        // Split into (whitespace run, word) pairs; quoted strings stay inside words.
        var pieces: [(ws: ArraySlice<UInt8>, word: ArraySlice<UInt8>)] = []
        var i = 0
        while i < u.count {
            let wsStart = i
            while i < u.count, u[i] == 0x20 || u[i] == 0x09 { i += 1 }
            let wordStart = i
            var inQuote = false
            while i < u.count {
                let b = u[i]
                if inQuote {
                    if b == UInt8(ascii: "\\") {
                        i += 2
                        continue
                    }
                    if b == UInt8(ascii: "\"") { inQuote = false }
                } else {
                    if b == 0x20 || b == 0x09 { break }
                    if b == UInt8(ascii: "\"") { inQuote = true }
                }
                i += 1
            }
            i = min(i, u.count)
            pieces.append((u[wsStart..<wordStart], u[wordStart..<i]))
        }

        var out: [UInt8] = []
        out.reserveCapacity(u.count + u.count / 30 + 4)
        var lineLen = name.utf8.count + 2
        var lineHasWord = false
        for (ws, word) in pieces {
            if lineHasWord, !ws.isEmpty, !word.isEmpty, lineLen + ws.count + word.count > limit {
                out += ws.dropLast()
                out += [0x0A, 0x09]
                out += word
                lineLen = 1 + word.count
            } else {
                out += ws
                out += word
                lineLen += ws.count + word.count
                if !word.isEmpty { lineHasWord = true }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
