// A small pool of PostgreSQL connections for synchronous callers.
//
// libmilter's worker threads are plain pthreads: they block on a condition
// (never on an event loop thread) until a connection is free, then block on
// the query's future with the call's deadline. Connections are made on one
// private event loop. A failed connect starts a back-off (1 s, doubling to
// 5 s) during which calls fail at once instead of trying again, so a down
// database costs mail nothing but a log line.
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO

final class PostgresPool: @unchecked Sendable {  // mutable state below is guarded by `condition`
    private let group: MultiThreadedEventLoopGroup  // one thread: a handful of connections need no more
    private let configuration: PostgresConnection.Configuration
    private let maximum: Int  // connections at most
    private let logger: Logger

    private let condition = NSCondition()
    private var idle: [PostgresConnection] = []  // ready to lend
    private var open = 0  // idle + lent + being established
    private var connecting = 0  // being established
    private var retryAt: DispatchTime?  // no connect attempt before this
    private var backoff: Duration = .seconds(1)  // next back-off after a failed connect
    private var lastError = ""  // why the last connect failed
    private var closed = false
    private var nextID = 0  // connection ids for postgres-nio's log metadata

    init(configuration: PostgresConnection.Configuration, maximum: Int, logger: Logger) {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.configuration = configuration
        self.maximum = maximum
        self.logger = logger
    }

    deinit {
        if !closed { group.shutdownGracefully(queue: .global()) { _ in } }
    }

    /// Lends a connection to `body`; a connection whose query timed out is closed, not reused.
    func withConnection<T>(deadline: Deadline, _ body: (PostgresConnection) throws -> T) throws -> T {
        let connection = try acquire(deadline: deadline)
        do {
            let value = try body(connection)
            release(connection)
            return value
        } catch StoreError.timeout {
            discard(connection)  // a query is still running on it
            throw StoreError.timeout
        } catch {
            release(connection)  // a server error leaves it usable; a broken one is dropped there
            throw error
        }
    }

    /// Runs one statement and waits for all its rows, at most until `deadline`.
    func query(_ query: PostgresQuery, on connection: PostgresConnection, deadline: Deadline) throws
        -> PostgresQueryResult
    {
        try wait(connection.query(query, logger: logger), until: deadline)
    }

    /// Waits for `future` from a thread that is not an event loop.
    func wait<T: Sendable>(_ future: EventLoopFuture<T>, until deadline: Deadline) throws -> T {
        guard MultiThreadedEventLoopGroup.currentEventLoop == nil else { throw StoreError.calledOnEventLoop }
        let rendezvous = Rendezvous<T>()
        future.whenComplete { rendezvous.complete($0) }
        guard let result = rendezvous.wait(until: deadline) else { throw StoreError.timeout }
        do {
            return try result.get()
        } catch let error as PSQLError {
            throw Self.storeError(error)
        }
    }

    func close() {
        condition.lock()
        guard !closed else {
            condition.unlock()
            return
        }
        closed = true
        let connections = idle
        idle = []
        open -= connections.count
        condition.broadcast()
        condition.unlock()
        for connection in connections { Self.dispose(connection) }
        if MultiThreadedEventLoopGroup.currentEventLoop == nil {
            try? group.syncShutdownGracefully()
        } else {
            group.shutdownGracefully(queue: .global()) { _ in }
        }
    }

    // MARK: Lending

    private func acquire(deadline: Deadline) throws -> PostgresConnection {
        guard MultiThreadedEventLoopGroup.currentEventLoop == nil else { throw StoreError.calledOnEventLoop }
        let until = Date(timeIntervalSinceNow: deadline.remaining.seconds)
        condition.lock()
        defer { condition.unlock() }
        var timedOut = false
        while true {
            if closed { throw StoreError.closed }
            while let connection = idle.popLast() {
                if !connection.isClosed { return connection }
                open -= 1  // the server or the network closed it: reconnect below
            }
            if let retryAt, DispatchTime.now() < retryAt {
                throw StoreError.unavailable(reason: lastError)
            }
            if timedOut { throw StoreError.timeout }
            if open < maximum && connecting == 0 {
                startConnecting()
                continue  // a refused connect may already have failed
            }
            timedOut = !condition.wait(until: until)
        }
    }

    private func release(_ connection: PostgresConnection) {
        condition.lock()
        let keep = !closed && !connection.isClosed
        if keep { idle.append(connection) } else { open -= 1 }
        condition.signal()
        condition.unlock()
        if !keep { Self.dispose(connection) }
    }

    private func discard(_ connection: PostgresConnection) {
        condition.lock()
        open -= 1
        condition.signal()
        condition.unlock()
        Self.dispose(connection)
    }

    /// Closes a connection, keeping it alive until the close is done (postgres-nio asserts
    /// that a connection is closed before it is released).
    private static func dispose(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    /// Starts one connection attempt; called with the lock held, releases it meanwhile.
    private func startConnecting() {
        open += 1
        connecting += 1
        nextID += 1
        let id = nextID
        condition.unlock()
        defer { condition.lock() }
        PostgresConnection.connect(on: group.next(), configuration: configuration, id: id, logger: logger)
            .whenComplete { result in self.connected(result) }
    }

    /// Runs on the event loop: hands the new connection to the waiters, or starts the back-off.
    private func connected(_ result: Result<PostgresConnection, any Error>) {
        condition.lock()
        connecting -= 1
        var stray: PostgresConnection?
        switch result {
        case .success(let connection):
            if closed {
                open -= 1
                stray = connection
            } else {
                idle.append(connection)
                if retryAt != nil { logger.notice("conversation store reachable again") }
                retryAt = nil
                backoff = .seconds(1)
            }
        case .failure(let error):
            open -= 1
            lastError = Self.describe(error)
            retryAt = DispatchTime.now() + .nanoseconds(Int(backoff.seconds * 1e9))
            logger.warning(
                "conversation store unreachable, next attempt in \(backoff)",
                metadata: ["error": "\(lastError)"])
            backoff = min(backoff * 2, .seconds(5))
        }
        condition.broadcast()
        condition.unlock()
        if let stray { Self.dispose(stray) }
    }

    // MARK: Errors

    static func storeError(_ error: PSQLError) -> StoreError {
        if error.serverInfo != nil { return .database(describe(error)) }
        return .unavailable(reason: describe(error))
    }

    /// A readable reason: the server's message, or the connection error underneath.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        if let info = error.serverInfo, let message = info[.message] {
            return "\(message) (SQLSTATE \(info[.sqlState] ?? "?"))"
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
}
