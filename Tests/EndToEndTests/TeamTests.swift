import Foundation
import PostfixLab
import Testing

/// Issue 13 through a real Postfix: round-robin (one host on SQLite, two hosts sharing one
/// PostgreSQL database), away with and without a backup, the From-name template out and back
/// in, `sharemail pending` and its gauges before and after a staff reply, `sharemail forget`.

/// The team: Zhangsan and Lisi take new conversations in turn; Wangwu is away.
enum TeamConfig {
    static let staff = ["zhangsan", "lisi", "wangwu"]
    /// The one-host suite's metrics endpoint.
    static let metricsPort: UInt16 = (try? freeLoopbackPort()) ?? 9_399

    /// `wangwuBackup`: Wangwu's `backup`, if any; `metricsPort`: serve metrics there.
    static func text(state: String, metricsPort: UInt16? = nil, wangwuBackup: String? = nil) -> String {
        """
        socket = "unix:/unused/milter.sock"   # overridden by --socket
        socket_group = "postfix"
        socket_mode = "0660"
        state = "\(state)"
        \(metricsPort.map { "metrics = \"127.0.0.1:\($0)\"" } ?? "")

        [[mailbox]]
        address = "sales@example.com"
        manager = "manager@example.com"
        manager_login = "manager"
        unnamed = "round-robin"
        from_name = "{name} | Example Sales"

          [[mailbox.staff]]
          name = "Zhangsan"
          address = "zhangsan@example.com"
          login = "zhangsan"

          [[mailbox.staff]]
          name = "Lisi"
          address = "lisi@example.com"
          login = "lisi"

          [[mailbox.staff]]
          name = "Wangwu"
          address = "wangwu@example.com"
          login = "wangwu"
          away = true
        \(wangwuBackup.map { "  backup = \"\($0)\"" } ?? "")

        """
    }
}

/// Steps of the team suites.
struct TeamSteps {
    let env: MemoryEnvironment

    /// A customer of this test writes a new conversation to the bare sales@ through `lab`;
    /// returns the staff whose Maildir got it (nil: none) after checking the manager got it.
    func newConversation(
        customer: String, messageID: String, to toLine: String = "To: sales@example.com",
        subject: String = "A question", inReplyTo: String? = nil, through lab: Lab,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> String? {
        env.nextStep()
        let outcome = try lab.sendAndDeliver(
            as: .internet, from: customer, to: ["sales@example.com"],
            message: message(
                ["From: <\(customer)>", toLine, "Subject: \(subject)", "Message-ID: <\(messageID)>"]
                    + (inReplyTo.map { ["In-Reply-To: <\($0)>"] } ?? [])))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)", sourceLocation: sourceLocation)
        let counts = try lab.maildirs.counts()
        #expect(counts["manager"] == 1, "the manager gets every message: \(counts)\n\(env.diagnostics)", sourceLocation: sourceLocation)
        let got = TeamConfig.staff.filter { counts[$0] == 1 }
        #expect(
            got.count <= 1 && TeamConfig.staff.allSatisfy { (counts[$0] ?? 0) <= 1 },
            "one staff at most: \(counts)\n\(env.diagnostics)", sourceLocation: sourceLocation)
        return got.first
    }

    /// `login` answers the customer through `lab` (In-Reply-To `answering`); returns the
    /// copy that left for the Internet.
    @discardableResult
    func staffAnswers(
        as login: String, customer: String, answering: String, messageID: String, through lab: Lab,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> MailMessage? {
        env.nextStep()
        let outcome = try lab.sendAndDeliver(
            as: .staff(login: login), from: "\(login)@example.com", to: [customer],
            message: message([
                "From: \(login.capitalized) <\(login)@example.com>", "To: <\(customer)>", "Subject: Re: A question",
                "Message-ID: <\(messageID)>", "In-Reply-To: <\(answering)>",
            ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)", sourceLocation: sourceLocation)
        let sent = try lab.sink.messages()
        #expect(sent.count == 1, "\(sent)\n\(env.diagnostics)", sourceLocation: sourceLocation)
        return sent.first?.file
    }

    /// `sharemail pending --json` on `lab`'s configuration: customer → staff (or "unassigned").
    func pending(on lab: Lab? = nil) throws -> [String: String] {
        let output = try env.sharemail(["pending", "--json"], on: lab)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]], "\(output)")
        var result: [String: String] = [:]
        for row in rows {
            if let customer = row["customer"] as? String { result[customer] = row["staff"] as? String ?? "unassigned" }
        }
        return result
    }
}

