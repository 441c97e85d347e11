import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import ShareMail
import ShareMailStore

/// The conversation memory as the daemon uses it: opened lazily (a database
/// that is down at start-up must not keep sharemail from serving), every
/// failure logged, counted and turned into "no memory" so that mail flows.
final class Memory: Sendable {
    private let location: StoreLocation
    private let timeout: Duration
    private let logger: Logger
    private let state = NIOLockedValueBox(State())  // a pthread mutex: ThreadSanitizer sees it
    private let errors = Counter(label: "sharemail_store_errors_total")
    /// Records are written off the path Postfix waits for.
    private let writer = RecordWriter()

    private struct State {
        var store: (any ConversationStore)?
        /// An open attempt is under way on its own thread.
        var opening = false
        /// No new attempt to open before this time.
        var retryAfter = ContinuousClock.now
    }

    /// How long to wait before trying again to open a store that failed.
    static let retryInterval: Duration = .seconds(10)

    init(location: StoreLocation, timeout: Duration, logger: Logger) {
        self.location = location
        self.timeout = timeout
        self.logger = logger
        writer.start { [self] records in
            guard let store = store() else { return }
            do {
                try store.record(records, deadline: Deadline(after: timeout))
            } catch {
                failed("record", error, store)
            }
        }
    }

    /// Waits until every record handed over so far is written (a stop, a test).
    @discardableResult
    func flush(timeout: Duration = .seconds(5)) -> Bool {
        writer.flush(timeout: timeout)
    }

    /// Opens the store now, on the calling thread (at start-up). A failure
    /// is logged; later `store()` calls retry in the background.
    func openNow() {
        guard let store = open() else { return }
        state.withLockedValue { $0.store = store }
    }

    /// The open store, or nil (route without memory). When there is none and
    /// it is time to try again, a background thread opens it: opening can
    /// take seconds (connect, migrations) and no message waits for that.
    func store() -> (any ConversationStore)? {
        if let lost = takeReplaced() {
            // The open store writes to a file that routing and `sharemail assign` no longer
            // see: open the path again now (a local file, quick), so this message already
            // reads what is there.
            errors.increment()
            logger.error(
                "conversation memory file was deleted or replaced while sharemail ran: opening it again",
                metadata: ["state": "\(location.redacted)"])
            lost.close()
            let store = open()
            state.withLockedValue { state in
                state.opening = false
                state.store = store
            }
            return store
        }
        let startOpening: Bool = state.withLockedValue { state in
            guard state.store == nil, !state.opening, ContinuousClock.now >= state.retryAfter else { return false }
            state.opening = true
            return true
        }
        if startOpening {
            DaemonThread.start("sm-open-state") { [self] in
                let store = open()
                state.withLockedValue { state in
                    state.opening = false
                    state.store = store
                }
            }
        }
        return state.withLockedValue { $0.store }
    }

    /// The open store if its file is gone or another one (one stat of the path), taken out
    /// of service so that one caller reopens it while the others route without memory.
    private func takeReplaced() -> (any ConversationStore)? {
        state.withLockedValue { state in
            guard let store = state.store, !state.opening, store.isReplaced else { return nil }
            state.store = nil
            state.opening = true
            return store
        }
    }

    private func open() -> (any ConversationStore)? {
        do {
            let store = try Stores.open(location, logger: logger, timeout: timeout)
            logger.info("conversation memory open", metadata: ["state": "\(location.redacted)"])
            return store
        } catch {
            errors.increment()
            state.withLockedValue { $0.retryAfter = ContinuousClock.now + Self.retryInterval }
            logger.error(
                "conversation memory unavailable: routing by names",
                metadata: [
                    "state": "\(location.redacted)", "error": "\(error)",
                ])
            return nil
        }
    }

    /// Answers each lookup the engine asked for, one round trip per mailbox,
    /// all within one `timeout` for the message. Returns nil (and logs) when
    /// the store cannot answer: the engine then routes without memory.
    func recall(_ queries: [MemoryQuery]) -> [EmailAddress: ConversationMemory]? {
        guard !queries.isEmpty else { return [:] }
        guard let store = store() else { return nil }
        var result: [EmailAddress: ConversationMemory] = [:]
        // One budget for all of a message's lookups, not one per call.
        let deadline = Deadline(after: timeout)
        do {
            for query in queries {
                let found = try store.recall(
                    messageIDs: query.messageIDs, customer: query.customer?.value,
                    mailbox: query.mailbox.value, lastStaff: query.lastStaff, deadline: deadline)
                result[query.mailbox] = ConversationMemory(
                    assigned: found.assigned.flatMap(EmailAddress.init),
                    threadOwner: found.threadOwner.flatMap(EmailAddress.init),
                    lastStaff: found.lastStaff.flatMap(EmailAddress.init))
            }
        } catch {
            failed("lookup", error, store)
            return nil
        }
        return result
    }

    /// Takes the round-robin turns the engine asked for (`PolicyEngine.turnRequests`), one
    /// atomic step in the store each, within the lookup's budget. nil (and logged) when the
    /// store cannot: the engine then gives the conversation to the manager alone.
    func takeTurns(_ requests: [TurnRequest]) -> [EmailAddress: EmailAddress]? {
        guard !requests.isEmpty else { return [:] }
        guard let store = store() else { return nil }
        var turns: [EmailAddress: EmailAddress] = [:]
        do {
            for request in requests {
                let staff = try store.takeTurn(
                    mailbox: request.mailbox.value, order: request.order.map(\.value),
                    available: request.available.map(\.value), at: Date())
                turns[request.mailbox] = staff.flatMap(EmailAddress.init)
            }
        } catch {
            failed("round-robin turn", error, store)
            return nil
        }
        return turns
    }

