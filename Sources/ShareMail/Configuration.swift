import MailHeaders

/// sharemail's configuration: immutable once loaded. The daemon takes one
/// snapshot per message, so a reload never changes a message in flight.
public struct Configuration: Sendable {
    /// libmilter socket spec ("unix:/path" or "inet:port@host").
    public var socket: String
    /// Unix socket permissions (octal mode, owner and group names).
    public var socketMode: UInt32?
    public var socketOwner: String?
    public var socketGroup: String?
    /// Clients whose unauthenticated mail counts as internal (a webmail host).
    public var trustedNetworks: [IPNetwork]
    /// Charset for raw 8-bit header bytes that are not UTF-8.
    public var headerFallbackCharset: String
    /// Postfix's `recipient_delimiter`: each character starts an address
    /// extension (`zhangsan+tag@` is zhangsan@). Must match main.cf, which
    /// `sharemail doctor` checks; "" when Postfix has none.
    public var recipientDelimiter: String
    /// Where the daemon logs: syslog (facility mail, so lines sit beside
    /// Postfix's in mail.log) or standard error (journald under systemd).
    public var log: LogTarget
    /// swift-log level name: trace, debug, info, notice, warning, error, critical.
    public var logLevel: String
    /// Prometheus endpoint ("127.0.0.1:9325"); nil: no metrics.
    public var metrics: HostPort?
    /// Conversation memory: a SQLite file path or a postgresql:// URL; nil:
    /// route by names only (`state = "off"`). A file without `state` gets
    /// `defaultState`.
    public var state: String?
    /// How long the memory keeps sent messages and the audit trail.
    public var retentionDays: Int
    /// The longest a store lookup may delay a message before sharemail
    /// routes without memory.
    public var stateTimeoutMilliseconds: Int
    /// On SIGTERM, how long messages in flight may take to finish before
    /// sharemail stops anyway (Postfix then defers what is left).
    public var drainTimeoutSeconds: Int
    public var mailboxes: [SharedMailbox]

    public enum LogTarget: String, Sendable { case stderr, syslog }

    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    public init(socket: String = Configuration.defaultSocket, socketMode: UInt32? = nil, socketOwner: String? = nil,
                socketGroup: String? = nil, trustedNetworks: [IPNetwork] = [],
                headerFallbackCharset: String = "GB18030", recipientDelimiter: String = Configuration.defaultRecipientDelimiter, log: LogTarget = .stderr, logLevel: String = "info",
                metrics: HostPort? = nil, state: String? = nil, retentionDays: Int = 365,
                stateTimeoutMilliseconds: Int = 200, drainTimeoutSeconds: Int = 30, mailboxes: [SharedMailbox]) {
        self.socket = socket
        self.socketMode = socketMode
        self.socketOwner = socketOwner
        self.socketGroup = socketGroup
        self.trustedNetworks = trustedNetworks
        self.headerFallbackCharset = headerFallbackCharset
        self.recipientDelimiter = recipientDelimiter
        self.log = log
        self.logLevel = logLevel
        self.metrics = metrics
        self.state = state
        self.retentionDays = retentionDays
        self.stateTimeoutMilliseconds = stateTimeoutMilliseconds
        self.drainTimeoutSeconds = drainTimeoutSeconds
        self.mailboxes = mailboxes
    }

    public static let defaultSocket = "unix:/run/sharemail/milter.sock"
    /// The memory of a file without `state`: the unit's StateDirectory.
    public static let defaultState = "/var/lib/sharemail/state.sqlite"
    /// The `state` value that turns the memory off.
    public static let stateOff = "off"
    /// Debian's main.cf sets `recipient_delimiter = +`.
    public static let defaultRecipientDelimiter = "+"
}

