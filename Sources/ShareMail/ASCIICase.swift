// Case folding for the ASCII parts of mail: header names, ESMTP keywords
// and addresses. Unicode's lowercased() builds a new String each time, and
// folds letters these grammars do not have.

extension UInt8 {
    /// A-Z as a-z; every other byte as it is.
    var asciiLowercased: UInt8 { (0x41...0x5A).contains(self) ? self | 0x20 : self }
}

extension StringProtocol {
    /// Header names and ESMTP keywords compare without regard to ASCII case, byte by byte:
    /// no lowercased copies, as this runs for every header of every message.
    func caseInsensitiveEquals(_ other: String) -> Bool {
        utf8.elementsEqual(other.utf8) { $0.asciiLowercased == $1.asciiLowercased }
    }
}
