import Foundation
import PropertyBased
import Testing

@testable import MailHeaders

/// Writing names that decode back exactly, and folding.
@Suite struct EncoderTests {
    let decoder = HeaderDecoder()

    @Test(arguments: [
        ("Zhangsan", false, "Zhangsan <sales@example.com>"),
        ("Zhang San", false, "Zhang San <sales@example.com>"),
        ("  Zhang   San ", false, "Zhang San <sales@example.com>"),
        ("Zhang, San", false, #""Zhang, San" <sales@example.com>"#),
        ("John Q. Public", false, #""John Q. Public" <sales@example.com>"#),
        (#"Say "hi" \o/"#, false, #""Say \"hi\" \\o/" <sales@example.com>"#),
        ("O'Brien", false, "O'Brien <sales@example.com>"),
        ("张三", false, "=?UTF-8?B?5byg5LiJ?= <sales@example.com>"),
        ("张三", true, #""张三" <sales@example.com>"#),
        ("Zoë", false, "=?UTF-8?Q?Zo=C3=AB?= <sales@example.com>"),
        ("Zoë", true, #""Zoë" <sales@example.com>"#),
    ])
    func mailbox(_ name: String, _ smtpUTF8: Bool, _ expected: String) {
        #expect(HeaderEncoder.mailbox(displayName: name, address: "sales@example.com", smtpUTF8: smtpUTF8) == expected)
    }

    @Test func nameThatLooksEncodedIsEncoded() {
        let box = HeaderEncoder.mailbox(displayName: "a =?x?Q?y?= b", address: "s@x", smtpUTF8: false)
        #expect(box.hasPrefix("=?UTF-8?"))
        #expect(decoder.addressList(box).mailboxes.first?.displayName == "a =?x?Q?y?= b")
    }

    @Test func noName() {
        #expect(HeaderEncoder.mailbox(displayName: nil, address: "sales@example.com", smtpUTF8: false) == "<sales@example.com>")
        #expect(HeaderEncoder.mailbox(displayName: "", address: "sales@example.com", smtpUTF8: false) == "<sales@example.com>")
        #expect(HeaderEncoder.mailbox(displayName: " \t ", address: "sales@example.com", smtpUTF8: true) == "<sales@example.com>")
    }

    @Test func addressCannotInjectLines() {
        let out = HeaderEncoder.mailbox(displayName: "x", address: "a@b\r\nBcc: evil@x", smtpUTF8: false)
        #expect(!out.contains("\r") && !out.contains("\n"))
    }

    @Test func encodedWordsStayShortAndWhole() {
        let names = [
            String(repeating: "张三李四王五", count: 10),
            String(repeating: "👨‍👩‍👧‍👦", count: 12),
            String(repeating: "é", count: 80),
            String(repeating: "a\u{301}", count: 40),
            "x" + String(repeating: "\u{301}", count: 60),  // one huge grapheme cluster
        ]
        for name in names {
            let phrase = HeaderEncoder.phrase(name, smtpUTF8: false)
            for word in phrase.split(separator: " ") {
                #expect(word.utf8.count <= 75, "\(word)")
                #expect(word.hasPrefix("=?UTF-8?") && word.hasSuffix("?="))
                // Each word decodes on its own: no character was cut.
                #expect(decoder.unstructured(String(word)) != String(word))
            }
            #expect(decoder.addressList(phrase + " <a@x>").mailboxes.first?.displayName == name)
        }
    }

    @Test func bOrQWhicheverIsShorter() {
        #expect(HeaderEncoder.phrase("Zoë Zhang", smtpUTF8: false).contains("?Q?"))
        #expect(HeaderEncoder.phrase("张三李四", smtpUTF8: false).contains("?B?"))
    }

    @Test func fold() {
        let long = HeaderEncoder.mailbox(displayName: String(repeating: "张三李四", count: 8), address: "sales@example.com", smtpUTF8: false)
        let folded = HeaderEncoder.fold(name: "To", value: long)
        let lines = folded.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count > 1)
        #expect(("To: " + lines[0]).utf8.count <= 78)
        for line in lines.dropFirst() {
            #expect(line.hasPrefix("\t"))
            #expect(line.utf8.count <= 78)
        }
        #expect(!folded.contains("\r"))
        // Unfolding gives the same mailbox back.
        #expect(decoder.addressList(folded).mailboxes.first?.displayName == String(repeating: "张三李四", count: 8))
        #expect(decoder.addressList(folded).mailboxes.first?.address == "sales@example.com")
    }

    @Test func foldKeepsShortValuesAndQuotedStrings() {
        #expect(HeaderEncoder.fold(name: "To", value: "Zhang San <z@x>") == "Zhang San <z@x>")
        let quoted = "\"" + String(repeating: "word ", count: 30) + "end\" <z@x>"
        let folded = HeaderEncoder.fold(name: "To", value: quoted)
        // The only break outside the quotes is before the address.
        #expect(folded == String(quoted.dropLast(6)) + "\n\t<z@x>")
        let unbreakable = String(repeating: "x", count: 200)
        #expect(HeaderEncoder.fold(name: "Subject", value: unbreakable) == unbreakable)
    }

    @Test func foldList() {
        let value = (1...20).map { "User \($0) <user\($0)@example.com>" }.joined(separator: ", ")
        let folded = HeaderEncoder.fold(name: "Cc", value: value)
        let lines = folded.components(separatedBy: "\n")
        #expect(("Cc: " + lines[0]).utf8.count <= 78)
        #expect(lines.dropFirst().allSatisfy { $0.hasPrefix("\t") && $0.utf8.count <= 78 })
        #expect(folded.replacingOccurrences(of: "\n\t", with: " ") == value)
        #expect(decoder.addressList(folded).mailboxes.count == 20)
    }

    @Test func foldRefoldsCRLF() {
        #expect(HeaderEncoder.fold(name: "To", value: "a <a@x>,\r\n b <b@x>") == "a <a@x>, b <b@x>")
    }

    // MARK: - Round trips

    /// Characters that make names hard: CJK, emoji (ZWJ, flags, skin tones), quotes,
    /// backslashes, specials, combining marks, RTL, ideographic space, "=?".
    static let pool: [String] = [
        "张", "三", "李", "四", "張", "山", "田", "김", "철", "Ж", "ß", "é", "e\u{301}", "ﬁ",
        "😀", "👨‍👩‍👧", "🇨🇳", "👍🏽", "\"", "\\", "'", "(", ")", "<", ">", "@", ",", ";", ":", ".",
        "[", "]", "=?", "?=", "_", "=", "?", " ", "  ", "\t", "\u{3000}", "\u{A0}", "ש", "م",
        "\u{200F}", "Ｚ", "ｈ", "~", "`", "!", "#", "%", "&", "*", "+", "/", "^", "{", "|", "}",
    ]

    static let nameGen = Gen.int(in: 0...1_000_000).map { n -> String in
        switch n % 4 {
        case 0: return pool[(n / 4) % pool.count]
        case 1: return String(UnicodeScalar(0x4E00 + (n / 4) % 0x5000)!)  // CJK
        case 2: return String(UnicodeScalar(0x20 + (n / 4) % 95)!)  // printable ASCII
        default:  // any non-surrogate scalar above ASCII controls
            let v = 0xA0 + (n / 4 * 7919) % (0x10FFFF - 0xA0)
            return (0xD800...0xDFFF).contains(v) ? "x" : String(UnicodeScalar(UInt32(v))!)
        }
    }.array(of: 0...60).map { $0.joined() }

    /// What readers make of a name: ASCII whitespace runs collapsed, trimmed.
    static func expected(_ name: String) -> String? {
        HeaderEncoder.collapse(name)
    }

    @Test func roundTripRandomNames() async {
        let decoder = self.decoder
        await propertyCheck(count: 500, input: Self.nameGen) { name in
            for smtpUTF8 in [false, true] {
                let box = HeaderEncoder.mailbox(displayName: name, address: "sales@example.com", smtpUTF8: smtpUTF8)
                let list = decoder.addressList(HeaderEncoder.fold(name: "To", value: box))
                #expect(list.mailboxes.count == 1)
                #expect(
                    list.mailboxes.first?.displayName.map { Array($0.unicodeScalars) }
                        == Self.expected(name).map { Array($0.unicodeScalars) })
                #expect(list.mailboxes.first?.address == "sales@example.com")
                if !smtpUTF8 { #expect(box.utf8.allSatisfy { $0 < 0x80 }) }
            }
        }
    }

    @Test func roundTripInsideALongList() async {
        let decoder = self.decoder
        await propertyCheck(count: 100, input: Self.nameGen.array(of: 1...8)) { names in
            let value = names.enumerated().map { i, n in
                HeaderEncoder.mailbox(displayName: n, address: "u\(i)@example.com", smtpUTF8: false)
            }.joined(separator: ", ")
            let boxes = decoder.addressList(HeaderEncoder.fold(name: "Cc", value: value)).mailboxes
            #expect(boxes.map(\.address) == names.indices.map { "u\($0)@example.com" })
            #expect(
                boxes.map { $0.displayName.map { Array($0.unicodeScalars) } }
                    == names.map { Self.expected($0).map { Array($0.unicodeScalars) } })
        }
    }

    /// Python's email package (what many tools and servers use) reads our output back.
    @Test func pythonDecodesOurOutput() throws {
        guard let python = Self.findExecutable("python3") else {
            print("SKIPPED pythonDecodesOurOutput: python3 not found on PATH")
            return
        }
        var names = [
            "Zhangsan", "Zhang San", "Zhang, San", "John Q. Public", #"Say "hi" \o/"#, "张三", "張三",
            "山田太郎", "Zoë", "销售部-张三", "😀👨‍👩‍👧 emoji", "a =?x?Q?y?= b", "(Sales) 张三",
            String(repeating: "张三李四", count: 12), String(repeating: "Zoë ", count: 30) + "end",
        ]
        var gen = SystemRandomNumberGenerator()
        let nice = Self.pool.filter { !["\t", "\u{200F}", "  "].contains($0) }
        for _ in 0..<200 {
            let n = Int.random(in: 1...40, using: &gen)
            names.append(
                (0..<n).map { _ in
                    Bool.random(using: &gen) ? nice.randomElement(using: &gen)! : String(UnicodeScalar(UInt32.random(in: 0x4E00...0x9FFF, using: &gen))!)
                }.joined())
        }
        names = names.filter { Self.expected($0) != nil }
        // Each name twice: RFC 2047 (7-bit) and raw UTF-8 (SMTPUTF8).
        let headers = [false, true].flatMap { smtpUTF8 in
            names.map {
                HeaderEncoder.fold(name: "To", value: HeaderEncoder.mailbox(displayName: $0, address: "sales@example.com", smtpUTF8: smtpUTF8))
            }
        }
        names += names
        // Two readers: the RFC 2047 decoder (email.header) and the modern headerregistry.
        // Python's headerregistry (3.11) keeps the whitespace between adjacent encoded words
        // in a display name, against RFC 2047 6.2, and folds a space next to any Unicode white
        // space (U+00A0, U+3000, …) into one, so it is only held to names that fit in one
        // encoded word and have no non-ASCII white space; the legacy reader is held to all.
        let script = """
            import sys, json, email, email.policy, email.utils
            from email.header import decode_header, make_header
            out = []
            for value in json.load(sys.stdin):
                msg = email.message_from_string('To: ' + value + '\\n\\nbody\\n', policy=email.policy.default)
                modern = [[a.display_name, a.addr_spec] for a in msg['To'].addresses]
                pairs = email.utils.getaddresses([''.join(value.splitlines())])
                legacy = [[str(make_header(decode_header(n))), a] for n, a in pairs]
                out.append({'modern': modern, 'legacy': legacy})
            json.dump(out, sys.stdout)
            """
        let output = try Self.run(python, ["-c", script], stdin: JSONSerialization.data(withJSONObject: headers))
        let decoded = try #require(try JSONSerialization.jsonObject(with: output) as? [[String: [[String]]]])
        #expect(decoded.count == names.count)
        for (i, readers) in decoded.enumerated() {
            let words = headers[i].components(separatedBy: "=?UTF-8?").count - 1
            let modernToo = words <= 1 && !names[i].unicodeScalars.contains { !$0.isASCII && $0.properties.isWhitespace }
            for reader in modernToo ? ["legacy", "modern"] : ["legacy"] {
                let boxes = readers[reader] ?? []
                #expect(boxes.count == 1, "python \(reader): \(headers[i])")
                #expect(boxes.first?[0] == Self.expected(names[i]), "python \(reader) read \(headers[i])")
                #expect(boxes.first?[1] == "sales@example.com")
            }
        }
    }

    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static func run(_ executable: String, _ arguments: [String], stdin: Data) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(stdin)
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            Issue.record("\(executable) failed (\(process.terminationStatus)): \(errorText)")
        }
        return data
    }
}
