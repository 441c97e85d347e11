// Blocking waits with a deadline: how the synchronous API (called from
// libmilter's pthreads) waits for work done on GRDB's dispatch queues or on
// the SwiftNIO event loop, without ever waiting longer than the timeout.
import Dispatch
import NIOConcurrencyHelpers
import Synchronization

/// One result handed from an asynchronous producer to a blocked waiter. If the
/// waiter gives up first, `complete` says so, and the producer disposes of the
/// value (e.g. closes a connection nobody will use).
final class Rendezvous<Value: Sendable>: Sendable {
    private struct State {
        var result: Result<Value, any Error>?  // set by the producer
        var abandoned = false  // set by a waiter that timed out
    }
    // A pthread mutex (NIOLockedValueBox), not Synchronization's Mutex: the
    // latter's futex is invisible to ThreadSanitizer on Linux.
    private let state = NIOLockedValueBox(State())
    private let semaphore = DispatchSemaphore(value: 0)

    /// True once the waiter gave up: the producer may skip its work.
    var isAbandoned: Bool { state.withLockedValue { $0.abandoned } }

    /// Hands over the result; false if the waiter already gave up.
    @discardableResult
    func complete(_ result: Result<Value, any Error>) -> Bool {
        let delivered = state.withLockedValue { state -> Bool in
            if state.abandoned { return false }
            state.result = result
            return true
        }
        if delivered { semaphore.signal() }
        return delivered
    }

    /// The result, or nil when `deadline` passed first (the rendezvous is then abandoned).
    func wait(until deadline: Deadline) -> Result<Value, any Error>? {
        if semaphore.wait(timeout: deadline.instant) == .success {
            return state.withLockedValue { $0.result }
        }
        // The producer may have completed between the timeout and this lock: take its result then.
        return state.withLockedValue { state in
            if state.result == nil { state.abandoned = true }
            return state.result
        }
    }
}