// MARK: One host, SQLite

@Suite(
    "Team: round-robin, away and backup, From-name template, pending, forget (SQLite, one host)", .serialized,
    .memoryEnvironment(.sqlite, configuration: { TeamConfig.text(state: $0, metricsPort: TeamConfig.metricsPort) }))
struct TeamSQLiteTests {
    static var metricsPort: UInt16 { TeamConfig.metricsPort }
    let env: MemoryEnvironment
    let steps: TeamSteps

    init() throws {
        env = try MemoryEnvironment.current()
        steps = TeamSteps(env: env)
        try env.beginTest()
    }

    @Test("6 new conversations, 3 staff, Wangwu away: 3 each to Zhangsan and Lisi, alternating; replies follow")
    func roundRobin() throws {
        let tag = uniqueTag()
        var owners: [(customer: String, messageID: String, staff: String)] = []
        for number in 1...6 {
            let customer = "rr\(number)-\(tag)@customer.test"
            let id = "\(tag).\(number)@customer.test"
            let staff = try #require(
                try steps.newConversation(customer: customer, messageID: id, through: env.lab),
                "conversation \(number) reached no staff\n\(env.diagnostics)")
            owners.append((customer, id, staff))
        }
        let sequence = owners.map(\.staff)
        #expect(sequence.filter { $0 == "zhangsan" }.count == 3 && sequence.filter { $0 == "lisi" }.count == 3, "\(sequence)")
        #expect(zip(sequence, sequence.dropFirst()).allSatisfy { $0 != $1 }, "alternating: \(sequence)")
        #expect(!sequence.contains("wangwu"))

