import Logging
import Testing

@testable import ShareMailDaemon

/// Log lines carry what SMTP clients send (MAIL FROM, SASL logins, macros):
/// no character of theirs may start a new line or drive a terminal.
@Suite("Log text: control characters are escaped")
struct LogTextTests {
    @Test(
        "C0, DEL, C1, U+2028/2029 and backslash are escaped, each in its own spelling",
        arguments: [
            ("a\nb", #"a\nb"#), ("a\rb", #"a\rb"#), ("a\tb", #"a\tb"#),
            ("\u{0}", #"\x00"#), ("\u{1b}[31m", #"\x1b[31m"#), ("\u{7f}", #"\x7f"#),
            ("\u{85}", #"\x85"#), ("\u{9f}", #"\x9f"#),
            ("x\u{2028}y", #"x\u{2028}y"#), ("x\u{2029}y", #"x\u{2029}y"#),
            (#"a\nb"#, #"a\\nb"#),
        ])
    func escapes(raw: String, logged: String) {
        #expect(LogText.escaped(raw) == logged)
    }

    @Test("Printable text, UTF-8 names and addresses pass unchanged")
    func plainUnchanged() {
        for text in ["zhangsan@example.com", "<sales@example.com>", "张三 Zhang San", "é ü ß", "%s {auth_authen}", ""] {
            #expect(LogText.escaped(text) == text)
        }
    }

    @Test("Every control character up to U+2029 is escaped; every other character passes unchanged")
    func everyScalar() {
        func isControl(_ value: UInt32) -> Bool {
            value < 0x20 || (0x7F...0x9F).contains(value) || value == 0x2028 || value == 0x2029
        }
        for value in UInt32(0)...0x2029 {
            guard let scalar = Unicode.Scalar(value) else { continue }
            let raw = "<" + String(Character(scalar)) + ">"
            let escaped = LogText.escaped(raw)
            #expect(
                !escaped.unicodeScalars.contains { isControl($0.value) },
                "U+\(String(value, radix: 16)) came through as \(escaped.debugDescription)")
            if isControl(value) || value == 0x5C {
                #expect(escaped.hasPrefix("<\\") && escaped.count > raw.count, "U+\(String(value, radix: 16)): \(escaped)")
            } else {
                #expect(escaped == raw)
            }
        }
    }

    @Test("A forged line in MAIL FROM or a login stays on the one log line, in the message and in every metadata value")
    func lineStaysOne() {
        let forged = "evil@example.net\n2026-12-03T06:00:00+0000 info sharemail: ABC123: decision role=staff"
        let line = LogText.line(
            "QUEUE1: decision \(forged)",
            metadata: [
                "from": "\(forged)", "login": "zhang\r\nsan", "list": .array(["a\nb"]), "key\n": "v",
            ])
        #expect(!line.contains("\n") && !line.contains("\r"))
        #expect(line.contains(#"from=evil@example.net\n2026-12-03"#))
        #expect(line.contains(#"login=zhang\r\nsan"#))
        #expect(line.contains(#"key\n=v"#))
        #expect(line.hasPrefix("QUEUE1: decision evil@example.net\\n2026"))
    }
}
