import Testing

@testable import MailHeaders

/// The scanner finds a sensitive address in every shape a client writes it,
/// and the rewriter changes exactly those bytes.
@Suite struct AddressScannerTests {
    let scanner = AddressScanner()
    let decoder = HeaderDecoder()

    /// zhangsan at example.com or any subdomain of it, as the policy matches staff.
    static func isStaff(_ address: String) -> Bool {
        address == "zhangsan@example.com" || (address.hasPrefix("zhangsan@") && address.hasSuffix(".example.com"))
    }

    func rewrite(_ value: String) -> String? {
        rewrite(Array(value.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }

    func rewrite(_ raw: [UInt8]) -> [UInt8]? {
        scanner.rewriting(raw) { Self.isStaff($0) ? "sales@example.com" : nil }
    }

    /// Base64 of UTF-8 or of raw bytes, written out here (not the module's encoder).
    static func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var out = ""
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            let v = UInt32(bytes[i]) << 16 | (n > 1 ? UInt32(bytes[i + 1]) << 8 : 0) | (n > 2 ? UInt32(bytes[i + 2]) : 0)
            out.append(alphabet[Int(v >> 18 & 63)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(n > 1 ? alphabet[Int(v >> 6 & 63)] : "=")
            out.append(n > 2 ? alphabet[Int(v & 63)] : "=")
            i += 3
        }
        return out
    }

    static let chineseSubject = "回复：张三 <zhangsan@example.com> 的报价"

    // MARK: Encoded words

    @Test("a whole Subject encoded as one UTF-8 B word: decoded, rewritten, re-encoded as UTF-8 B")
    func utf8BSubject() throws {
        let value = "=?UTF-8?B?\(Self.base64(Array(Self.chineseSubject.utf8)))?="
        let out = try #require(rewrite(value))
        #expect(out.hasPrefix("=?UTF-8?B?"))
        #expect(decoder.unstructured(out) == "回复：张三 <sales@example.com> 的报价")
        #expect(!decoder.unstructured(out).lowercased().contains("zhangsan"))
    }

    @Test("GB18030 and GBK labelled words keep their label; Q words stay Q", arguments: ["GB18030", "GBK", "gb2312"])
    func chineseCharsets(label: String) throws {
        let gb = try #require(Charset.encode(Self.chineseSubject, label: "GB18030"))
        let b = "=?\(label)?B?\(Self.base64(gb))?="
        let outB = try #require(rewrite(b))
        #expect(outB.hasPrefix("=?\(label)?B?"), "\(outB)")
        #expect(decoder.unstructured(outB) == "回复：张三 <sales@example.com> 的报价")

        let q =
            "=?\(label)?Q?"
            + gb.map { b -> String in
                (0x61...0x7A).contains(b) ? String(UnicodeScalar(b)) : "=" + String(b, radix: 16, uppercase: true)
            }.joined() + "?="
        let outQ = try #require(rewrite(q))
        #expect(outQ.hasPrefix("=?\(label)?Q?"), "\(outQ)")
        #expect(decoder.unstructured(outQ) == "回复：张三 <sales@example.com> 的报价")
    }

    @Test("only the word that held the address is re-encoded; the others keep their bytes")
    func untouchedWordsKeepBytes() throws {
        let first = "=?UTF-8?B?\(Self.base64(Array("报价单 ".utf8)))?="
        let second = "=?UTF-8?Q?from_zhangsan=40example.com?="
        let out = try #require(rewrite("Re: \(first)\r\n \(second) (x)"))
        #expect(out.hasPrefix("Re: \(first)\r\n "))
        #expect(out.hasSuffix(" (x)"))
        #expect(decoder.unstructured(out) == "Re: 报价单 from sales@example.com (x)")
    }

    @Test("an address split between two encoded words, and between a word and raw text")
    func splitAcrossWords() throws {
        let a = "=?UTF-8?B?\(Self.base64(Array("张三 zhang".utf8)))?= =?UTF-8?B?\(Self.base64(Array("san@example.com 好".utf8)))?="
        let outA = try #require(rewrite(a))
        #expect(decoder.unstructured(outA) == "张三 sales@example.com 好")

        let b = "=?UTF-8?B?\(Self.base64(Array("张三 zhangsan".utf8)))?=@example.com"
        let outB = try #require(rewrite(b))
        #expect(decoder.unstructured(outB) == "张三 sales@example.com")

        // A character cut in two by the client (Thunderbird splits by bytes).
        let bytes = Array("张zhangsan@example.com".utf8)
        let c = "=?UTF-8?B?\(Self.base64(Array(bytes[0..<2])))?= =?UTF-8?B?\(Self.base64(Array(bytes[2...])))?="
        let outC = try #require(rewrite(c))
        #expect(decoder.unstructured(outC) == "张sales@example.com")
    }

    @Test("an encoded display name in Cc: the name is re-encoded, the other address is untouched")
    func encodedDisplayName() throws {
        let name = "=?UTF-8?B?\(Self.base64(Array("张三 zhangsan@example.com".utf8)))?="
        let out = try #require(rewrite("\(name) <other@customer.test>, b@customer.test"))
        #expect(out.hasSuffix(" <other@customer.test>, b@customer.test"))
        let list = decoder.addressList(out)
        #expect(list.mailboxes.map(\.address) == ["other@customer.test", "b@customer.test"])
        #expect(list.mailboxes[0].displayName == "张三 sales@example.com")
    }

    @Test("a charset with no encoder (HZ) is re-encoded as UTF-8; Latin-1 keeps its label")
    func fallbackToUTF8() throws {
        let hz = try #require(rewrite("=?HZ-GB-2312?B?\(Self.base64(Array("~{UEH}~} zhangsan@example.com".utf8)))?="))
        #expect(hz.hasPrefix("=?UTF-8?B?"), "\(hz)")
        #expect(decoder.unstructured(hz) == "张三 sales@example.com")

        let latin = try #require(rewrite("=?ISO-8859-1?Q?Caf=E9_zhangsan=40example.com?="))
        #expect(latin.hasPrefix("=?ISO-8859-1?Q?"), "\(latin)")
        #expect(decoder.unstructured(latin) == "Café sales@example.com")
    }

    @Test("an encoded word no reader can decode is rewritten so that it still reads as written")
    func undecodableWord() throws {
        let out = try #require(rewrite("Re: =?x-unknown?Q?zhangsan@example.com?= ok"))
        #expect(decoder.unstructured(out) == "Re: =?x-unknown?Q?sales@example.com?= ok")
    }

    @Test("a long re-encoded text is cut into words of at most 75 bytes, folded with LF and a tab")
    func longTextIsFolded() throws {
        let text = String(repeating: "报价单", count: 30) + " zhangsan@example.com " + String(repeating: "回复", count: 30)
        let out = try #require(rewrite("=?UTF-8?B?\(Self.base64(Array(text.utf8)))?="))
        let words = out.components(separatedBy: "\n\t")
        #expect(words.count > 3)
        #expect(words.allSatisfy { $0.utf8.count <= 75 && $0.hasPrefix("=?UTF-8?B?") && $0.hasSuffix("?=") }, "\(words)")
        #expect(decoder.unstructured(out) == text.replacingOccurrences("zhangsan@", "sales@"))
    }

    @Test("words that read differently joined and one by one: both readings lose the address; the new word is UTF-8, which cannot complete a cut character")
    func besideUndecodable() throws {
        // 0xD5 alone is half a GBK character, and "z" can complete it: joined, the words
        // read "\u{8A7E}hangsan@…"; word by word, "zhangsan@…". Both readings count.
        let raw = "=?GBK?B?\(Self.base64([0xD5]))?= =?GBK?Q?zhangsan=40example.com?="
        #expect(scanner.occurrences(in: Array(raw.utf8), where: Self.isStaff).isEmpty)
        #expect(scanner.holdsAddress(Array(raw.utf8), where: Self.isStaff))
        let out = try #require(rewrite(raw))
        #expect(!scanner.holdsAddress(Array(out.utf8), where: Self.isStaff))
        #expect(out.hasPrefix("=?GBK?B?1Q==?= =?UTF-8?Q?sales=40example=2Ecom?="), "\(out)")
    }

    // MARK: Raw forms

    @Test(
        "embedded, quoted, extended, folded and upper-case forms are replaced exactly",
        arguments: [
            ("<20261203101010.abcd%zhangsan@example.com>", "<20261203101010.abcd%sales@example.com>"),
            ("<a@b.test> <20261203.x%ZhangSan@Example.COM>", "<a@b.test> <20261203.x%sales@example.com>"),
            ("list x=zhangsan@example.com end", "list x=sales@example.com end"),
            ("a+zhangsan@example.com", "a+sales@example.com"),
            ("\"zhangsan\"@example.com", "sales@example.com"),
            ("<\"ZHANGSAN\"@example.com>", "<sales@example.com>"),
            ("zhangsan+quotes@example.com", "sales@example.com"),
            ("Zhangsan+Tag@EXAMPLE.com.", "sales@example.com."),
            ("zhangsan@\r\n example.com", "sales@example.com"),
            ("zhangsan\r\n\t@example.com", "sales@example.com"),
            ("zhangsan @ example.com", "sales@example.com"),
            ("zhangsan@mx.example.com", "sales@example.com"),
            ("addr=zhangsan@example.com; prefer-encrypt=mutual; keydata=mQINBF", "addr=sales@example.com; prefer-encrypt=mutual; keydata=mQINBF"),
            ("mailto:zhangsan@example.com?subject=x", "mailto:sales@example.com?subject=x"),
            ("报价zhangsan@example.com的", "报价sales@example.com的"),
            ("zhangsan@example.com, zhangsan@example.com", "sales@example.com, sales@example.com"),
            ("bounce+zhangsan=example.com@lists.test", "bounce+sales=example.com@lists.test"),
            ("<list-ZhangSan+x=Mx.Example.com@lists.test>", "<list-sales=example.com@lists.test>"),
        ])
    func rawForms(value: String, expected: String) {
        #expect(rewrite(value) == expected)
    }

    @Test(
        "other addresses are left alone",
        arguments: [
            "lizhangsan@example.com", "zhangsan@example.community", "zhangsan@other.test", "zhangsan.li@example.com",
            "example.com", "zhangsan", "=?UTF-8?B?5byg5LiJ?=", "Re: price =?utf-8?Q?broken", "\"zhang san\"@example.com",
            "bounce+zhangsan=example.community@lists.test", "zhangsan=example.com", "\"hi\"zhangsan@other.test",
        ])
    func nonMatches(value: String) {
        #expect(rewrite(value) == nil)
        #expect(scanner.occurrences(in: Array(value.utf8), where: Self.isStaff).isEmpty)
    }

    @Test("a Latin-1 8-bit header keeps every byte but the address's")
    func latin1BytesKept() throws {
        let raw: [UInt8] = Array("Caf".utf8) + [0xE9, 0x20, 0xAB] + Array("zhangsan@example.com".utf8) + [0xBB, 0x20, 0xFC, 0x0A, 0x09, 0xE0]
        let out = try #require(rewrite(raw))
        #expect(out == Array("Caf".utf8) + [0xE9, 0x20, 0xAB] + Array("sales@example.com".utf8) + [0xBB, 0x20, 0xFC, 0x0A, 0x09, 0xE0])
    }

    @Test("a raw GBK header keeps its bytes, also when a trail byte is an ASCII letter")
    func gbkBytesKept() throws {
        // 0x81 0x7A is one GBK character whose trail byte reads as "z".
        let raw: [UInt8] = [0xD5, 0xC5, 0x20, 0x81, 0x7A] + Array("zhangsan@example.com".utf8) + [0xB5, 0xC4]
        let out = try #require(rewrite(raw))
        #expect(out == [0xD5, 0xC5, 0x20, 0x81, 0x7A] + Array("sales@example.com".utf8) + [0xB5, 0xC4])
    }

    // MARK: API

    @Test("occurrences point at the replaced span in the decoded view, with the normalised address")
    func occurrences() throws {
        let raw = Array("To: =?UTF-8?Q?x_ZhangSan+t=40Example.com?= y%zhangsan@mx.example.com".utf8)
        let found = scanner.occurrences(in: raw, where: Self.isStaff)
        #expect(found.map(\.address) == ["zhangsan@example.com", "zhangsan@mx.example.com"])
        let view = scanner.decodedView(raw)
        #expect(found.map { String(decoding: view[$0.range], as: UTF8.self) } == ["ZhangSan+t@Example.com", "zhangsan@mx.example.com"])
    }

    @Test("the extension delimiters are a parameter")
    func delimiters() {
        let dash = AddressScanner(extensionDelimiters: "+-")
        #expect(
            dash.rewriting(Array("zhangsan-list@example.com".utf8)) { Self.isStaff($0) ? "s@e.com" : nil }
                .map { String(decoding: $0, as: UTF8.self) } == "s@e.com")
        #expect(rewrite("zhangsan-list@example.com") == nil)
        #expect(dash.normalize("\"Zhang.San\"+x@Example.COM") == "zhang.san@example.com")
        #expect(scanner.normalize("no address") == nil)
    }

    @Test("values without @ or an encoded word take the fast path and are never rewritten")
    func fastPath() {
        #expect(!AddressScanner.mayHoldAddress(Array("Re: your order 42".utf8)))
        #expect(AddressScanner.mayHoldAddress(Array("=?utf-8?B?eA==?=".utf8)))
        #expect(rewrite("Re: your order 42") == nil)
    }
}
