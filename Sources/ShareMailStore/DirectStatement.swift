import Foundation
import GRDB
import GRDBSQLite

/// One of GRDB's cached statements, bound and stepped through SQLite's C
/// interface (GRDB's documented escape hatch, `Statement.sqliteStatement`).
///
/// The statements every message runs are small indexed lookups and inserts.
/// For them, GRDB's `StatementArguments` (an array of existentials built and
/// mapped per call) and its cursors cost more than SQLite's own work:
/// `bench/instructions` counted about 27,000 instructions per message to
/// build the audit insert's arguments, against 37,000 to run it. Binding
/// each value in place takes a few hundred.
///
/// Use it inside a GRDB access (`read`, `write`) on the statement's own
/// connection, like any `Statement`. Errors come out as GRDB's
/// `DatabaseError`, so callers treat them as they treat GRDB's.
struct DirectStatement {
    private let statement: Statement
    private var handle: OpaquePointer { statement.sqliteStatement }

    /// The connection's cached statement for `sql`, reset and with no value
    /// bound: unbound parameters are NULL.
    init(_ db: Database, sql: String) throws {
        statement = try db.cachedStatement(sql: sql)
        sqlite3_reset(handle)  // a statement left mid-way by an earlier error
        sqlite3_clear_bindings(handle)
    }

    /// Binds text, or NULL for nil, to the parameter at `index` (1-based).
    func bind(_ value: String?, at index: Int32) {
        guard let value else {
            sqlite3_bind_null(handle, index)
            return
        }
        // SQLITE_TRANSIENT: SQLite copies the bytes, which live only during this call.
        _ =
            value.utf8.withContiguousStorageIfAvailable { bytes in
                bytes.withMemoryRebound(to: CChar.self) { text in
                    sqlite3_bind_text(handle, index, text.baseAddress, Int32(text.count), Self.transient)
                }
            }
            ?? value.withCString { sqlite3_bind_text(handle, index, $0, -1, Self.transient) }
    }

    /// Binds a number to the parameter at `index` (1-based).
    func bind(_ value: Double, at index: Int32) {
        sqlite3_bind_double(handle, index, value)
    }

    /// Binds an integer (a row id) to the parameter at `index` (1-based).
    func bind(_ value: Int64, at index: Int32) {
        sqlite3_bind_int64(handle, index, value)
    }

    /// Binds `values` to consecutive parameters from `index` on; returns the
    /// index after the last.
    func bind(_ values: some Sequence<String>, from index: Int32) -> Int32 {
        var index = index
        for value in values {
            bind(value, at: index)
            index += 1
        }
        return index
    }

    /// Runs the statement to its end (an insert, an update, a delete).
    func execute() throws {
        defer { sqlite3_reset(handle) }
        while true {
            switch sqlite3_step(handle) {
            case SQLITE_DONE: return
            case SQLITE_ROW: continue
            case let code: throw failure(code)
            }
        }
    }

    /// The first column of the first row as text; nil when there is no row
    /// or the value is NULL.
    func text() throws -> String? {
        defer { sqlite3_reset(handle) }
        switch sqlite3_step(handle) {
        case SQLITE_DONE: return nil
        case SQLITE_ROW:
            guard let text = sqlite3_column_text(handle, 0) else { return nil }
            return String(cString: text)
        case let code: throw failure(code)
        }
    }

    /// Each row's first two columns as text, rows with a NULL left out.
    func textPairs() throws -> [(String, String)] {
        defer { sqlite3_reset(handle) }
        var rows: [(String, String)] = []
        while true {
            switch sqlite3_step(handle) {
            case SQLITE_DONE: return rows
            case SQLITE_ROW:
                guard let first = sqlite3_column_text(handle, 0), let second = sqlite3_column_text(handle, 1) else { continue }
                rows.append((String(cString: first), String(cString: second)))
            case let code: throw failure(code)
            }
        }
    }

    /// The error of a failed step, as GRDB reports one. (The extended code:
    /// SQLITE_BUSY_SNAPSHOT is still a busy, SQLITE_INTERRUPT an interrupt.)
    private func failure(_ code: Int32) -> DatabaseError {
        let connection = sqlite3_db_handle(handle)
        return DatabaseError(
            resultCode: ResultCode(rawValue: code),
            message: connection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) },
            sql: statement.sql)
    }

    /// SQLite's SQLITE_TRANSIENT destructor: copy the value at once.
    private static let transient = unsafeBitCast(Int(-1), to: sqlite3_destructor_type.self)
}
