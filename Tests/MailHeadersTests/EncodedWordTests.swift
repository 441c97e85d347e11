import Testing

@testable import MailHeaders

/// RFC 2047 decoding in phrases and unstructured text, across the charsets real mail uses.
@Suite struct EncodedWordTests {
    let decoder = HeaderDecoder()

    func name(_ phrase: String) -> String? {
        decoder.addressList("\(phrase) <a@x>").mailboxes.first?.displayName
    }

    /// Known-good vectors (bytes produced by Python's codecs, independently of this module).
    @Test(arguments: [
        ("=?GB2312?B?1cXI/Q==?=", "张三"),
        ("=?gbk?B?1cXI/bfh?=", "张三丰"),
        ("=?gb18030?B?1cXI/ZUygjY=?=", "张三𠀀"),
        ("=?HZ-GB-2312?B?fntVRUh9fn0=?=", "张三"),
        ("=?Big5?B?sWmkVA==?=", "張三"),
        ("=?big5-hkscs?B?sWmkVA==?=", "張三"),
        ("=?EUC-JP?B?u7PFxMLAz7o=?=", "山田太郎"),
        ("=?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?=", "山田太郎"),
        ("=?Shift_JIS?B?jlKTY5G+mFk=?=", "山田太郎"),
        ("=?cp932?B?h0COUpNj?=", "①山田"),
        ("=?Shift_JIS?B?h0COUpNj?=", "①山田"),  // CP932-only character labelled Shift_JIS
        ("=?EUC-KR?B?sejDtrz2?=", "김철수"),
        ("=?ks_c_5601-1987?B?sejDtrz2?=", "김철수"),
        ("=?KOI8-R?B?8NLJ18XU?=", "Привет"),
        ("=?KOI8-U?B?8NLJ16bU?=", "Привіт"),
        ("=?ISO-8859-1?B?WvxyaWNo?=", "Zürich"),
        ("=?iso-8859-2?B?o/NkvA==?=", "Łódź"),
        ("=?ISO-8859-5?B?v+DY0tXi?=", "Привет"),
        ("=?iso-8859-7?B?xevd7ec=?=", "Ελένη"),
        ("=?ISO-8859-15?B?pHVybw==?=", "€uro"),
        ("=?windows-1252?B?k1pv65Q=?=", "“Zoë”"),
        ("=?cp1251?B?z/Do4uXy?=", "Привет"),
        ("=?windows-1250?B?o/Nknw==?=", "Łódź"),
        ("=?Windows-1256?B?483jzw==?=", "محمد"),
        ("=?windows-1255?B?+ezl7Q==?=", "שלום"),
        ("=?utf-8?B?5byg5LiJ?=", "张三"),
        ("=?UTF-8?B?5byg5LiJ?=", "张三"),
        // GBK-only character (镕) labelled GB2312, as Outlook and webmails send it.
        ("=?gb2312?B?1uzpRrv5?=", "朱镕基"),
        // Q encoding, any case.
        ("=?utf-8?Q?=E5=BC=A0=E4=B8=89?=", "张三"),
        ("=?UTF-8?q?=e5=bc=a0=e4=b8=89?=", "张三"),
        ("=?GB2312?Q?=D5=C5=C8=FD?=", "张三"),
        ("=?iso-8859-1?Q?Andr=E9_Pirard?=", "André Pirard"),
        // RFC 2231 language tag.
        ("=?utf-8*zh?B?5byg5LiJ?=", "张三"),
        ("=?UTF-8*zh-CN?Q?=E5=BC=A0=E4=B8=89?=", "张三"),
        // Missing base64 padding.
        ("=?UTF-8?B?5byg5LiJ5p2O?=", "张三李"),
        ("=?UTF-8?B?SGk?=", "Hi"),
    ])
    func charsets(_ encoded: String, _ expected: String) {
        #expect(name(encoded) == expected)
        #expect(decoder.unstructured(encoded) == expected)
    }

