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
        // On one contiguous buffer, indexed by integers: walking a
        // Substring's UTF-8 view index by index cost several times more
        // (bench/instructions), and this runs several times per address.
        let parsed =
            text.utf8.withContiguousStorageIfAvailable(EmailAddress.lowercasedAddress)
            ?? {
                var copy = String(text)
                return copy.withUTF8(EmailAddress.lowercasedAddress)
            }()
        guard let parsed else { return nil }
        value = parsed
    }

    /// The address in `bytes`, brackets and spaces around it removed, in
    /// lower case; nil when it is not one.
    private static func lowercasedAddress(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        var start = bytes.startIndex
        var end = bytes.endIndex
        func trim() {
            while start < end, isSpace(bytes[start]) { start += 1 }
            while end > start, isSpace(bytes[end - 1]) { end -= 1 }
        }
        trim()
        if end - start >= 2, bytes[start] == UInt8(ascii: "<"), bytes[end - 1] == UInt8(ascii: ">") {
            start += 1
            end -= 1
            trim()
        }
        guard let at = bytes[start..<end].lastIndex(of: UInt8(ascii: "@")),
            isValidLocalPart(bytes[start..<at]), isValidDomain(bytes[(at + 1)..<end])
        else { return nil }
        let address = UnsafeBufferPointer(rebasing: bytes[start..<end])
        guard address.allSatisfy({ $0 < 0x80 }) else { return String(decoding: address, as: UTF8.self).lowercased() }
        return String(unsafeUninitializedCapacity: address.count) { out in
            for (index, byte) in address.enumerated() { out[index] = byte.asciiLowercased }
            return address.count
        }
    }

    public var localPart: Substring { value[..<at] }
    public var domain: Substring { value[value.utf8.index(after: at)...] }

    /// Where the last "@" is: found among the bytes, not by Characters (each
    /// lookup of a domain did that walk).
    private var at: String.Index { value.utf8.lastIndex(of: UInt8(ascii: "@"))! }
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

    static func isValidLocalPart(_ local: some BidirectionalCollection<UInt8>) -> Bool {
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

    static func isValidDomain(_ domain: some BidirectionalCollection<UInt8>) -> Bool {
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
