// Finding an address in a header value however a client (or an attacker) hid
// it, and replacing it without touching anything else.
//
// Matching and rewriting share the same readings of the value (encoded words
// decoded as most clients do, and word by word as some do), so whatever the
// scanner can find, the rewriter can remove, and a test can use the scanner to
// prove nothing is left.

/// Scans raw header values (bytes as the MTA hands them: folded or not, raw
/// 8-bit, RFC 2047 encoded words) for addresses, in every shape readers still
/// recognise as that address:
///  - raw or inside encoded words (B or Q, any charset iconv knows), also
///    split across adjacent words or between a word and raw text;
///  - embedded after `%`, `=`, `+` or another atext symbol
///    (`id.abcd%user@host` as s-nail writes Message-IDs, `x=user@host`,
///    `a+user@host`), or inside a bounce
///    address as `user=host` (VERP, `bounce+user=host@lists.test`);
///  - a quoted local part (`"user"@host`), a `+extension`, whitespace or a
///    fold around `@`, any case.
///
/// Candidates are handed to the caller normalised: lower-cased, quotes
/// removed from the local part, the extension cut at the first delimiter,
/// no whitespace around `@`. The scanner knows nothing of mailboxes.
///
/// Rewriting replaces exactly the bytes of each occurrence. Raw text keeps
/// every other byte as it came (8-bit included: the fallback charset of a
/// non-UTF-8 header is never re-emitted). Encoded words that held an
/// occurrence are re-encoded (same charset and B/Q when possible, else
/// UTF-8); the other words keep their bytes. An undecodable encoded word
/// (shown as written) that held one becomes a UTF-8 word of its text, so it
/// still reads as written.
public struct AddressScanner: Sendable {
    /// One address found in a value.
    public struct Occurrence: Hashable, Sendable {
        /// The normalised address the matcher accepted.
        public var address: String
        /// Where it is in the decoded view (`decodedView`), quotes, extension
        /// and folds included: exactly what a rewrite replaces.
        public var range: Range<Int>
        /// Written as list servers put an address into a bounce address
        /// (VERP, `bounce+user=host@lists.test`): `user=host`. A rewrite
        /// writes the replacement the same way.
        public var isVERP = false
    }

    /// Bytes that start an address extension (`user+tag`). Postfix's
    /// `recipient_delimiter` may hold several.
    public let extensionDelimiters: [UInt8]

    public init(extensionDelimiters: String = "+") {
        self.extensionDelimiters = Array(extensionDelimiters.utf8.filter { $0 < 0x80 })
    }

    // MARK: Public interface

    /// Every occurrence of an address `isSensitive` accepts, in order.
    /// Ranges refer to `decodedView`, the reading most clients have; an
    /// address only a word-by-word reader would see is in `holdsAddress`.
    public func occurrences(in raw: [UInt8], where isSensitive: (String) -> Bool) -> [Occurrence] {
        guard Self.mayHoldAddress(raw) else { return [] }
        return scan(HeaderView(raw), isSensitive)
    }

    /// Does any reading of `raw` (encoded words joined, or each alone) show
    /// an address `isSensitive` accepts.
    public func holdsAddress(_ raw: [UInt8], where isSensitive: (String) -> Bool) -> Bool {
        guard Self.mayHoldAddress(raw) else { return false }
        let joined = HeaderView(raw)
        if !scan(joined, isSensitive).isEmpty { return true }
        return joined.ambiguous && !scan(HeaderView(raw, wordByWord: true), isSensitive).isEmpty
    }

    /// `raw` with each occurrence replaced by the address `replacement` returns
    /// for it (nil: not sensitive, left alone). nil when nothing changed.
    public func rewriting(_ raw: [UInt8], _ replacement: (String) -> String?) -> [UInt8]? {
        guard Self.mayHoldAddress(raw) else { return nil }
        var current = raw
        var changed = false
        // Rounds alternate the usual reading (words of one charset joined)
        // and the word-by-word one, until both find nothing. Usually that is
        // one round and a check; the others are for hostile input: an address
        // only word-by-word readers see, or an undecodable word holding 8-bit
        // garbage that decodes once changed and shows new text.
        var clean = 0
        var joined = HeaderView(current)
        for round in 0..<6 where clean < 2 {
            let view: HeaderView
            if round % 2 == 0 {
                view = joined
            } else if joined.ambiguous {
                view = HeaderView(current, wordByWord: true)
            } else {
                clean += 1  // word by word reads the same
                continue
            }
            var replacements: [String: String] = [:]
            let found = scan(view) { address in
                guard let new = replacement(address) else { return false }
                replacements[address] = new
                return true
            }
            guard !found.isEmpty else {
                clean += 1
                continue
            }
            clean = 0
            current = view.replacing(
                found.map { occurrence in
                    var bytes = Array(replacements[occurrence.address]!.utf8)
                    if occurrence.isVERP, let at = bytes.lastIndex(of: Self.at) { bytes[at] = Self.equals }
                    return (occurrence.range, bytes)
                })
            changed = true
            joined = HeaderView(current)
        }
        return changed ? current : nil
    }

