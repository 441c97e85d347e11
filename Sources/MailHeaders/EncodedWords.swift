// RFC 2047 encoded-word decoding, lenient the way real mail needs it:
// encoded words are found anywhere (also glued to text or inside quoted strings),
// whitespace between two encoded words disappears, adjacent words in the same
// charset are decoded together (clients split multibyte characters across words),
// and anything undecodable is kept as its literal text.

enum EncodedWords {
    /// One `=?charset?enc?text?=` found in a byte string.
    struct Word {
        var range: Range<Int>  // whole encoded word, in the scanned bytes
        var charset: String  // label as written (may carry an RFC 2231 "*lang")
        var bytes: [UInt8]?  // B/Q-decoded payload; nil when the payload is malformed
    }

    /// Decode every encoded word in `text`. A word whose charset label is
    /// unknown is read as UTF-8 when it is valid UTF-8, else as `fallback`;
    /// without a fallback it stays as written.
    static func decode(_ text: String, fallback: String? = nil) -> String {
        let u = Array(text.utf8)
        // Fast path: no "=?" at all.
        guard containsMarker(u) else { return text }
        return decode(bytes: u, fallback: fallback)
    }

    static func containsMarker(_ u: [UInt8]) -> Bool {
        var i = 0
        while i + 1 < u.count {
            if u[i] == UInt8(ascii: "="), u[i + 1] == UInt8(ascii: "?") { return true }
            i += 1
        }
        return false
    }

    /// A byte string cut into literal ranges and encoded words, in order.
    enum Piece {
        case literal(Range<Int>)
        case word(Word)
    }

    static func pieces(_ u: [UInt8]) -> [Piece] {
        var pieces: [Piece] = []
        var literalStart = 0
        var i = 0
        while i + 1 < u.count {
            if u[i] == UInt8(ascii: "="), u[i + 1] == UInt8(ascii: "?"), let w = parseWord(u, at: i) {
                if literalStart < i { pieces.append(.literal(literalStart..<i)) }
                pieces.append(.word(w))
                i = w.range.upperBound
                literalStart = i
            } else {
                i += 1
            }
        }
        if literalStart < u.count { pieces.append(.literal(literalStart..<u.count)) }
        return pieces
    }

    static func decode(bytes u: [UInt8], fallback: String? = nil) -> String {
        let pieces = pieces(u)

        // Drop whitespace-only literals between two encoded words, unless one of them
        // is undecodable (then both stay verbatim, with their whitespace).
        func decodable(_ p: Piece) -> Bool {
            if case .word(let w) = p { return w.bytes != nil && (fallback != nil || Charset.isKnown(w.charset)) }
            return false
        }
        var kept: [Piece] = []
        kept.reserveCapacity(pieces.count)
        for (k, p) in pieces.enumerated() {
            if case .literal(let r) = p, k > 0, k + 1 < pieces.count,
                decodable(pieces[k - 1]), decodable(pieces[k + 1]),
                u[r].allSatisfy(isFWS)
            {
                continue
            }
            kept.append(p)
        }

        var out = ""
        out.reserveCapacity(u.count)
        var k = 0
        while k < kept.count {
            switch kept[k] {
            case .literal(let r):
                out += String(decoding: u[r], as: UTF8.self)
                k += 1
            case .word(let first):
                // Run of consecutive words with the same charset.
                var run = [first]
                var j = k + 1
                while j < kept.count, case .word(let w) = kept[j],
                    sameCharset(w.charset, first.charset)
                {
                    run.append(w)
                    j += 1
                }
                out += decodeRun(run, source: u, fallback: fallback)
                k = j
            }
        }
        return out
    }

    private static func sameCharset(_ a: String, _ b: String) -> Bool {
        a == b
            || a.lowercased().split(separator: "*", maxSplits: 1).first
                == b.lowercased().split(separator: "*", maxSplits: 1).first
    }

