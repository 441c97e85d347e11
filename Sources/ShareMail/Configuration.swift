import MailHeaders

/// The policy: what the engine reads, and what a reload (SIGUSR1) replaces.
/// Immutable once loaded; the daemon takes one snapshot per message, so a
/// reload never changes a message in flight. The daemon's own settings
/// (socket, logging, metrics, state, timeouts) are not here: they take
/// effect at start only, and live with the daemon.
public struct Configuration: Sendable, Hashable {
    /// Clients whose unauthenticated mail counts as internal (a webmail host).
    public var trustedNetworks: [IPNetwork] = []
    /// Charset for raw 8-bit header bytes that are not UTF-8.
    public var headerFallbackCharset = "GB18030"
    /// Postfix's `recipient_delimiter`: each character starts an address
    /// extension (`zhangsan+tag@` is zhangsan@). Must match main.cf, which
    /// `sharemail doctor` checks; "" when Postfix has none. Debian's main.cf
    /// sets `+`.
    public var recipientDelimiter = "+"
    public var mailboxes: [SharedMailbox]

    /// Every default is the property's initial value above: the loader
    /// starts from this and overrides what the file sets.
    public init(mailboxes: [SharedMailbox]) {
        self.mailboxes = mailboxes
    }

    public init(
        trustedNetworks: [IPNetwork] = [], headerFallbackCharset: String? = nil,
        recipientDelimiter: String? = nil, mailboxes: [SharedMailbox]
    ) {
        self.init(mailboxes: mailboxes)
        self.trustedNetworks = trustedNetworks
        if let headerFallbackCharset { self.headerFallbackCharset = headerFallbackCharset }
        if let recipientDelimiter { self.recipientDelimiter = recipientDelimiter }
    }

    /// The keys of the policy at the top of the file (besides [[mailbox]]).
    public static let keys: Set<String> = ["trusted_networks", "header_fallback_charset", "recipient_delimiter", "mailbox"]
}

/// One unified external address and the team behind it.
public struct SharedMailbox: Sendable, Hashable {
    /// The address on everybody's business card, such as sales@example.com.
    public var address: EmailAddress
    /// The mailbox that gets a copy of everything (defaults to `address`).
    public var manager: EmailAddress
    /// The manager's SASL login (defaults to `manager`): only the manager may
    /// reassign a thread by redirecting a message (Resent-*).
    public var managerLogin: String
    /// Who gets mail that names no staff besides the manager (`unnamed`).
    public var unnamed: UnnamedRule
    /// Copy mail that names no staff to every staff: `unnamed = "all"`.
    public var forwardUnnamed: Bool {
        get { unnamed == .all }
        set { unnamed = newValue ? .all : .manager }
    }
    /// The display name staff mail leaves under (`from_name`).
    public var fromName: FromNameTemplate
    /// Route a customer's unnamed mail to the staff who last wrote to them
    /// (needs `state`).
    public var stickyCustomers: Bool
    public var staff: [Staff]

    public init(
        address: EmailAddress, manager: EmailAddress? = nil, managerLogin: String? = nil,
        forwardUnnamed: Bool = false, stickyCustomers: Bool = false, staff: [Staff],
        unnamed: UnnamedRule? = nil, fromName: FromNameTemplate = .plain
    ) {
        self.address = address
        self.manager = manager ?? address
        self.managerLogin = managerLogin ?? (manager ?? address).value
        self.unnamed = unnamed ?? (forwardUnnamed ? .all : .manager)
        self.fromName = fromName
        self.stickyCustomers = stickyCustomers
        self.staff = staff
    }
}

public struct Staff: Sendable, Hashable {
    /// Shown to customers as the display name of the unified address;
    /// customers' replies are routed by it.
    public var name: String
    /// Other names customers may write (e.g. "Zhang San", "张三").
    public var aliases: [String]
    /// The staff's own mailbox; never shown to the Internet.
    public var address: EmailAddress
    /// SASL login that identifies this staff (defaults to `address`).
    public var login: String
    /// May the Internet write to `address` directly.
    public var receiveInternet: Bool
    /// May this staff mail the Internet.
    public var sendInternet: Bool
    /// Away (holiday, leave): mail that would reach this staff goes to the
    /// manager and the backup instead; round-robin skips them.
    public var away: Bool
    /// Who covers while away: a login or address of a staff of the same
    /// mailbox, as written (the Directory resolves it).
    public var backup: String?

    public init(
        name: String, aliases: [String] = [], address: EmailAddress, login: String? = nil,
        receiveInternet: Bool = false, sendInternet: Bool = true, away: Bool = false, backup: String? = nil
    ) {
        self.name = name
        self.aliases = aliases
        self.address = address
        self.login = login ?? address.value
        self.receiveInternet = receiveInternet
        self.sendInternet = sendInternet
        self.away = away
        self.backup = backup
    }

    /// Every name that routes to this staff, normalised for matching.
    public var matchKeys: [String] {
        var seen = Set<String>()
        return ([name] + aliases).map(NameNormalizer.normalize).filter { !$0.isEmpty && seen.insert($0).inserted }
    }
}
