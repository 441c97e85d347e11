/// An email address as sharemail compares it: `local@domain`, lower-cased.
///
/// Postfix looks addresses up case-insensitively, and so does sharemail: a
/// customer who writes `Sales@Example.COM` reaches `sales@example.com`.
public struct EmailAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The address in lower case, without angle brackets.
    public let value: String

    /// Accepts `local@domain` as configuration and envelopes carry it:
    /// a dot-atom local part (or a quoted one) and a domain of LDH labels or
    /// an address literal. Surrounding angle brackets and spaces are removed.
    public init?(_ text: some StringProtocol) {
        var text = Substring(text).trimmingSpaces
        if text.hasPrefix("<"), text.hasSuffix(">"), text.count >= 2 {
            text = text.dropFirst().dropLast().trimmingSpaces
        }
        guard let at = text.lastIndex(of: "@") else { return nil }
        let local = text[..<at]
        let domain = text[text.index(after: at)...]
        guard EmailAddress.isValidLocalPart(local), EmailAddress.isValidDomain(domain) else { return nil }
        value = text.lowercased()
    }

    public var localPart: Substring { value[..<value.lastIndex(of: "@")!] }
    public var domain: Substring { value[value.index(after: value.lastIndex(of: "@")!)...] }
    public var description: String { value }
    public static func < (a: EmailAddress, b: EmailAddress) -> Bool { a.value < b.value }

    private static let atextSymbols = Set("!#$%&'*+-/=?^_`{|}~")

    static func isValidLocalPart(_ local: Substring) -> Bool {
        guard !local.isEmpty, local.utf8.count <= 64 else { return false }
        if local.hasPrefix("\""), local.hasSuffix("\""), local.count >= 2 {
            return !local.contains { $0 == "\r" || $0 == "\n" }
        }
        if local.hasPrefix(".") || local.hasSuffix(".") || local.contains("..") { return false }
        return local.allSatisfy { c in
            c == "." || atextSymbols.contains(c) || (c.isASCII ? (c.isLetter || c.isNumber) : !c.isWhitespace)
        }
    }

    static func isValidDomain(_ domain: Substring) -> Bool {
        guard !domain.isEmpty, domain.utf8.count <= 253 else { return false }
        if domain.hasPrefix("["), domain.hasSuffix("]") { return IPAddress(domain.dropFirst().dropLast()) != nil }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.allSatisfy { c in c == "-" || (c.isASCII ? (c.isLetter || c.isNumber) : !c.isWhitespace && !c.isPunctuation) }
        }
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return s
    }
}
