import Foundation
import SeedTeam
import ShareMail
import Testing

@Suite("Routing with conversation memory (issue 5)")
struct MemoryTests {
    let engine: PolicyEngine
    let sales = EmailAddress("sales@example.com")!
    let zhangsan = EmailAddress("zhangsan@example.com")!
    let lisi = EmailAddress("lisi@example.com")!

    init() throws {
        let toml = seedTOML.replacingOccurrences(of: "forward_unnamed = true", with: "forward_unnamed = true\nsticky_customers = true")
        engine = PolicyEngine(configuration: try ConfigurationLoader.load(text: toml, file: "t").0)
    }

    func reply(_ headers: [(String, String)], memory: ConversationMemory? = nil, sender: String = "<c@customer.test>") -> Decision {
        var facts = message(internet, from: sender, to: ["<sales@example.com>"], headers: headers)
        if let memory { facts.memory = [sales: memory] }
        return engine.decide(facts)
    }

    @Test("queries carry In-Reply-To first, then References newest first, and the customer")
    func queries() {
        let facts = message(
            internet, from: "<c@customer.test>", to: ["<sales@example.com>", "<lisi@example.com>"],
            headers: [("References", "<a@x> <b@x> <c@x>"), ("In-Reply-To", "<c@x>")])
        let queries = engine.memoryQueries(facts)
        // sales@ has sticky_customers: the engine asks for the last staff too.
        #expect(
            queries == [
                MemoryQuery(
                    mailbox: sales, messageIDs: ["c@x", "b@x", "a@x"], customer: EmailAddress("c@customer.test"),
                    lastStaff: true)
            ])
        #expect(engine.memoryQueries(message(staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: ["<c@customer.test>"])).isEmpty)
        // The names in any case.
        let lower = message(
            internet, from: "<c@customer.test>", to: ["<sales@example.com>"],
            headers: [("REFERENCES", "<a@x> <b@x> <c@x>"), ("in-reply-to", "<c@x>")])
        #expect(engine.memoryQueries(lower).first?.messageIDs == ["c@x", "b@x", "a@x"])
    }

    @Test("the thread owner wins over a stale name in To")
    func threadBeatsName() {
        let d = reply(
            [("To", "\"Lisi\" <sales@example.com>"), ("In-Reply-To", "<m1@example.com>")],
            memory: ConversationMemory(threadOwner: zhangsan))
        #expect(d.added == ["manager@example.com", "zhangsan@example.com"])
        #expect(d.rule == "thread")
    }

    @Test("an explicit reassignment wins over the thread owner")
    func assignmentBeatsThread() {
        let d = reply([("To", "sales@example.com")], memory: ConversationMemory(assigned: lisi, threadOwner: zhangsan))
        #expect(d.added == ["manager@example.com", "lisi@example.com"])
        #expect(d.rule == "assigned")
    }

    @Test("a name wins over stickiness; stickiness wins over fan-out")
    func stickyOrder() {
        let named = reply([("To", "\"Lisi\" <sales@example.com>")], memory: ConversationMemory(lastStaff: zhangsan))
        #expect(named.added == ["manager@example.com", "lisi@example.com"])
        let sticky = reply([("To", "sales@example.com")], memory: ConversationMemory(lastStaff: zhangsan))
        #expect(sticky.added == ["manager@example.com", "zhangsan@example.com"])
        #expect(sticky.rule == "sticky")
    }

    @Test("the engine asks for the last staff only where the mailbox is sticky")
    func lastStaffOnlyWhenSticky() throws {
        let plain = PolicyEngine(configuration: try ConfigurationLoader.load(text: seedTOML, file: "t").0)
        let facts = message(internet, from: "<c@customer.test>", to: ["<sales@example.com>"], headers: [("In-Reply-To", "<m@x>")])
        #expect(plain.memoryQueries(facts).map(\.lastStaff) == [false])
        #expect(engine.memoryQueries(facts).map(\.lastStaff) == [true])
    }

    @Test("a stale assignment (staff since removed) gives way to a live thread owner")
    func staleAssignmentLiveThreadOwner() {
        let d = reply(
            [("To", "\"Lisi\" <sales@example.com>"), ("In-Reply-To", "<m1@example.com>")],
            memory: ConversationMemory(assigned: EmailAddress("gone@example.com"), threadOwner: zhangsan))
        #expect(d.added == ["manager@example.com", "zhangsan@example.com"])
        #expect(d.rule == "thread")
    }

    @Test("memory naming someone who is no longer staff of this mailbox is ignored")
    func staleMemory() {
        let d = reply(
            [("To", "sales@example.com")],
            memory: ConversationMemory(assigned: EmailAddress("gone@example.com"), threadOwner: EmailAddress("zhaoliu@example.org")))
        #expect(d.added.count == 4)
        #expect(d.rule == "unnamed")
    }

    @Test(
        "auto-generated mail is never fanned out",
        arguments: [
            [("Auto-Submitted", "auto-replied")], [("Precedence", "bulk")], [("Precedence", "list")], [("X-Autoreply", "yes")],
            // Header names and these values compare without regard to case.
            [("auto-submitted", "Auto-Generated")], [("PRECEDENCE", "Junk")], [("x-AUTORESPOND", "")],
        ])
    func autoGenerated(headers: [(String, String)]) {
        let d = reply(headers + [("To", "sales@example.com")])
        #expect(d.added == ["manager@example.com"])
        #expect(d.rule == "auto")
    }

    @Test(
        "only those names and values make mail auto-generated",
        arguments: [
            [("Auto-Submitted", "no")], [("Precedence", "first-class")], [("Auto-Submitted-By", "robot")],
            [("X-Precedence", "bulk")], [("Auto-Submıtted", "auto-replied")],  // a dotless ı is not an i
        ])
    func notAutoGenerated(headers: [(String, String)]) {
        #expect(reply(headers + [("To", "sales@example.com")]).rule == "unnamed")
    }

    @Test("auto-generated mail goes to the manager only, even when it names a staff or the customer is sticky")
    func autoBeatsNameAndSticky() {
        let named = reply([("Auto-Submitted", "auto-replied"), ("To", "\"Lisi\" <sales@example.com>")])
        #expect(named.added == ["manager@example.com"])
        let sticky = reply([("Precedence", "bulk"), ("To", "sales@example.com")], memory: ConversationMemory(lastStaff: zhangsan))
        #expect(sticky.added == ["manager@example.com"])
        let threaded = reply([("Auto-Submitted", "auto-replied")], memory: ConversationMemory(threadOwner: lisi, lastStaff: zhangsan))
        #expect(threaded.added == ["manager@example.com", "lisi@example.com"])
    }

    @Test("a bounce (null sender) goes to the thread owner, else to the manager only")
    func bounce() {
        #expect(reply([], sender: "<>").added == ["manager@example.com"])
        #expect(reply([], memory: ConversationMemory(threadOwner: lisi), sender: "<>").added == ["manager@example.com", "lisi@example.com"])
        #expect(reply([("Auto-Submitted", "no")]).added.count == 4)
    }

    @Test("a store that did not answer is said in the reasons; routing falls back to names")
    func unavailable() {
        var facts = message(internet, from: "<c@customer.test>", to: ["<sales@example.com>"], headers: [("To", "Lisi <sales@example.com>")])
        facts.memoryUnavailable = true
        let d = engine.decide(facts)
        #expect(d.added == ["manager@example.com", "lisi@example.com"])
        #expect(d.reasons.contains { $0.contains("did not answer") })
    }

    @Test("staff mail to the Internet is remembered under the Message-ID it leaves with")
    func sentRecord() {
        let kept = engine.decide(
            message(
                staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: ["<C@Customer.test>"],
                headers: [("Message-ID", "<abc@client>")]))
        #expect(
            kept.memoryUpdates == [
                .sent(
                    messageID: "abc@client", staff: zhangsan, mailbox: sales,
                    customers: [EmailAddress("c@customer.test")!])
            ])
        let added = engine.decide(message(staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: ["<c@customer.test>"]))
        #expect(
            added.memoryUpdates.first
                == .sent(
                    messageID: "token@example.com", staff: zhangsan, mailbox: sales,
                    customers: [EmailAddress("c@customer.test")!]))
        #expect(engine.decide(message(staffLogin("zhangsan"), from: "<zhangsan@example.com>", to: ["<lisi@example.com>"])).memoryUpdates.isEmpty)
    }

    @Test("the manager redirecting a customer's message to a staff assigns its thread")
    func redirect() {
        let d = engine.decide(
            message(
                staffLogin("manager"), from: "<manager@example.com>", to: ["<lisi@example.com>"],
                headers: [
                    ("Resent-From", "manager@example.com"), ("Resent-To", "lisi@example.com"),
                    ("Message-ID", "<customer-1@customer.test>"), ("From", "c@customer.test"),
                ]))
        #expect(d.memoryUpdates == [.assignThread(messageID: "customer-1@customer.test", staff: lisi, mailbox: sales)])
        #expect(!d.changesMessage)
        // Without Resent-* it is plain internal mail.
        let plain = engine.decide(
            message(
                staffLogin("manager"), from: "<manager@example.com>", to: ["<lisi@example.com>"],
                headers: [("Message-ID", "<x@y>")]))
        #expect(plain.memoryUpdates.isEmpty)
    }
}

