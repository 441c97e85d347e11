import PostfixLab
import Testing

/// Staff → Internet (rule 3): the customer sees "Zhangsan" <sales@example.com> and nothing of
/// zhangsan@example.com; the manager keeps a copy. Staff without send_internet are refused.
@Suite("Outbound: staff → Internet", .serialized, .e2eEnvironment())
struct OutboundTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    /// Every header a mail client might use to leak the staff address; no Message-ID on
    /// purpose (one must exist on the way out, and must not name the staff).
    static func revealingMessage(subject: String) -> [UInt8] {
        message(
            [
                #"From: "Zhang San" <zhangsan@example.com>"#,
                "Sender: zhangsan@example.com",
                "Reply-To: zhangsan@example.com",
                "Disposition-Notification-To: zhangsan@example.com",
                "Return-Receipt-To: <zhangsan@example.com>",
                "Errors-To: zhangsan@example.com",
                "To: customer@customer.test",
                "Subject: \(subject)",
            ], body: "Regards,\r\nZhang San")
    }

    /// What the customer and the manager must see of one rewritten outbound message.
    private func expectRewritten(subject: String) throws {
        try env.expectSinkCount(1)
        let sent = try #require(try env.sink.messages().first)
        #expect(sent.envelopeSender == "sales@example.com", "MAIL FROM on the way out: \(sent)\n\(env.diagnostics)")
        #expect(sent.envelopeRecipients == ["customer@customer.test"], "\(sent)")
        #expect(sent.file.value("Subject") == subject, "\(sent)")
        let from = sent.file.value("From")
        #expect(
            from == #""Zhangsan" <sales@example.com>"# || from == "Zhangsan <sales@example.com>",
            "From on the way out: \(from ?? "none")\n\(sent)")
        #expect(sent.file.value("Message-ID") != nil, "no Message-ID on the way out: \(sent)")
        #expect(
            !sent.file.text.lowercased().contains("zhangsan@example.com"),
            "the staff address leaks to the customer: \(sent)\n\(env.diagnostics)")
        let leaked = sent.file.fields.filter { $0.name.lowercased().hasPrefix("x-sharemail-") }.map(\.name)
        #expect(leaked.isEmpty, "internal headers leak to the customer: \(leaked)")

        try env.expectMailboxes(["manager": 1])
        let copy = try #require(try env.maildirs.messages("manager").first)
        #expect(copy.value("Subject") == subject, "\(copy)")
        #expect(
            copy.value("From").map { $0.contains("sales@example.com") && !$0.contains("zhangsan@") } == true,
            "the manager's copy should show the From the customer sees: \(copy)")
    }

    @Test("Rule 3 over SMTP: From, envelope and every revealing header are rewritten to sales@")
    func staffReplyIsRewritten() throws {
        let subject = "Re: your order \(uniqueTag())"
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: ["customer@customer.test"],
            message: Self.revealingMessage(subject: subject))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try expectRewritten(subject: subject)
    }

    @Test("Rule 3 via local submission (sendmail -C): the same rewrite and manager copy")
    func localSubmissionIsRewritten() throws {
        let subject = "Re: local \(uniqueTag())"
        let result = try env.postfix.sendmail(
            from: "zhangsan@example.com", to: ["customer@customer.test"],
            message: Self.revealingMessage(subject: subject))
        #expect(result.succeeded, "\(result)")
        try env.waitForDelivery()
        try expectRewritten(subject: subject)
    }

    @Test("Rule 3: a staff reply that also copies sales@ reaches the manager once, the customer rewritten")
    func staffReplyCopyingSales() throws {
        let subject = "Re: cc sales \(uniqueTag())"
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com",
            to: ["customer@customer.test", "sales@example.com"],
            message: message([
                #"From: "Zhang San" <zhangsan@example.com>"#, "To: customer@customer.test",
                "Cc: sales@example.com", "Subject: \(subject)",
            ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectSinkCount(1)
        let sent = try #require(try env.sink.messages().first)
        #expect(sent.envelopeSender == "sales@example.com", "\(sent)")
        #expect(!sent.file.text.lowercased().contains("zhangsan@example.com"), "\(sent)")
        try env.expectMailboxes(["manager": 1])
    }

    @Test("Rule 3: revealing headers in odd shapes (lower-case, folded, repeated) are all rewritten")
    func oddlyShapedHeadersAreRewritten() throws {
        let subject = "Re: odd \(uniqueTag())"
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: ["customer@customer.test"],
            message: message([
                "from: \"Zhang San\"\r\n <zhangsan@example.com>",
                "reply-to: zhangsan@example.com",
                "To: customer@customer.test",
                "Reply-To: Zhang San\r\n\t<zhangsan@example.com>",
                "SENDER: zhangsan@example.com",
                "Subject: \(subject)",
            ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectSinkCount(1)
        let sent = try #require(try env.sink.messages().first)
        #expect(
            !sent.file.text.lowercased().contains("zhangsan@example.com"),
            "the staff address leaks to the customer: \(sent)\n\(env.diagnostics)")
        #expect(sent.file.values("From").count == 1, "\(sent)")
        #expect(sent.file.value("From")?.contains("sales@example.com") == true, "\(sent)")
        try env.expectMailboxes(["manager": 1])
    }

    @Test("Rule 3: logged in as zhangsan with another staff's envelope sender: refused, or no staff address leaks")
    func loginAndSenderDisagree() throws {
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "lisi@example.com", to: ["customer@customer.test"],
            message: message([
                "From: Lisi <lisi@example.com>", "To: customer@customer.test",
                "Subject: \(uniqueTag())",
            ]))
        for sent in try env.sink.messages() {
            let text = sent.file.text.lowercased()
            #expect(
                !text.contains("lisi@example.com") && !text.contains("zhangsan@example.com"),
                "a staff address leaks to the customer: \(sent)\n\(outcome)\n\(env.diagnostics)")
        }
    }

    @Test("Rule 3: the bounce of a staff reply goes to sales@ and so reaches the manager, never the void")
    func bounceOfStaffReply() throws {
        let subject = "Re: bounce \(uniqueTag())"
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: ["nobody@bounce.test"],
            message: message([
                #"From: "Zhang San" <zhangsan@example.com>"#, "To: nobody@bounce.test",
                "Subject: \(subject)",
            ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectSinkCount(0)
        // The manager's copy of the reply, and the bounce (sent to the rewritten envelope sender).
        let copies = try env.maildirs.messages("manager")
        #expect(copies.count == 2, "\(copies)\n\(env.diagnostics)")
        #expect(copies.contains { $0.value("From")?.contains("MAILER-DAEMON") == true }, "no bounce: \(copies)")
    }

    @Test("Rule 3: a staff without send_internet is refused at RCPT with 550 5.7.1")
    func staffWithoutSendInternetRefused() throws {
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "wangwu"), from: "wangwu@example.com", to: ["customer@customer.test"],
            message: message([
                "From: Wangwu <wangwu@example.com>", "To: customer@customer.test",
                "Subject: \(uniqueTag())",
            ]))
        let reply = try #require(outcome.rcpt.first, "\(outcome)")
        #expect(reply.code == 550, "\(outcome)\n\(env.diagnostics)")
        #expect(reply.text.contains("5.7.1"), "\(reply)")
        try env.expectSinkCount(0)
        try env.expectMailboxes([:])
    }

    @Test("Rule 3 via local submission: a staff without send_internet never reaches the Internet")
    func localSubmissionWithoutSendInternet() throws {
        let result = try env.postfix.sendmail(
            from: "wangwu@example.com", to: ["customer@customer.test"],
            message: message([
                "From: Wangwu <wangwu@example.com>", "To: customer@customer.test",
                "Subject: \(uniqueTag())",
            ]))
        // sendmail may fail or succeed (then the rejection becomes a bounce to wangwu@):
        // either is fine, as long as nothing goes out and nothing stays queued.
        try env.waitForDelivery()
        try env.expectSinkCount(0)
        let bounces = try env.maildirs.messages("wangwu")
        #expect(bounces.count <= 1, "\(bounces)")
        #expect(
            !result.succeeded || bounces.count == 1,
            "the sender is told neither by sendmail nor by a bounce: \(result)\n\(env.diagnostics)")
        #expect(try env.maildirs.messages("manager").isEmpty, "\(env.diagnostics)")
    }
}

