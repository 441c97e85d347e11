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
        var text = EnvelopeAddress.stripBrackets(resolved)
        if text.hasSuffix("."), !text.hasSuffix("..") { text = text.dropLast() }
        guard let at = text.lastIndex(of: "@"), let parsed = EmailAddress(text) else { return nil }
        var local = text[..<at]
        if local.count >= 2, local.first == "\"", local.last == "\"" {
            local = Substring(Directory.unquoted(local.dropFirst().dropLast()))
        }
        // Postfix folds extensions only where it delivers: a customer's
        // buyer+orders@customer.test stays as written.
        if localDomains.contains(parsed.domain),
           let cut = local.dropFirst().firstIndex(where: { configuration.recipientDelimiter.contains($0) }) {
            local = local[..<cut]
        }
        guard mailer == "local" else { return EmailAddress("\(local)\(text[at...])") ?? parsed }
        var user = local.lowercased()[...]
        if let cut = user.dropFirst().firstIndex(where: { configuration.recipientDelimiter.contains($0) }) { user = user[..<cut] }
        return addressByLocalPart[user] ?? EmailAddress("\(local)\(text[at...])") ?? parsed
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
