import Foundation
import PostfixLab
import Testing

@testable import MailHeaders  // only for the label table, the list of what to send

/// Every charset label of the WHATWG table and of the mail libraries (issue 11), through
/// Postfix: a customer's reply to `"Zhangsan" <sales@example.com>` whose name is an encoded
/// word in that label reaches the manager and Zhangsan only. A label sharemail does not
/// read leaves the name unmatched, and forward_unnamed would copy Lisi and Wangwu too.
@Suite(
    "Charset labels through Postfix: every label routes by name", .serialized,
    .e2eEnvironment(sharemail: SharemailConfig.standard(zhangsanAliases: ["张三", "張三", "José Müller"])))
struct CharsetLabelRoutingTests {
    let env: E2EEnvironment

    init() throws {
        env = try E2EEnvironment.current()
        try env.beginTest()
    }

    /// Zhangsan's name in the encoding a label names: 张三 (or 張三) where the encoding has
    /// it, so that only a label read as its own charset matches; else the ASCII "Zhangsan".
    static func name(in encoding: String, label: String) -> [UInt8] {
        let chinese = "张三"
        switch encoding {
        case "utf-8": return Array(chinese.utf8)
        case "utf-16le": return chinese.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        case "utf-16be": return chinese.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        case "UTF-32": return chinese.unicodeScalars.flatMap { [0, 0, UInt8($0.value >> 8), UInt8($0.value & 0xFF)] }
        case "UTF-7": return Array("+XyBOCQ-".utf8)
        case "gbk", "gb18030": return [0xD5, 0xC5, 0xC8, 0xFD]
        case "big5": return [0xB1, 0x69, 0xA4, 0x54]  // 張三
        case "replacement" where label.hasPrefix("hz"): return Array("~{UEH}~}".utf8)
        case "replacement" where label.contains("cn"): return [0x1B, 0x24, 0x29, 0x41, 0x0E, 0x55, 0x45, 0x48, 0x7D, 0x0F]
        default: return Array("Zhangsan".utf8)
        }
    }

    @Test("each label's encoded name reaches Zhangsan and the manager, nobody else")
    func everyLabelRoutes() throws {
        let labels = (CharsetLabels.whatwg + CharsetLabels.mailLibraries).flatMap { encoding, labels in
            labels.map { (label: $0, encoding: encoding) }
        }
        var refused: [String] = []
        for (label, encoding) in labels {
            let word = "=?\(label)?B?\(Data(Self.name(in: encoding, label: label)).base64EncodedString())?="
            let outcome = try env.send(
                as: .internet, from: "customer@customer.test", to: ["sales@example.com"],
                message: message([
                    "From: customer@customer.test", "To: \(word) <sales@example.com>",
                    "Subject: label \(label)",
                ]))
            if !outcome.accepted { refused.append("\(label): \(outcome.firstRefusal.map { "\($0)" } ?? "?")") }
        }
        #expect(refused.isEmpty, "\(refused)")
        try env.waitForDelivery()
        let stray = try env.maildirs.messages("lisi").compactMap { $0.value("Subject") }
        #expect(stray.isEmpty, "these labels were not read, so the name matched nobody: \(stray)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": labels.count, "zhangsan": labels.count])
    }

    @Test("raw 8-bit bytes inside an encoded word are read in its charset: =?iso-8859-1?Q?Jos\\xE9_M\\xFCller?= is José Müller")
    func rawEightBitInsideWord() throws {
        let header: [UInt8] =
            Array("From: customer@customer.test\r\nSubject: raw 8-bit word\r\nTo: =?iso-8859-1?Q?Jos".utf8)
            + [0xE9] + Array("_M".utf8) + [0xFC] + Array("ller?= <sales@example.com>".utf8)
        let outcome = try env.sendAndDeliver(
            as: .internet, from: "customer@customer.test", to: ["sales@example.com"],
            message: rawMessage(header))
        #expect(outcome.accepted, "\(outcome)\n\(env.diagnostics)")
        try env.expectMailboxes(["manager": 1, "zhangsan": 1])
    }
}
