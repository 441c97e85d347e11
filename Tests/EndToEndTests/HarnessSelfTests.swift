import PostfixLab
import Testing

/// Proves the harness with Postfix alone (no milter): if these fail, the E2E failures of the
/// other suites say nothing about sharemail.
@Suite("Harness: private Postfix without milter", .serialized, .postfixOnly)
struct HarnessSelfTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    @Test("Internet → manager@ lands in the manager's Maildir")
    func internetToLocalMailbox() throws {
        let tag = uniqueTag()
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["manager@example.com"],
            message: message(["From: customer@customer.test", "To: manager@example.com", "Subject: \(tag)"]))
        #expect(outcome.accepted, "\(outcome)")
        try env.expectMailboxes(["manager": 1])
        try env.expectSinkCount(0)
        let copy = try #require(try env.maildirs.messages("manager").first)
        #expect(copy.value("Subject") == tag)
    }

    @Test("Without a milter, Postfix's virtual alias delivers sales@ to the manager")
    func salesSafetyNet() throws {
        try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"],
            message: message(["From: customer@customer.test", "To: sales@example.com", "Subject: \(uniqueTag())"]))
        try env.expectMailboxes(["manager": 1])
    }

    @Test("An Internet client may not relay: 554 at RCPT, nothing leaves")
    func internetCannotRelay() throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["someone@other.test"],
            message: message(["Subject: \(uniqueTag())"]))
        #expect(outcome.rcpt.first?.code == 554, "\(outcome)")
        #expect(outcome.data == nil)
        try env.expectSinkCount(0)
    }

    @Test("A staff login (XCLIENT LOGIN=) relays to the Internet, which the sink records")
    func staffRelaysToSink() throws {
        let tag = uniqueTag()
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: ["customer@customer.test"],
            message: message(["From: zhangsan@example.com", "To: customer@customer.test", "Subject: \(tag)"]))
        #expect(outcome.accepted, "\(outcome)")
        try env.expectSinkCount(1)
        let sent = try #require(try env.sink.messages().first)
        #expect(sent.envelopeSender == "zhangsan@example.com")
        #expect(sent.envelopeRecipients == ["customer@customer.test"])
        #expect(sent.file.value("Subject") == tag)
        try env.expectMailboxes([:])
        #expect(env.postfix.maillog(since: 0).contains("sasl_username=zhangsan"))
    }

    @Test("Local submission with sendmail -C reaches the sink")
    func localSubmission() throws {
        let tag = uniqueTag()
        let result = try env.postfix.sendmail(
            from: "zhangsan@example.com", to: ["customer@customer.test"],
            message: message(["From: zhangsan@example.com", "To: customer@customer.test", "Subject: \(tag)"]))
        #expect(result.succeeded, "\(result)")
        try env.waitForDelivery()
        try env.expectSinkCount(1)
        #expect(try env.sink.messages().first?.envelopeSender == "zhangsan@example.com")
    }

    @Test("The SMTP client survives long folded headers and 8-bit bytes")
    func bigAndRawHeaders() throws {
        let to = "To: " + (0..<3000).map { "user\($0)@customer.test" }.joined(separator: ",\r\n ")
        var header = Array("From: customer@customer.test\r\nSubject: ".utf8) + (0x80...0xFF).map { UInt8($0) }
        header += Array("\r\n\(to)\r\n.Dotted: header-line-starting-with-dot".utf8)
        try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["manager@example.com"],
            message: rawMessage(header, body: ".\r\n..\r\nend"))
        try env.expectMailboxes(["manager": 1])
        let copy = try #require(try env.maildirs.messages("manager").first)
        // Postfix's cleanup keeps only header_address_token_limit (10240) tokens of an address
        // header, about 1,700 of these addresses; the rest is dropped by Postfix, not the client.
        #expect(copy.text.contains("user1000@customer.test"))
        #expect(copy.text.contains("\n.\n..\nend") || copy.text.contains("\r\n.\r\n..\r\nend"))
    }
}
