import MailHeaders
import Testing

@Suite("Message identifiers")
struct MessageIDTests {
    @Test(
        "References and In-Reply-To as clients write them",
        arguments: [
            ("<a@x>", ["a@x"]),
            ("<a@x> <b@y>\n\t<c@z>", ["a@x", "b@y", "c@z"]),
            ("<a@x>,<b@y>", ["a@x", "b@y"]),
            ("<a@x> (Zhang's message of Monday)", ["a@x"]),
            ("\"Zhang\" <a@x>", ["a@x"]),
            ("<a@x> <a@x>", ["a@x"]),
            ("< a@x >", ["a@x"]),
            ("<very.long.id@\n\thost>", ["very.long.id@host"]),
            ("a@x b@y", ["a@x", "b@y"]),
            ("(comment <not@an.id>) <real@id>", ["real@id"]),
            ("<unclosed@x <b@y>", ["b@y"]),
            ("", []),
            ("<>", []),
            ("garbage without ids", []),
        ])
    func parse(value: String, expected: [String]) {
        #expect(MessageIDs.parse(value) == expected)
    }

    @Test("a huge References header is cut at the limit")
    func limit() {
        let value = (0..<10_000).map { "<id\($0)@x>" }.joined(separator: " ")
        let ids = MessageIDs.parse(value)
        #expect(ids.count == 100)
        #expect(ids.first == "id0@x")
    }
}
