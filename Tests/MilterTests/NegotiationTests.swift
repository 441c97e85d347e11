import Testing

@testable import Milter

@Suite("Milter negotiation: what the MTA is asked to send")
struct NegotiationTests {
    func options(_ socket: String, steps: Set<Milter.Step>, replies: Set<Milter.Step>) -> Milter.Options {
        let reply = Reply(code: 451, enhancedCode: "4.3.0", text: "try again later")
        return Milter.Options(
            name: "test", socket: SocketSpec(libmilter: socket)!, actions: [], steps: steps, replies: replies,
            failureReplies: Milter.FailureReplies(applyFailed: reply, stopping: reply), errorMetric: "test_errors_total")
    }

    @Test("a unix socket gets exactly the filter's steps and replies")
    func unixAsAsked() {
        let negotiated = options("unix:/run/x.sock", steps: [.connect, .mail, .recipient, .headers], replies: [.recipient]).negotiated
        #expect(negotiated.steps == [.connect, .mail, .recipient, .headers])
        #expect(negotiated.replies == [.recipient])
    }

    @Test(
        "a TCP socket also takes DATA, with a reply (Postfix would otherwise stall on Nagle)",
        arguments: ["inet:8891@127.0.0.1", "inet6:8891@[::1]"])
    func tcpTakesData(socket: String) {
        let negotiated = options(socket, steps: [.connect, .mail, .recipient, .headers], replies: [.recipient]).negotiated
        #expect(negotiated.steps == [.connect, .mail, .recipient, .data, .headers])
        #expect(negotiated.replies == [.recipient, .data])
    }

    @Test("a filter that takes DATA itself keeps its own choice of reply on TCP")
    func tcpKeepsOwnData() {
        let negotiated = options("inet:8891@127.0.0.1", steps: [.mail, .data], replies: []).negotiated
        #expect(negotiated.steps == [.mail, .data])
        #expect(negotiated.replies.isEmpty)
    }
}

@Suite("Milter: protocol flags for a session that begins without negotiation (after QUIT_NC)")
struct SessionWithoutNegotiationTests {
    @Test("known once negotiated; unknown again as soon as two negotiations agreed different flags")
    func flagsAcrossNegotiations() {
        // The only test that touches this process-wide value.
        #expect(Milter.flagsWithoutNegotiation == nil)
        Milter.recordNegotiated(0x1F2)
        #expect(Milter.flagsWithoutNegotiation == 0x1F2)
        Milter.recordNegotiated(0x1F2)
        #expect(Milter.flagsWithoutNegotiation == 0x1F2)
        Milter.recordNegotiated(0x1F3)
        #expect(Milter.flagsWithoutNegotiation == nil)
        Milter.recordNegotiated(0x1F2)
        #expect(Milter.flagsWithoutNegotiation == nil)
    }
}

@Suite("Socket spec: one type for libmilter's and Postfix's spellings")
struct SocketSpecTests {
    @Test(
        "libmilter spellings parse, and spell back the same",
        arguments: [
            "unix:/run/sharemail/milter.sock", "inet:8891@127.0.0.1", "inet6:8891@::1",
        ])
    func roundTrip(spec: String) {
        #expect(SocketSpec(libmilter: spec)?.libmilterSpelling == spec)
    }

    @Test(
        "local: is unix:; anything else libmilter would refuse is nil",
        arguments: [
            "unix:", "inet:x@127.0.0.1", "inet:0@127.0.0.1", "tcp:8891", "/run/x.sock", "",
        ])
    func refused(spec: String) {
        #expect(SocketSpec(libmilter: spec) == nil)
        #expect(SocketSpec(libmilter: "local:/run/x.sock") == .unix(path: "/run/x.sock"))
    }

    @Test("Postfix's spelling of the same socket matches, loopback names alike")
    func postfixMatches() {
        #expect(SocketSpec(postfix: "inet:localhost:8891")!.matches(SocketSpec(libmilter: "inet:8891@127.0.0.1")!))
        #expect(SocketSpec(postfix: "{ unix:/run/x.sock, default_action=tempfail }")!.matches(.unix(path: "/run/x.sock")))
        #expect(!SocketSpec(postfix: "inet:127.0.0.1:8892")!.matches(SocketSpec(libmilter: "inet:8891@127.0.0.1")!))
        #expect(SocketSpec(libmilter: "unix:/x")!.path == "/x" && SocketSpec(libmilter: "inet:1@h")!.isTCP)
    }
}
