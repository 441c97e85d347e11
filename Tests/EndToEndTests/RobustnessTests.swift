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
            return text(["From: customer@customer.test",
                         "To: " + (["sales@example.com"] + others).joined(separator: ",\r\n "),
                         "Subject: \(uniqueTag())"])
        },
        Malformed(label: "20 KB folded Subject") {
            let words = (0..<2000).map { "word\($0)" }
            let folded = stride(from: 0, to: words.count, by: 8)
                .map { words[$0..<min($0 + 8, words.count)].joined(separator: " ") }.joined(separator: "\r\n ")
            return text(["From: customer@customer.test", "To: sales@example.com", "Subject: " + folded])
        },
        Malformed(label: "20 KB folded To of unknown names") {
            let names = (0..<500).map { "\"Somebody Unknown \($0)\" <sales@example.com>" }
            return text(["From: customer@customer.test", "To: " + names.joined(separator: ",\r\n "),
                         "Subject: \(uniqueTag())"])
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
@Suite("Aliases: GB2312 / Big5 names", .serialized,
       .e2eEnvironment(sharemail: SharemailConfig.standard(zhangsanAliases: ["Zhang San", "张三", "張三"])))
struct AliasCharsetTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    @Test("An alias on sales@ routes to that staff only (plus the manager)", arguments: [
        "=?GB2312?B?1cXI/Q==?= <sales@example.com>",  // 张三 in GB2312
        "=?Big5?B?sWmkVA==?= <sales@example.com>",  // 張三 in Big5
        "=?UTF-8?B?5byg5LiJ?= <sales@example.com>",  // 张三 in UTF-8
        #""Zhang San" <sales@example.com>"#,
    ])
    func aliasRoutes(_ to: String) throws {
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"],
            message: message(["From: customer@customer.test", "To: " + to, "Subject: \(uniqueTag())"]))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "zhangsan": 1])
    }
}
