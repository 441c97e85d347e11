import Foundation
import MailHeaders
import SeedTeam
import ShareMail
import Testing

/// Rule 3 against the leaks of issue 10: a staff address hidden in encoded
/// words, message identifiers, quoted or extended or folded forms, personal
/// key headers, and raw 8-bit headers. Nothing that leaves may name the staff,
/// and bytes that named nobody stay as they came.
@Suite("Rule 3: no staff address leaks, in any form")
struct LeakTests {
    let engine: PolicyEngine
    let decoder = HeaderDecoder()
    init() throws { engine = try seedEngine() }

    func send(_ headers: [(String, String)]) -> Decision {
        engine.decide(
            message(
                staffLogin("zhangsan"), from: "<zhangsan@example.com>",
                to: ["<customer@customer.test>"], headers: headers))
    }

    func sendRaw(_ headers: [Header], engine: PolicyEngine? = nil) -> Decision {
        (engine ?? self.engine).decide(
            MessageFacts(
                submission: staffLogin("zhangsan"), sender: "<zhangsan@example.com>",
                recipients: ["<customer@customer.test>"], headers: headers, uniqueToken: "token"))
    }

    /// The header as the customer reads it: every encoded word decoded.
    func read(_ change: HeaderChange?) -> String? {
        guard let change, let value = change.value else { return nil }
        return decoder.unstructured(value)
    }

