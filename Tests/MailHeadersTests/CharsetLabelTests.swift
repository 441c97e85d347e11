import Foundation
import Testing

@testable import MailHeaders

/// Charsets as clients label them (issue 11): every label of the WHATWG Encoding Standard and
/// the codec names mail libraries write, in any case and with `_` or `-`, decodes a sample of
/// its encoding; an unknown label reads as UTF-8 or the fallback charset; raw 8-bit bytes
/// inside an encoded word belong to the charset the word declares.
@Suite struct CharsetLabelTests {
    /// One text per encoding, with its bytes in that encoding.
    static let samples: [String: (bytes: [UInt8], text: String)] = [
        "utf-8": ([0x4A, 0x6F, 0x73, 0xC3, 0xA9], "José"),
        "ibm866": ([0x80, 0xAD], "Ан"),
        "iso-8859-2": ([0xA3, 0xF3, 0x64, 0xBC], "Łódź"),
        "iso-8859-3": ([0xA1], "Ħ"),
        "iso-8859-4": ([0xA1], "Ą"),
        "iso-8859-5": ([0xB0], "А"),
        "iso-8859-6": ([0xC7], "ا"),
        "iso-8859-7": ([0xC1], "Α"),
        "iso-8859-8": ([0xE0], "א"),
        "iso-8859-8-i": ([0xE0], "א"),
        "iso-8859-10": ([0xA1], "Ą"),
        "iso-8859-13": ([0xA1], "\u{201D}"),
        "iso-8859-14": ([0xA1], "\u{1E02}"),
        "iso-8859-15": ([0xA4], "€"),
        "iso-8859-16": ([0xA4], "€"),
        "koi8-r": ([0xE1], "А"),
        "koi8-u": ([0xA4], "є"),
        "macintosh": ([0x80], "Ä"),
        "windows-874": ([0xA1], "ก"),
        "windows-1250": ([0x8A], "Š"),
        "windows-1251": ([0xC0], "А"),
        "windows-1252": ([0x4A, 0x6F, 0x73, 0xE9, 0x80], "José€"),
        "windows-1253": ([0xC1], "Α"),
        "windows-1254": ([0xD0], "Ğ"),
        "windows-1255": ([0xE0], "א"),
        "windows-1256": ([0xC7], "ا"),
        "windows-1257": ([0xC0], "Ą"),
        "windows-1258": ([0x80], "€"),
        "x-mac-cyrillic": ([0x80], "А"),
        "gbk": ([0xD5, 0xC5, 0xC8, 0xFD], "张三"),
        "gb18030": ([0xD5, 0xC5, 0xC8, 0xFD], "张三"),
        "big5": ([0xA4, 0xA4], "中"),
        "euc-jp": ([0xC6, 0xFC, 0xCB, 0xDC], "日本"),
        "iso-2022-jp": ([0x1B, 0x24, 0x42, 0x46, 0x7C, 0x4B, 0x5C, 0x1B, 0x28, 0x42], "日本"),
        "shift_jis": ([0x93, 0xFA, 0x96, 0x7B], "日本"),
        "euc-kr": ([0xC7, 0xD1, 0xB1, 0xB9], "한국"),
        "utf-16be": ([0x00, 0x41, 0x4E, 0x2D], "A中"),
        "utf-16le": ([0x41, 0x00, 0x2D, 0x4E], "A中"),
        "x-user-defined": ([0x41, 0x80, 0xFF], "A\u{F780}\u{F7FF}"),
        "UTF-7": (Array("+ZeVnLA-".utf8), "日本"),
        "UTF-32": ([0x00, 0x00, 0x00, 0x41], "A"),
        "JOHAB": ([0x41], "A"),
    ]

    /// The "replacement" labels are real charsets in mail; each has its own sample.
    static let replacementSamples: [String: (bytes: [UInt8], text: String)] = [
        "csiso2022kr": ([0x1B, 0x24, 0x29, 0x43, 0x0E, 0x47, 0x51, 0x0F], "한"),
        "iso-2022-kr": ([0x1B, 0x24, 0x29, 0x43, 0x0E, 0x47, 0x51, 0x0F], "한"),
        "iso2022-kr": ([0x1B, 0x24, 0x29, 0x43, 0x0E, 0x47, 0x51, 0x0F], "한"),
        "iso2022kr": ([0x1B, 0x24, 0x29, 0x43, 0x0E, 0x47, 0x51, 0x0F], "한"),
        "hz-gb-2312": (Array("~{UEH}~}".utf8), "张三"),
        "hz": (Array("~{UEH}~}".utf8), "张三"),
        "hz-gb": (Array("~{UEH}~}".utf8), "张三"),
        "hzgb": (Array("~{UEH}~}".utf8), "张三"),
        "iso-2022-cn": ([0x1B, 0x24, 0x29, 0x41, 0x0E, 0x56, 0x50, 0x0F], "中"),
        "iso2022-cn": ([0x1B, 0x24, 0x29, 0x41, 0x0E, 0x56, 0x50, 0x0F], "中"),
        "iso-2022-cn-ext": ([0x1B, 0x24, 0x29, 0x41, 0x0E, 0x56, 0x50, 0x0F], "中"),
    ]

