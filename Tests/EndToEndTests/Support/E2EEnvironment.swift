import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Who is talking to Postfix. XCLIENT replaces the real client (127.0.0.1), so relay rules and
/// the milter see these addresses; documentation ranges only ever appear here.
enum SMTPIdentity: Sendable {
    case internet  // a stranger: no login
    case staff(login: String)  // authenticated user; `permit_sasl_authenticated` lets it relay

    var xclient: String {
        switch self {
        case .internet: "ADDR=198.51.100.7 NAME=[UNAVAILABLE]"
        case .staff(let login): "ADDR=192.0.2.10 LOGIN=\(login)"
        }
    }

    var helo: String {
        switch self {
        case .internet: "mail.customer.test"
        case .staff: "staff-pc.example.com"
        }
    }
}

/// What Postfix answered to one SMTP transaction.
struct SMTPOutcome: Sendable, CustomStringConvertible {
    var mail: SMTPReply?
    var rcpt: [SMTPReply] = []
    var data: SMTPReply?  // nil when no recipient was accepted (DATA never sent)
    var transcript: [String] = []

    /// The first reply that was not positive (e.g. the 451 of a dead milter), if any.
    var firstRefusal: SMTPReply? { ([mail].compactMap { $0 } + rcpt + [data].compactMap { $0 }).first { !$0.isPositive } }
    var accepted: Bool { data?.code == 250 }
    var description: String { transcript.joined(separator: "\n") }
}

/// One Postfix, one smtp-sink and (optionally) one sharemail, shared by all tests of a suite.
///
/// Tests get it from the `.e2eEnvironment` suite trait, which starts it before the first test
/// and always stops it after the last one.
final class E2EEnvironment: Sendable {
    @TaskLocal static var shared: Result<E2EEnvironment, E2EError>?

    let directory: String
    let postfix: PostfixInstance
    let sink: Sink
    let sharemail: SharemailDaemon?  // nil for the Postfix-only self-tests
    var maildirs: Maildirs { Maildirs(base: postfix.mailBase) }

    /// The environment of the current suite; throws its start-up error (for example
    /// "sharemail binary not found at …") so every test of the suite fails with that reason.
    static func current() throws -> E2EEnvironment {
        guard let shared else {
            throw E2EError("no E2E environment: add `.e2eEnvironment(…)` to the suite's traits")
        }
        return try shared.get()
    }

    private init(directory: String, postfix: PostfixInstance, sink: Sink, sharemail: SharemailDaemon?) {
        self.directory = directory
        self.postfix = postfix
        self.sink = sink
        self.sharemail = sharemail
    }

    /// Starts everything; on any failure stops what already runs and throws.
    static func start(sharemailConfig: String?) throws -> E2EEnvironment {
        guard getuid() == 0 else {
            throw E2EError("the end-to-end tests must run as root: they start private Postfix instances")
        }
        let directory = try RunDirectory.create()
        var sink: Sink?
        var postfix: PostfixInstance?
        var sharemail: SharemailDaemon?
        do {
            // Before Postfix: a missing binary should fail fast, not after Postfix started.
            if let config = sharemailConfig {
                sharemail = try SharemailDaemon(directory: directory, config: config)
            }
            sink = try Sink(directory: directory, port: try freeLoopbackPort())
            postfix = try PostfixInstance(
                directory: directory, smtpPort: try freeLoopbackPort(), sinkPort: sink!.port,
                milterSocket: sharemail?.socketPath)
            try trace("sharemail start") { try sharemail?.start() }
            try trace("postfix start") { try postfix!.start() }
            return E2EEnvironment(directory: directory, postfix: postfix!, sink: sink!, sharemail: sharemail)
        } catch {
            sharemail?.stop()
            postfix?.stop()
            sink?.stop()
            RunDirectory.remove(directory)
            throw error as? E2EError ?? E2EError("\(error)")
        }
    }

    func stop() {
        trace("sharemail stop") { sharemail?.stop() }
        trace("postfix stop") { postfix.stop() }
        trace("sink stop") { sink.stop() }
        // Failure messages already quote the logs; E2E_KEEP=1 keeps the whole directory for a
        // closer look (the next run removes it as stale).
        if ProcessInfo.processInfo.environment["E2E_KEEP"] == nil { RunDirectory.remove(directory) }
    }

    // MARK: Per-test state

    private let offsets = Offsets((0, 0))

    /// Called by each test (through its suite's init): empties queue, Maildirs and sink, and
    /// remembers where the logs are so failure messages show this test's lines only.
    func beginTest() throws {
        if (try? postfix.waitForEmptyQueue(timeout: .seconds(5))) == nil { postfix.deleteAllQueued() }
        // A test that stopped the milter on purpose and then failed must not take the rest along.
        if let sharemail, !sharemail.isRunning { try sharemail.start() }
        maildirs.clear()
        sink.clear()
        let now = (maillog: postfix.maillogOffset(), sharemailLog: sharemail?.logOffset() ?? 0)
        offsets.withLock { $0 = now }
    }

    /// The maillog and sharemail's output since `beginTest()`: attach to every failed expectation.
    var diagnostics: String {
        let (maillog, sharemailLog) = offsets.withLock { $0 }
        var text = "--- Postfix maillog (this test) ---\n" + postfix.maillog(since: maillog)
        if let sharemail {
            text += "--- sharemail output (this test) ---\n" + sharemail.log(since: sharemailLog)
        }
        return text
    }