    /// Nothing written by the decision names a staff, even decoded.
    func expectNoStaffLeft(_ d: Decision, sourceLocation: SourceLocation = #_sourceLocation) {
        for change in d.headerChanges where change.operation != .delete {
            let text = decoder.unstructured(change.value ?? "").lowercased()
            #expect(
                !text.contains("zhangsan@") && !text.contains("lisi@") && !text.contains("\"zhangsan\"@"),
                "\(change.name): \(text)", sourceLocation: sourceLocation)
        }
    }

    static func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    @Test("a Chinese Subject encoded as one UTF-8 B word reads 回复：张三 <sales@example.com> 的报价")
    func encodedSubject() throws {
        let d = send([("Subject", "=?UTF-8?B?\(Self.b64("回复：张三 <zhangsan@example.com> 的报价"))?=")])
        #expect(read(d.change("Subject")) == "回复：张三 <sales@example.com> 的报价")
        #expect(try #require(d.change("Subject")?.value).hasPrefix("=?UTF-8?B?"))
        expectNoStaffLeft(d)
    }

    @Test("a GB18030 (GBK-labelled) Subject stays in its charset")
    func gbSubject() throws {
        // "回复：张三 <ZhangSan@Example.com> 的报价" in GB18030 (Python's codec).
        let d = send([("Subject", "=?GBK?B?u9i4tKO61cXI/SA8WmhhbmdTYW5ARXhhbXBsZS5jb20+ILXEsai82w==?=")])
        #expect(try #require(d.change("Subject")?.value).hasPrefix("=?GBK?B?"))
        #expect(read(d.change("Subject")) == "回复：张三 <sales@example.com> 的报价")
        expectNoStaffLeft(d)
    }

    @Test("Comments and X- headers, Q and B encoded, lose the address in place")
    func commentsAndXHeaders() {
        let d = send([
            ("Comments", "=?utf-8?Q?=E5=BC=A0=E4=B8=89_zhangsan=40example.com?="),
            ("X-Account", "=?UTF-8?B?\(Self.b64("账户 zhangsan+work@example.com"))?= (primary)"),
        ])
        #expect(read(d.change("Comments")) == "张三 sales@example.com")
        #expect(read(d.change("X-Account")) == "账户 sales@example.com (primary)")
        #expect(d.change("X-Account")?.value?.hasSuffix("?= (primary)") == true)
        expectNoStaffLeft(d)
    }

    @Test("an encoded display name in Cc: the name loses the address, the customer's address stays")
    func encodedDisplayNameInCc() throws {
        let d = send([("Cc", "=?UTF-8?B?\(Self.b64("张三 zhangsan@example.com"))?= <other@customer.test>")])
        let value = try #require(d.change("Cc")?.value)
        #expect(value.hasSuffix(" <other@customer.test>"))
        let list = decoder.addressList(value)
        #expect(list.mailboxes.map(\.address) == ["other@customer.test"])
        #expect(list.mailboxes.first?.displayName == "张三 sales@example.com")
        expectNoStaffLeft(d)
    }

    @Test("s-nail Message-ID and In-Reply-To: rewritten, and the memory records the rewritten Message-ID")
    func snailMessageID() throws {
        let d = send([
            ("Message-ID", "<20261203101010.abcd%zhangsan@example.com>"),
            ("In-Reply-To", "<20261202090909.wxyz%zhangsan@example.com>\r\n (Zhangsan's message)"),
            ("References", "<CAF1@mail.customer.test> <20261202090909.wxyz%ZHANGSAN@example.com>"),
        ])
        #expect(d.change("Message-ID")?.value == "<20261203101010.abcd%sales@example.com>")
        #expect(d.change("In-Reply-To")?.value == "<20261202090909.wxyz%sales@example.com>\r\n (Zhangsan's message)")
        #expect(d.change("References")?.value == "<CAF1@mail.customer.test> <20261202090909.wxyz%sales@example.com>")
        #expect(d.adds("Message-ID") == nil)
        let sent = try #require(d.memoryUpdates.first)
        guard case .sent(let messageID, _, _, _) = sent else {
            Issue.record("\(sent)")
            return
        }
        #expect(messageID == "20261203101010.abcd%sales@example.com")
        expectNoStaffLeft(d)
    }

    @Test("an unchanged Message-ID is recorded as it is")
    func plainMessageID() throws {
        let d = send([("Message-ID", "<abc.123@mail.example.com>")])
        #expect(d.change("Message-ID") == nil)
        guard case .sent(let messageID, _, _, _) = try #require(d.memoryUpdates.first) else { return }
        #expect(messageID == "abc.123@mail.example.com")
    }

    @Test(
        "glued after =, + or %, or in a list's bounce address: only the staff part is replaced",
        arguments: [
            ("x=zhangsan@example.com", "x=sales@example.com"),
            ("a+zhangsan@example.com", "a+sales@example.com"),
            ("relay%zhangsan@example.com", "relay%sales@example.com"),
            ("list-bounces+zhangsan=example.com@lists.test", "list-bounces+sales=example.com@lists.test"),
        ])
    func glued(value: String, expected: String) {
        #expect(send([("X-Trace", value)]).change("X-Trace")?.value == expected)
    }

    @Test(
        "quoted local part, +extension, fold after @, any case: in address lists the whole mailbox, elsewhere in place",
        arguments: [
            "\"zhangsan\"@example.com", "zhangsan+tag@example.com", "zhangsan@\r\n example.com", "ZHANGSAN@EXAMPLE.COM",
            "Zhang San <\"ZhangSan\"@example.com>", "zhangsan@mx.example.com",
        ])
    func odd(value: String) {
        let d = send([("Reply-To", value), ("X-Original-Account", "me: \(value).")])
        #expect(d.change("Reply-To")?.value == "Zhangsan <sales@example.com>")
        let other = d.change("X-Original-Account")?.value
        #expect(other == "me: sales@example.com." || other == "me: Zhang San <sales@example.com>.", "\(String(describing: other))")
        expectNoStaffLeft(d)
    }

    @Test("a staff login or local part in any configured domain or subdomain is the staff")
    func loginAndLocalDomains() throws {
        let toml = seedTOML.replacingOccurrences(of: "login = \"zhangsan\"", with: "login = \"zs\"")
        let engine = PolicyEngine(configuration: try ConfigurationLoader.load(text: toml, file: "t").0)
        let d = engine.decide(
            message(
                staffLogin("zs"), from: "<zhangsan@example.com>", to: ["<c@customer.test>"],
                headers: [
                    ("X-A", "zs@example.com"), ("X-B", "zhangsan@example.org"), ("X-C", "zs@smtp.mx.example.com"),
                    ("X-D", "zhangsan@customer.test"), ("X-E", "manager@example.com"), ("X-F", "zsx@example.com"),
                ]))
        #expect(d.change("X-A")?.value == "sales@example.com")
        #expect(d.change("X-B")?.value == "sales@example.com")
        #expect(d.change("X-C")?.value == "sales@example.com")
        #expect(d.change("X-D") == nil)
        #expect(d.change("X-E") == nil)
        #expect(d.change("X-F") == nil)
    }

    @Test("Autocrypt, Autocrypt-Gossip, X-Developer-Key and X-Developer-Signature are deleted, all of them, last first")
    func personalKeyHeaders() {
        let d = send([
            ("Autocrypt", "addr=zhangsan@example.com; keydata=mQINBF1234"),
            ("X-Developer-Signature", "v=1; a=ed25519-sha256; t=1; l=2; i=zhangsan@example.com; s=x; h=y; b=z"),
            ("autocrypt", "addr=zhangsan@example.com; prefer-encrypt=mutual; keydata=mQ"),
            ("X-Developer-Key", "i=zhangsan@example.com; a=ed25519; k=abc"),
            ("AUTOCRYPT-GOSSIP", "addr=lisi@example.com; keydata=mQ"),
            ("x-developer-key", "i=zhangsan@example.com; a=openpgp; fpr=ABC"),
        ])
        #expect(d.deletes("Autocrypt") == [2, 1])
        #expect(d.deletes("Autocrypt-Gossip") == [1])
        #expect(d.deletes("X-Developer-Key") == [2, 1])
        #expect(d.deletes("X-Developer-Signature") == [1])
        #expect(!d.headerChanges.contains { $0.operation == .change && $0.name.lowercased().contains("autocrypt") })
        expectNoStaffLeft(d)
    }

    @Test("a Latin-1 8-bit header keeps every byte but the address's; the fallback charset is never re-emitted")
    func latin1Header() throws {
        let raw: [UInt8] = Array("Caf".utf8) + [0xE9, 0x20, 0xAB] + Array("Zhangsan@example.com".utf8) + [0xBB, 0x20, 0xE0, 0x20, 0xFC]
        let d = sendRaw([Header(name: "X-Organisation", raw: raw)])
        let change = try #require(d.change("X-Organisation"))
        #expect(change.raw == Array("Caf".utf8) + [0xE9, 0x20, 0xAB] + Array("sales@example.com".utf8) + [0xBB, 0x20, 0xE0, 0x20, 0xFC])
        #expect(change.value?.contains("sales@example.com") == true)
    }

    @Test("a Latin-1 8-bit address list: the staff mailbox is replaced, the other bytes kept")
    func latin1AddressList() throws {
        let raw: [UInt8] = Array("Ren".utf8) + [0xE9] + Array(" <rene@customer.test>, Zhang <zhangsan@example.com>".utf8)
        let d = sendRaw([Header(name: "Cc", raw: raw)])
        let change = try #require(d.change("Cc"))
        #expect(change.raw == Array("Ren".utf8) + [0xE9] + Array(" <rene@customer.test>, Zhangsan <sales@example.com>".utf8))
    }

    /// Every form, in every kind of header, raw and encoded: whatever the engine writes
    /// holds no staff address in any reading (the scanner checks, with the staff's
    /// addresses, logins and local parts in example.com and its subdomains).
    @Test(
        "every form in every kind of header: nothing written names a staff",
        arguments: [
            "zhangsan@example.com", "ZhangSan@EXAMPLE.com", "\"zhangsan\"@example.com", "zhangsan+tag@example.com",
            "zhangsan@\r\n example.com", "<id.1%zhangsan@example.com>", "x=zhangsan@example.com", "a+lisi@example.com",
            "zhangsan@mx.example.com", "list-bounces+zhangsan=example.com@lists.test", "\"lisi\"+x@Example.Com",
        ])
    func everyFormEverywhere(form: String) {
        let scanner = AddressScanner()
        let isStaff = { (address: String) -> Bool in
            guard let at = address.lastIndex(of: "@") else { return false }
            let local = address[..<at], domain = address[address.index(after: at)...]
            return ["zhangsan", "lisi"].contains(local) && (domain == "example.com" || domain.hasSuffix(".example.com"))
        }
        let encoded = "=?UTF-8?B?\(Self.b64("张三 \(form) 的报价"))?="
        for name in ["To", "Cc", "Reply-To", "Subject", "X-Note", "Message-ID", "References", "Comments"] {
            for value in [form, "Zhang <\(form)>", encoded, "\(encoded) <c@customer.test>"] {
                let d = send([(name, value)])
                #expect(d.isAccept)
                for change in d.headerChanges where change.operation == .change && change.name == name {
                    let bytes = change.raw ?? Array((change.value ?? "").utf8)
                    #expect(!scanner.holdsAddress(bytes, where: isStaff), "\(name): \(value) → \(change.value ?? "")")
                }
                if scanner.holdsAddress(Array(value.utf8), where: isStaff) {
                    #expect(d.change(name) != nil, "\(name): \(value) left as it was")
                }
            }
        }
    }

    @Test("UTF-8 headers go out as text; values without @ or encoded words are never touched")
    func untouched() {
        let d = send([
            ("Subject", "报价 for order 42"), ("X-Note", "=?UTF-8?B?\(Self.b64("没有地址"))?="),
            ("Keywords", "zhangsan, example.com"),
        ])
        #expect(d.headerChanges.allSatisfy { $0.raw == nil })
        #expect(d.change("Subject") == nil)
        #expect(d.change("X-Note") == nil)
        #expect(d.change("Keywords") == nil)
    }
}
