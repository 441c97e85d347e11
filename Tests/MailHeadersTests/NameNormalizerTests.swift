import MailHeaders
import Testing

@Suite struct NameNormalizerTests {
    @Test(arguments: [
        ("Zhangsan", "zhangsan"),
        ("Ｚｈａｎｇｓａｎ", "zhangsan"),  // full-width
        ("ZHANGSAN", "zhangsan"),
        (#""  Zhang   San ""#, "zhang san"),
        ("Zhang\u{3000}San", "zhang san"),  // ideographic space
        ("\u{3000}张三\u{3000}", "张三"),
        ("Zhang\t\r\n San", "zhang san"),
        ("'Zhang San'", "zhang san"),
        ("“Zhang San”", "zhang san"),
        ("「张三」", "张三"),
        ("『张三』", "张三"),
        ("【张三】", "张三"),
        ("(Zhang San)", "zhang san"),
        ("（张三）", "张三"),  // full-width parentheses
        ("<Zhang San>", "zhang san"),
        ("[Zhang San]", "zhang san"),
        (#"" 「 'Zhang San' 」 ""#, "zhang san"),  // nested, repeatedly
        ("Straße", "strasse"),  // full case folding
        ("ﬁsh", "fish"),  // compatibility ligature
        ("ｶﾀｶﾅ", "カタカナ"),  // half-width katakana
        ("e\u{301}", "é"),  // composed
        ("Zhang (Sales)", "zhang (sales)"),  // only surrounding pairs go
        ("\"Zhang\" \"San\"", "zhang\" \"san"),  // documented: outer pair only
        ("", ""),
        ("   ", ""),
        ("\"\"", ""),
    ])
    func normalize(_ input: String, _ expected: String) {
        #expect(NameNormalizer.normalize(input) == expected)
    }

    @Test func idempotent() {
        for s in ["Ｚｈａｎｇ　Ｓａｎ", "「 Straße 」", "ﬁ ß İstanbul", "张三"] {
            let once = NameNormalizer.normalize(s)
            #expect(NameNormalizer.normalize(once) == once)
        }
    }
}
