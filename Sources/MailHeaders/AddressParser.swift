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

    init(_ value: String) {
        u = Array(value.utf8)
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
    /// Bounded so that scanning stays linear on hostile input.
    static func encodedWordEnd(_ u: [UInt8], at i: Int) -> Int? {
        let q = UInt8(ascii: "?")
        guard i + 1 < u.count, u[i] == UInt8(ascii: "="), u[i + 1] == q else { return nil }
        let limit = min(u.count, i + 512)
        var j = i + 2
        var marks = 0  // '?' seen after "=?"
        while j < limit {
            let b = u[j]
            if isFWS(b) { return nil }
            if b == q {
                marks += 1
                if marks == 3 {
                    return j + 1 < u.count && u[j + 1] == UInt8(ascii: "=") ? j + 2 : nil
                }
                if marks == 2 && j - i < 5 { return nil }  // "=??x?" has no charset
            }
            j += 1
        }
        return nil
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

    private func isSpecial(_ t: Int, _ c: Character) -> Bool {
        tokens[t].kind == .special && u[tokens[t].start] == c.asciiValue!
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
    private func mailbox(_ seg: Range<Int>) -> ParsedMailbox? {
        guard seg.contains(where: { tokens[$0].kind != .comment }) else { return nil }
        var phraseRange = seg.lowerBound..<seg.lowerBound
        var addrTokens: [Int] = []

        if let lt = seg.first(where: { isSpecial($0, "<") }) {
            let gt = (lt + 1..<seg.upperBound).first(where: { isSpecial($0, ">") }) ?? seg.upperBound
            phraseRange = seg.lowerBound..<lt
            addrTokens = (lt + 1..<gt).filter { tokens[$0].kind != .comment }
            // Obsolete route: <@a,@b:x@y>.
            if let first = addrTokens.first, isSpecial(first, "@"),
               let colon = addrTokens.firstIndex(where: { isSpecial($0, ":") }) {
                addrTokens.removeFirst(colon + 1)
            }
            // <mailto:x@y>
            if addrTokens.count >= 2, tokens[addrTokens[0]].kind == .atom,
               text(addrTokens[0]).lowercased() == "mailto", isSpecial(addrTokens[1], ":") {
                addrTokens.removeFirst(2)
            }
        } else if let at = seg.last(where: { isSpecial($0, "@") }) {
            // Bare addr-spec, possibly after a phrase written without angle brackets.
            // Its parts touch (no whitespace; comments may sit in between: "z(c)@x").
            let parts = seg.filter { tokens[$0].kind != .comment }
            let atPos = parts.firstIndex(of: at)!
            func touching(_ a: Int, _ b: Int) -> Bool {
                (a..<b).allSatisfy { tokens[$0].end == tokens[$0 + 1].start }
            }
            var first = atPos
            if atPos > 0, isWord(parts[atPos - 1]), touching(parts[atPos - 1], at) {
                first = atPos - 1
                // Dot-atoms: john.doe, "a".b
                while first >= 2, isSpecial(parts[first - 1], "."), isWord(parts[first - 2]),
                      touching(parts[first - 2], parts[first]) {
                    first -= 2
                }
            }
            var last = atPos
            while last + 1 < parts.count, touching(parts[last], parts[last + 1]),
                  tokens[parts[last + 1]].kind == .atom || tokens[parts[last + 1]].kind == .literal
                    || isSpecial(parts[last + 1], ".") {
                last += 1
            }
            phraseRange = seg.lowerBound..<parts[first]
            addrTokens = Array(parts[first...last])
        } else {
            let words = seg.filter { tokens[$0].kind != .comment }
            if words.count == 1, isWord(words[0]) {
                addrTokens = words  // "postmaster"
            } else {
                phraseRange = seg  // only a name; no address
            }
        }

        var address = ""
        for t in addrTokens { address += text(t) }

        var name = phrase(phraseRange)
        if name == nil, let c = seg.first(where: { tokens[$0].kind == .comment }) {
            name = comment(c)
        }
        let range = tokens[seg.lowerBound].start..<tokens[seg.upperBound - 1].end
        let source = String(decoding: u[range], as: UTF8.self)
        return ParsedMailbox(
            mailbox: Mailbox(displayName: name, address: address, source: source), range: range)
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
        return Self.finishName(s)
    }

    private func comment(_ t: Int) -> String? {
        Self.finishName(unescapedInner(t, closer: UInt8(ascii: ")")))
    }

    /// RFC 2047-decode, then `collapsed`.
    static func finishName(_ s: [UInt8]) -> String? {
        let decoded = EncodedWords.containsMarker(s)
            ? Array(EncodedWords.decode(bytes: s).utf8) : s
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
