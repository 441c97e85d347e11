import Foundation
import PropertyBased
import Testing

@testable import MailHeaders

/// Hostile and huge input never crashes and never loses the rest of the header.
@Suite struct RobustnessTests {
    let decoder = HeaderDecoder()

    static let byteGen = Gen<UInt8>.value(in: 0...255).array(of: 0...400)

    /// Bytes biased towards header syntax, so the parser's corners get exercised.
    static let syntaxGen = Gen.int(in: 0...10_000).map { n -> String in
        let pieces = [
            "\"", "\\", "(", ")", "<", ">", "@", ",", ";", ":", ".", "[", "]", " ", "\r\n ",
            "=?", "?=", "?B?", "?Q?", "utf-8", "gb2312", "5byg", "=E5", "a", "张", "\u{0}", "\t",
        ]
        return pieces[n % pieces.count]
    }.array(of: 0...200).map { $0.joined() }

    func exercise(_ value: String) {
        let list = decoder.addressList(value)
        for m in list.mailboxes {
            // Every source is a real slice of the value.
            #expect(value.contains(m.source))
        }
        // Replacing nothing keeps nothing; replacing each mailbox by itself is the identity.
        #expect(decoder.rewritingMailboxes(in: value) { _ in nil } == nil)
        if !list.mailboxes.isEmpty {
            #expect(decoder.rewritingMailboxes(in: value) { $0.source } == value)
        }
        _ = decoder.unstructured(value)
        _ = HeaderEncoder.fold(name: "To", value: value)
        _ = NameNormalizer.normalize(value)
        for m in list.mailboxes {
            _ = HeaderEncoder.mailbox(displayName: m.displayName, address: m.address, smtpUTF8: false)
        }
    }

    @Test func randomBytesNeverCrash() async {
        await propertyCheck(count: 300, input: Self.byteGen) { bytes in
            let text = decoder.text(fromRaw: bytes)
            exercise(text)
        }
    }

    @Test func randomSyntaxNeverCrashes() async {
        await propertyCheck(count: 500, input: Self.syntaxGen) { value in
            exercise(value)
        }
    }

    @Test func garbageDoesNotHideTheRest() {
        let garbage = [
            "\"unterminated, a@x", "(unterminated comment", "<<<>>>", "@@@", ":::", ";;;",
            "=?utf-8?B?", "\u{0}\u{0}", "[broken", "\\\\\\", ")))",
        ]
        for g in garbage {
            let list = decoder.addressList("Zhang San <z@x>, \(g)")
            #expect(list.mailboxes.first == Mailbox(displayName: "Zhang San", address: "z@x", source: "Zhang San <z@x>"), "\(g)")
        }
        // An unterminated comment has no end (RFC 5322): it takes the rest of
        // the value, and no mailbox is made up from what it swallowed.
        let after = decoder.addressList("(((, \"x, \" , Li <l@y>")
        #expect(after.mailboxes.isEmpty, "\(after.mailboxes)")
        // Other garbage before: everything after the next real separator still comes out.
        #expect(decoder.addressList("<<x, Li <l@y>").mailboxes.last?.address == "l@y")
        #expect(decoder.addressList(";;; Li <l@y>").mailboxes.last?.address == "l@y")
        #expect(decoder.addressList("a@x, =?utf-8?B?!!?= <b@y>, c@z").mailboxes.map(\.address) == ["a@x", "b@y", "c@z"])
        #expect(decoder.addressList("a@x, =?utf-8?B?!!?= <b@y>, c@z").mailboxes[1].displayName == "=?utf-8?B?!!?=")
    }

    @Test func nulBytes() {
        let list = decoder.addressList("Zh\u{0}ang <z@x>, li@y")
        #expect(list.mailboxes.map(\.address) == ["z@x", "li@y"])
        #expect(list.mailboxes[0].displayName == "Zh\u{0}ang")
    }

    @Test func hugeValues() {
        let long = String(repeating: "x", count: 100_000)
        #expect(decoder.addressList("\(long) <a@b>, c@d").mailboxes.map(\.address) == ["a@b", "c@d"])
        #expect(decoder.addressList("\"\(long)").mailboxes.count == 1)
        #expect(decoder.unstructured("=?utf-8?B?\(long)") == "=?utf-8?B?\(long)")
        let many = String(repeating: "=?", count: 50_000)
        #expect(decoder.unstructured(many) == many)
        _ = decoder.addressList(many)
        let encoded = String(repeating: "=?utf-8?Q?a,?=", count: 10_000)
        #expect(decoder.addressList(encoded + " <a@b>").mailboxes.first?.displayName == String(repeating: "a,", count: 10_000))
    }

    @Test func tenThousandAddresses() {
        let value = (0..<10_000).map { "=?UTF-8?B?5byg5LiJ?= \($0) <user\($0)@example.com>" }.joined(separator: ",\r\n ")
        let boxes = decoder.addressList(value).mailboxes
        #expect(boxes.count == 10_000)
        #expect(boxes[9_999].displayName == "张三 9999")
        #expect(boxes[9_999].address == "user9999@example.com")
        let rewritten = decoder.rewritingMailboxes(in: value) { $0.address == "user5000@example.com" ? "<x@y>" : nil }
        #expect(rewritten?.contains(",\r\n <x@y>,\r\n ") == true)
    }

    /// Linear, not quadratic: 10x the addresses must not cost anywhere near 100x.
    @Test func parsingIsLinear() {
        func cost(_ n: Int) -> Double {
            let value = (0..<n).map { "=?UTF-8?B?5byg5LiJ?= \($0) <user\($0)@example.com>" }.joined(separator: ", ")
            let clock = ContinuousClock()
            var best = Duration.seconds(1000)
            for _ in 0..<3 {
                let elapsed = clock.measure { #expect(decoder.addressList(value).mailboxes.count == n) }
                best = min(best, elapsed)
            }
            return Double(best.components.attoseconds) / 1e18 + Double(best.components.seconds)
        }
        let small = cost(1_000)
        let large = cost(10_000)
        #expect(large / small < 40, "1,000: \(small)s, 10,000: \(large)s")
    }

    /// Charset plans and iconv descriptors are shared behind locks; hammer them.
    @Test func concurrentDecoding() async {
        let decoder = self.decoder
        let vectors = [
            ("=?GB2312?B?1cXI/Q==?=", "张三"), ("=?Big5?B?sWmkVA==?=", "張三"),
            ("=?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?=", "山田太郎"), ("=?EUC-KR?B?sejDtrz2?=", "김철수"),
            ("=?UTF-8?B?5byg5A==?=", "=?UTF-8?B?5byg5A==?="),  // invalid: must not poison a shared descriptor
            ("=?GB2312?B?1cXI?=", "=?GB2312?B?1cXI?="),
        ]
        await withTaskGroup(of: Bool.self) { group in
            for task in 0..<16 {
                group.addTask {
                    var ok = true
                    for i in 0..<300 {
                        let (word, expected) = vectors[(i + task) % vectors.count]
                        ok = ok && decoder.unstructured(word) == expected
                    }
                    return ok
                }
            }
            for await ok in group { #expect(ok) }
        }
    }
}
