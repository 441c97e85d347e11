import Foundation
import Glibc
import PostfixLab
import Synchronization
import Testing

/// The long fault tests (thousands of messages) run only with SHAREMAIL_LOAD_TESTS=1, which CI
/// sets; a developer's quick `swift test` skips them.
let loadTestsEnabled = ProcessInfo.processInfo.environment["SHAREMAIL_LOAD_TESTS"] == "1"

/// Faults under load (issue 6): the milter killed, or reloaded, while mail flows. One suite at a
/// time (each starts its own Postfix and sharemail), so two loads never share the 2 cores.
@Suite("Faults", .serialized)
struct FaultTests {
    /// Unnamed mail from the Internet to sales@, each with its own Message-ID.
    static func inboundLoad(_ count: Int, tag: String) -> [LoadMessage] {
        (0..<count).map { i in
            let id = "\(i).\(tag)@customer.test"
            let sender = "c\(i % 97)@customer.test"
            return LoadMessage(
                id: id, identity: .internet, sender: sender, recipients: ["sales@example.com"],
                bytes: message([
                    "From: Customer \(i) <\(sender)>", "To: sales@example.com",
                    "Subject: load \(i) \(tag)", "Message-ID: <\(id)>",
                ]))
        }
    }

    /// forward_unnamed = true: the manager and every staff of the standard configuration.
    static let everyone = ["manager": 1, "zhangsan": 1, "lisi": 1, "wangwu": 1]

    /// Compares where each message of `report` went with what the rules allow. Accepted
    /// messages must have exactly one of `allowed` routings; the others must be nowhere; nothing
    /// else may have arrived. Returns the problems and how many messages took each routing.
    static func check(
        _ report: LoadReport, against deliveries: [String: [String: Int]],
        allowed: [[String: Int]]
    ) -> (problems: [String], routings: [String: Int]) {
        var problems: [String] = []
        var routings: [String: Int] = [:]
        var known = Set<String>()
        for (message, attempts) in zip(report.messages, report.attempts) {
            known.insert(message.id)
            let got = deliveries[message.id] ?? [:]
            if attempts.last?.isAccepted == true {
                if allowed.contains(got) {
                    routings[describe(got), default: 0] += 1
                } else {
                    let ambiguous = attempts.contains { if case .unknown = $0 { true } else { false } }
                    problems.append(
                        "\(message.id): accepted\(ambiguous ? " (an attempt was lost after the dot)" : "") "
                            + "but delivered to \(describe(got)); attempts: \(attempts)")
                }
            } else if !got.isEmpty {
                problems.append("\(message.id): never accepted, yet delivered to \(describe(got)); attempts: \(attempts)")
            }
        }
        for (id, places) in deliveries where !known.contains(id) {
            problems.append("unexpected delivery \(id.isEmpty ? "(no Message-ID)" : id) to \(describe(places))")
        }
        return (problems, routings)
    }

    static func describe(_ places: [String: Int]) -> String {
        places.isEmpty ? "nowhere" : places.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")
    }

    /// The first `limit` problems, and how many more there were.
    static func summary(_ problems: [String], limit: Int = 20) -> String {
        problems.prefix(limit).joined(separator: "\n") + (problems.count > limit ? "\n… and \(problems.count - limit) more" : "")
    }

    // MARK: 1. SIGKILL

    @Suite(
        "Faults: SIGKILL in the middle of a 2,000-message load", .serialized, .e2eEnvironment(),
        .enabled(if: loadTestsEnabled, "long load test: set SHAREMAIL_LOAD_TESTS=1"))
    struct Crash {
        let env: E2EEnvironment

        init() throws {
            env = try E2EEnvironment.current()
            try env.beginTest()
        }