/// Staff → staff (rule 5): internal mail is not shared mail; nothing is rewritten or copied.
@Suite("Internal: staff ↔ staff", .serialized, .e2eEnvironment())
struct InternalMailTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    @Test("Rule 5: zhangsan → lisi arrives untouched, without a manager copy")
    func staffToStaff() throws {
        let from = #"From: "Zhang San" <zhangsan@example.com>"#
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: ["lisi@example.com"],
            message: message([from, "To: Lisi <lisi@example.com>", "Subject: lunch? \(uniqueTag())"]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["lisi": 1])
        try env.expectSinkCount(0)
        let copy = try #require(try env.maildirs.messages("lisi").first)
        #expect(copy.value("From") == #""Zhang San" <zhangsan@example.com>"#, "\(copy)")
    }

    @Test("Rule 5: staff → sales@ is internal: the manager gets it once (Postfix's alias), no staff copies")
    func staffToUnifiedAddress() throws {
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: ["sales@example.com"],
            message: message([
                "From: Zhangsan <zhangsan@example.com>", "To: sales@example.com",
                "Subject: note for the manager \(uniqueTag())",
            ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1])
        try env.expectSinkCount(0)
    }

    @Test("Rule 5: the manager (a login that is no staff) → zhangsan is delivered untouched")
    func managerToStaff() throws {
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "manager"), from: "manager@example.com", to: ["zhangsan@example.com"],
            message: message([
                "From: Manager <manager@example.com>", "To: zhangsan@example.com",
                "Subject: please handle \(uniqueTag())",
            ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["zhangsan": 1])
        try env.expectSinkCount(0)
        let copy = try #require(try env.maildirs.messages("zhangsan").first)
        #expect(copy.value("From") == "Manager <manager@example.com>", "\(copy)")
    }
}
