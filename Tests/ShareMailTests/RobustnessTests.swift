import ShareMail
import Testing

@Suite("Rule 7: malformed input still reaches the manager")
struct RobustnessTests {
    let engine: PolicyEngine
    init() throws { engine = try seedEngine() }

    func expectManagerCopy(_ headers: [Header], sourceLocation: SourceLocation = #_sourceLocation) {
        let facts = MessageFacts(
            submission: internet, sender: "<c@customer.test>", recipients: ["<sales@example.com>"],
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
        expectManagerCopy([
            Header(name: "To", raw: garbage), Header(name: "From", raw: garbage),
            Header(name: "Cc", raw: [0xD5, 0xC5, 0xC8, 0xFD, 0x20, 0x3C] + Array("sales@example.com>".utf8)),
        ])
    }

    @Test func unbalancedSyntax() {
        for value in ["\"unterminated <sales@example.com>", "(((((", "<<<<>>>>@@@", ":;:;:;", "\\", "\"Zhangsan\" <sales@example.com"] {
            expectManagerCopy([Header(name: "To", value: value)])
        }
    }

    @Test("a staff sender's garbage headers still produce a clean From")
    func outboundGarbage() {
        let facts = MessageFacts(
            submission: staffLogin("zhangsan"), sender: "<zhangsan@example.com>",
            recipients: ["<c@customer.test>"],
            headers: [Header(name: "From", raw: [0xFF, 0x00, 0x40]), Header(name: "Reply-To", raw: [0x80, 0x40, 0x40])],
            uniqueToken: "t")
        let d = engine.decide(facts)
        #expect(d.change("From")?.value == "Zhangsan <sales@example.com>")
        #expect(d.added == ["manager@example.com"])
    }

    enum Expected: Sendable { case accept, reject, tempfail }

    /// What check (and a daemon given no resolution by the MTA) makes of odd
    /// paths: what is not plainly an address is deferred, never guessed; a
    /// source route keeps its mailbox.
    @Test(
        "odd envelope paths: placed when plainly an address, else deferred; no crash",
        arguments: [
            ("", Expected.tempfail), ("<>", .tempfail), ("<@route,@x:zhangsan@example.com>", .reject),
            ("\"quoted local\"@example.com", .accept), ("<a@b@c>", .tempfail), ("@", .tempfail), ("<", .tempfail),
            (">", .tempfail), ("example.com!zhangsan", .tempfail),
        ])
    func oddRecipients(path: String, expected: Expected) {
        let verdict = engine.checkRecipient(EnvelopeAddress(path), submission: internet, sender: "<c@customer.test>")
        switch (verdict, expected) {
        case (.accept, .accept):
            break
        case (.reject(let reply, let reason), .reject):
            // The mailbox inside the source route is a staff's who takes no Internet mail.
            #expect(reply.code == 550 && reply.enhancedCode == "5.7.1", "\(path): \(reply)")
            #expect(reason == "rule 2: zhangsan@example.com may not receive Internet mail", "\(path): \(reason)")
        case (.tempfail(let reply, let reason), .tempfail):
            #expect(reply == PolicyEngine.cannotPlace, "\(path): \(reply)")
            #expect(reason.hasSuffix("has no resolved address sharemail can place"), "\(path): \(reason)")
        default:
            Issue.record("RCPT \(path): \(verdict), expected \(expected)")
        }
        let decision = engine.decide(message(localSubmission, from: "zhangsan@example.com", to: [path]))
        if expected == .tempfail {
            #expect(decision.action == .tempfail(PolicyEngine.cannotPlace), "\(path): \(decision.reasons)")
        } else {
            #expect(decision.action == .accept, "\(path): \(decision.reasons)")
        }
    }
}
