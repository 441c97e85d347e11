import PropertyBased
import Testing

@testable import MailHeaders

/// Properties of scanning and rewriting, on headers built at random around
/// injected staff addresses in random shapes and random encodings:
///  (a) after a rewrite, the scanner finds no staff address;
///  (b) the decoded header is the decoded original with exactly the injected
///      spans replaced: every other character is unchanged.
@Suite struct AddressScannerPropertyTests {
    static let replacement = "sales@example.com"

    /// One generated header: its raw bytes, what it decodes to, and what it
    /// must decode to after the rewrite.
    struct Case: CustomStringConvertible {
        var raw: [UInt8]
        var decoded: String
        var expected: String
        /// Raw mode: the whole header is 8-bit bytes in this charset (no encoded words).
        var rawCharset: String?
        /// The injected addresses, normalised, in order.
        var injected: [String] = []
        var description: String {
            "raw \(String(reflecting: String(decoding: raw, as: UTF8.self))) \(raw.map { String($0, radix: 16) }.joined(separator: " ")) decoded \(String(reflecting: decoded)) charset \(rawCharset ?? "-")"
        }
    }

    /// A small deterministic generator (SplitMix64), so a failing seed replays.
    struct Dice {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func pick<T>(_ xs: [T]) -> T { xs[below(xs.count)] }
        mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    }

    static let textPieces = [
        "a", "Z", "9", " ", " ", "回复", "：", "张三", "é", "ü", "(", ")", "<", ">", ",", ";", ":", "!",
        "报价", "Ä", "-", "_", "\"", ".", "Re", "x%y", "a=b", "+", "ß",
    ]
    /// What may sit right before an address: nothing that extends a local part.
    static let before = [" ", "<", "(", ":", "：", "张", ", ", "\"", "[", "报价"]
    /// What may follow: nothing that extends a domain.
    static let after = [" ", ">", ")", ";", ",", "的报价", "。", ". ", "\"", "]"]
    static let glues = ["", "abcd%", "x=", "a+", "20261203101010.abcd%", "bounce-x%"]

    static func randomCase(_ dice: inout Dice) -> Case {
        func text(_ dice: inout Dice, _ n: Int) -> String {
            (0..<dice.below(n)).map { _ in dice.pick(textPieces) }.joined()
        }
        func randomCase(_ s: String, _ dice: inout Dice) -> String {
            String(s.map { c -> Character in dice.chance(40) ? Character(c.uppercased()) : c })
        }
        var decoded = text(&dice, 8)
        var expected = decoded
        var injected: [String] = []
        for _ in 0..<(1 + dice.below(3)) {
            let glue = dice.pick(glues)
            var local = randomCase("zhangsan", &dice)
            if glue.isEmpty, dice.chance(25) { local = "\"\(local)\"" }
            if dice.chance(30) { local += dice.pick(["+tag", "+x1", "+", "+a.b"]) }
            let domain = randomCase(dice.pick(["example.com", "example.com", "mx.example.com", "a.b.example.com"]), &dice)
            injected.append("zhangsan@" + domain.lowercased())
            if !local.hasPrefix("\""), dice.chance(15) {
                // VERP: a list server's bounce address carrying the address.
                let lead = dice.pick(before) + dice.pick(["bounce+", "list-", "x="])
                let tail = "@lists.test" + dice.pick(after) + text(&dice, 6)
                decoded += lead + local + "=" + domain + tail
                expected += lead + "sales=example.com" + tail
                continue
            }
            let span = local + dice.pick(["", "", "", "\r\n ", " ", "\r\n\t"]) + "@" + dice.pick(["", "", "", "\r\n ", " "]) + domain
            let lead = dice.pick(before) + glue
            let tail = dice.pick(after) + text(&dice, 6)
            decoded += lead + span + tail
            expected += lead + replacement + tail
        }

        // Mode 1 in 5: the whole header raw in an 8-bit charset, when it fits.
        if dice.chance(20) {
            let charset = dice.pick(["ISO-8859-1", "GB18030"])
            // Bytes that happen to be valid UTF-8 would be read as UTF-8: not this case.
            if let bytes = Charset.encode(decoded, label: charset), Charset.decode(bytes, label: charset) == decoded,
                bytes.allSatisfy({ $0 < 0x80 }) || String(validating: bytes, as: UTF8.self) == nil
            {
                return Case(raw: bytes, decoded: decoded, expected: expected, rawCharset: charset, injected: injected)
            }
        }

        // Otherwise: cut into chunks at random characters; each chunk raw
        // (UTF-8) or encoded words of a random charset and B or Q, sometimes
        // cut inside a character as clients do.
        let characters = Array(decoded)
        var chunks: [String] = []
        var i = 0
        while i < characters.count {
            let n = 1 + dice.below(12)
            chunks.append(String(characters[i..<min(characters.count, i + n)]))
            i += n
        }
        // A fold inside an encoded word is no fold: chunks with one stay raw.
        // Raw white space alone between two encoded words would vanish when
        // decoded: the chunk after it stays raw too.
        var encode = chunks.map { !$0.contains("\r\n") && dice.chance(60) }
        for k in chunks.indices where !encode[k] && chunks[k].allSatisfy(\.isWhitespace) && k + 1 < chunks.count {
            encode[k + 1] = false
        }
        var raw: [UInt8] = []
        var previousEncoded = false
        for (k, chunk) in chunks.enumerated() {
            if encode[k] {
                let charsets = ["UTF-8", "utf-8", "GB18030", "GBK", "ISO-8859-1"].filter { label in
                    Charset.encode(chunk, label: label).flatMap { Charset.decode($0, label: label) } == chunk
                }
                let charset = dice.pick(charsets)
                let bytes = Charset.encode(chunk, label: charset)!
                let q = dice.chance(50)
                // Split the payload at a random byte (possibly inside a character).
                let cut = bytes.count > 1 && dice.chance(30) ? 1 + dice.below(bytes.count - 1) : bytes.count
                var words: [[UInt8]] = [Array(bytes[..<cut])]
                if cut < bytes.count { words.append(Array(bytes[cut...])) }
                for w in words {
                    if previousEncoded { raw += Array(dice.pick([" ", "\r\n ", "\t"]).utf8) }
                    raw += Array("=?\(charset)?\(q ? "Q" : "B")?\(HeaderEncoder.encode(w, q: q))?=".utf8)
                    previousEncoded = true
                }
            } else {
                raw += Array(chunk.utf8)
                previousEncoded = false
            }
        }
        return Case(raw: raw, decoded: decoded, expected: expected, rawCharset: nil, injected: injected)
    }

