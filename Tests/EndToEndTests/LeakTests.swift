import Foundation
import PostfixLab
import Testing

/// Issue 10 through a real Postfix: Zhangsan writes to a customer and hides
/// his address in every way a client does. What smtp-sink (the Internet)
/// receives, with every encoded word decoded, must not name him as an address;
/// the manager still gets a copy.
@Suite("Leaks: no staff address reaches the Internet, in any form", .serialized, .e2eEnvironment())
struct LeakTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    /// Sends `headers` (plus From and To) as Zhangsan to a customer; checks the
    /// customer's copy leaks nothing, decoded or raw, and the manager has one.
    @discardableResult
    private func sendExpectingNoLeak(
        _ headers: [String], raw: [UInt8]? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Sink.Message {
        var lines = [#"From: "Zhang San" <zhangsan@example.com>"#, "To: customer@customer.test"] + headers
        if !headers.contains(where: { $0.lowercased().hasPrefix("subject:") }) { lines.append("Subject: leak \(uniqueTag())") }
        let mail =
            raw.map { rawMessage(Array(lines.joined(separator: "\r\n").utf8) + Array("\r\n".utf8) + $0) }
            ?? message(lines)
        let outcome = try env.sendAndDeliver(
            as: .staff(login: "zhangsan"), from: "zhangsan@example.com",
            to: ["customer@customer.test"], message: mail)
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)", sourceLocation: sourceLocation)
        try env.expectSinkCount(1, sourceLocation: sourceLocation)
        try env.expectMailboxes(["manager": 1], sourceLocation: sourceLocation)
        let sent = try #require(try env.sink.messages().first, sourceLocation: sourceLocation)
        let decoded = HeaderReading.decodedHeaders(sent.file)
        #expect(
            !decoded.lowercased().contains("zhangsan@"), "decoded headers name the staff:\n\(decoded)",
            sourceLocation: sourceLocation)
        #expect(
            HeaderReading.staffAddressLeaks(decoded).isEmpty,
            "zhangsan as a local part: \(HeaderReading.staffAddressLeaks(decoded))\n\(decoded)", sourceLocation: sourceLocation)
        #expect(
            HeaderReading.staffAddressLeaks(sent.file.text).isEmpty,
            "raw message: \(HeaderReading.staffAddressLeaks(sent.file.text))\n\(sent)", sourceLocation: sourceLocation)
        #expect(sent.file.value("From")?.contains("<sales@example.com>") == true, "\(sent)", sourceLocation: sourceLocation)
        return sent
    }

    private static func b64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
    private static func b64(_ text: String) -> String { b64(Array(text.utf8)) }

    private func decoded(_ sent: Sink.Message, _ name: String) -> String? {
        sent.file.value(name).map(HeaderReading.decode)
    }

    @Test("Subject as one UTF-8 B encoded word")
    func encodedSubjectUTF8() throws {
        let sent = try sendExpectingNoLeak(["Subject: =?UTF-8?B?\(Self.b64("回复：张三 <zhangsan@example.com> 的报价"))?="])
        #expect(decoded(sent, "Subject") == "回复：张三 <sales@example.com> 的报价", "\(sent)")
    }

    @Test("Subject as a GB18030 B encoded word")
    func encodedSubjectGB18030() throws {
        // "回复：张三 <zhangsan@example.com> 的报价" in GB18030.
        let gb: [UInt8] =
            [0xBB, 0xD8, 0xB8, 0xB4, 0xA3, 0xBA, 0xD5, 0xC5, 0xC8, 0xFD, 0x20]
            + Array("<zhangsan@example.com>".utf8) + [0x20, 0xB5, 0xC4, 0xB1, 0xA8, 0xBC, 0xDB]
        let sent = try sendExpectingNoLeak(["Subject: =?GB18030?B?\(Self.b64(gb))?="])
        #expect(decoded(sent, "Subject") == "回复：张三 <sales@example.com> 的报价", "\(sent)")
        #expect(sent.file.value("Subject")?.hasPrefix("=?GB18030?B?") == true, "\(sent)")
    }

    @Test("Comments, Q encoded")
    func comments() throws {
        let sent = try sendExpectingNoLeak(["Comments: =?utf-8?Q?=E5=BC=A0=E4=B8=89_=3CZhangSan=40example.com=3E?="])
        #expect(decoded(sent, "Comments") == "张三 <sales@example.com>", "\(sent)")
    }

    @Test("an X- header, B encoded, with an +extension")
    func xHeader() throws {
        let sent = try sendExpectingNoLeak(["X-Mailer-Account: =?UTF-8?B?\(Self.b64("账户 zhangsan+work@example.com"))?= (work)"])
        #expect(decoded(sent, "X-Mailer-Account") == "账户 sales@example.com (work)", "\(sent)")
    }

    @Test("an encoded display name in Cc")
    func encodedDisplayNameInCc() throws {
        let sent = try sendExpectingNoLeak(["Cc: =?UTF-8?B?\(Self.b64("张三 zhangsan@example.com"))?= <other@customer.test>"])
        let cc = try #require(sent.file.value("Cc"))
        #expect(cc.hasSuffix("<other@customer.test>"), "\(sent)")
        #expect(HeaderReading.decode(cc) == "张三 sales@example.com <other@customer.test>", "\(sent)")
    }

    @Test("s-nail Message-ID with %zhangsan@example.com")
    func snailMessageID() throws {
        let sent = try sendExpectingNoLeak(["Message-ID: <20261203101010.abcd%zhangsan@example.com>"])
        #expect(sent.file.values("Message-ID") == ["<20261203101010.abcd%sales@example.com>"], "\(sent)")
    }

    @Test("s-nail In-Reply-To and References with %zhangsan@example.com")
    func snailInReplyTo() throws {
        let sent = try sendExpectingNoLeak([
            "In-Reply-To: <20261202090909.wxyz%zhangsan@example.com>",
            "References: <CAF1@mail.customer.test>\r\n <20261202090909.wxyz%zhangsan@example.com>",
        ])
        #expect(sent.file.value("In-Reply-To") == "<20261202090909.wxyz%sales@example.com>", "\(sent)")
        #expect(sent.file.value("References")?.hasSuffix("<20261202090909.wxyz%sales@example.com>") == true, "\(sent)")
    }

    @Test("Autocrypt and Autocrypt-Gossip are removed")
    func autocrypt() throws {
        let sent = try sendExpectingNoLeak([
            "Autocrypt: addr=zhangsan@example.com; prefer-encrypt=mutual; keydata=\r\n mQINBF1234567890abcdef",
            "autocrypt-gossip: addr=lisi@example.com; keydata=mQINBFabc",
        ])
        #expect(sent.file.values("Autocrypt").isEmpty && sent.file.values("Autocrypt-Gossip").isEmpty, "\(sent)")
        #expect(!sent.file.text.contains("mQINBF"), "\(sent)")
    }

    @Test("X-Developer-Key and X-Developer-Signature are removed")
    func developerKeyAndSignature() throws {
        let sent = try sendExpectingNoLeak([
            "X-Developer-Key: i=zhangsan@example.com; a=ed25519; pk=AbCdEf0123456789",
            "X-Developer-Signature: v=1; a=ed25519-sha256; t=1764756610; l=42; i=zhangsan@example.com;\r\n s=20261203; h=from:subject; bh=xyz; b=SiGnAtUrE",
        ])
        #expect(sent.file.values("X-Developer-Key").isEmpty && sent.file.values("X-Developer-Signature").isEmpty, "\(sent)")
        #expect(!sent.file.text.contains("SiGnAtUrE") && !sent.file.text.contains("AbCdEf0123456789"), "\(sent)")
    }

    @Test("a quoted local part")
    func quotedLocalPart() throws {
        let sent = try sendExpectingNoLeak([#"Reply-To: "zhangsan"@example.com"#, #"X-Contact: write to "ZhangSan"@example.com"#])
        #expect(sent.file.value("Reply-To")?.hasSuffix("<sales@example.com>") == true, "\(sent)")
        #expect(sent.file.value("X-Contact") == "write to sales@example.com", "\(sent)")
    }

    @Test("an +extension")
    func plusExtension() throws {
        let sent = try sendExpectingNoLeak(["Reply-To: Zhang <zhangsan+orders@example.com>", "X-Contact: zhangsan+orders@Example.COM"])
        #expect(sent.file.value("Reply-To")?.hasSuffix("<sales@example.com>") == true, "\(sent)")
        #expect(sent.file.value("X-Contact") == "sales@example.com", "\(sent)")
    }

    @Test("a fold right after @")
    func foldAfterAt() throws {
        let sent = try sendExpectingNoLeak(["X-Contact: zhangsan@\r\n example.com", "Return-Receipt-To: zhangsan@\r\n\texample.com"])
        #expect(sent.file.value("X-Contact") == "sales@example.com", "\(sent)")
        #expect(sent.file.value("Return-Receipt-To")?.hasSuffix("<sales@example.com>") == true, "\(sent)")
    }

    @Test("a Latin-1 8-bit header keeps every byte but the address")
    func latin1Header() throws {
        let value: [UInt8] = Array("Caf".utf8) + [0xE9, 0x20, 0xAB] + Array("zhangsan@example.com".utf8) + [0xBB, 0x20, 0xFC, 0x62, 0x65, 0x72]
        let sent = try sendExpectingNoLeak([], raw: Array("X-Organisation: ".utf8) + value)
        let expected = Array("X-Organisation: Caf".utf8) + [0xE9, 0x20, 0xAB] + Array("sales@example.com".utf8) + [0xBB, 0x20, 0xFC, 0x62, 0x65, 0x72]
        let line = sent.file.raw.split(separator: 0x0A).first { $0.starts(with: Array("X-Organisation:".utf8)) }
        #expect(
            line.map { Array($0.last == 0x0D ? $0.dropLast() : $0) } == expected,
            "got \(line.map { Array($0) } ?? []) \(sent)")
    }
}