    /// The value as the scanner reads it: encoded words decoded (to UTF-8),
    /// white space between two encoded words dropped, raw bytes as they are.
    /// `Occurrence.range` points into this.
    public func decodedView(_ raw: [UInt8]) -> [UInt8] {
        HeaderView(raw).bytes
    }

    /// An address normalised the way candidates are (nil if it is none):
    /// for matching mailboxes that a parser found against the same rules.
    public func normalize(_ address: String) -> String? {
        let u = Array(address.utf8)
        guard let at = u.lastIndex(of: UInt8(ascii: "@")) else { return nil }
        var local = u[..<at]
        var domain = u[(at + 1)...]
        while let f = local.first, isFWS(f) { local = local.dropFirst() }
        while let l = local.last, isFWS(l) { local = local.dropLast() }
        while let f = domain.first, isFWS(f) { domain = domain.dropFirst() }
        while let l = domain.last, isFWS(l) { domain = domain.dropLast() }
        return normalized(local: local, domain: domain)
    }

    /// Nothing to find without an "@" or an encoded word: most header values.
    public static func mayHoldAddress(_ raw: [UInt8]) -> Bool {
        raw.contains(UInt8(ascii: "@")) || EncodedWords.containsMarker(raw)
    }

    // MARK: Scanning the decoded view

    private static let equals = UInt8(ascii: "=")
    private static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\"), at = UInt8(ascii: "@")

    private func scan(_ view: HeaderView, _ isSensitive: (String) -> Bool) -> [Occurrence] {
        let v = view.bytes
        var found: [Occurrence] = []
        var i = 0
        while i < v.count {
            guard v[i] == Self.at else {
                i += 1
                continue
            }
            guard let (occurrence, end) = candidate(v, at: i, floor: found.last?.range.upperBound ?? 0, isSensitive)
            else {
                i += 1
                continue
            }
            found.append(occurrence)
            i = max(end, i + 1)
        }
        return found
    }

    /// The sensitive address around the "@" at `a`, if any, and where its
    /// domain ends. Local parts never reach back before `floor` (the end of
    /// the previous occurrence).
    private func candidate(
        _ v: [UInt8], at a: Int, floor: Int,
        _ isSensitive: (String) -> Bool
    ) -> (Occurrence, Int)? {
        // Domain: after optional white space or a fold, LDH labels.
        var ds = a + 1
        while ds < v.count, isFWS(v[ds]) { ds += 1 }
        var de = ds
        while de < v.count, Self.isDomainByte(v[de]) { de += 1 }
        while de > ds, v[de - 1] == UInt8(ascii: ".") || v[de - 1] == UInt8(ascii: "-") { de -= 1 }
        guard de > ds else { return nil }
        let domain = v[ds..<de]

        // Local part: before optional white space or a fold; atext, dots and
        // quoted strings (`"zhangsan"+tag`, `"zhang"."san"`).
        var le = a
        while le > floor, isFWS(v[le - 1]) { le -= 1 }
        var ls = le
        var quoted: [Range<Int>] = []
        while ls > floor {
            if Self.isLocalByte(v[ls - 1]) {
                ls -= 1
            } else if v[ls - 1] == Self.quote, ls == le || v[ls] == UInt8(ascii: ".") || extensionDelimiters.contains(v[ls]),
                let open = openingQuote(v, closingAt: ls - 1, floor: floor)
            {
                // A quoted string is part of the local part only where one may
                // stand: before "@", a dot or an extension. `"hi"zhangsan@` is
                // text before an address.
                quoted.append(open..<ls)
                ls = open
            } else {
                break
            }
        }
        while ls < le, v[ls] == UInt8(ascii: ".") { ls += 1 }
        guard ls < le else { return nil }
        // Where the address may begin: the token's start; after a byte that
        // glues an address to a prefix; after an 8-bit byte's possible ASCII
        // trail byte (GBK and Big5 trail bytes include letters). Never inside
        // a quoted string.
        var starts = [ls]
        if ls > 0, v[ls - 1] >= 0x80, ls + 1 < le, (0x40...0x7E).contains(v[ls]) { starts.append(ls + 1) }
        for p in ls..<le where Self.isGlue(v[p]) {
            if p + 1 < le { starts.append(p + 1) }
        }
        starts.sort()
        starts.removeAll { s in v[s] == UInt8(ascii: ".") || quoted.contains { $0.lowerBound < s && s < $0.upperBound } }
        for s in starts {
            guard let address = normalized(local: v[s..<le], domain: domain) else { continue }
            if isSensitive(address) { return (Occurrence(address: address, range: s..<de), de) }
        }
        // VERP: the address inside the local part, "@" written as "=", after
        // the list's own part and "+" (Mailman) or "-" (ezmlm).
        for e in ls..<le where v[e] == Self.equals {
            let inner = v[(e + 1)..<le]
            guard inner.count > 2, inner.contains(UInt8(ascii: ".")), inner.allSatisfy(Self.isDomainByte),
                inner.first != UInt8(ascii: "."), inner.last != UInt8(ascii: ".")
            else { continue }
            var verpStarts = starts
            for p in ls..<e where v[p] == UInt8(ascii: "-") { verpStarts.append(p + 1) }
            for s in verpStarts.sorted() where s < e {
                guard let address = normalized(local: v[s..<e], domain: inner) else { continue }
                if isSensitive(address) { return (Occurrence(address: address, range: s..<le, isVERP: true), de) }
            }
        }
        return nil
    }

