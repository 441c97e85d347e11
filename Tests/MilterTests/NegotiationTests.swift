@testable import Milter
import Testing

@Suite("Milter negotiation: what the MTA is asked to send")
struct NegotiationTests {
    func options(_ socket: String, steps: Set<Milter.Step>, replies: Set<Milter.Step>) -> Milter.Options {
        Milter.Options(name: "test", socket: socket, actions: [], steps: steps, replies: replies)
    }

    @Test("a unix socket gets exactly the filter's steps and replies")
    func unixAsAsked() {
        let negotiated = options("unix:/run/x.sock", steps: [.connect, .mail, .recipient, .headers], replies: [.recipient]).negotiated
        #expect(negotiated.steps == [.connect, .mail, .recipient, .headers])
        #expect(negotiated.replies == [.recipient])
    }

    @Test("a TCP socket also takes DATA, with a reply (Postfix would otherwise stall on Nagle)",
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