    /// Decode a run of same-charset words, jointly if possible, else one by one.
    private static func decodeRun(_ run: [Word], source u: [UInt8], fallback: String?) -> String {
        if run.count > 1, run.allSatisfy({ $0.bytes != nil }) {
            let joined = run.flatMap { $0.bytes! }
            if let s = decode(joined, label: run[0].charset, fallback: fallback) { return s }
        }
        var out = ""
        var k = 0
        while k < run.count {
            // Try to glue a word whose last character was split into the next one.
            if let bytes = run[k].bytes, let s = decode(bytes, label: run[k].charset, fallback: fallback) {
                out += s
                k += 1
            } else if k + 1 < run.count, let a = run[k].bytes, let b = run[k + 1].bytes,
                let s = decode(a + b, label: run[k].charset, fallback: fallback)
            {
                out += s
                k += 2
            } else {
                out += String(decoding: u[run[k].range], as: UTF8.self)
                k += 1
            }
        }
        return out
    }

    /// A word's bytes in its charset; for a label nobody knows, UTF-8 when
    /// valid, else the fallback charset (nil without one).
    private static func decode(_ bytes: [UInt8], label: String, fallback: String?) -> String? {
        guard let fallback, !Charset.isKnown(label) else { return Charset.decode(bytes, label: label) }
        return Charset.validUTF8(bytes) ?? Charset.decode(bytes, label: fallback) ?? Charset.latin1(bytes)
    }

    /// Parse `=?charset?B|Q?text?=` at `start`; nil if it is not a well-formed encoded word
    /// (payload errors and unknown charsets still parse; they fail at decoding).
    static func parseWord(_ u: [UInt8], at start: Int) -> Word? {
        let q = UInt8(ascii: "?")
        var i = start + 2
        let csStart = i
        // Charset: up to '?', no whitespace or specials that never appear in labels.
        while i < u.count, u[i] != q {
            let b = u[i]
            if isFWS(b) || b == UInt8(ascii: "=") || b == UInt8(ascii: "\"") || b < 0x20 || b >= 0x7F { return nil }
            if i - csStart > 64 { return nil }
            i += 1
        }
        guard i < u.count, i > csStart else { return nil }
        let charset = String(decoding: u[csStart..<i], as: UTF8.self)
        i += 1
        guard i + 1 < u.count, u[i + 1] == q else { return nil }
        let enc = u[i] | 0x20  // lowercase
        guard enc == UInt8(ascii: "b") || enc == UInt8(ascii: "q") else { return nil }
        i += 2
        let textStart = i
        while i < u.count, u[i] != q {
            if isFWS(u[i]) { return nil }
            i += 1
        }
        guard i + 1 < u.count, u[i + 1] == UInt8(ascii: "=") else { return nil }
        let payload = u[textStart..<i]
        let bytes = enc == UInt8(ascii: "b") ? base64(payload) : quotedPrintable(payload)
        return Word(range: start..<(i + 2), charset: charset, bytes: bytes)
    }

    /// RFC 2047 "Q": '_' is space, =XX is a byte; a stray '=' is kept.
    static func quotedPrintable(_ s: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = s.startIndex
        while i < s.endIndex {
            let b = s[i]
            if b == UInt8(ascii: "_") {
                out.append(0x20)
                i += 1
            } else if b == UInt8(ascii: "="), i + 2 < s.endIndex,
                let h = hexValue(s[i + 1]), let l = hexValue(s[i + 2])
            {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(b)
                i += 1
            }
        }
        return out
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Base64 with optional padding; '=' ends a quantum (some clients concatenate
    /// padded chunks). nil on characters outside the alphabet or a lone trailing sextet.
    static func base64(_ s: ArraySlice<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(s.count * 3 / 4)
        var acc: UInt32 = 0
        var n = 0
        func flush() -> Bool {
            switch n {
            case 0: break
            case 1: return false
            case 2: out.append(UInt8(truncatingIfNeeded: acc >> 4))
            case 3:
                out.append(UInt8(truncatingIfNeeded: acc >> 10))
                out.append(UInt8(truncatingIfNeeded: acc >> 2))
            default: break
            }
            acc = 0
            n = 0
            return true
        }
        for b in s {
            let v: UInt32
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(b - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(b - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(b - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            case UInt8(ascii: "="):
                if !flush() { return nil }
                continue
            default:
                return nil
            }
            acc = acc << 6 | v
            n += 1
            if n == 4 {
                out.append(UInt8(truncatingIfNeeded: acc >> 16))
                out.append(UInt8(truncatingIfNeeded: acc >> 8))
                out.append(UInt8(truncatingIfNeeded: acc))
                acc = 0
                n = 0
            }
        }
        if !flush() { return nil }
        return out
    }
}