    /// Where the quoted string that closes at `close` opens; nil when no
    /// opening quote is near (a local part is at most 64 characters; some
    /// slack for quoted-pairs) or an "@" comes first: a quoted string never
    /// reaches into the address before it, so what is found does not depend
    /// on what was found (or replaced) before.
    private func openingQuote(_ v: [UInt8], closingAt close: Int, floor: Int) -> Int? {
        var p = close - 1
        while p >= floor, close - p <= 130, v[p] != Self.at {
            if v[p] == Self.quote {
                var escapes = 0
                while p - escapes - 1 >= floor, v[p - escapes - 1] == Self.backslash { escapes += 1 }
                if escapes % 2 == 0 { return p }
            }
            p -= 1
        }
        return nil
    }

    /// `local@domain` lower-cased, quotes and quoted-pairs resolved, the
    /// extension cut off; nil when either part is empty.
    private func normalized(local: ArraySlice<UInt8>, domain: ArraySlice<UInt8>) -> String? {
        var l: [UInt8] = []
        l.reserveCapacity(local.count)
        var k = local.startIndex
        var inQuotes = false
        while k < local.endIndex {
            let b = local[k]
            if b == Self.quote {
                inQuotes.toggle()
            } else if b == Self.backslash, inQuotes, k + 1 < local.endIndex {
                k += 1
                l.append(local[k])
            } else {
                l.append(b)
            }
            k += 1
        }
        if let cut = l.firstIndex(where: { extensionDelimiters.contains($0) }) { l.removeSubrange(cut...) }
        guard !l.isEmpty, !domain.isEmpty else { return nil }
        let bytes = l + [Self.at] + Array(domain)
        if bytes.allSatisfy({ $0 < 0x80 }) {
            return String(decoding: bytes.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }, as: UTF8.self)
        }
        return String(decoding: bytes, as: UTF8.self).lowercased()
    }

    /// Symbols after which a reader sees an address begin, though they may
    /// stand in a local part: `%` (s-nail Message-IDs), `=`, `+`, and the
    /// rest of atext's symbols (`Q?zhangsan@…` in a broken encoded word).
    /// Not ".", "-" or "_": `li.zhangsan` is someone else.
    private static func isGlue(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"): return false
        default: return b < 0x80 && HeaderEncoder.isAtext(b) && !isDomainByte(b)
        }
    }

    /// RFC 5322 atext and ".", ASCII only: 8-bit text (a CJK subject glued to
    /// an address) ends a local part.
    private static func isLocalByte(_ b: UInt8) -> Bool {
        b < 0x80 && (HeaderEncoder.isAtext(b) || b == UInt8(ascii: "."))
    }

    private static func isDomainByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }
}
