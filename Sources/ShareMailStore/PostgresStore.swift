import Foundation
import Logging
final class PostgresStore: ConversationStore {
    init(url: String, logger: Logger, timeout: Duration) throws { throw StoreError.closed }
    func threadOwner(messageIDs: [String], mailbox: String) throws -> String? { nil }
    func assignedStaff(messageIDs: [String], customer: String?, mailbox: String) throws -> String? { nil }
    func lastStaff(customer: String, mailbox: String) throws -> String? { nil }
    func recordSent(_ message: SentMessage) throws {}
    func recordAudit(_ entry: AuditEntry) throws {}
    func assign(_ assignment: Assignment, to staff: String, mailbox: String, at time: Date) throws {}
    func auditLog(_ filter: LogFilter) throws -> [AuditEntry] { [] }
    func prune(olderThan date: Date) throws -> Int { 0 }
    func close() {}
}
