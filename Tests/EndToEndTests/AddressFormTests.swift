import PostfixLab
import Testing

/// Every address form Postfix 3.7 accepts with its default rewriting (swap_bangpath,
/// allow_percent_hack, append_at_myorigin; recipient_delimiter = +, smtputf8_enable = yes in
/// the lab's main.cf) gets the verdict of its plain form: sharemail reads Postfix's own
/// resolution ({rcpt_addr}, {mail_addr}), so no form walks around the rules.
@Suite("Address forms through Postfix: no bypass, no leak", .serialized, .e2eEnvironment())
struct AddressFormTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    struct Form: Sendable, CustomTestStringConvertible {
        let written: String
        var testDescription: String { written }
        init(_ written: String) { self.written = written }
    }

    static let zhangsanForms = [
        "zhangsan+tag@example.com", "\"zhangsan\"@example.com", "zhangsan@example.com.", "zhangsan",
        "example.com!zhangsan", "zhangsan%example.com@[127.0.0.1]", "ZhangSan@Example.COM", "zhangsan@[127.0.0.1]",
    ].map(Form.init)

    @Test(
        "A stranger → any form of Zhangsan (receive_internet = false): refused at RCPT, delivered nowhere",
        arguments: zhangsanForms)
    func staffFormsRefused(form: Form) throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "stranger@customer.test", to: [form.written],
            message: message(["From: stranger@customer.test", "To: zhangsan@example.com", "Subject: \(uniqueTag())"]))
        let reply = try #require(outcome.rcpt.first)
        #expect(
            reply.code == 550 && reply.text.contains("sales@example.com"),
            "RCPT TO:<\(form.written)>: \(reply)\n\(env.diagnostics)")
        try env.expectMailboxes([:])
        try env.expectSinkCount(0)
    }

    @Test(
        "A stranger → any form of sales@: the manager once, and every staff (forward_unnamed)",
        arguments: [
            "sales+x@example.com", "\"sales\"@example.com", "sales@example.com.", "sales", "example.com!sales",
            "sales%example.com@[127.0.0.1]", "SALES@example.com",
        ].map(Form.init))
    func unifiedForms(form: Form) throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: [form.written],
            message: message(["From: customer@customer.test", "To: sales@example.com", "Subject: \(uniqueTag())"]))
        #expect(outcome.accepted, "RCPT TO:<\(form.written)>: \(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "zhangsan": 1, "lisi": 1, "wangwu": 1])
        try env.expectSinkCount(0)
    }

    @Test("A stranger → wangwu+quote@ (receive_internet = true): Wangwu and the manager")
    func receivingStaffForm() throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["wangwu+quote@example.com"],
            message: message(["From: customer@customer.test", "To: wangwu+quote@example.com", "Subject: \(uniqueTag())"]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "wangwu": 1])
    }

    @Test(
        "Zhangsan → a customer by bang path, percent hack or trailing dot: leaves as sales@, the manager keeps a copy",
        arguments: ["customer.test!buyer", "buyer%customer.test@[127.0.0.1]", "buyer@customer.test."].map(Form.init))
    func outboundForms(form: Form) throws {
        let subject = "Re: forms \(uniqueTag())"
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: [form.written],
            message: message(["From: Zhang San <zhangsan@example.com>", "To: buyer@customer.test", "Subject: \(subject)"]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectSinkCount(1)
        let sent = try #require(try env.sink.messages().first)
        #expect(sent.envelopeSender == "sales@example.com", "MAIL FROM at the Internet: \(sent)\n\(env.diagnostics)")
        #expect(sent.envelopeRecipients == ["buyer@customer.test"], "\(sent)")
        #expect(!sent.file.text.lowercased().contains("zhangsan@"), "the staff address leaks: \(sent)\n\(env.diagnostics)")
        #expect(sent.file.value("From")?.contains("sales@example.com") == true, "\(sent)")
        try env.expectMailboxes(["manager": 1])
    }

    @Test("Wangwu (send_internet = false) → a bang path to the Internet: refused at RCPT")
    func refusedSenderBangPath() throws {
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "wangwu"), from: "wangwu@example.com", to: ["customer.test!buyer"],
            message: message(["From: wangwu@example.com", "To: buyer@customer.test", "Subject: \(uniqueTag())"]))
        let reply = try #require(outcome.rcpt.first)
        #expect(reply.code == 550, "\(reply)\n\(env.diagnostics)")
        try env.expectSinkCount(0)
        try env.expectMailboxes([:])
    }

    @Test("sendmail -f zhangsan (a bare sender Postfix completes with @example.com): rewritten as staff mail")
    func bareLocalSender() throws {
        let subject = "Re: bare \(uniqueTag())"
        let result = try env.postfix.sendmail(
            from: "zhangsan", to: ["buyer@customer.test"],
            message: message(["From: zhangsan", "To: buyer@customer.test", "Subject: \(subject)"]))
        #expect(result.succeeded, "\(result)")
        try env.waitForDelivery()
        try env.expectSinkCount(1)
        let sent = try #require(try env.sink.messages().first)
        #expect(sent.envelopeSender == "sales@example.com", "\(sent)\n\(env.diagnostics)")
        #expect(!sent.file.text.lowercased().contains("zhangsan@"), "\(sent)")
        try env.expectMailboxes(["manager": 1])
    }

    // MARK: DSN parameters

    @Test("MAIL FROM … ENVID naming Zhangsan: refused with a reason, nothing leaves")
    func envelopeIDRefused() throws {
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "<zhangsan@example.com> RET=HDRS ENVID=zhangsan+40example.com",
            to: ["buyer@customer.test"],
            message: message(["From: zhangsan@example.com", "To: buyer@customer.test", "Subject: \(uniqueTag())"]))
        #expect(outcome.mail?.isPositive == true, "\(outcome)")
        let reply = try #require(outcome.rcpt.first)
        #expect(reply.code == 550 && reply.text.contains("ENVID"), "\(reply)\n\(env.diagnostics)")
        try env.expectSinkCount(0)
        try env.expectMailboxes([:])
    }

    @Test("RCPT TO … ORCPT=rfc822;zhangsan@: the customer's envelope carries no staff address")
    func originalRecipientDropped() throws {
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com",
            to: ["<buyer@customer.test> NOTIFY=FAILURE ORCPT=rfc822;zhangsan+40example.com"],
            message: message(["From: zhangsan@example.com", "To: buyer@customer.test", "Subject: \(uniqueTag())"]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectSinkCount(1)
        let sent = try #require(try env.sink.messages().first)
        #expect(sent.envelopeRecipients == ["buyer@customer.test"], "\(sent)")
        #expect(
            !sent.file.text.lowercased().contains("zhangsan@") && !sent.file.text.lowercased().contains("zhangsan+40"),
            "ORCPT or another trace leaks: \(sent)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1])
    }
}