        @Test(
            "Accepted mail reaches exactly the rule's mailboxes; deferred mail arrives after a retry; nothing twice",
            .timeLimit(.minutes(15)))
        func killMidLoad() throws {
            let sharemail = try #require(env.sharemail)
            let total = 2_000
            let load = LoadSender(
                port: env.postfix.smtpPort, messages: FaultTests.inboundLoad(total, tag: uniqueTag()),
                sessions: 10, retry: RetryPolicy(maxAttempts: 8, firstDelay: .milliseconds(500)))
            let started = ContinuousClock.now
            load.start()
            // At about a third: crash, and come back a second later (as systemd's Restart= would).
            let reachedThird = poll(timeout: .seconds(300)) { load.progress.accepted >= total / 3 }
            let atKill = load.progress
            sharemail.kill()
            usleep(1_000_000)
            try sharemail.start()
            let restartedAfter = ContinuousClock.now - started
            let report = try load.wait(timeout: .seconds(600))
            try #require(reachedThird, "the load never got to a third: \(load.progress)\n\(env.diagnostics)")
            try env.postfix.waitForEmptyQueue(timeout: .seconds(300))
            let drainedAfter = ContinuousClock.now - started

            let deliveries = try env.deliveries()
            let (problems, routings) = FaultTests.check(report, against: deliveries, allowed: [FaultTests.everyone])
            print(
                """
                [faults] SIGKILL mid-load: killed at \(atKill.accepted) accepted, restarted at \(restartedAfter); \
                \(report); queue drained at \(drainedAfter)
                [faults]   deferrals: \(report.deferralReasons.sorted { $0.value > $1.value }.map { "\($0.value)× \($0.key)" })
                [faults]   routings: \(routings)
                """)
            #expect(report.accepted == total, "not every message was accepted in the end: \(report)")
            #expect(report.deferred > 0, "the kill deferred nothing: did it hit the load? \(report)")
            #expect(report.retriedOK == report.deferred, "\(report)")
            #expect(report.ambiguous == 0, "connections lost after the final dot: \(report)")
            #expect(problems.isEmpty, "\(problems.count) messages went wrong:\n\(FaultTests.summary(problems))")
            #expect(routings[FaultTests.describe(FaultTests.everyone)] == total, "\(routings)")
        }
    }

    // MARK: 2. Reload

    static let configA = SharemailConfig.standard()  // forward_unnamed = true
    static let configB = configA.replacingOccurrences(of: "forward_unnamed = true", with: "forward_unnamed = false")
    static let configInvalid = "colour = \"blue\"   # unknown key: the whole file is refused\n" + configA

    @Suite(
        "Faults: reloads every 100 ms in the middle of a 1,000-message load", .serialized, .e2eEnvironment(),
        .enabled(if: loadTestsEnabled, "long load test: set SHAREMAIL_LOAD_TESTS=1"))
    struct Reload {
        let env: E2EEnvironment

        init() throws {
            env = try E2EEnvironment.current()
            try env.beginTest()
        }

        @Test(
            "No message refused or deferred, each routed wholly by one configuration; a bad file is refused",
            .timeLimit(.minutes(10)))
        func reloadMidLoad() throws {
            let sharemail = try #require(env.sharemail)
            try #require(FaultTests.configB != FaultTests.configA, "configuration B must differ from A")
            defer {
                try? sharemail.rewriteConfig(FaultTests.configA)
                try? sharemail.reload()
            }
            let logStart = sharemail.logOffset()
            let total = 1_000
            let load = LoadSender(
                port: env.postfix.smtpPort, messages: FaultTests.inboundLoad(total, tag: uniqueTag()),
                sessions: 10, retry: .never)
            let started = ContinuousClock.now
            load.start()

            // The admin: alternate A and B, `kill -USR1` every 100 ms; once, a broken file.
            var (reloads, invalidSeen) = (0, false)
            while load.progress.finished < total, ContinuousClock.now - started < .seconds(300) {
                reloads += 1
                if reloads == 20 {
                    try sharemail.rewriteConfig(FaultTests.configInvalid)
                    try sharemail.reload()
                    // Mail keeps flowing with the running configuration until the next good file.
                    invalidSeen = poll(timeout: .seconds(20)) { sharemail.log(since: logStart).contains("reload refused") }
                    continue
                }
                try sharemail.rewriteConfig(reloads.isMultiple(of: 2) ? FaultTests.configA : FaultTests.configB)
                try sharemail.reload()
                usleep(100_000)
            }
            let report = try load.wait(timeout: .seconds(300))
            try env.postfix.waitForEmptyQueue(timeout: .seconds(300))
            let elapsed = ContinuousClock.now - started

            let log = sharemail.log(since: logStart)
            let reloaded = log.components(separatedBy: "configuration reloaded").count - 1
            let refused = log.components(separatedBy: "reload refused").count - 1
            let deliveries = try env.deliveries()
            let routeA = FaultTests.everyone, routeB = ["manager": 1]
            let (problems, routings) = FaultTests.check(report, against: deliveries, allowed: [routeA, routeB])
            let (byA, byB) = (routings[FaultTests.describe(routeA)] ?? 0, routings[FaultTests.describe(routeB)] ?? 0)
            print(
                """
                [faults] reload mid-load: \(report); \(reloads) SIGUSR1 sent, \(reloaded) reloads logged, \
                \(refused) refused; routed by A (everyone) \(byA), by B (manager only) \(byB); done at \(elapsed)
                """)
            let failed = report.attempts.enumerated().filter { !($0.element.first?.isAccepted ?? false) }.prefix(10)
                .map { "\(report.messages[$0.offset].id): \($0.element)" }.joined(separator: "\n")
            #expect(report.acceptedFirstTry == total, "refused or deferred during reloads: \(report)\n\(failed)")
            #expect(problems.isEmpty, "\(problems.count) messages routed by neither A nor B:\n\(FaultTests.summary(problems))")
            #expect(byA > 0 && byB > 0, "both configurations should have routed mail: A \(byA), B \(byB)")
            #expect(invalidSeen && refused == 1, "the broken file was not refused in the log:\n\(log.suffix(3000))")
            #expect(reloaded >= reloads / 2, "only \(reloaded) of \(reloads) signals led to a logged reload")
            #expect(log.contains("colour"), "the refusal should name the bad key")
        }
    }
}

