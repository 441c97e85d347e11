import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One message of a load: its Message-ID (without `<>`), who sends it, the envelope and the bytes.
package struct LoadMessage: Sendable {
    package let id: String
    package let identity: SMTPIdentity
    package let sender: String
    package let recipients: [String]
    package let bytes: [UInt8]

    package init(id: String, identity: SMTPIdentity, sender: String, recipients: [String], bytes: [UInt8]) {
        (self.id, self.identity, self.sender, self.recipients, self.bytes) = (id, identity, sender, recipients, bytes)
    }
}

/// How a sending MTA retries a deferred message: bounded attempts, doubling delays.
package struct RetryPolicy: Sendable {
    package var maxAttempts: Int
    package var firstDelay: Duration
    package var maxDelay: Duration

    package init(maxAttempts: Int = 8, firstDelay: Duration = .milliseconds(500), maxDelay: Duration = .seconds(8)) {
        (self.maxAttempts, self.firstDelay, self.maxDelay) = (maxAttempts, firstDelay, maxDelay)
    }

    /// No retries: every 4xx is final (for loads that must never be deferred).
    package static let never = RetryPolicy(maxAttempts: 1)

    func delay(afterAttempt attempt: Int) -> Duration {
        var delay = firstDelay
        for _ in 1..<max(attempt, 1) where delay < maxDelay { delay *= 2 }
        return min(delay, maxDelay)
    }
}

/// What one attempt to send a message ended with, from the client's side.
package enum LoadAttempt: Sendable, CustomStringConvertible {
    case accepted  // 250 to the final dot: Postfix has it
    case deferred(String)  // a 4xx, or no connection / a lost one before the final dot: not queued
    case rejected(String)  // a 5xx: final, a real MTA would bounce it
    case unknown(String)  // the connection broke after the final dot, before its reply (RFC 1047)

    package var description: String {
        switch self {
        case .accepted: "accepted"
        case .deferred(let why): "deferred (\(why))"
        case .rejected(let why): "rejected (\(why))"
        case .unknown(let why): "unknown (\(why))"
        }
    }

    package var isAccepted: Bool { if case .accepted = self { true } else { false } }
    var isFinal: Bool { if case .accepted = self { true } else if case .rejected = self { true } else { false } }
}

/// What the load did: every attempt of every message, in order.
package struct LoadReport: Sendable, CustomStringConvertible {
    package let messages: [LoadMessage]
    package let attempts: [[LoadAttempt]]  // per message, same order
    package let elapsed: Duration

    package var acceptedFirstTry: Int { attempts.count { $0.count == 1 && $0[0].isAccepted } }
    /// Messages deferred at least once (4xx or no connection) before their last attempt.
    package var deferred: Int { attempts.count { $0.count > 1 } }
    /// Deferred at least once, then accepted on a retry.
    package var retriedOK: Int { attempts.count { $0.count > 1 && $0.last?.isAccepted == true } }
    package var accepted: Int { attempts.count { $0.last?.isAccepted == true } }
    package var rejected: Int { attempts.count { if case .rejected = $0.last { true } else { false } } }
    /// Still not accepted after the last allowed attempt.
    package var gaveUp: Int { attempts.count { !($0.last?.isFinal ?? false) } }
    /// Messages with an attempt whose fate the client cannot know (lost after the dot).
    package var ambiguous: Int { attempts.count { $0.contains { if case .unknown = $0 { true } else { false } } } }

    /// How often each kind of deferral happened ("dot: 451 4.7.1 …" → count), for the test output.
    package var deferralReasons: [String: Int] {
        var reasons: [String: Int] = [:]
        for list in attempts {
            for case .deferred(let why) in list { reasons[String(why.prefix(60)), default: 0] += 1 }
        }
        return reasons
    }

    package var description: String {
        "\(messages.count) messages in \(elapsed): accepted first try \(acceptedFirstTry), deferred \(deferred), "
            + "retried OK \(retriedOK), rejected \(rejected), gave up \(gaveUp), ambiguous \(ambiguous)"
    }
}