    // MARK: Sending

    /// One SMTP transaction as `identity`: EHLO, XCLIENT, EHLO, MAIL, RCPT…, DATA if any RCPT
    /// was accepted, QUIT. Never throws for refusals: they are in the outcome.
    func send(
        as identity: SMTPIdentity, from sender: String, to recipients: [String], message: [UInt8]
    ) throws -> SMTPOutcome {
        let client = try SMTPClient(port: postfix.smtpPort)
        var outcome = SMTPOutcome()
        defer { client.quit() }
        do {
            try require(client.greeting(), 220, client)
            try require(client.ehlo("harness.test"), 250, client)
            try require(client.xclient(identity.xclient), 220, client)
            try require(client.ehlo(identity.helo), 250, client)
            let mail = try client.mailFrom(sender)
            outcome.mail = mail
            if mail.isPositive {
                outcome.rcpt = try recipients.map { try client.rcptTo($0) }
                if outcome.rcpt.contains(where: \.isPositive) { outcome.data = try client.data(message) }
            }
        } catch {
            throw E2EError("\(error)\n\(client.transcript.joined(separator: "\n"))\n\(diagnostics)")
        }
        outcome.transcript = client.transcript
        return outcome
    }

    /// Sends, then waits until Postfix has delivered (or bounced) everything.
    @discardableResult
    func sendAndDeliver(
        as identity: SMTPIdentity, from sender: String, to recipients: [String], message: [UInt8]
    ) throws -> SMTPOutcome {
        let outcome = try send(as: identity, from: sender, to: recipients, message: message)
        try waitForDelivery()
        return outcome
    }

    func waitForDelivery() throws {
        do { try postfix.waitForEmptyQueue() } catch { throw E2EError("\(error)\n\(diagnostics)") }
    }

    private func require(_ reply: SMTPReply, _ code: Int, _ client: SMTPClient) throws {
        guard reply.code == code else { throw E2EError("expected \(code), got \(reply)") }
    }

    // MARK: Assertions with evidence

    /// Every known mailbox holds exactly the given number of messages (missing names: 0).
    func expectMailboxes(_ expected: [String: Int], sourceLocation: SourceLocation = #_sourceLocation) throws {
        var want = Dictionary(uniqueKeysWithValues: PostfixInstance.mailboxes.map { ($0, 0) })
        want.merge(expected) { _, new in new }
        let got = try maildirs.counts()
        #expect(got == want, "Maildir copies differ: expected \(sorted(want)), got \(sorted(got))\n\(diagnostics)",
                sourceLocation: sourceLocation)
    }

    func expectSinkCount(_ count: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let messages = try sink.messages()
        #expect(messages.count == count,
                "the Internet (smtp-sink) got \(messages.count) messages, expected \(count): \(messages)\n\(diagnostics)",
                sourceLocation: sourceLocation)
    }

    private func sorted(_ counts: [String: Int]) -> String {
        counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
}

/// E2E_TRACE=1 prints how long the slow steps (daemon start and stop) take.
func trace<T>(_ step: String, _ body: () throws -> T) rethrows -> T {
    guard ProcessInfo.processInfo.environment["E2E_TRACE"] != nil else { return try body() }
    let start = ContinuousClock.now
    defer { print("[e2e] \(step): \(ContinuousClock.now - start)") }
    return try body()
}

/// The per-test log offsets (maillog, sharemail log); set by `beginTest()`.
private typealias Offsets = Mutex<(maillog: UInt64, sharemailLog: UInt64)>

/// Suite trait: starts one E2E environment before the suite's first test, stops it after the
/// last, even when tests fail or throw.
struct E2EEnvironmentTrait: SuiteTrait, TestScoping {
    let sharemailConfig: String?

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let started: Result<E2EEnvironment, E2EError>
        do { started = .success(try E2EEnvironment.start(sharemailConfig: sharemailConfig)) }
        catch { started = .failure(error as? E2EError ?? E2EError("\(error)")) }
        defer { if case .success(let environment) = started { environment.stop() } }
        try await E2EEnvironment.$shared.withValue(started) { try await function() }
    }
}

extension Trait where Self == E2EEnvironmentTrait {
    /// Postfix + smtp-sink + sharemail running `config`.
    static func e2eEnvironment(sharemail config: String = SharemailConfig.standard()) -> Self {
        E2EEnvironmentTrait(sharemailConfig: config)
    }

    /// Postfix + smtp-sink only, no milter: proves the harness itself.
    static var postfixOnly: Self { E2EEnvironmentTrait(sharemailConfig: nil) }
}

// MARK: Test messages

/// A tag unique to one test run, for Subjects and Message-IDs, so copies are recognisable.
func uniqueTag() -> String { "e2e-" + String(UInt64.random(in: 0...UInt64.max), radix: 36) }

/// A message from header lines and a body, with CRLF line ends.
func message(_ headers: [String], body: String = "Hello from the sharemail end-to-end tests.") -> [UInt8] {
    Array((headers.joined(separator: "\r\n") + "\r\n\r\n" + body + "\r\n").utf8)
}

/// A message whose header section is given as raw bytes (8-bit garbage and the like).
func rawMessage(_ header: [UInt8], body: String = "Hello.") -> [UInt8] {
    header + Array("\r\n\r\n\(body)\r\n".utf8)
}
