/// An SMTP reply the engine wants sent.
public struct SMTPReply: Sendable, Hashable, CustomStringConvertible {
    public var code: Int
    public var enhancedCode: String
    public var text: String

    public init(code: Int, enhancedCode: String, text: String) {
        self.code = code
        self.enhancedCode = enhancedCode
        self.text = text
    }

    public var description: String { "\(code) \(enhancedCode) \(text)" }
}

/// One change to the message headers.
public struct HeaderChange: Sendable, Hashable {
    public enum Operation: String, Sendable, Hashable {
        /// Append `name: value`.
        case add
        /// Replace the `occurrence`-th header called `name` with `value`.
        case change
        /// Remove the `occurrence`-th header called `name`.
        case delete
    }

    public var operation: Operation
    public var name: String
    /// 1-based among headers of the same name (case-insensitive); 0 for add.
    public var occurrence: Int
    /// New value (folded, ready for the wire); nil for delete.
    public var value: String?
    /// The value it replaces, for reports (nil for add).
    public var oldValue: String?
    /// The new value's exact bytes when they are not UTF-8 (an 8-bit header
    /// keeps the bytes it came with; `value` then shows them decoded, for
    /// reports only). nil: `value`'s UTF-8 is what goes on the wire.
    public var raw: [UInt8]?

    public init(
        operation: Operation, name: String, occurrence: Int, value: String?, oldValue: String?,
        raw: [UInt8]? = nil
    ) {
        self.operation = operation
        self.name = name
        self.occurrence = occurrence
        self.value = value
        self.oldValue = oldValue
        self.raw = raw
    }

    public static func add(_ name: String, _ value: String) -> HeaderChange {
        HeaderChange(operation: .add, name: name, occurrence: 0, value: value, oldValue: nil)
    }
}

/// What to do with a message: pure data, applied by the milter layer and
/// printed by the checker.
public struct Decision: Sendable, Hashable {
    public enum Action: Sendable, Hashable {
        case accept
        case reject(SMTPReply)
        case tempfail(SMTPReply)
    }

    public var action: Action
    public var role: SenderRole
    public var addRecipients: [EmailAddress] = []
    /// Recipients to drop, spelled exactly as in RCPT TO.
    public var removeRecipients: [String] = []
    /// Internet recipients to remove and add back as Postfix resolved them,
    /// which drops their ESMTP parameters (an ORCPT that names a staff).
    public var strippedRecipients: [EnvelopeAddress] = []
    public var envelopeSender: EmailAddress?
    public var headerChanges: [HeaderChange] = []
    /// Why, in order: which rule fired, which name matched which staff.
    public var reasons: [String] = []
    /// The rule that decided, in a word, for the audit trail ("named",
    /// "thread", "assigned", "sticky", "unnamed", "auto", "staff-out", …).
    public var rule = ""
    /// The staff the message was routed to, or the staff who sent it.
    public var staff: [EmailAddress] = []
    /// The unified address concerned, if any.
    public var mailbox: EmailAddress?
    /// What the conversation memory should remember.
    public var memoryUpdates: [MemoryUpdate] = []
    /// Staff the message would have reached but who are away: their
    /// backup (if any) and the manager got it instead.
    public var away: [EmailAddress] = []

    public init(action: Action, role: SenderRole) {
        self.action = action
        self.role = role
    }

    /// Does the decision change anything at all.
    public var changesMessage: Bool {
        !addRecipients.isEmpty || !removeRecipients.isEmpty || !strippedRecipients.isEmpty || envelopeSender != nil
            || !headerChanges.isEmpty
    }
}

/// The answer to one RCPT TO.
public enum RecipientVerdict: Sendable, Hashable {
    case accept
    case reject(SMTPReply, reason: String)
    /// Deferred: sharemail cannot decide on this recipient now.
    case tempfail(SMTPReply, reason: String)
}

/// Something the conversation memory should record after a decision.
public enum MemoryUpdate: Sendable, Hashable {
    /// A staff message left for the Internet with this Message-ID.
    case sent(messageID: String, staff: EmailAddress, mailbox: EmailAddress, customers: [EmailAddress])
    /// The manager redirected a customer's message to a staff: the thread
    /// belongs to that staff from now on.
    case assignThread(messageID: String, staff: EmailAddress, mailbox: EmailAddress)
    /// Round-robin gave the conversation this customer's message starts to
    /// a staff: the thread is theirs, as if they had written it.
    case turnGiven(messageID: String, staff: EmailAddress, mailbox: EmailAddress, customer: EmailAddress)
    /// A customer wrote to a unified address and waits for a staff's answer
    /// (`sharemail pending`); `staff` has it, nil: nobody in particular.
    case customerWrote(customer: EmailAddress, mailbox: EmailAddress, staff: EmailAddress?, subject: String)
}

extension Decision.Action {
    /// The action's name in metrics and the audit trail.
    public var name: String {
        switch self {
        case .accept: "accept"
        case .reject: "reject"
        case .tempfail: "tempfail"
        }
    }

    /// The action in the daemon's log line, with its reply code.
    public var logText: String {
        switch self {
        case .accept: "accept"
        case .reject(let reply): "reject \(reply.code)"
        case .tempfail(let reply): "tempfail \(reply.code)"
        }
    }

    /// Every action name, for metrics made ahead of time.
    public static let names = ["accept", "reject", "tempfail"]
}
