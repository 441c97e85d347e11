// The SQLite file itself (issue 11): its mode, a read-only open that creates
// nothing, and noticing that the file was deleted or replaced.
import Foundation
import Testing

@testable import ShareMailStore

@Suite struct SQLiteStateFileTests {
    /// A fresh directory that does not exist yet, and the state path in it.
    static func freshPath() -> (directory: String, path: String) {
        let directory = NSTemporaryDirectory() + "sharemail-statefile-\(UUID().uuidString)"
        return (directory, directory + "/state.sqlite")
    }

    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o777 : nil
    }

    @Test func readOnlyOpenOfAMissingFileCreatesNothing() throws {
        let (directory, path) = Self.freshPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: StoreError.notFound(path)) {
            try Stores.open(.sqlite(path: path), logger: testLogger, readOnly: true)
        }
        #expect(!FileManager.default.fileExists(atPath: directory))
    }

    @Test func databaseWALAndSHMAreCreated0640WhateverTheUmask() throws {
        let (directory, path) = Self.freshPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let previous = umask(0)  // the most permissive: 0644 would show
        defer { umask(previous) }
        let store = try Stores.open(.sqlite(path: path), logger: testLogger, timeout: .seconds(2))
        defer { store.close() }
        try store.recordAudit(
            AuditEntry(
                time: at(0), queueID: "Q1", direction: "inbound", sender: "c@customer.test",
                recipients: [sales], action: "accept", rule: "unnamed"))
        for file in [path, path + "-wal", path + "-shm"] {
            #expect(Self.mode(file) == 0o640, "\(file): \(String(Self.mode(file) ?? 0, radix: 8))")
        }
        // Read-only, it reads what is there.
        let reader = try Stores.open(.sqlite(path: path), logger: testLogger, timeout: .seconds(2), readOnly: true)
        defer { reader.close() }
        #expect(try reader.auditLog(LogFilter()).map(\.queueID) == ["Q1"])
        #expect(throws: StoreError.self) {
            try reader.recordAudit(
                AuditEntry(
                    time: at(1), queueID: "Q2", direction: "inbound", sender: "", recipients: [], action: "accept", rule: "auto"))
        }
    }

    @Test func aDeletedOrReplacedFileIsNoticed() throws {
        let (directory, path) = Self.freshPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try Stores.open(.sqlite(path: path), logger: testLogger, timeout: .seconds(2))
        defer { store.close() }
        #expect(!store.isReplaced)
        try store.assign(.customer(address: "c@customer.test"), to: lisi, mailbox: sales, at: at(0))
        #expect(!store.isReplaced, "writing is no replacing")

        // A backup renamed over it.
        let other = try Stores.open(.sqlite(path: directory + "/other.sqlite"), logger: testLogger, timeout: .seconds(2))
        other.close()
        #expect(rename(directory + "/other.sqlite", path) == 0)
        #expect(store.isReplaced)

        // Deleted: a fresh store on the path is not replaced, and holds none of the old rows.
        let reopened = try Stores.open(.sqlite(path: path), logger: testLogger, timeout: .seconds(2))
        defer { reopened.close() }
        #expect(!reopened.isReplaced)
        unlink(path)
        #expect(reopened.isReplaced)
    }
}
