import ShareMail
import Testing

@Suite("Rule 7: malformed input still reaches the manager")
struct RobustnessTests {
    let engine: PolicyEngine
    init() throws { engine = try seedEngine() }

    func expectManagerCopy(_ headers: [Header], sourceLocation: SourceLocation = #_sourceLocation) {
        let facts = MessageFacts(submission: internet, sender: "<c@customer.test>", recipients: ["<sales@example.com>"],
                                 headers: headers, uniqueToken: "t")
        let d = engine.decide(facts)
        #expect(d.isAccept, sourceLocation: sourceLocation)
        #expect(d.added.first == "manager@example.com", sourceLocation: sourceLocation)
    }

    @Test func noHeadersAtAll() { expectManagerCopy([]) }

    @Test func brokenEncodedWords() {
        expectManagerCopy([Header(name: "To", value: "=?UTF-8?B?####?= <sales@example.com>, =?bogus?Q?=ZZ?= <x@y>")])
    }

    @Test func thousandsOfAddresses() {
        let list = (0..<5_000).map { "\"Person \($0)\" <p\($0)@customer.test>" }.joined(separator: ",\n\t")
        expectManagerCopy([Header(name: "To", value: list), Header(name: "Cc", value: list)])
    }

    @Test func hugeFoldedHeader() {
        let folded = (0..<2_000).map { "word\($0)" }.joined(separator: "\n\t")
        expectManagerCopy([Header(name: "Subject", value: folded), Header(name: "To", value: folded)])
    }

    @Test func eightBitGarbage() {
        let garbage: [UInt8] = (0..<4_096).map { UInt8(0x80 + $0 % 0x80) } + [0, 0xFF, 0xFE, 0x22, 0x3C, 0x40]
        expectManagerCopy([Header(name: "To", raw: garbage), Header(name: "From", raw: garbage),
                           Header(name: "Cc", raw: [0xD5, 0xC5, 0xC8, 0xFD, 0x20, 0x3C] + Array("sales@example.com>".utf8))])
    }

    @Test func unbalancedSyntax() {
        for value in ["\"unterminated <sales@example.com>", "(((((", "<<<<>>>>@@@", ":;:;:;", "\\", "\"Zhangsan\" <sales@example.com"] {
            expectManagerCopy([Header(name: "To", value: value)])
        }
    }

    @Test("a staff sender's garbage headers still produce a clean From")
    func outboundGarbage() {
        let facts = MessageFacts(submission: staffLogin("zhangsan"), sender: "<zhangsan@example.com>",
                                 recipients: ["<c@customer.test>"],
                                 headers: [Header(name: "From", raw: [0xFF, 0x00, 0x40]), Header(name: "Reply-To", raw: [0x80, 0x40, 0x40])],
                                 uniqueToken: "t")
        let d = engine.decide(facts)
        #expect(d.change("From")?.value == "Zhangsan <sales@example.com>")
        #expect(d.added == ["manager@example.com"])
    }

    @Test("odd envelope paths do not crash and count as the Internet when unreadable", arguments: [
        "", "<>", "<@route,@x:zhangsan@example.com>", "\"quoted local\"@example.com", "<a@b@c>", "@", "<", ">",
    ])
    func oddRecipients(path: String) {
        _ = engine.checkRecipient(path, submission: internet, sender: path)
        _ = engine.decide(message(staffLogin("zhangsan"), from: path, to: [path]))
    }
}
