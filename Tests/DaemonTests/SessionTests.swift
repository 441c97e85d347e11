import Foundation
import Logging
import Milter
import SeedTeam
import ShareMail
import ShareMailStore
import Testing

@testable import ShareMailDaemon

/// A libmilter context without libmilter: the macros Postfix would send, and
/// the changes the layer applied (or refused, as an MTA may).
final class FakeContext: MilterContext {
    var macros: [String: String] = [:]
    private(set) var applied: [Modification] = []
    /// The MTA refuses these changes (smfi_* returns MI_FAILURE).
    var refuses: (Modification) -> Bool = { _ in false }

    func macro(_ name: String) -> String? { macros[name] }

    func apply(_ modification: Modification) -> Bool {
        if refuses(modification) { return false }
        applied.append(modification)
        return true
    }
}

/// What one message got: each RCPT's verdict, the end-of-message verdict and
/// the changes applied.
struct Outcome {
    var recipients: [Verdict]
    var end: Verdict
    var applied: [Modification]

    var addedRecipients: [String] {
        applied.compactMap { if case .addRecipient(let address) = $0 { address } else { nil } }
    }
}

/// One daemon without Postfix: the session behind the milter layer's
/// connection, a real SQLite memory in a temporary directory.
final class SessionHarness {
    let directory: String
    let memory: Memory?
    let gate = MessageGate()
    let policy: PolicyStore
    private var counter = 0

    static let logger = Logger(label: "sharemail-test")

