// A small pool of PostgreSQL connections for synchronous callers.
//
// libmilter's worker threads are plain pthreads: they queue (never on an
// event loop thread) until a connection is handed to them, first come first
// served so no session starves under load, then block on the query's future
// with the call's deadline. Connections are made on one
// private event loop. A failed connect starts a back-off (1 s, doubling to
// 5 s) during which calls fail at once instead of trying again, so a down
// database costs mail nothing but a log line.
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO

final class PostgresPool: @unchecked Sendable {  // mutable state below is guarded by `lock`
    private let group: MultiThreadedEventLoopGroup  // one thread: a handful of connections need no more
    private let configuration: PostgresConnection.Configuration
    private let maximum: Int  // connections at most
    private let logger: Logger

    private let lock = NSLock()
    private var idle: [PostgresConnection] = []  // ready to lend (only while nobody waits)
    private var waiters: [Waiter] = []  // callers waiting for a connection, oldest first
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
    func query(
        _ query: PostgresQuery, on connection: PostgresConnection, deadline: Deadline
    ) throws
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
        lock.lock()
        guard !closed else {
            lock.unlock()
            return
        }
        closed = true
        let connections = idle
        idle = []
        open -= connections.count
        wakeAllWaiters()
        lock.unlock()
        for connection in connections { Self.dispose(connection) }
        if MultiThreadedEventLoopGroup.currentEventLoop == nil {
            try? group.syncShutdownGracefully()
        } else {
            group.shutdownGracefully(queue: .global()) { _ in }
        }
    }

    // MARK: Lending

    /// A caller waiting for a connection. Fields are guarded by the pool's lock.
    private final class Waiter: @unchecked Sendable {
        let semaphore = DispatchSemaphore(value: 0)
        var connection: PostgresConnection?  // handed over by `handOver`
        var woken = false  // the pool's state changed (connect failed, closed): look again
    }

    private func acquire(deadline: Deadline) throws -> PostgresConnection {
        guard MultiThreadedEventLoopGroup.currentEventLoop == nil else { throw StoreError.calledOnEventLoop }
        lock.lock()
        defer { lock.unlock() }
        while true {
            if closed { throw StoreError.closed }
            if waiters.isEmpty {  // nobody was here first
                while let connection = idle.popLast() {
                    if !connection.isClosed { return connection }
                    open -= 1  // the server or the network closed it: reconnect below
                }
            }
            if let retryAt, DispatchTime.now() < retryAt {
                throw StoreError.unavailable(reason: lastError)
            }
            if deadline.remaining == .zero { throw StoreError.timeout }
            if open < maximum && connecting < waiters.count + 1 {
                startConnecting()  // lands in `handOver`, perhaps for an older waiter
            }
            let waiter = Waiter()
            waiters.append(waiter)
            lock.unlock()
            let signalled = waiter.semaphore.wait(timeout: deadline.instant) == .success
            lock.lock()
            if let connection = waiter.connection {
                if connection.isClosed {
                    open -= 1
                    continue
                }
                return connection
            }
            waiters.removeAll { $0 === waiter }
            if !signalled || !waiter.woken { throw StoreError.timeout }
        }
    }

    /// Gives a connection to the oldest waiter, or keeps it idle. Called with the lock held.
    private func handOver(_ connection: PostgresConnection) {
        if waiters.isEmpty {
            idle.append(connection)
        } else {
            let waiter = waiters.removeFirst()
            waiter.connection = connection
            waiter.semaphore.signal()
        }
    }

    /// Makes every waiter look at the pool again (back-off started, pool closed). Lock held.
    private func wakeAllWaiters() {
        for waiter in waiters {
            waiter.woken = true
            waiter.semaphore.signal()
        }
        waiters.removeAll()
    }

    private func release(_ connection: PostgresConnection) {
        lock.lock()
        let keep = !closed && !connection.isClosed
        if keep { handOver(connection) } else { open -= 1 }
        lock.unlock()
        if !keep { Self.dispose(connection) }
    }

    private func discard(_ connection: PostgresConnection) {
        lock.lock()
        open -= 1
        lock.unlock()
        Self.dispose(connection)
    }

    /// Closes a connection, keeping it alive until the close is done (postgres-nio asserts
    /// that a connection is closed before it is released).
    private static func dispose(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    /// Starts one connection attempt. Called with the lock held; the attempt completes
    /// asynchronously (postgres-nio submits it to the event loop) in `connected`.
    private func startConnecting() {
        open += 1
        connecting += 1
        nextID += 1
        PostgresConnection.connect(on: group.next(), configuration: configuration, id: nextID, logger: logger)
            .whenComplete { result in self.connected(result) }
    }

    /// Runs on the event loop: hands the new connection over, or starts the back-off.
    private func connected(_ result: Result<PostgresConnection, any Error>) {
        lock.lock()
        connecting -= 1
        var stray: PostgresConnection?
        switch result {
        case .success(let connection):
            if closed {
                open -= 1
                stray = connection
            } else {
                if retryAt != nil { logger.notice("conversation store reachable again") }
                retryAt = nil
                backoff = .seconds(1)
                handOver(connection)
                // More callers waiting than connections on the way: open another.
                if waiters.count > connecting && open < maximum { startConnecting() }
            }
        case .failure(let error):
            open -= 1
            lastError = Self.describe(error)
            retryAt = DispatchTime.now() + .nanoseconds(Int(backoff.seconds * 1e9))
            logger.warning(
                "conversation store unreachable, next attempt in \(backoff)",
                metadata: ["error": "\(lastError)"])
            backoff = min(backoff * 2, .seconds(5))
            wakeAllWaiters()
        }
        lock.unlock()
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
