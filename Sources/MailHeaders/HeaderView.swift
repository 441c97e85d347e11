// A raw header value as a reader sees it (encoded words decoded), with the
// way back to the bytes, so that a change to the text touches only the bytes
// that carried it.

/// The decoded view of a raw header value, built the way `EncodedWords`
/// decodes (words found anywhere, white space between two decodable words
/// dropped), and split into segments that each map to their source bytes.
struct HeaderView {
    struct Segment {
        enum Kind {
            /// Raw bytes, shown as they are (8-bit included).
            case raw
            /// One or more adjacent encoded words decoded together (a client
            /// split a character between them), shown as UTF-8.
            case words(charset: String, q: Bool)
        }
        var kind: Kind
        var source: Range<Int>  // bytes of the raw value
        var view: Range<Int>  // bytes of `HeaderView.bytes`; empty for dropped white space
        var undecodable: String?  // charset of an encoded word shown as written
    }

    let raw: [UInt8]
    /// Some words were joined though a later one decodes alone: a reader
    /// that decodes word by word sees other text (`wordByWord`).
    private(set) var ambiguous = false
    private(set) var bytes: [UInt8] = []
    private(set) var segments: [Segment] = []

    /// At most this many words are tried together to decode a split character.
    private static let maxGroup = 4

    /// `wordByWord`: join words only where the later one cannot decode on its
    /// own. Readers differ: most join adjacent words of one charset (a client
    /// cut a character in two), some decode each word alone; where a word
    /// decodes both ways (a GBK trail byte is a letter), both readings count.
    init(_ raw: [UInt8], wordByWord: Bool = false) {
        self.raw = raw
        guard EncodedWords.containsMarker(raw) else {
            bytes = raw
            segments = [Segment(kind: .raw, source: 0..<raw.count, view: 0..<raw.count)]
            return
        }
        let pieces = EncodedWords.pieces(raw)

        // Items: raw ranges and decoded groups of words, in order.
        enum Item { case literal(Range<Int>, String?), group(Range<Int>, String, String, Bool) }
        var items: [Item] = []
        let words: [EncodedWords.Word?] = pieces.map {
            if case .word(let w) = $0 { return w } else { return nil }
        }
        var k = 0
        while k < pieces.count {
            guard case .word(let first) = pieces[k], let group = Self.group(words, from: k, raw: raw, wordByWord: wordByWord) else {
                switch pieces[k] {
                case .literal(let r): items.append(.literal(r, nil))
                case .word(let w): items.append(.literal(w.range, w.charset))  // undecodable: shown as written
                }
                k += 1
                continue
            }
            let q = raw[first.range.lowerBound + 2 + first.charset.utf8.count + 1] | 0x20 == UInt8(ascii: "q")
            items.append(.group(first.range.lowerBound..<group.end, group.text, first.charset, q))
            if group.ambiguous { ambiguous = true }
            k = group.next
        }

        for (n, item) in items.enumerated() {
            switch item {
            case .literal(let r, let undecodable):
                var dropped = false
                if n > 0, n + 1 < items.count, case .group = items[n - 1], case .group = items[n + 1],
                    raw[r].allSatisfy(isFWS)
                {
                    dropped = true
                }
                let start = bytes.count
                if !dropped { bytes += raw[r] }
                segments.append(Segment(kind: .raw, source: r, view: start..<bytes.count, undecodable: undecodable))
            case .group(let r, let text, let charset, let q):
                let start = bytes.count
                bytes += text.utf8
                segments.append(Segment(kind: .words(charset: charset, q: q), source: r, view: start..<bytes.count))
            }
        }
    }

    /// The smallest run of words from piece `k` (separated only by white
    /// space, same charset) that decodes; nil when none does.
    private static func group(
        _ words: [EncodedWords.Word?], from k: Int, raw: [UInt8], wordByWord: Bool
    )
        -> (text: String, end: Int, next: Int, ambiguous: Bool)?
    {
        guard let first = words[k], first.bytes != nil, Charset.isKnown(first.charset) else { return nil }
        var payload: [UInt8] = []
        var j = k
        var count = 0
        var ambiguous = false
        while j < words.count, count < maxGroup {
            guard let w = words[j], let b = w.bytes, sameCharset(w.charset, first.charset) else { return nil }
            payload += b
            count += 1
            if let text = Charset.decode(payload, label: first.charset) {
                return (text, w.range.upperBound, j + 1, ambiguous)
            }
            // The next word, past white space only.
            var n = j + 1
            if n < words.count, words[n] == nil {
                guard n + 1 < words.count, let next = words[n + 1],
                    raw[w.range.upperBound..<next.range.lowerBound].allSatisfy(isFWS)
                else { return nil }
                n += 1
            }
            if n < words.count, let next = words[n], let b = next.bytes, Charset.decode(b, label: next.charset) != nil {
                if wordByWord { return nil }
                ambiguous = true
            }
            j = n
        }
        return nil
    }

    private static func sameCharset(_ a: String, _ b: String) -> Bool {
        a.lowercased().split(separator: "*", maxSplits: 1).first == b.lowercased().split(separator: "*", maxSplits: 1).first
    }

    // MARK: Rewriting