// MARK: 4. SIGTERM

extension FaultTests {
    @Suite("Faults: SIGTERM while a message is in its DATA phase", .serialized, .e2eEnvironment())
    struct Drain {
        let env: E2EEnvironment

        init() throws {
            env = try E2EEnvironment.current()
            try env.beginTest()
        }

        /// Starts an Internet message to sales@ and stops half way through its header section:
        /// the milter has seen MAIL and RCPT, so the message is in flight. Returns the open
        /// session, the rest of the message to send, and its Message-ID.
        func messageInFlight(_ tag: String) throws -> (client: SMTPClient, rest: [UInt8], id: String) {
            let id = "\(tag).\(uniqueTag())@customer.test"
            let wire = SMTPClient.wire(
                message([
                    "From: customer@customer.test", "To: sales@example.com",
                    "Subject: \(tag)", "Message-ID: <\(id)>",
                ]))
            let half = wire.count / 2
            let client = try SMTPClient(port: env.postfix.smtpPort)
            #expect(try client.greeting().code == 220)
            #expect(try client.ehlo("harness.test").code == 250)
            #expect(try client.xclient(SMTPIdentity.internet.xclient).code == 220)
            #expect(try client.ehlo(SMTPIdentity.internet.helo).code == 250)
            #expect(try client.mailFrom("customer@customer.test").code == 250)
            #expect(try client.rcptTo("sales@example.com").code == 250)
            #expect(try client.command("DATA").code == 354)
            try client.write(Array(wire[..<half]))
            return (client, Array(wire[half...]) + Array(".\r\n".utf8), id)
        }

        /// A message in flight, then SIGTERM; returns once sharemail logs that it is draining,
        /// with where its log stood before.
        func terminateWhileInFlight(
            _ tag: String, sharemail: SharemailDaemon
        ) throws
            -> (client: SMTPClient, rest: [UInt8], id: String, logOffset: UInt64)
        {
            let offset = sharemail.logOffset()
            let (client, rest, id) = try messageInFlight(tag)
            do {
                try sharemail.send(signal: SIGTERM)
            } catch {
                client.quit()
                throw error
            }
            #expect(
                waitForLog("stopping; new mail is deferred", since: offset, sharemail: sharemail),
                "no drain in the log:\n\(sharemail.logTail())")
            return (client, rest, id, offset)
        }