@Suite("Reading a bounce for the message it quotes")
struct BounceScannerTests {
    @Test("a DSN's text/rfc822-headers part gives the original Message-ID, across chunk boundaries")
    func dsn() {
        let body = """
            --boundary\r
            Content-Type: message/delivery-status\r
            \r
            Reporting-MTA: dns; mx.customer.test\r
            \r
            --boundary\r
            Content-Type: text/rfc822-headers\r
            \r
            From: Zhangsan <sales@example.com>\r
            message-id:\r
             <staff-1@example.com>\r
            Message-ID: <second@example.com>\r
            """
        var scanner = BounceScanner()
        let bytes = Array(body.utf8)
        for start in stride(from: 0, to: bytes.count, by: 7) { scanner.feed(bytes[start..<min(start + 7, bytes.count)]) }
        scanner.feed(Array("\r\n".utf8))
        #expect(scanner.messageIDs == ["staff-1@example.com", "second@example.com"])
    }

    @Test("it reads no more than its limit")
    func limit() {
        var scanner = BounceScanner(limit: 100)
        scanner.feed([UInt8](repeating: 0x41, count: 1_000))
        #expect(!scanner.wantsMore)
    }

    @Test("only bounces and reports are scanned")
    func wants() {
        #expect(BounceScanner.wants(sender: "<>", headers: []))
        #expect(BounceScanner.wants(sender: "<a@b.test>", headers: [Header(name: "Content-Type", value: "multipart/report; report-type=delivery-status")]))
        #expect(!BounceScanner.wants(sender: "<a@b.test>", headers: [Header(name: "Content-Type", value: "text/plain")]))
    }

    @Test("a bounce's quoted Message-ID is asked about after In-Reply-To and References")
    func queryOrder() throws {
        let engine = try seedEngine()
        var facts = message(internet, from: "<>", to: ["<sales@example.com>"], headers: [("In-Reply-To", "<a@x>")])
        facts.bodyMessageIDs = ["staff-1@example.com", "a@x"]
        #expect(engine.memoryQueries(facts).first?.messageIDs == ["a@x", "staff-1@example.com"])
    }
}
