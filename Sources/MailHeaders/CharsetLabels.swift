// Charset labels as mail clients and mail libraries write them.
//
// Every label of the WHATWG Encoding Standard (encoding.spec.whatwg.org,
// "Encodings" table; © WHATWG, CC BY 4.0), which is what browsers and the
// webmail they run accept, plus the codec names mail libraries put into
// headers (Python's email package writes its codec names: `eucgb2312_cn`,
// `big5_tw`; Java and .NET have their own spellings). Labels are compared
// after `normalized`: case, `_` and `-` do not matter.

enum CharsetLabels {
    /// A label as compared: lower case, `_` written as `-`, an RFC 2231
    /// language tag (`utf-8*zh`) and surrounding white space removed.
    static func normalized(_ label: String) -> String {
        var name = label.lowercased()
        if let star = name.firstIndex(of: "*") { name = String(name[..<star]) }
        return String(name.trimmingASCIIWhitespace().map { $0 == "_" ? "-" : $0 })
    }

    /// The WHATWG encodings and their labels, in the standard's order.
    static let whatwg: [(encoding: String, labels: [String])] = [
        ("utf-8", ["unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf-8", "utf8", "x-unicode20utf8"]),
        ("ibm866", ["866", "cp866", "csibm866", "ibm866"]),
        (
            "iso-8859-2",
            [
                "csisolatin2", "iso-8859-2", "iso-ir-101", "iso8859-2", "iso88592", "iso_8859-2",
                "iso_8859-2:1987", "l2", "latin2",
            ]
        ),
        (
            "iso-8859-3",
            [
                "csisolatin3", "iso-8859-3", "iso-ir-109", "iso8859-3", "iso88593", "iso_8859-3",
                "iso_8859-3:1988", "l3", "latin3",
            ]
        ),
        (
            "iso-8859-4",
            [
                "csisolatin4", "iso-8859-4", "iso-ir-110", "iso8859-4", "iso88594", "iso_8859-4",
                "iso_8859-4:1988", "l4", "latin4",
            ]
        ),
        (
            "iso-8859-5",
            [
                "csisolatincyrillic", "cyrillic", "iso-8859-5", "iso-ir-144", "iso8859-5", "iso88595",
                "iso_8859-5", "iso_8859-5:1988",
            ]
        ),
        (
            "iso-8859-6",
            [
                "arabic", "asmo-708", "csiso88596e", "csiso88596i", "csisolatinarabic", "ecma-114",
                "iso-8859-6", "iso-8859-6-e", "iso-8859-6-i", "iso-ir-127", "iso8859-6", "iso88596",
                "iso_8859-6", "iso_8859-6:1987",
            ]
        ),
        (
            "iso-8859-7",
            [
                "csisolatingreek", "ecma-118", "elot_928", "greek", "greek8", "iso-8859-7", "iso-ir-126",
                "iso8859-7", "iso88597", "iso_8859-7", "iso_8859-7:1987", "sun_eu_greek",
            ]
        ),
        (
            "iso-8859-8",
            [
                "csiso88598e", "csisolatinhebrew", "hebrew", "iso-8859-8", "iso-8859-8-e", "iso-ir-138",
                "iso8859-8", "iso88598", "iso_8859-8", "iso_8859-8:1988", "visual",
            ]
        ),
        ("iso-8859-8-i", ["csiso88598i", "iso-8859-8-i", "logical"]),
        ("iso-8859-10", ["csisolatin6", "iso-8859-10", "iso-ir-157", "iso8859-10", "iso885910", "l6", "latin6"]),
        ("iso-8859-13", ["iso-8859-13", "iso8859-13", "iso885913"]),
        ("iso-8859-14", ["iso-8859-14", "iso8859-14", "iso885914"]),
        ("iso-8859-15", ["csisolatin9", "iso-8859-15", "iso8859-15", "iso885915", "iso_8859-15", "l9"]),
        ("iso-8859-16", ["iso-8859-16"]),
        ("koi8-r", ["cskoi8r", "koi", "koi8", "koi8-r", "koi8_r"]),
        ("koi8-u", ["koi8-ru", "koi8-u"]),
        ("macintosh", ["csmacintosh", "mac", "macintosh", "x-mac-roman"]),
        ("windows-874", ["dos-874", "iso-8859-11", "iso8859-11", "iso885911", "tis-620", "windows-874"]),
        ("windows-1250", ["cp1250", "windows-1250", "x-cp1250"]),
        ("windows-1251", ["cp1251", "windows-1251", "x-cp1251"]),
        (
            "windows-1252",
            [
                "ansi_x3.4-1968", "ascii", "cp1252", "cp819", "csisolatin1", "ibm819", "iso-8859-1",
                "iso-ir-100", "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "l1", "latin1",
                "us-ascii", "windows-1252", "x-cp1252",
            ]
        ),
        ("windows-1253", ["cp1253", "windows-1253", "x-cp1253"]),
        (
            "windows-1254",
            [
                "cp1254", "csisolatin5", "iso-8859-9", "iso-ir-148", "iso8859-9", "iso88599", "iso_8859-9",
                "iso_8859-9:1989", "l5", "latin5", "windows-1254", "x-cp1254",
            ]
        ),
        ("windows-1255", ["cp1255", "windows-1255", "x-cp1255"]),
        ("windows-1256", ["cp1256", "windows-1256", "x-cp1256"]),
        ("windows-1257", ["cp1257", "windows-1257", "x-cp1257"]),
        ("windows-1258", ["cp1258", "windows-1258", "x-cp1258"]),
        ("x-mac-cyrillic", ["x-mac-cyrillic", "x-mac-ukrainian"]),
        (
            "gbk",
            [
                "chinese", "csgb2312", "csiso58gb231280", "gb2312", "gb_2312", "gb_2312-80", "gbk", "iso-ir-58",
                "x-gbk",
            ]
        ),
        ("gb18030", ["gb18030"]),
        ("big5", ["big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5"]),
        ("euc-jp", ["cseucpkdfmtjapanese", "euc-jp", "x-euc-jp"]),
        ("iso-2022-jp", ["csiso2022jp", "iso-2022-jp"]),
        ("shift_jis", ["csshiftjis", "ms932", "ms_kanji", "shift-jis", "shift_jis", "sjis", "windows-31j", "x-sjis"]),
        (
            "euc-kr",
            [
                "cseuckr", "csksc56011987", "euc-kr", "iso-ir-149", "korean", "ks_c_5601-1987", "ks_c_5601-1989",
                "ksc5601", "ksc_5601", "windows-949",
            ]
        ),
        // The web decodes these to U+FFFD (they can hide markup); in mail
        // they are real, if rare, charsets and are read as such.
        ("replacement", ["csiso2022kr", "hz-gb-2312", "iso-2022-cn", "iso-2022-cn-ext", "iso-2022-kr"]),
        ("utf-16be", ["unicodefffe", "utf-16be"]),
        ("utf-16le", ["csunicode", "iso-10646-ucs-2", "ucs-2", "unicode", "unicodefeff", "utf-16", "utf-16le"]),
        ("x-user-defined", ["x-user-defined"]),
    ]

