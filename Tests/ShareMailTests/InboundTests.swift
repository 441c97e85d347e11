import ShareMail
import Testing

@Suite("Rules 1, 2 and 4: mail from the Internet")
struct InboundTests {
    let engine: PolicyEngine
    init() throws { engine = try seedEngine() }

    @Test("rule 1: unnamed mail to the unified address goes to the manager and, with forward_unnamed, all staff")
    func unnamedFansOut() {
        let d = engine.decide(
            message(
                internet, from: "<customer@customer.test>", to: ["<sales@example.com>"],
                headers: [("To", "sales@example.com"), ("Subject", "Hello")]))
        #expect(d.isAccept)
        #expect(d.role == .internet)
        #expect(d.removeRecipients == ["<sales@example.com>"])
        #expect(d.added == ["manager@example.com", "zhangsan@example.com", "lisi@example.com", "wangwu@example.com"])
        #expect(d.headerChanges.isEmpty)
        #expect(d.envelopeSender == nil)
    }

    @Test("rule 1: without forward_unnamed only the manager gets it; a mailbox that is its own manager keeps its recipient")
    func unnamedWithoutForwarding() {
        let d = engine.decide(
            message(
                internet, from: "<c@customer.test>", to: ["<support@example.org>"],
                headers: [("To", "support@example.org")]))
        #expect(d.removeRecipients.isEmpty)
        #expect(d.added.isEmpty)
        #expect(d.reasons.contains { $0.contains("forward_unnamed is off") })
    }

    @Test("rule 1: the manager gets exactly one copy when already a recipient")
    func managerNotDoubled() {
        let d = engine.decide(
            message(
                internet, from: "<c@customer.test>",
                to: ["<sales@example.com>", "<manager@example.com>"],
                headers: [("To", "sales@example.com, manager@example.com")]))
        #expect(!d.added.contains("manager@example.com"))
        #expect(d.removeRecipients == ["<sales@example.com>"])
    }

    @Test(
        "rule 4: a display name routes to that staff only",
        arguments: [
            "\"Zhangsan\" <sales@example.com>",
            "\"zhangsan\" <sales@example.com>",
            "\"  Zhangsan \" <sales@example.com>",
            "Zhangsan <sales@example.com>",
            "ZHANGSAN <Sales@Example.COM>",
            "=?UTF-8?B?WmhhbmdzYW4=?= <sales@example.com>",
            "=?utf-8?q?Zhang_San?= <sales@example.com>",
            "\"Zhang  San\" <sales@example.com>",
            "=?UTF-8?B?5byg5LiJ?= <sales@example.com>",
            "张三 <sales@example.com>",
            "Ｚｈａｎｇｓａｎ <sales@example.com>",
            "customer@customer.test, \"Zhangsan\"\n\t<sales@example.com>",
        ])
    func namedStaff(to: String) {
        let d = engine.decide(
            message(
                internet, from: "<c@customer.test>", to: ["<sales@example.com>"],
                headers: [("To", to)]))
        #expect(d.added == ["manager@example.com", "zhangsan@example.com"])
        #expect(d.removeRecipients == ["<sales@example.com>"])
    }

    @Test("rule 4: a name in Cc counts like one in To")
    func namedInCc() {
        let d = engine.decide(
            message(
                internet, from: "<c@customer.test>", to: ["<sales@example.com>"],
                headers: [("To", "other@customer.test"), ("Cc", "\"Lisi\" <sales@example.com>")]))
        #expect(d.added == ["manager@example.com", "lisi@example.com"])
    }

    @Test("rule 4: several names reach each named staff, and nobody else")
    func severalNames() {
        let d = engine.decide(
            message(
                internet, from: "<c@customer.test>", to: ["<sales@example.com>"],
                headers: [("To", "\"Zhangsan\" <sales@example.com>"), ("Cc", "Lisi <sales@example.com>")]))
        #expect(d.added == ["manager@example.com", "zhangsan@example.com", "lisi@example.com"])
    }

    @Test("rule 4: an unknown name falls back to rule 1")
    func unknownName() {
        let d = engine.decide(
            message(
                internet, from: "<c@customer.test>", to: ["<sales@example.com>"],
                headers: [("To", "\"Nobody\" <sales@example.com>")]))
        #expect(d.added == ["manager@example.com", "zhangsan@example.com", "lisi@example.com", "wangwu@example.com"])
        #expect(d.reasons.contains { $0.contains("matches no staff") })
    }

    @Test("rule 4: a staff name on another address does not count")
    func nameOnOtherAddress() {
        let d = engine.decide(
            message(
                internet, from: "<c@customer.test>", to: ["<sales@example.com>"],
                headers: [("To", "\"Zhangsan\" <zhangsan@elsewhere.test>, sales@example.com")]))
        #expect(d.added.count == 4)
    }

    @Test("rule 4: a name of another mailbox's staff does not route here")
    func nameOfOtherMailbox() {
        let d = engine.decide(
            message(
                internet, from: "<c@customer.test>", to: ["<sales@example.com>"],
                headers: [("To", "\"Zhaoliu\" <sales@example.com>")]))
        #expect(!d.added.contains("zhaoliu@example.org"))
        #expect(d.added.count == 4)
    }

    @Test("rule 2: Internet mail to a staff address is refused at RCPT, naming the unified address")
    func staffRefusesInternet() {
        let verdict = engine.checkRecipient("<zhangsan@example.com>", submission: internet, sender: "<c@customer.test>")
        guard case .reject(let reply, _) = verdict else {
            Issue.record("expected a reject, got \(verdict)")
            return
        }
        #expect(reply.code == 550)
        #expect(reply.enhancedCode == "5.7.1")
        #expect(reply.text.contains("sales@example.com"))
    }

    @Test("rule 2: a staff with receive_internet gets it, and so does the manager")
    func staffReceivesInternet() {
        #expect(engine.checkRecipient("<wangwu@example.com>", submission: internet, sender: "<c@customer.test>") == .accept)
        let d = engine.decide(
            message(
                internet, from: "<c@customer.test>", to: ["<wangwu@example.com>"],
                headers: [("To", "wangwu@example.com")]))
        #expect(d.added == ["manager@example.com"])
        #expect(d.removeRecipients.isEmpty)
    }

    @Test("a spoofed staff envelope sender from the Internet is still Internet mail")
    func spoofedStaffSender() {
        let (role, why) = engine.role(of: internet, sender: "<zhangsan@example.com>")
        #expect(role == .internet)
        #expect(why.contains("not authenticated"))
        let d = engine.decide(
            message(
                internet, from: "<zhangsan@example.com>", to: ["<sales@example.com>"],
                headers: [("From", "Zhangsan <zhangsan@example.com>"), ("To", "sales@example.com")]))
        #expect(d.envelopeSender == nil)
        #expect(d.change("From") == nil)
        #expect(d.added.count == 4)
        #expect(engine.checkRecipient("<lisi@example.com>", submission: internet, sender: "<zhangsan@example.com>") != .accept)
    }

    @Test("Internet mail to other local addresses passes untouched")
    func otherLocal() {
        let d = engine.decide(
            message(
                internet, from: "<c@customer.test>", to: ["<manager@example.com>", "<info@example.com>"],
                headers: [("To", "manager@example.com")]))
        #expect(!d.changesMessage)
    }
}