        // Replies follow: the customer's follow-up in the thread, before any answer...
        for conversation in owners.prefix(3) {
            let followUp = try steps.newConversation(
                customer: conversation.customer, messageID: "f.\(conversation.messageID)",
                subject: "Re: A question", inReplyTo: conversation.messageID, through: env.lab)
            #expect(followUp == conversation.staff, "\(conversation.customer)'s follow-up\n\(env.diagnostics)")
        }
        // ...and the answer to the staff's reply.
        let first = owners[0]
        try steps.staffAnswers(
            as: first.staff, customer: first.customer, answering: first.messageID,
            messageID: "s.\(first.messageID)", through: env.lab)
        let answer = try steps.newConversation(
            customer: first.customer, messageID: "a.\(first.messageID)",
            subject: "Re: Re: A question", inReplyTo: "s.\(first.messageID)", through: env.lab)
        #expect(answer == first.staff)
        // Replies took no turn: the next new conversation goes on where the six left off.
        let next = try steps.newConversation(customer: "rr7-\(tag)@customer.test", messageID: "\(tag).7@customer.test", through: env.lab)
        #expect(next == (sequence.last == "zhangsan" ? "lisi" : "zhangsan"), "\(sequence) then \(next ?? "nobody")")
        // The audit trail names the rule.
        let log = try env.sharemail(["log", "--customer", first.customer])
        #expect(log.contains("round-robin") && log.contains("thread"), "\(log)")
    }

    @Test("Away without a backup: the manager alone; after a reload with a backup: the manager and the backup")
    func away() throws {
        let daemon = try #require(env.lab.sharemail)
        let tag = uniqueTag()
        let customer = "away-\(tag)@customer.test"
        let offset = daemon.logOffset()
        let nobody = try steps.newConversation(
            customer: customer, messageID: "\(tag).1@customer.test",
            to: "To: \"Wangwu | Example Sales\" <sales@example.com>", through: env.lab)
        #expect(nobody == nil, "Wangwu is away with no backup: manager only\n\(env.diagnostics)")
        let line = daemon.log(since: offset)
        #expect(line.contains("away") && line.contains("wangwu@example.com") && line.contains("rule=named"), "\(line)")
        // `check` gives the reason.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("away-\(tag).eml").path
        try "From: <\(customer)>\r\nTo: Wangwu <sales@example.com>\r\nSubject: hi\r\n\r\nbody\r\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let check = try Command.run([
            daemon.binary, "check", "--config", daemon.configPath, "--from", customer,
            "--rcpt", "sales@example.com", file,
        ])
        #expect(check.output.contains("away: Wangwu is away and has no backup: manager only"), "\(check)")

        // Away and backup are reloadable: Lisi covers from now on.
        let original = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        defer {
            try? daemon.rewriteConfig(original)
            try? daemon.reload()
        }
        let reloaded = daemon.logOffset()
        try daemon.rewriteConfig(TeamConfig.text(state: env.state, metricsPort: Self.metricsPort, wangwuBackup: "lisi"))
        try daemon.reload()
        #expect(poll(timeout: .seconds(10)) { daemon.log(since: reloaded).contains("configuration reloaded") })
        let backup = try steps.newConversation(
            customer: customer, messageID: "\(tag).2@customer.test",
            to: "To: Wangwu <sales@example.com>", through: env.lab)
        #expect(backup == "lisi", "Wangwu is away: the manager and the backup Lisi\n\(env.diagnostics)")
        let covered = try Command.run([
            daemon.binary, "check", "--config", daemon.configPath, "--from", customer,
            "--rcpt", "sales@example.com", file,
        ])
        #expect(covered.output.contains("away: Wangwu is away: to the manager and the backup Lisi"), "\(covered)")
    }

    @Test("From-name template: out as \"Zhangsan | Example Sales\" <sales@>, and a reply to it or to the plain name routes back")
    func template() throws {
        let tag = uniqueTag()
        let customer = "tpl-\(tag)@customer.test"
        let out = try #require(
            try steps.staffAnswers(
                as: "zhangsan", customer: customer, answering: "none-\(tag)@customer.test",
                messageID: "z.\(tag)@example.com", through: env.lab))
        #expect(out.value("From") == "Zhangsan | Example Sales <sales@example.com>", "\(out)")
        #expect(!out.text.contains("zhangsan@example.com"))
        // New messages (no thread) to the rendered name, its encoded form, and the plain name.
        for (number, toLine, staff) in [
            (1, "To: \"Zhangsan | Example Sales\" <sales@example.com>", "zhangsan"),
            (2, "To: =?UTF-8?B?\(Data("Lisi | Example Sales".utf8).base64EncodedString())?= <sales@example.com>", "lisi"),
            (3, "To: Lisi <sales@example.com>", "lisi"),
        ] {
            let got = try steps.newConversation(
                customer: "tpl\(number)-\(tag)@customer.test", messageID: "\(tag).\(number)@customer.test",
                to: toLine, through: env.lab)
            #expect(got == staff, "\(toLine)\n\(env.diagnostics)")
        }
    }

    @Test("pending lists a customer until a staff answers; the gauges follow")
    func pending() throws {
        let tag = uniqueTag()
        let customer = "wait-\(tag)@customer.test"
        let id = "\(tag).1@customer.test"
        let staff = try #require(try steps.newConversation(customer: customer, messageID: id, through: env.lab))
        let before = try steps.pending()
        #expect(before[customer] == "\(staff)@example.com", "\(before)")
        let table = try env.sharemail(["pending", "--older-than", "0s"])
        #expect(table.contains(customer) && table.contains(staff.capitalized) && table.contains("A question"), "\(table)")
        #expect(try gauge(equals: before.count), "sharemail_pending_conversations should reach \(before.count)")

        try steps.staffAnswers(as: staff, customer: customer, answering: id, messageID: "s.\(id)", through: env.lab)
        // The record is written off the mail path: give the writer a moment.
        #expect(
            poll(timeout: .seconds(10)) { ((try? steps.pending()) ?? [customer: ""])[customer] == nil },
            "answered: no longer pending\n\(env.diagnostics)")
        #expect(try gauge(equals: before.count - 1))
        // The customer writes again: pending again.
        _ = try steps.newConversation(
            customer: customer, messageID: "\(tag).2@customer.test", subject: "Re: A question",
            inReplyTo: "s.\(id)", through: env.lab)
        #expect(poll(timeout: .seconds(10)) { ((try? steps.pending()) ?? [:])[customer] == "\(staff)@example.com" })
    }

    /// Polls the metrics endpoint (the gauges are set every 10 s) until the pending count is `count`.
    private func gauge(equals count: Int) throws -> Bool {
        poll(timeout: .seconds(25)) {
            guard let scrape = try? Self.scrape() else { return false }
            return scrape.value("sharemail_pending_conversations", ["mailbox": "sales@example.com"]) == Double(count)
                && (scrape.value("sharemail_oldest_pending_seconds", ["mailbox": "sales@example.com"]) ?? -1) >= 0
        }
    }

    static func scrape() throws -> MetricsTests.Scrape {
        let text = try httpGet(port: metricsPort, path: "/metrics")
        guard let body = text.range(of: "\r\n\r\n") else { throw LabError("GET /metrics: \(text.prefix(300))") }
        return MetricsTests.Scrape(text: String(text[body.upperBound...]))
    }

    @Test("forget: afterwards log and pending show nothing of the customer")
    func forget() throws {
        let tag = uniqueTag()
        let customer = "forget-\(tag)@customer.test"
        let id = "\(tag).1@customer.test"
        let staff = try #require(try steps.newConversation(customer: customer, messageID: id, through: env.lab))
        try steps.staffAnswers(as: staff, customer: customer, answering: id, messageID: "s.\(id)", through: env.lab)
        _ = try steps.newConversation(customer: customer, messageID: "\(tag).2@customer.test", inReplyTo: "s.\(id)", through: env.lab)
        #expect(poll(timeout: .seconds(10)) { ((try? steps.pending()) ?? [:])[customer] != nil })
        #expect(try env.sharemail(["log", "--customer", customer]).contains(customer))

        let dry = try env.sharemail(["forget", "--customer", customer, "--dry-run"])
        #expect(dry.contains("would forget \(customer)") && dry.contains("audit entries:          3"), "\(dry)")
        let done = try env.sharemail(["forget", "--customer", customer])
        // Sent: the round-robin thread and the staff's answer; audit: two inbound, one staff.
        #expect(
            done.contains("forgot \(customer):") && done.contains("sent messages:          2")
                && done.contains("audit entries:          3") && done.contains("pending conversations:  1"), "\(done)")
        #expect(!(try env.sharemail(["log", "--limit", "100000"])).contains(customer))
        #expect(try env.sharemail(["log", "--customer", customer]).contains("(no entries)"))
        #expect(try steps.pending()[customer] == nil)
        #expect(!(try env.sharemail(["pending"])).contains(customer))
        // The thread is forgotten too: the customer's next reply in it is a new conversation.
        let after = try steps.newConversation(
            customer: customer, messageID: "\(tag).3@customer.test", inReplyTo: "s.\(id)",
            through: env.lab)
        #expect(after != nil)
        #expect(try env.sharemail(["log", "--customer", customer]).contains("round-robin"))
    }
}

