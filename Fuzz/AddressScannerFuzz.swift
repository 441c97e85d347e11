// libFuzzer target: AddressScanner (find and rewrite a sensitive address in a raw
// header value, also VERP-encoded as user=host in a bounce address). Built by scripts/fuzz together with Sources/MailHeaders/*.swift.
//
// The input is a raw header value, with two escapes so the fuzzer reaches the
// interesting shapes quickly: 0x01 k inserts staff form k raw; 0x02 k inserts it
// inside an encoded word (charset, B or Q chosen by k). Properties checked:
//  (a) after a rewrite, the scanner finds no sensitive address;
//  (b) every other decoded character is unchanged: the decoded view of the
//      rewritten value is the original's with each found span replaced, line
//      breaks (folds) aside (not checked around some hostile text, see below);
//  and a value with no encoded word keeps every byte outside the spans.
//  Also: no crash, no hang, and a value with nothing found is never rewritten.

private let scanner = AddressScanner()
private let replacement = Array("sales@example.com".utf8)
private let verpReplacement = Array("sales=example.com".utf8)

private let forms = [
    "zhangsan@example.com", "ZhangSan@Example.COM", "\"zhangsan\"@example.com", "zhangsan+tag@example.com",
    "zhangsan@\r\n example.com", "zhangsan\n\t@example.com", "<20261203101010.abcd%zhangsan@example.com>",
    "x=zhangsan@example.com", "a+zhangsan@example.com", "zhangsan@mx.example.com", "\"zhangsan\"+x@example.com",
    "回复：张三 <zhangsan@example.com> 的报价", "zhangsan @ example.com.", "addr=zhangsan@example.com; keydata=x",
    "bounce+zhangsan=example.com@lists.test",
]
private let charsets = ["UTF-8", "GB18030", "GBK", "ISO-8859-1", "utf-8*zh"]

private func isStaff(_ address: String) -> Bool {
    address == "zhangsan@example.com" || (address.hasPrefix("zhangsan@") && address.hasSuffix(".example.com"))
}

private func header(from data: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < data.count {
        let b = data[i]
        if b == 0x01 || b == 0x02, i + 1 < data.count {
            let k = Int(data[i + 1])
            let form = forms[k % forms.count]
            if b == 0x01 {
                out += Array(form.utf8)
            } else {
                let charset = charsets[(k / 2) % charsets.count]
                let bytes = Charset.encode(form, label: charset) ?? Array(form.utf8)
                let label = Charset.encode(form, label: charset) == nil ? "UTF-8" : charset
                let q = k % 2 == 1
                out += Array("=?\(label)?\(q ? "Q" : "B")?\(HeaderEncoder.encode(bytes, q: q))?=".utf8)
            }
            i += 2
        } else {
            out.append(b)
            i += 1
        }
    }
    return out
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let raw = header(from: Array(UnsafeBufferPointer(start: data, count: size)))
    let found = scanner.occurrences(in: raw, where: isStaff)
    guard let out = scanner.rewriting(raw, { isStaff($0) ? "sales@example.com" : nil }) else {
        check(found.isEmpty, "found \(found) but nothing rewritten in \(debug(raw))")
        return 0
    }
    check(!found.isEmpty, "rewritten without an occurrence: \(debug(raw))")

    // (a)
    let left = scanner.occurrences(in: out, where: isStaff)
    check(left.isEmpty, "left \(left.map(\.address)) in \(debug(out)) from \(debug(raw))")
    check(!scanner.holdsAddress(out, where: isStaff), "a word-by-word reader sees an address in \(debug(out)) from \(debug(raw))")

    // (b), except for two kinds of hostile text around a replaced address:
    // an undecodable encoded word holding 8-bit garbage (no text shows those
    // bytes as they were once changed), and raw text holding "=?" that is no
    // encoded word (with the blanks around "@" gone it may become one).
    let view = HeaderView(raw)
    let ambiguous = view.segments.contains { segment in
        guard case .raw = segment.kind, found.contains(where: { $0.range.overlaps(segment.view) }) else { return false }
        if segment.undecodable != nil { return String(validating: raw[segment.source], as: UTF8.self) == nil }
        return EncodedWords.containsMarker(Array(raw[segment.source]))
    }
    // And where encoded words read differently joined and word by word: the
    // rewrite serves both readings, (b) is about the joined one.
    if ambiguous || view.ambiguous { return 0 }
    let before = scanner.decodedView(raw)
    var expected: [UInt8] = []
    var pos = 0
    for occurrence in found {
        check(occurrence.range.lowerBound >= pos && occurrence.range.upperBound <= before.count, "bad range \(occurrence)")
        expected += before[pos..<occurrence.range.lowerBound]
        expected += occurrence.isVERP ? verpReplacement : replacement
        pos = occurrence.range.upperBound
    }
    expected += before[pos...]
    // The rewriter scans its own result again, so an address that only
    // shows once another is replaced goes too (a list's bounce address
    // `bounce+zhangsan=example.com@` whose domain was a staff address in an
    // encoded word): the expected text is replaced to the same fixpoint.
    // That reads `expected` as a raw value, which models the rewriter only
    // where the decoded text forms no encoded word the raw value did not
    // hold (an undecodable word shown as written is in both). Where it does
    // (`=?GBK?Q?…?=` whose `?` inside belonged to a word now decoded: the
    // fuzzer found two such), the scanner reads other text than the rewriter
    // rescanned, and the model cannot say what the rewrite should read as.
    for case .word(let word) in EncodedWords.pieces(expected)
    where !occurs(Array(expected[word.range]), in: raw) {
        return 0
    }
    for _ in 0..<8 {
        let more = scanner.occurrences(in: expected, where: isStaff)
        if more.isEmpty { break }
        var next: [UInt8] = []
        var at = 0
        for occurrence in more where occurrence.range.lowerBound >= at {
            next += expected[at..<occurrence.range.lowerBound]
            next += occurrence.isVERP ? verpReplacement : replacement
            at = occurrence.range.upperBound
        }
        expected = next + expected[at...]
    }
    if !EncodedWords.containsMarker(raw) {
        check(out == expected, "raw bytes changed outside the spans: \(debug(raw)) → \(debug(out))")
    }
    // Line breaks in a header are folds, which readers drop (a rewrite may drop
    // them too where raw white space has to become an encoded word): compare without.
    let after = scanner.decodedView(out).filter { $0 != 0x0D && $0 != 0x0A }
    expected.removeAll { $0 == 0x0D || $0 == 0x0A }
    check(after == expected, "decoded \(debug(after)) expected \(debug(expected)) from \(debug(raw)) → \(debug(out))")
    return 0
}

/// Whether `needle` occurs in `haystack` (a few words in a value of a few KB).
private func occurs(_ needle: [UInt8], in haystack: [UInt8]) -> Bool {
    guard needle.count <= haystack.count else { return false }
    return (0...(haystack.count - needle.count)).contains { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
}

private func debug(_ bytes: [UInt8]) -> String {
    String(reflecting: String(decoding: bytes, as: UTF8.self)) + " " + bytes.prefix(400).map { String($0, radix: 16) }.joined(separator: " ")
}

/// A failed property: fatalError keeps its message in -O builds (precondition's is dropped).
private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
