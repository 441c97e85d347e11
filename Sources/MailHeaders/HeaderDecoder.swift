// Reading header values as real mail clients write them.

public struct HeaderDecoder: Sendable {
    /// Charset for raw 8-bit header bytes that are not UTF-8.
    public var fallbackCharset: String

    public init(fallbackCharset: String = "GB18030") {
        self.fallbackCharset = fallbackCharset
    }

    /// Raw header bytes as they come from the MTA → text: valid UTF-8 as is (RFC 6532);
    /// else decoded from `fallbackCharset` via iconv; else Latin-1. Never fails.
    ///
    /// Raw 8-bit bytes inside an encoded word (`=?iso-8859-1?Q?Jos\xE9?=`, as some
    /// clients write them) belong to the charset the word declares, not to the
    /// fallback: they come out as `=E9`, for the word's own decoding.
    public func text(fromRaw bytes: [UInt8]) -> String {
        if let s = Charset.validUTF8(bytes) { return s }
        guard EncodedWords.containsMarker(bytes) else { return fallbackText(bytes[...]) }
        return EncodedWords.pieces(bytes).map { piece in
            switch piece {
            case .literal(let range): fallbackText(bytes[range])
            case .word(let word): Self.escapingEightBit(bytes[word.range])
            }
        }.joined()
    }

    private func fallbackText(_ bytes: ArraySlice<UInt8>) -> String {
        let bytes = Array(bytes)
        if let s = Charset.validUTF8(bytes) { return s }
        if let s = Charset.decode(bytes, label: fallbackCharset) { return s }
        return Charset.latin1(bytes)
    }

    /// An encoded word with its 8-bit bytes written as Q escapes (`=E9`); in a
    /// B word they are not base64, and the word stays undecodable as before.
    private static func escapingEightBit(_ word: ArraySlice<UInt8>) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(word.count + 8)
        for byte in word {
            if byte < 0x80 {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "="), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parse an address-list header value (To, Cc, From, Reply-To, …). Total: whatever
    /// can't be parsed is skipped or kept as is; the rest still comes out.
    public func addressList(_ value: String) -> AddressList {
        let items = AddressParser(value, fallbackCharset: fallbackCharset).parse().map { item -> AddressItem in
            switch item {
            case .mailbox(let m): return .mailbox(m.mailbox)
            case .group(let name, let members): return .group(Group(name: name, members: members.map(\.mailbox)))
            }
        }
        return AddressList(items: items)
    }

    /// RFC 2047 decoding of unstructured text (Subject). Unfolds first; undecodable
    /// encoded words are kept verbatim.
    public func unstructured(_ value: String) -> String {
        EncodedWords.decode(Self.unfold(value), fallback: fallbackCharset)
    }

    /// Rewrite an address-list value: each mailbox (group members included) for which
    /// `replacement` returns text gets its source text replaced by it; everything else
    /// is kept byte for byte. nil when nothing was replaced.
    public func rewritingMailboxes(in value: String, _ replacement: (Mailbox) -> String?) -> String? {
        rewritingMailboxes(inRaw: Array(value.utf8), replacement).map { String(decoding: $0, as: UTF8.self) }
    }

    /// `rewritingMailboxes(in:_:)` on the raw bytes of a value: every byte
    /// outside the replaced mailboxes is kept, 8-bit text in whatever charset
    /// included. In a value that is not UTF-8, each 8-bit byte reads as a
    /// letter while finding the structure (such bytes belong in names and
    /// comments), so display names handed to `replacement` are not meaningful
    /// there; addresses are. nil when nothing was replaced.
    public func rewritingMailboxes(inRaw raw: [UInt8], _ replacement: (Mailbox) -> String?) -> [UInt8]? {
        let structure = Charset.validUTF8(raw) != nil ? raw : raw.map { $0 >= 0x80 ? UInt8(ascii: "x") : $0 }
        // The same fallback as `addressList`, so `replacement` sees the names it reads.
        let parser = AddressParser(bytes: structure, fallbackCharset: fallbackCharset)
        var replacements: [(Range<Int>, String)] = []
        for item in parser.parse() {
            switch item {
            case .mailbox(let m):
                if let r = replacement(m.mailbox) { replacements.append((m.range, r)) }
            case .group(_, let members):
                for m in members {
                    if let r = replacement(m.mailbox) { replacements.append((m.range, r)) }
                }
            }
        }
        guard !replacements.isEmpty else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var pos = 0
        for (range, text) in replacements {
            out.append(contentsOf: raw[pos..<range.lowerBound])
            out.append(contentsOf: text.utf8)
            pos = range.upperBound
        }
        out.append(contentsOf: raw[pos...])
        return out
    }

    /// Remove CRLF/LF line breaks that precede whitespace (RFC 5322 unfolding).
    static func unfold(_ value: String) -> String {
        let u = Array(value.utf8)
        guard u.contains(0x0A) || u.contains(0x0D) else { return value }
        var out: [UInt8] = []
        out.reserveCapacity(u.count)
        var i = 0
        while i < u.count {
            let b = u[i]
            if b == 0x0D, i + 2 < u.count, u[i + 1] == 0x0A, u[i + 2] == 0x20 || u[i + 2] == 0x09 {
                i += 2
                continue
            }
            if b == 0x0A, i + 1 < u.count, u[i + 1] == 0x20 || u[i + 1] == 0x09 {
                i += 1
                continue
            }
            out.append(b)
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}