    /// Codec names of mail libraries that no WHATWG label covers, by the
    /// WHATWG encoding they mean (or an iconv name, upper case).
    static let mailLibraries: [(encoding: String, labels: [String])] = [
        // Python's codecs (email.charset writes them as they are).
        ("utf-8", ["u8", "utf", "utf8-ucs2", "utf8-ucs4", "cp65001"]),
        (
            "gbk",
            [
                "eucgb2312-cn", "euc-cn", "euccn", "gb2312-1980", "gb2312-80", "cp936", "ms936", "936",
                "windows-936", "iso-ir-58",
            ]
        ),
        ("gb18030", ["gb18030-2000", "gb18030-2005", "windows-54936", "ibm-1392"]),
        ("big5", ["big5-tw", "csbig5", "big5hkscs", "hkscs", "cp950", "ms950", "windows-950", "x-windows-950"]),
        ("euc-jp", ["eucjp", "ujis", "u-jis", "euc-jis-2004", "euc-jisx0213", "eucjis2004", "eucjisx0213"]),
        (
            "iso-2022-jp",
            [
                "iso2022-jp", "iso2022jp", "iso-2022-jp-1", "iso-2022-jp-2", "iso-2022-jp-3", "iso2022-jp-2",
                "iso2022jp-2", "csiso2022jp2", "jis",
            ]
        ),
        (
            "shift_jis",
            [
                "shiftjis", "s-jis", "cp932", "mskanji", "x-ms-cp932", "shift-jis-2004", "shiftjis2004",
                "shift-jisx0213", "windows-932",
            ]
        ),
        ("euc-kr", ["euckr", "ks-c-5601", "ks-x-1001", "ksx1001", "cp949", "uhc", "ms949", "x-windows-949"]),
        ("JOHAB", ["johab", "cp1361"]),
        ("windows-1252", ["latin-1", "iso8859-1", "8859", "latin", "l1", "iso-ir-100", "windows-1252"]),
        ("koi8-r", ["koi8r"]),
        ("koi8-u", ["koi8u"]),
        ("macintosh", ["mac-roman", "macroman"]),
        ("x-mac-cyrillic", ["mac-cyrillic", "maccyrillic"]),
        ("replacement", ["hz", "hz-gb", "hzgb", "iso2022-kr", "iso2022kr", "iso2022-cn"]),
        ("utf-16le", ["u16", "utf16"]),
        ("utf-16be", ["utf-16-be", "utf16be"]),
        ("utf-16le", ["utf-16-le", "utf16le"]),
        ("UTF-7", ["utf-7", "utf7", "unicode-1-1-utf-7", "csunicode11utf7"]),
        ("UTF-32", ["utf-32", "utf32", "u32"]),
    ]

