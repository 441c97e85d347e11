// libFuzzer target: the address-list parser and the byte-exact rewriter.
// Built by scripts/fuzz together with Sources/MailHeaders/*.swift into one
// module, so it only uses the module's public API.
//
// Properties checked on every input (raw header bytes, as the MTA passes them):
//  - parsing and rewriting never crash or hang (libFuzzer -timeout);
//  - every mailbox's `source` is a byte-exact slice of the decoded value, and the
//    sources appear in order without overlapping;
//  - a rewrite that replaces nothing returns nil;
//  - replacing any subset of mailboxes by their own source gives back the value;
//  - replacing every mailbox that has an address by `Name <new>` (what the engine
//    does to staff addresses) keeps the list's shape, names and other mailboxes
//    (checked for values without "=?"; see below).
private let decoder = HeaderDecoder()
private let newAddress = "sales@example.com"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let text = decoder.text(fromRaw: bytes)
    let utf8 = Array(text.utf8)
    let list = decoder.addressList(text)
    let mailboxes = list.mailboxes

    var cursor = 0  // sources come in order and don't overlap
    for m in mailboxes {
        let source = Array(m.source.utf8)
        guard let at = find(source, in: utf8, from: cursor) else {
            fatalError("source \(debug(m.source)) is not a slice of \(debug(text)) after byte \(cursor)")
        }
        cursor = at + source.count
        if let name = m.displayName {
            check(!name.isEmpty, "empty display name is not nil: \(debug(text))")
        }
    }

    check(
        decoder.rewritingMailboxes(in: text) { _ in nil } == nil,
        "replacing nothing did not return nil: \(debug(text))")

    // Identity-ish: every mailbox, then every other one, replaced by its own source.
    for stride in [1, 2] {
        var index = 0
        let rewritten = decoder.rewritingMailboxes(in: text) { m -> String? in
            defer { index += 1 }
            return index % stride == 0 ? m.source : nil
        }
        if mailboxes.isEmpty {
            check(rewritten == nil, "rewrote a value without mailboxes: \(debug(text))")
        } else {
            check(index == mailboxes.count, "rewriter saw \(index) of \(mailboxes.count) mailboxes: \(debug(text))")
            check(
                rewritten.map { Array($0.utf8) } == utf8,
                "identity rewrite changed \(debug(text)) into \(debug(rewritten ?? "nil"))")
        }
    }

    // A real rewrite, as the engine hides staff addresses: every mailbox with an
    // address becomes `Name <new>`. Without "=?" in the value, the list keeps its
    // shape: as many mailboxes, the rewritten ones carry the new address and the same
    // name, the others are unchanged. (With "=?" it need not: encoded words may hold
    // specials, so a replacement can complete a neighbour's unterminated word, as in
    // `=?x?Q?a,_b?e, c?= <d@e>`. The value must still rewrite without crashing.)
    let replaced = decoder.rewritingMailboxes(in: text) { m in
        m.address.isEmpty ? nil : HeaderEncoder.mailbox(displayName: m.displayName, address: newAddress, smtpUTF8: false)
    }
    if let replaced {
        let after = decoder.addressList(replaced).mailboxes
        if !containsMarker(utf8) {
            check(
                after.count == mailboxes.count,
                "rewrite turned \(mailboxes.count) mailboxes into \(after.count): \(debug(text)) → \(debug(replaced))")
            for (old, new) in zip(mailboxes, after) {
                let address = old.address.isEmpty ? old.address : newAddress
                check(
                    new.address == address && scalars(new.displayName) == scalars(old.displayName)
                        && (!old.address.isEmpty || new.source == old.source),
                    "rewrite of \(debug(old.source)) (name \(debug(old.displayName ?? "nil"))) read back as \(new) in \(debug(replaced)) (from \(debug(text)))")
            }
        }
    } else {
        check(mailboxes.allSatisfy { $0.address.isEmpty }, "nothing rewritten though an address was parsed: \(debug(text))")
    }
    for m in mailboxes { _ = NameNormalizer.normalize(m.displayName ?? m.address) }
    return 0
}

/// First index ≥ `from` where `needle` occurs in `haystack`. Sources follow each
/// other, so the match is normally near `from` and this stays cheap.
private func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
    if needle.isEmpty { return from }
    guard from + needle.count <= haystack.count else { return nil }
    var i = from
    while i + needle.count <= haystack.count {
        if haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
        i += 1
    }
    return nil
}

private func containsMarker(_ u: [UInt8]) -> Bool {
    var i = 0
    while i + 1 < u.count {
        if u[i] == UInt8(ascii: "="), u[i + 1] == UInt8(ascii: "?") { return true }
        i += 1
    }
    return false
}

private func scalars(_ s: String?) -> [Unicode.Scalar]? {
    s.map { Array($0.unicodeScalars) }
}

/// Escaped, so a crash report shows controls and invalid bytes.
private func debug(_ s: String) -> String {
    String(reflecting: s)
}

/// A failed property: fatalError keeps its message in -O builds (precondition's is dropped).
private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
