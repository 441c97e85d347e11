/// How a message reached the MTA.
public struct Submission: Sendable, Hashable {
    public enum Channel: String, Sendable, Hashable {
        /// An SMTP session (Postfix `smtpd_milters`).
        case smtp
        /// The `sendmail` command on this host (Postfix `non_smtpd_milters`).
        case local
    }

    public var channel: Channel
    /// The SASL login of the SMTP session (`{auth_authen}`), if any.
    public var login: String?
    /// The SMTP client's address, if known.
    public var clientAddress: IPAddress?

    public init(channel: Channel, login: String? = nil, clientAddress: IPAddress? = nil) {
        self.channel = channel
        self.login = login.flatMap { $0.isEmpty ? nil : $0 }
        self.clientAddress = clientAddress
    }
}

/// One header as it came from the MTA: the value's raw bytes, unfolded or
/// not, 8-bit data untouched.
public struct Header: Sendable, Hashable {
    public var name: String
    public var raw: [UInt8]

    public init(name: String, raw: [UInt8]) {
        self.name = name
        self.raw = raw
    }

    public init(name: String, value: String) {
        self.init(name: name, raw: Array(value.utf8))
    }
}

/// Everything the engine decides on at the end of a message.
public struct MessageFacts: Sendable, Hashable {
    public var submission: Submission
    /// MAIL FROM, as written and as Postfix resolved it.
    public var sender: EnvelopeAddress
    /// The accepted RCPT TO addresses, as written and as Postfix resolved them.
    public var recipients: [EnvelopeAddress]
    public var headers: [Header]
    /// The message was sent with SMTPUTF8: headers may carry raw UTF-8.
    public var smtpUTF8: Bool
    /// A unique token for a Message-ID sharemail adds (the caller makes it,
    /// so the engine stays deterministic).
    public var uniqueToken: String
    /// What the conversation memory knows, per unified address, for the
    /// queries of `PolicyEngine.memoryQueries` (empty without a store).
    public var memory: [EmailAddress: ConversationMemory] = [:]
    /// The store was configured but could not answer in time.
    public var memoryUnavailable = false
    /// Message-IDs quoted in the body of a delivery report (the original
    /// message of a bounce), when the caller read them.
    public var bodyMessageIDs: [String] = []

    public init(
        submission: Submission, sender: EnvelopeAddress, recipients: [EnvelopeAddress], headers: [Header],
        smtpUTF8: Bool = false, uniqueToken: String
    ) {
        self.submission = submission
        self.sender = sender
        self.recipients = recipients
        self.headers = headers
        self.smtpUTF8 = smtpUTF8
        self.uniqueToken = uniqueToken
    }
}

/// Who is sending, as far as the rules care.
public enum SenderRole: Sendable, Hashable {
    /// A staff member of a shared mailbox (authenticated, or local/trusted
    /// with their own address as envelope sender).
    case staff(StaffReference)
    /// Another internal sender: an authenticated non-staff login (such as
    /// the manager), a local submission, a trusted client.
    case `internal`
    /// Everybody else.
    case internet
}

/// What the conversation memory says about one incoming message and one
/// unified address. Addresses are staff addresses.
public struct ConversationMemory: Sendable, Hashable {
    /// An explicit reassignment of this thread or customer.
    public var assigned: EmailAddress?
    /// The staff who sent a message this one answers (In-Reply-To, References).
    public var threadOwner: EmailAddress?
    /// The staff who last wrote to this customer.
    public var lastStaff: EmailAddress?
    /// The staff whose round-robin turn this message took (see
    /// `PolicyEngine.turnRequests`).
    public var turn: EmailAddress?

    public init(
        assigned: EmailAddress? = nil, threadOwner: EmailAddress? = nil, lastStaff: EmailAddress? = nil,
        turn: EmailAddress? = nil
    ) {
        self.assigned = assigned
        self.threadOwner = threadOwner
        self.lastStaff = lastStaff
        self.turn = turn
    }
}

/// What to look up in the conversation memory before deciding: the engine
/// says which lookups it needs, the memory answers each of them (into a
/// `ConversationMemory`), and the engine alone decides which answer wins.
public struct MemoryQuery: Sendable, Hashable {
    /// The unified address the message is for.
    public var mailbox: EmailAddress
    /// Message-IDs the message refers to, most telling first: In-Reply-To,
    /// then References from the newest, then ids quoted in a bounce.
    public var messageIDs: [String]
    /// The customer: the envelope sender (nil for the null sender).
    public var customer: EmailAddress?
    /// Look up the staff who last wrote to the customer (the mailbox has
    /// sticky_customers). The assignment is always looked up, and the thread
    /// owner whenever there are `messageIDs`.
    public var lastStaff: Bool

    public init(mailbox: EmailAddress, messageIDs: [String], customer: EmailAddress?, lastStaff: Bool = false) {
        self.mailbox = mailbox
        self.messageIDs = messageIDs
        self.customer = customer
        self.lastStaff = lastStaff
    }
}

extension SenderRole {
    /// Who sent, in the daemon's log line (`role=`).
    public var logName: String {
        switch self {
        case .staff: "staff"
        case .internal: "internal"
        case .internet: "internet"
        }
    }

    /// Which way the mail goes, in metrics (`direction`) and the audit trail:
    /// Internet mail is inbound.
    public var direction: String {
        switch self {
        case .staff: "staff"
        case .internal: "internal"
        case .internet: "inbound"
        }
    }

    /// Every direction name, for metrics made ahead of time.
    public static let directions = ["inbound", "staff", "internal"]
}
