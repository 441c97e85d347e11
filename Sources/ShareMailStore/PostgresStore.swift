// The shared backend: PostgreSQL through postgres-nio, for sites where
// several MX hosts must share one memory. Same tables as SQLite; the schema
// is applied by versioned migrations at open, under an advisory lock so
// hosts starting together do not race.
import Foundation
import Logging
import NIOCore
import PostgresNIO

final class PostgresStore: ConversationStore {
    private let pool: PostgresPool
    private let timeout: Duration  // bound of each call
    private let logger: Logger

    /// Connections per daemon: queries take well under a millisecond, so a few serve many sessions.
    static let maximumConnections = 8
    /// `pg_advisory_xact_lock` key held while migrating ("sharemai" in ASCII).
    static let migrationLock: Int64 = 0x7368_6172_656d_6169

    /// `readOnly`: run no migration (a command that only reads changes no schema).
    init(url: String, logger: Logger, timeout: Duration, readOnly: Bool = false) throws {
        var configuration = try Self.configuration(url: url)
        let milliseconds = Int(timeout.seconds * 1000)
        configuration.options.connectTimeout = .milliseconds(Int64(max(2 * milliseconds, 1000)))
        // The server gives up on work its caller abandoned at the timeout (at most a few seconds later).
        let serverTimeout = "\(max(5 * milliseconds, 1000))"
        configuration.options.additionalStartupParameters = [
            ("application_name", "sharemail"),
            ("statement_timeout", serverTimeout),
            ("lock_timeout", serverTimeout),
        ]
        self.pool = PostgresPool(configuration: configuration, maximum: Self.maximumConnections, logger: logger)
        self.timeout = timeout
        self.logger = logger
        do {
            if !readOnly { try migrate(deadline: Deadline(after: max(timeout, .seconds(5)))) }
        } catch {
            pool.close()
            throw error
        }
    }

    // MARK: Schema

    /// Versioned migrations, applied in order and recorded in `schema_migrations`. Never edit
    /// a released one: append the next version.
    static let migrations: [(version: Int, name: String, statements: [String])] = [
        (
            1, "initial schema",
            [
                // One row per staff message that left for the Internet.
                """
                CREATE TABLE sent (
                    id bigserial PRIMARY KEY,          -- row id, referenced by sent_customer
                    message_id text NOT NULL,          -- Message-ID without <>
                    staff text NOT NULL,               -- staff address who wrote it
                    mailbox text NOT NULL,             -- unified address it left from
                    time timestamptz NOT NULL,         -- when it left
                    queue_id text NOT NULL             -- Postfix queue id
                )
                """,
                // Thread lookups by Message-ID; also makes recordSent idempotent.
                "CREATE UNIQUE INDEX sent_message ON sent (message_id, mailbox, queue_id)",
                "CREATE INDEX sent_time ON sent (time)",
                // The Internet recipients of each sent message (sticky_customers).
                """
                CREATE TABLE sent_customer (
                    sent_id bigint NOT NULL REFERENCES sent (id) ON DELETE CASCADE,  -- the message
                    customer text NOT NULL,            -- recipient address (lower-case)
                    mailbox text NOT NULL,             -- copy of sent.mailbox, for the index
                    time timestamptz NOT NULL,         -- copy of sent.time, for the index
                    PRIMARY KEY (sent_id, customer)
                )
                """,
                "CREATE INDEX sent_customer_last ON sent_customer (mailbox, customer, time)",
                // Explicit reassignments by the manager: the latest per thread or customer.
                """
                CREATE TABLE assignments (
                    kind text NOT NULL CHECK (kind IN ('thread', 'customer')),  -- what is assigned
                    key text NOT NULL,                 -- Message-ID (thread) or customer address
                    mailbox text NOT NULL,             -- unified address it applies to
                    staff text NOT NULL,               -- staff address it goes to
                    time timestamptz NOT NULL,         -- when it was assigned
                    PRIMARY KEY (kind, mailbox, key)
                )
                """,
                "CREATE INDEX assignments_time ON assignments (time)",
                // The audit trail: one row per routing decision.
                """
                CREATE TABLE audit (
                    id bigserial PRIMARY KEY,          -- insertion order
                    time timestamptz NOT NULL,         -- when it was decided
                    queue_id text NOT NULL,            -- Postfix queue id
                    direction text NOT NULL,           -- inbound | staff | internal
                    sender text NOT NULL,              -- envelope sender
                    recipients text[] NOT NULL,        -- envelope recipients
                    action text NOT NULL,              -- accept | reject | tempfail
                    rule text NOT NULL,                -- the rule that decided
                    staff text,                        -- staff concerned, if any
                    mailbox text,                      -- unified address concerned, if any
                    customer text                      -- customer address concerned, if any
                )
                """,
                "CREATE INDEX audit_time ON audit (time)",
                "CREATE INDEX audit_staff ON audit (staff, time)",
                "CREATE INDEX audit_customer ON audit (customer, time)",
            ]
        ),
        (
            2, "round-robin turns, pending conversations",
            [
                // Round-robin: who took the last turn, per unified address.
                """
                CREATE TABLE turns (
                    mailbox text PRIMARY KEY,          -- unified address
                    staff text NOT NULL,               -- staff address given the last turn
                    time timestamptz NOT NULL          -- when
                )
                """,
                // Conversations waiting for a staff's answer: one row per customer and unified
                // address, from their first unanswered message; a staff's mail to them deletes it.
                """
                CREATE TABLE waiting (
                    mailbox text NOT NULL,             -- unified address written to
                    customer text NOT NULL,            -- customer address (lower-case)
                    time timestamptz NOT NULL,         -- the first unanswered message
                    latest timestamptz NOT NULL,       -- the customer's latest message
                    subject text NOT NULL,             -- Subject of the first unanswered message
                    staff text,                        -- who has it; NULL: unassigned
                    PRIMARY KEY (mailbox, customer)
                )
                """,
                "CREATE INDEX waiting_time ON waiting (time)",
            ]
        ),
    ]

