import Testing

@testable import MailHeaders

/// Address-list syntax as real mail carries it (RFC 5322 plus obsolete forms).
@Suite struct AddressListTests {
    let decoder = HeaderDecoder()

    /// (display name, address) of every mailbox, flattened.
    func pairs(_ value: String) -> [Pair] {
        decoder.addressList(value).mailboxes.map { Pair($0.displayName, $0.address) }
    }

    struct Pair: Equatable, CustomStringConvertible {
        var name: String?
        var address: String
        init(_ name: String?, _ address: String) {
            self.name = name
            self.address = address
        }
        var description: String { "(\(name ?? "nil"), \(address))" }
    }

    @Test(arguments: [
        // Plain forms.
        ("sales@example.com", [Pair(nil, "sales@example.com")]),
        ("<sales@example.com>", [Pair(nil, "sales@example.com")]),
        ("Zhangsan <sales@example.com>", [Pair("Zhangsan", "sales@example.com")]),
        (#""Zhangsan" <sales@example.com>"#, [Pair("Zhangsan", "sales@example.com")]),
        (#""Zhang San" <Sales@Example.COM>"#, [Pair("Zhang San", "Sales@Example.COM")]),
        // Outlook: "Last, First".
        (#""Zhang, San" <zs@x.com>, "Li, Si" <ls@x.com>"#, [Pair("Zhang, San", "zs@x.com"), Pair("Li, Si", "ls@x.com")]),
        // Quoted-pairs.
        (#""Zhang \"Boss\" San" <z@x>"#, [Pair(#"Zhang "Boss" San"#, "z@x")]),
        (#""back\\slash" <b@x>"#, [Pair(#"back\slash"#, "b@x")]),
        // Unquoted phrases with dots and @.
        ("John Q. Public <jqp@x.org>", [Pair("John Q. Public", "jqp@x.org")]),
        ("joe@x.com <joe@x.com>", [Pair("joe@x.com", "joe@x.com")]),
        ("Mr. Zhang <z@x>", [Pair("Mr. Zhang", "z@x")]),
        // Whitespace runs collapse.
        ("  Zhang    San   <z@x>  ", [Pair("Zhang San", "z@x")]),
        (#""  Zhang   San " <z@x>"#, [Pair("Zhang San", "z@x")]),
        // Comments.
        ("z@x (Zhang San)", [Pair("Zhang San", "z@x")]),
        ("z@x (Zhang (nested) San)", [Pair("Zhang (nested) San", "z@x")]),
        (#"z@x (Zhang \) San)"#, [Pair("Zhang ) San", "z@x")]),
        ("Zhang (the boss) San <z@x>", [Pair("Zhang San", "z@x")]),
        ("Zhang San <z@x> (work)", [Pair("Zhang San", "z@x")]),
        ("<z@x> (Zhang San)", [Pair("Zhang San", "z@x")]),
        ("z(comment)@x", [Pair("comment", "z@x")]),
        ("(only comment) z@x", [Pair("only comment", "z@x")]),
        // Routes and mailto.
        ("<@a.example,@b.example:x@y.example>", [Pair(nil, "x@y.example")]),
        ("Zhang <@relay:z@x>", [Pair("Zhang", "z@x")]),
        ("<mailto:z@x>", [Pair(nil, "z@x")]),
        // Separators.
        (",a@x,,b@y,", [Pair(nil, "a@x"), Pair(nil, "b@y")]),
        ("a@x; b@y", [Pair(nil, "a@x"), Pair(nil, "b@y")]),
        ("", []),
        ("   ", []),
        (", ,", []),
        // Missing angle brackets.
        ("Zhang San z@x", [Pair("Zhang San", "z@x")]),
        (#""Zhang San" z@x"#, [Pair("Zhang San", "z@x")]),
        // Unterminated forms don't swallow the rest.
        ("Zhang <z@x, Li <l@y>", [Pair("Zhang", "z@x"), Pair("Li", "l@y")]),
        // Unterminated domain literal ending in whitespace (found by fuzzing): name trimmed.
        ("a@x, Zhang [unterminated ", [Pair(nil, "a@x"), Pair("Zhang [unterminated", "")]),
        // Quoted local part and domain literal.
        (#""john doe"@x.com"#, [Pair(nil, #""john doe"@x.com"#)]),
        ("Lit <a@[192.0.2.1]>", [Pair("Lit", "a@[192.0.2.1]")]),
        ("john.doe@mail.example.com", [Pair(nil, "john.doe@mail.example.com")]),
        // Local-only and name-only.
        ("postmaster", [Pair(nil, "postmaster")]),
        ("Zhang San", [Pair("Zhang San", "")]),
        ("Zhang San <>", [Pair("Zhang San", "")]),
        // Empty names.
        (#""" <a@x>"#, [Pair(nil, "a@x")]),
        (#""   " <a@x>"#, [Pair(nil, "a@x")]),
        ("a@x ()", [Pair(nil, "a@x")]),
        // Encoded words in comments.
        ("z@x (=?UTF-8?B?5byg5LiJ?=)", [Pair("张三", "z@x")]),
        // Colon in an unquoted name makes a group (RFC 5322); its member still comes out.
        ("Re: Zhang <z@x>", [Pair("Zhang", "z@x")]),
        // Raw UTF-8 (RFC 6532).
        ("张三 <zs@例子.中国>", [Pair("张三", "zs@例子.中国")]),
        (#""张 三" <zs@x>"#, [Pair("张 三", "zs@x")]),
        ("张三@例子.中国", [Pair(nil, "张三@例子.中国")]),
    ])
    func syntax(_ value: String, _ expected: [Pair]) {
        #expect(pairs(value) == expected)
    }

    @Test func foldedLines() {
        for nl in ["\r\n", "\n"] {
            let value = "\"Zhang\(nl) San\" <z@x>,\(nl)\tLi Si\(nl) <l@y>,\(nl) =?UTF-8?B?5byg?=\(nl) =?UTF-8?B?5LiJ?= <s@x>"
            #expect(pairs(value) == [Pair("Zhang San", "z@x"), Pair("Li Si", "l@y"), Pair("张三", "s@x")])
        }
    }

    @Test func groups() {
        let list = decoder.addressList("Team: a@x, Bob <b@y>;, c@z, undisclosed-recipients:;, Empty :  ; Last: d@w")
        #expect(
            list.items == [
                .group(
                    Group(
                        name: "Team",
                        members: [
                            Mailbox(displayName: nil, address: "a@x", source: "a@x"),
                            Mailbox(displayName: "Bob", address: "b@y", source: "Bob <b@y>"),
                        ])),
                .mailbox(Mailbox(displayName: nil, address: "c@z", source: "c@z")),
                .group(Group(name: "undisclosed-recipients", members: [])),
                .group(Group(name: "Empty", members: [])),
                .group(Group(name: "Last", members: [Mailbox(displayName: nil, address: "d@w", source: "d@w")])),
            ])
        #expect(list.mailboxes.map(\.address) == ["a@x", "b@y", "c@z", "d@w"])
    }

    @Test func encodedGroupName() {
        let list = decoder.addressList("=?UTF-8?B?6ZSA5ZSu6YOo?=: =?UTF-8?B?5byg5LiJ?= <z@x>;")
        #expect(
            list.items == [
                .group(
                    Group(
                        name: "销售部",
                        members: [
                            Mailbox(displayName: "张三", address: "z@x", source: "=?UTF-8?B?5byg5LiJ?= <z@x>")
                        ]))
            ])
    }

    /// Found by fuzzing: the tokenizer took `=?gb2312:=?utf-8?Q?=` for an encoded word
    /// (a charset with '=' in it, "utf-8" as the encoding) and swallowed the group's
    /// colon, so rewriting a member turned the group into one odd mailbox. Only what
    /// the decoder reads as an encoded word may hold specials.
    @Test func brokenWordDoesNotSwallowGroupColon() {
        let list = decoder.addressList("=?gb2312:=?utf-8?Q?=E5=BC=A0?= <z@x>;")
        #expect(
            list.items == [
                .group(
                    Group(
                        name: "=?gb2312",
                        members: [
                            Mailbox(displayName: "张", address: "z@x", source: "=?utf-8?Q?=E5=BC=A0?= <z@x>")
                        ]))
            ])
        // The same after the engine-style rewrite of the member.
        let rewritten = decoder.rewritingMailboxes(in: "=?gb2312:\"=?x\" <z@x>;") {
            HeaderEncoder.mailbox(displayName: $0.displayName, address: "sales@x", smtpUTF8: false)
        }
        #expect(rewritten == "=?gb2312:=?UTF-8?B?PT94?= <sales@x>;")
        #expect(
            decoder.addressList(rewritten ?? "").items == [
                .group(
                    Group(
                        name: "=?gb2312",
                        members: [
                            Mailbox(displayName: "=?x", address: "sales@x", source: "=?UTF-8?B?PT94?= <sales@x>")
                        ]))
            ])
        // Real encoded words still keep their specials, also with "iso_8859-1:1987".
        #expect(pairs("=?utf-8?Q?a,b:c?= <z@x>") == [Pair("a,b:c", "z@x")])
        #expect(pairs("=?iso_8859-1:1987?Q?Ren=E9?= <r@x>") == [Pair("René", "r@x")])
        // An encoding other than B or Q makes no encoded word: its comma separates.
        #expect(pairs("=?utf-8?X?a,b?= <z@x>") == [Pair(nil, "=?utf-8?X?a"), Pair("b?=", "z@x")])
    }

    @Test func sourceIsExactAndTrimmed() {
        let value = " \"Zhang, San\" <zs@x.com> (boss) ,\r\n\tli@y.com (Li) ;  Team: <a@x>;"
        let sources = decoder.addressList(value).mailboxes.map(\.source)
        #expect(sources == [#""Zhang, San" <zs@x.com> (boss)"#, "li@y.com (Li)", "<a@x>"])
    }

    @Test func rewritingKeepsEverythingElse() {
        let value = "Team: \"Zhang, San\" <zs@x.com>, li@y.com (Li);,\r\n\t(c) Wang <w@z>  ,x@q"
        let out = decoder.rewritingMailboxes(in: value) { m in
            m.address == "li@y.com" ? HeaderEncoder.mailbox(displayName: "李四", address: "sales@example.com", smtpUTF8: false) : nil
        }
        #expect(out == "Team: \"Zhang, San\" <zs@x.com>, =?UTF-8?B?5p2O5Zub?= <sales@example.com>;,\r\n\t(c) Wang <w@z>  ,x@q")
        #expect(decoder.rewritingMailboxes(in: value) { _ in nil } == nil)
        let all = decoder.rewritingMailboxes(in: value) { _ in "X" }
        #expect(all == "Team: X, X;,\r\n\tX  ,X")
    }

    @Test func unterminatedTokenSourceIsTrimmed() {
        #expect(decoder.addressList("Zhang [x  ").mailboxes.map(\.source) == ["Zhang [x"])
        #expect(decoder.addressList("\"Zhang  ").mailboxes.map(\.source) == ["\"Zhang"])
    }

    @Test func rewritingUnicodeValue() {
        let value = "张三 <zs@x>, 李四 <ls@x>"
        let out = decoder.rewritingMailboxes(in: value) { $0.displayName == "李四" ? "<sales@x>" : nil }
        #expect(out == "张三 <zs@x>, <sales@x>")
    }

    /// The rewriter hands `replacement` the names `addressList` reads, unknown charset labels
    /// included (found by fuzzing: the rewriter kept such a word as written, so a rewritten
    /// staff mailbox was shown under another name than the one read).
    @Test(arguments: ["=?uft-8?B?5byg5LiJ?= <zhangsan@example.com>", "=\"?uft-8?B?5byg5LiJ?=\" <zhangsan@example.com>"])
    func rewritingSeesTheNamesAddressListReads(_ value: String) {
        #expect(pairs(value) == [Pair("张三", "zhangsan@example.com")])
        var seen: [String?] = []
        _ = decoder.rewritingMailboxes(in: value) { m in
            seen.append(m.displayName)
            return nil
        }
        #expect(seen == ["张三"])
    }

    @Test func mailboxesFlattenInOrder() {
        let list = decoder.addressList("a@x, G: b@x, c@x;, d@x")
        #expect(list.mailboxes.map(\.address) == ["a@x", "b@x", "c@x", "d@x"])
    }
}
