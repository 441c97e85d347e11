import Foundation
import PostfixLab
import Testing

/// Conversation memory through a real Postfix (issue 5): a staff message goes out, the
/// customer answers the bare sales@ and only that staff (and the manager) gets it; `sharemail
/// assign` changes where the next answer goes; `sharemail log` shows the decisions.
///
/// Every test uses a customer address of its own, so no test's assignments or threads reach
/// another's.

// MARK: Steps shared by the suites

/// Staff and customers as the memory suites meet them.
struct Conversation {
    let env: MemoryEnvironment
    let customer: String  // c-<tag>@customer.test: this test's own customer
    let tag: String

    init(_ env: MemoryEnvironment) {
        self.env = env
        tag = uniqueTag()
        customer = "c-\(tag)@customer.test"
    }

    /// `login` writes to the customer through `lab`; returns the Message-ID (without <>) and
    /// the queue id. Rule 3 sends it out as sales@ with its Message-ID kept.
    func staffWrites(as login: String, through lab: Lab? = nil, number: Int = 1) throws -> (messageID: String, queueID: String) {
        let lab = lab ?? env.lab
        let messageID = "\(tag).\(login).\(number)@staff-pc.example.com"
        let outcome = try lab.sendAndDeliver(
            as: .staff(login: login), from: "\(login)@example.com", to: [customer],
            message: message([
                "From: \(login.capitalized) <\(login)@example.com>", "To: <\(customer)>",
                "Subject: offer \(tag)", "Message-ID: <\(messageID)>",
            ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        let sent = try lab.sink.messages()
        #expect(sent.count == 1, "the staff message should leave once: \(sent)\n\(env.diagnostics)")
        if let copy = sent.first {
            #expect(copy.file.value("Message-ID") == "<\(messageID)>", "the Message-ID must leave unchanged: \(copy)")
        }
        return (messageID, try Self.queueID(outcome))
    }

    /// The customer writes to sales@ through `lab` with these extra header lines; returns the
    /// queue id. `sender` "" is the null sender (a bounce).
    @discardableResult
    func customerWrites(
        _ lines: [String], to toLine: String = "To: sales@example.com", sender: String? = nil,
        through lab: Lab? = nil, body: String = "Thanks, see below."
    ) throws -> String {
        let lab = lab ?? env.lab
        let outcome = try lab.sendAndDeliver(
            as: .internet, from: sender ?? customer, to: ["sales@example.com"],
            message: message(
                [
                    "From: <\(customer)>", toLine, "Subject: Re: offer \(tag)",
                    "Message-ID: <\(uniqueTag())@customer.test>",
                ] + lines, body: body))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        return try Self.queueID(outcome)
    }

    /// Exactly these Maildirs of `lab` hold one copy each, every other is empty, nothing
    /// went to the Internet.
    func expectDelivered(to mailboxes: Set<String>, at lab: Lab? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let lab = lab ?? env.lab
        var want = Dictionary(uniqueKeysWithValues: PostfixInstance.mailboxes.map { ($0, 0) })
        for mailbox in mailboxes { want[mailbox] = 1 }
        let got = try lab.maildirs.counts()
        #expect(
            got == want, "Maildir copies: expected \(Self.sorted(want)), got \(Self.sorted(got))\n\(env.diagnostics)",
            sourceLocation: sourceLocation)
        #expect(
            try lab.sink.messages().isEmpty, "nothing should leave for the Internet\n\(env.diagnostics)",
            sourceLocation: sourceLocation)
    }

    static func queueID(_ outcome: SMTPOutcome) throws -> String {
        let text = outcome.data?.text ?? ""
        guard let range = text.range(of: "queued as ") else { throw LabError("no queue id in \(outcome)") }
        return String(text[range.upperBound...].prefix { $0.isLetter || $0.isNumber })
    }

    private static func sorted(_ counts: [String: Int]) -> String {
        counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
}

/// A delivery report from the customer's MTA for `messageID`, as Postfix writes one: the
/// original's headers in a text/rfc822-headers part.
func bounceLines(boundary: String) -> [String] {
    [
        "Auto-Submitted: auto-replied", "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"\(boundary)\"",
    ]
}

func bounceBody(boundary: String, messageID: String, customer: String) -> String {
    """
    --\(boundary)\r
    Content-Type: text/plain; charset=us-ascii\r
    \r
    Your message could not be delivered to \(customer).\r
    \r
    --\(boundary)\r
    Content-Type: message/delivery-status\r
    \r
    Reporting-MTA: dns; mx.customer.test\r
    \r
    Final-Recipient: rfc822; \(customer)\r
    Action: failed\r
    Status: 5.2.2\r
    \r
    --\(boundary)\r
    Content-Type: text/rfc822-headers\r
    \r
    From: Sales <sales@example.com>\r
    To: <\(customer)>\r
    Subject: offer\r
    Message-ID: <\(messageID)>\r
    \r
    --\(boundary)--
    """
}

// MARK: SQLite, one host

@Suite(
    "Memory: SQLite on one host: threads, reassignment, auto-replies, bounces, audit log", .serialized,
    .memoryEnvironment(.sqlite))
struct MemorySQLiteTests {
    let env: MemoryEnvironment

    init() throws {
        env = try MemoryEnvironment.current()
        try env.beginTest()
    }

    @Test("A reply to the bare sales@ with only In-Reply-To goes to the staff who wrote, and the manager")
    func inReplyTo() throws {
        let talk = Conversation(env)
        let (id, _) = try talk.staffWrites(as: "zhangsan")
        env.nextStep()
        try talk.customerWrites(["In-Reply-To: <\(id)>"])
        try talk.expectDelivered(to: ["manager", "zhangsan"])
    }

    @Test("A reply with only References (the thread's ID not first) goes to that staff too")
    func references() throws {
        let talk = Conversation(env)
        let (id, _) = try talk.staffWrites(as: "zhangsan")
        env.nextStep()
        try talk.customerWrites(["References: <older.\(talk.tag)@elsewhere.test> <\(id)>"])
        try talk.expectDelivered(to: ["manager", "zhangsan"])
    }

    @Test("The thread beats a stale display name: To \"Lisi\" answering Zhangsan's message → Zhangsan")
    func threadBeatsName() throws {
        let talk = Conversation(env)
        let (id, _) = try talk.staffWrites(as: "zhangsan")
        env.nextStep()
        try talk.customerWrites(["In-Reply-To: <\(id)>"], to: #"To: "Lisi" <sales@example.com>"#)
        try talk.expectDelivered(to: ["manager", "zhangsan"])
    }

    @Test("Without memory a reply would reach everyone: the control case (unknown In-Reply-To)")
    func unknownThreadFansOut() throws {
        let talk = Conversation(env)
        try talk.customerWrites(["In-Reply-To: <never-sent.\(talk.tag)@example.com>"])
        try talk.expectDelivered(to: ["manager", "zhangsan", "lisi", "wangwu"])
    }

    @Test("sharemail assign --thread: the next reply goes to the new staff")
    func assignThread() throws {
        let talk = Conversation(env)
        let (id, _) = try talk.staffWrites(as: "zhangsan")
        let said = try env.sharemail(["assign", "--thread", "<\(id)>", "--to", "lisi"])
        #expect(said.contains("lisi@example.com"), "\(said)")
        env.nextStep()
        try talk.customerWrites(["In-Reply-To: <\(id)>"])
        try talk.expectDelivered(to: ["manager", "lisi"])
    }

    @Test("sharemail assign --customer: a new unnamed message from that customer goes to that staff")
    func assignCustomer() throws {
        let talk = Conversation(env)
        try env.sharemail(["assign", "--customer", talk.customer, "--to", "wangwu"])
        try talk.customerWrites([])
        try talk.expectDelivered(to: ["manager", "wangwu"])
        // Another customer's unnamed mail is not affected.
        env.nextStep()
        let other = Conversation(env)
        try other.customerWrites([])
        try other.expectDelivered(to: ["manager", "zhangsan", "lisi", "wangwu"])
    }

    @Test("sticky_customers: a customer's new, unnamed message goes to the staff who wrote to them last")
    func stickyCustomer() throws {
        let talk = Conversation(env)
        _ = try talk.staffWrites(as: "lisi")
        env.nextStep()
        try talk.customerWrites([])  // no In-Reply-To, no name
        try talk.expectDelivered(to: ["manager", "lisi"])
    }

    @Test("The manager redirects (Resent-*) a customer's message to a staff: the thread is theirs from then on")
    func managerRedirectAssigns() throws {
        let talk = Conversation(env)
        let original = "\(talk.tag).first@customer.test"
        let outcome = try env.lab.sendAndDeliver(
            as: .staff(login: "manager"), from: "manager@example.com", to: ["wangwu@example.com"],
            message: message([
                "Resent-From: manager@example.com", "Resent-To: wangwu@example.com",
                "Resent-Message-ID: <resent.\(talk.tag)@example.com>",
                "From: <\(talk.customer)>", "To: sales@example.com", "Subject: question \(talk.tag)",
                "Message-ID: <\(original)>",
            ]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try talk.expectDelivered(to: ["wangwu"])  // the redirect itself passes untouched
        env.nextStep()
        try talk.customerWrites(["In-Reply-To: <\(original)>", "References: <\(original)>"])
        try talk.expectDelivered(to: ["manager", "wangwu"])
    }

    @Test("A forged Resent-From: manager@ by a login that is not the manager reassigns nothing")
    func forgedRedirectAssignsNothing() throws {
        let talk = Conversation(env)
        let original = "\(talk.tag).first@customer.test"
        // Lisi is staff, "outsider" is neither staff nor manager: both write the manager's
        // Resent-From into a customer's message, to Wangwu.
        for login in ["outsider", "lisi"] {
            let outcome = try env.lab.sendAndDeliver(
                as: .staff(login: login), from: "\(login)@example.com", to: ["wangwu@example.com"],
                message: message([
                    "Resent-From: manager@example.com", "Resent-Sender: manager@example.com",
                    "Resent-To: wangwu@example.com", "Resent-Message-ID: <resent.\(login).\(talk.tag)@example.com>",
                    "From: <\(talk.customer)>", "To: sales@example.com", "Subject: question \(talk.tag)",
                    "Message-ID: <\(original)>",
                ]))
            #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        }
        env.nextStep()
        // The customer's answer in that thread is unnamed: it goes to every staff
        // (forward_unnamed), not to Wangwu alone.
        try talk.customerWrites(["In-Reply-To: <\(original)>", "References: <\(original)>"])
        try talk.expectDelivered(to: ["manager", "zhangsan", "lisi", "wangwu"])
    }

    @Test("An auto-reply outside any thread reaches the manager only, never all staff")
    func autoReplyManagerOnly() throws {
        let talk = Conversation(env)
        try talk.customerWrites(["Auto-Submitted: auto-replied"], body: "I am out of the office.")
        try talk.expectDelivered(to: ["manager"])
    }

    @Test("A bounce (null sender, delivery report quoting the Message-ID) follows the thread's owner")
    func bounceFollowsThread() throws {
        let talk = Conversation(env)
        let (id, _) = try talk.staffWrites(as: "zhangsan")
        let boundary = "report-\(talk.tag)"
        env.nextStep()
        try talk.customerWrites(
            bounceLines(boundary: boundary), sender: "",
            body: bounceBody(boundary: boundary, messageID: id, customer: talk.customer))
        try talk.expectDelivered(to: ["manager", "zhangsan"])

        // Whoever owns the thread at that point.
        try env.sharemail(["assign", "--thread", id, "--to", "lisi"])
        env.nextStep()
        try talk.customerWrites(
            bounceLines(boundary: boundary), sender: "",
            body: bounceBody(boundary: boundary, messageID: id, customer: talk.customer))
        try talk.expectDelivered(to: ["manager", "lisi"])
    }

    @Test("A bounce quoting no known message reaches the manager only")
    func unknownBounceManagerOnly() throws {
        let talk = Conversation(env)
        let boundary = "report-\(talk.tag)"
        try talk.customerWrites(
            bounceLines(boundary: boundary), sender: "",
            body: bounceBody(
                boundary: boundary, messageID: "never.\(talk.tag)@example.com",
                customer: talk.customer))
        try talk.expectDelivered(to: ["manager"])
    }

    @Test("sharemail log --json lists each decision with its queue id, rule and staff")
    func auditLog() throws {
        let talk = Conversation(env)
        let (id, outQueue) = try talk.staffWrites(as: "zhangsan")
        let threadQueue = try talk.customerWrites(["In-Reply-To: <\(id)>"])
        try env.sharemail(["assign", "--thread", id, "--to", "lisi"])
        let assignedQueue = try talk.customerWrites(["In-Reply-To: <\(id)>"])
        let autoQueue = try talk.customerWrites(["Auto-Submitted: auto-replied"])

        let output = try env.sharemail(["log", "--customer", talk.customer, "--json"])
        let parsed = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]]
        let entries = try #require(parsed, "not a JSON array: \(output)")
        let byQueue = Dictionary(entries.map { ($0["queue_id"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        let expected: [(queue: String, rule: String, direction: String, staff: String?)] = [
            (outQueue, "staff-out", "staff", "zhangsan@example.com"),
            (threadQueue, "thread", "inbound", "zhangsan@example.com"),
            (assignedQueue, "assigned", "inbound", "lisi@example.com"),
            (autoQueue, "auto", "inbound", nil),
        ]
        #expect(entries.count == expected.count, "\(output)")
        for want in expected {
            let entry = try #require(byQueue[want.queue], "no log entry for queue id \(want.queue) (\(want.rule)): \(output)")
            #expect(entry["rule"] as? String == want.rule, "\(entry)")
            #expect(entry["direction"] as? String == want.direction, "\(entry)")
            #expect(entry["action"] as? String == "accept", "\(entry)")
            #expect(entry["staff"] as? String == want.staff, "\(entry)")
            #expect(entry["customer"] as? String == talk.customer, "\(entry)")
            #expect(entry["mailbox"] as? String == "sales@example.com", "\(entry)")
        }
        // Newest first, as the README says: the JSON and the table alike.
        let newestFirst = [autoQueue, assignedQueue, threadQueue, outQueue]
        #expect(entries.compactMap { $0["queue_id"] as? String } == newestFirst, "\(output)")
        // The table is the manager's view of the same rows.
        let table = try env.sharemail(["log", "--customer", talk.customer])
        let rows = table.split(separator: "\n").dropFirst()  // the header line
        #expect(
            rows.map { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? "" }
                == newestFirst, "\(table)")
    }
}

// MARK: The store is down

@Suite("Memory: an unreachable store never holds mail", .serialized, .memoryEnvironment(.unreachablePostgres))
struct MemoryStoreDownTests {
    let env: MemoryEnvironment

    init() throws {
        env = try MemoryEnvironment.current()
        try env.beginTest()
    }

    @Test("PostgreSQL down: unnamed mail reaches manager and every staff at once; the log says why")
    func mailStillFlows() throws {
        let talk = Conversation(env)
        let clock = ContinuousClock()
        for round in 1...2 {  // not only the first message: each one finds the store missing
            let started = clock.now
            let outcome = try env.lab.send(
                as: .internet, from: talk.customer, to: ["sales@example.com"],
                message: message([
                    "From: <\(talk.customer)>", "To: sales@example.com", "Subject: round \(round)",
                    "In-Reply-To: <unknown.\(talk.tag)@example.com>",
                ]))
            let elapsed = clock.now - started
            #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
            #expect(elapsed < .seconds(2), "the SMTP transaction took \(elapsed)\n\(env.diagnostics)")
            try env.lab.waitForDelivery()
            try talk.expectDelivered(to: ["manager", "zhangsan", "lisi", "wangwu"])
            env.nextStep()
        }
        let log = env.lab.sharemail?.log(since: 0) ?? ""
        #expect(log.contains("conversation memory unavailable"), "\(log)")
    }

    @Test("PostgreSQL down: a named reply still goes by its name")
    func namesStillRoute() throws {
        let talk = Conversation(env)
        try talk.customerWrites(["In-Reply-To: <unknown.\(talk.tag)@example.com>"], to: #"To: "Lisi" <sales@example.com>"#)
        try talk.expectDelivered(to: ["manager", "lisi"])
    }

    @Test("PostgreSQL down: sharemail assign says the store is unreachable (exit 69)")
    func assignFails() throws {
        let daemon = try #require(env.lab.sharemail)
        let result = try Command.run(
            [
                daemon.binary, "assign", "--config", daemon.configPath,
                "--customer", "x@customer.test", "--to", "lisi",
            ], timeout: .seconds(30))
        #expect(result.status == 69, "\(result)")
    }
}

// MARK: PostgreSQL, two MX hosts

@Suite("Memory: PostgreSQL shared by two MX hosts", .serialized, .memoryEnvironment(.postgres(hosts: 2)))
struct MemoryTwoHostsTests {
    let env: MemoryEnvironment

    init() throws {
        env = try MemoryEnvironment.current()
        try env.beginTest()
    }

    @Test("Zhangsan's message leaves through host 1, the bare reply arrives at host 2: manager + Zhangsan there")
    func replyAtTheOtherHost() throws {
        let (first, second) = (env.labs[0], env.labs[1])
        let talk = Conversation(env)
        let (id, _) = try talk.staffWrites(as: "zhangsan", through: first)
        env.nextStep()
        try talk.customerWrites(["In-Reply-To: <\(id)>"], through: second)
        try talk.expectDelivered(to: ["manager", "zhangsan"], at: second)
        try talk.expectDelivered(to: [], at: first)

        env.nextStep()
        try talk.customerWrites(["References: <older.\(talk.tag)@elsewhere.test> <\(id)>"], through: second)
        try talk.expectDelivered(to: ["manager", "zhangsan"], at: second)
    }

    @Test("sharemail assign against the shared database changes where host 2 delivers the next reply")
    func reassignmentSeenByTheOtherHost() throws {
        let (first, second) = (env.labs[0], env.labs[1])
        let talk = Conversation(env)
        let (id, _) = try talk.staffWrites(as: "zhangsan", through: first)
        try env.sharemail(["assign", "--thread", id, "--to", "lisi"], on: first)
        env.nextStep()
        try talk.customerWrites(["In-Reply-To: <\(id)>"], through: second)
        try talk.expectDelivered(to: ["manager", "lisi"], at: second)

        // Both hosts' decisions are in the one audit log, whichever host asks.
        let output = try env.sharemail(["log", "--customer", talk.customer, "--json"], on: second)
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]], "\(output)")
        #expect(Set(entries.compactMap { $0["rule"] as? String }) == ["staff-out", "assigned"], "\(output)")
    }
}
