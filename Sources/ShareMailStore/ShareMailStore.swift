// ShareMailStore: the conversation memory of sharemail. Who wrote to which
// customer (so a reply finds its staff by In-Reply-To/References), explicit
// reassignments, and the audit trail of routing decisions.
//
// Two backends with one schema: SQLite (GRDB, one file, the default) and
// PostgreSQL (postgres-nio, shared by several MX hosts). The API is
// synchronous because libmilter calls us from its own pthreads; every call is
// bounded by the timeout given to `Stores.open` and throws `StoreError`
// rather than wait longer, so mail can always be routed without memory.
import Foundation
import Logging

/// A staff message that left for the Internet.
public struct SentMessage: Sendable, Hashable {
    /// Message-ID without angle brackets, as the caller normalised it; stored and compared as given.
    public var messageID: String
    /// Staff address (lower-case), e.g. zhangsan@example.com.
    public var staff: String
    /// Unified address the message left from, e.g. sales@example.com.
    public var mailbox: String
    /// Internet recipients (lower-case addresses).
    public var customers: [String]
    /// When it left.
    public var time: Date
    /// Postfix queue id.
    public var queueID: String

    public init(messageID: String, staff: String, mailbox: String, customers: [String], time: Date, queueID: String) {
        self.messageID = messageID
        self.staff = staff
        self.mailbox = mailbox
        self.customers = customers
        self.time = time
        self.queueID = queueID
    }
}

/// One routing decision, as the manager's audit view shows it.
public struct AuditEntry: Sendable, Hashable {
    public var time: Date
    public var queueID: String
    /// inbound | staff | internal
    public var direction: String
    /// Envelope sender.
    public var sender: String
    /// Envelope recipients.
    public var recipients: [String]
    /// accept | reject | tempfail
    public var action: String
    /// The rule that decided (e.g. "thread", "name", "unnamed").
    public var rule: String
    public var staff: String?
    public var mailbox: String?
    public var customer: String?

    public init(
        time: Date, queueID: String, direction: String, sender: String, recipients: [String],
        action: String, rule: String, staff: String? = nil, mailbox: String? = nil, customer: String? = nil
    ) {
        self.time = time
        self.queueID = queueID
        self.direction = direction
        self.sender = sender
        self.recipients = recipients
        self.action = action
        self.rule = rule
        self.staff = staff
        self.mailbox = mailbox
        self.customer = customer
    }
}

/// What a manager hands to a staff: one thread (by any Message-ID in it) or every mail of one customer.
public enum Assignment: Sendable, Hashable {
    case thread(messageID: String)
    case customer(address: String)
}

/// Which audit entries `auditLog` returns: all filters combined with AND.
public struct LogFilter: Sendable {
    public var staff: String?
    public var customer: String?
    /// Entries at or after this time.
    public var since: Date?
    /// The newest `limit` entries (returned oldest first); 0 or less means no limit.
    public var limit: Int

    public init(staff: String? = nil, customer: String? = nil, since: Date? = nil, limit: Int = 1000) {
        self.staff = staff
        self.customer = customer
        self.since = since
        self.limit = limit
    }
}

/// Why a store call gave up. The daemon routes without memory on any of these.
public enum StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The call did not finish within the store's timeout (it may still complete later).
    case timeout
    /// The database cannot be reached; `reason` is the last connection error. Calls fail
    /// at once until the next reconnect attempt (1–5 s back-off).
    case unavailable(reason: String)
    /// Too many calls are already waiting on the database: refused without waiting.
    case overloaded
    /// `close()` was called.
    case closed
    /// The database answered with an error (bad SQL, constraint, migration failure).
    case database(String)
    /// The `state` string names no usable database (e.g. a relative path, a bad URL).
    case invalidLocation(String)
    /// A synchronous call was made from a SwiftNIO event loop thread, where blocking would deadlock.
    case calledOnEventLoop
    /// A read-only open found no database file at this path (nothing was created).
    case notFound(String)

    public var description: String {
        switch self {
        case .timeout: "store timeout"
        case .unavailable(let reason): "store unavailable: \(reason)"
        case .overloaded: "store overloaded: too many calls waiting"
        case .closed: "store closed"
        case .database(let message): "store error: \(message)"
        case .invalidLocation(let message): "invalid state location: \(message)"
        case .calledOnEventLoop: "store called on an event loop thread"
        case .notFound(let path): "no conversation memory at \(path)"
        }
    }
}

