import Foundation
import NIOConcurrencyHelpers
import ShareMailStore
import Testing

@testable import ShareMailDaemon

/// The memory's writer thread: records leave the caller at once, arrive in order, in as few
/// batches as the writer's pace allows, and `flush` waits for them.
@Suite("Record writer: off the path Postfix waits for")
struct RecordWriterTests {
    static func audit(_ n: Int) -> StoreRecord {
        .audit(
            AuditEntry(
                time: Date(timeIntervalSince1970: Double(n)), queueID: "Q\(n)", direction: "inbound",
                sender: "c@customer.test", recipients: ["sales@example.com"], action: "accept",
                rule: "unnamed", staff: nil, mailbox: "sales@example.com", customer: "c@customer.test"))
    }

    @Test("every record arrives once, in order; a slow write lets the next ones share a batch; flush waits")
    func batchesInOrder() {
        let written = NIOLockedValueBox<[[StoreRecord]]>([])
        let writer = RecordWriter()
        writer.start { batch in
            Thread.sleep(forTimeInterval: 0.05)  // a database that takes its time
            written.withLockedValue { $0.append(batch) }
        }
        for n in 0..<200 { #expect(writer.enqueue([Self.audit(n)]) == 0) }
        #expect(writer.flush(timeout: .seconds(10)))
        let batches = written.withLockedValue { $0 }
        #expect(batches.flatMap { $0 } == (0..<200).map(Self.audit))
        #expect(batches.count < 200, "a write that takes 50 ms should take many records at once: \(batches.count) batches")
    }

    @Test("an idle writer writes at once; records that follow wait for the next commit, together")
    func oneCommitPerInterval() {
        let written = NIOLockedValueBox<[[StoreRecord]]>([])
        let writer = RecordWriter(interval: .seconds(2))
        writer.start { batch in written.withLockedValue { $0.append(batch) } }
        func batches() -> [[StoreRecord]] { written.withLockedValue { $0 } }

        writer.enqueue([Self.audit(0)])
        let deadline = ContinuousClock.now + .seconds(1)
        while batches().isEmpty && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.005) }
        #expect(batches() == [[Self.audit(0)]], "the first record after a quiet spell is written at once")

        writer.enqueue([Self.audit(1)])
        writer.enqueue([Self.audit(2)])
        Thread.sleep(forTimeInterval: 0.5)
        #expect(batches().count == 1, "the next commit is due 2 s after the first")
        #expect(writer.flush(timeout: .seconds(10)))
        #expect(batches() == [[Self.audit(0)], [Self.audit(1), Self.audit(2)]])
    }

    @Test("the writer's thread carries its name, which `top -H` and bench/run look for")
    func threadName() {
        RecordWriter().start { _ in }
        // The thread names itself as it starts.
        let deadline = ContinuousClock.now + .seconds(10)
        var names: [String] = []
        repeat {
            names = threadNames()
            if names.contains("sm-record") { break }
            Thread.sleep(forTimeInterval: 0.01)
        } while ContinuousClock.now < deadline
        #expect(names.contains("sm-record"), "threads: \(Set(names))")
    }

    @Test("a writer that cannot keep up drops the oldest beyond its capacity, and says how many")
    func capacity() {
        let release = ConditionLock(value: 0)
        let writer = RecordWriter()
        writer.start { _ in
            release.lock(whenValue: 1)
            release.unlock()
        }
        _ = writer.enqueue([Self.audit(-1)])  // taken by the writer, which then waits
        Thread.sleep(forTimeInterval: 0.1)
        let records = (0..<(RecordWriter.capacity + 10)).map(Self.audit)
        #expect(writer.enqueue(records) == 10)
        #expect(!writer.flush(timeout: .milliseconds(50)), "flush must give up while the write hangs")
        release.lock()
        release.unlock(withValue: 1)
        #expect(writer.flush(timeout: .seconds(10)))
    }
}