/// A listening address such as `127.0.0.1:9325` or `[::1]:9325`.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = Substring(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard IPAddress(host) != nil || host == "localhost" else { return nil }
        self.host = String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
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

    public init(address: EmailAddress, manager: EmailAddress? = nil, managerLogin: String? = nil,
                forwardUnnamed: Bool = false, stickyCustomers: Bool = false, staff: [Staff],
                unnamed: UnnamedRule? = nil, fromName: FromNameTemplate = .plain) {
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

    public init(name: String, aliases: [String] = [], address: EmailAddress, login: String? = nil,
                receiveInternet: Bool = false, sendInternet: Bool = true, away: Bool = false, backup: String? = nil) {
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

/// Where a staff member sits in the configuration.
public struct StaffReference: Hashable, Sendable {
    public let mailbox: Int
    public let staff: Int
}

/// Lookup tables built once per configuration, so that a decision costs the
/// same with 10 staff or 10,000.
public struct Directory: Sendable {
    public let configuration: Configuration
    let staffByAddress: [EmailAddress: StaffReference]
    let staffByLogin: [String: StaffReference]
    let mailboxByAddress: [EmailAddress: Int]
    /// Per mailbox: normalised name or alias → staff index.
    let staffByName: [[String: Int]]
    /// Every configured address: unified, manager and staff.
    let localAddresses: Set<EmailAddress>
    /// Domains of the configured addresses: everything else is the Internet.
    let localDomains: Set<Substring>
    /// Local part → the configured address (unified or staff) it belongs
    /// to, for recipients Postfix delivers by local part alone (local(8)).
    let addressByLocalPart: [Substring: EmailAddress]
    /// Each staff's `backup`, resolved within their mailbox.
    let backups: [StaffReference: StaffReference]

    /// Builds the tables. The loader has already refused duplicates; should
    /// one slip through (a configuration built in code), the first wins.
    public init(_ configuration: Configuration) {
        self.configuration = configuration
        var byAddress: [EmailAddress: StaffReference] = [:]
        var byLogin: [String: StaffReference] = [:]
        var mailboxes: [EmailAddress: Int] = [:]
        var names: [[String: Int]] = []
        var local = Set<EmailAddress>()
        for (m, mailbox) in configuration.mailboxes.enumerated() {
            if mailboxes[mailbox.address] == nil { mailboxes[mailbox.address] = m }
            local.insert(mailbox.address)
            local.insert(mailbox.manager)
            var byName: [String: Int] = [:]
            for (s, staff) in mailbox.staff.enumerated() {
                let reference = StaffReference(mailbox: m, staff: s)
                if byAddress[staff.address] == nil { byAddress[staff.address] = reference }
                if byLogin[staff.login.lowercased()] == nil { byLogin[staff.login.lowercased()] = reference }
                for key in staff.matchKeys where byName[key] == nil { byName[key] = s }
                local.insert(staff.address)
            }
            // A customer answers the name mail left under: the rendered
            // `from_name` routes like the plain name.
            if !mailbox.fromName.isPlain {
                for (s, staff) in mailbox.staff.enumerated() {
                    let key = NameNormalizer.normalize(mailbox.fromName.render(staff.name))
                    if !key.isEmpty, byName[key] == nil { byName[key] = s }
                }
            }
            names.append(byName)
        }
        staffByAddress = byAddress
        staffByLogin = byLogin
        mailboxByAddress = mailboxes
        staffByName = names
        localAddresses = local
        localDomains = Set(local.map(\.domain))
        var byLocalPart: [Substring: EmailAddress] = [:]
        for mailbox in configuration.mailboxes {
            for address in [mailbox.address] + mailbox.staff.map(\.address) where byLocalPart[address.localPart] == nil {
                byLocalPart[address.localPart] = address
            }
        }
        addressByLocalPart = byLocalPart
        var backups: [StaffReference: StaffReference] = [:]
        for (m, mailbox) in configuration.mailboxes.enumerated() {
            for (s, staff) in mailbox.staff.enumerated() {
                guard let text = staff.backup else { continue }
                let found = byLogin[text.lowercased()] ?? EmailAddress(text).flatMap { byAddress[$0] }
                if let found, found.mailbox == m, found.staff != s { backups[StaffReference(mailbox: m, staff: s)] = found }
            }
        }
        self.backups = backups
    }

    /// Some mailbox gives new conversations round-robin (the only rule
    /// that needs a second word with the memory).
    public var hasRoundRobin: Bool { configuration.mailboxes.contains { $0.unnamed == .roundRobin } }

    /// Who covers for `reference` while they are away (nil: the manager alone).
    public func backup(of reference: StaffReference) -> StaffReference? { backups[reference] }

    /// The display name mail of this staff leaves under: the mailbox's
    /// `from_name` rendered with the staff's name.
    public func publicName(_ reference: StaffReference) -> String {
        mailbox(reference).fromName.render(staff(reference).name)
    }

    public func staff(_ reference: StaffReference) -> Staff {
        configuration.mailboxes[reference.mailbox].staff[reference.staff]
    }

    public func mailbox(_ reference: StaffReference) -> SharedMailbox {
        configuration.mailboxes[reference.mailbox]
    }

    /// The address Postfix delivers a resolved envelope address to, as
    /// sharemail compares it: a trailing dot and the quotes of a quoted local
    /// part gone, the `recipient_delimiter` extension folded
    /// (`zhangsan+tag@` is `zhangsan@`, as Postfix's lookups fold it). nil for
    /// what is not `local@domain` (the null sender, a bare local part).
    ///
    /// `mailer` is Postfix's transport for it (`{rcpt_mailer}`). The local(8)
    /// transport delivers by local part alone: on a server whose staff are
    /// accounts under mydestination, `zhangsan@mx.example.com`,
    /// `zhangsan@localhost` or `zhangsan@[own IP]` reach Zhangsan's mailbox,
    /// so such a recipient counts as the configured address of that local
    /// part.
    public func canonical(_ resolved: String, mailer: String? = nil) -> EmailAddress? {
        // Every message asks this several times per address: it works on the
        // bytes (as Postfix does), and parses the address once unless
        // something had to be folded.
        var text = EnvelopeAddress.stripBrackets(resolved)
        let dot = UInt8(ascii: ".")
        if text.utf8.last == dot, text.utf8.dropLast().last != dot { text = text[..<text.utf8.index(before: text.endIndex)] }
        guard let at = text.utf8.lastIndex(of: UInt8(ascii: "@")), let parsed = EmailAddress(text) else { return nil }
        var local = text[..<at]
        var folded = false
        let quote = UInt8(ascii: "\"")
        if local.utf8.count >= 2, local.utf8.first == quote, local.utf8.last == quote {
            local = Substring(Directory.unquoted(local[local.utf8.index(after: local.startIndex)..<local.utf8.index(before: local.endIndex)]))
            folded = true
        }
        // Postfix folds extensions only where it delivers: a customer's
        // buyer+orders@customer.test stays as written.
        if localDomains.contains(parsed.domain), let base = withoutExtension(local) {
            local = base
            folded = true
        }
        let address = folded ? EmailAddress("\(local)\(text[at...])") ?? parsed : parsed
        guard mailer == "local" else { return address }
        let user = Substring(local.lowercased())
        return addressByLocalPart[withoutExtension(user) ?? user] ?? address
    }

    /// `local` up to its `recipient_delimiter` (a set of bytes, as in
    /// Postfix), or nil when it has no extension. A delimiter in first place
    /// is part of the name.
    private func withoutExtension(_ local: Substring) -> Substring? {
        let delimiters = configuration.recipientDelimiter.utf8
        guard !delimiters.isEmpty,
              let cut = local.utf8.dropFirst().firstIndex(where: { delimiters.contains($0) }) else { return nil }
        return local[..<cut]
    }

    private static func unquoted(_ text: Substring) -> String {
        var result = ""
        var escaped = false
        for character in text {
            if !escaped, character == "\\" { escaped = true; continue }
            escaped = false
            result.append(character)
        }
        return result
    }

    public func staff(address: EmailAddress) -> StaffReference? { staffByAddress[address] }

    /// The mailboxes whose manager logs in as `login`.
    public func mailboxes(managedBy login: String) -> [Int] {
        configuration.mailboxes.indices.filter { configuration.mailboxes[$0].managerLogin.lowercased() == login.lowercased() }
    }
    public func staff(login: String) -> StaffReference? { staffByLogin[login.lowercased()] }

    /// A staff named the way an admin names one on the command line: by
    /// SASL login or by address.
    public func staff(loginOrAddress text: String) -> StaffReference? {
        staff(login: text) ?? EmailAddress(text).flatMap(staff(address:))
    }
    public func mailbox(address: EmailAddress) -> Int? { mailboxByAddress[address] }

    /// The staff of mailbox `mailbox` whose name or alias is `displayName`.
    public func staff(named displayName: String, inMailbox mailbox: Int) -> StaffReference? {
        let key = NameNormalizer.normalize(displayName)
        guard !key.isEmpty, let s = staffByName[mailbox][key] else { return nil }
        return StaffReference(mailbox: mailbox, staff: s)
    }

    /// Is `address` in this installation (configured, or in a configured
    /// domain), as opposed to the Internet.
    public func isLocal(_ address: EmailAddress) -> Bool {
        localAddresses.contains(address) || localDomains.contains(address.domain)
    }

    public func isTrusted(_ client: IPAddress) -> Bool {
        configuration.trustedNetworks.contains { $0.contains(client) }
    }
}
