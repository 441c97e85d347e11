import Logging

/// The text of one log line, built the same way by every log handler.
///
/// Envelope addresses, SASL logins and macros come from the SMTP client. A
/// control character among them must not reach the log as is: a line feed
/// would start a line that looks like sharemail's (or Postfix's) own, an
/// escape sequence would rewrite a terminal. So the message and every
/// metadata key and value are escaped: C0 controls, DEL, C1 controls and the
/// Unicode line and paragraph separators (U+2028, U+2029) become `\n`, `\r`,
/// `\t` or `\xHH` / `\u{HHHH}`, and a backslash becomes `\\`, so an escape
/// in the log always means the client sent that character.
enum LogText {
    /// The line of one log event: the handler's metadata, the event's (which
    /// wins) and its error, if any, as `error=…`.
    static func line(_ event: LogEvent, handlerMetadata: Logger.Metadata) -> String {
        var metadata = handlerMetadata.isEmpty ? event.metadata ?? [:] : handlerMetadata.merging(event.metadata ?? [:]) { $1 }
        if let error = event.error { metadata["error"] = "\(error)" }
        return line(event.message, metadata: metadata)
    }

    /// `message key=value key=value`, keys sorted, everything escaped.
    static func line(_ message: Logger.Message, metadata: Logger.Metadata) -> String {
        var text = escaped(message.description)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            text += " " + escaped(key) + "=" + escaped(value.description)
        }
        return text
    }

    static func escaped(_ text: String) -> String {
        // Most text is printable ASCII without a backslash: decided on the bytes (a log line
        // per message has a dozen keys and values).
        guard !text.utf8.allSatisfy({ 0x20...0x7E ~= $0 && $0 != 0x5C }) else { return text }
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x100 && needsEscape(scalar):
                out += "\\x" + hex(scalar.value, digits: 2)
            case _ where needsEscape(scalar):
                out += "\\u{" + hex(scalar.value, digits: 4) + "}"
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x5C: true  // 0x5C: backslash
        default: false
        }
    }

    private static func hex(_ value: UInt32, digits: Int) -> String {
        let text = String(value, radix: 16, uppercase: false)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }
}
