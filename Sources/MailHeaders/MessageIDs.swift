/// Message identifiers (RFC 5322 section 3.6.4) as they appear in
/// Message-ID, In-Reply-To and References.
public enum MessageIDs {
    /// The identifiers of a header value, in order, without angle brackets
    /// and without white space or folding inside them. Comments and phrases
    /// between identifiers (obsolete syntax, or clients that write
    /// `In-Reply-To: <id> (from Zhang)`) are skipped. A value with no angle
    /// brackets at all gives its `@`-words, as some clients send them bare.
    /// Each identifier is at most 998 characters; at most `limit` are kept
    /// (a References header of thousands of ids is an attack, not a thread).
    public static func parse(_ value: String, limit: Int = 100) -> [String] {
        var ids: [String] = []
        var seen = Set<String>()
        var current: String?
        var depth = 0  // comment nesting
        var escaped = false
        for character in value {
            if escaped {
                escaped = false
                if current != nil { current!.append(character) }
                continue
            }
            if character == "\\" {
                escaped = true
                continue
            }
            if current == nil {
                if character == "(" {
                    depth += 1
                    continue
                }
                if character == ")" {
                    depth = max(0, depth - 1)
                    continue
                }
                if depth == 0, character == "<" { current = "" }
                continue
            }
            switch character {
            case ">":
                if let id = current, !id.isEmpty, id.count <= 998, seen.insert(id).inserted {
                    ids.append(id)
                    if ids.count == limit { return ids }
                }
                current = nil
            case "<":
                current = ""  // an unclosed id: start again at the new one
            case _ where character.isWhitespace:
                continue
            default:
                current!.append(character)
            }
        }
        if ids.isEmpty, !value.contains("<") {
            for word in value.split(whereSeparator: { $0.isWhitespace || $0 == "," }) where word.contains("@") && word.count <= 998 {
                let id = String(word)
                if seen.insert(id).inserted { ids.append(id) }
                if ids.count == limit { break }
            }
        }
        return ids
    }
}
