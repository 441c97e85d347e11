import Testing
@testable import MailHeaders

@Test func smoke() {
    let d = HeaderDecoder()
    let l = d.addressList(#""Zhang, San" <zs@x.com>, =?GB2312?B?1cXI/Q==?= <a@b>, =?Big5?B?sWmkVA==?= <c@d>, Team: e@f, g@h (G Name);, =?UTF-8?B?5byg5LiJ?= <s@x>"#)
    for m in l.mailboxes { print(m) }
    #expect(l.mailboxes.map(\.displayName) == ["Zhang, San", "张三", "張三", nil, "G Name", "张三"])
    print(HeaderEncoder.mailbox(displayName: "张三", address: "s@x", smtpUTF8: false))
    print(HeaderEncoder.mailbox(displayName: "Zhang San", address: "s@x", smtpUTF8: false))
    print(HeaderEncoder.mailbox(displayName: "John Q. Public", address: "s@x", smtpUTF8: false))
    print(NameNormalizer.normalize("  「Ｚｈａｎｇ　ＳＡＮ」 Straße "))
}