    /// Names as real clients write them.
    @Test(arguments: [
        // Foxmail
        ("=?gb18030?B?z/rK27K/LdXFyP0=?=", "销售部-张三"),
        // NetEase (163/126)
        ("=?GBK?B?WmhhbmcgU2FuINXFyP0=?=", "Zhang San 张三"),
        // Outlook: quoted encoded word (wrong, but common)
        (#""=?gb2312?B?1cXI/Q==?=""#, "张三"),
        (#""=?utf-8?B?5byg5LiJ?= (Sales)""#, "张三 (Sales)"),
        // Thunderbird: long names split into several words; whitespace between them vanishes.
        ("=?UTF-8?B?5byg5LiJ5p2O5Zub?= =?UTF-8?B?546L5LqU?=", "张三李四王五"),
        // Split in the middle of a UTF-8 character (broken clients).
        ("=?UTF-8?B?5byg5A==?= =?UTF-8?B?uInmnY7lm5vnjovkupQ=?=", "张三李四王五"),
        // Apple Mail: Q with underscores.
        ("=?utf-8?Q?Zhang_San_=E5=BC=A0=E4=B8=89?=", "Zhang San 张三"),
        // Gmail: B for the whole name.
        ("=?UTF-8?B?WmhhbmcgU2FuICjlvKDkuIkp?=", "Zhang San (张三)"),
        // Encoded word next to plain words keeps the space.
        ("Zhang =?UTF-8?B?5byg5LiJ?= San", "Zhang 张三 San"),
        // Mixed charsets in one phrase.
        ("=?GB2312?B?1cXI/Q==?= =?Big5?B?sWmkVA==?=", "张三張三"),
        // Q word holding specials that would otherwise split the list.
        ("=?utf-8?Q?Zhang,_San_<boss>?=", "Zhang, San <boss>"),
        // Emoji, 4-byte UTF-8.
        ("=?UTF-8?B?8J+YgPCfkajigI3wn5Gp4oCN8J+Rpw==?=", "😀👨‍👩‍👧"),
    ])
    func clients(_ phrase: String, _ expected: String) {
        #expect(name(phrase) == expected)
    }

    @Test(arguments: [
        "=?UTF-8?B?!!!?=",  // bad base64
        "=?UTF-8?B?5byg5L?=",  // truncated UTF-8
        "=?GB2312?B?1cXI?=",  // truncated GB2312
        "=?UTF-8?X?abc?=",  // unknown encoding: not an encoded word at all
        "=?ISO-2022-JP?B?GyRCOzNF?=",  // unterminated escape sequence
    ])
    func undecodableKeptVerbatim(_ word: String) {
        #expect(decoder.unstructured(word) == word)
        #expect(decoder.unstructured("a \(word) b") == "a \(word) b")
        #expect(name(#""\#(word)""#) == word)
    }

    /// An unknown label reads as UTF-8 when it is UTF-8 (else the fallback charset, see
    /// CharsetLabelTests); a label iconv must never see is not given to iconv.
    @Test(arguments: ["=?x-unknown-charset?B?5byg5LiJ?=", "=?UTF-8//TRANSLIT?B?5byg5LiJ?="])
    func unknownLabelReadAsUTF8(_ word: String) {
        #expect(decoder.unstructured(word) == "张三")
        #expect(decoder.unstructured("a \(word) b") == "a 张三 b")
        #expect(name(#""\#(word)""#) == "张三")
    }

    @Test func undecodableNeighboursKeepTheirWhitespace() {
        #expect(decoder.unstructured("=?utf-8?B?!!!?= =?utf-8?B?5byg?=") == "=?utf-8?B?!!!?= 张")
        #expect(decoder.unstructured("=?utf-8?B?5byg?= =?utf-8?B?!!?=") == "张 =?utf-8?B?!!?=")
    }

    @Test func unstructured() {
        #expect(decoder.unstructured("Re: =?UTF-8?B?5byg5LiJ?= =?UTF-8?Q?_hello?=") == "Re: 张三 hello")
        #expect(decoder.unstructured("plain subject") == "plain subject")
        #expect(decoder.unstructured("a\r\n =?UTF-8?B?5byg?=\r\n =?UTF-8?B?5LiJ?=") == "a 张三")
        #expect(decoder.unstructured("=?utf-8?Q?a=3Fb=?=") == "a?b=")  // stray '=' kept
        #expect(decoder.unstructured("=?") == "=?")
        #expect(decoder.unstructured("") == "")
    }

    @Test func rawBytes() {
        let d = HeaderDecoder()
        #expect(d.text(fromRaw: Array("张三 <z@x>".utf8)) == "张三 <z@x>")
        #expect(d.text(fromRaw: [0xD5, 0xC5, 0xC8, 0xFD]) == "张三")  // GB18030 fallback
        let big5 = HeaderDecoder(fallbackCharset: "Big5")
        #expect(big5.text(fromRaw: [0xB1, 0x69, 0xA4, 0x54]) == "張三")
        // Not valid in the fallback either → Latin-1, never fails.
        let sjis = HeaderDecoder(fallbackCharset: "Shift_JIS")
        #expect(sjis.text(fromRaw: [0x41, 0xFF, 0xFE]) == "A\u{FF}\u{FE}")
        #expect(HeaderDecoder(fallbackCharset: "nonsense").text(fromRaw: [0xE9]) == "é")
        #expect(d.text(fromRaw: [0x61, 0x00, 0x62]) == "a\u{0}b")
        #expect(d.text(fromRaw: []) == "")
    }
}