/// One thing to remember, for `ConversationStore.record(_:)`.
public enum StoreRecord: Sendable, Hashable {
    case sent(SentMessage)
    case assignment(Assignment, staff: String, mailbox: String, time: Date)
    case audit(AuditEntry)
    /// A customer waits for an answer (`sharemail pending`).
    case waiting(WaitingMessage)
    /// A staff wrote to these customers from `mailbox`: they wait no more.
    case answered(mailbox: String, customers: [String])
}

/// What the memory knows about one incoming message for one mailbox: every
/// lookup answered, whatever the others found (the engine decides which
/// wins, and drops what names staff since removed).
public struct Recollection: Sendable, Hashable {
    public var assigned: String?
    public var threadOwner: String?
    public var lastStaff: String?

    public init(assigned: String? = nil, threadOwner: String? = nil, lastStaff: String? = nil) {
        self.assigned = assigned
        self.threadOwner = threadOwner
        self.lastStaff = lastStaff
    }
}

public protocol ConversationStore: Sendable {
    /// Owner (staff address) of the first of `messageIDs` that a staff sent, trying them in the given order; nil if none.
    /// Only the first `Stores.maximumMessageIDs` IDs are looked at.
    func threadOwner(messageIDs: [String], mailbox: String) throws -> String?
    /// Explicit reassignment: thread assignments for any of `messageIDs` win over a customer assignment.
    /// Among several thread assignments the most recent wins.
    func assignedStaff(messageIDs: [String], customer: String?, mailbox: String) throws -> String?
    /// The staff who last wrote to `customer` from `mailbox` (sticky_customers).
    func lastStaff(customer: String, mailbox: String) throws -> String?
    /// Records an outgoing staff message. Idempotent per (messageID, mailbox, queueID).
    func recordSent(_ message: SentMessage) throws
    func recordAudit(_ entry: AuditEntry) throws
    /// Replaces any earlier assignment of the same thread or customer in `mailbox`.
    func assign(_ assignment: Assignment, to staff: String, mailbox: String, at time: Date) throws
    /// Writes `records` in order, in one transaction where the store can.
    func record(_ records: [StoreRecord]) throws
    /// `record`, all of it by `deadline` (the caller's one budget).
    func record(_ records: [StoreRecord], deadline: Deadline) throws
    /// The assignment, the thread owner (when there are `messageIDs`) and,
    /// with `lastStaff`, the last staff who wrote to `customer`, for one
    /// message: every lookup answered, all by `deadline`, in one round trip
    /// where the store can.
    func recall(messageIDs: [String], customer: String?, mailbox: String, lastStaff: Bool, deadline: Deadline) throws -> Recollection
    func auditLog(_ filter: LogFilter) throws -> [AuditEntry]
    /// Deletes sent messages, audit entries (and assignments) older than `date`; returns rows removed
    /// (sent messages + audit entries + assignments; a sent message's customer rows go with it).
    /// Works in batches of `Stores.pruneBatch` rows, each its own short transaction bounded by the
    /// timeout, so it never holds a long lock; the whole call may take longer (run it off the mail path).
    func prune(olderThan date: Date) throws -> Int
    /// Round-robin: gives the next turn in `mailbox` to the first of `available` after the staff
    /// who had the last one, in `order` (every staff, configuration order), wrapping round, and
    /// remembers it. Atomic: callers on any number of hosts get the turns one after the other.
    /// nil when `available` is empty.
    func takeTurn(mailbox: String, order: [String], available: [String], at time: Date) throws -> String?
    func recordWaiting(_ message: WaitingMessage) throws
    func recordAnswered(mailbox: String, customers: [String]) throws
    /// Conversations waiting for a staff's answer, the longest-waiting first.
    func pending(_ filter: PendingFilter) throws -> [PendingConversation]
    /// Per unified address with anything pending: how many, and since when the oldest.
    func pendingSummary() throws -> [PendingSummary]
    /// Deletes what the memory holds of `customer` (sent-message records, assignments, audit
    /// entries, pending conversations), in one transaction; `dryRun` only counts.
    func forget(customer: String, dryRun: Bool) throws -> ForgetReport
    /// Releases connections. Later calls throw `StoreError.closed`.
    func close()
    /// True once the store's file was deleted or replaced by another since it was opened
    /// (SQLite: a stat of the path, cheap enough to ask before each use). The open store
    /// then writes to a file nobody reads: close it and open the path again.
    var isReplaced: Bool { get }
}