    /// Normalised label → encoding, from both tables.
    static let encodingByLabel: [String: String] = {
        var table: [String: String] = [:]
        for (encoding, labels) in whatwg + mailLibraries {
            for label in labels where table[normalized(label)] == nil { table[normalized(label)] = encoding }
        }
        return table
    }()

    /// How sharemail decodes an encoding of the tables. Labels of the
    /// "replacement" group decode with the charset they name.
    static func plan(encoding: String, label: String) -> Charset.Plan {
        switch encoding {
        case "utf-8": return .utf8
        case "windows-1252":
            // ASCII-labelled 8-bit text is usually UTF-8 sent by a careless client.
            return ["ascii", "us-ascii", "ansi-x3.4-1968"].contains(label) ? .ascii : .latin1
        case "ibm866": return .iconv(["CP866"])
        case "iso-8859-8-i": return .iconv(["ISO-8859-8"])
        case "koi8-r": return .iconv(["KOI8-R"])
        case "koi8-u": return .iconv(["KOI8-U", "KOI8-RU", "KOI8-R"])
        case "macintosh": return .iconv(["MACINTOSH"])
        case "windows-874": return .iconv(["CP874", "TIS-620"])
        case "x-mac-cyrillic": return .iconv(["MAC-CYRILLIC"])
        case "gbk", "gb18030": return .iconv(["GB18030"])
        case "big5": return label.contains("hk") ? .iconv(["BIG5-HKSCS", "CP950"]) : .iconv(["CP950", "BIG5", "BIG5-HKSCS"])
        case "euc-jp": return .iconv(["EUC-JP", "EUC-JP-MS", "EUC-JISX0213"])
        case "iso-2022-jp": return .iconv(["ISO-2022-JP-2", "ISO-2022-JP-3", "ISO-2022-JP"])
        case "shift_jis": return .iconv(["CP932", "SHIFT_JIS", "SHIFT_JISX0213"])
        case "euc-kr": return .iconv(["CP949", "EUC-KR"])
        case "utf-16be": return .iconv(["UTF-16BE"])
        case "utf-16le": return .iconv(["UTF-16LE"])
        case "x-user-defined": return .userDefined
        // Without a byte order mark glibc refuses UTF-32; RFC 2781 and 3629 say big-endian.
        case "UTF-32": return .iconv(["UTF-32", "UTF-32BE"])
        case "replacement":
            if label.hasPrefix("hz") { return .hz }
            if label.contains("kr") { return .iconv(["ISO-2022-KR"]) }
            return .iconv([label.hasSuffix("ext") ? "ISO-2022-CN-EXT" : "ISO-2022-CN"])
        default:
            // windows-125n, iso-8859-n and the iconv names of the library table.
            if encoding.hasPrefix("windows-12") { return .iconv(["CP" + encoding.dropFirst("windows-".count)]) }
            return .iconv([encoding.uppercased()])
        }
    }
}
