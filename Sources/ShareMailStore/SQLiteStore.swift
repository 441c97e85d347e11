// The embedded backend: one SQLite file through GRDB, in WAL mode so readers
// never wait for the writer. GRDB serialises this process's writes on one
// queue and writes use BEGIN IMMEDIATE, so concurrent sessions never see
// "database is locked"; the busy timeout covers other processes (the CLI).
import Foundation
import GRDB
import GRDBSQLite
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

final class SQLiteStore: ConversationStore {
    private let pool: DatabasePool  // WAL: one writer queue, several readers
    private let readers: LookupReaders  // the connections of each message's lookup
    private let path: String  // the database file
    private let file: FileIdentity  // the file opened, to notice it deleted or replaced
    private let timeout: Duration  // bound of each call
    private let logger: Logger
    private let calls = CallLimit(512)  // calls under way: more wait in a queue nobody bounds
    private let isClosed = Atomic<Bool>(false)

    /// The database and its WAL and SHM files: readable by the daemon's
    /// group, nobody else (the audit trail names customers).
    static let fileMode: mode_t = 0o640

    /// `readOnly`: open an existing database for reading only; a missing
    /// file throws `StoreError.notFound` and nothing is created.
    init(path: String, logger: Logger, timeout: Duration, readOnly: Bool = false) throws {
        self.path = path
        self.timeout = timeout
        self.logger = logger
        let directory = (path as NSString).deletingLastPathComponent
        do {
            if readOnly {
                guard FileManager.default.fileExists(atPath: path) else { throw StoreError.notFound(path) }
            } else {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                try Self.createFile(path, in: directory)
            }
            var configuration = Configuration()
            configuration.label = "sharemail"
            configuration.readonly = readOnly
            // Another process (sharemail assign, a second daemon) may hold the write lock for a
            // moment: wait for it in SQLite rather than fail. Callers still give up at `timeout`.
            configuration.busyMode = .timeout(max(timeout.seconds * 5, 1))
            configuration.maximumReaderCount = 8
            configuration.prepareDatabase { db in
                // Durable across a crash of sharemail; the last commits may be lost on power loss: fine for routing memory.
                try db.execute(sql: "PRAGMA synchronous = NORMAL")
            }
            // Taken before SQLite opens it: a file swapped in between is then noticed at once.
            guard let file = FileIdentity(path: path) else { throw StoreError.notFound(path) }
            self.file = file
            pool = try Self.openPool(path: path, configuration: configuration, migrating: !readOnly)
            // More lookups at once than twice the cores are waiting for a CPU anyway: a burst
            // beyond that opens connections for the moment rather than keep them all.
            readers = LookupReaders(
                path: path, configuration: configuration,
                keep: max(configuration.maximumReaderCount, 2 * ProcessInfo.processInfo.activeProcessorCount))
        } catch let error as DatabaseError {
            throw StoreError.database("\(path): \(error.message ?? error.description)")
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.database("\(path): \(error)")
        }
        logger.debug("conversation store open", metadata: ["path": "\(path)"])
    }

    /// Opens the pool and brings the schema up to date. Two openers of an empty file at once (two
    /// daemons, or `sharemail assign` during a start) race. GRDB reads which migrations are
    /// applied before it takes the write lock, so both may run v1, and the loser's copy fails
    /// ("table sent already exists") once the winner has committed. Or one finds the other
    /// switching the file to WAL or migrating and gets "database is locked" at once: SQLite does
    /// not wait where waiting could deadlock. The loser tries again, a few times, a little later
    /// each time; a real failure fails every time.
    private static func openPool(path: String, configuration: Configuration, migrating: Bool) throws -> DatabasePool {
        var attempt = 1
        while true {
            do {
                let pool = try DatabasePool(path: path, configuration: configuration)
                if migrating { try migrator.migrate(pool) }
                return pool
            } catch is DatabaseError where attempt < 5 {
                Thread.sleep(forTimeInterval: 0.05 * Double(attempt))
                attempt += 1
            }
        }
    }

