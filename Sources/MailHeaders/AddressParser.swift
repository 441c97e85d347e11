// A total, linear-time RFC 5322 address-list parser, including the obsolete
// syntax real mail carries. It works on the value's UTF-8 bytes so every mailbox
// keeps its exact byte range (for byte-exact rewriting). CR and LF count as
// whitespace, which unfolds folded values without copying them.

struct AddressParser {
    enum Kind: UInt8 { case atom, quoted, comment, literal, special }

    struct Token {
        var kind: Kind
        var start: Int
        var end: Int
    }

    struct ParsedMailbox {
        var mailbox: Mailbox
        var range: Range<Int>  // byte range of `mailbox.source` in the value
    }

    enum ParsedItem {
        case mailbox(ParsedMailbox)
        case group(name: String, members: [ParsedMailbox])
    }

    let u: [UInt8]
    private(set) var tokens: [Token] = []
    /// Charset for encoded words whose label nobody knows (see `EncodedWords`).
    let fallbackCharset: String?

    init(_ value: String, fallbackCharset: String? = nil) {
        self.init(bytes: Array(value.utf8), fallbackCharset: fallbackCharset)
    }

    init(bytes: [UInt8], fallbackCharset: String? = nil) {
        u = bytes
        self.fallbackCharset = fallbackCharset
        tokens = Self.tokenize(u)
    }

    // MARK: - Tokens

    private static func isSpecial(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "@"), UInt8(ascii: ","),
            UInt8(ascii: ";"), UInt8(ascii: ":"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }

    /// Bytes that end an atom: whitespace, specials, and the openers of other tokens.
    private static func endsAtom(_ b: UInt8) -> Bool {
        isFWS(b) || isSpecial(b) || b == UInt8(ascii: "(") || b == UInt8(ascii: "\"")
            || b == UInt8(ascii: "[")
    }

    /// End of a syntactically complete encoded word at `i` (no decoding), or nil.
    /// Same syntax as `EncodedWords.parseWord`, so the tokenizer glues specials only
    /// into words the decoder reads as encoded words: a charset without whitespace,
    /// '=', '"', controls or 8-bit bytes, then "?B?" or "?Q?", then text without
    /// whitespace or '?', then "?=". Bounded so that scanning stays linear on hostile input.
    static func encodedWordEnd(_ u: [UInt8], at i: Int) -> Int? {
        let q = UInt8(ascii: "?")
        guard i + 1 < u.count, u[i] == UInt8(ascii: "="), u[i + 1] == q else { return nil }
        let limit = min(u.count, i + 512)
        var j = i + 2
        while j < limit, u[j] != q {  // charset
            let b = u[j]
            if isFWS(b) || b == UInt8(ascii: "=") || b == UInt8(ascii: "\"") || b < 0x20 || b >= 0x7F { return nil }
            if j - (i + 2) > 64 { return nil }
            j += 1
        }
        guard j > i + 2, j + 2 < limit, u[j + 2] == q else { return nil }
        let encoding = u[j + 1] | 0x20
        guard encoding == UInt8(ascii: "b") || encoding == UInt8(ascii: "q") else { return nil }
        j += 3
        while j < limit, u[j] != q {  // encoded text
            if isFWS(u[j]) { return nil }
            j += 1
        }
        return j < limit && j + 1 < u.count && u[j + 1] == UInt8(ascii: "=") ? j + 2 : nil
    }

