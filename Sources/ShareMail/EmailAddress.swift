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
    /// UTF-8 local parts and domains (RFC 6531) are accepted as they are.
    ///
    /// Works on the UTF-8 bytes: the engine makes one of these for every
    /// address in a To or Cc header, so this is the hot path of a decision.
    public init?(_ text: some StringProtocol) {
        var bytes = Substring(text).utf8[...]
        while let first = bytes.first, EmailAddress.isSpace(first) { bytes = bytes.dropFirst() }
        while let last = bytes.last, EmailAddress.isSpace(last) { bytes = bytes.dropLast() }
        if bytes.first == UInt8(ascii: "<"), bytes.last == UInt8(ascii: ">"), bytes.count >= 2 {
            bytes = bytes.dropFirst().dropLast()
            while let first = bytes.first, EmailAddress.isSpace(first) { bytes = bytes.dropFirst() }
            while let last = bytes.last, EmailAddress.isSpace(last) { bytes = bytes.dropLast() }
        }
        guard let at = bytes.lastIndex(of: UInt8(ascii: "@")) else { return nil }
        let local = bytes[..<at]
        let domain = bytes[bytes.index(after: at)...]
        guard EmailAddress.isValidLocalPart(local), EmailAddress.isValidDomain(domain) else { return nil }
        if bytes.allSatisfy({ $0 < 0x80 }) {
            value = String(decoding: bytes.lazy.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }, as: UTF8.self)
        } else {
            value = String(decoding: bytes, as: UTF8.self).lowercased()
        }
    }

    public var localPart: Substring { value[..<value.lastIndex(of: "@")!] }
    public var domain: Substring { value[value.index(after: value.lastIndex(of: "@")!)...] }
    public var description: String { value }
    public static func < (a: EmailAddress, b: EmailAddress) -> Bool { a.value < b.value }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
    }

    /// RFC 5322 atext symbols: ! # $ % & ' * + - / = ? ^ _ ` { | } ~
    private static let atextSymbols: [Bool] = {
        var table = [Bool](repeating: false, count: 128)
        for byte in "!#$%&'*+-/=?^_`{|}~".utf8 { table[Int(byte)] = true }
        return table
    }()

    static func isValidLocalPart(_ local: Substring.UTF8View.SubSequence) -> Bool {
        guard !local.isEmpty, local.count <= 64 else { return false }
        if local.first == UInt8(ascii: "\""), local.last == UInt8(ascii: "\""), local.count >= 2 {
            return !local.contains(0x0D) && !local.contains(0x0A)
        }
        var previousDot = true  // a leading dot is invalid, like a double one
        for byte in local {
            if byte == UInt8(ascii: ".") {
                if previousDot { return false }
                previousDot = true
                continue
            }
            previousDot = false
            guard byte >= 0x80 || isAlphanumeric(byte) || atextSymbols[Int(byte)] else { return false }
        }
        return !previousDot
    }

    static func isValidDomain(_ domain: Substring.UTF8View.SubSequence) -> Bool {
        guard !domain.isEmpty, domain.count <= 253 else { return false }
        if domain.first == UInt8(ascii: "["), domain.last == UInt8(ascii: "]"), domain.count >= 2 {
            return IPAddress(String(decoding: domain.dropFirst().dropLast(), as: UTF8.self)) != nil
        }
        var labelLength = 0
        var previous: UInt8 = UInt8(ascii: ".")
        for byte in domain {
            if byte == UInt8(ascii: ".") {
                guard labelLength > 0, previous != UInt8(ascii: "-") else { return false }
                labelLength = 0
            } else {
                guard byte >= 0x80 || isAlphanumeric(byte) || byte == UInt8(ascii: "-") else { return false }
                if labelLength == 0, byte == UInt8(ascii: "-") { return false }
                labelLength += 1
                if labelLength > 63 { return false }
            }
            previous = byte
        }
        return labelLength > 0 && previous != UInt8(ascii: "-")
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
