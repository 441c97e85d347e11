// libFuzzer target: the RFC 2047 decoder (`unstructured`) and the encoder's round
// trip. Built by scripts/fuzz together with Sources/MailHeaders/*.swift.
//
// Properties checked on every input:
//  - decoding Subject-like text never crashes or hangs; text without "=?" and
//    without line breaks comes back unchanged;
//  - for the input taken as a display name, `HeaderEncoder.mailbox` (7-bit and
//    SMTPUTF8), folded, parses back to exactly one mailbox whose address is the
//    one written and whose display name is the name with ASCII whitespace runs
//    collapsed and trimmed (the module's round-trip tests define it so); the
//    7-bit form is pure ASCII.

private let decoder = HeaderDecoder()
private let address = "sales@example.com"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let text = decoder.text(fromRaw: bytes)

    let decoded = decoder.unstructured(text)
    if !text.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }), !containsMarker(Array(text.utf8)) {
        check(decoded == text, "text without encoded words changed: \(debug(text)) → \(debug(decoded))")
    }

    let expected = collapsed(text)
    for smtpUTF8 in [false, true] {
        let box = HeaderEncoder.mailbox(displayName: text, address: address, smtpUTF8: smtpUTF8)
        if !smtpUTF8 {
            check(box.utf8.allSatisfy { $0 < 0x80 }, "7-bit form is not ASCII: \(debug(box))")
        }
        let folded = HeaderEncoder.fold(name: "To", value: box)
        let boxes = decoder.addressList(folded).mailboxes
        check(boxes.count == 1, "\(boxes.count) mailboxes from \(debug(folded)) (name \(debug(text)))")
        check(boxes[0].address == address, "address \(debug(boxes[0].address)) from \(debug(folded))")
        let got = boxes[0].displayName.map { Array($0.unicodeScalars) }
        check(
            got == expected.map { Array($0.unicodeScalars) },
            "name \(debug(text)) came back as \(debug(boxes[0].displayName ?? "nil")) from \(debug(folded)) (smtpUTF8 \(smtpUTF8))")
        // Decoding the folded value as Subject text must not crash either.
        _ = decoder.unstructured(folded)
    }
    return 0
}

/// What readers make of a name: ASCII whitespace runs (SP, HT, CR, LF) → one space,
/// trimmed; nil when nothing is left. Written out here, independent of the module.
private func collapsed(_ s: String) -> String? {
    var out = String.UnicodeScalarView()
    var pending = false
    for c in s.unicodeScalars {
        if c == " " || c == "\t" || c == "\r" || c == "\n" {
            pending = !out.isEmpty
        } else {
            if pending { out.append(" ") }
            pending = false
            out.append(c)
        }
    }
    return out.isEmpty ? nil : String(out)
}

private func containsMarker(_ u: [UInt8]) -> Bool {
    var i = 0
    while i + 1 < u.count {
        if u[i] == UInt8(ascii: "="), u[i + 1] == UInt8(ascii: "?") { return true }
        i += 1
    }
    return false
}

private func debug(_ s: String) -> String {
    String(reflecting: s)
}

/// A failed property: fatalError keeps its message in -O builds (precondition's is dropped).
private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