    /// Sets the pending gauges every `interval` on a thread of its own, from one query: never
    /// on the mail path. `mailboxes` says which unified addresses to report (0 when none wait).
    func startPendingGauges(mailboxes: @escaping @Sendable () -> [EmailAddress], interval: Duration = .seconds(10)) {
        DaemonThread.start("sm-pending") { [self] in
            var gauges: [String: (count: Gauge, oldest: Gauge)] = [:]
            while true {
                if let store = store() {
                    do {
                        let summary = Dictionary(try store.pendingSummary().map { ($0.mailbox, $0) }, uniquingKeysWith: { a, _ in a })
                        let now = Date()
                        for mailbox in Set(mailboxes().map(\.value)).union(summary.keys) {
                            let pair =
                                gauges[mailbox] ?? (
                                    Gauge(label: "sharemail_pending_conversations", dimensions: [("mailbox", mailbox)]),
                                    Gauge(label: "sharemail_oldest_pending_seconds", dimensions: [("mailbox", mailbox)])
                                )
                            gauges[mailbox] = pair
                            let found = summary[mailbox]
                            pair.count.record(found?.count ?? 0)
                            pair.oldest.record(found.map { max(0, now.timeIntervalSince($0.oldest)) } ?? 0)
                        }
                    } catch {
                        failed("pending summary", error, store)
                    }
                }
                Thread.sleep(forTimeInterval: interval.secondsValue)
            }
        }
    }

    /// Hands what the decision says to remember, and the audit entry, to the
    /// writer thread: call it once the message's changes are applied.
    func record(_ decision: Decision, facts: MessageFacts, queueID: String) {
        let dropped = writer.enqueue(Self.records(decision, facts: facts, queueID: queueID, at: Date()))
        if dropped > 0 {
            errors.increment()
            logger.error("conversation memory writes are not keeping up: \(dropped) records dropped")
        }
    }

    /// What to write for one decision, in order.
    static func records(_ decision: Decision, facts: MessageFacts, queueID: String, at now: Date) -> [StoreRecord] {
        var records: [StoreRecord] = []
        if decision.action == .accept {
            for update in decision.memoryUpdates {
                switch update {
                case .sent(let messageID, let staff, let mailbox, let customers):
                    records.append(
                        .sent(
                            SentMessage(
                                messageID: messageID, staff: staff.value, mailbox: mailbox.value,
                                customers: customers.map(\.value), time: now, queueID: queueID)))
                    records.append(.answered(mailbox: mailbox.value, customers: customers.map(\.value)))
                case .assignThread(let messageID, let staff, let mailbox):
                    records.append(.assignment(.thread(messageID: messageID), staff: staff.value, mailbox: mailbox.value, time: now))
                case .turnGiven(let messageID, let staff, let mailbox, let customer):
                    // The thread is the staff's as if they had written its first message: replies
                    // find them as its owner, and forgetting the customer removes it.
                    records.append(
                        .sent(
                            SentMessage(
                                messageID: messageID, staff: staff.value, mailbox: mailbox.value,
                                customers: [customer.value], time: now, queueID: queueID)))
                case .customerWrote(let customer, let mailbox, let staff, let subject):
                    records.append(
                        .waiting(
                            WaitingMessage(
                                mailbox: mailbox.value, customer: customer.value,
                                staff: staff?.value, subject: subject, time: now)))
                }
            }
        }
        records.append(
            .audit(
                AuditEntry(
                    time: now, queueID: queueID, direction: decision.role.direction,
                    sender: facts.sender.bare,
                    recipients: facts.recipients.map(\.bare),
                    action: decision.action.name, rule: decision.rule,
                    staff: decision.staff.first?.value, mailbox: decision.mailbox?.value,
                    customer: customer(decision, facts: facts))))
        return records
    }

    /// Prunes old rows every hour on a thread of its own, off the mail path.
    func startPruning(retentionDays: Int) {
        DaemonThread.start("sm-prune") { [self] in
            while true {
                if let store = store() {
                    let cutoff = Date().addingTimeInterval(-Double(retentionDays) * 86_400)
                    do {
                        let removed = try store.prune(olderThan: cutoff)
                        if removed > 0 { logger.info("pruned \(removed) conversation records older than \(retentionDays) days") }
                    } catch {
                        failed("prune", error, store)
                    }
                }
                Thread.sleep(forTimeInterval: 3_600)
            }
        }
    }

    private func failed(_ what: String, _ error: any Error, _ store: any ConversationStore) {
        errors.increment()
        logger.warning("conversation memory \(what) failed: routing continues without it", metadata: ["error": "\(error)"])
        // The store reconnects by itself; only a closed one must be reopened, and only if it
        // is still the current one (a replaced file's store is closed after its successor opened).
        if (error as? StoreError) == .closed {
            state.withLockedValue { state in
                if let current = state.store, current as AnyObject === store as AnyObject { state.store = nil }
            }
        }
    }

    /// The customer of a decision: the Internet sender of inbound mail, the
    /// first Internet recipient of staff mail.
    static func customer(_ decision: Decision, facts: MessageFacts) -> String? {
        switch decision.role {
        case .internet:
            return facts.sender.bare.nilIfEmpty
        case .staff:
            for update in decision.memoryUpdates {
                if case .sent(_, _, _, let customers) = update { return customers.first?.value }
            }
            return nil
        case .internal:
            return nil
        }
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

extension Duration {
    /// Seconds as a Double, for Thread.sleep.
    var secondsValue: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
