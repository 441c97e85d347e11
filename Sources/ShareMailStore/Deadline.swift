import Dispatch

/// The moment a store call gives up: one per call, or one a caller passes
/// through several calls (the lookups of one message) so that they share
/// one budget.
public struct Deadline: Sendable {
    let instant: DispatchTime

    /// `duration` from now (at most an hour).
    public init(after duration: Duration) {
        let nanoseconds = max(0, min(duration.seconds * 1e9, 3600e9))
        instant = DispatchTime.now() + .nanoseconds(Int(nanoseconds))
    }

    /// Time left, zero once passed.
    public var remaining: Duration {
        let now = DispatchTime.now().uptimeNanoseconds
        return instant.uptimeNanoseconds > now ? .nanoseconds(Int64(instant.uptimeNanoseconds - now)) : .zero
    }
}
