import Foundation
import PostfixLab
import Testing

/// Real mail clients from Debian (issue 11): s-nail writes the staff's message, mutt the
/// customer's reply and the manager's redirect, and Postfix carries each one.
@Suite("Mail clients: s-nail and mutt through Postfix", .serialized, .e2eEnvironment())
struct MailClientTests {
    let env: E2EEnvironment
    let clients: MailClients

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
        clients = try MailClients(lab: env)
    }

    /// Zhangsan writes with s-nail through Postfix's sendmail; returns what reached the
    /// customer, which must carry nothing of zhangsan@, decoded or not.
    private func staffWritesWithSnail(subject: String) throws -> Sink.Message {
        try clients.snailSend(
            from: "zhangsan@example.com", fromName: "Zhang San", to: "buyer@customer.test",
            subject: subject, body: "价格是 100 元。\nZhang San")
        try env.waitForDelivery()
        try env.expectSinkCount(1)
        let sent = try #require(try env.sink.messages().first)
        let decoded = HeaderReading.decodedHeaders(sent.file).lowercased()
        #expect(
            !decoded.contains("zhangsan@") && !decoded.contains("%zhangsan"),
            "s-nail's message leaks the staff address (its Message-ID is <date.random%zhangsan@example.com>): \(decoded)\n\(env.diagnostics)")
        #expect(sent.envelopeSender == "sales@example.com", "\(sent)")
        #expect(sent.file.value("Message-ID") != nil, "\(sent)")
        try env.expectMailboxes(["manager": 1])
        return sent
    }

    @Test("s-nail (sendmail): the staff's message leaves with nothing of zhangsan@, not even in s-nail's Message-ID")
    func snailStaffMessage() throws {
        _ = try staffWritesWithSnail(subject: "报价 \(uniqueTag())")
    }

    @Test(
        "mutt replies to \"Zhangsan\" <sales@example.com> (plain and GB18030): the manager and Zhangsan only",
        arguments: ["utf-8", "gb18030"])
    func muttReply(sendCharset: String) throws {
        let sent = try staffWritesWithSnail(subject: "报价 \(uniqueTag())")
        let reply = try clients.muttReply(
            to: try clients.mbox(with: Self.withoutSinkEnvelope(sent.file.raw)),
            from: "Buyer <buyer@customer.test>", sendCharset: sendCharset)
        let text = String(decoding: reply, as: UTF8.self)
        #expect(text.contains("In-Reply-To:") && text.contains("sales@example.com"), "mutt's reply: \(text)")
        if sendCharset == "gb18030" {
            #expect(text.lowercased().contains("=?gb18030?"), "mutt should have encoded the Subject in GB18030: \(text)")
        }
        env.maildirs.clear()
        env.sink.clear()
        let outcome = try env.sendAndDeliver(as: .internet, from: "buyer@customer.test", to: ["sales@example.com"], message: reply)
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "zhangsan": 1])
    }

    @Test("mutt sends an Outlook-style reply to 'Zhangsan' <sales@example.com>: the manager and Zhangsan only")
    func outlookStyleQuotes() throws {
        let reply = try clients.muttSendDraft(
            """
            From: Buyer <buyer@customer.test>
            To: 'Zhangsan' <sales@example.com>
            Subject: RE: 报价

            OK, we take it.
            """)
        let text = String(decoding: reply, as: UTF8.self)
        #expect(text.contains("'Zhangsan'"), "mutt should keep Outlook's quotes: \(text)")
        let outcome = try env.sendAndDeliver(as: .internet, from: "buyer@customer.test", to: ["sales@example.com"], message: reply)
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "zhangsan": 1])
    }

    /// The message as it arrived, without the X-* envelope lines smtp-sink puts first.
    static func withoutSinkEnvelope(_ raw: [UInt8]) -> [UInt8] {
        let text = String(decoding: raw, as: UTF8.self)
        let kept = text.split(separator: "\n", omittingEmptySubsequences: false).drop {
            ["X-Client-", "X-Helo-Args:", "X-Mail-Args:", "X-Rcpt-Args:"].contains(where: $0.hasPrefix)
        }
        return Array(kept.joined(separator: "\n").utf8)
    }
}

/// The manager's redirect with mutt's bounce (issue 11): mutt writes Resent-* and submits
/// through Postfix's sendmail; the customer's next message in that thread reaches Lisi.
@Suite("Mail clients: the manager's redirect with mutt", .serialized, .memoryEnvironment(.sqlite))
struct MailClientRedirectTests {
    let env: MemoryEnvironment

    init() throws {
        env = try MemoryEnvironment.current()
        try env.beginTest()
    }

    @Test("mutt's bounce by the manager assigns the thread: the customer's next message reaches Lisi")
    func muttBounceAssigns() throws {
        let clients = try MailClients(lab: env.lab)
        let talk = Conversation(env)
        let original = "\(talk.tag).first@customer.test"
        try env.lab.sendAndDeliver(
            as: .internet, from: talk.customer, to: ["sales@example.com"],
            message: message([
                "From: <\(talk.customer)>", "To: sales@example.com", "Subject: question \(talk.tag)",
                "Message-ID: <\(original)>",
            ]))
        let copy = try #require(try env.lab.maildirs.messages("manager").first, "\(env.diagnostics)")
        env.nextStep()
        try clients.muttBounce(try clients.mbox(with: copy.raw), from: "Manager <manager@example.com>", to: "lisi@example.com")
        try env.lab.waitForDelivery()
        let redirected = try #require(try env.lab.maildirs.messages("lisi").first, "mutt's bounce did not arrive\n\(env.diagnostics)")
        #expect(redirected.value("Resent-From")?.contains("manager@example.com") == true, "\(redirected)")
        env.nextStep()
        try talk.customerWrites(["In-Reply-To: <\(original)>", "References: <\(original)>"])
        try talk.expectDelivered(to: ["manager", "lisi"])
    }
}
