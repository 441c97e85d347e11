// The SQLite store writes its times through SQLite's strftime, not GRDB's
// Date binding (Foundation's DateFormatter costs more than the insert). The
// text must stay exactly what GRDB writes for a Date: queries compare it with
// Dates GRDB binds (`log --since`, pruning), and files written before hold it.
import Foundation
import GRDB
import Testing

@testable import ShareMailStore

struct StoredTimeTests {
    @Test("every time column holds the text GRDB writes for the same Date, to the millisecond")
    func timesAreGRDBsDateText() throws {
        let (store, location) = try openStore(.sqlite)
        guard case .sqlite(let path) = location else { return }
        // Milliseconds that a binary fraction cannot hold exactly, and a date past 2038.
        for (index, seconds) in [1_700_000_000.123, 2_200_000_000.999, 1_000_000_000.5].enumerated() {
            let time = Date(timeIntervalSince1970: seconds)
            try store.record([
                .sent(
                    SentMessage(
                        messageID: "m\(index)@x", staff: zhangsan, mailbox: sales, customers: ["c@client.example"],
                        time: time, queueID: "Q\(index)")),
                .audit(
                    AuditEntry(
                        time: time, queueID: "Q\(index)", direction: "staff", sender: zhangsan,
                        recipients: ["c@client.example", "d@client.example"], action: "accept", rule: "staff-reply",
                        staff: zhangsan, mailbox: sales, customer: "c@client.example")),
                .assignment(.thread(messageID: "m\(index)@x"), staff: lisi, mailbox: sales, time: time),
            ])
        }
        store.close()
        let database = try DatabaseQueue(path: path)
        try database.read { db in
            for (index, seconds) in [1_700_000_000.123, 2_200_000_000.999, 1_000_000_000.5].enumerated() {
                let expected = try String.fetchOne(db, sql: "SELECT ?", arguments: [Date(timeIntervalSince1970: seconds)])
                for (table, key) in [("sent", "queue_id"), ("audit", "queue_id")] {
                    let stored = try String.fetchOne(db, sql: "SELECT time FROM \(table) WHERE \(key) = ?", arguments: ["Q\(index)"])
                    #expect(stored == expected, "\(table)")
                }
                let customer = try String.fetchOne(
                    db, sql: "SELECT sent_customer.time FROM sent_customer JOIN sent ON sent.id = sent_id WHERE queue_id = ?",
                    arguments: ["Q\(index)"])
                #expect(customer == expected, "sent_customer")
                let assigned = try String.fetchOne(db, sql: "SELECT time FROM assignments WHERE key = ?", arguments: ["m\(index)@x"])
                #expect(assigned == expected, "assignments")
            }
            let recipients = try String.fetchOne(db, sql: "SELECT recipients FROM audit WHERE queue_id = 'Q0'")
            #expect(recipients == #"["c@client.example","d@client.example"]"#)
        }
        let reopened = try Stores.open(location, logger: testLogger, timeout: .seconds(2))
        defer { reopened.close() }
        let since = try reopened.auditLog(LogFilter(since: Date(timeIntervalSince1970: 1_700_000_000.123), limit: 0))
        #expect(since.map(\.queueID).sorted() == ["Q0", "Q1"])
    }
}
