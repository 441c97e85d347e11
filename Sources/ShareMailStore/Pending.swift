// What `sharemail pending`, the pending gauges and `sharemail forget` read
// and write: conversations waiting for a staff's answer, and what forgetting
// a customer removed.
import Foundation

/// A customer's message to a unified address, which now waits for a staff's
/// answer. Only the first unanswered message of a customer sets the waiting
/// time and the subject; later ones move `time` of the latest message and
/// who has it.
public struct WaitingMessage: Sendable, Hashable {
    /// The unified address written to.
    public var mailbox: String
    /// The customer (lower-case address).
    public var customer: String
    /// The staff the message went to; nil: nobody in particular (the
    /// manager alone, or every staff).
    public var staff: String?
    /// The Subject, decoded.
    public var subject: String
    public var time: Date

    public init(mailbox: String, customer: String, staff: String?, subject: String, time: Date) {
        self.mailbox = mailbox
        self.customer = customer
        self.staff = staff
        self.subject = subject
        self.time = time
    }
}

/// One conversation whose latest message is the customer's, with no staff
/// answer since.
public struct PendingConversation: Sendable, Hashable {
    public var mailbox: String
    public var customer: String
    /// The Subject of the first unanswered message.
    public var subject: String
    /// Who has it; nil: unassigned.
    public var staff: String?
    /// The first unanswered message: the customer has waited since then.
    public var since: Date
    /// The customer's latest message.
    public var latest: Date

    public init(mailbox: String, customer: String, subject: String, staff: String?, since: Date, latest: Date) {
        self.mailbox = mailbox
        self.customer = customer
        self.subject = subject
        self.staff = staff
        self.since = since
        self.latest = latest
    }
}

/// Which pending conversations `pending(_:)` returns.
public struct PendingFilter: Sendable, Hashable {
    /// Only this unified address.
    public var mailbox: String?
    /// Only those waiting since this time or earlier.
    public var waitingSince: Date?

    public init(mailbox: String? = nil, waitingSince: Date? = nil) {
        self.mailbox = mailbox
        self.waitingSince = waitingSince
    }
}

/// The pending gauges of one unified address.
public struct PendingSummary: Sendable, Hashable {
    public var mailbox: String
    public var count: Int
    /// The longest-waiting conversation's first unanswered message.
    public var oldest: Date

    public init(mailbox: String, count: Int, oldest: Date) {
        self.mailbox = mailbox
        self.count = count
        self.oldest = oldest
    }
}

/// What `forget(customer:dryRun:)` removed (or, in a dry run, would remove).
public struct ForgetReport: Sendable, Hashable {
    /// Sent-message records that named the customer: deleted, or the
    /// customer taken off one that also went to others.
    public var sentMessages = 0
    /// Assignments of the customer.
    public var assignments = 0
    /// Audit entries naming the customer as sender, recipient or customer.
    public var auditEntries = 0
    /// Conversations of the customer waiting for an answer.
    public var pendingConversations = 0

    public init(sentMessages: Int = 0, assignments: Int = 0, auditEntries: Int = 0, pendingConversations: Int = 0) {
        self.sentMessages = sentMessages
        self.assignments = assignments
        self.auditEntries = auditEntries
        self.pendingConversations = pendingConversations
    }
}

/// Round-robin's rule, the same in both backends: the available staff
/// after the last one given a turn, in configuration order, wrapping round.
enum Turns {
    static func next(after last: String?, order: [String], available: [String]) -> String? {
        let start = last.flatMap { order.firstIndex(of: $0) }.map { $0 + 1 } ?? 0
        let free = Set(available)
        for offset in 0..<order.count {
            let candidate = order[(start + offset) % order.count]
            if free.contains(candidate) { return candidate }
        }
        return nil
    }
}