    private static func tokenize(_ u: [UInt8]) -> [Token] {
        var tokens: [Token] = []
        tokens.reserveCapacity(u.count / 4)
        let n = u.count
        let backslash = UInt8(ascii: "\\")
        var i = 0
        while i < n {
            let b = u[i]
            if isFWS(b) {
                i += 1
                continue
            }
            switch b {
            case UInt8(ascii: "("):
                var depth = 1
                var j = i + 1
                while j < n && depth > 0 {
                    let c = u[j]
                    if c == backslash {
                        j += 2
                        continue
                    }
                    if c == UInt8(ascii: "(") { depth += 1 }
                    if c == UInt8(ascii: ")") { depth -= 1 }
                    j += 1
                }
                j = min(j, n)
                tokens.append(Token(kind: .comment, start: i, end: j))
                i = j
            case UInt8(ascii: "\""), UInt8(ascii: "["):
                let close = b == UInt8(ascii: "\"") ? b : UInt8(ascii: "]")
                var j = i + 1
                while j < n {
                    let c = u[j]
                    if c == backslash {
                        j += 2
                        continue
                    }
                    j += 1
                    if c == close { break }
                }
                j = min(j, n)
                tokens.append(Token(kind: b == close ? .quoted : .literal, start: i, end: j))
                i = j
            default:
                if isSpecial(b) {
                    tokens.append(Token(kind: .special, start: i, end: i + 1))
                    i += 1
                    continue
                }
                var j = i
                while j < n {
                    // An encoded word is one atom even if it holds specials ("=?utf-8?Q?a,b?=").
                    if u[j] == UInt8(ascii: "="), let e = encodedWordEnd(u, at: j) {
                        j = e
                        continue
                    }
                    if endsAtom(u[j]) { break }
                    j += 1
                }
                tokens.append(Token(kind: .atom, start: i, end: j))
                i = j
            }
        }
        return tokens
    }

    @inline(__always)
    private func isSpecial(_ t: Int, _ c: Unicode.Scalar) -> Bool {
        tokens[t].kind == .special && u[tokens[t].start] == UInt8(ascii: c)
    }

    private func isWord(_ t: Int) -> Bool {
        tokens[t].kind == .atom || tokens[t].kind == .quoted
    }

    // MARK: - Structure

    func parse() -> [ParsedItem] {
        var items: [ParsedItem] = []
        var segStart = 0
        var segHasAngleOrAt = false
        var group: (name: String, members: [ParsedMailbox])?
        var t = 0
        let count = tokens.count

        func finish(_ end: Int) {
            if let m = mailbox(segStart..<end) {
                if group != nil { group!.members.append(m) } else { items.append(.mailbox(m)) }
            }
        }

        while t < count {
            let tok = tokens[t]
            guard tok.kind == .special else {
                t += 1
                continue
            }
            switch u[tok.start] {
            case UInt8(ascii: "<"):
                segHasAngleOrAt = true
                // Jump to the matching '>' so commas in routes (<@a,@b:x@y>) don't split.
                // No '>' before the next '<': unterminated, let separators work.
                var k = t + 1
                while k < count {
                    if isSpecial(k, ">") {
                        t = k
                        break
                    }
                    if isSpecial(k, "<") { break }
                    k += 1
                }
            case UInt8(ascii: "@"):
                segHasAngleOrAt = true
            case UInt8(ascii: ","):
                finish(t)
                segStart = t + 1
                segHasAngleOrAt = false
            case UInt8(ascii: ";"):
                // Ends a group; outside a group it's a separator (Outlook users type "a@x; b@y").
                finish(t)
                if let g = group {
                    items.append(.group(name: g.name, members: g.members))
                    group = nil
                }
                segStart = t + 1
                segHasAngleOrAt = false
            case UInt8(ascii: ":"):
                if group == nil && !segHasAngleOrAt {
                    group = (phrase(segStart..<t) ?? "", [])
                    segStart = t + 1
                }
            default:
                break
            }
            t += 1
        }
        finish(count)
        if let g = group {
            items.append(.group(name: g.name, members: g.members))
        }
        return items
    }

