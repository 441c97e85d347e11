import SeedTeam
import ShareMail
import Testing

/// Every address form Postfix accepts gets the verdict of its plain form, because the engine
/// classifies Postfix's resolution ({rcpt_addr}, {mail_addr}), not what the client wrote.
@Suite("Address forms: Postfix's resolution, not the written string")
struct AddressFormTests {
    let engine = try! seedEngine()

    /// An RCPT as Postfix passes it: written by the client, resolved by trivial-rewrite.
    static func rcpt(_ written: String, _ resolved: String?, _ parameters: [String] = []) -> EnvelopeAddress {
        EnvelopeAddress(written: written, resolved: resolved, parameters: parameters)
    }

    static let zhangsanForms: [EnvelopeAddress] = [
        rcpt("<zhangsan+tag@example.com>", "zhangsan+tag@example.com"),
        rcpt("<\"zhangsan\"@example.com>", "\"zhangsan\"@example.com"),
        rcpt("<\"zhangsan\"@example.com>", "zhangsan@example.com"),
        rcpt("<zhangsan@example.com.>", "zhangsan@example.com."),
        rcpt("<zhangsan>", "zhangsan@example.com"),
        rcpt("<example.com!zhangsan>", "zhangsan@example.com"),
        rcpt("<zhangsan%example.com@[127.0.0.1]>", "zhangsan@example.com"),
        rcpt("<ZhangSan+Other@EXAMPLE.com>", "ZhangSan+Other@EXAMPLE.com"),
    ]

    @Test("Internet → any form of a staff address without receive_internet: refused at RCPT", arguments: zhangsanForms)
    func staffFormsRefused(form: EnvelopeAddress) {
        let verdict = engine.checkRecipient(form, submission: internet, sender: "<c@customer.test>")
        guard case .reject(let reply, _) = verdict else {
            Issue.record("\(form): \(verdict)")
            return
        }
        #expect(reply.code == 550 && reply.text.contains("sales@example.com"), "\(reply)")
    }

    @Test("Internet → a form of a staff with receive_internet: that staff and the manager")
    func receivingStaffForm() {
        var facts = message(internet, from: "<c@customer.test>", to: [])
        facts.recipients = [Self.rcpt("<wangwu+quote@example.com>", "wangwu+quote@example.com")]
        #expect(engine.checkRecipient(facts.recipients[0], submission: internet, sender: facts.sender) == .accept)
        let d = engine.decide(facts)
        #expect(d.added == ["manager@example.com"])
        #expect(d.staff == [EmailAddress("wangwu@example.com")!])
    }

    @Test(
        "Internet → any form of the unified address: rule 1, the written recipient replaced by the manager",
        arguments: [
            rcpt("<sales+x@example.com>", "sales+x@example.com"), rcpt("<\"sales\"@example.com>", "\"sales\"@example.com"),
            rcpt("<sales@example.com.>", "sales@example.com."), rcpt("<example.com!sales>", "sales@example.com"),
            rcpt("<sales>", "sales@example.com"),
        ])
    func unifiedForms(form: EnvelopeAddress) {
        var facts = message(internet, from: "<c@customer.test>", to: [])
        facts.recipients = [form]
        let d = engine.decide(facts)
        #expect(d.removeRecipients == [form.written], "\(d.reasons)")
        #expect(d.added == ["manager@example.com", "zhangsan@example.com", "lisi@example.com", "wangwu@example.com"])
        #expect(d.rule == "unnamed")
    }