    /// Applies the missing migrations in one transaction, holding an advisory lock so that
    /// daemons starting at once on several hosts apply each migration exactly once.
    private func migrate(deadline: Deadline) throws {
        let milliseconds = "\(Int(deadline.remaining.seconds * 1000))"
        try pool.withConnection(deadline: deadline) { connection in
            func run(_ query: PostgresQuery) throws -> PostgresQueryResult {
                try pool.query(query, on: connection, deadline: deadline)
            }
            _ = try run("BEGIN")
            do {
                _ = try run(PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = \(milliseconds)"))
                _ = try run(PostgresQuery(unsafeSQL: "SET LOCAL statement_timeout = \(milliseconds)"))
                _ = try run("SELECT pg_advisory_xact_lock(\(Self.migrationLock))")
                _ = try run(
                    """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version integer PRIMARY KEY,       -- migration number
                        name text NOT NULL,                -- what it did
                        applied_at timestamptz NOT NULL DEFAULT now()  -- when
                    )
                    """)
                let applied = try Set(run("SELECT version FROM schema_migrations").rows.map { try $0.decode(Int.self) })
                for migration in Self.migrations where !applied.contains(migration.version) {
                    for statement in migration.statements {
                        _ = try run(PostgresQuery(unsafeSQL: statement))
                    }
                    _ = try run(
                        "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))")
                    logger.info("conversation store migrated", metadata: ["version": "\(migration.version)"])
                }
                _ = try run("COMMIT")
            } catch {
                _ = try? run("ROLLBACK")
                throw error
            }
        }
    }

    // MARK: Queries

    func threadOwner(messageIDs: [String], mailbox: String) throws -> String? {
        try threadOwner(messageIDs: messageIDs, mailbox: mailbox, deadline: Deadline(after: timeout))
    }

    func assignedStaff(messageIDs: [String], customer: String?, mailbox: String) throws -> String? {
        try assignedStaff(messageIDs: messageIDs, customer: customer, mailbox: mailbox, deadline: Deadline(after: timeout))
    }

    func lastStaff(customer: String, mailbox: String) throws -> String? {
        try lastStaff(customer: customer, mailbox: mailbox, deadline: Deadline(after: timeout))
    }

    /// The lookups one after another, all within the one deadline.
    func recall(messageIDs: [String], customer: String?, mailbox: String, lastStaff: Bool, deadline: Deadline) throws -> Recollection {
        var found = Recollection()
        found.assigned = try assignedStaff(messageIDs: messageIDs, customer: customer, mailbox: mailbox, deadline: deadline)
        found.threadOwner = try threadOwner(messageIDs: messageIDs, mailbox: mailbox, deadline: deadline)
        if lastStaff, let customer { found.lastStaff = try self.lastStaff(customer: customer, mailbox: mailbox, deadline: deadline) }
        return found
    }

    private func threadOwner(messageIDs: [String], mailbox: String, deadline: Deadline) throws -> String? {
        let ids = messageIDs.uniqued(limit: Stores.maximumMessageIDs)
        guard !ids.isEmpty else { return nil }
        let rows = try query(
            """
            SELECT message_id, staff FROM sent
            WHERE mailbox = \(mailbox) AND message_id = ANY(\(ids))
            ORDER BY time DESC, id DESC
            """, deadline: deadline)
        var owners: [String: String] = [:]
        for row in rows {
            let (id, staff) = try row.decode((String, String).self)
            if owners[id] == nil { owners[id] = staff }  // the most recent send of that ID
        }
        return ids.lazy.compactMap { owners[$0] }.first
    }

    private func assignedStaff(messageIDs: [String], customer: String?, mailbox: String, deadline: Deadline) throws -> String? {
        let ids = messageIDs.uniqued(limit: Stores.maximumMessageIDs)
        guard !ids.isEmpty || customer != nil else { return nil }
        return try query(
            """
            SELECT staff FROM assignments
            WHERE mailbox = \(mailbox)
              AND ((kind = 'thread' AND key = ANY(\(ids))) OR (kind = 'customer' AND key = \(customer)))
            ORDER BY kind = 'thread' DESC, time DESC
            LIMIT 1
            """, deadline: deadline
        ).first?.decode(String.self)
    }

    private func lastStaff(customer: String, mailbox: String, deadline: Deadline) throws -> String? {
        try query(
            """
            SELECT sent.staff FROM sent_customer JOIN sent ON sent.id = sent_customer.sent_id
            WHERE sent_customer.mailbox = \(mailbox) AND sent_customer.customer = \(customer)
            ORDER BY sent_customer.time DESC, sent_customer.sent_id DESC
            LIMIT 1
            """, deadline: deadline
        ).first?.decode(String.self)
    }

    func recordSent(_ message: SentMessage) throws {
        try recordSent(message, deadline: Deadline(after: timeout))
    }

    func recordAudit(_ entry: AuditEntry) throws {
        try recordAudit(entry, deadline: Deadline(after: timeout))
    }

    func assign(_ assignment: Assignment, to staff: String, mailbox: String, at time: Date) throws {
        try assign(assignment, to: staff, mailbox: mailbox, at: time, deadline: Deadline(after: timeout))
    }

    func record(_ records: [StoreRecord]) throws {
        try record(records, deadline: Deadline(after: timeout))
    }

    /// The records one statement each, all within the one deadline.
    func record(_ records: [StoreRecord], deadline: Deadline) throws {
        for record in records {
            switch record {
            case .sent(let message): try recordSent(message, deadline: deadline)
            case .assignment(let assignment, let staff, let mailbox, let time):
                try assign(assignment, to: staff, mailbox: mailbox, at: time, deadline: deadline)
            case .audit(let entry): try recordAudit(entry, deadline: deadline)
            case .waiting(let message): try recordWaiting(message, deadline: deadline)
            case .answered(let mailbox, let customers): try recordAnswered(mailbox: mailbox, customers: customers, deadline: deadline)
            }
        }
    }

    private func recordSent(_ message: SentMessage, deadline: Deadline) throws {
        // One statement, so the message and its customers land together (or not at all).
        try query(
            """
            WITH new AS (
                INSERT INTO sent (message_id, staff, mailbox, time, queue_id)
                VALUES (\(message.messageID), \(message.staff), \(message.mailbox), \(message.time), \(message.queueID))
                ON CONFLICT (message_id, mailbox, queue_id) DO NOTHING
                RETURNING id
            )
            INSERT INTO sent_customer (sent_id, customer, mailbox, time)
            SELECT new.id, customer, \(message.mailbox), \(message.time)
            FROM new, unnest(\(message.customers.uniqued())::text[]) AS customer
            """, deadline: deadline)
    }

    private func recordAudit(_ entry: AuditEntry, deadline: Deadline) throws {
        try query(
            """
            INSERT INTO audit (time, queue_id, direction, sender, recipients, action, rule, staff, mailbox, customer)
            VALUES (\(entry.time), \(entry.queueID), \(entry.direction), \(entry.sender), \(entry.recipients),
                    \(entry.action), \(entry.rule), \(entry.staff), \(entry.mailbox), \(entry.customer))
            """, deadline: deadline)
    }

    private func assign(_ assignment: Assignment, to staff: String, mailbox: String, at time: Date, deadline: Deadline) throws {
        let (kind, key) = assignment.kindAndKey
        try query(
            """
            INSERT INTO assignments (kind, key, mailbox, staff, time)
            VALUES (\(kind), \(key), \(mailbox), \(staff), \(time))
            ON CONFLICT (kind, mailbox, key) DO UPDATE SET staff = EXCLUDED.staff, time = EXCLUDED.time
            """, deadline: deadline)
    }

    func auditLog(_ filter: LogFilter) throws -> [AuditEntry] {
        var binds = PostgresBindings()
        var conditions: [String] = []
        if let staff = filter.staff {
            binds.append(staff)
            conditions.append("staff = $\(binds.count)")
        }
        if let customer = filter.customer {
            binds.append(customer)
            conditions.append("customer = $\(binds.count)")
        }
        if let since = filter.since {
            binds.append(since)
            conditions.append("time >= $\(binds.count)")
        }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let limit = filter.limit > 0 ? "LIMIT \(filter.limit)" : ""
        let rows = try query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT time, queue_id, direction, sender, recipients, action, rule, staff, mailbox, customer
                    FROM audit \(whereClause) ORDER BY time DESC, id DESC \(limit)
                    """,
                binds: binds))
        return try rows.map { row in
            let (time, queueID, direction, sender, recipients, action, rule, staff, mailbox, customer) =
                try row.decode(
                    (Date, String, String, String, [String], String, String, String?, String?, String?).self)
            return AuditEntry(
                time: time, queueID: queueID, direction: direction, sender: sender, recipients: recipients,
                action: action, rule: rule, staff: staff, mailbox: mailbox, customer: customer)
        }.reversed()
    }

    func prune(olderThan date: Date) throws -> Int {
        var removed = 0
        for table in ["sent", "audit", "assignments", "waiting"] {
            while true {
                // One short statement per batch: never a long lock on a table mail writes to.
                let result = try execute(
                    PostgresQuery(
                        unsafeSQL: """
                            DELETE FROM \(table) WHERE ctid IN
                                (SELECT ctid FROM \(table) WHERE time < $1 LIMIT \(Stores.pruneBatch))
                            """,
                        binds: {
                            var binds = PostgresBindings()
                            binds.append(date)
                            return binds
                        }()))
                let count = result.metadata.rows ?? 0  // direct deletions: sent_customer rows go by cascade
                removed += count
                if count < Stores.pruneBatch { break }
            }
        }
        if removed > 0 { logger.info("pruned conversation store", metadata: ["rows": "\(removed)"]) }
        return removed
    }

    // MARK: Round-robin, pending conversations, forgetting a customer

    /// One statement: INSERT … ON CONFLICT DO UPDATE locks the mailbox's row and computes the
    /// next staff from the row as the last committed turn left it, so hosts sharing the
    /// database take turns one after the other (never the same staff twice, never one skipped).
    func takeTurn(mailbox: String, order: [String], available: [String], at time: Date) throws -> String? {
        guard let first = Turns.next(after: nil, order: order, available: available) else { return nil }
        return try query(
            """
            INSERT INTO turns AS t (mailbox, staff, time) VALUES (\(mailbox), \(first), \(time))
            ON CONFLICT (mailbox) DO UPDATE SET time = EXCLUDED.time, staff = COALESCE(
                (SELECT o.staff FROM unnest(\(order)::text[]) WITH ORDINALITY AS o(staff, position)
                 WHERE o.staff = ANY(\(available)::text[])
                   AND o.position > COALESCE(array_position(\(order)::text[], t.staff), 0)
                 ORDER BY o.position LIMIT 1),
                EXCLUDED.staff)
            RETURNING staff
            """
        ).first?.decode(String.self)
    }

    func recordWaiting(_ message: WaitingMessage) throws {
        try recordWaiting(message, deadline: Deadline(after: timeout))
    }

    private func recordWaiting(_ message: WaitingMessage, deadline: Deadline) throws {
        try query(
            """
            INSERT INTO waiting AS w (mailbox, customer, time, latest, subject, staff)
            VALUES (\(message.mailbox), \(message.customer), \(message.time), \(message.time), \(message.subject), \(message.staff))
            ON CONFLICT (mailbox, customer) DO UPDATE
                SET latest = EXCLUDED.latest, staff = COALESCE(EXCLUDED.staff, w.staff)
            """, deadline: deadline)
    }

    func recordAnswered(mailbox: String, customers: [String]) throws {
        try recordAnswered(mailbox: mailbox, customers: customers, deadline: Deadline(after: timeout))
    }

    private func recordAnswered(mailbox: String, customers: [String], deadline: Deadline) throws {
        let customers = customers.uniqued()
        guard !customers.isEmpty else { return }
        try query("DELETE FROM waiting WHERE mailbox = \(mailbox) AND customer = ANY(\(customers)::text[])", deadline: deadline)
    }

    func pending(_ filter: PendingFilter) throws -> [PendingConversation] {
        var binds = PostgresBindings()
        var conditions: [String] = []
        if let mailbox = filter.mailbox {
            binds.append(mailbox)
            conditions.append("mailbox = $\(binds.count)")
        }
        if let since = filter.waitingSince {
            binds.append(since)
            conditions.append("time <= $\(binds.count)")
        }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let rows = try query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT mailbox, customer, subject, staff, time, latest FROM waiting \(whereClause)
                    ORDER BY time, mailbox, customer
                    """,
                binds: binds))
        return try rows.map { row in
            let (mailbox, customer, subject, staff, since, latest) = try row.decode((String, String, String, String?, Date, Date).self)
            return PendingConversation(mailbox: mailbox, customer: customer, subject: subject, staff: staff, since: since, latest: latest)
        }
    }

    func pendingSummary() throws -> [PendingSummary] {
        try query("SELECT mailbox, COUNT(*)::bigint, MIN(time) FROM waiting GROUP BY mailbox ORDER BY mailbox").map { row in
            let (mailbox, count, oldest) = try row.decode((String, Int64, Date).self)
            return PendingSummary(mailbox: mailbox, count: Int(count), oldest: oldest)
        }
    }

    func forget(customer: String, dryRun: Bool) throws -> ForgetReport {
        let customer = customer.lowercased()
        // The audit stores envelope addresses as written: compare without case.
        let auditMatch = """
            lower(customer) = $1 OR lower(sender) = $1 OR EXISTS (SELECT 1 FROM unnest(recipients) AS r WHERE lower(r) = $1)
            """
        func bound(_ sql: String) -> PostgresQuery {
            var binds = PostgresBindings()
            binds.append(customer)
            return PostgresQuery(unsafeSQL: sql, binds: binds)
        }
        let counting = bound(
            """
            SELECT (SELECT COUNT(DISTINCT sent_id) FROM sent_customer WHERE customer = $1)::bigint,
                   (SELECT COUNT(*) FROM assignments WHERE kind = 'customer' AND key = $1)::bigint,
                   (SELECT COUNT(*) FROM audit WHERE \(auditMatch))::bigint,
                   (SELECT COUNT(*) FROM waiting WHERE customer = $1)::bigint
            """)
        let deadline = Deadline(after: timeout)
        return try pool.withConnection(deadline: deadline) { connection in
            func run(_ query: PostgresQuery) throws -> PostgresQueryResult {
                try pool.query(query, on: connection, deadline: deadline)
            }
            _ = try run("BEGIN")
            do {
                guard let row = try run(counting).rows.first else { throw StoreError.database("forget: no counts") }
                let (sent, assignments, audit, waiting) = try row.decode((Int64, Int64, Int64, Int64).self)
                let report = ForgetReport(
                    sentMessages: Int(sent), assignments: Int(assignments), auditEntries: Int(audit),
                    pendingConversations: Int(waiting))
                if !dryRun {
                    // A message that also went to others keeps them: only this customer's link goes.
                    _ = try run(
                        bound(
                            """
                            WITH unlinked AS (DELETE FROM sent_customer WHERE customer = $1 RETURNING sent_id)
                            DELETE FROM sent WHERE id IN (SELECT sent_id FROM unlinked)
                              AND NOT EXISTS (SELECT 1 FROM sent_customer c WHERE c.sent_id = sent.id AND c.customer <> $1)
                            """))
                    _ = try run(bound("DELETE FROM assignments WHERE kind = 'customer' AND key = $1"))
                    _ = try run(bound("DELETE FROM audit WHERE \(auditMatch)"))
                    _ = try run(bound("DELETE FROM waiting WHERE customer = $1"))
                }
                _ = try run(dryRun ? "ROLLBACK" : "COMMIT")
                return report
            } catch {
                _ = try? run("ROLLBACK")
                throw error
            }
        }
    }

    func close() {
        pool.close()
    }

    // MARK: Bounded access

    @discardableResult
    private func query(_ query: PostgresQuery, deadline: Deadline? = nil) throws -> [PostgresRow] {
        try execute(query, deadline: deadline).rows
    }

    /// Runs one statement by `deadline` (the caller's, shared by its other
    /// statements), or within the store's timeout.
    private func execute(_ query: PostgresQuery, deadline: Deadline? = nil) throws -> PostgresQueryResult {
        let deadline = deadline ?? Deadline(after: timeout)
        return try pool.withConnection(deadline: deadline) { connection in
            try pool.query(query, on: connection, deadline: deadline)
        }
    }

    // MARK: Location

    /// Reads a libpq-style URL: postgresql://[user[:password]@][host][:port][/database][?host=/socket/dir&sslmode=disable].
    static func configuration(url: String) throws -> PostgresConnection.Configuration {
        guard let components = URLComponents(string: url), components.scheme?.hasPrefix("postgres") == true else {
            throw StoreError.invalidLocation("not a postgresql:// URL")
        }
        var parameters: [String: String] = [:]
        for item in components.queryItems ?? [] { parameters[item.name] = item.value ?? "" }
        switch parameters["sslmode"] ?? "disable" {
        case "disable", "allow", "prefer":
            break  // prefer/allow fall back to plain connections, as libpq would without TLS
        case let mode:
            throw StoreError.invalidLocation("sslmode=\(mode): TLS to PostgreSQL is not supported yet")
        }
        let user = components.user.flatMap { $0.isEmpty ? nil : $0 } ?? Self.processUser
        var database = components.path
        if database.hasPrefix("/") { database.removeFirst() }
        let port = components.port ?? 5432
        if let directory = parameters["host"], directory.hasPrefix("/") {
            return .init(
                unixSocketPath: "\(directory)/.s.PGSQL.\(port)", username: user, password: components.password,
                database: database.isEmpty ? nil : database)
        }
        var host = components.host ?? ""
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return .init(
            host: host.isEmpty ? "localhost" : host, port: port, username: user, password: components.password,
            database: database.isEmpty ? nil : database, tls: .disable)
    }

    /// libpq's default user: the one running the process.
    private static var processUser: String {
        ProcessInfo.processInfo.environment["USER"] ?? NSUserName()
    }
}