/// A sending MTA in miniature: `sessions` threads, each with one SMTP connection that carries
/// message after message (MAIL, RCPT, DATA; RSET after a refusal). A 4xx or a lost connection
/// closes that connection and puts the message back for a retry after a back-off, as a real
/// MTA's queue does; a 5xx is final.
package final class LoadSender: Sendable {
    package let messages: [LoadMessage]
    private let port: UInt16
    private let sessions: Int
    private let retry: RetryPolicy
    private let messagesPerConnection: Int
    private let state: Mutex<State>
    private let group = DispatchGroup()
    private let started = ContinuousClock.now

    private struct State: Sendable {
        var nextFresh = 0
        var retries: [(index: Int, notBefore: ContinuousClock.Instant)] = []
        var attempts: [[LoadAttempt]]
        var finished = 0  // messages with a final outcome (accepted, rejected, out of attempts)
        var acceptedCount = 0
        var deferredCount = 0  // deferred attempts so far
    }

    /// Sends through Postfix on `port` once `start()` is called.
    package init(
        port: UInt16, messages: [LoadMessage], sessions: Int = 10, retry: RetryPolicy = RetryPolicy(),
        messagesPerConnection: Int = 50
    ) {
        self.port = port
        self.messages = messages
        self.sessions = sessions
        self.retry = retry
        self.messagesPerConnection = messagesPerConnection
        state = Mutex(State(attempts: Array(repeating: [], count: messages.count)))
    }

    /// Starts the sessions' threads and returns at once.
    package func start() {
        for session in 0..<sessions {
            group.enter()
            let thread = Thread { [self] in
                work()
                group.leave()
            }
            thread.name = "load-\(session)"
            thread.start()
        }
    }

    /// (accepted so far, deferred attempts so far, messages with a final outcome).
    package var progress: (accepted: Int, deferred: Int, finished: Int) {
        state.withLock { ($0.acceptedCount, $0.deferredCount, $0.finished) }
    }

    /// Waits until every message has its final outcome; throws if that takes longer than `timeout`.
    package func wait(timeout: Duration) throws -> LoadReport {
        let (seconds, _) = timeout.components
        guard group.wait(timeout: .now() + .seconds(Int(seconds))) == .success else {
            throw LabError("the load did not finish within \(timeout): \(progress)")
        }
        return LoadReport(messages: messages, attempts: state.withLock { $0.attempts }, elapsed: ContinuousClock.now - started)
    }

    // MARK: One session

    private func work() {
        var client: SMTPClient?
        var identity = ""  // the XCLIENT line `client` was set up with
        var sentOnConnection = 0
        while let index = take() {
            let message = messages[index]
            if client != nil, identity != message.identity.xclient || sentOnConnection >= messagesPerConnection {
                client?.quit()
                client = nil
            }
            if client == nil {
                do {
                    client = try open(as: message.identity)
                    identity = message.identity.xclient
                    sentOnConnection = 0
                } catch {
                    record(index, .deferred("connect: \(error)".prefix(200).description))
                    continue
                }
            }
            let attempt = transaction(message, on: client!)
            sentOnConnection += 1
            switch attempt {
            case .accepted: break
            case .rejected: _ = try? client!.command("RSET")
            case .deferred, .unknown:
                // A real MTA gives up this connection after a temporary failure; a milter that
                // died also leaves smtpd's session "tempfail" until the client reconnects.
                client?.quit()
                client = nil
            }
            record(index, attempt)
        }
        client?.quit()
    }

    private func open(as identity: SMTPIdentity) throws -> SMTPClient {
        let client = try SMTPClient(port: port)
        func expect(_ reply: SMTPReply, _ code: Int) throws {
            guard reply.code == code else { throw LabError("set-up: \(reply)") }
        }
        try expect(client.greeting(), 220)
        try expect(client.ehlo("load.test"), 250)
        try expect(client.xclient(identity.xclient), 220)
        try expect(client.ehlo(identity.helo), 250)
        return client
    }

    private func transaction(_ message: LoadMessage, on client: SMTPClient) -> LoadAttempt {
        var dotSent = false
        do {
            let mail = try client.mailFrom(message.sender)
            if let final = Self.classify(mail, at: "MAIL") { return final }
            var anyRecipient = false
            for recipient in message.recipients {
                let reply = try client.rcptTo(recipient)
                if reply.isPositive {
                    anyRecipient = true
                } else if let final = Self.classify(reply, at: "RCPT"), case .deferred = final {
                    return final  // one deferred recipient: retry the whole message (no partial sends)
                }
            }
            guard anyRecipient else { return .rejected("every recipient refused") }
            let go = try client.command("DATA")
            guard go.code == 354 else { return Self.classify(go, at: "DATA") ?? .deferred("DATA: \(go)") }
            try client.write(SMTPClient.wire(message.bytes), logAs: "C: <message \(message.id)>")
            try client.write(Array(".\r\n".utf8), logAs: "C: .")
            dotSent = true
            let reply = try client.reply()
            return reply.code == 250 ? .accepted : Self.classify(reply, at: "dot") ?? .deferred("dot: \(reply)")
        } catch {
            let why = "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
            return dotSent ? .unknown(why) : .deferred("connection: \(why)")
        }
    }

    /// nil for a positive reply; otherwise the attempt's outcome, with the stage that refused.
    private static func classify(_ reply: SMTPReply, at stage: String) -> LoadAttempt? {
        switch reply.code {
        case 200..<400: nil
        case 500..<600: .rejected("\(stage): \(reply)")
        default: .deferred("\(stage): \(reply)")
        }
    }

    // MARK: The queue

    /// The next message to try: a retry whose back-off has passed, else a fresh one; waits while
    /// only retries that are not yet due remain; nil when every message has its outcome.
    private func take() -> Int? {
        while true {
            let next: Int?? = state.withLock { state in
                let now = ContinuousClock.now
                if let due = state.retries.firstIndex(where: { $0.notBefore <= now }) {
                    return state.retries.remove(at: due).index
                }
                if state.nextFresh < messages.count {
                    defer { state.nextFresh += 1 }
                    return state.nextFresh
                }
                return state.finished == messages.count ? .some(nil) : nil
            }
            if let next { return next }
            usleep(20_000)  // retries pending, or another session still has a message in hand
        }
    }

    private func record(_ index: Int, _ attempt: LoadAttempt) {
        state.withLock { state in
            state.attempts[index].append(attempt)
            switch attempt {
            case .accepted:
                state.acceptedCount += 1
                state.finished += 1
            case .rejected:
                state.finished += 1
            case .deferred, .unknown:
                state.deferredCount += 1
                let count = state.attempts[index].count
                if count >= retry.maxAttempts {
                    state.finished += 1
                } else {
                    state.retries.append((index, ContinuousClock.now + retry.delay(afterAttempt: count)))
                }
            }
        }
    }
}

extension Lab {
    /// Where each message went, by Message-ID (without `<>`): mailbox → copies, the Internet
    /// (smtp-sink) counted as "sink". Messages without a Message-ID are under "".
    package func deliveries() throws -> [String: [String: Int]] {
        var result: [String: [String: Int]] = [:]
        func add(_ file: MailMessage, _ place: String) {
            var id = file.value("Message-ID") ?? ""
            if id.hasPrefix("<"), id.hasSuffix(">") { id = String(id.dropFirst().dropLast()) }
            result[id, default: [:]][place, default: 0] += 1
        }
        for mailbox in PostfixInstance.mailboxes {
            for file in try maildirs.messages(mailbox) { add(file, mailbox) }
        }
        for sent in try sink.messages() { add(sent.file, "sink") }
        return result
    }
}