    struct Label: Sendable, CustomTestStringConvertible {
        let label: String
        let encoding: String
        var testDescription: String { "\(label) (\(encoding))" }
    }

    static let allLabels: [Label] = (CharsetLabels.whatwg + CharsetLabels.mailLibraries).flatMap { encoding, labels in
        labels.map { Label(label: $0, encoding: encoding) }
    }

    @Test(
        "every WHATWG label and mail-library codec name decodes its encoding, in any case, with _ or -",
        arguments: allLabels)
    func label(_ entry: Label) throws {
        let sample = try #require(
            Self.replacementSamples[entry.label] ?? Self.samples[entry.encoding],
            "no sample for \(entry.encoding)")
        let spellings = [
            entry.label, entry.label.uppercased(), entry.label.replacingOccurrences(of: "-", with: "_"),
            entry.label.replacingOccurrences(of: "_", with: "-").capitalized,
        ]
        for spelling in spellings {
            #expect(Charset.isKnown(spelling), "\(spelling)")
            #expect(Charset.decode(sample.bytes, label: spelling) == sample.text, "\(spelling)")
        }
    }

    @Test("the WHATWG table: its 40 encodings, no label twice, no label of one spelling under two encodings")
    func tableIsConsistent() {
        #expect(CharsetLabels.whatwg.count == 40)
        let labels = CharsetLabels.whatwg.flatMap(\.labels)
        #expect(Set(labels).count == labels.count, "a label listed twice")
        var seen: [String: String] = [:]
        for (encoding, labels) in CharsetLabels.whatwg + CharsetLabels.mailLibraries {
            for label in labels {
                let key = CharsetLabels.normalized(label)
                #expect(seen[key] == nil || seen[key] == encoding, "\(label): \(seen[key] ?? "") and \(encoding)")
                seen[key] = seen[key] ?? encoding
            }
        }
    }

    @Test("Python's email package: eucgb2312_cn and big5_tw in a display name and a Subject")
    func pythonCodecNames() {
        let decoder = HeaderDecoder()
        // 张三 in GB2312, 中文 in Big5.
        let gb = Data([0xD5, 0xC5, 0xC8, 0xFD]).base64EncodedString()
        let big5 = Data([0xA4, 0xA4, 0xA4, 0xE5]).base64EncodedString()
        let list = decoder.addressList("=?eucgb2312_cn?b?\(gb)?= <sales@example.com>")
        #expect(list.mailboxes.first?.displayName == "张三")
        #expect(decoder.unstructured("=?big5_tw?b?\(big5)?=") == "中文")
    }

    @Test("an unknown label: UTF-8 when its bytes are UTF-8, else the fallback charset")
    func unknownLabel() {
        let utf8 = Data("张三".utf8).base64EncodedString()
        let gb = Data([0xD5, 0xC5, 0xC8, 0xFD]).base64EncodedString()
        let sjis = Data([0x93, 0xFA, 0x96, 0x7B]).base64EncodedString()
        #expect(HeaderDecoder().unstructured("=?x-no-such-charset?B?\(utf8)?=") == "张三")
        #expect(HeaderDecoder().unstructured("=?x-no-such-charset?B?\(gb)?=") == "张三")
        #expect(HeaderDecoder(fallbackCharset: "Shift_JIS").unstructured("=?unknown-8bit?B?\(sjis)?=") == "日本")
        let list = HeaderDecoder().addressList("=?x-no-such-charset?B?\(gb)?= <sales@example.com>")
        #expect(list.mailboxes.first?.displayName == "张三")
    }

    @Test("raw 8-bit bytes inside an encoded word are read in the word's charset, once")
    func rawEightBitInsideWord() {
        let decoder = HeaderDecoder()  // fallback GB18030: must not touch the word's bytes
        let raw: [UInt8] = Array("=?iso-8859-1?Q?Jos".utf8) + [0xE9] + Array("_M".utf8) + [0xFC] + Array("ller?= <jose@customer.test>".utf8)
        let list = decoder.addressList(decoder.text(fromRaw: raw))
        #expect(list.mailboxes.first?.displayName == "José Müller")
        #expect(list.mailboxes.first?.address == "jose@customer.test")
        // Literal 8-bit text beside the word is still the fallback's.
        let mixed: [UInt8] = [0xD5, 0xC5, 0x20] + Array("=?iso-8859-1?Q?Jos".utf8) + [0xE9] + Array("?=".utf8)
        #expect(decoder.unstructured(decoder.text(fromRaw: mixed)) == "张 José")
    }
}
