import Foundation
import PostfixLab
import Synchronization
import Testing

/// Rule 7: whatever arrives, sales@ mail reaches the manager (never lost, never bounced).
@Suite("Robustness: malformed mail to sales@", .serialized, .e2eEnvironment())
struct MalformedInputTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    struct Malformed: Sendable, CustomTestStringConvertible {
        let label: String
        let header: @Sendable () -> [UInt8]  // the whole header section, raw
        var testDescription: String { label }
    }

    static func text(_ lines: [String]) -> [UInt8] { Array(lines.joined(separator: "\r\n").utf8) }

    static let cases: [Malformed] = [
        Malformed(label: "no From header at all") {
            text(["To: sales@example.com", "Subject: no from \(uniqueTag())"])
        },
        Malformed(label: "broken encoded word as the name") {
            text(["From: customer@customer.test", "To: =?UTF-8?B?####?= <sales@example.com>", "Subject: \(uniqueTag())"])
        },
        Malformed(label: "To with 3,000 addresses, folded") {
            // sales@ first: Postfix itself keeps only header_address_token_limit tokens.
            let others = (1..<3000).map { "\"Person \($0)\" <person\($0)@customer.test>" }
            return text([
                "From: customer@customer.test",
                "To: " + (["sales@example.com"] + others).joined(separator: ",\r\n "),
                "Subject: \(uniqueTag())",
            ])
        },
        Malformed(label: "20 KB folded Subject") {
            let words = (0..<2000).map { "word\($0)" }
            let folded = stride(from: 0, to: words.count, by: 8)
                .map { words[$0..<min($0 + 8, words.count)].joined(separator: " ") }.joined(separator: "\r\n ")
            return text(["From: customer@customer.test", "To: sales@example.com", "Subject: " + folded])
        },
        Malformed(label: "20 KB folded To of unknown names") {
            let names = (0..<500).map { "\"Somebody Unknown \($0)\" <sales@example.com>" }
            return text([
                "From: customer@customer.test", "To: " + names.joined(separator: ",\r\n "),
                "Subject: \(uniqueTag())",
            ])
        },
        Malformed(label: "raw 8-bit bytes in Subject and in the To name") {
            Array("From: customer@customer.test\r\nSubject: ".utf8) + (0x80...0xFF).map { UInt8($0) }
                + Array("\r\nTo: ".utf8) + [0xC0, 0xFF, 0xFE, 0x80, 0x20] + Array("<sales@example.com>".utf8)
        },
    ]

    @Test("Malformed mail to sales@ still reaches the manager exactly once", arguments: cases)
    func reachesManager(_ malformed: Malformed) throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"],
            message: rawMessage(malformed.header()))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        let counts = try env.maildirs.counts()
        #expect(counts["manager"] == 1, "manager copies: \(counts)\n\(env.diagnostics)")
        for staff in ["zhangsan", "lisi", "wangwu"] {
            #expect((counts[staff] ?? 0) <= 1, "\(staff) got duplicates: \(counts)")
        }
        try env.expectSinkCount(0)
    }
}

/// Load: big bodies and many simultaneous sessions, each routed on its own.
@Suite("Robustness: size and concurrency", .serialized, .e2eEnvironment())
struct LoadTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    /// 99 + From is the most sharemail rewrites (Postfix's cleanup gives up on about 140 with a
    /// "queue file write error", a 4xx); 1,500 is refused with a 5xx that says why.
    @Test(
        "A staff message with many headers that each name the staff: rewritten, or a clear 5xx, never an endless 4xx",
        arguments: [99, 1_500])
    func manyRewrittenHeaders(count: Int) throws {
        let lines = (1...count).map { "X-Note-\($0): ask zhangsan@example.com" }
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com", to: ["customer@customer.test"],
            message: message(["From: zhangsan@example.com", "To: customer@customer.test", "Subject: \(uniqueTag())"] + lines))
        let reply = try #require(outcome.data, "\(outcome)")
        #expect(
            reply.code == 250 || reply.code / 100 == 5,
            "a 4xx makes the client retry the same message forever: \(reply)\n\(env.diagnostics)")
        if count < 100 {
            #expect(reply.code == 250, "\(reply)\n\(env.diagnostics)")
            try env.expectSinkCount(1)
        } else {
            #expect(reply.code == 550 && reply.text.contains("headers name your own address"), "\(reply)")
            try env.expectSinkCount(0)
        }
        for sent in try env.sink.messages() {
            #expect(!sent.file.text.lowercased().contains("zhangsan@"), "a staff address leaks: \(sent)")
        }
    }

    @Test("A 5 MB message to sales@ is routed like a small one")
    func bigBody() throws {
        let line = String(repeating: "0123456789", count: 7) + "\r\n"
        let body = String(repeating: line, count: 5_000_000 / line.utf8.count)
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"],
            message: message(
                [
                    "From: customer@customer.test", #"To: "Lisi" <sales@example.com>"#,
                    "Subject: \(uniqueTag())",
                ], body: body))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "lisi": 1])
        let copy = try #require(try env.maildirs.messages("lisi").first)
        #expect(copy.raw.count > 4_900_000, "the Maildir copy is truncated: \(copy.raw.count) bytes")  // LF line ends in Maildir
    }

    @Test("20 simultaneous sessions (named and unnamed, inbound and outbound) are each routed right")
    func concurrentSessions() throws {
        let outcomes = Mutex<[String]>([])  // problems, collected from all threads
        // One thread per session (not concurrentPerform, which would use one per core): all
        // 20 milter sessions are open at the same time.
        inParallel(20) { i in
            do {
                let outcome: SMTPOutcome
                switch i % 4 {
                case 0:  // rule 4: named → Zhangsan
                    outcome = try env.send(
                        as: .internet, from: "c\(i)@customer.test", to: ["sales@example.com"],
                        message: message([
                            "From: c\(i)@customer.test", #"To: "Zhangsan" <sales@example.com>"#,
                            "Subject: named \(i)",
                        ]))
                case 1:  // rule 1: unnamed → everyone
                    outcome = try env.send(
                        as: .internet, from: "c\(i)@customer.test", to: ["sales@example.com"],
                        message: message(["From: c\(i)@customer.test", "To: sales@example.com", "Subject: unnamed \(i)"]))
                case 2:  // rule 3: Lisi replies → rewritten to the sink, copy for the manager
                    outcome = try env.send(
                        as: .staff(login: "lisi"), from: "lisi@example.com", to: ["c\(i)@customer.test"],
                        message: message(["From: lisi@example.com", "To: c\(i)@customer.test", "Subject: reply \(i)"]))
                default:  // rule 2: refused at RCPT
                    outcome = try env.send(
                        as: .internet, from: "c\(i)@customer.test", to: ["lisi@example.com"],
                        message: message(["From: c\(i)@customer.test", "To: lisi@example.com", "Subject: direct \(i)"]))
                }
                let expectedAccepted = i % 4 != 3
                if outcome.accepted != expectedAccepted {
                    outcomes.withLock { $0.append("session \(i): \(outcome)") }
                }
            } catch {
                outcomes.withLock { $0.append("session \(i): \(error)") }
            }
        }
        let problems = outcomes.withLock { $0 }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))\n\(env.diagnostics)")
        try env.waitForDelivery()
        // 5 named (manager, zhangsan) + 5 unnamed (manager, all three staff) + 5 replies (manager).
        try env.expectMailboxes(["manager": 15, "zhangsan": 10, "lisi": 5, "wangwu": 5])
        try env.expectSinkCount(5)
        for sent in try env.sink.messages() {
            #expect(sent.envelopeSender == "sales@example.com", "\(sent)")
            #expect(!sent.file.text.contains("lisi@example.com"), "\(sent)")
        }
    }
}