    /// Build a mailbox from the tokens of one list element; nil if it holds no words.
    /// Plain loops, no closures or temporary arrays: this runs once per address.
    private func mailbox(_ seg: Range<Int>) -> ParsedMailbox? {
        var lt = -1  // first '<'
        var at = -1  // last '@' before any '<'
        var firstComment = -1
        var words = 0  // non-comment tokens
        for t in seg {
            let tok = tokens[t]
            if tok.kind == .comment {
                if firstComment < 0 { firstComment = t }
                continue
            }
            words += 1
            if tok.kind == .special, lt < 0 {
                if u[tok.start] == UInt8(ascii: "<") { lt = t }
                if u[tok.start] == UInt8(ascii: "@") { at = t }
            }
        }
        guard words > 0 else { return nil }

        var phraseRange = seg.lowerBound..<seg.lowerBound
        var addr = seg.lowerBound..<seg.lowerBound  // token range; comments inside are skipped

        if lt >= 0 {
            var gt = seg.upperBound
            for t in (lt + 1)..<seg.upperBound where isSpecial(t, ">") {
                gt = t
                break
            }
            phraseRange = seg.lowerBound..<lt
            addr = (lt + 1)..<gt
            // Obsolete route: <@a,@b:x@y>.
            if let f = nextWord(from: addr.lowerBound, before: addr.upperBound), isSpecial(f, "@") {
                for t in f..<addr.upperBound where isSpecial(t, ":") {
                    addr = (t + 1)..<addr.upperBound
                    break
                }
            }
            // <mailto:x@y>
            if let f = nextWord(from: addr.lowerBound, before: addr.upperBound), tokens[f].kind == .atom,
                let c = nextWord(from: f + 1, before: addr.upperBound), isSpecial(c, ":"),
                tokens[f].end - tokens[f].start == 6, text(f).lowercased() == "mailto"
            {
                addr = (c + 1)..<addr.upperBound
            }
        } else if at >= 0 {
            // Bare addr-spec, possibly after a phrase written without angle brackets.
            // Its parts touch (no whitespace; comments may sit in between: "z(c)@x").
            var first = at
            if let p = previousWord(before: at, from: seg.lowerBound), isWord(p), touching(p, at) {
                first = p
                // Dot-atoms: john.doe, "a".b
                while let dot = previousWord(before: first, from: seg.lowerBound), isSpecial(dot, "."),
                    let w = previousWord(before: dot, from: seg.lowerBound), isWord(w), touching(w, first)
                {
                    first = w
                }
            }
            var last = at
            while let n = nextWord(from: last + 1, before: seg.upperBound), touching(last, n),
                tokens[n].kind == .atom || tokens[n].kind == .literal || isSpecial(n, ".")
            {
                last = n
            }
            phraseRange = seg.lowerBound..<first
            addr = first..<(last + 1)
        } else if words == 1, let w = nextWord(from: seg.lowerBound, before: seg.upperBound), isWord(w) {
            addr = w..<(w + 1)  // "postmaster"
        } else {
            phraseRange = seg  // only a name; no address
        }

        var name = phrase(phraseRange)
        if name == nil, firstComment >= 0 {
            name = comment(firstComment)
        }
        var end = tokens[seg.upperBound - 1].end
        while end > tokens[seg.lowerBound].start, isFWS(u[end - 1]) { end -= 1 }  // unterminated token
        let range = tokens[seg.lowerBound].start..<end
        return ParsedMailbox(
            mailbox: Mailbox(displayName: name, address: joined(addr), source: string(range)),
            range: range)
    }

    /// First non-comment token in `from..<end`.
    private func nextWord(from: Int, before end: Int) -> Int? {
        var t = from
        while t < end {
            if tokens[t].kind != .comment { return t }
            t += 1
        }
        return nil
    }

    /// Last non-comment token in `start..<index`.
    private func previousWord(before index: Int, from start: Int) -> Int? {
        var t = index - 1
        while t >= start {
            if tokens[t].kind != .comment { return t }
            t -= 1
        }
        return nil
    }

    /// No whitespace anywhere from token `a` through token `b`.
    private func touching(_ a: Int, _ b: Int) -> Bool {
        var t = a
        while t < b {
            if tokens[t].end != tokens[t + 1].start { return false }
            t += 1
        }
        return true
    }

