/// Reads the header block of a message file (RFC 5322 section 2.2) into
/// headers as the MTA would pass them to a milter: name, and the raw value
/// with folding kept as LF + white space, line ends normalised from CRLF.
public enum HeaderBlock {
    /// Headers up to the first empty line (or the end). A line that is
    /// neither a header nor a continuation ends the block, as in Postfix,
    /// which treats it as the start of the body. Never fails.
    public static func parse(_ bytes: [UInt8]) -> [Header] {
        var headers: [Header] = []
        var lineStart = 0
        var current: (name: String, value: [UInt8])?
        func flush() {
            if let header = current { headers.append(Header(name: header.name, raw: header.value)) }
            current = nil
        }
        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count, bytes[lineEnd] != 0x0A { lineEnd += 1 }
            var line = bytes[lineStart..<lineEnd]
            if line.last == 0x0D { line = line.dropLast() }
            lineStart = lineEnd + 1
            if line.isEmpty { break }
            if line.first == 0x20 || line.first == 0x09 {
                guard current != nil else { break }
                current!.value += [0x0A] + line
                continue
            }
            guard let colon = line.firstIndex(of: 0x3A), colon > line.startIndex,
                line[line.startIndex..<colon].allSatisfy({ (0x21...0x7E).contains($0) })
            else { break }
            flush()
            var value = line[(colon + 1)...]
            if value.first == 0x20 { value = value.dropFirst() }  // the MTA strips the one space after the colon
            current = (String(decoding: line[line.startIndex..<colon], as: UTF8.self), Array(value))
        }
        flush()
        return headers
    }
}