/// Runs `body(0..<count)` on `count` threads at once and returns when all are done.
func inParallel(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            body(i)
            group.leave()
        }
        thread.start()
    }
    group.wait()
}

/// milter_default_action = tempfail: with sharemail gone, Postfix defers instead of letting
/// mail bypass the policy.
@Suite("Robustness: sharemail down", .serialized, .e2eEnvironment())
struct MilterDownTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    @Test("A killed milter means 4xx (451 4.7.1) and no delivery; a restarted one works again")
    func killedMilterTempfails() throws {
        let sharemail = try #require(env.sharemail)
        sharemail.kill()

        let mail = message(["From: customer@customer.test", "To: sales@example.com", "Subject: \(uniqueTag())"])
        let refused = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"], message: mail)
        let refusal = try #require(refused.firstRefusal, "accepted although the milter is dead:\n\(refused)")
        #expect((400..<500).contains(refusal.code), "\(refused)")
        #expect(refusal.text.contains("4.7.1"), "\(refusal)")
        #expect(!refused.accepted)
        try env.expectMailboxes([:])
        try env.expectSinkCount(0)

        try sharemail.start()
        let accepted = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"], message: mail)
        #expect(accepted.accepted, "\(accepted)\n\(env.diagnostics)")
        #expect(try env.maildirs.messages("manager").count == 1, "\(env.diagnostics)")
    }
}

/// Staff aliases (another issue): names in other scripts and charsets route like the name.
@Suite(
    "Aliases: GB2312 / Big5 names", .serialized,
    .e2eEnvironment(sharemail: SharemailConfig.standard(zhangsanAliases: ["Zhang San", "张三", "張三"])))
struct AliasCharsetTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    struct NameCase: Sendable, CustomTestStringConvertible {
        let label: String
        let to: [UInt8]  // the To value, raw
        var testDescription: String { label }
        init(_ label: String, _ to: String) { (self.label, self.to) = (label, Array(to.utf8)) }
        init(_ label: String, raw: [UInt8]) { (self.label, self.to) = (label, raw) }
    }

    static let names: [NameCase] = [
        NameCase("张三 as GB2312 encoded word", "=?GB2312?B?1cXI/Q==?= <sales@example.com>"),
        NameCase("張三 as Big5 encoded word", "=?Big5?B?sWmkVA==?= <sales@example.com>"),
        NameCase("张三 as UTF-8 encoded word", "=?UTF-8?B?5byg5LiJ?= <sales@example.com>"),
        NameCase("the ASCII alias Zhang San", #""Zhang San" <sales@example.com>"#),
        NameCase("张三 as raw UTF-8 (SMTPUTF8-style client)", #""张三" <sales@example.com>"#),
        // Old Chinese clients send raw GB2312 bytes; header_fallback_charset defaults to GB18030.
        NameCase("张三 as raw GB2312 bytes", raw: [0x22, 0xD5, 0xC5, 0xC8, 0xFD, 0x22] + Array(" <sales@example.com>".utf8)),
    ]

    @Test("An alias on sales@ routes to that staff only (plus the manager)", arguments: names)
    func aliasRoutes(_ name: NameCase) throws {
        let header = Array("From: customer@customer.test\r\nSubject: \(uniqueTag())\r\nTo: ".utf8) + name.to
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"], message: rawMessage(header))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "zhangsan": 1])
    }
}
