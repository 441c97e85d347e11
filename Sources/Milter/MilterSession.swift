import CMilter

/// One SMTP connection as the milter sees it: one method per milter stage.
///
/// The milter layer makes one session per SMTP session (at negotiation, or
/// at CONNECT when the MTA began a new session on the same socket after
/// QUIT_NC) and calls it stage by stage. libmilter runs a worker pool, so one session's
/// calls may come on different threads, but never two at once: a session
/// needs no locking of its own, and must never use thread-local state.
/// Every method has a default that goes on (`.continue`), so a session
/// implements only the stages it needs and `Milter.Options.steps` switches
/// the others off.
public protocol MilterSession: AnyObject {
    /// The SMTP client connected. `client` is nil when the MTA did not say
    /// (unknown address family). Suppress with `Step.connect` off.
    func connect(hostname: String, client: ClientAddress?, context: MilterContext) -> Verdict
    /// MAIL FROM: `arguments[0]` is the address as sent (usually in <>),
    /// the rest are ESMTP parameters. Suppress with `Step.mail` off.
    func mailFrom(_ arguments: [String], context: MilterContext) -> Verdict
    /// One RCPT TO, same shape as `mailFrom`. Suppress with `Step.recipient` off.
    func recipient(_ arguments: [String], context: MilterContext) -> Verdict
    /// One header, value as raw bytes (the MTA passes 8-bit data unchanged;
    /// folded lines keep their line breaks). Suppress with `Step.headers` off.
    func header(name: String, value: [UInt8], context: MilterContext) -> Verdict
    /// One chunk of the body. Return `.skip` once nothing more is needed (a
    /// body negotiated without a reply keeps coming: the MTA is not asked).
    /// Suppress with `Step.body` off.
    func body(_ chunk: UnsafeRawBufferPointer, context: MilterContext) -> Verdict
    /// The whole message was received: decide and say what to change.
    func endOfMessage(context: MilterContext) -> MessageOutcome
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
    public func connect(hostname: String, client: ClientAddress?, context: MilterContext) -> Verdict { .continue }
    public func mailFrom(_ arguments: [String], context: MilterContext) -> Verdict { .continue }
    public func recipient(_ arguments: [String], context: MilterContext) -> Verdict { .continue }
    public func header(name: String, value: [UInt8], context: MilterContext) -> Verdict { .continue }
    public func body(_ chunk: UnsafeRawBufferPointer, context: MilterContext) -> Verdict { .skip }
    public func endOfMessage(context: MilterContext) -> MessageOutcome { MessageOutcome(verdict: .continue) }
    public func outcomeApplied() {}
    public func abort() {}
    public func close() {}
}

/// The libmilter context of the stage being called. Valid only during that
/// call: do not keep it.
public struct MilterContext {
    let pointer: OpaquePointer

    /// A macro the MTA sent for this or an earlier stage, such as
    /// "{auth_authen}" or "i". Which macros come is set by `Options.macros`.
    public func macro(_ name: String) -> String? {
        name.withCString { cName in
            // libmilter's prototype lacks const; it only reads the name.
            guard let value = smfi_getsymval(pointer, UnsafeMutablePointer(mutating: cName)) else { return nil }
            return String(cString: value)
        }
    }
}

/// The peer of an SMTP connection as the MTA reports it.
public struct ClientAddress: Hashable, Sendable {
    /// Numeric IPv4 or IPv6 address ("unix" for a unix-socket client).
    public var ip: String
    public var port: Int

    public init(ip: String, port: Int) {
        self.ip = ip
        self.port = port
    }
}