    init(toml: String = seedTOML, memory: Bool = true, state: String? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sharemail-session-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let (file, _) = try ConfigurationFile.load(text: toml, file: "test.toml")
        policy = PolicyStore(PolicyEngine(configuration: file.policy))
        if memory {
            let location = StoreLocation(state ?? "\(directory)/state.sqlite")!
            let opened = Memory(location: location, timeout: .seconds(2), logger: Self.logger)
            opened.openNow()
            self.memory = opened
        } else {
            self.memory = nil
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func connection() -> MilterConnection {
        MilterConnection(
            session: ShareMailSession(policy: policy, metrics: nil, memory: memory, logger: Self.logger),
            gate: gate, replies: Daemon.failureReplies, errorMetric: "test_milter_errors_total",
            logger: Self.logger)
    }

    /// Sends one message through a new connection, the way Postfix does.
    func send(
        from sender: String, to recipients: [String], login: String? = nil, client: String = "198.51.100.7",
        headers: [(String, String)], mailer: (String) -> String = { $0.hasSuffix("@customer.test") ? "smtp" : "virtual" },
        resolved: Bool = true, body: String? = nil, context: FakeContext = FakeContext()
    ) -> Outcome {
        counter += 1
        let connection = connection()
        _ = connection.connect(hostname: "client.test", client: ClientAddress(ip: client, port: 40000), context: context)
        context.macros["{auth_authen}"] = login
        context.macros["{mail_addr}"] = sender
        context.macros["i"] = "Q\(counter)"
        _ = connection.mailFrom(["<\(sender)>"], context: context)
        var verdicts: [Verdict] = []
        for recipient in recipients {
            context.macros["{rcpt_addr}"] = resolved ? recipient : nil
            context.macros["{rcpt_mailer}"] = mailer(recipient)
            verdicts.append(connection.recipient(["<\(recipient)>"], context: context))
        }
        for (name, value) in headers { _ = connection.header(name: name, value: Array(value.utf8), context: context) }
        if let body {
            _ = Array(body.utf8).withUnsafeBytes { connection.body($0, context: context) }
        }
        let end = connection.endOfMessage(context: context)
        connection.close()
        return Outcome(recipients: verdicts, end: end, applied: context.applied)
    }

    /// The memory as `sharemail log` reads it, once every record is written.
    func store() throws -> any ConversationStore {
        #expect(memory?.flush() == true)
        return try Stores.open(.sqlite(path: "\(directory)/state.sqlite"), logger: Self.logger, timeout: .seconds(5))
    }
}

@Suite("Session: the daemon's glue, driven without Postfix")
struct SessionTests {
    static let customerMail: [(String, String)] = [
        ("From", "Customer <c@customer.test>"), ("To", "sales@example.com"),
        ("Subject", "Quote"), ("Message-ID", "<q1@customer.test>"),
    ]

    @Test("rule 1: unnamed Internet mail goes to the manager and, with forward_unnamed, every staff; the audit records it")
    func unnamed() throws {
        let harness = try SessionHarness()
        let outcome = harness.send(from: "c@customer.test", to: ["sales@example.com"], headers: Self.customerMail)
        #expect(outcome.recipients == [.continue])
        #expect(outcome.end == .continue)
        #expect(
            Set(outcome.addedRecipients) == [
                "<manager@example.com>", "<zhangsan@example.com>", "<lisi@example.com>",
                "<wangwu@example.com>",
            ])
        let audit = try harness.store().auditLog(LogFilter())
        #expect(audit.map(\.rule) == ["unnamed"])
        #expect(audit.first?.direction == "inbound" && audit.first?.action == "accept" && audit.first?.queueID == "Q1")
    }

    @Test("rule 2: the Internet may not write to a staff address that does not receive it; one that does is copied to the manager")
    func directToStaff() throws {
        let harness = try SessionHarness()
        let refused = harness.send(from: "c@customer.test", to: ["lisi@example.com"], headers: Self.customerMail)
        guard case .reject(let reply) = refused.recipients.first else {
            Issue.record("lisi@ accepted from the Internet: \(refused.recipients)")
            return
        }
        #expect(reply.code / 100 == 5)
        let direct = harness.send(from: "c@customer.test", to: ["wangwu@example.com"], headers: Self.customerMail)
        #expect(direct.recipients == [.continue])
        #expect(direct.addedRecipients == ["<manager@example.com>"])
    }

    @Test("rule 3: staff mail leaves as the unified address, never naming the staff; the memory records what was sent")
    func staffOut() throws {
        let harness = try SessionHarness()
        let outcome = harness.send(
            from: "zhangsan@example.com", to: ["c@customer.test"], login: "zhangsan", client: "192.0.2.10",
            headers: [
                ("From", "Zhangsan <zhangsan@example.com>"), ("To", "c@customer.test"),
                ("Message-ID", "<m1@example.com>"),
            ])
        #expect(outcome.end == .continue)
        #expect(outcome.applied.contains(.changeSender("sales@example.com")))
        let texts = outcome.applied.map { "\($0)" }.joined(separator: "\n")
        #expect(texts.contains("sales@example.com"))
        #expect(!outcome.applied.contains { if case .addHeader(_, let value) = $0 { value.contains("zhangsan@") } else { false } })
        let store = try harness.store()
        #expect(try store.threadOwner(messageIDs: ["m1@example.com"], mailbox: "sales@example.com") == "zhangsan@example.com")
        #expect(try store.auditLog(LogFilter()).map(\.direction) == ["staff"])
    }

    @Test("rule 3: a staff who may not send to the Internet is refused at RCPT")
    func staffMayNotSend() throws {
        let harness = try SessionHarness()
        let outcome = harness.send(
            from: "wangwu@example.com", to: ["c@customer.test"], login: "wangwu", client: "192.0.2.10",
            headers: [("From", "wangwu@example.com")])
        guard case .reject(let reply) = outcome.recipients.first else {
            Issue.record("wangwu may send: \(outcome.recipients)")
            return
        }
        #expect(reply.code / 100 == 5)
    }

    @Test("rule 4: a named staff gets the mail, the others do not")
    func named() throws {
        let harness = try SessionHarness()
        let outcome = harness.send(
            from: "c@customer.test", to: ["sales@example.com"],
            headers: [("From", "c@customer.test"), ("To", "\"Lisi\" <sales@example.com>")])
        #expect(Set(outcome.addedRecipients) == ["<manager@example.com>", "<lisi@example.com>"])
    }

    @Test("a reply finds the staff who wrote, through the memory (the thread beats the name)")
    func threadThroughMemory() throws {
        let harness = try SessionHarness()
        _ = harness.send(
            from: "zhangsan@example.com", to: ["c@customer.test"], login: "zhangsan", client: "192.0.2.10",
            headers: [("From", "zhangsan@example.com"), ("Message-ID", "<m1@example.com>")])
        #expect(harness.memory?.flush() == true)
        let reply = harness.send(
            from: "c@customer.test", to: ["sales@example.com"],
            headers: [("To", "\"Lisi\" <sales@example.com>"), ("In-Reply-To", "<m1@example.com>")])
        #expect(Set(reply.addedRecipients) == ["<manager@example.com>", "<zhangsan@example.com>"])
        #expect(try harness.store().auditLog(LogFilter()).last?.rule == "thread")
    }

    @Test("a stale assignment (staff since removed) with a live thread owner: the thread owner gets it")
    func staleAssignmentLiveThreadOwner() throws {
        let harness = try SessionHarness()
        _ = harness.send(
            from: "zhangsan@example.com", to: ["c@customer.test"], login: "zhangsan", client: "192.0.2.10",
            headers: [("From", "zhangsan@example.com"), ("Message-ID", "<m1@example.com>")])
        try harness.store().assign(.thread(messageID: "m1@example.com"), to: "gone@example.com", mailbox: "sales@example.com", at: Date())
        let reply = harness.send(
            from: "c@customer.test", to: ["sales@example.com"],
            headers: [("To", "sales@example.com"), ("In-Reply-To", "<m1@example.com>")])
        #expect(Set(reply.addedRecipients) == ["<manager@example.com>", "<zhangsan@example.com>"])
        #expect(try harness.store().auditLog(LogFilter()).last?.rule == "thread")
    }

    @Test("rule 5: internal mail (the manager, logged in, to the unified address) passes untouched")
    func internalMail() throws {
        let harness = try SessionHarness()
        let outcome = harness.send(
            from: "manager@example.com", to: ["sales@example.com"], login: "manager", client: "192.0.2.10",
            headers: [("From", "manager@example.com"), ("To", "sales@example.com")])
        #expect(outcome.recipients == [.continue])
        #expect(outcome.end == .continue)
        #expect(outcome.applied.isEmpty)
        #expect(try harness.store().auditLog(LogFilter()).map(\.direction) == ["internal"])
    }

    @Test("a bounce follows its thread by the Message-ID quoted in its body")
    func bounceFollowsThread() throws {
        let harness = try SessionHarness()
        _ = harness.send(
            from: "zhangsan@example.com", to: ["c@customer.test"], login: "zhangsan", client: "192.0.2.10",
            headers: [("From", "zhangsan@example.com"), ("Message-ID", "<m7@example.com>")])
        #expect(harness.memory?.flush() == true)
        let bounce = harness.send(
            from: "", to: ["sales@example.com"],
            headers: [
                ("From", "MAILER-DAEMON@customer.test"), ("To", "sales@example.com"),
                ("Content-Type", "multipart/report; report-type=delivery-status; boundary=\"b\""),
            ],
            body: "--b\nContent-Type: text/rfc822-headers\n\nMessage-ID: <m7@example.com>\nFrom: sales@example.com\n\n--b--\n")
        #expect(Set(bounce.addedRecipients) == ["<manager@example.com>", "<zhangsan@example.com>"])
        #expect(try harness.store().auditLog(LogFilter()).last?.rule == "thread")
    }

    @Test("a reload during a message: the message ends with the policy it began with; the next one takes the new")
    func reloadKeepsSnapshot() throws {
        let harness = try SessionHarness()
        let context = FakeContext()
        context.macros = [
            "{mail_addr}": "c@customer.test", "{rcpt_addr}": "sales@example.com", "{rcpt_mailer}": "virtual",
            "i": "QR",
        ]
        let connection = harness.connection()
        _ = connection.mailFrom(["<c@customer.test>"], context: context)
        _ = connection.recipient(["<sales@example.com>"], context: context)
        let (reloaded, _) = try ConfigurationFile.load(
            text: seedTOML.replacingOccurrences(of: "forward_unnamed = true", with: "forward_unnamed = false"), file: "new.toml")
        harness.policy.replace(PolicyEngine(configuration: reloaded.policy))
        _ = connection.header(name: "To", value: Array("sales@example.com".utf8), context: context)
        #expect(connection.endOfMessage(context: context) == .continue)
        #expect(context.applied.filter { if case .addRecipient = $0 { true } else { false } }.count == 4)
        let next = harness.send(from: "c@customer.test", to: ["sales@example.com"], headers: [("To", "sales@example.com")])
        #expect(next.addedRecipients == ["<manager@example.com>"])
    }

    @Test("a store that cannot open: mail is routed by names, without memory, and nothing waits")
    func storeDown() throws {
        let harness = try SessionHarness(state: "/proc/sharemail-no-such-dir/state.sqlite")
        let started = ContinuousClock.now
        let outcome = harness.send(
            from: "c@customer.test", to: ["sales@example.com"],
            headers: [("To", "\"Lisi\" <sales@example.com>"), ("In-Reply-To", "<m1@example.com>")])
        #expect(ContinuousClock.now - started < .seconds(1))
        #expect(outcome.end == .continue)
        #expect(Set(outcome.addedRecipients) == ["<manager@example.com>", "<lisi@example.com>"])
    }

    @Test("without memory (state = off) routing is by names")
    func memoryOff() throws {
        let harness = try SessionHarness(memory: false)
        let outcome = harness.send(
            from: "c@customer.test", to: ["sales@example.com"],
            headers: [("To", "\"Zhangsan\" <sales@example.com>")])
        #expect(Set(outcome.addedRecipients) == ["<manager@example.com>", "<zhangsan@example.com>"])
    }

    @Test("a change the MTA refuses defers the message, and nothing of it is remembered")
    func applyFailure() throws {
        let harness = try SessionHarness()
        let context = FakeContext()
        context.refuses = { if case .changeSender = $0 { true } else { false } }
        let outcome = harness.send(
            from: "zhangsan@example.com", to: ["c@customer.test"], login: "zhangsan", client: "192.0.2.10",
            headers: [("From", "zhangsan@example.com"), ("Message-ID", "<m1@example.com>")],
            context: context)
        #expect(outcome.end == .tempfail(Daemon.failureReplies.applyFailed))
        let store = try harness.store()
        #expect(try store.threadOwner(messageIDs: ["m1@example.com"], mailbox: "sales@example.com") == nil)
        #expect(try store.auditLog(LogFilter()).isEmpty)
        #expect(harness.gate.current == 0)
    }

    @Test("a recipient Postfix could not resolve is deferred; one Postfix refused itself keeps Postfix's reply")
    func tempfails() throws {
        let harness = try SessionHarness()
        let unresolved = harness.send(from: "c@customer.test", to: ["sales@example.com"], headers: Self.customerMail, resolved: false)
        guard case .tempfail(let reply) = unresolved.recipients.first else {
            Issue.record("an unplaced recipient was not deferred: \(unresolved.recipients)")
            return
        }
        #expect(reply.code / 100 == 4)
        let refusedByPostfix = harness.send(
            from: "c@customer.test", to: ["nobody@example.com"], headers: Self.customerMail,
            mailer: { _ in "error" }, resolved: false)
        #expect(refusedByPostfix.recipients == [.continue])
    }

    @Test("end of message without MAIL FROM is deferred with the session's own reply")
    func endWithoutMail() throws {
        let harness = try SessionHarness()
        let connection = harness.connection()
        let verdict = connection.endOfMessage(context: FakeContext())
        #expect(verdict == .tempfail(ShareMailSession.internalError))
    }

    @Test("stop: a message under way finishes; one that begins after the gate closed is deferred at RCPT and at its end")
    func drain() throws {
        let harness = try SessionHarness()
        let context = FakeContext()
        context.macros = ["{mail_addr}": "c@customer.test", "{rcpt_addr}": "sales@example.com", "{rcpt_mailer}": "virtual"]
        let underWay = harness.connection()
        _ = underWay.mailFrom(["<c@customer.test>"], context: context)
        #expect(underWay.recipient(["<sales@example.com>"], context: context) == .continue)
        #expect(harness.gate.close() == 1)

        let late = harness.connection()
        let lateContext = FakeContext()
        lateContext.macros = context.macros
        _ = late.mailFrom(["<c@customer.test>"], context: lateContext)
        #expect(late.recipient(["<sales@example.com>"], context: lateContext) == .tempfail(Daemon.failureReplies.stopping))
        #expect(late.endOfMessage(context: lateContext) == .tempfail(Daemon.failureReplies.stopping))
        #expect(lateContext.applied.isEmpty)
        #expect(harness.gate.current == 1)

        #expect(underWay.endOfMessage(context: context) == .continue)
        #expect(!context.applied.isEmpty)
        #expect(harness.gate.current == 0)
    }

    @Test("an aborted message or a closed connection counts its message out")
    func abortAndClose() throws {
        let harness = try SessionHarness()
        let context = FakeContext()
        context.macros = ["{mail_addr}": "c@customer.test"]
        let connection = harness.connection()
        _ = connection.mailFrom(["<c@customer.test>"], context: context)
        #expect(harness.gate.current == 1)
        connection.abort()
        #expect(harness.gate.current == 0)
        _ = connection.mailFrom(["<c@customer.test>"], context: context)
        _ = connection.mailFrom(["<c@customer.test>"], context: context)  // MAIL again without RSET
        #expect(harness.gate.current == 1)
        connection.close()
        #expect(harness.gate.current == 0)
    }
}