// MARK: Two hosts, one PostgreSQL database

@Suite(
    "Team: round-robin across two Postfix+sharemail hosts sharing one PostgreSQL database", .serialized,
    .memoryEnvironment(.postgres(hosts: 2), configuration: { TeamConfig.text(state: $0) }))
struct TeamTwoHostTests {
    let env: MemoryEnvironment
    let steps: TeamSteps

    init() throws {
        env = try MemoryEnvironment.current()
        steps = TeamSteps(env: env)
        try env.beginTest()
    }

    @Test("6 new conversations alternating between the hosts: 3 each to Zhangsan and Lisi, alternating; replies follow on the other host")
    func roundRobinAcrossHosts() throws {
        let tag = uniqueTag()
        var owners: [(customer: String, messageID: String, staff: String, host: Int)] = []
        for number in 1...6 {
            let host = number % 2
            let customer = "rr\(number)-\(tag)@customer.test"
            let id = "\(tag).\(number)@customer.test"
            let staff = try #require(
                try steps.newConversation(customer: customer, messageID: id, through: env.labs[host]),
                "conversation \(number) on host \(host + 1) reached no staff\n\(env.diagnostics)")
            owners.append((customer, id, staff, host))
        }
        let sequence = owners.map(\.staff)
        #expect(sequence.filter { $0 == "zhangsan" }.count == 3 && sequence.filter { $0 == "lisi" }.count == 3, "\(sequence)")
        #expect(zip(sequence, sequence.dropFirst()).allSatisfy { $0 != $1 }, "alternating across hosts: \(sequence)")
        // A follow-up through the other host finds the thread in the shared memory.
        for conversation in owners.prefix(2) {
            let other = env.labs[1 - conversation.host]
            let followUp = try steps.newConversation(
                customer: conversation.customer, messageID: "f.\(conversation.messageID)",
                subject: "Re: A question", inReplyTo: conversation.messageID, through: other)
            #expect(followUp == conversation.staff, "\(conversation.customer) through the other host\n\(env.diagnostics)")
        }
        // Both hosts see the same pending list.
        let first = try steps.pending(on: env.labs[0]), second = try steps.pending(on: env.labs[1])
        #expect(first == second && first.count >= 6, "\(first) vs \(second)")
    }
}
