/// An SMTP reply that a milter asks the MTA to send.
///
/// Every reply text goes through `wireLines` before libmilter sees it:
/// libmilter treats the text as a printf-style format and silently drops a
/// reply that contains a lone `%`, and a CR or LF inside a line would split
/// the SMTP reply. So `%` is doubled, control characters become spaces, and
/// each line is cut to fit the 512-octet SMTP reply line limit.
public struct Reply: Hashable, Sendable {
    /// Three-digit SMTP code: 4xx with tempfail, 5xx with reject.
    public var code: Int
    /// RFC 3463 enhanced status code, such as "5.7.1".
    public var enhancedCode: String
    /// The human-readable text; "\n" separates the lines of a multi-line reply.
    public var text: String

    public init(code: Int, enhancedCode: String, text: String) {
        self.code = code
        self.enhancedCode = enhancedCode
        self.text = text
    }

    /// The longest text one line may carry: 512 octets minus code, enhanced
    /// code, separators and CRLF, with room left for doubled `%`.
    static let maximumLineBytes = 400
    /// libmilter's limit on the lines of one reply (CMILTER_MAX_REPLY_LINES).
    static let maximumLines = 32

    /// The reply as libmilter must receive it: 1…32 lines, each printable
    /// ASCII or UTF-8 with `%` doubled, no CR/LF/NUL, at most `maximumLineBytes`.
    public var wireLines: [String] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { Reply.sanitize($0) }
        while lines.count > 1, lines.last?.isEmpty == true { lines.removeLast() }
        if lines.count > Reply.maximumLines {
            lines = Array(lines.prefix(Reply.maximumLines))
        }
        return lines
    }

    /// Whether `code` and `enhancedCode` agree with the verdict's class (4 or 5).
    func isValid(forClass digit: Int) -> Bool {
        guard code / 100 == digit, (0..<100).contains(code % 100) else { return false }
        let parts = enhancedCode.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0] == "\(digit)"
            && parts.dropFirst().allSatisfy { p in !p.isEmpty && p.count <= 3 && p.allSatisfy(\.isASCIIDigit) }
    }

    private static func sanitize(_ line: Substring) -> String {
        var out = ""
        var bytes = 0
        for scalar in line.unicodeScalars {
            let piece: String
            switch scalar {
            case "%": piece = "%%"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: piece = " "
            default: piece = String(scalar)
            }
            let size = piece.utf8.count
            if bytes + size > maximumLineBytes { break }
            out += piece
            bytes += size
        }
        return out
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
