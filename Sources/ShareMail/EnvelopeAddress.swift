/// One envelope address (MAIL FROM or RCPT TO): as the client wrote it, and
/// as Postfix resolved it.
///
/// Postfix rewrites what a client writes before it delivers: a bang path
/// (`customer.test!buyer`) becomes `buyer@customer.test`, `user%host@relay`
/// loses its percent hack, a bare `zhangsan` gains `@$myorigin`, a trailing
/// dot and needless quotes go. A filter that classified the written form
/// would call a recipient local that Postfix then relays to the Internet. So
/// sharemail classifies the `resolved` form, which Postfix itself hands to
/// milters (`{rcpt_addr}`, `{mail_addr}`), and uses `written` only to name
/// the recipient back to Postfix (`smfi_delrcpt` matches the original).
public struct EnvelopeAddress: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The address as the client sent it, usually in angle brackets.
    public var written: String
    /// Postfix's resolution, without brackets ("" for the null sender); nil
    /// when the MTA did not say, and sharemail cannot place the address.
    public var resolved: String?
    /// The ESMTP parameters that came with it (`NOTIFY=`, `ORCPT=`, `ENVID=`,
    /// `RET=`, `SMTPUTF8`, …), as written.
    public var parameters: [String]
    /// The Postfix transport that will deliver it (`{rcpt_mailer}`: "local",
    /// "virtual", "smtp", …), when Postfix said.
    public var mailer: String?

    public init(written: String, resolved: String?, parameters: [String] = [], mailer: String? = nil) {
        self.written = written
        self.resolved = resolved
        self.parameters = parameters
        self.mailer = mailer
    }

    /// An address that needs no resolution (configuration, tests, `check`):
    /// the written form, brackets removed, is taken as resolved when it is a
    /// plain `local@domain` or the null sender. Anything else (bang paths,
    /// percent hacks, bare local parts) only Postfix can resolve.
    public init(_ written: String, parameters: [String] = []) {
        let bare = EnvelopeAddress.stripBrackets(written)
        let plain = bare.isEmpty || EmailAddress(bare) != nil
        self.init(written: written, resolved: plain ? String(bare) : nil, parameters: parameters)
    }

    public init(stringLiteral value: String) {
        self.init(value)
    }

    /// The null sender (`MAIL FROM:<>`), as written or resolved.
    public var isNull: Bool {
        if let resolved { return resolved.isEmpty }
        return EnvelopeAddress.stripBrackets(written).isEmpty
    }

    /// The value of an ESMTP parameter such as `ENVID` or `ORCPT` (the first,
    /// case-insensitive), still xtext-encoded.
    public func parameter(_ keyword: String) -> Substring? {
        for parameter in parameters {
            guard let equals = parameter.firstIndex(of: "="),
                parameter[..<equals].caseInsensitiveEquals(keyword)
            else { continue }
            return parameter[parameter.index(after: equals)...]
        }
        return nil
    }

    /// For logs and the audit trail: the resolved address in lower case when
    /// it is one, else what was written (without brackets); "" for `<>`.
    public var bare: String {
        if let resolved, let address = EmailAddress(resolved) { return address.value }
        return String(resolved ?? String(EnvelopeAddress.stripBrackets(written)))
    }

    public var description: String {
        guard let resolved, resolved != String(EnvelopeAddress.stripBrackets(written)) else { return written }
        return "\(written) (\(resolved))"
    }

    /// Brackets and an obsolete source route (`<@a,@b:user@host>`) removed.
    static func stripBrackets(_ path: String) -> Substring {
        // What Postfix's macros hold (`zhangsan@example.com`): nothing to strip,
        // decided on two bytes without walking the text by Characters.
        if let first = path.utf8.first, let last = path.utf8.last, isPlainEdge(first), isPlainEdge(last),
            first != UInt8(ascii: "<"), first != UInt8(ascii: "@")
        {
            return path[...]
        }
        var text = Substring(path).trimmingSpaces
        if text.hasPrefix("<"), text.hasSuffix(">"), text.count >= 2 { text = text.dropFirst().dropLast() }
        if text.hasPrefix("@"), let colon = text.firstIndex(of: ":") { text = text[text.index(after: colon)...] }
        return text
    }

    /// An ASCII byte that is not whitespace: the Character it starts or ends
    /// is not whitespace either.
    private static func isPlainEdge(_ byte: UInt8) -> Bool {
        byte > 0x20 && byte < 0x7F
    }

    /// RFC 3461 xtext decoding (`+2B` is "+"): how ENVID and ORCPT travel.
    /// Malformed escapes are kept as written.
    static func xtextDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "+"), utf8.count >= 2,
                let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
