import CMilter

/// One SMTP connection as the milter sees it: one method per milter stage.
///
/// The milter layer makes one session per SMTP session (at negotiation, or
/// at CONNECT when the MTA began a new session on the same socket after
/// QUIT_NC) and calls it stage by stage. libmilter runs a worker pool, so one session's
/// calls may come on different threads, but never two at once: a session
/// needs no locking of its own, and must never use thread-local state.
/// A message that begins after `Milter.shutdown` began never reaches the
/// session: the layer defers it with `Options.failureReplies.stopping`.
/// Every method has a default that goes on (`.continue`), so a session
/// implements only the stages it needs and `Milter.Options.steps` switches
/// the others off.
public protocol MilterSession: AnyObject {
    /// The SMTP client connected. `client` is nil when the MTA did not say
    /// (unknown address family). Suppress with `Step.connect` off.
    func connect(hostname: String, client: ClientAddress?, context: any MilterContext) -> Verdict
    /// MAIL FROM: `arguments[0]` is the address as sent (usually in <>),
    /// the rest are ESMTP parameters. Suppress with `Step.mail` off.
    func mailFrom(_ arguments: [String], context: any MilterContext) -> Verdict
    /// One RCPT TO, same shape as `mailFrom`. Suppress with `Step.recipient` off.
    func recipient(_ arguments: [String], context: any MilterContext) -> Verdict
    /// One header, value as raw bytes (the MTA passes 8-bit data unchanged;
    /// folded lines keep their line breaks). Suppress with `Step.headers` off.
    func header(name: String, value: [UInt8], context: any MilterContext) -> Verdict
    /// One chunk of the body. Return `.skip` once nothing more is needed (a
    /// body negotiated without a reply keeps coming: the MTA is not asked).
    /// Suppress with `Step.body` off.
    func body(_ chunk: UnsafeRawBufferPointer, context: any MilterContext) -> Verdict
    /// The whole message was received: decide and say what to change. The
    /// layer applies the changes; a session never calls `context.apply`.
    func endOfMessage(context: any MilterContext) -> MessageOutcome
    /// The outcome of `endOfMessage` is in: every change it asked for was
    /// applied (or it had none). Not called when a change failed and the
    /// message was deferred instead. The place for what must follow the
    /// changes, such as remembering what was sent.
    func outcomeApplied()
    /// The message was given up (RSET, a later reject, the client left).
    /// Drop per-message state here as well as after `endOfMessage`.
    func abort()
    /// The connection ends. Called once, after which the session is released.
    func close()
}

extension MilterSession {
    public func connect(hostname: String, client: ClientAddress?, context: any MilterContext) -> Verdict { .continue }
    public func mailFrom(_ arguments: [String], context: any MilterContext) -> Verdict { .continue }
    public func recipient(_ arguments: [String], context: any MilterContext) -> Verdict { .continue }
    public func header(name: String, value: [UInt8], context: any MilterContext) -> Verdict { .continue }
    public func body(_ chunk: UnsafeRawBufferPointer, context: any MilterContext) -> Verdict { .skip }
    public func endOfMessage(context: any MilterContext) -> MessageOutcome { MessageOutcome(verdict: .continue) }
    public func outcomeApplied() {}
    public func abort() {}
    public func close() {}
}
