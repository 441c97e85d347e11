import ShareMail
import Testing

@Suite("Email addresses as sharemail compares them")
struct EmailAddressTests {
    @Test(
        "accepted, and normalised to lower case without brackets",
        arguments: [
            ("a@b.c", "a@b.c"), ("<A@B.C>", "a@b.c"), ("  <Zhang.San@Example.COM>  ", "zhang.san@example.com"),
            ("first.last+tag@example.com", "first.last+tag@example.com"), ("o'brien@example.ie", "o'brien@example.ie"),
            ("\"quoted local\"@example.com", "\"quoted local\"@example.com"), ("a@[192.0.2.1]", "a@[192.0.2.1]"),
            ("用户@例子.广告", "用户@例子.广告"), ("ÄRGER@BEISPIEL.DE", "ärger@beispiel.de"), ("postmaster@localhost", "postmaster@localhost"),
        ])
    func accepted(text: String, value: String) {
        #expect(EmailAddress(text)?.value == value)
    }

    @Test(
        "refused",
        arguments: [
            "", "@", "a@", "@b.c", ".a@b.c", "a.@b.c", "a..b@c.d", "a@-b.c", "a@b-.c", "a@b..c", "a b@c.d", "a@b c.d",
            "a@b.c.", "<a@b.c", "a@[999.1.1.1]", "a(b)@c.d", "a@b_c.d", String(repeating: "x", count: 65) + "@b.c",
        ])
    func refused(text: String) {
        #expect(EmailAddress(text) == nil)
    }

    @Test("local part and domain")
    func parts() throws {
        let address = try #require(EmailAddress("Sales@Example.com"))
        #expect(address.localPart == "sales")
        #expect(address.domain == "example.com")
    }
}