    /// The raw value with each view range replaced by its bytes (ranges sorted,
    /// not overlapping). Raw segments change only in the replaced bytes; a
    /// group of words that held a replaced range is re-encoded; everything
    /// else is copied.
    func replacing(_ replacements: [(range: Range<Int>, bytes: [UInt8])]) -> [UInt8] {
        // What each segment becomes; white space between two words is decided
        // last, when it is known what stands on either side of it.
        enum Piece { case text([UInt8]), words([UInt8]), gap([UInt8]) }
        var pieces: [Piece] = []
        pieces.reserveCapacity(segments.count)
        var j = 0
        for (n, segment) in segments.enumerated() {
            if segment.view.isEmpty {
                pieces.append(.gap(Array(raw[segment.source])))
                continue
            }
            while j < replacements.count, replacements[j].range.upperBound <= segment.view.lowerBound { j += 1 }
            let touched = j < replacements.count && replacements[j].range.lowerBound < segment.view.upperBound
            guard touched else {
                if case .words = segment.kind {
                    pieces.append(.words(Array(raw[segment.source])))
                } else {
                    pieces.append(.text(Array(raw[segment.source])))
                }
                continue
            }
            var text: [UInt8] = []
            var r = j
            var p = segment.view.lowerBound
            while p < segment.view.upperBound {
                while r < replacements.count, replacements[r].range.upperBound <= p { r += 1 }
                if r < replacements.count, replacements[r].range.lowerBound <= p {
                    if replacements[r].range.lowerBound == p { text += replacements[r].bytes }
                    p = min(replacements[r].range.upperBound, segment.view.upperBound)
                    continue
                }
                text.append(bytes[p])
                p += 1
            }
            switch segment.kind {
            case .raw where segment.undecodable != nil:
                // An encoded word shown as written: changed, it might decode
                // and show something else. As a UTF-8 word of its text it
                // reads exactly as before (8-bit garbage cannot; it stays).
                if let shown = String(validating: text, as: UTF8.self) {
                    pieces.append(.words(Self.encodedWords(shown, charset: "UTF-8", q: true)))
                } else {
                    pieces.append(.text(text))
                }
            case .raw:
                pieces.append(.text(text))
            case .words(let charset, let q):
                // Empty: the whole group was the tail of an address; it goes.
                if !text.isEmpty {
                    // Next to an undecodable word of the same charset, new
                    // bytes could complete its cut character and change what
                    // it shows: then UTF-8, which ASCII never completes.
                    let label = besideUndecodable(n, charset) ? "UTF-8" : charset
                    pieces.append(.words(Self.encodedWords(String(decoding: text, as: UTF8.self), charset: label, q: q)))
                }
            }
        }
        // White space between two encoded words is invisible, and readers
        // want some between words: a gap stays only where it still separates
        // two words; words that came to touch get a space; raw white space
        // left alone between two words (the rest of an address was cut out
        // around it) would vanish, so it becomes an encoded word itself.
        func nextIsWords(after k: Int) -> Bool {
            for n in (k + 1)..<pieces.count {
                switch pieces[n] {
                case .gap: continue
                case .text(let t) where t.isEmpty: continue
                case .words: return true
                case .text: return false
                }
            }
            return false
        }
        var out: [UInt8] = []
        out.reserveCapacity(raw.count + 32)
        var lastWasWords = false
        var gap: [UInt8]?
        for (k, piece) in pieces.enumerated() {
            switch piece {
            case .gap(let b):
                gap = (gap ?? []) + b
            case .words(let b):
                if lastWasWords { out += gap ?? [0x20] }
                out += b
                gap = nil
                lastWasWords = true
            case .text(let b) where b.isEmpty:
                continue
            case .text(let b) where lastWasWords && b.allSatisfy(isFWS) && nextIsWords(after: k):
                let space = String(decoding: b.filter { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self)
                out += (gap ?? [0x20]) + Self.encodedWords(space, charset: "UTF-8", q: true)
                gap = nil
            case .text(let b):
                out += b
                gap = nil
                lastWasWords = false
            }
        }
        return out
    }

    /// Is segment `n` next to an undecodable encoded word in `charset`
    /// (across white space only), which a decoder might try to join with it.
    private func besideUndecodable(_ n: Int, _ charset: String) -> Bool {
        for step in [-1, 1] {
            var k = n + step
            while k >= 0, k < segments.count {
                let segment = segments[k]
                if let other = segment.undecodable {
                    if Self.sameCharset(other, charset) { return true }
                    break
                }
                guard segment.view.isEmpty || raw[segment.source].allSatisfy(isFWS) else { break }
                k += step
            }
        }
        return false
    }

    /// `text` as encoded words of at most 75 bytes, in `charset` when it can
    /// hold the text (keeping the label as written), else UTF-8. Words are
    /// cut between characters and separated by a fold (LF and a tab, as
    /// Postfix wants from milters), which readers drop.
    static func encodedWords(_ text: String, charset: String, q: Bool) -> [UInt8] {
        let label = Charset.encode(text, label: charset) != nil ? charset : "UTF-8"
        let prefix = Array("=?\(label)?\(q ? "Q" : "B")?".utf8)
        let budget = 75 - prefix.count - 2
        func payload(_ s: String) -> [UInt8] {
            Array(HeaderEncoder.encode(Charset.encode(s, label: label) ?? Array(s.utf8), q: q).utf8)
        }
        var words: [[UInt8]] = []
        var chunk = ""
        var encoded: [UInt8] = []
        for c in text {
            let longer = payload(chunk + String(c))
            if longer.count > budget, !chunk.isEmpty {
                words.append(encoded)
                chunk = String(c)
                encoded = payload(chunk)
            } else {
                chunk.append(c)
                encoded = longer
            }
        }
        if !chunk.isEmpty { words.append(encoded) }
        var out: [UInt8] = []
        for (n, w) in words.enumerated() {
            if n > 0 { out += [0x0A, 0x09] }
            out += prefix + w + Array("?=".utf8)
        }
        return out
    }
}
