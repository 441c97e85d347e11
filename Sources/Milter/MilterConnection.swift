import CoreMetrics
import Logging

/// One milter connection: the filter's session, what negotiation settled,
/// and the message gate. It runs each stage the way libmilter's callbacks
/// need it (a message after a shutdown began is deferred, the outcome's
/// changes are applied in order, the session hears whether they went in),
/// on any `MilterContext`: libmilter's in the daemon, a fake in tests.
public final class MilterConnection {
    let session: any MilterSession  // the filter's state for this SMTP session
    let logger: Logger
    private let gate: MessageGate  // counts this connection's message in and out
    private let replies: Milter.FailureReplies  // the texts of the layer's own 4xx
    private let errorMetric: String  // counter label of milter-level failures
    /// Protocol flags agreed with the MTA (SMFIP_*): which steps expect no reply.
    var protocolFlags: UInt = 0
    /// The current message was counted in by the gate.
    private var counted = false
    /// The current message began after the gate closed: it is deferred.
    private var refused = false

    public init(
        session: any MilterSession, gate: MessageGate, replies: Milter.FailureReplies,
        errorMetric: String, logger: Logger
    ) {
        self.session = session
        self.gate = gate
        self.replies = replies
        self.errorMetric = errorMetric
        self.logger = logger
    }

    func expectsNoReply(_ step: Milter.Step) -> Bool { protocolFlags & step.noReplyFlag != 0 }

    /// Counts milter-level failures [`errorMetric`{kind}]; rare, so the handle
    /// is looked up each time.
    func countError(_ kind: String) {
        Counter(label: errorMetric, dimensions: [("kind", kind)]).increment()
    }

    public func connect(hostname: String, client: ClientAddress?, context: any MilterContext) -> Verdict {
        session.connect(hostname: hostname, client: client, context: context)
    }

    /// MAIL is a no-reply step: a message that may not begin (a shutdown is
    /// under way) is deferred at its first recipient, and at its end.
    public func mailFrom(_ arguments: [String], context: any MilterContext) -> Verdict {
        endMessage()
        guard gate.begin() else {
            refused = true
            return .continue
        }
        counted = true
        return session.mailFrom(arguments, context: context)
    }

    public func recipient(_ arguments: [String], context: any MilterContext) -> Verdict {
        if refused { return .tempfail(replies.stopping) }
        return session.recipient(arguments, context: context)
    }

    public func header(name: String, value: [UInt8], context: any MilterContext) -> Verdict {
        if refused { return .continue }
        return session.header(name: name, value: value, context: context)
    }

    public func body(_ chunk: UnsafeRawBufferPointer, context: any MilterContext) -> Verdict {
        if refused { return .skip }
        return session.body(chunk, context: context)
    }

    /// Asks the session, applies its changes in order and tells it whether
    /// they went in; returns the verdict to send.
    public func endOfMessage(context: any MilterContext) -> Verdict {
        defer { endMessage() }
        if refused {
            logger.notice("\(context.macro("i") ?? "NOQUEUE"): the milter is stopping: deferring")
            return .tempfail(replies.stopping)
        }
        let outcome = session.endOfMessage(context: context)
        switch outcome.verdict {
        case .continue, .accept, .skip:
            for modification in outcome.modifications where !context.apply(modification) {
                // Some changes may be in already; a tempfail makes the MTA
                // throw the whole message away, so none of them count.
                logger.error("could not apply a message change", metadata: ["change": "\(modification)"])
                countError("apply")
                session.abort()
                return .tempfail(replies.applyFailed)
            }
        case .reject, .tempfail, .discard:
            break
        }
        session.outcomeApplied()
        return outcome.verdict
    }

    public func abort() {
        session.abort()
        endMessage()
    }

    public func close() {
        session.close()
        endMessage()
    }

    private func endMessage() {
        if counted { gate.end() }
        counted = false
        refused = false
    }
}
