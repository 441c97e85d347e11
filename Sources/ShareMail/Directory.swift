import MailHeaders

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
            let cut = local.utf8.dropFirst().firstIndex(where: { delimiters.contains($0) })
        else { return nil }
        return local[..<cut]
    }

    private static func unquoted(_ text: Substring) -> String {
        var result = ""
        var escaped = false
        for character in text {
            if !escaped, character == "\\" {
                escaped = true
                continue
            }
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
