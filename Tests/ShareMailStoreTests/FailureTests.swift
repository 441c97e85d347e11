// A store that cannot answer must not hold mail: every call gives up within
// the timeout, a database that is down makes calls fail at once (back-off
// between reconnect attempts), and the store comes back by itself.
import Foundation
import Glibc
import PostfixLab
import PostgresTestSupport
import Testing

@testable import ShareMailStore

extension ShareMailStoreTests {
    @Suite struct Failures {
        let clock = ContinuousClock()

        /// Runs `body`, expecting it to throw within `limit`; returns the error.
        @discardableResult
        func expectFailure<T>(
            within limit: Duration, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> T
        ) -> (any Error)? {
            let start = clock.now
            var caught: (any Error)?
            do {
                _ = try body()
                Issue.record("expected the store call to fail", sourceLocation: sourceLocation)
            } catch {
                caught = error
            }
            let took = clock.now - start
            #expect(took < limit, "took \(took), allowed \(limit)", sourceLocation: sourceLocation)
            return caught
        }

        @Test func closedPortFailsAtOnce() throws {
            let port = try PostgresCluster.freePort()
            let error = expectFailure(within: .seconds(1)) {
                try Stores.open(.postgres(url: "postgresql://postgres@127.0.0.1:\(port)/x"), logger: testLogger)
            }
            guard case .unavailable = error as? StoreError else {
                Issue.record("expected StoreError.unavailable, got \(String(describing: error))")
                return
            }
        }

        @Test func silentServerIsGivenUpOn() throws {
            // Accepts connections (the kernel's backlog does) but never says a word.
            let port = try PostgresCluster.freePort()
            let listener = try listen(on: port)
            defer { close(listener) }
            expectFailure(within: .seconds(2)) {
                try Stores.open(.postgres(url: "postgresql://postgres@127.0.0.1:\(port)/x"), logger: testLogger)
            }
        }

        @Test func stoppedDatabaseFailsFastAndIsReconnected() throws {
            let cluster = try PostgresCluster.start()
            defer { cluster.stop() }
            let store = try Stores.open(.postgres(url: cluster.createDatabase()), logger: testLogger)
            defer { store.close() }
            try store.recordSent(sent("m1", by: zhangsan, to: ["c@client.example"], at: 0))

            try cluster.stopServer()
            expectFailure(within: .seconds(1)) { try store.threadOwner(messageIDs: ["m1"], mailbox: sales) }
            // Now in back-off: no connect attempt, no waiting.
            for _ in 0..<20 {
                let error = expectFailure(within: .milliseconds(50)) {
                    try store.recordAudit(
                        AuditEntry(
                            time: at(0), queueID: "Q", direction: "inbound", sender: "c@client.example",
                            recipients: [sales], action: "accept", rule: "unnamed"))
                }
                guard case .unavailable = error as? StoreError else {
                    Issue.record("expected StoreError.unavailable, got \(String(describing: error))")
                    return
                }
            }

            try cluster.startServer()
            let owner = try eventually(within: .seconds(8)) {
                try store.threadOwner(messageIDs: ["m1"], mailbox: sales)
            }
            #expect(owner == zhangsan)
        }

        @Test func serverWhosePortWasTakenSaysSo() throws {
            // What a cluster start meets when another test's listener takes the probed port.
            let cluster = try PostgresCluster.start()
            defer { cluster.stop() }
            try cluster.stopServer()
            let squatter = try listen(on: cluster.port)
            defer { close(squatter) }
            do {
                try cluster.startServer()
                Issue.record("the server started on a port another socket holds")
            } catch let error as ClusterError {
                #expect(error.portTaken)
                #expect(error.description.contains("server.log (port \(cluster.port))"))
                #expect(error.description.contains("could not bind"))
            }
        }

        @Test func hungServerCostsNoMoreThanTheTimeout() throws {
            let cluster = try PostgresCluster.shared()
            let store = try Stores.open(.postgres(url: cluster.createDatabase()), logger: testLogger)
            defer { store.close() }
            try store.recordSent(sent("m1", by: zhangsan, to: ["c@client.example"], at: 0))

            // Freeze the postmaster and every backend: connected or not, nothing answers.
            let frozen = cluster.serverPIDs
            #expect(!frozen.isEmpty)
            for pid in frozen { kill(pid, SIGSTOP) }
            var thawed = false
            defer { if !thawed { for pid in frozen { kill(pid, SIGCONT) } } }

            for _ in 0..<10 {
                let error = expectFailure(within: .milliseconds(500)) {
                    try store.threadOwner(messageIDs: ["m1"], mailbox: sales)
                }
                #expect(error is StoreError)
            }

            for pid in frozen { kill(pid, SIGCONT) }
            thawed = true
            let owner = try eventually(within: .seconds(8)) {
                try store.threadOwner(messageIDs: ["m1"], mailbox: sales)
            }
            #expect(owner == zhangsan)
        }

        @Test func killedConnectionsAreReplaced() throws {
            let cluster = try PostgresCluster.shared()
            let url = try cluster.createDatabase()
            let store = try Stores.open(.postgres(url: url), logger: testLogger)
            defer { store.close() }
            try store.recordSent(sent("m1", by: zhangsan, to: ["c@client.example"], at: 0))
            let database = String(url.split(separator: "/").last!)
            let killed = try cluster.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '\(database)'")
            #expect(Int(killed.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 >= 1)

            let owner = try eventually(within: .seconds(3)) {
                try store.threadOwner(messageIDs: ["m1"], mailbox: sales)
            }
            #expect(owner == zhangsan)
        }

        @Test func closedStoreRefusesCalls() throws {
            for backend in Backend.allCases {
                let (store, _) = try openStore(backend)
                store.close()
                store.close()  // twice is fine
                #expect(throws: StoreError.closed) { try store.lastStaff(customer: "c@client.example", mailbox: sales) }
                #expect(throws: StoreError.closed) {
                    try store.recall(
                        messageIDs: ["m1"], customer: "c@client.example", mailbox: sales, lastStaff: true,
                        deadline: Deadline(after: .seconds(1)))
                }
            }
        }

        /// Retries `body` every 100 ms until it succeeds; every attempt must itself be quick.
        func eventually<T>(within limit: Duration, _ body: () throws -> T) throws -> T {
            let start = clock.now
            while true {
                let attempt = clock.now
                do {
                    return try body()
                } catch {
                    #expect(clock.now - attempt < .milliseconds(500), "a failing call took \(clock.now - attempt)")
                    if clock.now - start > limit { throw error }
                }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }

        /// A listening socket that never accepts.
        func listen(on port: Int) throws -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let bound = withLoopbackAddress(port: UInt16(port)) { bind(fd, $0, $1) == 0 }
            guard fd >= 0, bound, Glibc.listen(fd, 16) == 0 else {
                throw ClusterError("listen on \(port): \(String(cString: strerror(errno)))")
            }
            return fd
        }
    }
}
