import Foundation
import SeedTeam
import ShareMail
import Testing

@Suite("Rules 3 and 5: mail from staff and other internal senders")
struct OutboundTests {
    let engine: PolicyEngine
    init() throws { engine = try seedEngine() }

    let leakyHeaders: [(String, String)] = [
        ("From", "\"Zhang San\" <zhangsan@example.com>"),
        ("Sender", "zhangsan@example.com"),
        ("Reply-To", "zhangsan@example.com"),
        ("To", "Customer <customer@customer.test>"),
        ("Cc", "lisi@example.com, \"Zhangsan (me)\" <ZhangSan@Example.com>"),
        ("Disposition-Notification-To", "zhangsan@example.com"),
        ("Return-Receipt-To", "<zhangsan@example.com>"),
        ("Errors-To", "zhangsan@example.com"),
        ("X-Mailer-Account", "account zhangsan@example.com (work)"),
        ("Subject", "Your quote"),
    ]

    @Test("rule 3: From, envelope sender and every header lose the staff address")
    func rewrite() throws {
        let d = engine.decide(
            message(
                staffLogin("zhangsan"), from: "<zhangsan@example.com>",
                to: ["<customer@customer.test>"], headers: leakyHeaders))
        #expect(d.isAccept)
        #expect(d.envelopeSender?.value == "sales@example.com")
        #expect(d.added == ["manager@example.com"])
        #expect(try #require(d.change("From")).value == "Zhangsan <sales@example.com>")
        #expect(d.deletes("Sender") == [1])
        #expect(try #require(d.change("Reply-To")).value == "Zhangsan <sales@example.com>")
        #expect(try #require(d.change("Cc")).value == "Lisi <sales@example.com>, Zhangsan <sales@example.com>")
        #expect(try #require(d.change("Disposition-Notification-To")).value == "Zhangsan <sales@example.com>")
        #expect(try #require(d.change("Return-Receipt-To")).value == "Zhangsan <sales@example.com>")
        #expect(try #require(d.change("Errors-To")).value == "Zhangsan <sales@example.com>")
        #expect(try #require(d.change("X-Mailer-Account")).value == "account sales@example.com (work)")
        #expect(d.change("To") == nil)
        #expect(d.change("Subject") == nil)
        #expect(try #require(d.adds("Message-ID")).value == "<token@example.com>")

        // Nothing that leaves names a staff mailbox.
        let written = d.headerChanges.compactMap(\.value).joined(separator: "\n").lowercased()
        for staff in ["zhangsan@example.com", "lisi@example.com"] { #expect(!written.contains(staff)) }
    }

    @Test("rule 3: an existing Message-ID is kept; extra From and Sender headers are deleted last-first")
    func duplicates() {
        let d = engine.decide(
            message(
                staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: ["<c@customer.test>"],
                headers: [
                    ("From", "zhangsan@example.com"), ("Message-ID", "<abc@client>"),
                    ("From", "x@y.test"), ("Sender", "a@b.test"), ("From", "z@y.test"),
                    ("Sender", "zhangsan@example.com"),
                ]))
        #expect(d.adds("Message-ID") == nil)
        #expect(d.deletes("From") == [3, 2])
        #expect(d.deletes("Sender") == [2, 1])
    }

    @Test("rule 3: a staff who copies the unified address gives the manager one copy, not two")
    func copyToUnified() {
        let d = engine.decide(
            message(
                staffLogin("zhangsan"), from: "<zhangsan@example.com>",
                to: ["<c@customer.test>", "<sales@example.com>"], headers: [("Cc", "sales@example.com")]))
        #expect(d.removeRecipients == ["<sales@example.com>"])
        #expect(d.added == ["manager@example.com"])
    }

    @Test("rule 3: a message without From gets one")
    func missingFrom() {
        let d = engine.decide(message(staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: ["<c@customer.test>"]))
        #expect(d.adds("From")?.value == "Zhangsan <sales@example.com>")
    }

    @Test("rule 3: a non-ASCII name is RFC 2047 encoded, raw only with SMTPUTF8")
    func encodedName() throws {
        let toml = seedTOML.replacingOccurrences(of: "name = \"Lisi\"", with: "name = \"李四\"")
        let engine = PolicyEngine(configuration: try ConfigurationLoader.load(text: toml, file: "t").0)
        let plain = engine.decide(
            message(
                staffLogin("lisi"), from: "<lisi@example.com>", to: ["<c@customer.test>"],
                headers: [("From", "lisi@example.com")]))
        let from = try #require(plain.change("From")?.value)
        #expect(from.hasPrefix("=?UTF-8?"))
        #expect(from.hasSuffix("<sales@example.com>"))
        #expect(from.unicodeScalars.allSatisfy { $0.isASCII })
        let utf8 = engine.decide(
            message(
                staffLogin("lisi"), from: "<lisi@example.com>", to: ["<c@customer.test>"],
                headers: [("From", "lisi@example.com")], smtpUTF8: true))
        let raw = try #require(utf8.change("From")?.value)
        #expect(raw == "\"李四\" <sales@example.com>" || raw == "李四 <sales@example.com>")
    }

    @Test("rule 3: a staff who may not send is refused at RCPT over SMTP")
    func refusedAtRcpt() {
        let verdict = engine.checkRecipient("<c@customer.test>", submission: staffLogin("wangwu"), sender: "<wangwu@example.com>")
        guard case .reject(let reply, _) = verdict else {
            Issue.record("expected reject, got \(verdict)")
            return
        }
        #expect(reply.code == 550 && reply.enhancedCode == "5.7.1")
        // Local recipients stay allowed.
        #expect(engine.checkRecipient("<lisi@example.com>", submission: staffLogin("wangwu"), sender: "<wangwu@example.com>") == .accept)
    }

    @Test("rule 3: from the sendmail command the refusal waits for end of message")
    func refusedAtEndOfMessage() {
        #expect(engine.checkRecipient("c@customer.test", submission: localSubmission, sender: "wangwu@example.com") == .accept)
        let d = engine.decide(message(localSubmission, from: "wangwu@example.com", to: ["c@customer.test"]))
        guard case .reject(let reply) = d.action else {
            Issue.record("expected reject, got \(d.action)")
            return
        }
        #expect(reply.code == 550)
        #expect(!d.changesMessage)
    }

    @Test("rule 3: local submission with a staff envelope sender is staff mail")
    func localStaff() {
        let d = engine.decide(
            message(
                localSubmission, from: "zhangsan@example.com", to: ["customer@customer.test"],
                headers: [("From", "zhangsan@example.com")]))
        #expect(d.envelopeSender?.value == "sales@example.com")
        #expect(d.added == ["manager@example.com"])
    }

    @Test(
        "rule 3: a trusted client with a staff envelope sender is staff; untrusted is not",
        arguments: [
            ("10.1.2.3", true), ("2001:db8:1::5", true), ("::ffff:10.1.0.9", true), ("10.2.0.1", false), ("198.51.100.7", false),
        ])
    func trustedNetworks(client: String, staff: Bool) {
        let submission = Submission(channel: .smtp, clientAddress: IPAddress(client))
        let (role, _) = engine.role(of: submission, sender: "<zhangsan@example.com>")
        #expect((role == .internet) != staff)
    }

    @Test("rule 3: the null sender stays null")
    func nullSender() {
        let d = engine.decide(
            message(
                staffLogin("zhangsan"), from: "<>", to: ["<c@customer.test>"],
                headers: [("From", "zhangsan@example.com")]))
        #expect(d.envelopeSender == nil)
        #expect(d.change("From") != nil)
    }

    @Test("rule 5: staff to staff and staff to the manager pass untouched")
    func localOnly() {
        // A bare <postmaster> as Postfix resolves it: with @$myorigin appended, or left bare
        // (append_at_myorigin = no) for a local account.
        let recipients: [EnvelopeAddress] = [
            "<lisi@example.com>", "<manager@example.com>", "<sales@example.com>", "<info@example.com>",
            EnvelopeAddress(written: "<postmaster>", resolved: "postmaster@example.com"),
            EnvelopeAddress(written: "<postmaster>", resolved: "postmaster"),
        ]
        for rcpt in recipients {
            var facts = message(
                staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: [],
                headers: [("From", "zhangsan@example.com")])
            facts.recipients = [rcpt]
            let d = engine.decide(facts)
            #expect(!d.changesMessage, "\(rcpt)")
            #expect(d.isAccept)
        }
    }

    @Test("rule 5: the manager (authenticated, not staff) writes to a staff who refuses Internet mail")
    func managerToStaff() {
        #expect(
            engine.checkRecipient(
                "<zhangsan@example.com>", submission: staffLogin("manager"),
                sender: "<manager@example.com>") == .accept)
        let d = engine.decide(message(staffLogin("manager"), from: "<manager@example.com>", to: ["<zhangsan@example.com>"]))
        #expect(!d.changesMessage)
        #expect(d.role == .internal)
    }

    @Test("a From header alone never makes anyone staff")
    func fromHeaderIsNotIdentity() {
        let d = engine.decide(
            message(
                staffLogin("manager"), from: "<manager@example.com>", to: ["<c@customer.test>"],
                headers: [("From", "zhangsan@example.com")]))
        #expect(!d.changesMessage)
    }

    @Test("rule 6: only configured addresses are ever added")
    func onlyConfiguredAdded() throws {
        let configured = Set(engine.configuration.mailboxes.flatMap { [$0.address, $0.manager] + $0.staff.map(\.address) })
        let inputs = [
            message(
                internet, from: "<a@b.test>", to: ["<sales@example.com>"], headers: [("To", "\"Evil\" <evil@attacker.test>, \"Zhangsan\" <sales@example.com>")]),
            message(staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: ["<x@y.test>"], headers: [("Cc", "evil@attacker.test")]),
            message(internet, from: "<a@b.test>", to: ["<wangwu@example.com>", "<sales@example.com>"]),
        ]
        for input in inputs {
            for added in engine.decide(input).addRecipients { #expect(configured.contains(added)) }
        }
    }
}
