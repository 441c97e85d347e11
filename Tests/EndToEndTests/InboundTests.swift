import PostfixLab
import Testing

/// Mail from the Internet (XCLIENT ADDR=198.51.100.7, no login): rules 1, 2 and 4.
@Suite("Inbound: Internet → sales@ and staff", .serialized, .e2eEnvironment())
struct InboundTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    /// Internet → sales@ with the given To/Cc lines; waits for delivery.
    private func sendToSales(_ addressLines: [String]) throws -> SMTPOutcome {
        let tag = uniqueTag()
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"],
            message: message(
                ["From: Customer <customer@customer.test>"] + addressLines + [
                    "Subject: inbound \(tag)", "Message-ID: <\(tag)@customer.test>",
                ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try expectEveryCopyUntouched(tag: tag)
        return outcome
    }

    /// Inbound copies are the customer's message: same Subject, From not rewritten.
    private func expectEveryCopyUntouched(tag: String) throws {
        for mailbox in PostfixInstance.mailboxes {
            for copy in try env.maildirs.messages(mailbox) {
                #expect(copy.value("Subject") == "inbound \(tag)", "\(mailbox): \(copy)")
                #expect(copy.value("From") == "Customer <customer@customer.test>", "\(mailbox): \(copy)")
            }
        }
    }

    @Test("Rule 1: unnamed sales@ → the manager once, and (forward_unnamed) every staff once")
    func unnamedGoesToEveryone() throws {
        _ = try sendToSales(["To: sales@example.com"])
        try env.expectMailboxes(["manager": 1, "zhangsan": 1, "lisi": 1, "wangwu": 1])
        try env.expectSinkCount(0)
    }

    @Test("Rule 1: sales@ and manager@ both in the envelope → the manager still gets one copy")
    func managerAlreadyRecipient() throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com", "manager@example.com"],
            message: message([
                "From: customer@customer.test", "To: sales@example.com, manager@example.com",
                "Subject: \(uniqueTag())",
            ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "zhangsan": 1, "lisi": 1, "wangwu": 1])
    }

    struct NamedCase: Sendable, CustomTestStringConvertible {
        let label: String
        let lines: [String]
        let expected: [String: Int]
        var testDescription: String { label }
    }

    static let zhangsanOnly = ["manager": 1, "zhangsan": 1]
    static let everyone = ["manager": 1, "zhangsan": 1, "lisi": 1, "wangwu": 1]

    static let namedCases: [NamedCase] = [
        NamedCase(label: "quoted name in To", lines: [#"To: "Zhangsan" <sales@example.com>"#], expected: zhangsanOnly),
        NamedCase(
            label: "name in Cc, To elsewhere",
            lines: ["To: friend@customer.test", #"Cc: "Zhangsan" <sales@example.com>"#], expected: zhangsanOnly),
        NamedCase(label: "lower-case name", lines: [#"To: "zhangsan" <sales@example.com>"#], expected: zhangsanOnly),
        NamedCase(label: "extra spaces", lines: [#"To: "  Zhangsan " <sales@example.com>"#], expected: zhangsanOnly),
        NamedCase(label: "unquoted name", lines: ["To: Zhangsan <sales@example.com>"], expected: zhangsanOnly),
        NamedCase(
            label: "RFC 2047 encoded name",
            lines: ["To: =?UTF-8?B?WmhhbmdzYW4=?= <sales@example.com>"], expected: zhangsanOnly),
        NamedCase(
            label: "unknown name falls back to rule 1",
            lines: [#"To: "Nobody" <sales@example.com>"#], expected: everyone),
        NamedCase(
            label: "two names → both, not the others",
            lines: [#"To: "Zhangsan" <sales@example.com>, "Lisi" <sales@example.com>"#],
            expected: ["manager": 1, "zhangsan": 1, "lisi": 1]),
    ]

    @Test("Rule 4: a staff name on sales@ routes to that staff only (plus the manager)", arguments: namedCases)
    func namedGoesToThatStaff(_ named: NamedCase) throws {
        _ = try sendToSales(named.lines)
        try env.expectMailboxes(named.expected)
        try env.expectSinkCount(0)
    }

    @Test("Rule 2: Internet → a staff without receive_internet is refused at RCPT with 550 5.7.1")
    func directToStaffRefused() throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["zhangsan@example.com"],
            message: message(["From: customer@customer.test", "To: zhangsan@example.com", "Subject: \(uniqueTag())"]))
        let reply = try #require(outcome.rcpt.first, "\(outcome)")
        #expect(reply.code == 550, "\(outcome)\n\(env.diagnostics)")
        #expect(reply.text.contains("5.7.1"), "\(reply)")
        #expect(reply.text.contains("sales@example.com"), "the refusal should tell the sender where to write: \(reply)")
        #expect(outcome.data == nil)
        try env.expectMailboxes([:])
        try env.expectSinkCount(0)
    }

    @Test("Rule 2: in one transaction, the staff recipient is refused and sales@ still accepted")
    func mixedRecipients() throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["zhangsan@example.com", "sales@example.com"],
            message: message([
                "From: customer@customer.test", "To: zhangsan@example.com, sales@example.com",
                "Subject: \(uniqueTag())",
            ]))
        #expect(outcome.rcpt.map(\.code) == [550, 250], "\(outcome)\n\(env.diagnostics)")
        #expect(outcome.accepted, "\(outcome)")
        try env.expectMailboxes(["manager": 1, "zhangsan": 1, "lisi": 1, "wangwu": 1])
    }

    @Test("Rule 2: Internet → a staff with receive_internet is delivered, with a copy for the manager")
    func directToReceivingStaff() throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["wangwu@example.com"],
            message: message(["From: customer@customer.test", "To: wangwu@example.com", "Subject: \(uniqueTag())"]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "wangwu": 1])
        try env.expectSinkCount(0)
    }

    @Test("Rule 6: an Internet client spoofing a staff sender is still treated as the Internet")
    func spoofedStaffSenderToSales() throws {
        let from = #"From: "Zhang San" <zhangsan@example.com>"#
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "zhangsan@example.com", to: ["sales@example.com"],
            message: message([from, "To: sales@example.com", "Subject: \(uniqueTag())"]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "zhangsan": 1, "lisi": 1, "wangwu": 1])
        try env.expectSinkCount(0)
        let copy = try #require(try env.maildirs.messages("manager").first)
        #expect(
            copy.value("From") == #""Zhang San" <zhangsan@example.com>"#,
            "an Internet message's From must not be rewritten: \(copy)")
    }

    @Test("Rule 6: an Internet client spoofing a staff sender cannot relay out (Postfix refuses)")
    func spoofedStaffSenderCannotRelay() throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "zhangsan@example.com", to: ["customer@customer.test"],
            message: message(["From: zhangsan@example.com", "To: customer@customer.test", "Subject: \(uniqueTag())"]))
        let reply = try #require(outcome.rcpt.first, "\(outcome)")
        #expect([554, 454].contains(reply.code), "\(outcome)")
        try env.expectSinkCount(0)
        try env.expectMailboxes([:])
    }
}