    /// Creates a missing database file with `fileMode` whatever the umask; SQLite then gives
    /// its WAL and SHM files the same mode and, when it runs as root, the same owner. The
    /// creator owns the file, except root (an admin's `sharemail assign`): it hands the file
    /// to the owner of the directory, the daemon's user under the unit's StateDirectory, so
    /// the daemon can still write it.
    static func createFile(_ path: String, in directory: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, fileMode)
        if fd < 0 {
            if errno == EEXIST { return }  // there already, or another opener was first: keep its owner and mode
            throw StoreError.database("\(path): cannot create: \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }
        var failure: String?
        if fchmod(fd, fileMode) != 0 { failure = "chmod" }
        var parent = stat()
        if geteuid() == 0, stat(directory, &parent) == 0, fchown(fd, parent.st_uid, parent.st_gid) != 0 { failure = "chown" }
        if let failure {
            let reason = String(cString: strerror(errno))
            unlink(path)
            throw StoreError.database("\(path): cannot \(failure) the new database: \(reason)")
        }
    }

    var isReplaced: Bool { FileIdentity(path: path) != file }

    /// The schema, one migration per version; GRDB records applied ones in `grdb_migrations`.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    -- One row per staff message that left for the Internet.
                    CREATE TABLE sent (
                        id INTEGER PRIMARY KEY,           -- row id, referenced by sent_customer
                        message_id TEXT NOT NULL,         -- Message-ID without <>
                        staff TEXT NOT NULL,              -- staff address who wrote it
                        mailbox TEXT NOT NULL,            -- unified address it left from
                        time DATETIME NOT NULL,           -- when it left (UTC)
                        queue_id TEXT NOT NULL            -- Postfix queue id
                    );
                    -- Thread lookups by Message-ID; also makes recordSent idempotent.
                    CREATE UNIQUE INDEX sent_message ON sent (message_id, mailbox, queue_id);
                    CREATE INDEX sent_time ON sent (time);

                    -- The Internet recipients of each sent message (sticky_customers).
                    CREATE TABLE sent_customer (
                        sent_id INTEGER NOT NULL REFERENCES sent (id) ON DELETE CASCADE,  -- the message
                        customer TEXT NOT NULL,           -- recipient address (lower-case)
                        mailbox TEXT NOT NULL,            -- copy of sent.mailbox, for the index
                        time DATETIME NOT NULL,           -- copy of sent.time, for the index
                        PRIMARY KEY (sent_id, customer)
                    );
                    CREATE INDEX sent_customer_last ON sent_customer (mailbox, customer, time);

                    -- Explicit reassignments by the manager: the latest per thread or customer.
                    CREATE TABLE assignments (
                        kind TEXT NOT NULL CHECK (kind IN ('thread', 'customer')),  -- what is assigned
                        key TEXT NOT NULL,                -- Message-ID (thread) or customer address
                        mailbox TEXT NOT NULL,            -- unified address it applies to
                        staff TEXT NOT NULL,              -- staff address it goes to
                        time DATETIME NOT NULL,           -- when it was assigned
                        PRIMARY KEY (kind, mailbox, key)
                    );
                    CREATE INDEX assignments_time ON assignments (time);

                    -- The audit trail: one row per routing decision.
                    CREATE TABLE audit (
                        id INTEGER PRIMARY KEY,           -- insertion order
                        time DATETIME NOT NULL,           -- when it was decided (UTC)
                        queue_id TEXT NOT NULL,           -- Postfix queue id
                        direction TEXT NOT NULL,          -- inbound | staff | internal
                        sender TEXT NOT NULL,             -- envelope sender
                        recipients TEXT NOT NULL,         -- envelope recipients, a JSON array of strings
                        action TEXT NOT NULL,             -- accept | reject | tempfail
                        rule TEXT NOT NULL,               -- the rule that decided
                        staff TEXT,                       -- staff concerned, if any
                        mailbox TEXT,                     -- unified address concerned, if any
                        customer TEXT                     -- customer address concerned, if any
                    );
                    CREATE INDEX audit_time ON audit (time);
                    CREATE INDEX audit_staff ON audit (staff, time);
                    CREATE INDEX audit_customer ON audit (customer, time);
                    """)
        }
        migrator.registerMigration("v2") { db in
            try db.execute(
                sql: """
                    -- Round-robin: who took the last turn, per unified address.
                    CREATE TABLE turns (
                        mailbox TEXT PRIMARY KEY,         -- unified address
                        staff TEXT NOT NULL,              -- staff address given the last turn
                        time DATETIME NOT NULL            -- when
                    );

                    -- Conversations waiting for a staff's answer: one row per customer and
                    -- unified address, from their first unanswered message; a staff's mail
                    -- to the customer deletes it.
                    CREATE TABLE waiting (
                        mailbox TEXT NOT NULL,            -- unified address written to
                        customer TEXT NOT NULL,           -- customer address (lower-case)
                        time DATETIME NOT NULL,           -- the first unanswered message (UTC)
                        latest DATETIME NOT NULL,         -- the customer's latest message
                        subject TEXT NOT NULL,            -- Subject of the first unanswered message
                        staff TEXT,                       -- who has it; NULL: unassigned
                        PRIMARY KEY (mailbox, customer)
                    );
                    CREATE INDEX waiting_time ON waiting (time);
                    """)
        }
        return migrator
    }

    // MARK: Queries
    //
    // The statements every message runs are cached (compiled once per connection): compiling
    // SQL costs more than running these indexed lookups and inserts.

    func threadOwner(messageIDs: [String], mailbox: String) throws -> String? {
        let ids = messageIDs.uniqued(limit: Stores.maximumMessageIDs)
        guard !ids.isEmpty else { return nil }
        return try read { try Self.threadOwner($0, ids: ids, mailbox: mailbox) }
    }

    func assignedStaff(messageIDs: [String], customer: String?, mailbox: String) throws -> String? {
        let ids = messageIDs.uniqued(limit: Stores.maximumMessageIDs)
        guard !ids.isEmpty || customer != nil else { return nil }
        return try read { try Self.assignedStaff($0, ids: ids, customer: customer, mailbox: mailbox) }
    }

    func lastStaff(customer: String, mailbox: String) throws -> String? {
        try read { try Self.lastStaff($0, customer: customer, mailbox: mailbox) }
    }

    /// The lookups on one reader.
    func recall(messageIDs: [String], customer: String?, mailbox: String, lastStaff: Bool, deadline: Deadline) throws -> Recollection {
        let ids = messageIDs.uniqued(limit: Stores.maximumMessageIDs)
        guard !ids.isEmpty || customer != nil else { return Recollection() }
        return try lookup(by: deadline) { db in
            Recollection(
                assigned: try Self.assignedStaff(db, ids: ids, customer: customer, mailbox: mailbox),
                threadOwner: ids.isEmpty ? nil : try Self.threadOwner(db, ids: ids, mailbox: mailbox),
                lastStaff: lastStaff ? try customer.flatMap { try Self.lastStaff(db, customer: $0, mailbox: mailbox) } : nil)
        }
    }

    private static func threadOwner(_ db: Database, ids: [String], mailbox: String) throws -> String? {
        let statement = try DirectStatement(
            db,
            sql: """
                SELECT message_id, staff FROM sent
                WHERE mailbox = ? AND message_id IN (\(databaseQuestionMarks(count: ids.count)))
                ORDER BY time DESC, id DESC
                """)
        statement.bind(mailbox, at: 1)
        _ = statement.bind(ids, from: 2)
        var owners: [String: String] = [:]
        for (id, staff) in try statement.textPairs() where owners[id] == nil {
            owners[id] = staff  // the most recent send of that ID
        }
        return ids.lazy.compactMap { owners[$0] }.first
    }

    private static func assignedStaff(_ db: Database, ids: [String], customer: String?, mailbox: String) throws -> String? {
        // Without Message-IDs (most new mail) the statement is the same text every time.
        let threads = ids.isEmpty ? "" : "(kind = 'thread' AND key IN (\(databaseQuestionMarks(count: ids.count)))) OR "
        let statement = try DirectStatement(
            db,
            sql: """
                SELECT staff FROM assignments
                WHERE mailbox = ? AND (\(threads)(kind = 'customer' AND key = ?))
                ORDER BY kind = 'thread' DESC, time DESC
                LIMIT 1
                """)
        statement.bind(mailbox, at: 1)
        statement.bind(customer, at: statement.bind(ids, from: 2))
        return try statement.text()
    }

    private static func lastStaff(_ db: Database, customer: String, mailbox: String) throws -> String? {
        let statement = try DirectStatement(
            db,
            sql: """
                SELECT sent.staff FROM sent_customer JOIN sent ON sent.id = sent_customer.sent_id
                WHERE sent_customer.mailbox = ? AND sent_customer.customer = ?
                ORDER BY sent_customer.time DESC, sent_customer.sent_id DESC
                LIMIT 1
                """)
        statement.bind(mailbox, at: 1)
        statement.bind(customer, at: 2)
        return try statement.text()
    }

    func recordSent(_ message: SentMessage) throws {
        try record([.sent(message)])
    }

    func recordAudit(_ entry: AuditEntry) throws {
        try record([.audit(entry)])
    }

    func assign(_ assignment: Assignment, to staff: String, mailbox: String, at time: Date) throws {
        try record([.assignment(assignment, staff: staff, mailbox: mailbox, time: time)])
    }

    /// A `time` column's value from a bound `Date.timeIntervalSince1970`: the text GRDB writes
    /// for a `Date` (UTC, milliseconds), formatted by SQLite. Foundation's DateFormatter, which
    /// GRDB uses, costs more than the insert itself.
    static let time = "strftime('%Y-%m-%d %H:%M:%f', ?, 'unixepoch')"

    func record(_ records: [StoreRecord]) throws {
        try record(records, deadline: Deadline(after: timeout))
    }

    /// Every record in one write transaction: one commit for a batch.
    func record(_ records: [StoreRecord], deadline: Deadline) throws {
        guard !records.isEmpty else { return }
        try write(by: deadline) { db in
            for record in records {
                switch record {
                case .sent(let message): try Self.insert(db, message)
                case .audit(let entry): try Self.insert(db, entry)
                case .waiting(let message): try Self.insert(db, message)
                case .answered(let mailbox, let customers): try Self.answered(db, mailbox: mailbox, customers: customers)
                case .assignment(let assignment, let staff, let mailbox, let time):
                    try Self.assign(db, assignment, to: staff, mailbox: mailbox, at: time)
                }
            }
        }
    }

    private static func assign(_ db: Database, _ assignment: Assignment, to staff: String, mailbox: String, at time: Date) throws {
        let (kind, key) = assignment.kindAndKey
        let statement = try DirectStatement(
            db,
            sql: """
                INSERT INTO assignments (kind, key, mailbox, staff, time) VALUES (?, ?, ?, ?, \(Self.time))
                ON CONFLICT (kind, mailbox, key) DO UPDATE SET staff = excluded.staff, time = excluded.time
                """)
        statement.bind(kind, at: 1)
        statement.bind(key, at: 2)
        statement.bind(mailbox, at: 3)
        statement.bind(staff, at: 4)
        statement.bind(time.timeIntervalSince1970, at: 5)
        try statement.execute()
    }

    private static func insert(_ db: Database, _ message: SentMessage) throws {
        let sent = try DirectStatement(
            db,
            sql: """
                INSERT INTO sent (message_id, staff, mailbox, time, queue_id) VALUES (?, ?, ?, \(Self.time), ?)
                ON CONFLICT (message_id, mailbox, queue_id) DO NOTHING
                """)
        sent.bind(message.messageID, at: 1)
        sent.bind(message.staff, at: 2)
        sent.bind(message.mailbox, at: 3)
        sent.bind(message.time.timeIntervalSince1970, at: 4)
        sent.bind(message.queueID, at: 5)
        try sent.execute()
        guard db.changesCount == 1 else { return }  // already recorded (a retried call)
        let sentID = db.lastInsertedRowID
        for customer in message.customers.uniqued() {
            let statement = try DirectStatement(
                db, sql: "INSERT INTO sent_customer (sent_id, customer, mailbox, time) VALUES (?, ?, ?, \(Self.time))")
            statement.bind(sentID, at: 1)
            statement.bind(customer, at: 2)
            statement.bind(message.mailbox, at: 3)
            statement.bind(message.time.timeIntervalSince1970, at: 4)
            try statement.execute()
        }
    }

    private static func insert(_ db: Database, _ entry: AuditEntry) throws {
        // The recipients column is a JSON array, which SQLite's json_array writes.
        let statement = try DirectStatement(db, sql: auditInsert(recipients: entry.recipients.count))
        statement.bind(entry.time.timeIntervalSince1970, at: 1)
        statement.bind(entry.queueID, at: 2)
        statement.bind(entry.direction, at: 3)
        statement.bind(entry.sender, at: 4)
        var index = statement.bind(entry.recipients, from: 5)
        for value in [entry.action, entry.rule, entry.staff, entry.mailbox, entry.customer] {
            statement.bind(value, at: index)
            index += 1
        }
        try statement.execute()
    }

    /// The audit insert for a message with `count` recipients; the usual
    /// counts' texts are made once (building one costs more than binding it).
    private static func auditInsert(recipients count: Int) -> String {
        count < auditInserts.count ? auditInserts[count] : makeAuditInsert(recipients: count)
    }

    private static let auditInserts = (0..<16).map(makeAuditInsert)

    private static func makeAuditInsert(recipients count: Int) -> String {
        """
        INSERT INTO audit (time, queue_id, direction, sender, recipients, action, rule, staff, mailbox, customer)
        VALUES (\(time), ?, ?, ?, json_array(\(databaseQuestionMarks(count: count))), ?, ?, ?, ?, ?)
        """
    }

    func auditLog(_ filter: LogFilter) throws -> [AuditEntry] {
        var conditions: [String] = []
        var arguments = StatementArguments()
        if let staff = filter.staff {
            conditions.append("staff = ?")
            arguments += [staff]
        }
        if let customer = filter.customer {
            conditions.append("customer = ?")
            arguments += [customer]
        }
        if let since = filter.since {
            conditions.append("time >= ?")
            arguments += [since]
        }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        arguments += [filter.limit > 0 ? filter.limit : -1]  // -1: no limit
        let sql = """
            SELECT time, queue_id, direction, sender, recipients, action, rule, staff, mailbox, customer
            FROM audit \(whereClause) ORDER BY time DESC, id DESC LIMIT ?
            """
        let entries = try read { [arguments] db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                let recipients = (row["recipients"] as String?).flatMap {
                    try? JSONDecoder().decode([String].self, from: Data($0.utf8))
                }
                return AuditEntry(
                    time: row["time"], queueID: row["queue_id"], direction: row["direction"], sender: row["sender"],
                    recipients: recipients ?? [], action: row["action"], rule: row["rule"],
                    staff: row["staff"], mailbox: row["mailbox"], customer: row["customer"])
            }
        }
        return entries.reversed()
    }

    func prune(olderThan date: Date) throws -> Int {
        var removed = 0
        for table in ["sent", "audit", "assignments", "waiting"] {
            while true {
                // One short write transaction per batch, so mail's writes slip in between.
                let count = try write { db in
                    try db.execute(
                        sql: """
                            DELETE FROM \(table) WHERE rowid IN
                                (SELECT rowid FROM \(table) WHERE time < ? LIMIT \(Stores.pruneBatch))
                            """,
                        arguments: [date])
                    return db.changesCount  // direct deletions only: sent_customer rows go by cascade
                }
                removed += count
                if count < Stores.pruneBatch { break }
            }
        }
        if removed > 0 { logger.info("pruned conversation store", metadata: ["rows": "\(removed)"]) }
        return removed
    }

    func close() {
        guard !isClosed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        readers.close()
        do {
            try pool.close()
        } catch {
            logger.warning("closing conversation store: \(error)")
        }
    }

    // MARK: Round-robin, pending conversations, forgetting a customer

    /// Read, choose and write in one write transaction: SQLite's write lock (BEGIN IMMEDIATE)
    /// serialises takers in this process and in any other on the same file.
    func takeTurn(mailbox: String, order: [String], available: [String], at time: Date) throws -> String? {
        guard !available.isEmpty else { return nil }
        return try write { db in
            let last = try String.fetchOne(db, sql: "SELECT staff FROM turns WHERE mailbox = ?", arguments: [mailbox])
            guard let next = Turns.next(after: last, order: order, available: available) else { return nil }
            try db.execute(
                sql: """
                    INSERT INTO turns (mailbox, staff, time) VALUES (?, ?, ?)
                    ON CONFLICT (mailbox) DO UPDATE SET staff = excluded.staff, time = excluded.time
                    """,
                arguments: [mailbox, next, time])
            return next
        }
    }

    func recordWaiting(_ message: WaitingMessage) throws {
        try record([.waiting(message)])
    }

    func recordAnswered(mailbox: String, customers: [String]) throws {
        try record([.answered(mailbox: mailbox, customers: customers)])
    }

    private static func insert(_ db: Database, _ message: WaitingMessage) throws {
        let statement = try DirectStatement(
            db,
            sql: """
                INSERT INTO waiting (mailbox, customer, time, latest, subject, staff) VALUES (?, ?, \(Self.time), \(Self.time), ?, ?)
                ON CONFLICT (mailbox, customer) DO UPDATE
                    SET latest = excluded.latest, staff = COALESCE(excluded.staff, waiting.staff)
                """)
        statement.bind(message.mailbox, at: 1)
        statement.bind(message.customer, at: 2)
        statement.bind(message.time.timeIntervalSince1970, at: 3)
        statement.bind(message.time.timeIntervalSince1970, at: 4)
        statement.bind(message.subject, at: 5)
        statement.bind(message.staff, at: 6)
        try statement.execute()
    }

    private static func answered(_ db: Database, mailbox: String, customers: [String]) throws {
        let customers = customers.uniqued()
        guard !customers.isEmpty else { return }
        let statement = try DirectStatement(
            db, sql: "DELETE FROM waiting WHERE mailbox = ? AND customer IN (\(databaseQuestionMarks(count: customers.count)))")
        statement.bind(mailbox, at: 1)
        _ = statement.bind(customers, from: 2)
        try statement.execute()
    }

    func pending(_ filter: PendingFilter) throws -> [PendingConversation] {
        var conditions: [String] = []
        var arguments = StatementArguments()
        if let mailbox = filter.mailbox {
            conditions.append("mailbox = ?")
            arguments += [mailbox]
        }
        if let since = filter.waitingSince {
            conditions.append("time <= ?")
            arguments += [since]
        }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let sql = """
            SELECT mailbox, customer, subject, staff, time, latest FROM waiting \(whereClause)
            ORDER BY time, mailbox, customer
            """
        return try read { [arguments] db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                PendingConversation(
                    mailbox: row["mailbox"], customer: row["customer"], subject: row["subject"],
                    staff: row["staff"], since: row["time"], latest: row["latest"])
            }
        }
    }

    func pendingSummary() throws -> [PendingSummary] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT mailbox, COUNT(*), MIN(time) FROM waiting GROUP BY mailbox ORDER BY mailbox").map { row in
                PendingSummary(mailbox: row[0], count: row[1], oldest: row[2])
            }
        }
    }

    func forget(customer: String, dryRun: Bool) throws -> ForgetReport {
        let customer = customer.lowercased()
        // The audit stores envelope addresses as written: compare without case.
        let auditMatch = """
            lower(customer) = ?1 OR lower(sender) = ?1
            OR EXISTS (SELECT 1 FROM json_each(audit.recipients) WHERE lower(json_each.value) = ?1)
            """
        let count: @Sendable (Database) throws -> ForgetReport = { db in
            ForgetReport(
                sentMessages: try Int.fetchOne(
                    db, sql: "SELECT COUNT(DISTINCT sent_id) FROM sent_customer WHERE customer = ?",
                    arguments: [customer]) ?? 0,
                assignments: try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM assignments WHERE kind = 'customer' AND key = ?",
                    arguments: [customer]) ?? 0,
                auditEntries: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM audit WHERE \(auditMatch)", arguments: [customer]) ?? 0,
                pendingConversations: try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM waiting WHERE customer = ?",
                    arguments: [customer]) ?? 0)
        }
        if dryRun { return try read(count) }
        return try write { db in
            let report = try count(db)
            // A message that also went to others keeps them: only this customer's link goes.
            let sentIDs = try Int64.fetchAll(
                db, sql: "SELECT DISTINCT sent_id FROM sent_customer WHERE customer = ?",
                arguments: [customer])
            try db.execute(sql: "DELETE FROM sent_customer WHERE customer = ?", arguments: [customer])
            for start in stride(from: 0, to: sentIDs.count, by: Stores.pruneBatch) {
                let batch = Array(sentIDs[start..<min(start + Stores.pruneBatch, sentIDs.count)])
                try db.execute(
                    sql: """
                        DELETE FROM sent WHERE id IN (\(databaseQuestionMarks(count: batch.count)))
                          AND NOT EXISTS (SELECT 1 FROM sent_customer WHERE sent_id = sent.id)
                        """,
                    arguments: StatementArguments(batch))
            }
            try db.execute(sql: "DELETE FROM assignments WHERE kind = 'customer' AND key = ?", arguments: [customer])
            try db.execute(sql: "DELETE FROM audit WHERE \(auditMatch)", arguments: [customer])
            try db.execute(sql: "DELETE FROM waiting WHERE customer = ?", arguments: [customer])
            return report
        }
    }

    // MARK: Bounded access

    /// Runs `body` on one of GRDB's readers, on the calling thread, without a transaction (see
    /// `lookup`): the commands' and tests' single reads.
    private func read<T>(by deadline: Deadline? = nil, _ body: (Database) throws -> T) throws -> T {
        try bounded(by: deadline) { deadline in
            try pool.unsafeRead { db in try Self.interrupting(db, at: deadline) { try body(db) } }
        }
    }

    /// Runs a message's lookup on one of `readers`, on the calling thread (the message's
    /// session). In WAL mode a read never waits for the writer, so handing it to another thread
    /// and back (two wake-ups per message) would cost more than the read itself. No transaction
    /// either: each statement reads a consistent state of its own, and a record landing between
    /// a message's lookups only makes the later answer newer; BEGIN and COMMIT would cost as
    /// much as a lookup.
    private func lookup<T>(by deadline: Deadline, _ body: (Database) throws -> T) throws -> T {
        try bounded(by: deadline) { deadline in
            try readers.read { db in try Self.interrupting(db, at: deadline) { try body(db) } }
        }
    }

    /// Runs `body` in a write transaction, on the calling thread: the memory's writer thread,
    /// the pruning thread or a command, never a message's session.
    private func write<T>(by deadline: Deadline? = nil, _ body: (Database) throws -> T) throws -> T {
        try bounded(by: deadline) { deadline in
            try pool.write { db in try Self.interrupting(db, at: deadline) { try body(db) } }
        }
    }

    /// The one deadline of a call (the caller's, or the store's timeout from now): another
    /// process's write lock is waited for by SQLite's busy handler, and a statement still running
    /// at the deadline is interrupted by its progress handler. Both count as a timeout.
    private func bounded<T>(by deadline: Deadline?, _ access: (Deadline) throws -> T) throws -> T {
        guard !isClosed.load(ordering: .acquiring) else { throw StoreError.closed }
        try calls.enter()
        defer { calls.leave() }
        let deadline = deadline ?? Deadline(after: timeout)
        // A deadline already passed: the progress handler would interrupt the first statement anyway.
        if deadline.remaining == .zero { throw StoreError.timeout }
        do {
            return try access(deadline)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_INTERRUPT || error.resultCode == .SQLITE_BUSY {
            throw StoreError.timeout
        } catch let error as DatabaseError {
            throw StoreError.database(error.message ?? error.description)
        }
    }

    /// Runs `body` with SQLite's progress handler watching `deadline`: every 1,000 virtual
    /// machine steps it looks at the clock and, once the deadline has passed, makes the
    /// running statement fail with SQLITE_INTERRUPT.
    private static func interrupting<T>(_ db: Database, at deadline: Deadline, _ body: () throws -> T) throws -> T {
        var limit = deadline.instant.uptimeNanoseconds
        return try withUnsafeMutablePointer(to: &limit) { limit in
            sqlite3_progress_handler(
                db.sqliteConnection, 1_000,
                { limit in
                    guard let limit else { return 0 }
                    return DispatchTime.now().uptimeNanoseconds > limit.load(as: UInt64.self) ? 1 : 0
                }, limit)
            defer { sqlite3_progress_handler(db.sqliteConnection, 0, nil, nil) }
            return try body()
        }
    }
}

extension Assignment {
    /// The `assignments.kind` and `assignments.key` columns.
    var kindAndKey: (kind: String, key: String) {
        switch self {
        case .thread(let messageID): ("thread", messageID)
        case .customer(let address): ("customer", address)
        }
    }
}

/// Which file a path named: device and inode. A deleted file has none; a
/// replaced one (a new file, a restored backup renamed over it) has others.
struct FileIdentity: Hashable, Sendable {
    let device: UInt64
    let inode: UInt64

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}
