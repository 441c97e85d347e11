import Foundation
import Logging
import ShareMailStore
import Testing

/// `sharemail pending` and `sharemail forget` (issue 13) on a SQLite memory
/// seeded with known records: golden output, exit codes, nothing created by
/// a command that only reads.
@Suite("sharemail pending and forget", .serialized)
struct TeamCLITests {
    let scratch: StateFileTests.Scratch
    /// The time every waiting time is measured against (`--now`).
    static let now = "2026-11-03T12:00:00Z"

    init() throws {
        scratch = try StateFileTests.Scratch()
    }

    /// Two customers wait at sales@ (one for Zhangsan, one for nobody in particular), one
    /// was answered; the one to forget also has a sent message, an assignment and audit rows.
    func seed() throws {
        let store = try Stores.open(
            .sqlite(path: scratch.state), logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
            timeout: .seconds(5))
        defer { store.close() }
        let base = try #require(ISO8601DateFormatter().date(from: Self.now))
        func ago(_ seconds: TimeInterval) -> Date { base.addingTimeInterval(-seconds) }
        func audit(
            _ queue: String, _ sender: String, _ recipients: [String], customer: String, staff: String?, rule: String,
            direction: String = "inbound", _ time: Date
        ) -> StoreRecord {
            .audit(
                AuditEntry(
                    time: time, queueID: queue, direction: direction, sender: sender, recipients: recipients,
                    action: "accept", rule: rule, staff: staff, mailbox: "sales@example.com", customer: customer))
        }
        try store.record([
            .waiting(
                WaitingMessage(
                    mailbox: "sales@example.com", customer: "buyer@customer.test", staff: "zhangsan@example.com",
                    subject: "订单 42: where is it?", time: ago(26 * 3_600 + 5 * 60))),
            audit(
                "4B7C21E", "buyer@customer.test", ["sales@example.com"], customer: "buyer@customer.test",
                staff: "zhangsan@example.com", rule: "round-robin", ago(26 * 3_600 + 5 * 60)),
            .sent(
                SentMessage(
                    messageID: "z1@example.com", staff: "zhangsan@example.com", mailbox: "sales@example.com",
                    customers: ["buyer@customer.test"], time: ago(30 * 3_600), queueID: "3A1F00B")),
            .assignment(
                .customer(address: "buyer@customer.test"), staff: "zhangsan@example.com", mailbox: "sales@example.com",
                time: ago(30 * 3_600)),
            .waiting(
                WaitingMessage(
                    mailbox: "sales@example.com", customer: "new@customer.test", staff: nil,
                    subject: "", time: ago(4 * 3_600 + 7 * 60))),
            audit(
                "5C2D11A", "new@customer.test", ["sales@example.com"], customer: "new@customer.test", staff: nil,
                rule: "unnamed", ago(4 * 3_600 + 7 * 60)),
            .waiting(
                WaitingMessage(
                    mailbox: "sales@example.com", customer: "quick@customer.test", staff: "lisi@example.com",
                    subject: "Quote, please", time: ago(20 * 60))),
            .waiting(
                WaitingMessage(
                    mailbox: "sales@example.com", customer: "answered@customer.test", staff: "lisi@example.com",
                    subject: "Done", time: ago(3_600))),
            .answered(mailbox: "sales@example.com", customers: ["answered@customer.test"]),
        ])
    }

    func run(_ arguments: [String]) throws -> CLI.Result {
        try CLI.run(arguments + ["--config", scratch.config])
    }

    @Test("pending: a table oldest first, --older-than, --mailbox, --json")
    func pending() throws {
        defer { scratch.remove() }
        try seed()
        let table = try run(["pending", "--now", Self.now])
        #expect(table.status == 0, "\(table.error)")
        try CLI.expectGolden(table.output, "pending.txt")
        let older = try run(["pending", "--now", Self.now, "--older-than", "4h"])
        try CLI.expectGolden(older.output, "pending-older-than-4h.txt")
        let json = try run(["pending", "--now", Self.now, "--older-than", "1d", "--json", "--mailbox", "sales@example.com"])
        try CLI.expectGolden(json.output, "pending.json")
        let none = try run(["pending", "--now", Self.now, "--mailbox", "support@example.org"])
        #expect(none.output == "WAITING  MAILBOX  CUSTOMER  STAFF  SUBJECT\n(nothing pending)\n")
        #expect(try run(["pending", "--older-than", "4 hours"]).status == 64)
    }

    @Test("forget: --dry-run counts, then it deletes; log and pending show nothing of the customer")
    func forget() throws {
        defer { scratch.remove() }
        try seed()
        let dry = try run(["forget", "--customer", "Buyer@Customer.test", "--dry-run"])
        #expect(dry.status == 0, "\(dry.error)")
        try CLI.expectGolden(dry.output, "forget-dry-run.txt")
        #expect(try run(["log", "--customer", "buyer@customer.test"]).output.contains("4B7C21E"), "a dry run deletes nothing")
        let done = try run(["forget", "--customer", "buyer@customer.test"])
        #expect(done.status == 0, "\(done.error)")
        try CLI.expectGolden(done.output, "forget.txt")
        let log = try run(["log"])
        #expect(!log.output.contains("buyer@customer.test") && log.output.contains("5C2D11A"), "\(log.output)")
        let pending = try run(["pending", "--now", Self.now])
        #expect(!pending.output.contains("buyer@customer.test") && pending.output.contains("new@customer.test"), "\(pending.output)")
        #expect(try run(["forget", "--customer", "not an address"]).status == 64)
    }

    @Test("pending and forget --dry-run where no database is: exit 66, nothing created")
    func noDatabase() throws {
        defer { scratch.remove() }
        for arguments in [["pending"], ["forget", "--customer", "a@customer.test", "--dry-run"]] {
            let result = try run(arguments)
            #expect(result.status == 66, "\(arguments): \(result.output)\(result.error)")
            #expect(try scratch.files() == ["sharemail.toml"], "\(arguments)")
        }
    }
}