    static func isStaff(_ address: String) -> Bool {
        address == "zhangsan@example.com" || (address.hasPrefix("zhangsan@") && address.hasSuffix(".example.com"))
    }

    /// Decoded as a reader does, with the module's RFC 2047 decoder (not the
    /// scanner's view); CRLF dropped since unfolding keeps the white space.
    static func read(_ raw: [UInt8], charset: String?) -> String {
        let decoder = HeaderDecoder(fallbackCharset: charset ?? "GB18030")
        return decoder.unstructured(decoder.text(fromRaw: raw)).replacingOccurrences("\r\n", "")
    }

    static let seeds = Gen<UInt64>.value(in: 0...UInt64.max)

    @Test func rewrittenHeadersHoldNoStaffAddressAndNothingElseChanges() async {
        let scanner = AddressScanner()
        await propertyCheck(count: 1500, input: Self.seeds) { seed in
            var dice = Dice(state: seed)
            let c = Self.randomCase(&dice)
            // The generator itself: the header reads as the text it was built from.
            #expect(Self.read(c.raw, charset: c.rawCharset) == c.decoded.replacingOccurrences("\r\n", ""), "\(c)")

            let out = scanner.rewriting(c.raw) { Self.isStaff($0) ? Self.replacement : nil }
            guard let out else {
                Issue.record("nothing rewritten in \(c)")
                return
            }
            // (a) nothing left for the scanner to find, whatever the form.
            let left = scanner.occurrences(in: out, where: Self.isStaff)
            #expect(left.isEmpty, "left \(left.map(\.address)) in \(String(decoding: out, as: UTF8.self)) from \(c)")
            #expect(!scanner.holdsAddress(out, where: Self.isStaff), "word by word: \(String(decoding: out, as: UTF8.self)) from \(c)")
            // (b) every other decoded character unchanged.
            let got = Self.read(out, charset: c.rawCharset)
            #expect(got == c.expected.replacingOccurrences("\r\n", ""), "from \(c) → \(String(reflecting: String(decoding: out, as: UTF8.self)))")
            #expect(!got.lowercased().contains("zhangsan"), "\(got)")
            // An 8-bit header: byte for byte the original with the spans replaced.
            if let charset = c.rawCharset {
                #expect(out == Charset.encode(c.expected, label: charset), "\(c) → \(out)")
            }
        }
    }

    @Test func everyInjectedAddressIsFoundOnce() async {
        let scanner = AddressScanner()
        await propertyCheck(count: 500, input: Self.seeds) { seed in
            var dice = Dice(state: seed)
            let c = Self.randomCase(&dice)
            #expect(scanner.occurrences(in: c.raw, where: Self.isStaff).map(\.address) == c.injected, "\(c)")
            #expect(scanner.rewriting(c.raw) { _ in nil } == nil, "\(c)")
        }
    }
}

extension String {
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