    /// The non-comment tokens of `r`, concatenated without whitespace.
    private func joined(_ r: Range<Int>) -> String {
        guard !r.isEmpty else { return "" }
        if touching(r.lowerBound, r.upperBound - 1),
            !r.contains(where: { tokens[$0].kind == .comment })
        {
            return string(tokens[r.lowerBound].start..<tokens[r.upperBound - 1].end)
        }
        var bytes: [UInt8] = []
        for t in r where tokens[t].kind != .comment {
            bytes += u[tokens[t].start..<tokens[t].end]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func string(_ r: Range<Int>) -> String {
        String(decoding: u[r], as: UTF8.self)
    }

    // MARK: - Text

    private func text(_ t: Int) -> String {
        String(decoding: u[tokens[t].start..<tokens[t].end], as: UTF8.self)
    }

    /// Inside of a quoted string or comment (closer dropped if present), quoted-pairs resolved.
    private func unescapedInner(_ t: Int, closer: UInt8) -> [UInt8] {
        let tok = tokens[t]
        var out: [UInt8] = []
        out.reserveCapacity(tok.end - tok.start)
        var i = tok.start + 1
        while i < tok.end {
            let c = u[i]
            if c == UInt8(ascii: "\\"), i + 1 < tok.end {
                out.append(u[i + 1])
                i += 2
            } else {
                if !(c == closer && i == tok.end - 1) { out.append(c) }
                i += 1
            }
        }
        return out
    }

    /// Decoded phrase of the non-comment tokens in `r`; nil if empty.
    func phrase(_ r: Range<Int>) -> String? {
        guard !r.isEmpty else { return nil }
        // Fast path: plain atoms and specials separated by single spaces read as written.
        var plain = true
        for t in r where tokens[t].kind == .comment || tokens[t].kind == .quoted {
            plain = false
            break
        }
        if plain {
            let bytes = u[tokens[r.lowerBound].start..<tokens[r.upperBound - 1].end]
            var previous: UInt8 = 0
            for b in bytes {
                if (isFWS(b) && (b != 0x20 || previous == 0x20))
                    || (b == UInt8(ascii: "?") && previous == UInt8(ascii: "="))
                {
                    plain = false
                    break
                }
                previous = b
            }
            // An unterminated literal can end in whitespace.
            if plain, let last = bytes.last, !isFWS(last) { return String(decoding: bytes, as: UTF8.self) }
        }
        var s: [UInt8] = []
        var prevEnd: Int?
        for t in r where tokens[t].kind != .comment {
            let tok = tokens[t]
            if let p = prevEnd, p != tok.start { s.append(0x20) }
            if tok.kind == .quoted {
                s.append(contentsOf: unescapedInner(t, closer: UInt8(ascii: "\"")))
            } else {
                s.append(contentsOf: u[tok.start..<tok.end])
            }
            prevEnd = tok.end
        }
        return Self.finishName(s, fallback: fallbackCharset)
    }

    private func comment(_ t: Int) -> String? {
        Self.finishName(unescapedInner(t, closer: UInt8(ascii: ")")), fallback: fallbackCharset)
    }

    /// RFC 2047-decode, then `collapsed`.
    static func finishName(_ s: [UInt8], fallback: String? = nil) -> String? {
        let decoded =
            EncodedWords.containsMarker(s)
            ? Array(EncodedWords.decode(bytes: s, fallback: fallback).utf8) : s
        return collapsed(decoded)
    }

    /// ASCII whitespace runs (SP, HT, CR, LF) → one space, trimmed; nil if empty.
    static func collapsed(_ decoded: [UInt8]) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(decoded.count)
        var pendingSpace = false
        for b in decoded {
            if isFWS(b) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(0x20) }
                pendingSpace = false
                out.append(b)
            }
        }
        return out.isEmpty ? nil : String(decoding: out, as: UTF8.self)
    }
}