        /// Polls the daemon's log (bounded) until it contains `text`.
        func waitForLog(_ text: String, since offset: UInt64, sharemail: SharemailDaemon) -> Bool {
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                if sharemail.log(since: offset).contains(text) { return true }
                usleep(20_000)
            }
            return false
        }

        @Test(
            "SIGTERM drains: the message in flight is finished and routed, new mail is deferred, then sharemail exits 0",
            .timeLimit(.minutes(3)))
        func drainOnSIGTERM() throws {
            let sharemail = try #require(env.sharemail)
            defer { if !sharemail.isRunning { try? sharemail.start() } }
            let (client, rest, id, offset) = try terminateWhileInFlight("drain", sharemail: sharemail)
            defer { client.quit() }

            // While it drains, new mail is deferred (451 4.3.2 at RCPT), never accepted unfiltered.
            let late = try env.send(
                as: .internet, from: "late@customer.test", to: ["sales@example.com"],
                message: message(["From: late@customer.test", "To: sales@example.com", "Subject: late"]))
            let refusal = late.firstRefusal
            #expect(refusal.map { (400..<500).contains($0.code) } == true, "new mail while draining: \(late)")
            #expect(
                try sharemail.waitForExit(timeout: .milliseconds(500)) == nil,
                "sharemail exited with a message in flight:\n\(sharemail.logTail())")

            // The message in flight is finished: accepted, and routed by rule 1.
            let started = ContinuousClock.now
            try client.write(rest)
            let reply = try client.reply()
            let status = try sharemail.waitForExit(timeout: .seconds(20))
            let stoppedAfter = ContinuousClock.now - started
            try env.waitForDelivery()
            let copies = try env.deliveries()[id] ?? [:]
            print(
                "[faults] SIGTERM drain: reply to the dot \(reply); new mail got \(refusal.map(\.description) ?? "nothing"); "
                    + "exit status \(status.map(String.init) ?? "still running") \(stoppedAfter) after the message ended; "
                    + "copies \(FaultTests.describe(copies))")
            #expect(reply.code == 250, "the message in flight should be finished: \(reply)\n\(env.diagnostics)")
            #expect(copies == FaultTests.everyone, "routed to \(FaultTests.describe(copies))")
            #expect(status == 0, "sharemail did not exit cleanly within 20 s of the last message\n\(sharemail.logTail())")
            let log = sharemail.log(since: offset)
            #expect(log.contains("the 1 message(s) in flight are finished") && log.contains("stopped"), "\(sharemail.logTail())")
            try env.expectSinkCount(0)
        }

        @Test(
            "A second SIGTERM stops at once: the message in flight is deferred (4xx) and delivered nowhere",
            .timeLimit(.minutes(3)))
        func secondSignalStopsNow() throws {
            let sharemail = try #require(env.sharemail)
            defer { if !sharemail.isRunning { try? sharemail.start() } }
            let (client, rest, id, offset) = try terminateWhileInFlight("stopnow", sharemail: sharemail)
            defer { client.quit() }
            try sharemail.send(signal: SIGTERM)
            let status = try sharemail.waitForExit(timeout: .seconds(20))
            #expect(status == 0, "sharemail did not exit within 20 s of the second SIGTERM\n\(sharemail.logTail())")

            // Debian's libmilter reads nothing more of a stopped session: Postfix defers the rest
            // (milter_default_action = tempfail), and so it does for new mail with no milter.
            try client.write(rest)
            let reply = try client.reply()
            let late = try env.send(
                as: .internet, from: "late@customer.test", to: ["sales@example.com"],
                message: message(["From: late@customer.test", "To: sales@example.com", "Subject: late"]))
            try env.waitForDelivery()
            let copies = try env.deliveries()[id] ?? [:]
            print("[faults] second SIGTERM: reply to the dot \(reply); new mail got \(late.firstRefusal.map(\.description) ?? "nothing")")
            #expect((400..<500).contains(reply.code), "the message in flight should be deferred: \(reply)\n\(env.diagnostics)")
            #expect(late.firstRefusal.map { (400..<500).contains($0.code) } == true, "new mail with no milter: \(late)")
            #expect(copies.isEmpty, "deferred, yet delivered: \(FaultTests.describe(copies))")
            #expect(sharemail.log(since: offset).contains("again: stopping now"), "\(sharemail.logTail())")
            try env.expectSinkCount(0)
        }
    }
}