    @Test(
        "Staff → a bang path or percent hack Postfix relays to the Internet: rule 3, not rule 5",
        arguments: [
            rcpt("<customer.test!buyer>", "buyer@customer.test"),
            rcpt("<buyer%customer.test@[127.0.0.1]>", "buyer@customer.test"),
            rcpt("<buyer@customer.test.>", "buyer@customer.test"),
        ])
    func outboundForms(form: EnvelopeAddress) {
        var facts = message(
            staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: [],
            headers: [("From", "zhangsan@example.com"), ("Message-ID", "<m1@example.com>")])
        facts.recipients = [form]
        let d = engine.decide(facts)
        #expect(d.rule == "staff-out", "\(d.reasons)")
        #expect(d.envelopeSender == EmailAddress("sales@example.com"))
        #expect(d.added == ["manager@example.com"])
        #expect(
            d.memoryUpdates == [
                .sent(
                    messageID: "m1@example.com", staff: EmailAddress("zhangsan@example.com")!,
                    mailbox: EmailAddress("sales@example.com")!,
                    customers: [EmailAddress("buyer@customer.test")!])
            ])
        // And a staff who may not send is refused at RCPT, whatever the form.
        guard case .reject = engine.checkRecipient(form, submission: staffLogin("wangwu"), sender: "<wangwu@example.com>") else {
            Issue.record("wangwu → \(form) should be refused")
            return
        }
    }

    @Test("a recipient local(8) delivers by local part alone counts as the staff of that local part")
    func localTransportByLocalPart() {
        for resolved in ["zhangsan@mx.example.com", "zhangsan+x@localhost", "ZhangSan@[127.0.0.1]"] {
            var form = Self.rcpt("<\(resolved)>", resolved)
            form.mailer = "local"
            guard case .reject = engine.checkRecipient(form, submission: internet, sender: "<c@customer.test>") else {
                Issue.record("\(resolved) by local(8) is Zhangsan's mailbox: must be refused")
                continue
            }
            // Relayed elsewhere, the same string is somebody else's mailbox.
            form.mailer = "smtp"
            #expect(engine.checkRecipient(form, submission: internet, sender: "<c@customer.test>") == .accept, "\(resolved)")
        }
        var sales = Self.rcpt("<sales@mx.example.com>", "sales@mx.example.com")
        sales.mailer = "local"
        var facts = message(internet, from: "<c@customer.test>", to: [])
        facts.recipients = [sales]
        #expect(engine.decide(facts).added.first == "manager@example.com")
    }

    @Test("a local submission's envelope sender counts as Postfix resolved it (bare, +extension)")
    func localSenderForms() {
        for sender in [Self.rcpt("zhangsan", "zhangsan@example.com"), Self.rcpt("zhangsan+x@example.com", "zhangsan+x@example.com")] {
            let (role, _) = engine.role(of: localSubmission, sender: sender)
            #expect(role == .staff(engine.directory.staff(address: EmailAddress("zhangsan@example.com")!)!), "\(sender)")
        }
    }

    @Test("what Postfix did not resolve is deferred, never guessed")
    func unresolvedIsDeferred() {
        let unknown = Self.rcpt("<example.com!zhangsan>", nil)
        guard case .tempfail(let reply, _) = engine.checkRecipient(unknown, submission: internet, sender: "<c@customer.test>") else {
            Issue.record("an unresolved recipient must be deferred")
            return
        }
        #expect(reply.code == 451)
        let noSender = Self.rcpt("<example.com!zhangsan>", nil)
        #expect(
            engine.checkRecipient("<c@customer.test>", submission: localSubmission, sender: noSender)
                == .tempfail(PolicyEngine.cannotPlaceSender, reason: "the sender <example.com!zhangsan> has no resolved address sharemail can place"))
        var facts = message(localSubmission, from: "zhangsan@example.com", to: [])
        facts.recipients = [unknown]
        #expect(engine.decide(facts).action == .tempfail(PolicyEngine.cannotPlace))
    }

    @Test("a customer's own +extension is theirs: not folded outside local domains")
    func customerExtensionKept() {
        var facts = message(
            staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: [],
            headers: [("Message-ID", "<m2@example.com>")])
        facts.recipients = [Self.rcpt("<buyer+orders@customer.test>", "buyer+orders@customer.test")]
        let d = engine.decide(facts)
        guard case .sent(_, _, _, let customers) = d.memoryUpdates.first else {
            Issue.record("no sent record: \(d.memoryUpdates)")
            return
        }
        #expect(customers == [EmailAddress("buyer+orders@customer.test")!])
    }

    @Test("recipient_delimiter: none, or several characters, as Postfix reads them")
    func delimiterVariants() throws {
        let none = try ConfigurationLoader.load(text: "recipient_delimiter = \"\"\n" + seedTOML, file: "t").0
        let plain = PolicyEngine(configuration: none)
        #expect(
            plain.checkRecipient(
                Self.rcpt("<zhangsan+x@example.com>", "zhangsan+x@example.com"),
                submission: internet, sender: "<c@customer.test>") == .accept)
        let several = PolicyEngine(configuration: try ConfigurationLoader.load(text: "recipient_delimiter = \"+-\"\n" + seedTOML, file: "t").0)
        for form in ["zhangsan-x@example.com", "zhangsan+y-z@example.com"] {
            #expect(several.checkRecipient(Self.rcpt("<\(form)>", form), submission: internet, sender: "<c@customer.test>") != .accept, "\(form)")
        }
        #expect(throws: ConfigurationErrors.self) {
            try ConfigurationLoader.load(text: "recipient_delimiter = \"@\"\n" + seedTOML, file: "t")
        }
    }

    // MARK: DSN parameters

    @Test("an ENVID that names the staff is refused: Postfix keeps no change of it")
    func envelopeIDNamingStaff() {
        for envid in ["zhangsan+40example.com", "ZHANGSAN+40EXAMPLE.COM", "abc.zhangsan", "20261203%zhangsan+40example.com"] {
            let sender = Self.rcpt("<zhangsan@example.com>", "zhangsan@example.com", ["ENVID=\(envid)"])
            guard case .reject(let reply, _) = engine.checkRecipient("<buyer@customer.test>", submission: staffLogin("zhangsan"), sender: sender) else {
                Issue.record("ENVID=\(envid) should be refused")
                continue
            }
            #expect(reply.code == 550 && reply.text.contains("ENVID"))
            var facts = message(localSubmission, from: "zhangsan@example.com", to: ["buyer@customer.test"])
            facts.sender = sender
            guard case .reject = engine.decide(facts).action else {
                Issue.record("sendmail -V \(envid) should be refused at end of message")
                continue
            }
        }
        let harmless = Self.rcpt("<zhangsan@example.com>", "zhangsan@example.com", ["ENVID=QQ314159"])
        #expect(engine.checkRecipient("<buyer@customer.test>", submission: staffLogin("zhangsan"), sender: harmless) == .accept)
        // Internal and inbound mail may carry what it likes.
        let inbound = Self.rcpt("<c@customer.test>", "c@customer.test", ["ENVID=zhangsan+40example.com"])
        #expect(engine.checkRecipient("<sales@example.com>", submission: internet, sender: inbound) == .accept)
    }

    @Test("an ORCPT that names the staff: the recipient is removed and added back without it")
    func originalRecipientNamingStaff() {
        var facts = message(
            staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: [],
            headers: [("Message-ID", "<m3@example.com>")])
        let tainted = Self.rcpt("<buyer@customer.test>", "buyer@customer.test", ["NOTIFY=SUCCESS", "ORCPT=rfc822;zhangsan+40example.com"])
        let clean = Self.rcpt("<other@customer.test>", "other@customer.test", ["ORCPT=rfc822;other+40customer.test"])
        facts.recipients = [tainted, clean]
        let d = engine.decide(facts)
        #expect(d.strippedRecipients == [tainted])
        #expect(d.isAccept)
    }

    // MARK: Only the manager reassigns

    static let redirectHeaders = [
        ("Resent-From", "manager@example.com"), ("Resent-To", "lisi@example.com"),
        ("Message-ID", "<customer-9@customer.test>"),
    ]

    @Test(
        "a Resent-* redirect assigns only when the manager sends it",
        arguments: [
            (staffLogin("manager"), "<manager@example.com>", true),
            (staffLogin("outsider"), "<manager@example.com>", false),
            (staffLogin("outsider"), "<outsider@example.com>", false),
            (localSubmission, "manager@example.com", true),
            (localSubmission, "someone@example.com", false),
            (Submission(channel: .smtp, clientAddress: IPAddress("10.1.2.3")), "<manager@example.com>", true),
            (Submission(channel: .smtp, clientAddress: IPAddress("10.1.2.3")), "<webmail@example.com>", false),
        ])
    func onlyTheManagerReassigns(submission: Submission, sender: String, assigns: Bool) {
        let d = engine.decide(message(submission, from: sender, to: ["<lisi@example.com>"], headers: Self.redirectHeaders))
        #expect(d.memoryUpdates.isEmpty != assigns, "\(submission) \(sender): \(d.reasons)")
        #expect(!d.changesMessage)
    }

    @Test("a staff's forged redirect assigns nothing (and is plain staff mail)")
    func staffCannotReassign() {
        let d = engine.decide(
            message(
                staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: ["<lisi@example.com>"],
                headers: Self.redirectHeaders))
        #expect(d.memoryUpdates.isEmpty)
    }
}