extension ConversationStore {
    /// A database server has no file to lose.
    public var isReplaced: Bool { false }
}

/// Where the conversation memory lives, from the config's `state` string.
public enum StoreLocation: Sendable, Hashable {
    case sqlite(path: String)
    case postgres(url: String)

    /// "postgresql://…" or "postgres://…" → postgres; an absolute path → sqlite;
    /// nil for anything else (empty, relative path: a daemon's working directory is no place for state).
    public init?(_ state: String) {
        let trimmed = state.trimmingCharacters(in: .whitespaces)
        let lower = trimmed.lowercased()
        if lower.hasPrefix("postgresql://") || lower.hasPrefix("postgres://") {
            self = .postgres(url: trimmed)
        } else if trimmed.hasPrefix("/") {
            self = .sqlite(path: trimmed)
        } else {
            return nil
        }
    }
}

extension StoreLocation {
    /// A PostgreSQL URL without its password, for logs.
    public var redacted: String {
        switch self {
        case .sqlite(let path): return path
        case .postgres(let url):
            guard var parts = URLComponents(string: url) else { return "postgresql://…" }
            if parts.password != nil { parts.password = "****" }
            return parts.string ?? "postgresql://…"
        }
    }
}

public enum Stores {
    /// Message-IDs looked at per `threadOwner`/`assignedStaff` call (a References header can be long).
    public static let maximumMessageIDs = 200
    /// Rows deleted per prune statement.
    public static let pruneBatch = 500

    /// Opens the store and runs its migrations. Each later call is bounded by `timeout`; opening
    /// itself (connect, advisory lock, migrations) may take up to `max(timeout, 5 s)`.
    /// `readOnly` (for commands that only read): SQLite opens an existing file read-only and
    /// throws `StoreError.notFound` rather than create one; neither backend runs a migration.
    public static func open(
        _ location: StoreLocation, logger: Logger, timeout: Duration = .milliseconds(200), readOnly: Bool = false
    ) throws -> any ConversationStore {
        switch location {
        case .sqlite(let path):
            return try SQLiteStore(path: path, logger: logger, timeout: timeout, readOnly: readOnly)
        case .postgres(let url):
            return try PostgresStore(url: url, logger: logger, timeout: timeout, readOnly: readOnly)
        }
    }
}

extension Array where Element: Hashable {
    /// The elements in order, without repeats, at most `limit` of them.
    func uniqued(limit: Int = .max) -> [Element] {
        var seen = Set<Element>()
        var result: [Element] = []
        for element in self where result.count < limit && seen.insert(element).inserted {
            result.append(element)
        }
        return result
    }
}

extension Duration {
    var seconds: Double {
        let (s, attos) = components
        return Double(s) + Double(attos) / 1e18
    }
}
