/// What a milter stage answers: how the MTA goes on with the message.
public enum Verdict: Hashable, Sendable {
    /// Go on to the next stage.
    case `continue`
    /// Accept the message (or this recipient) without calling later stages.
    case accept
    /// Reject with a 5xx reply (a recipient at RCPT, the message otherwise).
    case reject(Reply)
    /// Refuse for now with a 4xx reply: the client retries later.
    case tempfail(Reply)
    /// Accept and silently throw away.
    case discard
    /// From the body stage only: send no more body chunks (the MTA goes on
    /// to end of message). Elsewhere it means `.continue`.
    case skip
}

/// A change to the message, applied at end of message in the given order.
public enum Modification: Hashable, Sendable {
    /// Add an envelope recipient (`smfi_addrcpt`).
    case addRecipient(String)
    /// Remove an envelope recipient, named as it came in RCPT TO (`smfi_delrcpt`).
    case deleteRecipient(String)
    /// Replace the envelope sender (`smfi_chgfrom`); "" is the null sender.
    case changeSender(String)
    /// Append a header (`smfi_addheader`).
    case addHeader(name: String, value: String)
    /// Insert a header at a 0-based position among all headers (`smfi_insheader`).
    case insertHeader(index: Int, name: String, value: String)
    /// Replace the `occurrence`-th (1-based) header called `name`, or delete
    /// it when `value` is nil (`smfi_chgheader`).
    case changeHeader(name: String, occurrence: Int, value: String?)
    /// `changeHeader` with the value as raw bytes: 8-bit header text that is
    /// not UTF-8 (kept as the client wrote it) cannot travel in a String.
    case changeHeaderBytes(name: String, occurrence: Int, value: [UInt8])
}

/// What the end-of-message stage answers: the verdict plus the changes that
/// go with it. Changes are applied only with `.continue` or `.accept`.
public struct MessageOutcome: Hashable, Sendable {
    public var verdict: Verdict
    public var modifications: [Modification]

    public init(verdict: Verdict, modifications: [Modification] = []) {
        self.verdict = verdict
        self.modifications = modifications
    }
}
