// Parsed address-list values (To, Cc, From, Reply-To, …).

/// One mailbox of an address list.
public struct Mailbox: Hashable, Sendable {
    /// Decoded phrase (RFC 2047 decoded, quotes and quoted-pairs removed, whitespace
    /// runs collapsed); for `addr (Name)` without a phrase, the comment; nil if none/empty.
    public var displayName: String?
    /// addr-spec `local@domain` as written (case kept, no angle brackets, no CFWS); "" if none.
    public var address: String
    /// The exact source text of this mailbox, trimmed.
    public var source: String

    public init(displayName: String?, address: String, source: String) {
        self.displayName = displayName
        self.address = address
        self.source = source
    }
}

/// `Team: a@x, b@y;`
public struct Group: Hashable, Sendable {
    /// Decoded group name ("" if none).
    public var name: String
    public var members: [Mailbox]

    public init(name: String, members: [Mailbox]) {
        self.name = name
        self.members = members
    }
}

public enum AddressItem: Hashable, Sendable {
    case mailbox(Mailbox)
    case group(Group)
}

public struct AddressList: Hashable, Sendable {
    public var items: [AddressItem]

    public init(items: [AddressItem]) {
        self.items = items
    }

    /// All mailboxes, group members included, in order.
    public var mailboxes: [Mailbox] {
        var out: [Mailbox] = []
        for item in items {
            switch item {
            case .mailbox(let m): out.append(m)
            case .group(let g): out.append(contentsOf: g.members)
            }
        }
        return out
    }
}
